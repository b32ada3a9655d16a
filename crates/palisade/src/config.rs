//! Named pipelines from configuration, with hot reload.
//!
//! A [`Registry`] holds one pipeline per dependency name, built from a
//! [`RegistryConfig`] (serde: TOML, JSON, or anything serde reads). Code asks the
//! registry once for a [`NamedPipeline`] handle and runs calls through it; a
//! [`reload`](Registry::reload) swaps in the new settings under the handles, so
//! every later call uses them without restarting anything.
//!
//! Reload keeps state wherever the shape allows:
//!
//! | layer | on reload |
//! | --- | --- |
//! | timeouts | new values for the next call |
//! | circuit breaker | reconfigured in place: state, window and counters kept (an open breaker stays open); a changed window shape (kind, size, buckets, slow-call duration) builds a new breaker |
//! | bulkhead | reconfigured in place: calls in flight keep their permits |
//! | rate limiter | reconfigured in place: the schedule continues |
//! | redis rate limit (feature `redis`) | rebuilt: the schedule lives in Redis and continues; the connection, its breaker and the cache of refused keys start afresh |
//! | retry | rebuilt (its budget starts afresh) |
//!
//! Every duration of the file, in every section, is written in one
//! [grammar](palisade_clock::duration#the-grammar): `"250ms"`, `"1.5s"`, `"2min"`,
//! `"1m30s"`, or a bare integer of milliseconds.
//!
//! A configuration that does not validate is refused as a whole, with a
//! [`ConfigError`] naming the field (`pipelines.billing.breaker.failure_rate_threshold`),
//! and the old configuration keeps serving.
//!
//! A handle follows its name, not one pipeline. A reload that removes a name
//! stops [`Registry::pipeline`] and [`Registry::snapshots`] from showing it, but
//! its handles keep serving with its last pipeline (calls in flight and code
//! that still holds the handle do not start failing because a line went missing
//! from a file); [`NamedPipeline::is_configured`] tells them apart. When the name
//! is configured again, those handles move to the new pipeline, which resumes
//! from the last one's strategies (its breaker state, for one) as any reload
//! does. A removed name whose handles have all been dropped is forgotten: if it
//! comes back it starts afresh.
//!
//! A reload that would remove every pipeline (an empty or truncated file reads
//! as a configuration without pipelines) is refused, naming the field
//! `pipelines`, unless the registry allows it with
//! [`allow_empty_reload`](Registry::allow_empty_reload).
//!
//! ```
//! use palisade::config::Registry;
//! use palisade::Context;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::from_toml(r#"
//!     [pipelines.billing]
//!     total_timeout = "2s"
//!     attempt_timeout = "300ms"
//!     [pipelines.billing.retry.backoff]
//!     kind = "exponential"
//!     initial = "50ms"
//!     max_attempts = 3
//!     [pipelines.billing.breaker]
//!     failure_rate_threshold = 50.0
//!     [pipelines.billing.bulkhead]
//!     max_concurrent = 20
//! "#)?;
//!
//! let billing = registry.pipeline("billing").expect("configured");
//! let charged = billing
//!     .execute(&Context::background(), |_ctx| async { Ok::<_, std::io::Error>(42) })
//!     .await?;
//! assert_eq!(charged, 42);
//!
//! // A bad value is refused, naming the field; the old settings keep serving.
//! let err = registry
//!     .reload_toml("[pipelines.billing]\nattempt_timeout = \"0s\"")
//!     .unwrap_err();
//! assert_eq!(err.field(), "pipelines.billing.attempt_timeout");
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use palisade_breaker::{Breaker, BreakerConfig};
use palisade_classify::{AnyErrorIsTransient, Classify};
use palisade_limit::{Bulkhead, BulkheadConfig, RateLimiter, RateLimiterConfig};
use palisade_retry::RetryConfig;
use serde::Deserialize;

use crate::{ConfigError, Context, Error, Pipeline, PipelineSnapshot};

