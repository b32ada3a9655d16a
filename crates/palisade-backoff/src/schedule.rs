use std::iter::FusedIterator;
use std::time::Duration;

use rand::RngCore;

use crate::jitter::{nanos, uniform_inclusive};
use crate::{ConfigError, Jitter, SeededRng, ThreadLocalRng};

/// The default first delay of the growing curves: 100 ms — long enough for a
/// momentary blip (a leader election, a dropped connection) to pass, short enough
/// that a caller hardly notices one retry.
pub const DEFAULT_INITIAL: Duration = Duration::from_millis(100);
/// The default growth factor of an exponential curve: 2, the doubling that backs
/// off quickly enough to relieve an overloaded dependency within a few attempts.
pub const DEFAULT_FACTOR: f64 = 2.0;
/// The default cap on one delay for growing curves: 10 s. A caller that has waited
/// this long between attempts is usually better served by failing (and falling back)
/// than by waiting longer. A constant schedule's cap defaults to its delay.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(10);
/// The default number of attempts, the first included: 3, as in resilience4j. Two
/// retries ride out most transient failures, and a dependency that is down sees at
/// most three times its normal load from retries.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// The longest duration a schedule can represent: `u64::MAX` nanoseconds (about 584
/// years).
const MAX_REPRESENTABLE: Duration = Duration::from_nanos(u64::MAX);

/// The shape of the delays before jitter.
#[derive(Copy, Clone, Debug, PartialEq)]
pub(crate) enum Curve {
    Constant {
        delay: Duration,
    },
    Linear {
        initial: Duration,
        step: Duration,
    },
    /// `mul` is the factor as an integer when it is one (up to `u32::MAX`), else 0:
    /// the common factors grow by an integer multiply instead of a float round trip.
    Exponential {
        initial: Duration,
        factor: f64,
        mul: u64,
    },
    Fibonacci {
        initial: Duration,
    },
    Decorrelated {
        base: Duration,
    },
}

/// `factor` as an integer if it is a whole number from 1 to `u32::MAX`, else 0.
fn integer_factor(factor: f64) -> u64 {
    if (1.0..=f64::from(u32::MAX)).contains(&factor) && factor.fract() == 0.0 {
        factor as u64
    } else {
        0
    }
}

impl Curve {
    fn name(&self) -> &'static str {
        match self {
            Curve::Constant { .. } => "constant",
            Curve::Linear { .. } => "linear",
            Curve::Exponential { .. } => "exponential",
            Curve::Fibonacci { .. } => "fibonacci",
            Curve::Decorrelated { .. } => "decorrelated",
        }
    }

    fn initial(&self) -> Duration {
        match *self {
            Curve::Constant { delay } => delay,
            Curve::Linear { initial, .. }
            | Curve::Exponential { initial, .. }
            | Curve::Fibonacci { initial } => initial,
            Curve::Decorrelated { base } => base,
        }
    }
}

/// A validated delay schedule: a curve, a jitter and caps. `Copy`, immutable, and
/// shared freely; [`iter`](Backoff::iter) hands out the delays.
///
/// | curve | the `n`th delay (from 0), before jitter and cap |
/// | --- | --- |
/// | [`constant(d)`](Backoff::constant) | `d` |
/// | [`linear(i, s)`](Backoff::linear) | `i + n·s` |
/// | [`exponential(i)`](Backoff::exponential) with [`factor(f)`](BackoffBuilder::factor) | `i·fⁿ` |
/// | [`fibonacci(i)`](Backoff::fibonacci) | `i, i, 2i, 3i, 5i, …` |
/// | [`decorrelated(b)`](Backoff::decorrelated) | `min(max_delay, uniform(b, 3·previous))`, starting from `previous = b` |
///
/// Caps: every delay, jittered or not, is at most [`max_delay`](Backoff::max_delay);
/// a schedule yields at most [`max_attempts`](Backoff::max_attempts)` − 1` delays
/// (one before each retry); and it ends before the sum of its delays would exceed
/// [`max_elapsed`](Backoff::max_elapsed).
///
/// [`Backoff::default()`] is exponential from 100 ms, factor 2, capped at 10 s, full
/// jitter, 3 attempts, no elapsed cap (see the `DEFAULT_*` constants for reasons; the
/// context's deadline is what usually bounds the whole).
///
/// ```
/// use palisade_backoff::{Backoff, Jitter};
/// use std::time::Duration;
///
/// let backoff = Backoff::exponential(Duration::from_millis(100))
///     .factor(3.0)
///     .max_delay(Duration::from_secs(1))
///     .jitter(Jitter::None)
///     .max_attempts(6)
///     .build()?;
/// let ms: Vec<u128> = backoff.iter().map(|d| d.as_millis()).collect();
/// assert_eq!(ms, [100, 300, 900, 1000, 1000]);
/// # Ok::<(), palisade_backoff::ConfigError>(())
/// ```
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Backoff {
    curve: Curve,
    jitter: Jitter,
    max_delay: Duration,
    max_attempts: u32,
    max_elapsed: Option<Duration>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            curve: Curve::Exponential {
                initial: DEFAULT_INITIAL,
                factor: DEFAULT_FACTOR,
                mul: integer_factor(DEFAULT_FACTOR),
            },
            jitter: Jitter::Full,
            max_delay: DEFAULT_MAX_DELAY,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_elapsed: None,
        }
    }
}

