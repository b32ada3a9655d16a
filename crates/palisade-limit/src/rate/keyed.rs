//! A rate limit per key (per client, per tenant, per route), bounded in memory.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::time::Duration;

use palisade_clock::{Clock, DefaultClock, Timestamp};
use serde::{Deserialize, Serialize};

use super::gcra::Gcra;
use super::{RateLimited, RateLimiterConfig, coarse_enough};
use crate::config::{ConfigError, check_range};
use crate::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, CachePadded, Mutex, Ordering, RwLock};

/// The most keys a keyed rate limiter may track: a hundred million.
pub const MAX_KEYS: usize = 100_000_000;

/// The configuration of a [`KeyedRateLimiter`]: the same limit for every key, and
/// the most keys tracked at once. In serde form the period is written in the
/// [duration grammar](palisade_clock::duration#the-grammar) of every Palisade configuration.
///
/// ```
/// use palisade_limit::rate::KeyedRateLimiterConfig;
///
/// let config: KeyedRateLimiterConfig =
///     serde_json::from_str(r#"{ "rate": 10, "period": "1s", "max_keys": 5000 }"#).unwrap();
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct KeyedRateLimiterConfig {
    /// Calls per `period` for each key; as [`RateLimiterConfig::rate`].
    pub rate: u32,
    /// As [`RateLimiterConfig::period`].
    #[serde(with = "palisade_clock::duration::serde")]
    pub period: Duration,
    /// As [`RateLimiterConfig::burst`].
    pub burst: Option<u32>,
    /// The most keys tracked at once; `1..=100_000_000`.
    ///
    /// Default 10 000: a few hundred kilobytes, enough for the active clients of a
    /// busy service. A new key beyond the bound evicts one key of its shard, found
    /// by looking at no more than 4 keys ([eviction](KeyedRateLimiter#eviction)):
    /// first a key whose limit has fully recovered (losing nothing), and a key that
    /// has been refused recently only when every key looked at has been. An evicted
    /// key's next check is that of a new key: it passes, with its whole burst. Make
    /// the bound larger than the number of keys active within one burst period, or
    /// evicted keys get their burst back early
    /// ([`evicted_limited`](KeyedRateLimiterSnapshot::evicted_limited) counts them).
    pub max_keys: usize,
}

impl Default for KeyedRateLimiterConfig {
    fn default() -> Self {
        let limit = RateLimiterConfig::default();
        KeyedRateLimiterConfig {
            rate: limit.rate,
            period: limit.period,
            burst: limit.burst,
            max_keys: 10_000,
        }
    }
}

impl KeyedRateLimiterConfig {
    /// `limit` for each key, at most `max_keys` keys.
    pub fn new(limit: RateLimiterConfig, max_keys: usize) -> Self {
        KeyedRateLimiterConfig {
            rate: limit.rate,
            period: limit.period,
            burst: limit.burst,
            max_keys,
        }
    }

    /// The limit each key gets.
    pub fn limit(&self) -> RateLimiterConfig {
        RateLimiterConfig {
            rate: self.rate,
            period: self.period,
            burst: self.burst,
        }
    }

    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.limit().validate()?;
        check_range("max_keys", self.max_keys, 1, MAX_KEYS)
    }
}

type Map<K> = HashMap<Slot<K>, Cell, BuildHasherDefault<Prehashed>>;
type Shard<K> = CachePadded<RwLock<Keys<K>>>;

/// The most keys one eviction looks at.
const SAMPLE: usize = 4;

/// A key's state: its theoretical arrival time and whether it was refused since
/// the eviction hand last passed it.
struct Cell {
    tat: AtomicU64,
    /// Set by a refused check (off the path of a passing call), cleared when the
    /// eviction hand passes the key: a key being refused is kept while others can
    /// go.
    refused: AtomicBool,
}

impl Cell {
    fn new(tat: u64) -> Self {
        Cell {
            tat: AtomicU64::new(tat),
            refused: AtomicBool::new(false),
        }
    }

    /// Marks the key refused; writes the shared word only if it is not marked yet.
    #[inline]
    fn refuse(&self) {
        if !self.refused.load(Ordering::Relaxed) {
            self.refused.store(true, Ordering::Relaxed);
        }
    }
}

/// One shard: the map of keys, and the same keys' hashes in a ring that the
/// eviction hand goes round (CLOCK).
struct Keys<K> {
    map: Map<K>,
    /// The hash of every key of `map`, once each (two keys of one hash are two
    /// entries), in the order the hand visits them.
    ring: Vec<u64>,
    /// The next position of `ring` the hand looks at.
    hand: usize,
}

