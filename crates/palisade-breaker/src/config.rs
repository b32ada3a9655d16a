//! The breaker's configuration: builder-style setters, serde, validation, defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything a [`Breaker`](crate::Breaker) needs to decide.
///
/// Build it with the setters or deserialize it (every field is optional and takes
/// its default); either way [`validate`](BreakerConfig::validate) runs when a breaker
/// is built, and a bad value is an error naming the field and its allowed range.
///
/// # Defaults, with their reasons and the peers' choices
///
/// | setting | default | why | Polly | resilience4j | gobreaker |
/// | --- | --- | --- | --- | --- | --- |
/// | [`failure_rate_threshold`](Self::failure_rate_threshold) | 50 % | trips on a real outage, not on the background noise of a healthy dependency | 10 % | 50 % | — |
/// | [`window`](Self::window) | time-based, 10 × 1 s | a count window on a quiet service keeps failures from hours ago; 10 s sees an outage within seconds | 30 s sampling | 100 calls | — |
/// | [`minimum_calls`](Self::minimum_calls) | 20 | three failures out of four calls is not evidence; Hystrix uses 20 per 10 s | 100 | 100 | — |
/// | [`consecutive_failures`](Self::consecutive_failures) | off | at high traffic a run of a few failures is noise that the rate rule already judges | — | — | 5 |
/// | [`slow_call`](Self::slow_call) | off | only the caller knows what slow means | — | 100 % at 60 s (off) | — |
/// | [`open`](Self::open) (fixed, exponential, or any [`palisade_backoff`] schedule) | 5 s, doubling to 60 s | a short first break recovers from a blip at once; a dependency that stays down is probed ever less often, no less than once a minute | 5 s | 60 s | 60 s |
/// | [`half_open_probes`](Self::half_open_probes) | 5 | one probe decides on one unlucky sample; 5 give a ratio and are few enough for low traffic | 1 | 10 | 1 |
/// | [`half_open_failure_rate_threshold`](Self::half_open_failure_rate_threshold) | 50 % | the same bar as in the closed state | any failure | 50 % | any failure |
/// | [`max_probe_wait`](Self::max_probe_wait) | 30 s | longer than any sane attempt timeout, so only a lost probe expires | break duration | unbounded | unbounded |
/// | [`metrics_only`](Self::metrics_only) | off | a breaker is for breaking | — | — | — |
/// | [`open_transition`](Self::open_transition) | on the next call | no task per breaker, no runtime needed | on call | on call (timer optional) | on call |
///
/// # Example
///
/// ```
/// use palisade_breaker::{BreakerConfig, OpenDuration, WindowConfig};
/// use std::time::Duration;
///
/// let config = BreakerConfig::default()
///     .failure_rate_threshold(Some(25.0))
///     .window(WindowConfig::Count { size: 50 })
///     .minimum_calls(10)
///     .consecutive_failures(Some(5))
///     .open(OpenDuration::fixed(Duration::from_secs(10)));
/// assert!(config.validate().is_ok());
///
/// let bad = BreakerConfig::default().half_open_probes(0);
/// let err = bad.validate().unwrap_err();
/// assert_eq!(err.field(), "half_open.probes");
/// assert!(err.to_string().contains("1..=1000"));
/// ```
///
/// From a configuration file (durations in the
/// [duration grammar](palisade_clock::duration#the-grammar) of every Palisade
/// configuration: `"250ms"`, `"1.5s"`, `"1m30s"`, or a bare integer of milliseconds):
///
/// ```
/// use palisade_breaker::BreakerConfig;
///
/// let config: BreakerConfig = serde_json::from_str(r#"{
///     "failure_rate_threshold": 30.0,
///     "consecutive_failures": 5,
///     "window": { "kind": "count", "size": 100 },
///     "open": { "kind": "exponential", "initial": "1s", "factor": 2.0, "max": "30s" },
///     "half_open": { "probes": 3, "max_probe_wait": "10s" }
/// }"#).unwrap();
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    #[serde(with = "opt_number")]
    pub(crate) failure_rate_threshold: Option<f64>,
    pub(crate) slow_call: Option<SlowCallConfig>,
    #[serde(with = "opt_number")]
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) minimum_calls: u32,
    pub(crate) window: WindowConfig,
    pub(crate) open: OpenDuration,
    pub(crate) half_open: HalfOpenConfig,
    pub(crate) metrics_only: bool,
    pub(crate) open_transition: OpenTransition,
}

