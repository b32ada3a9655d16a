//! One breaker per key, created on demand, with a bound on the keys.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

use palisade_clock::{Clock, DefaultClock, Timestamp};
use serde::{Deserialize, Serialize};

use crate::breaker::{Breaker, BreakerBuilder};
use crate::config::{BreakerConfig, ConfigError};
use crate::error::Rejected;
use crate::event::Transition;
use crate::permit::OwnedPermit;
use crate::sync::{Arc, AtomicU64, Mutex, Ordering, RwLock};

/// The bounds of a [`Registry`].
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | [`max_keys`](Self::max_keys) | 1 000 | above the hosts, tenants or endpoints most services talk to, and a bounded cost: a key is [`Breaker::memory_bytes`], about 15 KB with the default time window on a small machine (its counters are striped per core), so a full registry is some 15 MB; a count window of 100 calls costs well under 1 KB |
/// | [`idle_timeout`](Self::idle_timeout) | 10 min | a key unused for that long has no state worth keeping: its window has emptied and an open duration has long passed |
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// The most keys held at once, 1..=10 000 000. A new key beyond it evicts one
    /// key of its shard, chosen among 8 at most ([eviction](Registry#eviction)):
    /// an idle one first, then the least recently used closed breaker; an open or
    /// half-open breaker only when all 8 are. An evicted key's next use creates a
    /// fresh closed breaker.
    pub max_keys: usize,
    /// A key unused for this long, 1 s..=1 day, is idle: it is removed when the
    /// eviction hand next passes it, or by [`Registry::evict_idle`]. In serde form, a
    /// duration in the [duration grammar](palisade_clock::duration#the-grammar).
    #[serde(with = "palisade_clock::duration::serde")]
    pub idle_timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            max_keys: 1_000,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

impl RegistryConfig {
    /// The same bounds, holding at most `max_keys` keys.
    #[must_use]
    pub const fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// The same bounds, with keys idle after `idle_timeout` unused.
    #[must_use]
    pub const fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Checks both fields; the error names the bad one and its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=10_000_000).contains(&self.max_keys) {
            return Err(ConfigError::new(
                "registry.max_keys",
                self.max_keys,
                "1..=10000000",
            ));
        }
        if !(Duration::from_secs(1)..=crate::config::MAX_DURATION).contains(&self.idle_timeout) {
            return Err(ConfigError::duration(
                "registry.idle_timeout",
                self.idle_timeout,
                "1s..=24h",
            ));
        }
        Ok(())
    }
}

const SHARDS: usize = 16;

/// The most keys one eviction or one step of the idle sweep looks at.
const SAMPLE: usize = 8;

type Shard<K, C> = RwLock<Keys<K, C>>;

/// One shard: the map of keys, and the same keys in a ring that the eviction hand
/// goes round (CLOCK).
struct Keys<K, C: Clock> {
    map: HashMap<K, Entry<C>>,
    /// Every key of `map`, once each, in the order the hand visits them.
    ring: Vec<K>,
    /// The next position of `ring` the hand looks at.
    hand: usize,
}

impl<K: Hash + Eq, C: Clock> Keys<K, C> {
    fn new() -> Self {
        Keys {
            map: HashMap::new(),
            ring: Vec::new(),
            hand: 0,
        }
    }

    fn entry_at(&self, position: usize) -> &Entry<C> {
        match self.map.get(&self.ring[position]) {
            Some(entry) => entry,
            None => unreachable!("the ring and the map hold the same keys"),
        }
    }

    /// Removes the key at `position` of the ring from the map and the ring; the
    /// last key of the ring takes its place.
    fn remove_at(&mut self, position: usize) -> K {
        let key = self.ring.swap_remove(position);
        self.map.remove(&key);
        if self.hand >= self.ring.len() {
            self.hand = 0;
        }
        key
    }

    /// The ring again from the map, after keys left the map in bulk.
    fn rebuild_ring(&mut self)
    where
        K: Clone,
    {
        self.ring.clear();
        self.ring.extend(self.map.keys().cloned());
        self.hand = 0;
    }

    /// One step of the idle sweep: removes the idle keys among the next
    /// [`SAMPLE`] at the hand; returns how many.
    fn sweep_step(&mut self, now: Timestamp, idle: Duration) -> usize {
        let mut removed = 0;
        for _ in 0..SAMPLE.min(self.ring.len()) {
            let position = self.hand % self.ring.len();
            if self.entry_at(position).idle(now) >= idle {
                // The last key moves here: the hand looks at it next.
                self.remove_at(position);
                removed += 1;
                if self.ring.is_empty() {
                    break;
                }
            } else {
                self.hand = if position + 1 == self.ring.len() {
                    0
                } else {
                    position + 1
                };
            }
        }
        removed
    }

