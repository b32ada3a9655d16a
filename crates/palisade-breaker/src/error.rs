//! What a rejected or failed call returns.

use std::fmt;
use std::time::Duration;

use palisade_classify::{Rejection, Strategy};

use crate::state::{code, opened_bits, opened_by};
use crate::{Reason, State};

/// The breaker refused a call: it is open, forced open, or its half-open probes
/// are all taken.
///
/// It says which state refused the call, when to try again
/// ([`retry_after`](Self::retry_after)) and why the breaker opened
/// ([`opened_by`](Self::opened_by)); the window's figures at that opening are in
/// [`Breaker::last_opening`](crate::Breaker::last_opening).
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The state that refused the call: also the niche that keeps a result
    /// holding a rejection as small and as cheap to build as the rejection.
    state: State,
    /// Why the breaker last opened, as the state word codes it: decoded only when
    /// asked for.
    opened: u8,
    /// Nanoseconds until the breaker tries again, or `NO_HINT`: kept raw so that a
    /// rejection costs no conversion unless someone asks.
    retry_after: u64,
}

const NO_HINT: u64 = u64::MAX;

impl Rejected {
    #[inline]
    pub(crate) const fn new(word: u64, retry_after: Option<Duration>) -> Self {
        let nanos = match retry_after {
            Some(d) => {
                let n = d.as_nanos();
                if n >= NO_HINT as u128 {
                    NO_HINT - 1
                } else {
                    n as u64
                }
            }
            None => NO_HINT,
        };
        Rejected {
            state: State::from_code(code(word)),
            opened: opened_bits(word),
            retry_after: nanos,
        }
    }

    /// Rejected by the open state of `word`, `nanos` before it tries again: less
    /// than the stored end of the open state, which is kept below `NO_HINT`.
    #[inline]
    pub(crate) const fn open(word: u64, nanos: u64) -> Self {
        debug_assert!(nanos != NO_HINT);
        Rejected {
            state: State::Open,
            opened: opened_bits(word),
            retry_after: nanos,
        }
    }

    /// The state that refused the call.
    pub const fn state(&self) -> State {
        self.state
    }

    /// Why the breaker last opened: the rule that fired
    /// ([`Reason::FailureRate`], [`Reason::SlowCallRate`],
    /// [`Reason::ConsecutiveFailures`]), failed probes ([`Reason::ProbesFailed`]),
    /// or an operator ([`Reason::ForcedOpen`], [`Reason::OpenedFor`]). A half-open
    /// rejection gives the reason of the opening before it. The figures of the
    /// window at that moment are in
    /// [`Breaker::last_opening`](crate::Breaker::last_opening).
    pub const fn opened_by(&self) -> Option<Reason> {
        opened_by(self.opened)
    }

    /// When the breaker may next let a call through, if it knows. Open: the rest
    /// of the open duration. Half-open with every probe slot taken: the time until
    /// the first probe's lease ([`BreakerConfig::max_probe_wait`](crate::BreakerConfig::max_probe_wait))
    /// runs out, the latest a slot frees (a probe that reports frees its slot
    /// sooner). `None` when forced open.
    pub const fn retry_after(&self) -> Option<Duration> {
        if self.retry_after == NO_HINT {
            None
        } else {
            Some(Duration::from_nanos(self.retry_after))
        }
    }

    /// The rejection in the outcome taxonomy's terms.
    pub const fn rejection(&self) -> Rejection {
        let r = Rejection::new(Strategy::CircuitBreaker);
        match self.retry_after() {
            Some(d) => r.with_retry_after(d),
            None => r,
        }
    }
}

impl fmt::Debug for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("state", &self.state())
            .field("opened_by", &self.opened_by())
            .field("retry_after", &self.retry_after())
            .finish()
    }
}

impl From<Rejected> for Rejection {
    fn from(r: Rejected) -> Rejection {
        r.rejection()
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        write!(f, "circuit breaker {state}")?;
        if state == State::HalfOpen {
            f.write_str(": all probes taken")?;
        }
        if let Some(reason) = self.opened_by() {
            write!(f, " (opened by {reason})")?;
        }
        if let Some(d) = self.retry_after() {
            write!(f, " (try again in {d:?})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejected {}

/// The error of [`Breaker::call`](crate::Breaker::call): the breaker rejected the
/// call, or the call itself failed.
#[derive(Debug)]
pub enum CallError<E> {
    /// The breaker did not run the call.
    Rejected(Rejected),
    /// The call ran and returned this error.
    Inner(E),
}

impl<E> CallError<E> {
    /// Whether the breaker rejected the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self, CallError::Rejected(_))
    }

    /// The call's own error, if it ran.
    pub fn into_inner(self) -> Option<E> {
        match self {
            CallError::Inner(e) => Some(e),
            CallError::Rejected(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Rejected(r) => r.fmt(f),
            CallError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Transparent: the message is the inner one, so the chain continues
            // with the inner error's own source.
            CallError::Rejected(_) => None,
            CallError::Inner(e) => e.source(),
        }
    }
}