/// What moves an open breaker to half-open once its open duration has passed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OpenTransition {
    /// The next call (the default): no task and no timer per breaker, and it works
    /// without a runtime. Until a call comes, the breaker reports open.
    #[default]
    OnCall,
    /// A timer on the tokio runtime the breaker opened on, so that the state (and
    /// what a health check reads from it) moves on even when no call comes. Without
    /// a runtime at the moment of opening, the next call moves it as with
    /// [`OnCall`](OpenTransition::OnCall).
    Timer,
}

/// The slow-call rule: trip when at least `rate_threshold` percent of the calls in
/// the window took `duration` or longer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SlowCallConfig {
    /// A call that takes at least this long is slow.
    #[serde(with = "palisade_clock::duration::serde")]
    pub duration: Duration,
    /// The percentage of slow calls, in (0, 100], at which the breaker opens.
    pub rate_threshold: f64,
}

impl SlowCallConfig {
    /// The rule: trip when at least `rate_threshold` percent of the calls in the
    /// window took `duration` or longer. Checked when the breaker is built.
    pub const fn new(duration: Duration, rate_threshold: f64) -> Self {
        SlowCallConfig {
            duration,
            rate_threshold,
        }
    }
}

/// The sliding window the closed state counts calls in.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum WindowConfig {
    /// The last `size` calls.
    Count {
        /// How many calls the window holds, 1..=1 000 000.
        size: u32,
    },
    /// The calls of the last `buckets × bucket_width`.
    Time {
        /// How many buckets, 1..=1000.
        buckets: u32,
        /// The width of one bucket, 1 µs..=1 h; the window spans at most a day.
        #[serde(with = "palisade_clock::duration::serde")]
        bucket_width: Duration,
    },
}

/// How long the breaker stays open before it lets probes through.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum OpenDuration {
    /// The same duration every time.
    Fixed {
        /// The open duration.
        #[serde(with = "palisade_clock::duration::serde")]
        duration: Duration,
    },
    /// `initial` the first time after a clean close, then multiplied by `factor` on
    /// each reopening, up to `max`; a clean close starts over.
    Exponential {
        /// The first open duration.
        #[serde(with = "palisade_clock::duration::serde")]
        initial: Duration,
        /// The growth per reopening, 1.0..=100.0.
        factor: f64,
        /// The longest open duration.
        #[serde(with = "palisade_clock::duration::serde")]
        max: Duration,
    },
    /// The delays of a [`palisade_backoff::Backoff`] schedule, one per opening, for
    /// any curve and jitter it offers (jitter spreads the probes of many breakers
    /// that opened together). After the schedule's last delay the last one
    /// repeats; a clean close starts it over. Built in code only: in configuration
    /// files use `fixed` or `exponential`.
    #[serde(skip)]
    Schedule(palisade_backoff::Backoff),
}

/// The half-open state's settings (see the setters on [`BreakerConfig`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct HalfOpenConfig {
    pub(crate) probes: u32,
    pub(crate) failure_rate_threshold: f64,
    #[serde(with = "palisade_clock::duration::serde")]
    pub(crate) max_probe_wait: Duration,
}

/// The longest duration a setting may take: one day.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// The most concurrent half-open probes.
pub const MAX_PROBES: u32 = 1000;
/// The largest count-based window.
pub const MAX_COUNT_WINDOW: u32 = palisade_window::MAX_SIZE as u32;
/// The most buckets of a time-based window.
pub const MAX_BUCKETS: u32 = palisade_window::MAX_BUCKETS as u32;