impl<K> Default for Keys<K> {
    fn default() -> Self {
        Keys {
            map: Map::default(),
            ring: Vec::new(),
            hand: 0,
        }
    }
}

impl<K: Eq> Keys<K> {
    /// The cell of the key at `position` of the ring.
    fn cell_at(&self, position: usize) -> &Cell {
        match self.map.get(&Hashed(self.ring[position])) {
            Some(cell) => cell,
            None => unreachable!("the ring and the map hold the same keys"),
        }
    }

    /// Removes the ring position of a key no longer in the map.
    fn forget(&mut self, position: usize) {
        self.ring.swap_remove(position);
        if self.hand >= self.ring.len() {
            self.hand = 0;
        }
    }
}

/// A key stored with its hash, so that a check hashes the key once: the hash picks
/// the shard and is handed to the shard's map as it is.
struct Slot<K> {
    hash: Hashed,
    key: K,
}

/// A hash alone, as a map lookup: it finds a key of that hash (the eviction hand
/// knows its keys by their hashes).
#[derive(PartialEq, Eq)]
struct Hashed(u64);

impl Hash for Hashed {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

impl<K> Borrow<Hashed> for Slot<K> {
    fn borrow(&self) -> &Hashed {
        &self.hash
    }
}

/// What a map lookup compares: a stored [`Slot`] or a [`Probe`] for a borrowed key.
trait Lookup<Q: ?Sized> {
    fn hash(&self) -> u64;
    fn key(&self) -> &Q;
}

struct Probe<'q, Q: ?Sized> {
    hash: u64,
    key: &'q Q,
}

impl<Q: ?Sized> Lookup<Q> for Probe<'_, Q> {
    fn hash(&self) -> u64 {
        self.hash
    }
    fn key(&self) -> &Q {
        self.key
    }
}

impl<K: Borrow<Q>, Q: ?Sized> Lookup<Q> for Slot<K> {
    fn hash(&self) -> u64 {
        self.hash.0
    }
    fn key(&self) -> &Q {
        self.key.borrow()
    }
}

impl<'a, K: Borrow<Q> + 'a, Q: ?Sized + 'a> Borrow<dyn Lookup<Q> + 'a> for Slot<K> {
    fn borrow(&self) -> &(dyn Lookup<Q> + 'a) {
        self
    }
}

impl<Q: ?Sized + Eq> PartialEq for dyn Lookup<Q> + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.hash() == other.hash() && self.key() == other.key()
    }
}

impl<Q: ?Sized + Eq> Eq for dyn Lookup<Q> + '_ {}

impl<Q: ?Sized> Hash for dyn Lookup<Q> + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(Lookup::hash(self));
    }
}

impl<K: Eq> PartialEq for Slot<K> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.key == other.key
    }
}

impl<K: Eq> Eq for Slot<K> {}

impl<K> Hash for Slot<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash.0);
    }
}

/// The hasher of the shard maps: the key's hash was computed already.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is ever called; fold anything else in all the same.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A GCRA rate limit per key, in bounded memory.
///
/// Each key has its own theoretical arrival time in one atomic word. A check of a
/// known key takes the read lock of one of up to 64 shards, looks the key up and does
/// one compare-and-swap; only a new key takes its shard's write lock. The shards
/// together hold at most [`max_keys`](KeyedRateLimiterConfig::max_keys) keys, each
/// an even share (so with many shards a shard may start evicting a little before
/// `max_keys` keys are tracked in all; below 128 keys there is one shard and the
/// bound is exact). [`retain_recent`](KeyedRateLimiter::retain_recent) drops the
/// keys whose limit has fully recovered (they are the same as absent ones).
///
/// The clock reading is chosen as for [`RateLimiter`](crate::RateLimiter).
///
/// # Eviction
///
/// A new key for a full shard evicts one key of that shard, in constant time: each
/// shard keeps its keys in a ring with a hand (CLOCK), and one eviction looks at
/// the next 4 keys at the hand, at most. Of those, it evicts
///
/// 1. the first whose limit has fully recovered (its next call would pass with its
///    whole burst, as a new key's does: nothing is lost), or else
/// 2. the one closest to recovery among those not refused since the hand last
///    passed them, or else, when all of them were refused since,
/// 3. the one closest to recovery.
///
/// The hand then moves on to just past the evicted key, clearing the refused marks
/// of the keys it passes, and the new key takes the evicted key's place just
/// behind the hand, so it is looked at last. Under a flood the key at the hand is
/// usually the oldest of the flood and goes, so the hand moves about one key per
/// new key: a key refused at least once each time the hand goes round its shard
/// (about once per [`max_keys`](KeyedRateLimiterConfig::max_keys) new keys) is
/// evicted only when the other 3 keys looked at with it were all refused as well.
/// A flood of new keys evicts the flood's own keys, and the keys being limited
/// stay limited. A key that is merely busy, passing at its rate, is evicted as
/// soon as it is the closest to recovery of the 4 looked at. The mark costs a
/// passing call nothing: only a refused check writes it.
///
/// An evicted key's next check is that of a new key: it passes, with its whole
/// burst. A key evicted under rules 2 or 3 gets that burst early; the snapshot's
/// [`evicted_limited`](KeyedRateLimiterSnapshot::evicted_limited) counts them.
///
/// ```
/// use palisade_clock::ManualClock;
/// use palisade_limit::RateLimiterConfig;
/// use palisade_limit::rate::{KeyedRateLimiter, KeyedRateLimiterConfig};
///
/// let config = KeyedRateLimiterConfig::new(RateLimiterConfig::per_second(1), 1000);
/// let limiter: KeyedRateLimiter<String, _> =
///     KeyedRateLimiter::with_clock(config, ManualClock::new()).unwrap();
/// assert!(limiter.check("alice").is_ok());
/// assert!(limiter.check("alice").is_err());
/// assert!(limiter.check("bob").is_ok());
/// ```
pub struct KeyedRateLimiter<K, C: Clock = DefaultClock, S = RandomState> {
    inner: Arc<Inner<K, C, S>>,
}

