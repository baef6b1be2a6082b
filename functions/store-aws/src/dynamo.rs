//! The index port on DynamoDB. Items are `pk` (S) + `sk` (S) with the value
//! in `v` (B) and a version in `ver` (N); every put is an `UpdateItem` that
//! sets `v` and adds one to `ver`, under a condition expression, so racing
//! writers (UID allocation, uniqueness) resolve through the service. Several
//! writes go through `TransactWriteItems`. Counters use `ADD` on an item in a
//! key space of their own. Reads are strongly consistent.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, ReturnValue, TransactWriteItem, Update,
};
use stratus_core::ports::{
    Condition, Index, Item, Key, Outcome, SkRange, StoreError, StoreResult, Write, validate_writes,
};

use crate::sdk::classify;

/// Counters live under partition keys starting with a control character,
/// which [`Key::validate`] never lets an item key contain.
const COUNTER_PREFIX: char = '\u{1}';
/// How often a transaction that lost a race with another transaction (not a
/// failed condition) is tried again before the caller sees `Retryable`.
const TRANSACTION_CONFLICT_TRIES: usize = 5;

#[derive(Debug, Clone)]
pub struct DynamoIndex {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

type Attrs = HashMap<String, AttributeValue>;

fn key_attrs(key: &Key) -> Attrs {
    HashMap::from([
        ("pk".to_string(), AttributeValue::S(key.pk.clone())),
        ("sk".to_string(), AttributeValue::S(key.sk.clone())),
    ])
}

fn counter_key(key: &Key) -> Attrs {
    HashMap::from([
        (
            "pk".to_string(),
            AttributeValue::S(format!("{COUNTER_PREFIX}{}", key.pk)),
        ),
        ("sk".to_string(), AttributeValue::S(key.sk.clone())),
    ])
}

/// The condition expression and the values it names.
fn condition_expr(condition: Condition) -> (Option<String>, Attrs) {
    match condition {
        Condition::Any => (None, HashMap::new()),
        Condition::Absent => (Some("attribute_not_exists(pk)".into()), HashMap::new()),
        Condition::Present => (Some("attribute_exists(pk)".into()), HashMap::new()),
        Condition::Version(v) => (
            Some("ver = :expected".into()),
            HashMap::from([(":expected".to_string(), AttributeValue::N(v.to_string()))]),
        ),
    }
}

fn number(attrs: &Attrs, name: &str) -> StoreResult<u64> {
    match attrs.get(name) {
        Some(AttributeValue::N(n)) => n.parse().map_err(|_| {
            StoreError::permanent(
                "dynamodb",
                format!("attribute {name} = {n} is not a number"),
            )
        }),
        None => Ok(0),
        Some(other) => Err(StoreError::permanent(
            "dynamodb",
            format!("attribute {name} has the wrong type: {other:?}"),
        )),
    }
}

fn to_item(attrs: &Attrs) -> StoreResult<Item> {
    let text = |name: &str| match attrs.get(name) {
        Some(AttributeValue::S(s)) => Ok(s.clone()),
        _ => Err(StoreError::permanent(
            "dynamodb",
            format!("item without string attribute {name}"),
        )),
    };
    let value = match attrs.get("v") {
        Some(AttributeValue::B(b)) => b.clone().into_inner(),
        _ => Vec::new(),
    };
    Ok(Item {
        key: Key::new(text("pk")?, text("sk")?),
        value,
        version: number(attrs, "ver")?,
    })
}

fn check_item_key(key: &Key) -> StoreResult<()> {
    key.validate()
}

impl DynamoIndex {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        DynamoIndex { client, table }
    }

    fn transact_item(&self, write: &Write) -> StoreResult<TransactWriteItem> {
        let (expr, mut values) = condition_expr(write.condition());
        let built = match write {
            Write::Put { key, value, .. } => {
                values.insert(":v".into(), AttributeValue::B(Blob::new(value.clone())));
                values.insert(":one".into(), AttributeValue::N("1".into()));
                TransactWriteItem::builder().update(
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_attrs(key)))
                        .update_expression("SET v = :v ADD ver :one")
                        .set_condition_expression(expr)
                        .set_expression_attribute_values(Some(values))
                        .build()
                        .map_err(|e| StoreError::permanent("dynamodb transact", e))?,
                )
            }
            Write::Delete { key, .. } => TransactWriteItem::builder().delete(
                Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_attrs(key)))
                    .set_condition_expression(expr)
                    .set_expression_attribute_values((!values.is_empty()).then_some(values))
                    .build()
                    .map_err(|e| StoreError::permanent("dynamodb transact", e))?,
            ),
            Write::Check { key, condition } => {
                let expr = match condition {
                    // A check without a condition checks nothing; keep the
                    // item in the transaction with an always-true expression.
                    Condition::Any => {
                        "attribute_exists(pk) OR attribute_not_exists(pk)".to_string()
                    }
                    _ => expr.unwrap_or_default(),
                };
                TransactWriteItem::builder().condition_check(
                    ConditionCheck::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_attrs(key)))
                        .condition_expression(expr)
                        .set_expression_attribute_values((!values.is_empty()).then_some(values))
                        .build()
                        .map_err(|e| StoreError::permanent("dynamodb transact", e))?,
                )
            }
        };
        Ok(built.build())
    }

    /// One write without a transaction (half the cost of a transaction).
    async fn write_one(&self, write: &Write) -> StoreResult<Outcome> {
        let (expr, mut values) = condition_expr(write.condition());
        let result = match write {
            Write::Put { key, value, .. } => {
                values.insert(":v".into(), AttributeValue::B(Blob::new(value.clone())));
                values.insert(":one".into(), AttributeValue::N("1".into()));
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key_attrs(key)))
                    .update_expression("SET v = :v ADD ver :one")
                    .set_condition_expression(expr)
                    .set_expression_attribute_values(Some(values))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        if e.as_service_error()
                            .is_some_and(|s| s.is_conditional_check_failed_exception())
                        {
                            None
                        } else {
                            Some(classify("dynamodb put", e))
                        }
                    })
            }
            Write::Delete { key, .. } => self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key_attrs(key)))
                .set_condition_expression(expr)
                .set_expression_attribute_values((!values.is_empty()).then_some(values))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception())
                    {
                        None
                    } else {
                        Some(classify("dynamodb delete", e))
                    }
                }),
            Write::Check { key, condition } => {
                let version = self.get(key).await?.map(|i| i.version);
                return Ok(if condition.holds(version) {
                    Outcome::Applied
                } else {
                    Outcome::Conflict
                });
            }
        };
        match result {
            Ok(()) => Ok(Outcome::Applied),
            Err(None) => Ok(Outcome::Conflict),
            Err(Some(e)) => Err(e),
        }
    }
}