impl Default for HalfOpenConfig {
    fn default() -> Self {
        HalfOpenConfig {
            probes: 5,
            failure_rate_threshold: 50.0,
            max_probe_wait: Duration::from_secs(30),
        }
    }
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig::Time {
            buckets: 10,
            bucket_width: Duration::from_secs(1),
        }
    }
}

impl Default for OpenDuration {
    fn default() -> Self {
        OpenDuration::Exponential {
            initial: Duration::from_secs(5),
            factor: 2.0,
            max: Duration::from_secs(60),
        }
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_rate_threshold: Some(50.0),
            slow_call: None,
            consecutive_failures: None,
            minimum_calls: 20,
            window: WindowConfig::default(),
            open: OpenDuration::default(),
            half_open: HalfOpenConfig::default(),
            metrics_only: false,
            open_transition: OpenTransition::OnCall,
        }
    }
}

impl OpenDuration {
    /// The same `duration` every time.
    pub const fn fixed(duration: Duration) -> Self {
        OpenDuration::Fixed { duration }
    }

    /// The open duration after `reopenings` reopenings since the last clean close
    /// (0 for the first opening). For a [`Schedule`](OpenDuration::Schedule), whose
    /// delays are drawn as the breaker opens, the curve's first delay.
    pub fn nth(&self, reopenings: u32) -> Duration {
        match *self {
            OpenDuration::Schedule(backoff) => backoff.initial(),
            OpenDuration::Fixed { duration } => duration,
            OpenDuration::Exponential {
                initial,
                factor,
                max,
            } => {
                let grown = initial.as_secs_f64() * factor.powi(reopenings.min(1 << 16) as i32);
                if !grown.is_finite() || grown >= max.as_secs_f64() {
                    max
                } else {
                    Duration::from_secs_f64(grown).min(max)
                }
            }
        }
    }
}

impl BreakerConfig {
    /// The failure-rate rule: open when at least this percentage, in (0, 100], of the
    /// calls in the window failed (once the window holds
    /// [`minimum_calls`](Self::minimum_calls)). `None` turns the rule off.
    pub fn failure_rate_threshold(mut self, percent: Option<f64>) -> Self {
        self.failure_rate_threshold = percent;
        self
    }

    /// The slow-call rule; `None` turns it off.
    pub fn slow_call(mut self, rule: Option<SlowCallConfig>) -> Self {
        self.slow_call = rule;
        self
    }

    /// Open after this many failures in a row, 1..=1 000 000 (a success resets the
    /// run; ignored outcomes do not). `None` turns the rule off.
    pub fn consecutive_failures(mut self, n: Option<u32>) -> Self {
        self.consecutive_failures = n;
        self
    }