impl Backoff {
    /// The same delay every time. Its maximum delay defaults to `delay`. A zero
    /// `delay` retries at once (no backoff at all: bound it by the attempts).
    pub fn constant(delay: Duration) -> BackoffBuilder {
        BackoffBuilder::new(Curve::Constant { delay })
    }

    /// `initial`, then growing by `step` each time. `initial` may be zero (the first
    /// retry at once) if `step` is not.
    pub fn linear(initial: Duration, step: Duration) -> BackoffBuilder {
        BackoffBuilder::new(Curve::Linear { initial, step })
    }

    /// `initial`, then multiplied by the [factor](BackoffBuilder::factor) (default
    /// [`DEFAULT_FACTOR`]) each time. `initial` must be greater than zero, or the
    /// delays would never grow.
    pub fn exponential(initial: Duration) -> BackoffBuilder {
        BackoffBuilder::new(Curve::Exponential {
            initial,
            factor: DEFAULT_FACTOR,
            mul: integer_factor(DEFAULT_FACTOR),
        })
    }

    /// The Fibonacci sequence scaled by `initial`: `i, i, 2i, 3i, 5i, 8i, …`; grows
    /// more gently than doubling. `initial` must be greater than zero.
    pub fn fibonacci(initial: Duration) -> BackoffBuilder {
        BackoffBuilder::new(Curve::Fibonacci { initial })
    }

    /// Decorrelated jitter from the AWS architecture blog ("Exponential Backoff And
    /// Jitter"): each delay is `min(max_delay, uniform(base, 3 × previous delay))`.
    /// It is random by construction, so its [`jitter`](BackoffBuilder::jitter) must
    /// stay [`Jitter::None`].
    pub fn decorrelated(base: Duration) -> BackoffBuilder {
        BackoffBuilder::new(Curve::Decorrelated { base }).jitter(Jitter::None)
    }

    /// The delays, jittered by the fast per-thread generator ([`ThreadLocalRng`]).
    /// Creating the iterator touches no random state.
    #[inline]
    pub fn iter(&self) -> Delays<ThreadLocalRng> {
        self.iter_with_rng(ThreadLocalRng)
    }

    /// The delays, jittered reproducibly: the same seed gives the same delays.
    #[inline]
    pub fn iter_seeded(&self, seed: u64) -> Delays<SeededRng> {
        self.iter_with_rng(SeededRng::new(seed))
    }

    /// The delays, jittered by `rng` (any `rand` generator, or `&mut` one).
    #[inline]
    pub fn iter_with_rng<R: RngCore>(&self, rng: R) -> Delays<R> {
        let max = nanos(self.max_delay);
        let first = nanos(self.curve.initial()).min(max);
        Delays {
            backoff: *self,
            max,
            cap: self.max_elapsed.map_or(u64::MAX, nanos),
            current: first,
            next: first,
            left: self.max_attempts.saturating_sub(1),
            yielded: 0,
            elapsed: 0,
            rng,
        }
    }

    /// The cap on every delay.
    #[inline]
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The number of attempts, the first included; the schedule yields one fewer
    /// delays.
    #[inline]
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The cap on the sum of the delays, if any.
    #[inline]
    pub fn max_elapsed(&self) -> Option<Duration> {
        self.max_elapsed
    }