/// Every named pipeline, as configuration.
///
/// ```toml
/// [pipelines.users-api]
/// attempt_timeout = "300ms"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// The pipelines, by dependency name.
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// Outlier detection of endpoint balancers, by balancer name (feature
    /// `endpoint`): `[outliers.users-api]` takes every field of
    /// [`OutlierConfig`](palisade_endpoint::OutlierConfig). Read when a detector
    /// is built ([`RegistryConfig::outliers_for`]); a reload changes what later
    /// builds read, not a detector already built.
    #[cfg(feature = "endpoint")]
    #[serde(default)]
    pub outliers: BTreeMap<String, palisade_endpoint::OutlierConfig>,
}

/// One pipeline as configuration. Every layer is optional; an absent layer is not
/// in the pipeline. Durations, here and in every layer, are written in the
/// [duration grammar](palisade_clock::duration#the-grammar): `"250ms"`, `"1.5s"`,
/// `"2min"`, `"1m30s"`, or a bare integer of milliseconds.
///
/// An `attempt_timeout` longer than the `total_timeout` is accepted with a
/// warning event: the total timeout bounds every attempt, so the attempt timeout
/// never runs out first (see [`PipelineBuilder::build`](crate::PipelineBuilder::build)).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct PipelineConfig {
    /// The limit on the whole execution, retries included.
    #[serde(with = "palisade_clock::duration::serde_opt")]
    pub total_timeout: Option<Duration>,
    /// The limit on each attempt.
    #[serde(with = "palisade_clock::duration::serde_opt")]
    pub attempt_timeout: Option<Duration>,
    /// The retry policy.
    pub retry: Option<RetryConfig>,
    /// The circuit breaker.
    pub breaker: Option<BreakerConfig>,
    /// The rate limiter.
    pub rate_limiter: Option<RateLimiterConfig>,
    /// The bulkhead.
    pub bulkhead: Option<BulkheadConfig>,
    /// A fleet-wide rate limit on Redis (feature `redis`): the URL, the key
    /// prefix, the rate, the timeouts and the fallback, as
    /// [`RedisLimitConfig`](palisade_limit_redis::RedisLimitConfig) reads them.
    /// Its key is `key`, or the pipeline's name. The connection is made on the
    /// first call (until then, and whenever Redis cannot answer, the fallback
    /// decides), so a registry is built without waiting for Redis; it must be
    /// built within a tokio runtime.
    ///
    /// ```toml
    /// [pipelines.billing.redis]
    /// url = "redis://10.0.0.5:6379"
    /// key_prefix = "{billing}:"
    /// rate = 1000
    /// period = "1s"
    /// timeout = "20ms"
    /// replicas = 20
    /// ```
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub redis: Option<palisade_limit_redis::RedisLimitConfig>,
}

