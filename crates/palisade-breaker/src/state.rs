//! The states and the packed state word.

use std::fmt;

use crate::event::Reason;
use crate::sync::{AtomicU64, Ordering};

/// Where a breaker is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls pass and are counted; the trip rules watch them.
    Closed,
    /// Calls are rejected at once until the open duration has passed.
    Open,
    /// A few probes pass; their outcomes decide between closing and reopening.
    HalfOpen,
    /// Held open by [`Breaker::force_open`](crate::Breaker::force_open): every call
    /// is rejected until [`reset`](crate::Breaker::reset).
    ForcedOpen,
    /// Held closed by [`Breaker::force_closed`](crate::Breaker::force_closed): every
    /// call passes and is counted, and nothing trips until
    /// [`reset`](crate::Breaker::reset).
    ForcedClosed,
    /// Turned off by [`Breaker::disable`](crate::Breaker::disable): every call passes
    /// and nothing is counted until [`reset`](crate::Breaker::reset).
    Disabled,
}

impl State {
    /// A short, stable name for logs and metric labels (`closed`, `half_open`, …).
    pub const fn as_str(&self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::ForcedClosed => "forced_closed",
            State::Disabled => "disabled",
        }
    }

    pub(crate) const fn from_code(code: u64) -> State {
        match code {
            CLOSED => State::Closed,
            OPEN => State::Open,
            HALF_OPEN => State::HalfOpen,
            FORCED_OPEN => State::ForcedOpen,
            FORCED_CLOSED => State::ForcedClosed,
            _ => State::Disabled,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
            State::ForcedOpen => "forced open",
            State::ForcedClosed => "forced closed",
            State::Disabled => "disabled",
        })
    }
}

/// The state word: everything a call needs to know, in one atomic `u64`.
///
/// | bits | field | meaning |
/// | --- | --- | --- |
/// | 0–2 | state code | the [`State`], as [`State::code`] numbers it (6 and 7 unused) |
/// | 3 | `metrics_only` | report, never reject; changed live by a reload |
/// | 4 | `timed` | calls are timed (the slow-call rule is on); fixed when built |
/// | 5–7 | `opened_by` | why the breaker last opened ([`opened_code`], 0: not opened), kept through the half-open state that follows |
/// | 8–63 | generation | counts transitions; a permit remembers the generation it was admitted under, and an outcome from another generation is not evidence about this state |
///
/// One load tells a call in the closed state everything: [`is_fast`](Word::is_fast)
/// compares the state code and the `timed` bit with one mask. A word changes only
/// by [`next`](Word::next) (a transition, under the breaker's lock) and
/// [`with_metrics_only`](Word::with_metrics_only) (a reload).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub(crate) struct Word(u64);

pub(crate) const CLOSED: u64 = 0;
pub(crate) const OPEN: u64 = 1;
pub(crate) const HALF_OPEN: u64 = 2;
pub(crate) const FORCED_OPEN: u64 = 3;
pub(crate) const FORCED_CLOSED: u64 = 4;
pub(crate) const DISABLED: u64 = 5;
pub(crate) const CODE_MASK: u64 = 0b111;
const METRICS_ONLY: u64 = 0b1000;
const TIMED: u64 = 0b1_0000;
/// The bits a transition keeps.
const FLAGS: u64 = METRICS_ONLY | TIMED;
/// The bits that must read `CLOSED` for the fast path: closed and untimed.
const FAST_MASK: u64 = CODE_MASK | TIMED;
pub(crate) const OPENED_SHIFT: u32 = 5;
const OPENED_MASK: u64 = 0b111 << OPENED_SHIFT;
const GEN_SHIFT: u32 = 8;

impl State {
    /// The state's code in the low bits of a [`Word`].
    pub(crate) const fn code(self) -> u64 {
        match self {
            State::Closed => CLOSED,
            State::Open => OPEN,
            State::HalfOpen => HALF_OPEN,
            State::ForcedOpen => FORCED_OPEN,
            State::ForcedClosed => FORCED_CLOSED,
            State::Disabled => DISABLED,
        }
    }
}

impl Word {
    /// A new breaker's word: closed, generation 0, no opening yet.
    pub(crate) const fn initial(metrics_only: bool, timed: bool) -> Word {
        let mut bits = CLOSED;
        if metrics_only {
            bits |= METRICS_ONLY;
        }
        if timed {
            bits |= TIMED;
        }
        Word(bits)
    }

    /// The word whose bits are `bits` (as [`bits`](Word::bits) gave them).
    #[cfg(test)]
    pub(crate) const fn from_bits(bits: u64) -> Word {
        Word(bits)
    }

    /// The raw bits, as the atomic holds them.
    #[inline(always)]
    pub(crate) const fn bits(self) -> u64 {
        self.0
    }

    /// The state.
    #[inline]
    pub(crate) const fn state(self) -> State {
        State::from_code(self.0 & CODE_MASK)
    }

    /// Whether the state is `state`: one compare of the code, no decoding.
    #[inline(always)]
    pub(crate) const fn is(self, state: State) -> bool {
        self.0 & CODE_MASK == state.code()
    }

    /// Whether a call is admitted by the fast path: closed, calls untimed.
    #[inline(always)]
    pub(crate) const fn is_fast(self) -> bool {
        self.0 & FAST_MASK == CLOSED
    }

    /// The generation: how many transitions the breaker has made.
    #[inline]
    pub(crate) const fn generation(self) -> u64 {
        self.0 >> GEN_SHIFT
    }

    /// Whether the breaker reports without rejecting.
    #[inline]
    pub(crate) const fn metrics_only(self) -> bool {
        self.0 & METRICS_ONLY != 0
    }