    /// The jitter.
    #[inline]
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The name of the curve: `constant`, `linear`, `exponential`, `fibonacci` or
    /// `decorrelated`.
    pub fn kind(&self) -> &'static str {
        self.curve.name()
    }

    /// The first delay of the curve, before jitter and cap (the base of a
    /// decorrelated schedule).
    pub fn initial(&self) -> Duration {
        self.curve.initial()
    }

    /// A builder that starts from this schedule, to change a field and validate
    /// again.
    pub fn to_builder(&self) -> BackoffBuilder {
        BackoffBuilder {
            curve: self.curve,
            jitter: self.jitter,
            max_delay: Some(self.max_delay),
            max_attempts: self.max_attempts,
            max_elapsed: self.max_elapsed,
            misuse: None,
        }
    }
}

/// Builds a [`Backoff`]; [`build`](BackoffBuilder::build) validates every field.
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct BackoffBuilder {
    curve: Curve,
    jitter: Jitter,
    max_delay: Option<Duration>,
    max_attempts: u32,
    max_elapsed: Option<Duration>,
    /// A setter called on a curve it does not apply to, reported by `build`.
    misuse: Option<ConfigError>,
}

impl BackoffBuilder {
    fn new(curve: Curve) -> Self {
        BackoffBuilder {
            curve,
            jitter: Jitter::default(),
            max_delay: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_elapsed: None,
            misuse: None,
        }
    }

    /// The growth factor of an exponential curve: finite and at least 1 (default
    /// [`DEFAULT_FACTOR`]). Only exponential schedules have one.
    pub fn factor(mut self, factor: f64) -> Self {
        match &mut self.curve {
            Curve::Exponential { factor: f, mul, .. } => {
                *f = factor;
                *mul = integer_factor(factor);
            }
            other => {
                self.misuse.get_or_insert(ConfigError::new(
                    "factor",
                    factor,
                    format!("only on an exponential schedule, not {}", other.name()),
                ));
            }
        }
        self
    }

    /// The jitter (default [`Jitter::Full`]; [`Jitter::None`] for decorrelated).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The cap on every delay, at least the initial delay (default
    /// [`DEFAULT_MAX_DELAY`]; a constant schedule's delay for a constant schedule).
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = Some(max_delay);
        self
    }

    /// The number of attempts, the first included, at least 1 (default
    /// [`DEFAULT_MAX_ATTEMPTS`]). `u32::MAX` is, in practice, unlimited: bound such a
    /// schedule with [`max_elapsed`](BackoffBuilder::max_elapsed) or a deadline (a
    /// `palisade-retry` policy accepts more than 100 attempts only with
    /// `max_elapsed`).
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// The cap on the sum of the delays, greater than zero (default none).
    pub fn max_elapsed(mut self, max_elapsed: Duration) -> Self {
        self.max_elapsed = Some(max_elapsed);
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field: `factor` not finite or
    /// below 1, `initial` above `max_delay`, a proportional `jitter` outside
    /// `[0, 1]`, a jitter on a decorrelated schedule, `max_attempts` of 0, a zero
    /// `max_elapsed`, a zero `initial` for an exponential, Fibonacci or
    /// decorrelated schedule (whose delays would never grow from it), a linear
    /// schedule with a zero `initial` and `step`, or a duration beyond 584 years.
    ///
    /// A zero delay is accepted where it means something: a constant schedule of 0
    /// retries at once (bound it by `max_attempts` and, in a retry policy, a
    /// budget), and a linear schedule from 0 makes its first retry at once.
    pub fn build(self) -> Result<Backoff, ConfigError> {
        if let Some(err) = self.misuse {
            return Err(err);
        }
        let initial = self.curve.initial();
        let max_delay = self.max_delay.unwrap_or(match self.curve {
            Curve::Constant { delay } => delay,
            _ => DEFAULT_MAX_DELAY,
        });
        let representable = |field: &'static str, d: Duration| {
            if d > MAX_REPRESENTABLE {
                Err(ConfigError::duration(
                    field,
                    d,
                    "at most 584 years (u64::MAX nanoseconds)",
                ))
            } else {
                Ok(())
            }
        };
        representable("initial", initial)?;
        representable("max_delay", max_delay)?;
        if let Some(e) = self.max_elapsed {
            representable("max_elapsed", e)?;
        }
        match self.curve {
            Curve::Exponential { factor, .. } if !(factor.is_finite() && factor >= 1.0) => {
                return Err(ConfigError::new("factor", factor, "a finite number ≥ 1.0"));
            }
            Curve::Linear { initial, step } => {
                representable("step", step)?;
                if initial.is_zero() && step.is_zero() {
                    return Err(ConfigError::duration(
                        "step",
                        step,
                        "greater than zero when initial is zero (a constant schedule of 0 \
                         retries at once)",
                    ));
                }
            }
            Curve::Decorrelated { base } if base.is_zero() => {
                return Err(ConfigError::duration(
                    "initial",
                    base,
                    "greater than zero for a decorrelated schedule (its delays grow from it)",
                ));
            }
            Curve::Exponential { initial, .. } | Curve::Fibonacci { initial }
                if initial.is_zero() =>
            {
                return Err(ConfigError::duration(
                    "initial",
                    initial,
                    format!(
                        "greater than zero for {} {} schedule (its delays grow from it; \
                         a constant schedule of 0 retries at once)",
                        if matches!(self.curve, Curve::Exponential { .. }) {
                            "an"
                        } else {
                            "a"
                        },
                        self.curve.name()
                    ),
                ));
            }
            _ => {}
        }
        if initial > max_delay {
            return Err(ConfigError::duration(
                "initial",
                initial,
                format!("at most max_delay ({max_delay:?})"),
            ));
        }
        if !self.jitter.is_valid() {
            let Jitter::Proportional(p) = self.jitter else {
                unreachable!("only a proportional jitter can be invalid")
            };
            return Err(ConfigError::new(
                "jitter",
                p,
                "a proportional fraction within [0.0, 1.0]",
            ));
        }
        if matches!(self.curve, Curve::Decorrelated { .. }) && self.jitter != Jitter::None {
            return Err(ConfigError::new(
                "jitter",
                self.jitter,
                "none on a decorrelated schedule, which is random by construction",
            ));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::new(
                "max_attempts",
                0,
                "at least 1 (the first attempt counts)",
            ));
        }
        if self.max_elapsed == Some(Duration::ZERO) {
            return Err(ConfigError::duration(
                "max_elapsed",
                Duration::ZERO,
                "greater than zero, or unset for no cap",
            ));
        }
        Ok(Backoff {
            curve: self.curve,
            jitter: self.jitter,
            max_delay,
            max_attempts: self.max_attempts,
            max_elapsed: self.max_elapsed,
        })
    }
}

