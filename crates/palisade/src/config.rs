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
//! | retry | rebuilt (its budget starts afresh) |
//!
//! A configuration that does not validate is refused as a whole, with a
//! [`ConfigError`] naming the field (`pipelines.billing.breaker.failure_rate_threshold`),
//! and the old configuration keeps serving.
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
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use palisade_breaker::{Breaker, BreakerConfig};
use palisade_classify::{AnyErrorIsTransient, Classify};
use palisade_limit::{Bulkhead, BulkheadConfig, RateLimiter, RateLimiterConfig};
use palisade_retry::RetryConfig;
use serde::{Deserialize, Deserializer};

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
}

/// One pipeline as configuration. Every layer is optional; an absent layer is not
/// in the pipeline. Durations are strings such as `"250ms"`, `"1.5s"`, `"2m"`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct PipelineConfig {
    /// The limit on the whole execution, retries included.
    #[serde(deserialize_with = "de_opt_duration")]
    pub total_timeout: Option<Duration>,
    /// The limit on each attempt.
    #[serde(deserialize_with = "de_opt_duration")]
    pub attempt_timeout: Option<Duration>,
    /// The retry policy.
    pub retry: Option<RetryConfig>,
    /// The circuit breaker.
    pub breaker: Option<BreakerConfig>,
    /// The rate limiter.
    pub rate_limiter: Option<RateLimiterConfig>,
    /// The bulkhead.
    pub bulkhead: Option<BulkheadConfig>,
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| palisade_backoff::parse_duration(&t).map_err(serde::de::Error::custom))
        .transpose()
}

impl RegistryConfig {
    /// Reads a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let field = e
                .span()
                .map(|s| format!("toml at bytes {}..{}", s.start, s.end))
                .unwrap_or_else(|| "toml".to_owned());
            ConfigError::new(field, e.message().to_owned())
        })
    }

    /// Reads a JSON document.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(text).map_err(|e| {
            ConfigError::new(
                format!("json at line {} column {}", e.line(), e.column()),
                e.to_string(),
            )
        })
    }

    /// Checks every pipeline without building anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, p) in &self.pipelines {
            p.validate()
                .map_err(|e| e.within(&format!("pipelines.{name}")))?;
        }
        Ok(())
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
            r.build()
                .map_err(|e| ConfigError::new(format!("retry.{}", e.field()), e.to_string()))?;
        }
        if let Some(b) = &self.breaker {
            b.validate()
                .map_err(|e| ConfigError::new(format!("breaker.{}", e.field()), e.to_string()))?;
        }
        if let Some(r) = &self.rate_limiter {
            r.validate().map_err(|e| {
                ConfigError::new(format!("rate_limiter.{}", e.field()), e.to_string())
            })?;
        }
        if let Some(b) = &self.bulkhead {
            b.validate()
                .map_err(|e| ConfigError::new(format!("bulkhead.{}", e.field()), e.to_string()))?;
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
    /// Pipelines no longer configured: dropped from the registry; handles already
    /// given out keep their last settings.
    pub removed: Vec<String>,
}

type Slot<K> = Arc<ArcSwap<Pipeline<K>>>;

/// Named pipelines built from a [`RegistryConfig`], changeable at run time.
pub struct Registry<K = AnyErrorIsTransient> {
    classifier: K,
    state: Mutex<State<K>>,
}

struct State<K> {
    config: RegistryConfig,
    slots: HashMap<String, Slot<K>>,
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
            let pipeline = build(name, p, &classifier, None)?;
            slots.insert(name.clone(), Arc::new(ArcSwap::from_pointee(pipeline)));
        }
        Ok(Registry {
            classifier,
            state: Mutex::new(State { config, slots }),
        })
    }

    /// The handle of the pipeline named `name`, if it is configured. Ask once and
    /// keep the handle: it follows every reload.
    pub fn pipeline(&self, name: &str) -> Option<NamedPipeline<K>> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
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

    /// The snapshot of every pipeline, by name: the health view.
    pub fn snapshots(&self) -> Vec<PipelineSnapshot> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = state.slots.values().map(|s| s.load().snapshot()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Applies a new configuration. It is validated as a whole first: on error
    /// nothing changes and the old configuration keeps serving. Then each
    /// pipeline's strategies are reconfigured in place where their shape allows
    /// (see the [module documentation](self)).
    pub fn reload(&self, config: RegistryConfig) -> Result<ReloadReport, ConfigError> {
        config.validate()?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut report = ReloadReport::default();
        // Build every new pipeline before publishing any, so that an unexpected
        // refusal still leaves the old configuration whole.
        let mut built = Vec::new();
        for (name, p) in &config.pipelines {
            let old = state.slots.get(name).map(|s| s.load_full());
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
            built.push((name.clone(), pipeline, old.is_some(), rebuilt));
        }
        for (name, pipeline, existed, rebuilt) in built {
            if existed {
                report.updated.push(name.clone());
                if rebuilt {
                    report.breaker_rebuilt.push(name.clone());
                }
                state.slots[&name].store(Arc::new(pipeline));
            } else {
                report.added.push(name.clone());
                state
                    .slots
                    .insert(name, Arc::new(ArcSwap::from_pointee(pipeline)));
            }
        }
        let removed: Vec<String> = state
            .slots
            .keys()
            .filter(|n| !config.pipelines.contains_key(*n))
            .cloned()
            .collect();
        for name in removed {
            state.slots.remove(&name);
            report.removed.push(name);
        }
        report.removed.sort();
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
        let policy = r
            .build()
            .map_err(|e| ConfigError::new(format!("retry.{}", e.field()), e.to_string()))?;
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
                    .map_err(|e| {
                        ConfigError::new(format!("breaker.{}", e.field()), e.to_string())
                    })?
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
            None => RateLimiter::named(name, c.clone(), Default::default()).map_err(|e| {
                ConfigError::new(format!("rate_limiter.{}", e.field()), e.to_string())
            })?,
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
                .map_err(|e| ConfigError::new(format!("bulkhead.{}", e.field()), e.to_string()))?,
        };
        b = b.bulkhead(bulkhead);
    }
    b.build()
}

/// A handle on one named pipeline of a [`Registry`]: it follows every reload.
///
/// Each call loads the current pipeline (one atomic reference-count increment, no
/// lock, no allocation).
pub struct NamedPipeline<K = AnyErrorIsTransient> {
    name: String,
    slot: Slot<K>,
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
        self.slot.load_full()
    }

    /// The snapshot of the pipeline in effect now.
    pub fn snapshot(&self) -> PipelineSnapshot {
        self.slot.load().snapshot()
    }

    /// Runs `call` through the pipeline in effect now (see
    /// [`Pipeline::execute`]).
    pub async fn execute<T, E, F, Fut>(&self, ctx: &Context, call: F) -> Result<T, Error<E>>
    where
        F: FnMut(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        K: Classify<T, E>,
    {
        let pipeline = self.slot.load_full();
        pipeline.execute(ctx, call).await
    }
}
