//! An index in memory, for the unit tests of what core builds on the
//! index port (the adapters have their own, and the contract suites in
//! `tests/` hold them to the same rules).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Index, Item, Key, Outcome, SkRange, StoreResult, Write, validate_writes};

/// (partition, sort key) → (value, version).
type Items = BTreeMap<(String, String), (Vec<u8>, u64)>;

#[derive(Debug, Default)]
pub struct MemoryIndex {
    items: Mutex<Items>,
    counters: Mutex<BTreeMap<(String, String), u64>>,
}

fn pair(key: &Key) -> (String, String) {
    (key.pk.clone(), key.sk.clone())
}

#[async_trait]
impl Index for MemoryIndex {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        let items = self.items.lock().unwrap();
        Ok(items.get(&pair(key)).map(|(value, version)| Item {
            key: key.clone(),
            value: value.clone(),
            version: *version,
        }))
    }

    async fn query(
        &self,
        pk: &str,
        range: SkRange,
        limit: usize,
        reverse: bool,
    ) -> StoreResult<Vec<Item>> {
        let items = self.items.lock().unwrap();
        let mut out: Vec<Item> = items
            .iter()
            .filter(|((p, sk), _)| {
                p == pk
                    && match &range {
                        SkRange::All => true,
                        SkRange::Prefix(prefix) => sk.starts_with(prefix.as_str()),
                        SkRange::Between(lo, hi) => sk >= lo && sk <= hi,
                        SkRange::From(lo) => sk >= lo,
                    }
            })
            .map(|((p, sk), (value, version))| Item {
                key: Key::new(p.clone(), sk.clone()),
                value: value.clone(),
                version: *version,
            })
            .collect();
        if reverse {
            out.reverse();
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn transact(&self, writes: Vec<Write>) -> StoreResult<Outcome> {
        validate_writes(&writes)?;
        let mut items = self.items.lock().unwrap();
        let holds = |w: &Write| {
            let version = items.get(&pair(w.key())).map(|(_, v)| *v);
            w.condition().holds(version)
        };
        if !writes.iter().all(holds) {
            return Ok(Outcome::Conflict);
        }
        for w in writes {
            match w {
                Write::Put { key, value, .. } => {
                    let version = items.get(&pair(&key)).map_or(0, |(_, v)| *v) + 1;
                    items.insert(pair(&key), (value, version));
                }
                Write::Delete { key, .. } => {
                    items.remove(&pair(&key));
                }
                Write::Check { .. } => {}
            }
        }
        Ok(Outcome::Applied)
    }

    async fn increment(&self, key: &Key, by: u64) -> StoreResult<u64> {
        let mut counters = self.counters.lock().unwrap();
        let n = counters.entry(pair(key)).or_insert(0);
        *n += by;
        Ok(*n)
    }

    async fn counter(&self, key: &Key) -> StoreResult<u64> {
        Ok(self
            .counters
            .lock()
            .unwrap()
            .get(&pair(key))
            .copied()
            .unwrap_or(0))
    }
}