struct Inner<K, C, S> {
    shards: Box<[Shard<K>]>,
    /// How many keys each shard may hold.
    capacity: Box<[AtomicUsize]>,
    shift: u32,
    hasher: S,
    interval: AtomicU64,
    tolerance: AtomicU64,
    coarse: AtomicBool,
    clock: C,
    config: Mutex<KeyedRateLimiterConfig>,
    rejected: AtomicU64,
    evicted: AtomicU64,
    evicted_limited: AtomicU64,
}

impl<K: Hash + Eq> KeyedRateLimiter<K> {
    /// A keyed rate limiter on the default (tokio) clock.
    pub fn new(config: KeyedRateLimiterConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<K: Hash + Eq, C: Clock> KeyedRateLimiter<K, C> {
    /// A keyed rate limiter on `clock`.
    pub fn with_clock(config: KeyedRateLimiterConfig, clock: C) -> Result<Self, ConfigError> {
        Self::with_hasher(config, clock, RandomState::new())
    }
}

/// The number of shards: four per thread of the machine, a power of two, at most
/// 64, and few enough that each holds at least [`MIN_KEYS_PER_SHARD`] keys (so a
/// small bound is exact: a single shard).
fn shard_count(max_keys: usize) -> usize {
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
    let mut n = (threads * 4).next_power_of_two().min(64);
    while n > 1 && n * MIN_KEYS_PER_SHARD > max_keys {
        n /= 2;
    }
    n
}

/// The fewest keys a shard holds; see [`shard_count`].
const MIN_KEYS_PER_SHARD: usize = 64;

fn capacities(max_keys: usize, shards: usize) -> impl Iterator<Item = usize> {
    (0..shards).map(move |i| max_keys / shards + usize::from(i < max_keys % shards))
}

impl<K: Hash + Eq, C: Clock, S: BuildHasher + Clone> KeyedRateLimiter<K, C, S> {
    /// A keyed rate limiter on `clock` hashing keys with `hasher`. The default,
    /// [`RandomState`], resists keys chosen to collide; a faster hasher is safe only
    /// for keys no client chooses.
    pub fn with_hasher(
        config: KeyedRateLimiterConfig,
        clock: C,
        hasher: S,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let n = shard_count(config.max_keys);
        let limit = config.limit();
        Ok(KeyedRateLimiter {
            inner: Arc::new(Inner {
                shards: (0..n)
                    .map(|_| CachePadded::new(RwLock::new(Keys::default())))
                    .collect(),
                capacity: capacities(config.max_keys, n)
                    .map(AtomicUsize::new)
                    .collect(),
                shift: 64 - n.trailing_zeros(),
                hasher,
                interval: AtomicU64::new(limit.emission_nanos()),
                tolerance: AtomicU64::new(limit.tolerance_nanos()),
                coarse: AtomicBool::new(coarse_enough(limit.burst_nanos())),
                clock,
                config: Mutex::new(config),
                rejected: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
                evicted_limited: AtomicU64::new(0),
            }),
        })
    }

    #[inline]
    fn gcra(&self) -> Gcra {
        Gcra {
            interval: self.inner.interval.load(Ordering::Relaxed),
            tolerance: self.inner.tolerance.load(Ordering::Relaxed),
        }
    }

    #[inline]
    fn now(&self) -> Timestamp {
        if self.inner.coarse.load(Ordering::Relaxed) {
            self.inner.clock.recent()
        } else {
            self.inner.clock.now()
        }
    }

    /// The shard (from the top bits of the key's hash) and the hash its map uses
    /// (all the bits mixed again, so that keys of one shard still spread over the
    /// map's buckets and tags).
    #[inline]
    fn locate<Q: Hash + ?Sized>(&self, key: &Q) -> (usize, u64) {
        let hash = self.inner.hasher.hash_one(key);
        let shard = if self.inner.shards.len() == 1 {
            0
        } else {
            (hash >> self.inner.shift) as usize
        };
        (shard, hash.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Lets one call for `key` through now, or says when one would pass.
    #[inline]
    pub fn check<Q>(&self, key: &Q) -> Result<(), RateLimited>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now = self.now().as_nanos();
        let gcra = self.gcra();
        let (index, hash) = self.locate(key);
        let probe = Probe { hash, key };
        {
            let keys = self.inner.shards[index].read();
            if let Some(cell) = keys.map.get(&probe as &dyn Lookup<Q>) {
                return gcra
                    .check(&cell.tat, now)
                    .map_err(|wait| self.limited(cell, wait));
            }
        }
        self.check_new(index, probe, gcra, now)
    }

    #[cold]
    fn check_new<Q>(
        &self,
        index: usize,
        probe: Probe<'_, Q>,
        gcra: Gcra,
        now: u64,
    ) -> Result<(), RateLimited>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut guard = self.inner.shards[index].write();
        let keys: &mut Keys<K> = &mut guard;
        #[cfg(loom)]
        let recheck = !crate::sync::broken::is(crate::sync::broken::Bug::KeyedNoRecheck);
        #[cfg(not(loom))]
        let recheck = true;
        if recheck {
            if let Some(cell) = keys.map.get(&probe as &dyn Lookup<Q>) {
                // Another call inserted it meanwhile.
                return gcra
                    .check(&cell.tat, now)
                    .map_err(|wait| self.limited(cell, wait));
            }
        }
        let capacity = self.inner.capacity[index].load(Ordering::Relaxed).max(1);
        // The ring position freed by the last eviction, for the new key.
        let mut free = None;
        while keys.map.len() >= capacity {
            if let Some(position) = free.take() {
                // The bound was lowered: more than one key goes.
                keys.forget(position);
            }
            free = Some(self.evict_one(keys, now));
        }
        // A new key starts with its whole burst: as if its TAT were long past.
        match gcra.decide(0, now) {
            Ok(tat) => {
                let slot = Slot {
                    hash: Hashed(probe.hash),
                    key: probe.key.to_owned(),
                };
                keys.map.insert(slot, Cell::new(tat));
                match free {
                    Some(position) => keys.ring[position] = probe.hash,
                    None => keys.ring.push(probe.hash),
                }
                Ok(())
            }
            // Only possible if the burst were zero, which validation forbids.
            Err(wait) => {
                if let Some(position) = free {
                    keys.forget(position);
                }
                self.inner.rejected.fetch_add(1, Ordering::Relaxed);
                Err(RateLimited::new(Duration::from_nanos(wait)))
            }
        }
    }

    /// Removes one key of a non-empty shard, chosen by the hand as the
    /// [type's docs](KeyedRateLimiter#eviction) say, and returns its ring position
    /// (which still holds the evicted key's hash, for the caller to overwrite or
    /// forget).
    fn evict_one(&self, keys: &mut Keys<K>, now: u64) -> usize {
        let len = keys.ring.len();
        let start = keys.hand % len;
        let next = |position: usize| if position + 1 == len { 0 } else { position + 1 };
        // The closest to recovery among the unmarked keys looked at, and among all.
        let mut unmarked: Option<(u64, usize)> = None;
        let mut any: Option<(u64, usize)> = None;
        let mut recovered = None;
        let mut position = start;
        for _ in 0..SAMPLE.min(len) {
            let cell = keys.cell_at(position);
            let tat = cell.tat.load(Ordering::Relaxed);
            if tat <= now {
                recovered = Some((tat, position));
                break;
            }
            if !cell.refused.load(Ordering::Relaxed) && unmarked.is_none_or(|(best, _)| tat < best)
            {
                unmarked = Some((tat, position));
            }
            if any.is_none_or(|(best, _)| tat < best) {
                any = Some((tat, position));
            }
            position = next(position);
        }
        let (tat, victim) = match recovered.or(unmarked).or(any) {
            Some(found) => found,
            None => unreachable!("a full shard has keys to look at"),
        };
        // The hand passes the keys before the victim, clearing their marks (the
        // write lock is held: no check reads or writes a mark meanwhile), and stops
        // just past the victim, whose place the new key takes.
        let mut position = start;
        while position != victim {
            keys.cell_at(position)
                .refused
                .store(false, Ordering::Relaxed);
            position = next(position);
        }
        keys.hand = next(victim);
        keys.map.remove(&Hashed(keys.ring[victim]));
        self.inner.evicted.fetch_add(1, Ordering::Relaxed);
        if tat > now {
            self.inner.evicted_limited.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                keys = keys.map.len(),
                "keyed rate limiter full: evicted a key still being limited"
            );
        }
        victim
    }

    /// A refused check: counts it and marks the key, so that eviction keeps it.
    #[cold]
    fn limited(&self, cell: &Cell, wait: Duration) -> RateLimited {
        cell.refuse();
        self.inner.rejected.fetch_add(1, Ordering::Relaxed);
        RateLimited::new(wait)
    }

    /// Drops every key whose limit has fully recovered (it behaves exactly as an
    /// absent key). Call it now and then to return memory; it takes each shard's
    /// write lock in turn.
    pub fn retain_recent(&self) {
        let now = self.inner.clock.now().as_nanos();
        for shard in self.inner.shards.iter() {
            let mut guard = shard.write();
            let keys: &mut Keys<K> = &mut guard;
            keys.map
                .retain(|_, cell| cell.tat.load(Ordering::Relaxed) > now);
            keys.ring.clear();
            keys.ring.extend(keys.map.keys().map(|slot| slot.hash.0));
            keys.hand = 0;
        }
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.read().map.len()).sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies a new configuration to the live limiter (hot reload). Keys already
    /// tracked keep their schedules; a lower `max_keys` evicts as new keys arrive.
    pub fn reconfigure(&self, config: &KeyedRateLimiterConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let mut current = self.inner.config.lock();
        let limit = config.limit();
        self.inner
            .interval
            .store(limit.emission_nanos(), Ordering::Relaxed);
        self.inner
            .tolerance
            .store(limit.tolerance_nanos(), Ordering::Relaxed);
        self.inner
            .coarse
            .store(coarse_enough(limit.burst_nanos()), Ordering::Relaxed);
        for (slot, capacity) in self
            .inner
            .capacity
            .iter()
            .zip(capacities(config.max_keys, self.inner.shards.len()))
        {
            slot.store(capacity, Ordering::Relaxed);
        }
        if *current != *config {
            tracing::info!(
                rate = config.rate,
                period = ?config.period,
                burst = limit.effective_burst(),
                max_keys = config.max_keys,
                "keyed rate limit changed"
            );
        }
        *current = config.clone();
        Ok(())
    }

    /// The configuration in effect.
    pub fn config(&self) -> KeyedRateLimiterConfig {
        self.inner.config.lock().clone()
    }

    /// The counters of the moment.
    pub fn snapshot(&self) -> KeyedRateLimiterSnapshot {
        KeyedRateLimiterSnapshot {
            keys: self.len(),
            rejected: self.inner.rejected.load(Ordering::Relaxed),
            evicted: self.inner.evicted.load(Ordering::Relaxed),
            evicted_limited: self.inner.evicted_limited.load(Ordering::Relaxed),
        }
    }

    /// The clock the limiter reads.
    pub fn clock(&self) -> &C {
        &self.inner.clock
    }
}

impl<K, C: Clock, S> Clone for KeyedRateLimiter<K, C, S> {
    fn clone(&self) -> Self {
        KeyedRateLimiter {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Hash + Eq, C: Clock, S: BuildHasher + Clone> fmt::Debug for KeyedRateLimiter<K, C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("config", &self.config())
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// A keyed rate limiter's counters at one moment.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyedRateLimiterSnapshot {
    /// Keys tracked.
    pub keys: usize,
    /// Calls refused since creation.
    pub rejected: u64,
    /// Keys evicted to make room for new ones, since creation.
    pub evicted: u64,
    /// Of those, keys whose limit had not recovered yet (they got their burst back
    /// early): if this grows, `max_keys` is too small.
    pub evicted_limited: u64,
}
