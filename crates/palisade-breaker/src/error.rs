//! What a rejected or failed call returns.

use std::fmt;
use std::time::Duration;

use palisade_classify::{Rejection, Strategy};

use crate::state::{
    CODE_MASK, FORCED_OPEN, HALF_OPEN, OPEN, OPENED_SHIFT, Word, opened_bits, opened_by,
};
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
    /// The state that refused the call and the reason of the last opening, in
    /// one byte: one scalar beside `retry_after`, so that a rejection, and the
    /// results that hold one (whose niche it also is), stay a pair of scalars
    /// built and returned in registers. As two byte fields they made an aggregate
    /// that every result holding it copied through memory, padding included: ten
    /// more instructions on each healthy `Breaker::call`, fourteen on a rejection.
    refusal: Refusal,
    /// Nanoseconds until the breaker tries again, or `NO_HINT`: kept raw so that a
    /// rejection costs no conversion unless someone asks.
    retry_after: u64,
}

/// The state that refused a call and why the breaker last opened, coded as the
/// low byte of the state word codes them: `opened_by << 5 | state code`, decoded
/// only when asked for. One variant for each refusing state and each of the eight
/// codes the word's three reason bits can hold (7 is unused), so that building
/// one from a state word takes a mask and an add, not a table or a branch.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Refusal {
    Open0 = OPEN as u8,
    Open1 = OPEN as u8 | 1 << OPENED_SHIFT,
    Open2 = OPEN as u8 | 2 << OPENED_SHIFT,
    Open3 = OPEN as u8 | 3 << OPENED_SHIFT,
    Open4 = OPEN as u8 | 4 << OPENED_SHIFT,
    Open5 = OPEN as u8 | 5 << OPENED_SHIFT,
    Open6 = OPEN as u8 | 6 << OPENED_SHIFT,
    Open7 = OPEN as u8 | 7 << OPENED_SHIFT,
    HalfOpen0 = HALF_OPEN as u8,
    HalfOpen1 = HALF_OPEN as u8 | 1 << OPENED_SHIFT,
    HalfOpen2 = HALF_OPEN as u8 | 2 << OPENED_SHIFT,
    HalfOpen3 = HALF_OPEN as u8 | 3 << OPENED_SHIFT,
    HalfOpen4 = HALF_OPEN as u8 | 4 << OPENED_SHIFT,
    HalfOpen5 = HALF_OPEN as u8 | 5 << OPENED_SHIFT,
    HalfOpen6 = HALF_OPEN as u8 | 6 << OPENED_SHIFT,
    HalfOpen7 = HALF_OPEN as u8 | 7 << OPENED_SHIFT,
    ForcedOpen0 = FORCED_OPEN as u8,
    ForcedOpen1 = FORCED_OPEN as u8 | 1 << OPENED_SHIFT,
    ForcedOpen2 = FORCED_OPEN as u8 | 2 << OPENED_SHIFT,
    ForcedOpen3 = FORCED_OPEN as u8 | 3 << OPENED_SHIFT,
    ForcedOpen4 = FORCED_OPEN as u8 | 4 << OPENED_SHIFT,
    ForcedOpen5 = FORCED_OPEN as u8 | 5 << OPENED_SHIFT,
    ForcedOpen6 = FORCED_OPEN as u8 | 6 << OPENED_SHIFT,
    ForcedOpen7 = FORCED_OPEN as u8 | 7 << OPENED_SHIFT,
}

impl Refusal {
    /// The refusal by the open state of `word`.
    #[inline(always)]
    const fn open(word: Word) -> Refusal {
        use Refusal::*;
        match word.opened_bits() {
            0 => Open0,
            1 => Open1,
            2 => Open2,
            3 => Open3,
            4 => Open4,
            5 => Open5,
            6 => Open6,
            _ => Open7,
        }
    }

    /// The refusal by the state of `word`: open, half-open or forced open.
    #[inline]
    const fn new(word: Word) -> Refusal {
        use Refusal::*;
        let opened = word.opened_bits();
        match word.bits() & CODE_MASK {
            OPEN => Refusal::open(word),
            HALF_OPEN => match opened {
                0 => HalfOpen0,
                1 => HalfOpen1,
                2 => HalfOpen2,
                3 => HalfOpen3,
                4 => HalfOpen4,
                5 => HalfOpen5,
                6 => HalfOpen6,
                _ => HalfOpen7,
            },
            code => {
                debug_assert!(code == FORCED_OPEN, "only open states refuse calls");
                match opened {
                    0 => ForcedOpen0,
                    1 => ForcedOpen1,
                    2 => ForcedOpen2,
                    3 => ForcedOpen3,
                    4 => ForcedOpen4,
                    5 => ForcedOpen5,
                    6 => ForcedOpen6,
                    _ => ForcedOpen7,
                }
            }
        }
    }

    const fn state(self) -> State {
        State::from_code(self as u64 & CODE_MASK)
    }

    const fn opened_by(self) -> Option<Reason> {
        opened_by(opened_bits(self as u64))
    }
}

const NO_HINT: u64 = u64::MAX;

impl Rejected {
    #[inline]
    pub(crate) const fn new(word: Word, retry_after: Option<Duration>) -> Self {
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
            refusal: Refusal::new(word),
            retry_after: nanos,
        }
    }

    /// Rejected by the open state of `word`, `nanos` before it tries again: less
    /// than the stored end of the open state, which is kept below `NO_HINT`.
    #[inline]
    pub(crate) const fn open(word: Word, nanos: u64) -> Self {
        debug_assert!(nanos != NO_HINT);
        Rejected {
            refusal: Refusal::open(word),
            retry_after: nanos,
        }
    }

    /// The state that refused the call.
    pub const fn state(&self) -> State {
        self.refusal.state()
    }

    /// Why the breaker last opened: the rule that fired
    /// ([`Reason::FailureRate`], [`Reason::SlowCallRate`],
    /// [`Reason::ConsecutiveFailures`]), failed probes ([`Reason::ProbesFailed`]),
    /// or an operator ([`Reason::ForcedOpen`], [`Reason::OpenedFor`]). A half-open
    /// rejection gives the reason of the opening before it. The figures of the
    /// window at that moment are in
    /// [`Breaker::last_opening`](crate::Breaker::last_opening).
    pub const fn opened_by(&self) -> Option<Reason> {
        self.refusal.opened_by()
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
#[non_exhaustive]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_keeps_the_state_and_the_reason_of_its_word() {
        for code in [OPEN, HALF_OPEN, FORCED_OPEN] {
            for bits in 0..8u8 {
                let word =
                    Word::from_bits((5 << 8) | 0b1_1000 | code | (u64::from(bits) << OPENED_SHIFT));
                let r = Rejected::new(word, None);
                assert_eq!(r.state(), State::from_code(code));
                assert_eq!(r.opened_by(), opened_by(bits));
                assert_eq!(r.retry_after(), None);
                if code == OPEN {
                    let open = Rejected::open(word, 7);
                    assert_eq!(open, Rejected::new(word, Some(Duration::from_nanos(7))));
                    assert_eq!(open.opened_by(), opened_by(bits));
                }
            }
        }
    }

    #[test]
    fn results_holding_a_rejection_take_its_niche() {
        use std::mem::size_of;
        assert_eq!(size_of::<Rejected>(), 16);
        assert_eq!(size_of::<Result<u64, CallError<()>>>(), 16);
        assert_eq!(size_of::<std::task::Poll<Result<u64, CallError<()>>>>(), 16);
    }
}
