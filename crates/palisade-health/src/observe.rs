//! What a dependency's pipeline has seen, and the rules that turn it into a
//! status.

use std::collections::VecDeque;
use std::time::Duration;

use palisade_clock::Timestamp as Instant;

use crate::{ConfigError, Status, Verdict};

/// Whether a dependency is taking calls, as its circuit breaker sees it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Availability {
    /// Calls go through (no breaker, or a closed one).
    #[default]
    Available,
    /// A few probe calls test the dependency (a half-open breaker).
    Probing,
    /// Calls are refused without reaching it (an open or forced-open breaker).
    Unavailable,
}

/// A dependency's counters at one moment. Every count only grows while the
/// source lives; a count that shrinks (a pipeline replaced by a reload) is read
/// as a new start.
///
/// `#[non_exhaustive]`: build one from [`Observation::default`] and set the
/// fields.
#[derive(Copy, Clone, Debug, PartialEq, Default)]
#[non_exhaustive]
pub struct Observation {
    /// Whether calls reach the dependency.
    pub availability: Availability,
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Attempts that failed (a transient or permanent outcome, an `Ok` the
    /// classifier calls a failure, a timeout, a panic).
    pub failed: u64,
    /// Attempts that ended by a timeout (an attempt that a total timeout gave up
    /// included; each is in `failed` too).
    pub timeouts: u64,
    /// Attempts refused by a strategy (breaker, bulkhead, rate limiter).
    pub rejected: u64,
    /// Executions that ended in an error, before any fallback.
    pub executions_failed: u64,
    /// Executions a fallback answered.
    pub fallback_served: u64,
    /// Executions whose fallback failed too.
    pub fallback_failed: u64,
    /// Whether failed executions have a fallback to answer them.
    pub has_fallback: bool,
    /// The 99th percentile of recent call latency, where the source measures it.
    pub latency_p99: Option<Duration>,
    /// The time a call may take (its timeout), for the latency rule.
    pub deadline: Option<Duration>,
}

/// Something whose counters health reads: a palisade pipeline (the facade
/// implements this for `Pipeline`, `WithFallback` and `NamedPipeline`), or a
/// source of one's own.
///
/// Called on every evaluation, off the request path; it should be cheap (read
/// counters) and must not block.
///
/// Open: implement it for your own types. A method added in a later version comes
/// with a default body, so an implementation keeps compiling.
pub trait Observe: Send + Sync + 'static {
    /// The counters now.
    fn observe(&self) -> Observation;
}

impl<F> Observe for F
where
    F: Fn() -> Observation + Send + Sync + 'static,
{
    fn observe(&self) -> Observation {
        self()
    }
}

/// The rules that judge a dependency from its counters. Every rule is documented
/// with its default and why.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DependencyRules {
    /// Over what span of recent evaluations the shares (fallback, timeouts) are
    /// computed. Default 30 s: long enough that a handful of calls is not a
    /// trend, short enough that an outage shows within one scrape interval or
    /// two.
    pub window: Duration,
    /// How many attempts the window needs before a share is judged. Default 10:
    /// one timeout out of two calls is not a 50 % timeout rate.
    pub min_calls: u64,
    /// Calls being made and none succeeding for this long is a failing
    /// dependency, even if nothing else looks wrong (the "silently failing"
    /// case: every call answers, none answers right). Default 30 s.
    pub no_success_for: Duration,
    /// A share of executions answered by the fallback at or above this warns.
    /// Default 0.5: more than half the answers are not the real thing.
    pub fallback_warn: f64,
    /// A share of attempts ending in a timeout at or above this warns. Default
    /// 0.1.
    pub timeouts_warn: f64,
    /// A share of attempts ending in a timeout at or above this fails (a critical
    /// dependency not answered by a fallback). Default 0.5: half the calls waste
    /// their whole budget.
    pub timeouts_fail: f64,
    /// A p99 latency at or above this fraction of the deadline warns. Default
    /// 0.8: the next slow spell turns into timeouts.
    pub latency_warn: f64,
}

