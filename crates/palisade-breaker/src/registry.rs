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
pub struct RegistryConfig {
    /// The most keys held at once, 1..=10 000 000. A new key beyond it first
    /// evicts the idle keys, then the least recently used key of its shard (closed
    /// breakers before others).
    pub max_keys: usize,
    /// A key unused for this long, 1 s..=1 day, is evicted. In serde form, a
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
    /// Checks both fields; the error names the bad one and its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=10_000_000).contains(&self.max_keys) {
            return Err(ConfigError::new(
                "registry.max_keys",
                format!("must be in 1..=10000000, got {}", self.max_keys),
            ));
        }
        if !(Duration::from_secs(1)..=crate::config::MAX_DURATION).contains(&self.idle_timeout) {
            return Err(ConfigError::new(
                "registry.idle_timeout",
                format!(
                    "must be in 1s..=86400s, got {}",
                    palisade_clock::duration::format(self.idle_timeout)
                ),
            ));
        }
        Ok(())
    }
}

const SHARDS: usize = 16;

type Shard<K, C> = RwLock<HashMap<K, Entry<C>>>;

type KeyHook<K> = Arc<dyn Fn(&K, &Transition) + Send + Sync>;

/// One [`Breaker`] per key (host, tenant, endpoint), created on demand from one
/// configuration and bounded by [`RegistryConfig`], so that keys chosen by an
/// attacker cannot grow memory without bound.
///
/// Clones share the registry. Looking a key up takes a shared (read) lock on one of
/// 16 shards; hold on to the returned [`Breaker`] where a call path needs no lock at
/// all.
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
    last_sweep: AtomicU64,
    /// Serializes inserts, so that the bound holds exactly.
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
        let now = self.clock.recent().as_nanos();
        Ok(Registry {
            inner: Arc::new(RegistryInner {
                shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
                hasher: RandomState::new(),
                config: RwLock::new(self.config),
                limits: self.limits,
                clock: self.clock,
                name: self.name,
                hooks: self.hooks,
                last_sweep: AtomicU64::new(now),
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
        if let Some(entry) = inner.shards[shard].read().get(key) {
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
                    .iter()
                    .map(|(k, e)| (k.clone(), e.breaker.clone())),
            );
        }
        out
    }

    /// Removes the keys unused for longer than the idle timeout; returns how many.
    /// Inserting a key does this on its own every half idle timeout.
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
            let mut map = shard.write();
            if reshaped {
                map.clear();
            } else {
                for entry in map.values() {
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
        if let Some(entry) = self.shards[shard].read().get(&key) {
            entry.touch(now);
            return entry.breaker.clone();
        }
        let half_idle = self.limits.idle_timeout / 2;
        let since_sweep = now
            .as_nanos()
            .saturating_sub(self.last_sweep.load(Ordering::Relaxed));
        // Sweeping visits every key: do it every half idle timeout, not on every
        // insert into a full registry, so that a flood of new keys costs a flood of
        // single evictions and no more.
        if Duration::from_nanos(since_sweep) >= half_idle {
            self.last_sweep.store(now.as_nanos(), Ordering::Relaxed);
            *len -= self.sweep(now);
        }
        if *len >= self.limits.max_keys {
            // Still full: evict the least recently used key of this shard (or of the
            // next shard that has keys), a closed one if there is any: an open
            // breaker's state is worth more.
            for i in 0..SHARDS {
                let mut map = self.shards[(shard + i) % SHARDS].write();
                let victim = map
                    .iter()
                    .min_by_key(|(_, e)| {
                        (
                            e.breaker.state() != crate::State::Closed,
                            e.last_used.load(Ordering::Relaxed),
                        )
                    })
                    .map(|(k, _)| k.clone());
                if let Some(victim) = victim {
                    map.remove(&victim);
                    *len -= 1;
                    tracing::debug!(
                        target: "palisade::breaker",
                        registry = &*self.name,
                        key = ?victim,
                        "registry full: evicted the least recently used key"
                    );
                    break;
                }
            }
        }
        let mut map = self.shards[shard].write();
        let breaker = self.build(&key);
        map.insert(
            key,
            Entry {
                breaker: breaker.clone(),
                last_used: AtomicU64::new(now.as_nanos()),
            },
        );
        *len += 1;
        breaker
    }

    /// Removes idle entries; the caller holds the insert lock.
    fn sweep(&self, now: Timestamp) -> usize {
        let idle = self.limits.idle_timeout;
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut map = shard.write();
            let before = map.len();
            map.retain(|_, e| e.idle(now) < idle);
            removed += before - map.len();
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
        let (r, clock) = registry(100);
        for key in 0..50 {
            r.get(&key);
        }
        clock.advance(Duration::from_secs(30));
        r.get(&0);
        clock.advance(Duration::from_secs(31));
        assert_eq!(r.evict_idle(), 49);
        assert_eq!(r.len(), 1);
        assert!(r.peek(&0).is_some());
        // Inserting sweeps on its own after half the idle timeout.
        clock.advance(Duration::from_secs(61));
        r.get(&1000);
        assert_eq!(r.len(), 1);
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
        assert!(err.to_string().contains("1s..=86400s"));
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