impl RegistryConfig {
    /// Reads a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let field = e
                .span()
                .map(|s| format!("toml at bytes {}..{}", s.start, s.end))
                .unwrap_or_else(|| "toml".to_owned());
            ConfigError::without_value(field, e.message().to_owned())
        })
    }

    /// Reads a JSON document.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(text).map_err(|e| {
            ConfigError::without_value(
                format!("json at line {} column {}", e.line(), e.column()),
                e.to_string(),
            )
        })
    }

    /// Checks every pipeline without building anything. A name must not be empty
    /// or only whitespace (refused as the field `pipelines`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, p) in &self.pipelines {
            if name.trim().is_empty() {
                return Err(ConfigError::new(
                    "pipelines",
                    name,
                    "pipeline names that are not empty or only whitespace",
                ));
            }
            p.validate()
                .map_err(|e| e.within(&format!("pipelines.{name}")))?;
        }
        #[cfg(feature = "endpoint")]
        for (name, o) in &self.outliers {
            o.validate()
                .map_err(|e| e.within(&format!("outliers.{name}")))?;
        }
        Ok(())
    }

    /// A detector for balancer `name` with its configured outlier detection, named
    /// `name` in events and metrics; `None` when the file has no
    /// `[outliers.<name>]` section.
    ///
    /// ```
    /// use palisade::config::RegistryConfig;
    ///
    /// let config = RegistryConfig::from_toml(r#"
    ///     [outliers.users-api]
    ///     consecutive_failures = 3
    ///     base_ejection = "10s"
    ///     max_ejected_percent = 20
    /// "#).unwrap();
    /// config.validate().unwrap();
    /// let outliers = config.outliers_for("users-api").unwrap().unwrap();
    /// assert_eq!(outliers.config().consecutive_failures, Some(3));
    ///
    /// let bad = RegistryConfig::from_toml("[outliers.users-api]\nbase_ejection = \"0s\"").unwrap();
    /// assert_eq!(bad.validate().unwrap_err().field(), "outliers.users-api.base_ejection");
    /// ```
    #[cfg(feature = "endpoint")]
    #[cfg_attr(docsrs, doc(cfg(feature = "endpoint")))]
    pub fn outliers_for(
        &self,
        name: &str,
    ) -> Option<Result<palisade_endpoint::Outliers, ConfigError>> {
        let config = self.outliers.get(name)?;
        Some(
            palisade_endpoint::Outliers::builder(config.clone())
                .name(name)
                .build()
                .map_err(|e| e.within(&format!("outliers.{name}"))),
        )
    }
}

impl PipelineConfig {
    /// Checks every layer, naming the first invalid field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, d) in [
            ("total_timeout", self.total_timeout),
            ("attempt_timeout", self.attempt_timeout),
        ] {
            if let Some(d) = d {
                crate::pipeline::check_timeout(field, d)?;
            }
        }
        if let Some(r) = &self.retry {
            r.build().map_err(|e| e.within("retry"))?;
        }
        if let Some(b) = &self.breaker {
            b.validate().map_err(|e| e.within("breaker"))?;
        }
        if let Some(r) = &self.rate_limiter {
            r.validate().map_err(|e| e.within("rate_limiter"))?;
        }
        if let Some(b) = &self.bulkhead {
            b.validate().map_err(|e| e.within("bulkhead"))?;
        }
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis {
            r.validate().map_err(|e| e.within("redis"))?;
        }
        Ok(())
    }
}

/// What a reload did to each pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// Pipelines that were not configured before.
    pub added: Vec<String>,
    /// Pipelines whose settings were applied, keeping their state.
    pub updated: Vec<String>,
    /// Pipelines whose breaker had to be rebuilt (its window shape changed), so
    /// its state and counters started afresh.
    pub breaker_rebuilt: Vec<String>,
    /// Pipelines no longer configured: the registry no longer hands them out nor
    /// reports them; handles already given out keep serving with their last
    /// pipeline, and follow the name if it is configured again.
    pub removed: Vec<String>,
}

/// The place of one name: the pipeline its handles run through now, and whether
/// the name is configured.
struct Slot<K> {
    pipeline: ArcSwap<Pipeline<K>>,
    configured: AtomicBool,
}

impl<K> Slot<K> {
    fn new(pipeline: Pipeline<K>) -> Arc<Self> {
        Arc::new(Slot {
            pipeline: ArcSwap::from_pointee(pipeline),
            configured: AtomicBool::new(true),
        })
    }
}

/// Named pipelines built from a [`RegistryConfig`], changeable at run time.
pub struct Registry<K = AnyErrorIsTransient> {
    classifier: K,
    allow_empty: bool,
    state: Mutex<State<K>>,
}

struct State<K> {
    config: RegistryConfig,
    /// Every configured name, and every removed one that a handle still holds.
    slots: HashMap<String, Arc<Slot<K>>>,
}

