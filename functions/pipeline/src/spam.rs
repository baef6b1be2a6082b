//! What the gateway and the filter stage need around the pure scoring of
//! `stratus-filter`: the rules in force, the global model (from the blob
//! store when `stratus spam train --store` put one there, else the shipped
//! one; loaded once and looked at again every few minutes), and each
//! recipient's policy from their domain's and their own settings.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stratus_core::accounts::{AccountError, AccountResult, Accounts, strip_plus};
use stratus_core::ids::BlobKey;
use stratus_core::job::{Accepted, Filing, Origin, Verdict as JobVerdict};
use stratus_core::ports::{Condition, Key, Outcome, Write};
use stratus_core::spam::SpamSettings;
use stratus_core::{Address, BlobStore, Index, StoreError};
use stratus_filter::{
    Action, Analysis, AuthFacts, Classifier, Context, Model, Policy, Rules, Verdict,
};

/// Where a trained global model is kept in the blob store.
pub const MODEL_KEY: &str = "spam/model";

/// How long a loaded model is used before the store is asked again.
const MODEL_TTL: Duration = Duration::from_secs(300);

/// The rules and the model cache; one per process, shared.
#[derive(Debug)]
pub struct SpamEngine {
    pub rules: Rules,
    model: Mutex<Option<(Arc<Model>, Instant)>>,
}

impl SpamEngine {
    pub fn new(rules: Rules) -> Self {
        SpamEngine {
            rules,
            model: Mutex::new(None),
        }
    }

    /// The global model: the stored one if there is one, else the shipped
    /// one. A store that cannot be read keeps the model in use (or the
    /// shipped one): a filter never stops for its model.
    pub async fn model(&self, blobs: &dyn BlobStore) -> Arc<Model> {
        if let Some((model, loaded)) = self.model.lock().expect("not poisoned").as_ref()
            && loaded.elapsed() < MODEL_TTL
        {
            return model.clone();
        }
        let key = BlobKey::parse(MODEL_KEY).expect("a valid key");
        let loaded = match blobs.get(&key, None).await {
            Ok(Some(bytes)) => match Model::from_bytes(&bytes) {
                Ok(m) => Some(Arc::new(m)),
                Err(e) => {
                    tracing::warn!(error = %e, "the stored spam model is unreadable; using the shipped one");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored spam model; keeping the one in use");
                if let Some((model, _)) = self.model.lock().expect("not poisoned").as_ref() {
                    return model.clone();
                }
                None
            }
        };
        let model = loaded.unwrap_or_else(|| Arc::new(stratus_filter::shipped_model()));
        *self.model.lock().expect("not poisoned") = Some((model.clone(), Instant::now()));
        model
    }

    /// The policy of `recipient`: thresholds from the user, else the
    /// domain, else the rules; the lists of both.
    pub async fn policy(&self, accounts: &Accounts, recipient: &Address) -> AccountResult<Policy> {
        let (domain, user) = accounts.spam_settings_of(recipient).await?;
        Ok(compose(&self.rules, &domain, &user))
    }
}

/// A recipient's policy from the rules' defaults, the domain's settings
/// and the user's.
pub fn compose(rules: &Rules, domain: &SpamSettings, user: &SpamSettings) -> Policy {
    let mut policy = Policy::from_rules(rules);
    for s in [domain, user] {
        if let Some(junk) = s.junk {
            policy.junk = junk;
        }
        if let Some(reject) = s.reject {
            policy.reject = reject;
        }
        policy.allow.extend(s.allow.iter().cloned());
        policy.block.extend(s.block.iter().cloned());
    }
    policy
}

/// The delivery facts of an accepted message, for [`stratus_filter::score`].
pub fn context(message: &Accepted) -> Context {
    Context {
        mail_from: message.envelope.mail_from.as_ref().map(|a| a.to_string()),
        auth: AuthFacts::from_results(
            message.auth_results.as_deref().unwrap_or(""),
            message.dmarc_failure,
        ),
        listed: message.spam_listed.clone(),
        now: message.received_at,
    }
}

/// How `verdict` files a message for `recipient`: a refusal the message
/// got past (another recipient took it) files to Junk, a quarantine
/// symbol always to quarantine.
pub fn filing(recipient: &Address, verdict: &Verdict) -> Filing {
    Filing {
        recipient: recipient.account_key(),
        verdict: match verdict.action {
            _ if verdict.quarantine => JobVerdict::Quarantine,
            Action::Deliver => JobVerdict::Deliver,
            Action::Junk | Action::Reject => JobVerdict::Junk,
            Action::Quarantine => JobVerdict::Quarantine,
        },
        headers: verdict.headers(),
    }
}

/// Whether mail of this origin is scored: mail from outside only (what
/// users submit and what Stratus writes is not theirs to junk).
pub fn scored(origin: Origin) -> bool {
    origin == Origin::Inbound
}

/// Scores `a` for each of `recipients`, each with their policy and their
/// own model on top of the global one (a `+tag` counts as the user).
pub async fn verdicts(
    engine: &SpamEngine,
    index: &Arc<dyn Index>,
    blobs: &dyn BlobStore,
    a: &Analysis,
    ctx: &Context,
    recipients: impl Iterator<Item = &Address>,
) -> Result<Vec<Verdict>, StoreError> {
    let accounts = Accounts::new(index.clone());
    let model = engine.model(blobs).await;
    let mut out = Vec::new();
    for r in recipients {
        // A user whose name has a `+` is that user; otherwise `+tag` is
        // plus-addressing of the part before it.
        let account = match strip_plus(r) {
            Some(base) if accounts.user(r).await.map_err(store_error)?.is_none() => base,
            _ => r.clone(),
        };
        let policy = match engine.policy(&accounts, &account).await {
            Ok(p) => p,
            Err(AccountError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(recipient = %r, error = %e, "unreadable spam settings; the defaults apply");
                Policy::from_rules(&engine.rules)
            }
        };
        let user = user_model(index.as_ref(), blobs, &account).await?;
        let classifier = Classifier {
            global: &model,
            user: user.as_ref(),
        };
        out.push(stratus_filter::score(
            a,
            ctx,
            &engine.rules,
            classifier,
            &policy,
        ));
    }
    Ok(out)
}

/// A user's own model: the row `spamuser#<account key>` | `model` names
/// the blob that holds the counts (`spam/user/<account key in hex>/<random>`).
/// Each change writes a new blob and moves the row to it with a
/// conditional write, so two gateways learning for one user at once
/// never lose a message; the loser's blob is deleted, the old one too.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct UserModelRow {
    blob: BlobKey,
}

