//! Small per-sandbox caches with a time to live (a warm Lambda sandbox handles many batches).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries beyond this are dropped wholesale (a sandbox sees a bounded set of mailboxes; this
/// only guards against unbounded growth).
const MAX_ENTRIES: usize = 10_000;

/// A map whose entries expire `ttl` after they were inserted.
pub(crate) struct TtlMap<K, V> {
    ttl: Duration,
    inner: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Hash + Eq, V: Clone> TtlMap<K, V> {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value if it is younger than the TTL.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.lock()
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    /// The value whatever its age (to reuse work when a re-read shows nothing changed).
    pub(crate) fn get_stale(&self, key: &K) -> Option<V> {
        self.lock().get(key).map(|(_, v)| v.clone())
    }

    pub(crate) fn insert(&self, key: K, value: V) {
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key, (Instant::now(), value));
    }

    /// Removes every entry whose key matches.
    pub(crate) fn remove_where(&self, mut matches: impl FnMut(&K) -> bool) {
        self.lock().retain(|k, _| !matches(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_but_stay_readable_as_stale() {
        let map = TtlMap::new(Duration::from_millis(30));
        map.insert("a", 1);
        assert_eq!(map.get(&"a"), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(map.get(&"a"), None);
        assert_eq!(map.get_stale(&"a"), Some(1));
        map.remove_where(|k| *k == "a");
        assert_eq!(map.get_stale(&"a"), None);
        map.insert("b", 2);
        map.insert("c", 3);
        map.remove_where(|k| *k == "b");
        assert_eq!((map.get(&"b"), map.get(&"c")), (None, Some(3)));
    }
}