    /// The ring position of the key to evict from a non-empty shard: of the next
    /// [`SAMPLE`] keys at the hand, the first idle one, or else the least recently
    /// used, closed breakers before others. Moves the hand just past it.
    fn victim(&mut self, now: Timestamp, idle: Duration) -> usize {
        let len = self.ring.len();
        let next = |position: usize| if position + 1 == len { 0 } else { position + 1 };
        let mut position = self.hand % len;
        let mut best: Option<((bool, u64), usize)> = None;
        for _ in 0..SAMPLE.min(len) {
            let entry = self.entry_at(position);
            if entry.idle(now) >= idle {
                best = Some(((false, 0), position));
                break;
            }
            let rank = (
                entry.breaker.state() != crate::State::Closed,
                entry.last_used.load(Ordering::Relaxed),
            );
            if best.is_none_or(|(b, _)| rank < b) {
                best = Some((rank, position));
            }
            position = next(position);
        }
        let victim = match best {
            Some((_, victim)) => victim,
            None => unreachable!("a non-empty shard has keys to look at"),
        };
        self.hand = next(victim);
        victim
    }
}

type KeyHook<K> = Arc<dyn Fn(&K, &Transition) + Send + Sync>;

/// One [`Breaker`] per key (host, tenant, endpoint), created on demand from one
/// configuration and bounded by [`RegistryConfig`], so that keys chosen by an
/// attacker cannot grow memory without bound.
///
/// Clones share the registry. Looking a key up takes a shared (read) lock on one of
/// 16 shards; hold on to the returned [`Breaker`] where a call path needs no lock at
/// all.
///
/// # Eviction
///
/// Inserting a key costs a bounded amount of work whatever the size: each shard
/// keeps its keys in a ring with a hand (CLOCK), and no insert looks at more than
/// 8 keys of a shard to find what to evict. A new key beyond
/// [`max_keys`](RegistryConfig::max_keys) evicts one key of its shard (or, if that
/// shard holds none, of the next shard holding keys): of the next 8 keys at the
/// hand,
///
/// 1. the first idle one (unused for the [idle timeout](RegistryConfig::idle_timeout)),
///    or else
/// 2. the least recently used closed breaker (use is recorded to the second), or
///    else, when all 8 are open, half-open or forced,
/// 3. the least recently used of them.
///
/// The hand then moves just past the evicted key, and the new key takes its place
/// when it belongs to the same shard, so it is looked at last. An evicted key's
/// next [`get`](Registry::get) creates a fresh closed breaker, which lets calls
/// through: an open breaker's state is worth more than a closed one's, which is why
/// closed ones go first. A [`Breaker`] handed out earlier keeps working, but is no
/// longer the registry's.
///
/// Idle keys also leave as keys arrive: each insert first looks at the next 8 keys
/// of its shard and removes the idle ones among them.
/// [`evict_idle`](Registry::evict_idle) removes all of them at once.
///
/// ```
/// use palisade_breaker::{BreakerConfig, Registry, RegistryConfig, State};
/// use palisade_classify::Outcome;
///
/// let registry: Registry<String> =
///     Registry::new(BreakerConfig::default().consecutive_failures(Some(2)), RegistryConfig::default())
///         .unwrap();
/// for _ in 0..2 {
///     registry.try_acquire(&"db-1".to_string()).unwrap().record(Outcome::Permanent);
/// }
/// assert_eq!(registry.get(&"db-1".to_string()).state(), State::Open);
/// assert_eq!(registry.get(&"db-2".to_string()).state(), State::Closed);
/// assert_eq!(registry.len(), 2);
/// ```
pub struct Registry<K, C: Clock = DefaultClock> {
    inner: Arc<RegistryInner<K, C>>,
}

struct RegistryInner<K, C: Clock> {
    shards: Box<[Shard<K, C>]>,
    hasher: RandomState,
    config: RwLock<BreakerConfig>,
    limits: RegistryConfig,
    clock: C,
    name: String,
    hooks: Vec<KeyHook<K>>,
    /// Serializes inserts, so that the bound holds exactly; guards the number of
    /// keys held.
    insert: Mutex<usize>,
}

struct Entry<C: Clock> {
    breaker: Breaker<C>,
    last_used: AtomicU64,
}