impl Default for DependencyRules {
    fn default() -> Self {
        DependencyRules {
            window: Duration::from_secs(30),
            min_calls: 10,
            no_success_for: Duration::from_secs(30),
            fallback_warn: 0.5,
            timeouts_warn: 0.1,
            timeouts_fail: 0.5,
            latency_warn: 0.8,
        }
    }
}

fn fraction(field: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 && v <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::shown(field, v, "a fraction in (0, 1]"))
    }
}

impl DependencyRules {
    /// Checks every field (fractions in (0, 1], durations above zero,
    /// `timeouts_warn <= timeouts_fail`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.window.is_zero() {
            return Err(ConfigError::duration(
                "rules.window",
                self.window,
                "above zero",
            ));
        }
        if self.no_success_for.is_zero() {
            return Err(ConfigError::duration(
                "rules.no_success_for",
                self.no_success_for,
                "above zero",
            ));
        }
        fraction("rules.fallback_warn", self.fallback_warn)?;
        fraction("rules.timeouts_warn", self.timeouts_warn)?;
        fraction("rules.timeouts_fail", self.timeouts_fail)?;
        fraction("rules.latency_warn", self.latency_warn)?;
        if self.timeouts_warn > self.timeouts_fail {
            return Err(ConfigError::shown(
                "rules.timeouts_warn",
                self.timeouts_warn,
                "at most rules.timeouts_fail",
            ));
        }
        Ok(())
    }
}

/// Counts that only grow, read as deltas: a count below the last one is a
/// restart of the source.
#[derive(Copy, Clone, Debug, Default)]
struct Totals {
    succeeded: u64,
    failed: u64,
    timeouts: u64,
    executions_failed: u64,
    fallback_served: u64,
    fallback_failed: u64,
}

impl Totals {
    fn add(&mut self, last: &Observation, now: &Observation) {
        fn step(total: &mut u64, last: u64, now: u64) {
            *total += if now >= last { now - last } else { now };
        }
        step(&mut self.succeeded, last.succeeded, now.succeeded);
        step(&mut self.failed, last.failed, now.failed);
        step(&mut self.timeouts, last.timeouts, now.timeouts);
        step(
            &mut self.executions_failed,
            last.executions_failed,
            now.executions_failed,
        );
        step(
            &mut self.fallback_served,
            last.fallback_served,
            now.fallback_served,
        );
        step(
            &mut self.fallback_failed,
            last.fallback_failed,
            now.fallback_failed,
        );
    }

    fn minus(&self, earlier: &Totals) -> Totals {
        Totals {
            succeeded: self.succeeded - earlier.succeeded,
            failed: self.failed - earlier.failed,
            timeouts: self.timeouts - earlier.timeouts,
            executions_failed: self.executions_failed - earlier.executions_failed,
            fallback_served: self.fallback_served - earlier.fallback_served,
            fallback_failed: self.fallback_failed - earlier.fallback_failed,
        }
    }
}

/// One dependency's recent history, and the rules that judge it.
#[derive(Debug)]
pub(crate) struct Judge {
    rules: DependencyRules,
    last: Option<Observation>,
    totals: Totals,
    /// Running totals at recent evaluations, oldest first, spanning `window`.
    history: VecDeque<(Instant, Totals)>,
    /// When the failures since the last success began, and the totals then.
    streak: Option<(Instant, Totals)>,
}

impl Judge {
    pub(crate) fn new(rules: DependencyRules) -> Judge {
        Judge {
            rules,
            last: None,
            totals: Totals::default(),
            history: VecDeque::new(),
            streak: None,
        }
    }