    /// The rate rules judge the window only once it holds this many calls.
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.minimum_calls = n;
        self
    }

    /// The sliding window of the closed state.
    pub fn window(mut self, window: WindowConfig) -> Self {
        self.window = window;
        self
    }

    /// How long the breaker stays open.
    pub fn open(mut self, open: OpenDuration) -> Self {
        self.open = open;
        self
    }

    /// At most this many probes, 1..=1000, run at once in the half-open state, and
    /// this many counted outcomes decide it.
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.half_open.probes = n;
        self
    }

    /// The half-open state reopens when at least this percentage, in (0, 100], of the
    /// probes failed; otherwise it closes.
    pub fn half_open_failure_rate_threshold(mut self, percent: f64) -> Self {
        self.half_open.failure_rate_threshold = percent;
        self
    }

    /// A probe's lease: after this long without an outcome its slot is given to a
    /// new probe and its outcome, if it ever comes, is dropped.
    pub fn max_probe_wait(mut self, wait: Duration) -> Self {
        self.half_open.max_probe_wait = wait;
        self
    }

    /// Record and report what the breaker would decide, but never reject a call.
    ///
    /// The state machine runs as usual and its transitions are reported (events
    /// and tracing carry `metrics_only`: they are transitions the breaker would
    /// make). Every call is recorded in the window, including those the open,
    /// forced-open or half-open state would have rejected and the half-open probes,
    /// so the snapshot's figures cover the outage the breaker would have caused.
    /// The window is emptied when the breaker (would) close, as it is otherwise.
    pub fn metrics_only(mut self, on: bool) -> Self {
        self.metrics_only = on;
        self
    }

    /// What moves the breaker from open to half-open.
    pub fn open_transition(mut self, transition: OpenTransition) -> Self {
        self.open_transition = transition;
        self
    }

    /// The configured failure-rate threshold.
    pub fn get_failure_rate_threshold(&self) -> Option<f64> {
        self.failure_rate_threshold
    }

    /// The configured sliding window.
    pub fn get_window(&self) -> WindowConfig {
        self.window
    }

    /// Checks every field; the error names the first bad one and its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(p) = self.failure_rate_threshold {
            percent("failure_rate_threshold", p)?;
        }
        if let Some(slow) = &self.slow_call {
            duration("slow_call.duration", slow.duration, Duration::from_nanos(1))?;
            percent("slow_call.rate_threshold", slow.rate_threshold)?;
        }
        if let Some(n) = self.consecutive_failures {
            range("consecutive_failures", n, 1, 1_000_000)?;
        }
        if self.failure_rate_threshold.is_none()
            && self.slow_call.is_none()
            && self.consecutive_failures.is_none()
        {
            return Err(ConfigError::without_value(
                "failure_rate_threshold",
                "at least one trip rule (failure_rate_threshold, slow_call or consecutive_failures) on",
            ));
        }
        match self.window {
            WindowConfig::Count { size } => {
                range("window.size", size, 1, MAX_COUNT_WINDOW)?;
                range("minimum_calls", self.minimum_calls, 1, size)?;
            }
            WindowConfig::Time {
                buckets,
                bucket_width,
            } => {
                range("window.buckets", buckets, 1, MAX_BUCKETS)?;
                duration_in(
                    "window.bucket_width",
                    bucket_width,
                    palisade_window::MIN_BUCKET_WIDTH,
                    palisade_window::MAX_BUCKET_WIDTH,
                )?;
                let span = bucket_width.saturating_mul(buckets);
                if span > palisade_window::MAX_WINDOW {
                    return Err(ConfigError::duration(
                        "window",
                        span,
                        format!(
                            "a span (buckets × bucket_width) of at most {}",
                            palisade_clock::duration::format(palisade_window::MAX_WINDOW)
                        ),
                    ));
                }
                range("minimum_calls", self.minimum_calls, 1, 1_000_000_000)?;
            }
        }
        match self.open {
            OpenDuration::Fixed { duration: d } => {
                duration("open.duration", d, Duration::from_millis(1))?
            }
            OpenDuration::Exponential {
                initial,
                factor,
                max,
            } => {
                duration("open.initial", initial, Duration::from_millis(1))?;
                if !(1.0..=100.0).contains(&factor) {
                    return Err(ConfigError::new("open.factor", factor, "1.0..=100.0"));
                }
                duration_in("open.max", max, initial, MAX_DURATION)?;
            }
            OpenDuration::Schedule(backoff) => {
                // The shortest delay the schedule can draw is the jitter's floor
                // under its first delay; the longest is its cap.
                let floor = *backoff
                    .jitter()
                    .envelope(backoff.initial(), backoff.max_delay())
                    .start();
                if floor < Duration::from_millis(1) || backoff.max_delay() > MAX_DURATION {
                    return Err(ConfigError::without_value(
                        "open.schedule",
                        format!(
                            "delays drawn in 1ms..=24h, but it draws from {} to {} \
                             (use a jitter that keeps a floor, such as equal or none)",
                            palisade_clock::duration::format(floor),
                            palisade_clock::duration::format(backoff.max_delay())
                        ),
                    ));
                }
            }
        }
        range("half_open.probes", self.half_open.probes, 1, MAX_PROBES)?;
        percent(
            "half_open.failure_rate_threshold",
            self.half_open.failure_rate_threshold,
        )?;
        duration(
            "half_open.max_probe_wait",
            self.half_open.max_probe_wait,
            Duration::from_millis(1),
        )?;
        Ok(())
    }
}

