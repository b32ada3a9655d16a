use std::ops::RangeInclusive;
use std::time::Duration;

use rand::RngCore;
use serde::Deserialize;

/// How a delay is randomised around the schedule's curve, so that clients that
/// failed together do not retry together.
///
/// With `d` the curve's delay (already capped at the maximum delay):
///
/// | jitter | delay drawn uniformly from | mean |
/// | --- | --- | --- |
/// | [`None`](Jitter::None) | exactly `d` | `d` |
/// | [`Full`](Jitter::Full) | `[0, d]` | `d / 2` |
/// | [`Equal`](Jitter::Equal) | `[d / 2, d]` | `3d / 4` |
/// | [`Proportional(p)`](Jitter::Proportional) | `[d·(1 − p), d·(1 + p)]`, capped at the maximum delay | `d` |
///
/// The default is [`Full`](Jitter::Full): the AWS architecture blog's comparison
/// ("Exponential Backoff And Jitter") found it does the least total work and spreads
/// contending clients best. Use [`Equal`](Jitter::Equal) to keep a floor under each
/// delay, [`Proportional`](Jitter::Proportional) to stay close to a designed curve.
///
/// In serde configuration: `"none"`, `"full"`, `"equal"`, or `{ proportional = 0.2 }`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness: the curve exactly.
    None,
    /// Uniform between zero and the curve's delay.
    #[default]
    Full,
    /// Half the curve's delay plus a uniform share of the other half.
    Equal,
    /// The curve's delay plus or minus this fraction of it, in `[0, 1]`.
    Proportional(f64),
}

impl Jitter {
    /// The range a delay is drawn from when the curve's delay is `base`, with delays
    /// capped at `max` (`base` itself is taken as at most `max`).
    ///
    /// ```
    /// use palisade_backoff::Jitter;
    /// use std::time::Duration;
    ///
    /// let s = Duration::from_secs(1);
    /// let envelope = Jitter::Proportional(0.5).envelope(s, s);
    /// assert_eq!(envelope, Duration::from_millis(500)..=s);
    /// ```
    pub fn envelope(&self, base: Duration, max: Duration) -> RangeInclusive<Duration> {
        let max = nanos(max);
        let (lo, hi) = self.bounds(nanos(base).min(max), max);
        Duration::from_nanos(lo)..=Duration::from_nanos(hi)
    }

    /// Whether the fraction of a proportional jitter is within `[0, 1]`.
    pub(crate) fn is_valid(&self) -> bool {
        match self {
            Jitter::Proportional(p) => (0.0..=1.0).contains(p),
            _ => true,
        }
    }

    /// The inclusive bounds in nanoseconds for a base `base ≤ max`.
    #[inline]
    fn bounds(&self, base: u64, max: u64) -> (u64, u64) {
        match *self {
            Jitter::None => (base, base),
            Jitter::Full => (0, base),
            Jitter::Equal => (base - base / 2, base),
            Jitter::Proportional(p) => {
                let b = base as f64;
                // `as` saturates: never more than u64::MAX, never negative.
                // The `min`/`max` with `base` guard against f64 rounding of large
                // bases; `base ≤ max` keeps `hi` under the cap.
                let lo = ((b * (1.0 - p)) as u64).min(base);
                let hi = ((b * (1.0 + p)) as u64).min(max).max(base);
                (lo, hi)
            }
        }
    }

    /// A delay drawn for the base `base ≤ max`, in nanoseconds.
    #[inline]
    pub(crate) fn apply<R: RngCore + ?Sized>(&self, base: u64, max: u64, rng: &mut R) -> u64 {
        if let Jitter::None = self {
            return base;
        }
        let (lo, hi) = self.bounds(base, max);
        lo + uniform_inclusive(rng, hi - lo)
    }
}

/// A uniform draw from `[0, n]` by widening multiply (Lemire's method without the
/// rejection step: the bias is below 2⁻⁶⁴·n, far under a nanosecond).
#[inline]
pub(crate) fn uniform_inclusive<R: RngCore + ?Sized>(rng: &mut R, n: u64) -> u64 {
    ((u128::from(rng.next_u64()) * (u128::from(n) + 1)) >> 64) as u64
}

#[inline]
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SeededRng;

    #[test]
    fn envelopes() {
        let s = Duration::from_secs(1);
        let ms = Duration::from_millis;
        assert_eq!(Jitter::None.envelope(s, s), s..=s);
        assert_eq!(Jitter::Full.envelope(s, s), Duration::ZERO..=s);
        assert_eq!(Jitter::Equal.envelope(s, s), ms(500)..=s);
        assert_eq!(
            Jitter::Proportional(0.2).envelope(s, ms(1100)),
            ms(800)..=ms(1100)
        );
        assert_eq!(
            Jitter::Proportional(0.2).envelope(s, ms(5000)),
            ms(800)..=ms(1200)
        );
        assert_eq!(
            Jitter::Proportional(1.0).envelope(s, ms(5000)),
            ms(0)..=ms(2000)
        );
        // The base is capped at the maximum first.
        assert_eq!(Jitter::None.envelope(ms(5000), s), s..=s);
    }

    #[test]
    fn draws_stay_inside_at_the_extremes() {
        let mut rng = SeededRng::new(3);
        for base in [0, 1, 2, 3, 1_000, u64::MAX / 2, u64::MAX] {
            for jitter in [
                Jitter::Full,
                Jitter::Equal,
                Jitter::Proportional(0.3),
                Jitter::Proportional(1.0),
            ] {
                let (lo, hi) = jitter.bounds(base, u64::MAX);
                for _ in 0..100 {
                    let d = jitter.apply(base, u64::MAX, &mut rng);
                    assert!(
                        lo <= d && d <= hi,
                        "{jitter:?} {base}: {d} outside {lo}..={hi}"
                    );
                }
            }
        }
        assert_eq!(uniform_inclusive(&mut rng, 0), 0);
    }

    #[test]
    fn validity() {
        assert!(Jitter::Proportional(0.0).is_valid());
        assert!(Jitter::Proportional(1.0).is_valid());
        assert!(!Jitter::Proportional(1.01).is_valid());
        assert!(!Jitter::Proportional(-0.1).is_valid());
        assert!(!Jitter::Proportional(f64::NAN).is_valid());
    }
}