    /// The same word with metrics-only mode set or cleared (a reload): the
    /// generation stays, so permits admitted before it still count.
    pub(crate) const fn with_metrics_only(self, on: bool) -> Word {
        if on {
            Word(self.0 | METRICS_ONLY)
        } else {
            Word(self.0 & !METRICS_ONLY)
        }
    }

    /// The code of the last opening's reason ([`opened_by`] decodes it).
    #[inline(always)]
    pub(crate) const fn opened_bits(self) -> u8 {
        ((self.0 & OPENED_MASK) >> OPENED_SHIFT) as u8
    }

    /// The word after a transition to `to` for `reason`: the next generation, the
    /// flags kept, and the reason of the opening recorded when `to` opens (kept
    /// when it goes half-open, cleared otherwise).
    ///
    /// Every pair of states is listed, so a new state cannot be added without
    /// deciding its transitions: the half-open state is reached only from the open
    /// state (its duration elapsed); every other state may be reached from any
    /// state (a trip, the probes' verdict, a reset, or an operator's force,
    /// disable or open-for).
    pub(crate) fn next(self, to: State, reason: Reason) -> Word {
        use State::*;
        let allowed = match (self.state(), to) {
            (Open, HalfOpen) => true,
            (Closed | HalfOpen | ForcedOpen | ForcedClosed | Disabled, HalfOpen) => false,
            (
                Closed | Open | HalfOpen | ForcedOpen | ForcedClosed | Disabled,
                Closed | Open | ForcedOpen | ForcedClosed | Disabled,
            ) => true,
        };
        debug_assert!(allowed, "no transition from {} to {to}", self.state());
        let opened = match to {
            Open | ForcedOpen => opened_code(reason),
            HalfOpen => self.0 & OPENED_MASK,
            Closed | ForcedClosed | Disabled => 0,
        };
        let generation = self.generation() + 1;
        Word((generation << GEN_SHIFT) | (self.0 & FLAGS) | opened | to.code())
    }
}

impl std::fmt::Debug for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Word")
            .field("state", &self.state())
            .field("generation", &self.generation())
            .field("metrics_only", &self.metrics_only())
            .field("timed", &(self.0 & TIMED != 0))
            .field("opened_by", &opened_by(self.opened_bits()))
            .finish()
    }
}

/// The word's code for the reason of an opening (0: not opened).
pub(crate) const fn opened_code(reason: Reason) -> u64 {
    let code = match reason {
        Reason::FailureRate => 1,
        Reason::SlowCallRate => 2,
        Reason::ConsecutiveFailures => 3,
        Reason::ProbesFailed => 4,
        Reason::ForcedOpen => 5,
        Reason::OpenedFor => 6,
        _ => 0,
    };
    code << OPENED_SHIFT
}

/// The code of the last opening's reason in the low byte of a word.
#[inline(always)]
pub(crate) const fn opened_bits(low: u64) -> u8 {
    ((low & OPENED_MASK) >> OPENED_SHIFT) as u8
}

/// The reason of an opening coded as [`Word::opened_bits`] gives it.
pub(crate) const fn opened_by(bits: u8) -> Option<Reason> {
    match bits {
        1 => Some(Reason::FailureRate),
        2 => Some(Reason::SlowCallRate),
        3 => Some(Reason::ConsecutiveFailures),
        4 => Some(Reason::ProbesFailed),
        5 => Some(Reason::ForcedOpen),
        6 => Some(Reason::OpenedFor),
        _ => None,
    }
}

/// The state word in an atomic.
#[derive(Debug)]
pub(crate) struct AtomicWord(AtomicU64);

impl AtomicWord {
    pub(crate) fn new(word: Word) -> AtomicWord {
        AtomicWord(AtomicU64::new(word.0))
    }

    #[inline(always)]
    pub(crate) fn load(&self, order: Ordering) -> Word {
        Word(self.0.load(order))
    }

    #[inline(always)]
    pub(crate) fn store(&self, word: Word, order: Ordering) {
        self.0.store(word.0, order);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [State; 6] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::ForcedClosed,
        State::Disabled,
    ];

    #[test]
    fn codes_round_trip() {
        for state in ALL {
            assert_eq!(State::from_code(state.code()), state);
            let from = Word::initial(false, false).next(State::Open, Reason::FailureRate);
            let to = from.next(state, Reason::Reset);
            assert!(to.is(state) && to.state() == state);
        }
    }

    #[test]
    fn a_transition_moves_the_generation_and_keeps_the_flags() {
        let w = Word::initial(true, true);
        assert!(!w.is_fast(), "timed calls leave the fast path");
        let open = w.next(State::Open, Reason::FailureRate);
        assert_eq!(open.generation(), 1);
        assert!(open.metrics_only());
        assert_eq!(opened_by(open.opened_bits()), Some(Reason::FailureRate));
        let half = open.next(State::HalfOpen, Reason::OpenDurationElapsed);
        assert_eq!(half.generation(), 2);
        assert_eq!(
            opened_by(half.opened_bits()),
            Some(Reason::FailureRate),
            "kept"
        );
        let closed = half.next(State::Closed, Reason::ProbesSucceeded);
        assert_eq!(closed.opened_bits(), 0, "cleared");
        assert!(closed.is(State::Closed) && !closed.is_fast());
        assert!(Word::initial(false, false).is_fast());
        assert!(
            !Word::initial(false, false)
                .with_metrics_only(true)
                .with_metrics_only(false)
                .metrics_only()
        );
    }

    #[test]
    #[should_panic(expected = "no transition from closed to half-open")]
    fn half_open_is_reached_only_from_open() {
        let _ = Word::initial(false, false).next(State::HalfOpen, Reason::OpenDurationElapsed);
    }
}