impl<K> fmt::Debug for Registry<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Registry")
            .field("pipelines", &state.config.pipelines.keys())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry of `config`'s pipelines, each classifying results with
    /// [`AnyErrorIsTransient`].
    pub fn new(config: RegistryConfig) -> Result<Self, ConfigError> {
        Registry::with_classifier(config, AnyErrorIsTransient)
    }

    /// A registry from a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Registry::new(RegistryConfig::from_toml(text)?)
    }

    /// A registry from a JSON document.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        Registry::new(RegistryConfig::from_json(text)?)
    }
}

impl<K: Clone> Registry<K> {
    /// A registry of `config`'s pipelines, each classifying results with
    /// `classifier` (an [`HttpStatus`](palisade_classify::HttpStatus) for HTTP
    /// dependencies, say).
    pub fn with_classifier(config: RegistryConfig, classifier: K) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut slots = HashMap::new();
        for (name, p) in &config.pipelines {
            let pipeline = build(name, p, &classifier, None)
                .map_err(|e| e.within(&format!("pipelines.{name}")))?;
            slots.insert(name.clone(), Slot::new(pipeline));
        }
        Ok(Registry {
            classifier,
            allow_empty: false,
            state: Mutex::new(State { config, slots }),
        })
    }

    /// Whether a reload may remove every pipeline. Off by default: an empty or
    /// truncated file reads as a valid configuration without pipelines, and
    /// applying it would take every dependency's settings away at once, so
    /// [`reload`](Self::reload) refuses it unless this is on.
    ///
    /// A registry may always start empty, and a reload that leaves an empty
    /// registry empty removes nothing, so both are accepted either way.
    pub fn allow_empty_reload(mut self, allow: bool) -> Self {
        self.allow_empty = allow;
        self
    }

    /// The handle of the pipeline named `name`, if it is configured. Ask once and
    /// keep the handle: it follows its name through every reload (see the
    /// [module documentation](self)).
    pub fn pipeline(&self, name: &str) -> Option<NamedPipeline<K>> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.config.pipelines.contains_key(name) {
            return None;
        }
        state.slots.get(name).map(|slot| NamedPipeline {
            name: name.to_owned(),
            slot: slot.clone(),
        })
    }

    /// The names of the configured pipelines.
    pub fn names(&self) -> Vec<String> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.config.pipelines.keys().cloned().collect()
    }

    /// The configuration in effect.
    pub fn config(&self) -> RegistryConfig {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.config.clone()
    }

    /// The snapshot of every configured pipeline, by name: the health view. It is
    /// the snapshot of the pipeline the handles run through.
    pub fn snapshots(&self) -> Vec<PipelineSnapshot> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // The configuration's keys are sorted.
        state
            .config
            .pipelines
            .keys()
            .filter_map(|name| state.slots.get(name))
            .map(|s| s.pipeline.load().snapshot())
            .collect()
    }

    /// Applies a new configuration. It is validated as a whole first: on error
    /// nothing changes and the old configuration keeps serving. Then each
    /// pipeline's strategies are reconfigured in place where their shape allows
    /// (see the [module documentation](self)).
    ///
    /// A configuration without pipelines is refused while the registry has some,
    /// unless [`allow_empty_reload`](Self::allow_empty_reload) is on.
    pub fn reload(&self, config: RegistryConfig) -> Result<ReloadReport, ConfigError> {
        config.validate()?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if config.pipelines.is_empty() && !state.config.pipelines.is_empty() && !self.allow_empty {
            return Err(ConfigError::without_value(
                "pipelines",
                format!(
                    "a reload must keep at least one pipeline (got none, {} configured now); \
                     an empty or truncated file reads this way. Allow it with \
                     `Registry::allow_empty_reload(true)`",
                    state.config.pipelines.len()
                ),
            ));
        }
        // Forget the removed names that no handle holds any more. Under the lock no
        // handle can be made from the registry, and a clone needs a handle: a slot
        // held by the registry alone stays unheld.
        let State {
            config: current,
            slots,
        } = &mut *state;
        slots.retain(|name, slot| {
            current.pipelines.contains_key(name) || Arc::strong_count(slot) > 1
        });
        let mut report = ReloadReport::default();
        // Build every new pipeline before publishing any, so that an unexpected
        // refusal still leaves the old configuration whole. A removed name that a
        // handle still holds resumes from its last pipeline.
        let mut built = Vec::new();
        for (name, p) in &config.pipelines {
            let old = state.slots.get(name).map(|s| s.pipeline.load_full());
            let (pipeline, rebuilt) = match &old {
                Some(old) => {
                    let mut rebuilt = false;
                    let pipeline = build(name, p, &self.classifier, Some((old, &mut rebuilt)))
                        .map_err(|e| e.within(&format!("pipelines.{name}")))?;
                    (pipeline, rebuilt)
                }
                None => (
                    build(name, p, &self.classifier, None)
                        .map_err(|e| e.within(&format!("pipelines.{name}")))?,
                    false,
                ),
            };
            built.push((name.clone(), pipeline, rebuilt));
        }
        for (name, pipeline, rebuilt) in built {
            if state.config.pipelines.contains_key(&name) {
                report.updated.push(name.clone());
            } else {
                report.added.push(name.clone());
            }
            if rebuilt {
                report.breaker_rebuilt.push(name.clone());
            }
            match state.slots.get(&name) {
                Some(slot) => {
                    slot.pipeline.store(Arc::new(pipeline));
                    slot.configured.store(true, Ordering::Release);
                }
                None => {
                    state.slots.insert(name, Slot::new(pipeline));
                }
            }
        }
        report.removed = state
            .config
            .pipelines
            .keys()
            .filter(|n| !config.pipelines.contains_key(*n))
            .cloned()
            .collect();
        let mut still_held = Vec::new();
        state.slots.retain(|name, slot| {
            if config.pipelines.contains_key(name) {
                return true;
            }
            slot.configured.store(false, Ordering::Release);
            let held = Arc::strong_count(slot) > 1;
            if held && report.removed.contains(name) {
                still_held.push(name.clone());
            }
            held
        });
        if !still_held.is_empty() {
            still_held.sort();
            tracing::warn!(
                pipelines = ?still_held,
                "pipelines removed from the configuration; their handles keep serving with their last settings"
            );
        }
        tracing::info!(
            added = report.added.len(),
            updated = report.updated.len(),
            removed = report.removed.len(),
            "pipeline configuration reloaded"
        );
        state.config = config;
        Ok(report)
    }

    /// Reloads from a TOML document.
    pub fn reload_toml(&self, text: &str) -> Result<ReloadReport, ConfigError> {
        self.reload(RegistryConfig::from_toml(text)?)
    }

    /// Reloads from a JSON document.
    pub fn reload_json(&self, text: &str) -> Result<ReloadReport, ConfigError> {
        self.reload(RegistryConfig::from_json(text)?)
    }
}

