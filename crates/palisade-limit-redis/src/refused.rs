//! The cache of keys refused lately: a key that Redis said is over its limit
//! until some instant is refused locally until then, without a round trip.
//!
//! A fixed table of slots, each one atomic word: the upper 32 bits are a
//! fingerprint of the key's hash, the lower 32 the instant (in milliseconds since
//! the cache was made) until which the key is certainly refused. The slot is the
//! hash's low bits, so a key is found by one load and no lock; a refusal is
//! written by one store, taking the slot over from whatever key had it (the table
//! is bounded: an older refusal is forgotten, which costs a round trip, never a
//! wrong answer). Two keys with the same slot and fingerprint (about one in 2^32
//! per lookup of a slot holding another refused key) share a refusal: the cost of
//! the cache, bounded by the other key's retry-after.
//!
//! Only a refusal of a single unit is cached: when one unit does not pass,
//! nothing does until the instant written, whatever any replica does meanwhile
//! (other decisions only push a key's schedule later).

use std::sync::atomic::{AtomicU64, Ordering};

/// The table; see the module docs.
#[derive(Debug)]
pub(crate) struct RefusedCache {
    slots: Box<[AtomicU64]>,
    mask: u64,
}

/// The largest instant a slot can hold, in milliseconds (about 49 days).
const MAX_MILLIS: u64 = u32::MAX as u64;

impl RefusedCache {
    /// A table of `slots` slots rounded up to a power of two, or none for 0.
    pub(crate) fn new(slots: usize) -> Option<Self> {
        if slots == 0 {
            return None;
        }
        let n = slots.next_power_of_two();
        Some(RefusedCache {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
            mask: n as u64 - 1,
        })
    }

    #[inline]
    fn place(&self, hash: u64) -> (&AtomicU64, u64) {
        let fingerprint = (hash >> 32) | 1;
        (&self.slots[(hash & self.mask) as usize], fingerprint << 32)
    }

    /// How many milliseconds more the key of `hash` is refused at `now_ms`, if it
    /// is. One relaxed load.
    #[inline]
    pub(crate) fn refused(&self, hash: u64, now_ms: u64) -> Option<u64> {
        let (slot, tag) = self.place(hash);
        let word = slot.load(Ordering::Relaxed);
        let until = word & MAX_MILLIS;
        (word & !MAX_MILLIS == tag && until > now_ms).then(|| until - now_ms)
    }

    /// Remembers that the key of `hash` is refused until `until_ms`.
    pub(crate) fn insert(&self, hash: u64, until_ms: u64) {
        if until_ms > MAX_MILLIS {
            return;
        }
        let (slot, tag) = self.place(hash);
        slot.store(tag | until_ms, Ordering::Relaxed);
    }

    #[cfg(test)]
    /// Forgets the key of `hash`, if its slot still holds it (a decision that
    /// passed after all: another process's configuration, a reset key).
    pub(crate) fn forget(&self, hash: u64) {
        let (slot, tag) = self.place(hash);
        let word = slot.load(Ordering::Relaxed);
        if word & !MAX_MILLIS == tag {
            let _ = slot.compare_exchange(word, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    #[cfg(test)]
    /// How many slots the table has.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Clone, Debug)]
    enum Op {
        Insert { key: u8, until: u64 },
        Check { key: u8, now: u64 },
        Forget { key: u8 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u8>(), 0u64..2000).prop_map(|(key, until)| Op::Insert { key, until }),
            (any::<u8>(), 0u64..2000).prop_map(|(key, now)| Op::Check { key, now }),
            any::<u8>().prop_map(|key| Op::Forget { key }),
        ]
    }

    /// Distinct keys' hashes: distinct fingerprints, and slots that collide often
    /// in a small table.
    fn hash(key: u8) -> u64 {
        (u64::from(key).wrapping_mul(0x9E37_79B9_7F4A_7C15) & !0xFFFF_FFFF) | u64::from(key)
    }

    proptest! {
        /// Against a model that remembers, per slot, the last key written and its
        /// instant: the cache answers exactly what the model does, and never
        /// refuses a key that was not refused (or refuses it longer).
        #[test]
        fn matches_the_model(slots in 1usize..64, ops in proptest::collection::vec(op(), 1..200)) {
            let cache = RefusedCache::new(slots).unwrap();
            let mask = cache.len() as u64 - 1;
            let mut model: HashMap<u64, (u8, u64)> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert { key, until } => {
                        cache.insert(hash(key), until);
                        model.insert(hash(key) & mask, (key, until));
                    }
                    Op::Forget { key } => {
                        cache.forget(hash(key));
                        if model.get(&(hash(key) & mask)).is_some_and(|(k, _)| *k == key) {
                            model.remove(&(hash(key) & mask));
                        }
                    }
                    Op::Check { key, now } => {
                        let expected = match model.get(&(hash(key) & mask)) {
                            Some((k, until)) if *k == key && *until > now => Some(until - now),
                            _ => None,
                        };
                        prop_assert_eq!(cache.refused(hash(key), now), expected);
                    }
                }
            }
        }
    }

    /// Threads writing and reading the same slots see only words some writer
    /// wrote whole: a key is refused only with an instant written for it.
    #[test]
    fn concurrent_writers_never_mix_keys() {
        let cache = std::sync::Arc::new(RefusedCache::new(4).unwrap());
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        let key = (i % 8) as u8;
                        // Each key is only ever written with instants ≡ key (mod 8).
                        cache.insert(hash(key), 8 * (i + u64::from(t)) + u64::from(key) + 1000);
                        for other in 0..8u8 {
                            if let Some(left) = cache.refused(hash(other), 0) {
                                assert_eq!(left % 8, u64::from(other) % 8);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
