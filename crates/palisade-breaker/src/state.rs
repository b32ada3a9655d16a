//! The states and the packed state word.

use std::fmt;

use crate::event::Reason;

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

// The state word: `generation << 8 | opened_by << 5 | timed << 4 | metrics_only << 3
// | state code`, where `opened_by` is why the breaker last opened (see
// `opened_code`), kept through the half-open state that follows.
// One atomic load tells a call everything it needs in the closed state; the
// generation identifies the state a permit was admitted under.
pub(crate) const CLOSED: u64 = 0;
pub(crate) const OPEN: u64 = 1;
pub(crate) const HALF_OPEN: u64 = 2;
pub(crate) const FORCED_OPEN: u64 = 3;
pub(crate) const FORCED_CLOSED: u64 = 4;
pub(crate) const DISABLED: u64 = 5;
pub(crate) const CODE_MASK: u64 = 0b111;
pub(crate) const METRICS_ONLY: u64 = 0b1000;
/// Calls are timed (the slow-call rule is on): fixed when the breaker is built.
pub(crate) const TIMED: u64 = 0b1_0000;
/// The bits a transition keeps.
pub(crate) const FLAGS: u64 = METRICS_ONLY | TIMED;
/// The bits that must read `CLOSED` for the fast path: closed and untimed.
pub(crate) const FAST_MASK: u64 = CODE_MASK | TIMED;
pub(crate) const OPENED_SHIFT: u32 = 5;
pub(crate) const OPENED_MASK: u64 = 0b111 << OPENED_SHIFT;
pub(crate) const GEN_SHIFT: u32 = 8;

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

/// The code of the last opening's reason in `word`.
#[inline(always)]
pub(crate) const fn opened_bits(word: u64) -> u8 {
    ((word & OPENED_MASK) >> OPENED_SHIFT) as u8
}

/// The reason of an opening coded as [`opened_bits`] gives it.
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

#[inline]
pub(crate) const fn code(word: u64) -> u64 {
    word & CODE_MASK
}

#[inline]
pub(crate) const fn generation(word: u64) -> u64 {
    word >> GEN_SHIFT
}

/// Packs a generation, the flag bits (`METRICS_ONLY`, `TIMED`) and a state code.
#[inline]
pub(crate) const fn pack(generation: u64, flags: u64, code: u64) -> u64 {
    (generation << GEN_SHIFT) | (flags & FLAGS) | code
}