/// Builds a pipeline from its configuration, reusing the strategies of `old`
/// where their shape allows. Strategy configurations were validated before, so
/// the only refusal left is a breaker whose window changed shape: then a new
/// breaker is built and `rebuilt` set.
fn build<K: Clone>(
    name: &str,
    config: &PipelineConfig,
    classifier: &K,
    old: Option<(&Arc<Pipeline<K>>, &mut bool)>,
) -> Result<Pipeline<K>, ConfigError> {
    let mut b = Pipeline::builder(name.to_owned()).classifier(classifier.clone());
    if let Some(d) = config.total_timeout {
        b = b.total_timeout(d);
    }
    if let Some(d) = config.attempt_timeout {
        b = b.attempt_timeout(d);
    }
    if let Some(r) = &config.retry {
        let policy = r.build().map_err(|e| e.within("retry"))?;
        b = b.retry(policy);
    }
    let (old, rebuilt) = match old {
        Some((p, r)) => (Some(p), Some(r)),
        None => (None, None),
    };
    if let Some(c) = &config.breaker {
        let kept = old
            .and_then(|p| p.breaker())
            .filter(|br| br.reconfigure(c.clone()).is_ok())
            .cloned();
        let breaker = match kept {
            Some(br) => br,
            None => {
                if let (Some(r), Some(p)) = (rebuilt, old) {
                    *r = p.breaker().is_some();
                }
                Breaker::builder(c.clone())
                    .name(name.to_owned())
                    .build()
                    .map_err(|e| e.within("breaker"))?
            }
        };
        b = b.breaker(breaker);
    }
    if let Some(c) = &config.rate_limiter {
        let kept = old
            .and_then(|p| p.rate_limiter())
            .filter(|l| l.reconfigure(c).is_ok())
            .cloned();
        let limiter = match kept {
            Some(l) => l,
            None => RateLimiter::named(name, c.clone(), Default::default())
                .map_err(|e| e.within("rate_limiter"))?,
        };
        b = b.rate_limiter(limiter);
    }
    if let Some(c) = &config.bulkhead {
        let kept = old
            .and_then(|p| p.bulkhead())
            .filter(|l| l.reconfigure(c).is_ok())
            .cloned();
        let bulkhead = match kept {
            Some(l) => l,
            None => Bulkhead::named(name, c.clone(), Default::default())
                .map_err(|e| e.within("bulkhead"))?,
        };
        b = b.bulkhead(bulkhead);
    }
    #[cfg(feature = "redis")]
    if let Some(c) = &config.redis {
        b = b.rate_limit(redis_limit(name, c)?);
    }
    b.build()
}