fn user_row(account: &Address) -> Key {
    Key::new(format!("spamuser#{}", account.account_key()), "model")
}

fn learned_row(account: &Address, body: &BlobKey) -> Key {
    Key::new(
        format!("spamlearned#{}", account.account_key()),
        body.as_str(),
    )
}

fn new_user_blob(account: &Address) -> BlobKey {
    let name = format!(
        "spam/user/{}/{}",
        account.account_key_hex(),
        stratus_core::ids::random_hex(8)
    );
    BlobKey::parse(&name).expect("hex makes a key")
}

/// The user's own counts, if they ever taught the filter.
pub async fn user_model(
    index: &dyn Index,
    blobs: &dyn BlobStore,
    account: &Address,
) -> Result<Option<Model>, StoreError> {
    let Some(item) = index.get(&user_row(account)).await? else {
        return Ok(None);
    };
    let Ok(row) = serde_json::from_slice::<UserModelRow>(&item.value) else {
        tracing::warn!(%account, "unreadable spam model row; the global model alone applies");
        return Ok(None);
    };
    match blobs.get(&row.blob, None).await? {
        Some(bytes) => match Model::from_bytes(&bytes) {
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                tracing::warn!(%account, error = %e, "unreadable spam model; the global model alone applies");
                Ok(None)
            }
        },
        None => Ok(None),
    }
}

/// How often a learning write that lost a race is tried again.
const LEARN_TRIES: usize = 8;

/// Teaches `account`'s model that the messages in `bodies` are spam (or
/// ham). A message already learnt as the same counts once; one learnt as
/// the other is unlearnt first. Bodies gone since are skipped.
pub async fn learn(
    account: &Address,
    bodies: &[BlobKey],
    spam: bool,
    ports: &crate::Ports,
) -> Result<usize, crate::HandlerError> {
    let mut learnt = 0;
    for body in bodies {
        let Some(raw) = ports.blobs.get(body, None).await? else {
            tracing::info!(%account, %body, "message gone before it was learnt; skipped");
            continue;
        };
        let tokens = tokio::task::spawn_blocking(move || Analysis::new(&raw).tokens)
            .await
            .map_err(|e| crate::HandlerError::Retryable(format!("analysis failed: {e}")))?;
        if learn_one(account, body, &tokens, spam, ports).await? {
            learnt += 1;
        }
    }
    Ok(learnt)
}

