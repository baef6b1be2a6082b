//! Counted connection slots: how many connections one key (a client
//! address on a listener; an IMAP user from one address) holds, each
//! released when its [`Slot`] is dropped.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Open connections per key.
#[derive(Debug)]
pub struct Slots<K: Hash + Eq + Clone + Debug> {
    open: Mutex<HashMap<K, usize>>,
}

impl<K: Hash + Eq + Clone + Debug> Default for Slots<K> {
    fn default() -> Self {
        Slots {
            open: Mutex::new(HashMap::new()),
        }
    }
}

/// One connection counted against its key; uncounted when dropped.
#[derive(Debug)]
pub struct Slot<K: Hash + Eq + Clone + Debug> {
    owner: Arc<Slots<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone + Debug> Slots<K> {
    /// A slot for `key`, or `None` when it already holds `limit`.
    pub fn acquire(self: &Arc<Self>, key: K, limit: usize) -> Option<Slot<K>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key.clone()).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(Slot {
            owner: self.clone(),
            key,
        })
    }
}

impl<K: Hash + Eq + Clone + Debug> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_per_key_and_come_back_when_dropped() {
        let slots: Arc<Slots<&str>> = Arc::default();
        let a1 = slots.acquire("a", 2).unwrap();
        let _a2 = slots.acquire("a", 2).unwrap();
        assert!(slots.acquire("a", 2).is_none(), "a holds two");
        let _b = slots.acquire("b", 2).unwrap();
        drop(a1);
        let _a3 = slots.acquire("a", 2).expect("one came back");
        assert!(slots.acquire("a", 2).is_none());
    }
}