impl<K, C: Clock> Clone for Registry<K, C> {
    fn clone(&self) -> Self {
        Registry {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, C: Clock> fmt::Debug for Registry<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("name", &self.inner.name)
            .field("len", &*self.inner.insert.lock())
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Registry`] with a name, a clock and transition subscribers.
pub struct RegistryBuilder<K, C: Clock = DefaultClock> {
    config: BreakerConfig,
    limits: RegistryConfig,
    clock: C,
    name: String,
    hooks: Vec<KeyHook<K>>,
}

impl<K, C: Clock> fmt::Debug for RegistryBuilder<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("config", &self.config)
            .field("limits", &self.limits)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<K> Registry<K>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// A registry on the default clock; both configurations are validated.
    pub fn new(config: BreakerConfig, limits: RegistryConfig) -> Result<Self, ConfigError> {
        Self::builder(config, limits).build()
    }

    /// A builder, for a name, a clock or transition subscribers.
    pub fn builder(config: BreakerConfig, limits: RegistryConfig) -> RegistryBuilder<K> {
        RegistryBuilder {
            config,
            limits,
            clock: DefaultClock::default(),
            name: String::new(),
            hooks: Vec::new(),
        }
    }
}

impl<K, C> RegistryBuilder<K, C>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Clock,
{
    /// Reads time from `clock` instead of the default.
    pub fn clock<C2: Clock>(self, clock: C2) -> RegistryBuilder<K, C2> {
        RegistryBuilder {
            config: self.config,
            limits: self.limits,
            clock,
            name: self.name,
            hooks: self.hooks,
        }
    }

    /// The name; each breaker's tracing events carry `name[key]`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Calls `hook` with the key on every transition of every breaker.
    pub fn on_transition(mut self, hook: impl Fn(&K, &Transition) + Send + Sync + 'static) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// Validates both configurations and builds the registry, empty.
    pub fn build(self) -> Result<Registry<K, C>, ConfigError> {
        self.config.validate()?;
        self.limits.validate()?;
        Ok(Registry {
            inner: Arc::new(RegistryInner {
                shards: (0..SHARDS).map(|_| RwLock::new(Keys::new())).collect(),
                hasher: RandomState::new(),
                config: RwLock::new(self.config),
                limits: self.limits,
                clock: self.clock,
                name: self.name,
                hooks: self.hooks,
                insert: Mutex::new(0),
            }),
        })
    }
}

impl<K, C> Registry<K, C>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Clock,
{
    /// The breaker of `key`, created if it does not exist.
    pub fn get<Q>(&self, key: &Q) -> Breaker<C>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let inner = &*self.inner;
        let shard = inner.shard(key);
        let now = inner.clock.recent();
        if let Some(entry) = inner.shards[shard].read().map.get(key) {
            entry.touch(now);
            return entry.breaker.clone();
        }
        inner.insert(shard, key.to_owned(), now)
    }

    /// Asks the breaker of `key` to run one call (see [`Breaker::try_acquire`]).
    pub fn try_acquire<Q>(&self, key: &Q) -> Result<OwnedPermit<C>, Rejected>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.get(key).try_acquire_owned()
    }

    /// The breaker of `key` if it exists; does not create one or mark it used.
    pub fn peek<Q>(&self, key: &Q) -> Option<Breaker<C>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = &*self.inner;
        inner.shards[inner.shard(key)]
            .read()
            .map
            .get(key)
            .map(|e| e.breaker.clone())
    }

    /// How many keys the registry holds.
    pub fn len(&self) -> usize {
        *self.inner.insert.lock()
    }

    /// Whether the registry holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys and their breakers, for health reports and metrics.
    pub fn entries(&self) -> Vec<(K, Breaker<C>)> {
        let mut out = Vec::new();
        for shard in self.inner.shards.iter() {
            out.extend(
                shard
                    .read()
                    .map
                    .iter()
                    .map(|(k, e)| (k.clone(), e.breaker.clone())),
            );
        }
        out
    }

    /// Removes the keys unused for longer than the idle timeout; returns how many.
    /// It visits every key, taking each shard's write lock in turn; inserting keys
    /// removes idle ones a few at a time on its own (see [eviction](Registry#eviction)).
    pub fn evict_idle(&self) -> usize {
        let now = self.inner.clock.recent();
        let mut len = self.inner.insert.lock();
        let removed = self.inner.sweep(now);
        *len -= removed;
        removed
    }

    /// Applies a changed configuration to every breaker (see
    /// [`Breaker::reconfigure`]) and to those created later. If the window's shape
    /// changed, existing breakers cannot take it: the registry is emptied and
    /// breakers are created afresh on demand.
    pub fn reconfigure(&self, config: BreakerConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let mut len = self.inner.insert.lock();
        let mut current = self.inner.config.write();
        let reshaped = current.window != config.window
            || current.slow_call.map(|s| s.duration) != config.slow_call.map(|s| s.duration);
        for shard in self.inner.shards.iter() {
            let mut keys = shard.write();
            if reshaped {
                keys.map.clear();
                keys.rebuild_ring();
            } else {
                for entry in keys.map.values() {
                    entry.breaker.reconfigure(config.clone())?;
                }
            }
        }
        if reshaped {
            *len = 0;
        }
        *current = config;
        Ok(())
    }
}

impl<C: Clock> Entry<C> {
    /// Marks the entry used; writes the shared word only when the time moved by a
    /// second, so that a busy key is not a contended cache line.
    #[inline]
    fn touch(&self, now: Timestamp) {
        let last = self.last_used.load(Ordering::Relaxed);
        if now.as_nanos().saturating_sub(last) >= 1_000_000_000 {
            self.last_used.store(now.as_nanos(), Ordering::Relaxed);
        }
    }

    fn idle(&self, now: Timestamp) -> Duration {
        Duration::from_nanos(
            now.as_nanos()
                .saturating_sub(self.last_used.load(Ordering::Relaxed)),
        )
    }
}

impl<K, C> RegistryInner<K, C>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Clock,
{
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    #[cold]
    fn insert(&self, shard: usize, key: K, now: Timestamp) -> Breaker<C> {
        let mut len = self.insert.lock();
        if let Some(entry) = self.shards[shard].read().map.get(&key) {
            entry.touch(now);
            return entry.breaker.clone();
        }
        let idle = self.limits.idle_timeout;
        let mut keys = self.shards[shard].write();
        // One step of the idle sweep, in the shard the key goes to.
        *len -= keys.sweep_step(now, idle);
        // The ring position freed in this shard, for the new key.
        let mut free = None;
        if *len >= self.limits.max_keys {
            // Still full: evict from this shard, or the next one holding keys.
            let victim = if keys.ring.is_empty() {
                drop(keys);
                let victim = self.evict_elsewhere(shard, now);
                keys = self.shards[shard].write();
                victim
            } else {
                let position = keys.victim(now, idle);
                free = Some(position);
                let victim = keys.ring[position].clone();
                keys.map.remove(&victim);
                Some(victim)
            };
            if let Some(victim) = victim {
                *len -= 1;
                tracing::debug!(
                    target: "palisade::breaker",
                    registry = &*self.name,
                    key = ?victim,
                    "registry full: evicted a key"
                );
            }
        }
        let breaker = self.build(&key);
        match free {
            Some(position) => keys.ring[position] = key.clone(),
            None => keys.ring.push(key.clone()),
        }
        keys.map.insert(
            key,
            Entry {
                breaker: breaker.clone(),
                last_used: AtomicU64::new(now.as_nanos()),
            },
        );
        *len += 1;
        breaker
    }

    /// Evicts a key of the first shard after `shard` that holds any; the caller
    /// holds the insert lock.
    fn evict_elsewhere(&self, shard: usize, now: Timestamp) -> Option<K> {
        for i in 1..SHARDS {
            let mut keys = self.shards[(shard + i) % SHARDS].write();
            if !keys.ring.is_empty() {
                let position = keys.victim(now, self.limits.idle_timeout);
                return Some(keys.remove_at(position));
            }
        }
        None
    }

    /// Removes idle entries; the caller holds the insert lock.
    fn sweep(&self, now: Timestamp) -> usize {
        let idle = self.limits.idle_timeout;
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut keys = shard.write();
            let before = keys.map.len();
            keys.map.retain(|_, e| e.idle(now) < idle);
            if keys.map.len() != before {
                removed += before - keys.map.len();
                keys.rebuild_ring();
            }
        }
        removed
    }

    fn build(&self, key: &K) -> Breaker<C> {
        let config = self.config.read().clone();
        let mut builder: BreakerBuilder<C> = Breaker::builder(config)
            .clock(self.clock.clone())
            .name(format!("{}[{:?}]", self.name, key));
        for hook in &self.hooks {
            let hook = Arc::clone(hook);
            let key = key.clone();
            builder = builder.on_transition(move |t| hook(&key, t));
        }
        // The configuration was validated when the registry was built or
        // reconfigured, and building a breaker fails only on configuration.
        builder
            .build()
            .unwrap_or_else(|e| unreachable!("validated configuration rejected: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_classify::Outcome;
    use palisade_clock::ManualClock;

    fn registry(max_keys: usize) -> (Registry<u32, ManualClock>, ManualClock) {
        let clock = ManualClock::new();
        let r = Registry::builder(
            BreakerConfig::default().consecutive_failures(Some(1)),
            RegistryConfig {
                max_keys,
                idle_timeout: Duration::from_secs(60),
            },
        )
        .clock(clock.clone())
        .build()
        .unwrap();
        (r, clock)
    }

    #[test]
    fn memory_per_key_is_fixed() {
        let (r, _) = registry(10);
        let bytes = r.get(&1).memory_bytes();
        println!("one key: {bytes} bytes");
        assert!(bytes > std::mem::size_of::<Entry<ManualClock>>());
    }

    #[test]
    fn one_breaker_per_key() {
        let (r, _) = registry(10);
        let a = r.get(&1);
        let b = r.get(&1);
        a.force_open();
        assert_eq!(b.state(), crate::State::ForcedOpen);
        assert_eq!(r.get(&2).state(), crate::State::Closed);
        assert_eq!(r.len(), 2);
        assert!(r.peek(&3).is_none());
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn never_exceeds_max_keys_and_prefers_to_evict_closed() {
        let (r, clock) = registry(8);
        r.try_acquire(&0).unwrap().record(Outcome::Permanent);
        assert_eq!(r.get(&0).state(), crate::State::Open);
        for key in 1..3_000 {
            clock.advance(Duration::from_millis(1));
            r.get(&key);
            assert!(r.len() <= 8);
        }
        assert_eq!(r.len(), 8);
        assert_eq!(r.entries().len(), 8);
        // The open breaker survived the flood only if its shard had closed ones to
        // give up; with 16 shards and 8 keys it is usually alone: just check bounds.
        assert!(r.entries().iter().all(|(k, _)| *k < 3_000));
    }

    #[test]
    fn idle_keys_are_evicted() {
        let (r, clock) = registry(1_000);
        for key in 0..50 {
            r.get(&key);
        }
        clock.advance(Duration::from_secs(30));
        r.get(&0);
        clock.advance(Duration::from_secs(31));
        assert_eq!(r.evict_idle(), 49);
        assert_eq!(r.len(), 1);
        assert!(r.peek(&0).is_some());
        // Inserting sweeps a few keys of the new key's shard: the first new key to
        // land in the shard of key 0, which holds only it, finds it idle. Which
        // shard a key lands in is the hasher's choice, so keys are added until
        // one does (one in 16 does).
        clock.advance(Duration::from_secs(61));
        let mut added = 0;
        for key in 1000..11_000 {
            r.get(&key);
            added += 1;
            if r.peek(&0).is_none() {
                break;
            }
        }
        assert!(r.peek(&0).is_none(), "no insert swept the idle key");
        assert_eq!(r.len(), added);
    }

    /// A shard of keys `0..n` in ring order, key `k` last used at `k` seconds, on a
    /// clock at `n` seconds.
    fn shard(n: u32) -> (Keys<u32, ManualClock>, ManualClock) {
        let (r, clock) = registry(100);
        let mut keys = Keys::new();
        for k in 0..n {
            keys.ring.push(k);
            keys.map.insert(
                k,
                Entry {
                    breaker: r.inner.build(&k),
                    last_used: AtomicU64::new(u64::from(k) * 1_000_000_000),
                },
            );
        }
        clock.advance(Duration::from_secs(u64::from(n)));
        (keys, clock)
    }

    const IDLE: Duration = Duration::from_secs(60);

    #[test]
    fn eviction_takes_the_least_recently_used_closed_breaker_of_eight() {
        let (mut keys, clock) = shard(12);
        keys.map[&0].breaker.force_open();
        keys.map[&1].breaker.force_open();
        // 0 and 1 are the least recently used, but open; 2 is the oldest closed.
        assert_eq!(keys.victim(clock.recent(), IDLE), 2);
        assert_eq!(keys.hand, 3);
        // From the hand: 3..=10 are looked at; 3 is the oldest.
        assert_eq!(keys.victim(clock.recent(), IDLE), 3);
        // Only the 8 keys at the hand are looked at: 2 and 3 are older than 4.
        keys.hand = 4;
        assert_eq!(keys.victim(clock.recent(), IDLE), 4);
        // The look wraps round the ring: 8..=11, then 0 and 1 (open), 2 and 3.
        keys.hand = 8;
        assert_eq!(keys.victim(clock.recent(), IDLE), 2);
        assert_eq!(keys.hand, 3);
    }

    #[test]
    fn eviction_takes_an_idle_key_first_and_an_open_one_only_when_all_are() {
        let (mut keys, clock) = shard(4);
        for k in 0..4 {
            keys.map[&k].breaker.force_open();
        }
        // All open: the least recently used of them.
        assert_eq!(keys.victim(clock.recent(), IDLE), 0);
        // An idle key goes first, even an open one after a closed one: at 62 s,
        // 0 is idle and 3 (closed, last used at 3 s) is not.
        keys.map[&3].breaker.reset();
        clock.advance(Duration::from_secs(58));
        keys.hand = 3;
        assert_eq!(keys.victim(clock.recent(), IDLE), 0);
    }

    #[test]
    fn one_sweep_step_removes_the_idle_keys_among_eight() {
        let (mut keys, clock) = shard(12);
        // At 66 s, keys 0..=6 are idle (last used 60 s ago or more).
        clock.advance(Duration::from_secs(54));
        keys.hand = 4;
        // 4, 5 and 6 are among the 8 looked at; each is replaced by the ring's last
        // key, which is looked at next.
        assert_eq!(keys.sweep_step(clock.recent(), IDLE), 3);
        assert_eq!(keys.map.len(), 9);
        assert_eq!(keys.ring.len(), 9);
        assert!(keys.ring.iter().all(|k| keys.map.contains_key(k)));
        assert!((4..=6).all(|k| !keys.map.contains_key(&k)));
        // The hand went on round the ring: the next step finds 0..=3.
        assert_eq!(keys.sweep_step(clock.recent(), IDLE), 4);
        assert_eq!(keys.map.len(), 5);
        assert_eq!(keys.ring.len(), 5);
        assert!(keys.map.keys().all(|&k| k >= 7));
    }

    #[test]
    fn a_flood_of_new_keys_keeps_the_bound_and_the_open_breakers() {
        let (r, clock) = registry(1_000);
        for key in 0..10 {
            r.try_acquire(&key).unwrap().record(Outcome::Permanent);
        }
        for key in 10..50_000 {
            clock.advance(Duration::from_millis(1));
            r.get(&key);
            assert!(r.len() <= 1_000);
        }
        assert_eq!(r.len(), 1_000);
        assert_eq!(r.entries().len(), 1_000);
        for key in 0..10 {
            let b = r.peek(&key).expect("an open breaker is kept");
            assert_eq!(b.state(), crate::State::Open);
        }
    }

    #[test]
    fn reconfigure_applies_to_all_and_reshape_empties() {
        let (r, _) = registry(100);
        let a = r.get(&1);
        r.reconfigure(
            BreakerConfig::default()
                .consecutive_failures(Some(3))
                .metrics_only(true),
        )
        .unwrap();
        assert!(a.config().get_failure_rate_threshold().is_some());
        assert!(r.get(&2).snapshot().metrics_only);
        assert!(a.snapshot().metrics_only);
        r.reconfigure(
            BreakerConfig::default()
                .window(crate::WindowConfig::Count { size: 10 })
                .minimum_calls(5),
        )
        .unwrap();
        assert_eq!(r.len(), 0);
        let err = r
            .reconfigure(BreakerConfig::default().minimum_calls(0))
            .unwrap_err();
        assert_eq!(err.field(), "minimum_calls");
    }

    #[test]
    fn limits_are_validated() {
        let bad = RegistryConfig {
            max_keys: 0,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().field(), "registry.max_keys");
        let bad = RegistryConfig {
            idle_timeout: Duration::from_millis(10),
            ..Default::default()
        };
        let err = bad.validate().unwrap_err();
        assert_eq!(err.field(), "registry.idle_timeout");
        assert!(err.to_string().contains("1s..=24h"));
    }

    #[test]
    fn hooks_receive_the_key() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let r: Registry<String> = Registry::builder(
            BreakerConfig::default().consecutive_failures(Some(1)),
            RegistryConfig::default(),
        )
        .on_transition(move |k: &String, t| log.lock().push((k.clone(), t.to)))
        .build()
        .unwrap();
        r.get("a").force_open();
        assert_eq!(*seen.lock(), [("a".to_string(), crate::State::ForcedOpen)]);
    }
}