/// The delays of a [`Backoff`], one before each retry: a cheap `Clone` iterator
/// that allocates nothing.
///
/// A clone continues from the same point; with a [`SeededRng`] it yields the same
/// delays, with the default [`ThreadLocalRng`] fresh ones.
#[derive(Clone, Debug)]
pub struct Delays<R = ThreadLocalRng> {
    backoff: Backoff,
    /// The cap on one delay, in nanoseconds.
    max: u64,
    /// The cap on the sum of the delays, in nanoseconds (`u64::MAX`: none).
    cap: u64,
    /// The curve's next delay before jitter, capped (the previous delay for
    /// decorrelated), in nanoseconds.
    current: u64,
    /// The Fibonacci successor of `current`.
    next: u64,
    /// Delays left to yield (zero once the schedule has ended).
    left: u32,
    yielded: u32,
    /// The sum of the delays yielded, in nanoseconds.
    elapsed: u64,
    rng: R,
}

impl<R> Delays<R> {
    /// The schedule these delays follow.
    #[inline]
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// How many delays have been yielded.
    #[inline]
    pub fn yielded(&self) -> u32 {
        self.yielded
    }

    /// The sum of the delays yielded so far.
    #[inline]
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.elapsed)
    }

    /// Advances the un-jittered curve past `current`.
    #[inline]
    fn advance(&mut self, max: u64) {
        match self.backoff.curve {
            Curve::Constant { .. } | Curve::Decorrelated { .. } => {}
            Curve::Linear { step, .. } => {
                self.current = self.current.saturating_add(nanos(step)).min(max);
            }
            Curve::Exponential { mul, .. } if mul != 0 => {
                self.current = self.current.saturating_mul(mul).min(max);
            }
            Curve::Exponential { factor, .. } => {
                // `as` saturates; the `max` with `current` guards against f64 rounding
                // of bases above 2^53 ns (104 days).
                let grown = (self.current as f64 * factor) as u64;
                self.current = grown.max(self.current).min(max);
            }
            Curve::Fibonacci { .. } => {
                let sum = self.current.saturating_add(self.next);
                self.current = self.next.min(max);
                self.next = sum.min(max);
            }
        }
    }
}

