//! The process-wide origin that [`TokioClock`](crate::TokioClock) and
//! [`MonotonicClock`](crate::MonotonicClock) count from.
//!
//! The origin lies a day before the first reading. Tokio's paused clock starts from
//! the real time at which its runtime was built, which may be earlier than the first
//! reading in this process (tests run their runtimes in parallel); the slack keeps
//! every such time after the origin, so timestamps never saturate at zero.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::Timestamp;

const SLACK: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug)]
pub(crate) struct Origin {
    pub(crate) instant: Instant,
    /// The origin in raw `CLOCK_MONOTONIC` nanoseconds (may be negative).
    #[cfg(target_os = "linux")]
    raw_nanos: i128,
}

static ORIGIN: OnceLock<Origin> = OnceLock::new();

#[inline]
pub(crate) fn origin() -> &'static Origin {
    ORIGIN.get_or_init(|| {
        let now = Instant::now();
        let instant = now.checked_sub(SLACK).unwrap_or(now);
        #[cfg(target_os = "linux")]
        {
            // `Instant` is `CLOCK_MONOTONIC` on Linux: read both and anchor the raw
            // origin so that coarse readings land on the same axis.
            let raw = i128::from(linux::read(libc::CLOCK_MONOTONIC));
            let since = Instant::now().saturating_duration_since(instant).as_nanos() as i128;
            Origin {
                instant,
                raw_nanos: raw - since,
            }
        }
        #[cfg(not(target_os = "linux"))]
        Origin { instant }
    })
}

impl Origin {
    #[inline]
    pub(crate) fn since(&self, instant: Instant) -> Timestamp {
        // In 64 bits: `as_nanos` multiplies in 128, and 2^64 ns are 584 years.
        match instant.checked_duration_since(self.instant) {
            Some(d) => Timestamp::from_nanos(
                d.as_secs()
                    .saturating_mul(1_000_000_000)
                    .saturating_add(u64::from(d.subsec_nanos())),
            ),
            None => Timestamp::from_nanos(0),
        }
    }

    #[inline]
    pub(crate) fn to_instant(&self, t: Timestamp) -> Instant {
        self.instant
            .checked_add(t.as_duration())
            .unwrap_or_else(|| far_future(self.instant))
    }

    /// A reading of the monotonic clock, on the origin's axis, with no `Instant`
    /// arithmetic: on Linux one `clock_gettime(CLOCK_MONOTONIC)` (what `Instant`
    /// reads) and a subtraction in 64 bits. It reads at most the few nanoseconds
    /// between the origin's two anchoring reads later than
    /// `since(Instant::now())`, never earlier; `recent()` readings, taken through
    /// `since`, therefore never run ahead of it.
    #[inline]
    pub(crate) fn precise(&self) -> Timestamp {
        #[cfg(target_os = "linux")]
        {
            let raw = linux::read(libc::CLOCK_MONOTONIC) as i64;
            let nanos = raw.saturating_sub(self.raw_nanos as i64);
            Timestamp::from_nanos(if nanos < 0 { 0 } else { nanos as u64 })
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.since(Instant::now())
        }
    }

    /// A reading of the coarse monotonic clock, on the origin's axis.
    #[inline]
    pub(crate) fn coarse(&self) -> Timestamp {
        #[cfg(target_os = "linux")]
        {
            let raw = i128::from(linux::read(libc::CLOCK_MONOTONIC_COARSE));
            let nanos = raw - self.raw_nanos;
            Timestamp::from_nanos(nanos.clamp(0, u64::MAX as i128) as u64)
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.since(Instant::now())
        }
    }
}

fn far_future(from: Instant) -> Instant {
    // About 30 years, as tokio does for "never".
    from.checked_add(Duration::from_secs(86400 * 365 * 30))
        .unwrap_or(from)
}

/// How far [`Clock::recent`](crate::Clock::recent) lags `now()` on the monotonic and
/// tokio clocks when the machine is not starved: the ticker's period (1 ms), or the
/// coarse kernel clock's resolution if that is coarser and the ticker could not
/// start. An overloaded machine that delays the ticker thread adds that delay.
pub fn recent_resolution() -> Duration {
    #[cfg(target_os = "linux")]
    {
        crate::ticker::TICK.max(linux::resolution(libc::CLOCK_MONOTONIC_COARSE))
    }
    #[cfg(not(target_os = "linux"))]
    {
        crate::ticker::TICK
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::time::Duration;

    /// The clock's reading in nanoseconds: the monotonic clocks never read
    /// negative, and 2^63 nanoseconds are 292 years of uptime.
    #[inline(always)]
    pub(super) fn read(clock: libc::clockid_t) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the monotonic clocks exist on
        // every Linux this crate supports, so the call cannot fail.
        let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
        debug_assert_eq!(rc, 0);
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    }

    pub(super) fn resolution(clock: libc::clockid_t) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: as above.
        let rc = unsafe { libc::clock_getres(clock, &mut ts) };
        if rc != 0 {
            return Duration::ZERO;
        }
        Duration::new(
            ts.tv_sec.max(0) as u64,
            ts.tv_nsec.clamp(0, 999_999_999) as u32,
        )
    }
}