#[async_trait]
impl Index for DynamoIndex {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        check_item_key(key)?;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attrs(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb get", e))?;
        out.item().map(to_item).transpose()
    }

    async fn query(
        &self,
        pk: &str,
        range: SkRange,
        limit: usize,
        reverse: bool,
    ) -> StoreResult<Vec<Item>> {
        check_item_key(&Key::new(pk, "x"))?;
        let mut values: Attrs =
            HashMap::from([(":pk".to_string(), AttributeValue::S(pk.to_string()))]);
        let condition = match range {
            SkRange::All => "pk = :pk",
            SkRange::Prefix(p) => {
                values.insert(":p".into(), AttributeValue::S(p));
                "pk = :pk AND begins_with(sk, :p)"
            }
            SkRange::Between(a, b) => {
                values.insert(":a".into(), AttributeValue::S(a));
                values.insert(":b".into(), AttributeValue::S(b));
                "pk = :pk AND sk BETWEEN :a AND :b"
            }
            SkRange::From(a) => {
                values.insert(":a".into(), AttributeValue::S(a));
                "pk = :pk AND sk >= :a"
            }
        };
        let mut items = Vec::new();
        let mut start: Option<Attrs> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .set_expression_attribute_values(Some(values.clone()))
                .consistent_read(true)
                .scan_index_forward(!reverse)
                .limit((limit - items.len()).min(1000) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("dynamodb query", e))?;
            for attrs in page.items() {
                items.push(to_item(attrs)?);
            }
            match page.last_evaluated_key() {
                Some(last) if items.len() < limit && !last.is_empty() => start = Some(last.clone()),
                _ => break,
            }
        }
        items.truncate(limit);
        Ok(items)
    }

    async fn transact(&self, writes: Vec<Write>) -> StoreResult<Outcome> {
        validate_writes(&writes)?;
        for w in &writes {
            check_item_key(w.key())?;
        }
        if let [only] = writes.as_slice() {
            return self.write_one(only).await;
        }
        let items = writes
            .iter()
            .map(|w| self.transact_item(w))
            .collect::<StoreResult<Vec<_>>>()?;
        let mut tries = 0;
        loop {
            tries += 1;
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(Outcome::Applied),
                Err(e) => e,
            };
            let reasons: Vec<String> = match err.as_service_error() {
                Some(s) if s.is_transaction_canceled_exception() => match s {
                    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(t) => {
                        t.cancellation_reasons().iter().filter_map(|r| r.code().map(str::to_string)).collect()
                    }
                    _ => Vec::new(),
                },
                _ => return Err(classify("dynamodb transact", err)),
            };
            if reasons.iter().any(|r| r == "ConditionalCheckFailed") {
                return Ok(Outcome::Conflict);
            }
            let contention = reasons.iter().any(|r| {
                r == "TransactionConflict"
                    || r == "ThrottlingError"
                    || r == "ProvisionedThroughputExceeded"
            });
            if contention && tries < TRANSACTION_CONFLICT_TRIES {
                tokio::time::sleep(std::time::Duration::from_millis(20 * tries as u64)).await;
                continue;
            }
            let message = err.message().unwrap_or("transaction cancelled").to_string();
            return Err(if contention {
                StoreError::retryable("dynamodb transact", format!("{message} ({reasons:?})"))
            } else {
                StoreError::permanent("dynamodb transact", format!("{message} ({reasons:?})"))
            });
        }
    }

    async fn increment(&self, key: &Key, by: u64) -> StoreResult<u64> {
        check_item_key(key)?;
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(counter_key(key)))
            .update_expression("ADD n :by")
            .expression_attribute_values(":by", AttributeValue::N(by.to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| classify("dynamodb increment", e))?;
        number(out.attributes().unwrap_or(&HashMap::new()), "n")
    }

    async fn counter(&self, key: &Key) -> StoreResult<u64> {
        check_item_key(key)?;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(counter_key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb counter", e))?;
        number(out.item().unwrap_or(&HashMap::new()), "n")
    }
}