impl<R: RngCore> Delays<R> {
    /// The next delay, if the schedule has one.
    #[inline(always)]
    fn step(&mut self) -> Option<Duration> {
        if self.left == 0 {
            return None;
        }
        let max = self.max;
        let delay = match self.backoff.curve {
            Curve::Decorrelated { base } => {
                let base = nanos(base);
                let hi = self.current.saturating_mul(3);
                let d = (base + uniform_inclusive(&mut self.rng, hi - base)).min(max);
                self.current = d;
                d
            }
            _ => {
                let d = self.backoff.jitter.apply(self.current, max, &mut self.rng);
                self.advance(max);
                d
            }
        };
        let elapsed = self.elapsed.saturating_add(delay);
        if elapsed > self.cap {
            self.left = 0;
            return None;
        }
        self.elapsed = elapsed;
        self.yielded += 1;
        self.left -= 1;
        Some(Duration::from_nanos(delay))
    }
}

impl<R: RngCore> Iterator for Delays<R> {
    type Item = Duration;

    #[inline]
    fn next(&mut self) -> Option<Duration> {
        self.step()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.left).unwrap_or(usize::MAX);
        if self.backoff.max_elapsed.is_some() {
            (0, Some(left))
        } else {
            (left, Some(left))
        }
    }

    /// Internal iteration (`sum`, `collect`, `for_each`, ...): the loop keeps each
    /// step inline.
    #[inline]
    fn fold<B, F>(mut self, init: B, mut f: F) -> B
    where
        F: FnMut(B, Duration) -> B,
    {
        let mut acc = init;
        while let Some(d) = self.step() {
            acc = f(acc, d);
        }
        acc
    }
}

