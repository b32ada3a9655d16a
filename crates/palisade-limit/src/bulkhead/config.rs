use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, MAX_DURATION, check_duration, check_range};

/// The most calls a bulkhead admits at once, and the longest queue it keeps: a
/// million. More is certainly a mistake (each call holds at least a task).
pub const MAX_BULKHEAD_SIZE: u32 = 1_000_000;

/// How a [`Bulkhead`](crate::Bulkhead) is sized: validated by
/// [`BulkheadConfig::validate`] and by every constructor.
///
/// In serde form every field is optional and durations are written in the
/// [duration grammar](palisade_clock::duration#the-grammar) of every Palisade configuration
/// (`"100ms"`, `"1.5s"`, or a bare integer of milliseconds):
///
/// ```
/// use palisade_limit::BulkheadConfig;
///
/// let config: BulkheadConfig =
///     serde_json::from_str(r#"{ "max_concurrent": 10, "max_queue": 20, "max_wait": "50ms" }"#)
///         .unwrap();
/// assert!(config.validate().is_ok());
/// assert_eq!(config.max_wait, std::time::Duration::from_millis(50));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BulkheadConfig {
    /// The most calls in flight at once; `1..=1_000_000`.
    ///
    /// Default 25, as resilience4j's bulkhead: a dependency answering in 10–100 ms
    /// serves hundreds of calls a second through it, while a dependency that stalls
    /// holds at most 25 of the service's tasks.
    pub max_concurrent: u32,
    /// How many callers may wait for a permit when all are taken; `0..=1_000_000`.
    ///
    /// Default 0: a full bulkhead rejects at once. Queued callers add latency and
    /// hold memory exactly when the dependency is slowest, so waiting is opt-in.
    pub max_queue: u32,
    /// The longest a caller waits in the queue before it is rejected;
    /// `1ns..=1day`. Used only when `max_queue > 0`.
    ///
    /// Default 100 ms: long enough to ride out a short burst, short enough that the
    /// caller still has most of a typical deadline left when it gives up.
    #[serde(with = "palisade_clock::duration::serde")]
    pub max_wait: Duration,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        BulkheadConfig {
            max_concurrent: 25,
            max_queue: 0,
            max_wait: Duration::from_millis(100),
        }
    }
}

impl BulkheadConfig {
    /// A bulkhead of `max_concurrent` calls, without a queue.
    pub fn new(max_concurrent: u32) -> Self {
        BulkheadConfig {
            max_concurrent,
            ..Self::default()
        }
    }

    /// With a queue of `max_queue` callers, each waiting at most `max_wait`.
    pub fn with_queue(mut self, max_queue: u32, max_wait: Duration) -> Self {
        self.max_queue = max_queue;
        self.max_wait = max_wait;
        self
    }

    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("max_concurrent", self.max_concurrent, 1, MAX_BULKHEAD_SIZE)?;
        check_range("max_queue", self.max_queue, 0, MAX_BULKHEAD_SIZE)?;
        check_duration(
            "max_wait",
            self.max_wait,
            Duration::from_nanos(1),
            MAX_DURATION,
        )?;
        Ok(())
    }
}

pub(crate) fn check_range_limit(max_concurrent: u32) -> Result<(), ConfigError> {
    check_range("max_concurrent", max_concurrent, 1, MAX_BULKHEAD_SIZE)
}