fn percent(field: &'static str, p: f64) -> Result<(), ConfigError> {
    if p > 0.0 && p <= 100.0 {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            p,
            "a percentage greater than 0 and at most 100",
        ))
    }
}

fn range(field: &'static str, n: u32, lo: u32, hi: u32) -> Result<(), ConfigError> {
    if (lo..=hi).contains(&n) {
        Ok(())
    } else {
        Err(ConfigError::new(field, n, format!("{lo}..={hi}")))
    }
}

fn duration(field: &'static str, d: Duration, lo: Duration) -> Result<(), ConfigError> {
    duration_in(field, d, lo, MAX_DURATION)
}

fn duration_in(
    field: &'static str,
    d: Duration,
    lo: Duration,
    hi: Duration,
) -> Result<(), ConfigError> {
    if d >= lo && d <= hi {
        Ok(())
    } else {
        Err(ConfigError::duration(
            field,
            d,
            format!(
                "{}..={}",
                palisade_clock::duration::format(lo),
                palisade_clock::duration::format(hi)
            ),
        ))
    }
}

/// A configuration value outside its allowed range (the shape every Palisade crate
/// shares); the field is a dotted path (`half_open.probes`).
pub use palisade_clock::ConfigError;

/// `Option<number>` that a file turns off with the string `"off"`.
mod opt_number {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr<T> {
        Number(T),
        Text(String),
    }

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => n.serialize(s),
            None => s.serialize_str("off"),
        }
    }

    pub(super) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        match Repr::<T>::deserialize(d)? {
            Repr::Number(n) => Ok(Some(n)),
            Repr::Text(t) if t == "off" => Ok(None),
            Repr::Text(t) => Err(serde::de::Error::custom(format!(
                "expected a number or \"off\", got \"{t}\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        BreakerConfig::default().validate().unwrap();
    }

    #[test]
    fn errors_name_field_and_range() {
        let cases: Vec<(BreakerConfig, &str, &str)> = vec![
            (
                BreakerConfig::default().failure_rate_threshold(Some(0.0)),
                "failure_rate_threshold",
                "greater than 0 and at most 100",
            ),
            (
                BreakerConfig::default().failure_rate_threshold(Some(f64::NAN)),
                "failure_rate_threshold",
                "at most 100",
            ),
            (
                BreakerConfig::default().consecutive_failures(Some(0)),
                "consecutive_failures",
                "1..=1000000",
            ),
            (
                BreakerConfig::default()
                    .window(WindowConfig::Count { size: 10 })
                    .minimum_calls(11),
                "minimum_calls",
                "1..=10",
            ),
            (
                BreakerConfig::default().window(WindowConfig::Time {
                    buckets: 0,
                    bucket_width: Duration::from_secs(1),
                }),
                "window.buckets",
                "1..=1000",
            ),
            (
                BreakerConfig::default().window(WindowConfig::Time {
                    buckets: 1000,
                    bucket_width: Duration::from_secs(3600),
                }),
                "window",
                "at most 86400s",
            ),
            (
                BreakerConfig::default().open(OpenDuration::fixed(Duration::ZERO)),
                "open.duration",
                "1ms..=86400s",
            ),
            (
                BreakerConfig::default().open(OpenDuration::Exponential {
                    initial: Duration::from_secs(5),
                    factor: 0.5,
                    max: Duration::from_secs(60),
                }),
                "open.factor",
                "1.0..=100.0",
            ),
            (
                BreakerConfig::default().open(OpenDuration::Exponential {
                    initial: Duration::from_secs(5),
                    factor: 2.0,
                    max: Duration::from_secs(1),
                }),
                "open.max",
                "5s..=86400s",
            ),
            (
                BreakerConfig::default().half_open_failure_rate_threshold(101.0),
                "half_open.failure_rate_threshold",
                "at most 100",
            ),
            (
                BreakerConfig::default().max_probe_wait(Duration::ZERO),
                "half_open.max_probe_wait",
                "1ms",
            ),
            (
                BreakerConfig::default()
                    .failure_rate_threshold(None)
                    .consecutive_failures(None),
                "failure_rate_threshold",
                "at least one trip rule",
            ),
        ];
        for (config, field, text) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().contains(text), "{err}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn serde_round_trip_and_off() {
        let config = BreakerConfig::default()
            .consecutive_failures(Some(5))
            .slow_call(Some(SlowCallConfig {
                duration: Duration::from_millis(800),
                rate_threshold: 80.0,
            }));
        let text = toml::to_string(&config).unwrap();
        let back: BreakerConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, config);

        let off: BreakerConfig = toml::from_str(
            "failure_rate_threshold = \"off\"\nconsecutive_failures = 3\n[open]\nkind = \"fixed\"\nduration = \"2s\"\n",
        )
        .map(|c: BreakerConfig| c)
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(off.failure_rate_threshold, None);
        assert_eq!(off.consecutive_failures, Some(3));
    }

    #[test]
    fn serde_rejects_unknown_and_bad() {
        assert!(toml::from_str::<BreakerConfig>("failure_rate = 5.0").is_err());
        assert!(toml::from_str::<BreakerConfig>("consecutive_failures = \"of\"").is_err());
        let e =
            toml::from_str::<BreakerConfig>("[half_open]\nmax_probe_wait = \"5 sec\"").unwrap_err();
        assert!(e.to_string().contains("unknown unit"), "{e}");
    }

    /// Forms that other sections accepted before all of them shared one grammar.
    #[test]
    fn every_duration_form_of_the_workspace() {
        let c: BreakerConfig = toml::from_str(
            r#"
            slow_call = { duration = "1.5s", rate_threshold = 50.0 }
            window = { kind = "time", buckets = 10, bucket_width = 250 }
            open = { kind = "exponential", initial = "1m30s", factor = 2.0, max = "2min" }
            half_open = { max_probe_wait = "1m30s" }
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.slow_call.unwrap().duration, Duration::from_millis(1500));
        assert_eq!(
            c.window,
            WindowConfig::Time {
                buckets: 10,
                bucket_width: Duration::from_millis(250)
            }
        );
        assert_eq!(
            c.open,
            OpenDuration::Exponential {
                initial: Duration::from_secs(90),
                factor: 2.0,
                max: Duration::from_secs(120)
            }
        );
        assert_eq!(c.half_open.max_probe_wait, Duration::from_secs(90));
        let fixed: BreakerConfig =
            serde_json::from_str(r#"{"open": {"kind": "fixed", "duration": 250}}"#).unwrap();
        assert_eq!(fixed.open, OpenDuration::fixed(Duration::from_millis(250)));
        let e = toml::from_str::<BreakerConfig>("[half_open]\nmax_probe_wait = -1").unwrap_err();
        assert!(
            e.to_string().contains("invalid duration -1: negative"),
            "{e}"
        );
    }

    #[test]
    fn schedules_must_keep_a_floor() {
        use palisade_backoff::{Backoff, Jitter};
        let full = Backoff::exponential(Duration::from_secs(1))
            .build()
            .unwrap();
        let err = BreakerConfig::default()
            .open(OpenDuration::Schedule(full))
            .validate()
            .unwrap_err();
        assert_eq!(err.field(), "open.schedule");
        let equal = Backoff::exponential(Duration::from_secs(1))
            .jitter(Jitter::Equal)
            .max_delay(Duration::from_secs(30))
            .build()
            .unwrap();
        BreakerConfig::default()
            .open(OpenDuration::Schedule(equal))
            .validate()
            .unwrap();
    }

    #[test]
    fn exponential_grows_to_max() {
        let open = OpenDuration::default();
        let secs: Vec<u64> = (0..6).map(|n| open.nth(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 60, 60]);
        assert_eq!(open.nth(u32::MAX), Duration::from_secs(60));
        let fixed = OpenDuration::fixed(Duration::from_secs(7));
        assert_eq!(fixed.nth(9), Duration::from_secs(7));
    }
}