impl<R: RngCore> FusedIterator for Delays<R> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn plain(b: BackoffBuilder, attempts: u32) -> Vec<u128> {
        b.jitter(Jitter::None)
            .max_attempts(attempts)
            .build()
            .unwrap()
            .iter()
            .map(|d| d.as_millis())
            .collect()
    }

    #[test]
    fn curves() {
        assert_eq!(plain(Backoff::constant(ms(50)), 4), [50, 50, 50]);
        assert_eq!(
            plain(Backoff::linear(ms(100), ms(50)).max_delay(ms(220)), 6),
            [100, 150, 200, 220, 220]
        );
        assert_eq!(
            plain(Backoff::exponential(ms(100)), 6),
            [100, 200, 400, 800, 1600]
        );
        assert_eq!(
            plain(Backoff::fibonacci(ms(10)).max_delay(ms(70)), 9),
            [10, 10, 20, 30, 50, 70, 70, 70]
        );
        assert_eq!(plain(Backoff::constant(ms(1)), 1), Vec::<u128>::new());
    }

    #[test]
    fn whole_and_fractional_factors() {
        assert_eq!(
            plain(Backoff::exponential(ms(10)).factor(3.0), 5),
            [10, 30, 90, 270]
        );
        assert_eq!(
            plain(Backoff::exponential(ms(100)).factor(1.5), 5),
            [100, 150, 225, 337]
        );
        // A whole factor saturates at the cap instead of overflowing.
        assert_eq!(
            plain(
                Backoff::exponential(Duration::from_nanos(u64::MAX / 2))
                    .factor(f64::from(u32::MAX))
                    .max_delay(Duration::from_nanos(u64::MAX)),
                4
            ),
            [
                u64::MAX as u128 / 2 / 1_000_000,
                u64::MAX as u128 / 1_000_000,
                u64::MAX as u128 / 1_000_000
            ]
        );
        assert_eq!(integer_factor(2.0), 2);
        assert_eq!(integer_factor(f64::from(u32::MAX)), u64::from(u32::MAX));
        assert_eq!(integer_factor(f64::from(u32::MAX) + 1.0), 0);
        assert_eq!(integer_factor(1.5), 0);
        assert_eq!(integer_factor(0.0), 0);
    }

    #[test]
    fn max_elapsed_ends_before_the_sum_would_exceed() {
        let b = Backoff::constant(ms(300))
            .jitter(Jitter::None)
            .max_attempts(100)
            .max_elapsed(ms(1000))
            .build()
            .unwrap();
        let mut it = b.iter();
        assert_eq!(it.size_hint(), (0, Some(99)));
        assert_eq!(it.by_ref().count(), 3);
        assert_eq!(it.elapsed(), ms(900));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn decorrelated_stays_between_base_and_cap() {
        let b = Backoff::decorrelated(ms(10))
            .max_delay(ms(500))
            .max_attempts(200)
            .build()
            .unwrap();
        let delays: Vec<Duration> = b.iter_seeded(9).collect();
        assert_eq!(delays.len(), 199);
        assert!(delays.iter().all(|d| (ms(10)..=ms(500)).contains(d)));
        assert!(delays.contains(&ms(500)), "the cap is reached");
        let mut prev = ms(10);
        for d in delays {
            assert!(d <= (prev * 3).min(ms(500)));
            prev = d;
        }
    }

    #[test]
    fn seeded_is_reproducible_and_clones_continue() {
        let b = Backoff::default()
            .to_builder()
            .max_attempts(10)
            .build()
            .unwrap();
        let a: Vec<_> = b.iter_seeded(1).collect();
        assert_eq!(a, b.iter_seeded(1).collect::<Vec<_>>());
        assert_ne!(a, b.iter_seeded(2).collect::<Vec<_>>());
        let mut it = b.iter_seeded(1);
        it.next();
        assert_eq!(it.clone().collect::<Vec<_>>(), a[1..]);
        assert_eq!(it.size_hint(), (8, Some(8)));
        assert_eq!(it.yielded(), 1);
        assert_eq!(it.backoff(), &b);
    }

    #[test]
    fn validation_names_the_field() {
        let s = Duration::from_secs;
        let field = |b: BackoffBuilder| b.build().unwrap_err().field().to_owned();
        assert_eq!(field(Backoff::exponential(s(1)).factor(0.99)), "factor");
        assert_eq!(field(Backoff::exponential(s(1)).factor(f64::NAN)), "factor");
        assert_eq!(
            field(Backoff::exponential(s(1)).factor(f64::INFINITY)),
            "factor"
        );
        assert_eq!(field(Backoff::constant(s(1)).factor(2.0)), "factor");
        assert_eq!(field(Backoff::exponential(s(20))), "initial");
        assert_eq!(field(Backoff::exponential(s(2)).max_delay(s(1))), "initial");
        assert_eq!(
            field(Backoff::constant(s(1)).jitter(Jitter::Proportional(1.5))),
            "jitter"
        );
        assert_eq!(
            field(Backoff::decorrelated(s(1)).jitter(Jitter::Full)),
            "jitter"
        );
        assert_eq!(field(Backoff::decorrelated(Duration::ZERO)), "initial");
        assert_eq!(
            field(Backoff::constant(s(1)).max_attempts(0)),
            "max_attempts"
        );
        assert_eq!(
            field(Backoff::constant(s(1)).max_elapsed(Duration::ZERO)),
            "max_elapsed"
        );
        assert_eq!(
            field(Backoff::constant(s(1)).max_delay(Duration::MAX)),
            "max_delay"
        );
        assert_eq!(field(Backoff::linear(s(1), Duration::MAX)), "step");
        let err = Backoff::exponential(s(2))
            .max_delay(s(1))
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`initial` is 2s, allowed at most max_delay (1s)"
        );
        // A constant schedule's cap defaults to its delay, however long.
        assert_eq!(Backoff::constant(s(30)).build().unwrap().max_delay(), s(30));
    }

    #[test]
    fn a_zero_first_delay_is_refused_where_the_delays_would_never_grow() {
        let field = |b: BackoffBuilder| b.build().unwrap_err().field().to_owned();
        let zero = Duration::ZERO;
        assert_eq!(field(Backoff::exponential(zero)), "initial");
        assert_eq!(field(Backoff::fibonacci(zero)), "initial");
        assert_eq!(field(Backoff::linear(zero, zero)), "step");
        let err = Backoff::exponential(zero).build().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`initial` is 0s, allowed greater than zero \
             for an exponential schedule (its delays grow from it; a constant schedule \
             of 0 retries at once)"
        );
        // Accepted: immediate retries, and a linear schedule that grows from zero.
        let immediate = Backoff::constant(zero).max_attempts(3).build().unwrap();
        assert_eq!(immediate.iter().collect::<Vec<_>>(), [zero, zero]);
        let growing = Backoff::linear(zero, ms(10))
            .jitter(Jitter::None)
            .max_attempts(3)
            .build()
            .unwrap();
        assert_eq!(growing.iter().collect::<Vec<_>>(), [zero, ms(10)]);
    }

    #[test]
    fn default_is_documented() {
        let b = Backoff::default();
        assert_eq!(b.kind(), "exponential");
        assert_eq!(b.initial(), DEFAULT_INITIAL);
        assert_eq!(b.max_delay(), DEFAULT_MAX_DELAY);
        assert_eq!(b.max_attempts(), DEFAULT_MAX_ATTEMPTS);
        assert_eq!(b.jitter(), Jitter::Full);
        assert_eq!(b.max_elapsed(), None);
        assert_eq!(b.to_builder().build(), Ok(b));
    }
}
