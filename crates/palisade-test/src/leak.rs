//! Named gauges that must be back to zero: permits in use, probe slots, waiters.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{DEFAULT_WAIT, settle};

type Read = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A set of named gauges, each read by a closure, that must all be zero when
/// nothing is held: the permits a bulkhead has handed out, the probe slots of a
/// half-open breaker, the waiters in a queue, the contexts registered with a root.
///
/// [`check`](LeakCheck::check) reads them all now; [`released`](LeakCheck::released)
/// and [`assert_released`](LeakCheck::assert_released) wait, boundedly, for them
/// to reach zero (see [the crate docs](crate#waiting-is-bounded-and-virtual-in-paused-time)).
/// The facade's `palisade::testing` has the gauges of every palisade primitive
/// ready made.
///
/// Cloning is cheap: clones read the same gauges.
///
/// ```
/// use palisade_test::LeakCheck;
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// let held = Arc::new(AtomicU64::new(0));
/// let h = held.clone();
/// let leaks = LeakCheck::new().gauge("connections checked out", move || h.load(Ordering::Relaxed));
/// assert!(leaks.check().is_ok());
///
/// held.store(2, Ordering::Relaxed);
/// let err = leaks.check().unwrap_err();
/// assert_eq!(err.to_string(), "still held: connections checked out = 2");
/// ```
#[derive(Clone, Default)]
#[must_use = "a leak check does nothing until it is checked"]
pub struct LeakCheck {
    gauges: Vec<(String, Read)>,
}

impl fmt::Debug for LeakCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.gauges.iter().map(|(name, read)| (name, read())))
            .finish()
    }
}

impl LeakCheck {
    /// No gauges yet.
    pub fn new() -> LeakCheck {
        LeakCheck { gauges: Vec::new() }
    }

    /// Adds a gauge: `read` says how much of something is held now, and must
    /// say 0 when nothing is.
    pub fn gauge(
        mut self,
        name: impl Into<String>,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> LeakCheck {
        self.gauges.push((name.into(), Arc::new(read)));
        self
    }

    /// Adds every gauge of `other`.
    pub fn merge(mut self, other: LeakCheck) -> LeakCheck {
        self.gauges.extend(other.gauges);
        self
    }

    /// The gauges' names, in the order they were added.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.gauges.iter().map(|(name, _)| name.as_str())
    }

    /// Reads every gauge now; the error lists those that are not zero.
    pub fn check(&self) -> Result<(), Leaks> {
        let held: Vec<Leak> = self
            .gauges
            .iter()
            .filter_map(|(name, read)| {
                let value = read();
                (value != 0).then(|| Leak {
                    name: name.clone(),
                    value,
                })
            })
            .collect();
        if held.is_empty() {
            Ok(())
        } else {
            Err(Leaks { held })
        }
    }

    /// Waits up to `wait` on tokio's clock for every gauge to be zero; the error
    /// lists those that are not, read when the wait ran out.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with time enabled, when a gauge is not zero at once.
    pub async fn released(&self, wait: Duration) -> Result<(), Leaks> {
        if settle(wait, || self.check().is_ok()).await {
            Ok(())
        } else {
            self.check()
        }
    }

    /// Waits up to [`DEFAULT_WAIT`] for every gauge to be zero, and panics with
    /// those that are not.
    ///
    /// # Panics
    ///
    /// When a gauge is still not zero; outside a tokio runtime with time enabled,
    /// when a gauge is not zero at once.
    #[track_caller]
    pub fn assert_released(&self) -> impl Future<Output = ()> + Send + '_ {
        let caller = std::panic::Location::caller();
        async move {
            if let Err(e) = self.released(DEFAULT_WAIT).await {
                panic!("{e} (after waiting {DEFAULT_WAIT:?}; checked at {caller})");
            }
        }
    }
}

/// The gauges of a [`LeakCheck`] that were not zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaks {
    held: Vec<Leak>,
}

impl Leaks {
    /// Each gauge that was not zero, with its value.
    pub fn held(&self) -> &[Leak] {
        &self.held
    }
}

impl fmt::Display for Leaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("still held: ")?;
        for (i, leak) in self.held.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} = {}", leak.name, leak.value)?;
        }
        Ok(())
    }
}

impl std::error::Error for Leaks {}

/// One gauge that was not zero.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leak {
    /// The gauge's name.
    pub name: String,
    /// What it read.
    pub value: u64,
}