/// The pipeline's Redis rate limit, bound to its key.
#[cfg(feature = "redis")]
fn redis_limit(
    name: &str,
    config: &palisade_limit_redis::RedisLimitConfig,
) -> Result<palisade_limit_redis::RedisKeyLimit, ConfigError> {
    use palisade_limit_redis::{Error as RedisError, RedisRateLimiter};
    let limiter = RedisRateLimiter::new(config.clone()).map_err(|e| match e {
        RedisError::Config(e) => e.within("redis"),
        RedisError::Url(why) => {
            ConfigError::new("redis.url", &config.url, format!("a redis:// URL ({why})"))
        }
        other => ConfigError::without_value("redis", other.to_string()),
    })?;
    Ok(limiter.key(config.key.as_deref().unwrap_or(name)))
}

/// A handle on one named pipeline of a [`Registry`]: it follows every reload.
///
/// Each call loads the current pipeline (one atomic reference-count increment, no
/// lock, no allocation).
pub struct NamedPipeline<K = AnyErrorIsTransient> {
    name: String,
    slot: Arc<Slot<K>>,
}

impl<K> Clone for NamedPipeline<K> {
    fn clone(&self) -> Self {
        NamedPipeline {
            name: self.name.clone(),
            slot: self.slot.clone(),
        }
    }
}

impl<K> fmt::Debug for NamedPipeline<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedPipeline")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<K> NamedPipeline<K> {
    /// The dependency's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pipeline in effect now.
    pub fn current(&self) -> Arc<Pipeline<K>> {
        self.slot.pipeline.load_full()
    }

    /// Whether the name is in the registry's configuration now. A handle whose
    /// name a reload removed keeps serving with the last pipeline, and follows the
    /// name again if a later reload configures it.
    pub fn is_configured(&self) -> bool {
        self.slot.configured.load(Ordering::Acquire)
    }

    /// The snapshot of the pipeline in effect now.
    pub fn snapshot(&self) -> PipelineSnapshot {
        self.slot.pipeline.load().snapshot()
    }

    /// Runs `call` through the pipeline in effect now (see
    /// [`Pipeline::execute`]).
    pub async fn execute<T, E, F, Fut>(&self, ctx: &Context, call: F) -> Result<T, Error<E>>
    where
        F: FnMut(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        K: Classify<T, E>,
    {
        let pipeline = self.slot.pipeline.load_full();
        pipeline.execute(ctx, call).await
    }
}
