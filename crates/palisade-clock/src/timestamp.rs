use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time: nanoseconds since the clock's origin, in one `u64`.
///
/// A `u64` of nanoseconds spans 584 years, so arithmetic saturates rather than
/// wraps. Convert to and from the raw value with [`Timestamp::as_nanos`] and
/// [`Timestamp::from_nanos`] to keep a timestamp in an `AtomicU64`.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The origin.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The latest representable time; also used as "never".
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// A timestamp `nanos` nanoseconds after the origin.
    #[inline]
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// Nanoseconds since the origin.
    #[inline]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// A timestamp `duration` after the origin, saturating at [`Timestamp::MAX`].
    #[inline]
    pub const fn from_duration(duration: Duration) -> Self {
        Timestamp(saturating_nanos(duration))
    }

    /// The time since the origin.
    #[inline]
    pub const fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    #[inline]
    pub const fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + duration`, or `None` past [`Timestamp::MAX`].
    #[inline]
    pub const fn checked_add(self, duration: Duration) -> Option<Timestamp> {
        let nanos = duration.as_nanos();
        if nanos > u64::MAX as u128 {
            return None;
        }
        match self.0.checked_add(nanos as u64) {
            Some(n) => Some(Timestamp(n)),
            None => None,
        }
    }

    /// `self + duration`, saturating at [`Timestamp::MAX`].
    #[inline]
    pub const fn saturating_add(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(saturating_nanos(duration)))
    }

    /// `self - duration`, saturating at [`Timestamp::ZERO`].
    #[inline]
    pub const fn saturating_sub(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(saturating_nanos(duration)))
    }
}

#[inline]
const fn saturating_nanos(duration: Duration) -> u64 {
    let nanos = duration.as_nanos();
    if nanos > u64::MAX as u128 {
        u64::MAX
    } else {
        nanos as u64
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    /// Saturating addition.
    #[inline]
    fn add(self, rhs: Duration) -> Timestamp {
        self.saturating_add(rhs)
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    /// Saturating subtraction.
    #[inline]
    fn sub(self, rhs: Duration) -> Timestamp {
        self.saturating_sub(rhs)
    }
}

impl Sub<Timestamp> for Timestamp {
    type Output = Duration;
    /// The saturating distance, as [`Timestamp::saturating_duration_since`].
    #[inline]
    fn sub(self, rhs: Timestamp) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({:?})", self.as_duration())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_nanos(10);
        assert_eq!(t - Duration::from_nanos(20), Timestamp::ZERO);
        assert_eq!(Timestamp::MAX + Duration::from_secs(1), Timestamp::MAX);
        assert_eq!(t.checked_add(Duration::MAX), None);
        assert_eq!(t + Duration::MAX, Timestamp::MAX);
        assert_eq!(
            Timestamp::from_nanos(5).saturating_duration_since(t),
            Duration::ZERO
        );
        assert_eq!(t - Timestamp::from_nanos(4), Duration::from_nanos(6));
        assert_eq!(
            Timestamp::from_duration(Duration::from_millis(3)).as_nanos(),
            3_000_000
        );
        assert_eq!(Timestamp::from_duration(Duration::MAX), Timestamp::MAX);
    }
}