async fn learn_one(
    account: &Address,
    body: &BlobKey,
    tokens: &[u32],
    spam: bool,
    ports: &crate::Ports,
) -> Result<bool, crate::HandlerError> {
    let class = if spam { "spam" } else { "ham" };
    for _ in 0..LEARN_TRIES {
        let learned = ports.index.get(&learned_row(account, body)).await?;
        if learned
            .as_ref()
            .is_some_and(|i| i.value == class.as_bytes())
        {
            return Ok(false);
        }
        let row = ports.index.get(&user_row(account)).await?;
        let current = row
            .as_ref()
            .and_then(|i| serde_json::from_slice::<UserModelRow>(&i.value).ok())
            .map(|r| r.blob);
        let mut model = match &current {
            Some(key) => match ports.blobs.get(key, None).await? {
                Some(bytes) => Model::from_bytes(&bytes).map_err(|e| {
                    // Starting over would wipe what the user taught.
                    crate::HandlerError::Permanent(format!("{account}'s spam model {key}: {e}"))
                })?,
                // Replaced and deleted since we read the row: read again.
                None => continue,
            },
            None => Model::default(),
        };
        if learned.is_some() {
            model.learn(tokens, !spam, -1);
        }
        model.learn(tokens, spam, 1);
        let blob = new_user_blob(account);
        ports.blobs.put(&blob, model.to_bytes().into()).await?;
        let condition = |item: &Option<stratus_core::ports::Item>| match item {
            Some(i) => Condition::Version(i.version),
            None => Condition::Absent,
        };
        let writes = vec![
            Write::Put {
                key: user_row(account),
                value: serde_json::to_vec(&UserModelRow { blob: blob.clone() })
                    .expect("serialises"),
                condition: condition(&row),
            },
            Write::Put {
                key: learned_row(account, body),
                value: class.as_bytes().to_vec(),
                condition: condition(&learned),
            },
        ];
        match ports.index.transact(writes).await? {
            Outcome::Applied => {
                if let Some(old) = &current
                    && let Err(e) = ports.blobs.delete(old).await
                {
                    tracing::warn!(%account, error = %e, "cannot remove an old spam model generation");
                }
                tracing::info!(%account, %body, class, "learnt");
                return Ok(true);
            }
            Outcome::Conflict => {
                // Someone else learnt for this user in between: ours is
                // stale. Drop it and start again from theirs.
                let _ = ports.blobs.delete(&blob).await;
            }
        }
    }
    Err(crate::HandlerError::Retryable(format!(
        "learning for {account} kept losing races; tried {LEARN_TRIES} times"
    )))
}

fn store_error(e: AccountError) -> StoreError {
    match e {
        AccountError::Store(s) => s,
        other => StoreError::permanent("account", other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(ports: &crate::Ports, n: u32, words: &str) -> BlobKey {
        let key = BlobKey::parse(&format!("msg/test/{n}")).unwrap();
        let raw = format!("From: a@b.example\r\nSubject: {words}\r\n\r\n{words} {n}\r\n");
        ports
            .blobs
            .put(&key, raw.into_bytes().into())
            .await
            .unwrap();
        key
    }

    #[tokio::test]
    async fn a_message_counts_once_and_can_change_sides() {
        let dir = tempfile::tempdir().unwrap();
        let (ports, _queue) = crate::test_ports(dir.path());
        let alice = Address::parse("alice@example.org").unwrap();
        let one = body(&ports, 1, "cheap watches").await;
        let model_of = async |who: &Address| {
            user_model(ports.index.as_ref(), ports.blobs.as_ref(), who)
                .await
                .unwrap()
                .map(|m| (m.spam_messages, m.ham_messages))
        };
        let teach = async |bodies: &[BlobKey], spam: bool| {
            learn(&alice, bodies, spam, &ports).await.unwrap()
        };
        let once = std::slice::from_ref(&one);

        assert_eq!(model_of(&alice).await, None);
        assert_eq!(teach(once, true).await, 1);
        assert_eq!(teach(once, true).await, 0);
        assert_eq!(model_of(&alice).await, Some((1, 0)));
        // Moved out of Junk: now ham, and no longer spam.
        assert_eq!(teach(once, false).await, 1);
        assert_eq!(model_of(&alice).await, Some((0, 1)));
        // Another user's model is untouched.
        let bob = Address::parse("bob@example.org").unwrap();
        assert_eq!(model_of(&bob).await, None);
        // A body gone since is skipped.
        let gone = BlobKey::parse("msg/test/gone").unwrap();
        assert_eq!(teach(std::slice::from_ref(&gone), true).await, 0);
        // Only the current generation of the model is kept.
        let blobs = ports.blobs.list("spam/user/", None, 100).await.unwrap();
        assert_eq!(blobs.len(), 1, "{blobs:?}");
    }

    #[tokio::test]
    async fn lessons_at_once_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (ports, _queue) = crate::test_ports(dir.path());
        let alice = Address::parse("alice@example.org").unwrap();
        let mut keys = Vec::new();
        for n in 0..8 {
            keys.push(body(&ports, n, "offer").await);
        }
        let runs = keys.iter().map(|k| {
            let (alice, ports) = (alice.clone(), ports.clone());
            let k = k.clone();
            tokio::spawn(async move { learn(&alice, &[k], true, &ports).await.unwrap() })
        });
        let mut total = 0;
        for r in runs.collect::<Vec<_>>() {
            total += r.await.unwrap();
        }
        assert_eq!(total, 8);
        let m = user_model(ports.index.as_ref(), ports.blobs.as_ref(), &alice)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.spam_messages, 8);
    }
}