    /// Reads `now`'s observation and judges it.
    pub(crate) fn judge(&mut self, at: Instant, now: Observation) -> Verdict {
        let last = self.last.replace(now).unwrap_or(Observation {
            // The first reading starts the deltas: what happened before
            // watching began is not judged.
            ..now
        });
        let before = self.totals;
        self.totals.add(&last, &now);
        if self.totals.succeeded > before.succeeded {
            self.streak = None;
        } else if self.streak.is_none() && self.totals.failed > before.failed {
            // The first failure since the last success starts the streak: time
            // spent idle before it is no failing time.
            self.streak = Some((at, before));
        }
        self.history.push_back((at, self.totals));
        // Keep the newest sample at least `window` old, so that the window is
        // covered even when evaluations are further apart than it.
        while self.history.len() > 1
            && at.saturating_duration_since(self.history[1].0) >= self.rules.window
        {
            self.history.pop_front();
        }
        let oldest = self.history.front().map_or(Totals::default(), |h| h.1);
        let recent = self.totals.minus(&oldest);
        self.verdict(at, &now, &recent)
    }

    fn verdict(&self, at: Instant, now: &Observation, recent: &Totals) -> Verdict {
        let rules = &self.rules;
        let attempts = recent.succeeded + recent.failed;
        let executions = recent.succeeded + recent.executions_failed;
        // A fallback is answering: it served recently and did not fail, or there
        // is one and nothing recent says it fails.
        let fallback_answers = now.has_fallback
            && (recent.fallback_served > 0 || recent.executions_failed == 0)
            && recent.fallback_failed == 0;

        if now.availability == Availability::Unavailable {
            return if fallback_answers {
                Verdict::warn("circuit breaker open; calls are answered by the fallback")
            } else {
                Verdict::fail("circuit breaker open; calls are refused")
            };
        }

        if let Some((since, at_success)) = self.streak {
            let quiet = at.saturating_duration_since(since);
            let tried = (self.totals.succeeded + self.totals.failed)
                - (at_success.succeeded + at_success.failed);
            if quiet >= rules.no_success_for && tried >= rules.min_calls {
                let text = format!(
                    "{tried} attempts and none succeeded for {} s",
                    quiet.as_secs()
                );
                let verdict = if fallback_answers {
                    Verdict::warn(format!("{text}; calls are answered by the fallback"))
                } else {
                    Verdict::fail(text)
                };
                return verdict.observed(tried as f64, "calls");
            }
        }

        if attempts >= rules.min_calls {
            let share = (recent.timeouts as f64 / attempts as f64).min(1.0);
            let text = || {
                format!(
                    "{:.0} % of attempts timed out in the last {} s",
                    share * 100.0,
                    rules.window.as_secs()
                )
            };
            if share >= rules.timeouts_fail && !fallback_answers {
                return Verdict::fail(text()).observed(share * 100.0, "percent");
            }
            if share >= rules.timeouts_warn {
                return Verdict::warn(text()).observed(share * 100.0, "percent");
            }
        }

        if executions >= rules.min_calls {
            let share = (recent.fallback_served as f64 / executions as f64).min(1.0);
            if share >= rules.fallback_warn {
                return Verdict::warn(format!(
                    "{:.0} % of calls answered by the fallback in the last {} s",
                    share * 100.0,
                    rules.window.as_secs()
                ))
                .observed(share * 100.0, "percent");
            }
        }

        if let (Some(p99), Some(deadline)) = (now.latency_p99, now.deadline) {
            if !deadline.is_zero()
                && p99.as_secs_f64() >= rules.latency_warn * deadline.as_secs_f64()
            {
                return Verdict::warn(format!(
                    "p99 latency {} ms is {:.0} % of the {} ms deadline",
                    p99.as_millis(),
                    p99.as_secs_f64() / deadline.as_secs_f64() * 100.0,
                    deadline.as_millis()
                ))
                .observed(p99.as_secs_f64() * 1e3, "ms");
            }
        }

        if now.availability == Availability::Probing {
            return Verdict::warn("circuit breaker half-open; probe calls test the dependency");
        }
        let verdict = Verdict::pass();
        if attempts > 0 {
            verdict.observed(recent.succeeded as f64 / attempts as f64 * 100.0, "percent")
        } else {
            verdict
        }
    }
}

/// A critical component's verdict as its group counts it: an optional one's
/// failure only warns.
pub(crate) fn weigh(status: Status, critical: bool) -> Status {
    if critical {
        status
    } else {
        status.min(Status::Warn)
    }
}
