//! The retry budget: retries allowed as a share of first attempts over a sliding
//! window, plus a floor of retries per second.

use std::fmt;
use std::time::Duration;

use palisade_clock::{Clock, DefaultClock};
use serde::Deserialize;

use crate::ConfigError;
use crate::config::de_duration;
use crate::sync::{Arc, AtomicBool, AtomicU64, CachePadded, Ordering, fence, thread_index};

/// The default window over which deposits and retries are counted: 10 s, as in
/// Finagle and tower. Long enough to smooth a burst, short enough that the budget
/// recovers within seconds of the dependency doing so.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// The default share of first attempts that may be retried: 0.2, as in Finagle and
/// tower. A dependency that fails completely sees at most 1.2× its load from this
/// client, instead of the 3× of three attempts each.
pub const DEFAULT_RETRY_RATIO: f64 = 0.2;
/// The default floor of retries per second, whatever the traffic: 10, as in Finagle
/// and tower. A client with little traffic can still retry its few failures.
pub const DEFAULT_MIN_RETRIES_PER_SEC: u32 = 10;
/// The default number of buckets the window is measured in: 10, so the window
/// slides in tenths (1 s with the default window).
pub const DEFAULT_BUCKETS: u32 = 10;

/// A retry budget shared by every call through it (a tower/Finagle TPS budget).
///
/// Every first attempt *deposits*; every retry and hedge must *withdraw*. Over the
/// sliding [window](DEFAULT_WINDOW), withdrawals may reach
/// `retry_ratio × deposits + min_retries_per_sec × window`; past that, retries are
/// rejected until deposits come in or old withdrawals leave the window. Clones share
/// one budget.
///
/// Costs: a deposit is one relaxed add on a per-thread stripe of a counter (no
/// clock, no lock, no shared cache line among the first threads). A withdrawal —
/// only on a retry — reads the clock's cheap `recent()`, counts the retry in its
/// time bucket with one compare-and-swap and checks the window's balance, taking
/// the retry back if it overdraws. Withdrawals are counted exactly per bucket.
/// Deposits carry no time, so once per bucket a withdrawal records a sample of
/// their total, and the deposits inside the window are read from the samples
/// (interpolated linearly between two samples: deposits between them are taken to
/// have come evenly). Nothing takes a lock.
///
/// ```
/// use palisade_retry::RetryBudget;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), palisade_retry::ConfigError> {
/// let budget = RetryBudget::builder()
///     .retry_ratio(0.5)
///     .min_retries_per_sec(0)
///     .build()?;
/// for _ in 0..4 {
///     budget.deposit();
/// }
/// assert!(budget.try_withdraw());
/// assert!(budget.try_withdraw());
/// assert!(!budget.try_withdraw()); // 50 % of 4 first attempts: 2 retries
/// assert_eq!(budget.snapshot().rejected(), 1);
/// # Ok(())
/// # }
/// ```
pub struct RetryBudget<C: Clock = DefaultClock> {
    inner: Arc<Inner>,
    clock: C,
}

impl<C: Clock> Clone for RetryBudget<C> {
    fn clone(&self) -> Self {
        RetryBudget {
            inner: Arc::clone(&self.inner),
            clock: self.clock.clone(),
        }
    }
}

struct Inner {
    /// Cumulative first attempts, striped by thread.
    deposits: Box<[CachePadded<AtomicU64>]>,
    /// Retries taken per bucket: each word packs a bucket number (counted from the
    /// budget's creation, in the high 36 bits: over 20 years at the narrowest
    /// bucket of 10 ms) and the count in it (the low 28 bits: 268 million retries
    /// per bucket, past which retries are refused), so that moving a slot to a new
    /// bucket and counting in it are one atomic step.
    withdrawals: Box<[AtomicU64]>,
    /// Cumulative retries refused.
    rejected: AtomicU64,
    /// Samples of the cumulative deposits, at most one per bucket, `buckets + 1` of
    /// them so the oldest lies at least a window back.
    ring: Box<[Sample]>,
    /// Held (never waited for) by the one thread writing a sample.
    sampling: AtomicBool,
    /// When the budget was created: counting starts here, at zero.
    created: u64,
    width: u64,
    window: u64,
    buckets: u64,
    ratio: f64,
    /// `min_retries_per_sec × window`.
    reserve: f64,
    min_per_sec: u32,
}

const COUNT_BITS: u32 = 28;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

#[inline]
fn pack(bucket: u64, count: u64) -> u64 {
    (bucket << COUNT_BITS) | count
}

#[inline]
fn unpack(word: u64) -> (u64, u64) {
    (word >> COUNT_BITS, word & COUNT_MASK)
}

/// The deposits at one moment. A seqlock: `time` is zero while the sample is being
/// written, and readers accept a sample only if `time` is the same non-zero value
/// before and after they read it.
struct Sample {
    time: AtomicU64,
    deposits: AtomicU64,
}

/// A point of the cumulative deposits.
#[derive(Copy, Clone, Debug)]
struct Point {
    time: u64,
    deposits: u64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget::new()
    }
}

impl RetryBudget {
    /// A budget with the documented defaults on the default clock.
    pub fn new() -> Self {
        BudgetBuilder::default()
            .build()
            .expect("the default budget configuration is valid")
    }

    /// A builder starting from the defaults.
    pub fn builder() -> BudgetBuilder {
        BudgetBuilder::default()
    }
}

impl<C: Clock> RetryBudget<C> {
    /// Records a first attempt: one relaxed add on this thread's stripe.
    #[inline]
    pub fn deposit(&self) {
        let stripes = &self.inner.deposits;
        // The stripe count is a power of two.
        let stripe = &stripes[thread_index() & (stripes.len() - 1)];
        stripe.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry if the budget has one; `false` (and a count of the
    /// rejection) if not.
    ///
    /// The retry is counted first and taken back if it overdraws, so that racing
    /// withdrawals can never together take more than the budget has (they may,
    /// rarely, both give up the last one).
    pub fn try_withdraw(&self) -> bool {
        let now = self.clock.recent().as_nanos();
        let inner = &*self.inner;
        inner.sample(now);
        let allowed = inner.allowed(now);
        let bucket = inner.bucket(now);
        #[cfg(loom)]
        if BROKEN_TAKE.with(|b| b.get()) {
            // The broken twin checks, then counts: two racers can both pass.
            if inner.withdrawn(bucket) as f64 + 1.0 > allowed {
                return false;
            }
            loom::thread::yield_now();
            return inner.add_withdrawal(bucket);
        }
        if !inner.add_withdrawal(bucket) {
            inner.rejected.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if inner.withdrawn(bucket) as f64 > allowed {
            inner.remove_withdrawal(bucket);
            inner.rejected.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The counters over the current window.
    pub fn snapshot(&self) -> BudgetSnapshot {
        let now = self.clock.recent().as_nanos();
        let inner = &*self.inner;
        let deposits = inner.window_deposits(now);
        let withdrawals = inner.withdrawn(inner.bucket(now));
        let balance = inner.reserve + inner.ratio * deposits as f64 - withdrawals as f64;
        BudgetSnapshot {
            deposits,
            withdrawals,
            available: balance.max(0.0) as u64,
            rejected: inner.rejected.load(Ordering::Relaxed),
            window: Duration::from_nanos(inner.window),
            retry_ratio: inner.ratio,
            min_retries_per_sec: inner.min_per_sec,
        }
    }
}

#[cfg(loom)]
std::thread_local! {
    static BROKEN_TAKE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes withdrawals on this thread check the balance first and count afterwards,
/// so the loom models can show that they catch the overdraft this allows.
#[cfg(loom)]
#[doc(hidden)]
pub fn loom_break_withdraw(broken: bool) {
    BROKEN_TAKE.with(|b| b.set(broken));
}

impl Inner {
    fn total_deposits(&self) -> u64 {
        self.deposits
            .iter()
            .fold(0u64, |sum, s| sum.wrapping_add(s.load(Ordering::Relaxed)))
    }

    /// The number of the bucket `now` falls in, counted from the creation.
    #[inline]
    fn bucket(&self, now: u64) -> u64 {
        now.saturating_sub(self.created) / self.width
    }

    /// How many retries the window allows in all, before withdrawals.
    fn allowed(&self, now: u64) -> f64 {
        self.reserve + self.ratio * self.window_deposits(now) as f64
    }

    fn window_deposits(&self, now: u64) -> u64 {
        let current = Point {
            time: now,
            deposits: self.total_deposits(),
        };
        let start = self.at(now.saturating_sub(self.window), current);
        current.deposits.saturating_sub(start.deposits)
    }

    /// Counts one retry in `bucket`; `false` if the bucket's count is full.
    fn add_withdrawal(&self, bucket: u64) -> bool {
        let slot = &self.withdrawals[(bucket % self.buckets) as usize];
        let mut word = slot.load(Ordering::Acquire);
        loop {
            let (id, count) = unpack(word);
            let next = if id < bucket {
                // The slot still counts an old bucket: start it afresh.
                pack(bucket, 1)
            } else if count < COUNT_MASK {
                // This bucket, or (for a thread whose clock reading is a whole window
                // stale) a newer one: counting there is conservative.
                pack(id, count + 1)
            } else {
                return false;
            };
            match slot.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(seen) => word = seen,
            }
        }
    }

    /// Takes back a retry counted in `bucket` by [`add_withdrawal`](Self::add_withdrawal).
    fn remove_withdrawal(&self, bucket: u64) {
        let slot = &self.withdrawals[(bucket % self.buckets) as usize];
        let mut word = slot.load(Ordering::Acquire);
        loop {
            let (id, count) = unpack(word);
            if id < bucket || count == 0 {
                // The slot has moved on past our count; nothing to take back.
                return;
            }
            match slot.compare_exchange_weak(
                word,
                pack(id, count - 1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(seen) => word = seen,
            }
        }
    }

    /// Retries counted in the window's buckets: `bucket` and the `buckets − 1`
    /// before it.
    fn withdrawn(&self, bucket: u64) -> u64 {
        self.withdrawals
            .iter()
            .map(|slot| unpack(slot.load(Ordering::Acquire)))
            .filter(|&(id, _)| id + self.buckets > bucket)
            .map(|(_, count)| count)
            .sum()
    }

    /// Records a sample for the bucket of `now` unless one exists or another
    /// thread is writing one.
    fn sample(&self, now: u64) {
        let bucket = now / self.width;
        let slot = &self.ring[(bucket % self.ring.len() as u64) as usize];
        let seen = slot.time.load(Ordering::Acquire);
        if seen != 0 && seen / self.width == bucket {
            return;
        }
        if self
            .sampling
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let seen = slot.time.load(Ordering::Relaxed);
        if seen == 0 || seen / self.width != bucket {
            let deposits = self.total_deposits();
            slot.time.store(0, Ordering::Relaxed);
            fence(Ordering::Release);
            slot.deposits.store(deposits, Ordering::Relaxed);
            slot.time.store(now.max(1), Ordering::Release);
        }
        self.sampling.store(false, Ordering::Release);
    }

    /// Reads a sample, or `None` if it is empty or being written.
    fn read(slot: &Sample) -> Option<Point> {
        let time = slot.time.load(Ordering::Acquire);
        if time == 0 {
            return None;
        }
        let deposits = slot.deposits.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (slot.time.load(Ordering::Relaxed) == time).then_some(Point { time, deposits })
    }

    /// The cumulative deposits at time `t`, interpolated linearly between the
    /// samples around it (the creation, at zero, and `current` bound them).
    fn at(&self, t: u64, current: Point) -> Point {
        let creation = Point {
            time: self.created,
            deposits: 0,
        };
        if current.time.saturating_sub(creation.time) < self.window {
            // The budget is younger than the window: every deposit counts.
            return creation;
        }
        let mut before = creation;
        let mut after = current;
        for slot in self.ring.iter() {
            let Some(p) = Self::read(slot) else { continue };
            if p.time > current.time {
                continue;
            }
            if p.time <= t {
                if p.time >= before.time {
                    before = p;
                }
            } else if p.time < after.time {
                after = p;
            }
        }
        if after.time <= before.time {
            return after;
        }
        let frac = (t - before.time) as f64 / (after.time - before.time) as f64;
        let grown = after.deposits.saturating_sub(before.deposits) as f64 * frac;
        Point {
            time: t,
            deposits: before.deposits + grown as u64,
        }
    }
}

impl<C: Clock> fmt::Debug for RetryBudget<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("snapshot", &self.snapshot())
            .field("clock", &self.clock)
            .finish()
    }
}

/// The counters of a [`RetryBudget`] over its current window.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct BudgetSnapshot {
    deposits: u64,
    withdrawals: u64,
    available: u64,
    rejected: u64,
    window: Duration,
    retry_ratio: f64,
    min_retries_per_sec: u32,
}

impl BudgetSnapshot {
    /// First attempts in the window (estimated between samples).
    pub fn deposits(&self) -> u64 {
        self.deposits
    }
    /// Retries and hedges taken in the window.
    pub fn withdrawals(&self) -> u64 {
        self.withdrawals
    }
    /// Retries that could be taken now.
    pub fn available(&self) -> u64 {
        self.available
    }
    /// Retries refused since the budget was created.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }
    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }
    /// The share of first attempts that may be retried.
    pub fn retry_ratio(&self) -> f64 {
        self.retry_ratio
    }
    /// The floor of retries per second.
    pub fn min_retries_per_sec(&self) -> u32 {
        self.min_retries_per_sec
    }
}

/// A retry budget as configuration (serde). Every field is optional; unknown
/// fields are errors.
///
/// ```
/// use palisade_retry::BudgetConfig;
///
/// let config: BudgetConfig = toml::from_str(r#"
///     window = "30s"
///     retry_ratio = 0.1
///     min_retries_per_sec = 5
/// "#)?;
/// let budget = config.build()?;
/// assert_eq!(budget.snapshot().retry_ratio(), 0.1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// The sliding window (default [`DEFAULT_WINDOW`]).
    #[serde(deserialize_with = "de_duration")]
    pub window: Option<Duration>,
    /// The share of first attempts that may be retried (default
    /// [`DEFAULT_RETRY_RATIO`]).
    pub retry_ratio: Option<f64>,
    /// The floor of retries per second (default [`DEFAULT_MIN_RETRIES_PER_SEC`]).
    pub min_retries_per_sec: Option<u32>,
    /// How many buckets the window slides by (default [`DEFAULT_BUCKETS`]).
    pub buckets: Option<u32>,
}

impl BudgetConfig {
    /// The builder this configuration describes.
    pub fn builder(&self) -> BudgetBuilder {
        let d = BudgetBuilder::default();
        BudgetBuilder {
            window: self.window.unwrap_or(d.window),
            retry_ratio: self.retry_ratio.unwrap_or(d.retry_ratio),
            min_retries_per_sec: self.min_retries_per_sec.unwrap_or(d.min_retries_per_sec),
            buckets: self.buckets.unwrap_or(d.buckets),
        }
    }

    /// Validates and builds a budget on the default clock.
    ///
    /// # Errors
    ///
    /// See [`BudgetBuilder::build`].
    pub fn build(&self) -> Result<RetryBudget, ConfigError> {
        self.builder().build()
    }
}

/// Builds a [`RetryBudget`]; [`build`](BudgetBuilder::build) validates.
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct BudgetBuilder {
    window: Duration,
    retry_ratio: f64,
    min_retries_per_sec: u32,
    buckets: u32,
}

impl Default for BudgetBuilder {
    fn default() -> Self {
        BudgetBuilder {
            window: DEFAULT_WINDOW,
            retry_ratio: DEFAULT_RETRY_RATIO,
            min_retries_per_sec: DEFAULT_MIN_RETRIES_PER_SEC,
            buckets: DEFAULT_BUCKETS,
        }
    }
}

impl BudgetBuilder {
    /// The sliding window: from 1 s to 1 h (default [`DEFAULT_WINDOW`]).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The share of first attempts that may be retried: from 0 to 1000 (default
    /// [`DEFAULT_RETRY_RATIO`]; 1000 is Finagle's upper bound).
    pub fn retry_ratio(mut self, ratio: f64) -> Self {
        self.retry_ratio = ratio;
        self
    }

    /// The floor of retries per second: up to 1 000 000 (default
    /// [`DEFAULT_MIN_RETRIES_PER_SEC`]).
    pub fn min_retries_per_sec(mut self, n: u32) -> Self {
        self.min_retries_per_sec = n;
        self
    }

    /// How many buckets the window slides by: from 1 to 1000, each at least 10 ms
    /// wide (default [`DEFAULT_BUCKETS`]).
    pub fn buckets(mut self, buckets: u32) -> Self {
        self.buckets = buckets;
        self
    }

    /// Validates and builds a budget on the default clock.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field out of its range.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        self.build_with_clock(DefaultClock::default())
    }

    /// Validates and builds a budget on `clock`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field out of its range.
    pub fn build_with_clock<C: Clock>(self, clock: C) -> Result<RetryBudget<C>, ConfigError> {
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.window) {
            return Err(ConfigError::new(
                "budget.window",
                self.window,
                "from 1s to 1h",
            ));
        }
        if !(0.0..=1000.0).contains(&self.retry_ratio) {
            return Err(ConfigError::new(
                "budget.retry_ratio",
                self.retry_ratio,
                "from 0.0 to 1000.0",
            ));
        }
        if self.min_retries_per_sec > 1_000_000 {
            return Err(ConfigError::new(
                "budget.min_retries_per_sec",
                self.min_retries_per_sec,
                "at most 1000000",
            ));
        }
        let max_buckets = (self.window.as_millis() / 10).min(1000) as u32;
        if !(1..=max_buckets).contains(&self.buckets) {
            return Err(ConfigError::new(
                "budget.buckets",
                self.buckets,
                format!("from 1 to {max_buckets} (at most 1000, and buckets of at least 10ms)"),
            ));
        }
        let window = self.window.as_nanos() as u64;
        let stripes = std::thread::available_parallelism()
            .map_or(4, |n| n.get())
            .clamp(1, 64)
            .next_power_of_two();
        let stripes = if cfg!(loom) { 1 } else { stripes };
        let now = clock.recent().as_nanos();
        Ok(RetryBudget {
            inner: Arc::new(Inner {
                deposits: (0..stripes)
                    .map(|_| CachePadded::new(AtomicU64::new(0)))
                    .collect(),
                withdrawals: (0..self.buckets).map(|_| AtomicU64::new(0)).collect(),
                rejected: AtomicU64::new(0),
                ring: (0..=self.buckets)
                    .map(|_| Sample {
                        time: AtomicU64::new(0),
                        deposits: AtomicU64::new(0),
                    })
                    .collect(),
                sampling: AtomicBool::new(false),
                created: now,
                width: (window / u64::from(self.buckets)).max(1),
                window,
                buckets: u64::from(self.buckets),
                ratio: self.retry_ratio,
                reserve: f64::from(self.min_retries_per_sec) * self.window.as_secs_f64(),
                min_per_sec: self.min_retries_per_sec,
            }),
            clock,
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use palisade_clock::ManualClock;

    fn budget(ratio: f64, min: u32, clock: &ManualClock) -> RetryBudget<ManualClock> {
        RetryBudget::builder()
            .retry_ratio(ratio)
            .min_retries_per_sec(min)
            .build_with_clock(clock.clone())
            .unwrap()
    }

    #[test]
    fn withdrawals_leave_the_window_bucket_by_bucket() {
        let clock = ManualClock::starting_at(palisade_clock::Timestamp::from_nanos(1));
        let b = budget(0.0, 1, &clock); // 10 retries per 10 s window
        for _ in 0..4 {
            assert!(b.try_withdraw());
        }
        clock.advance(Duration::from_secs(5));
        for _ in 0..6 {
            assert!(b.try_withdraw());
        }
        assert!(!b.try_withdraw());
        // The first four leave the window after 10 s; the other six stay.
        clock.advance(Duration::from_secs(5));
        assert_eq!(b.snapshot().withdrawals(), 6);
        assert_eq!(b.snapshot().available(), 4);
        clock.advance(Duration::from_secs(5));
        assert_eq!(b.snapshot().available(), 10);
        assert_eq!(b.snapshot().rejected(), 1);
    }

    #[test]
    fn deposits_are_read_from_samples_and_leave_the_window() {
        let clock = ManualClock::starting_at(palisade_clock::Timestamp::from_nanos(1));
        let b = budget(0.5, 0, &clock);
        // A steady 10 first attempts per second, with a withdrawal (and so a sample)
        // every second.
        for _ in 0..30 {
            for _ in 0..10 {
                b.deposit();
            }
            assert!(b.try_withdraw());
            clock.advance(Duration::from_secs(1));
        }
        let s = b.snapshot();
        // About 100 deposits in the last 10 s (within one bucket's worth); the
        // withdrawals of the 9 whole buckets since `now − 10 s` (the one made
        // exactly 10 s ago has left).
        assert!((90..=110).contains(&s.deposits()), "{s:?}");
        assert_eq!(s.withdrawals(), 9);
        assert!((36..=46).contains(&s.available()), "{s:?}");
        // Traffic stops: the deposits slide out of the window.
        for _ in 0..11 {
            clock.advance(Duration::from_secs(1));
            b.try_withdraw();
        }
        assert_eq!(b.snapshot().deposits(), 0);
    }

    #[test]
    fn a_young_budget_counts_every_deposit() {
        let clock = ManualClock::starting_at(palisade_clock::Timestamp::from_nanos(1));
        let b = budget(0.2, 0, &clock);
        for _ in 0..10 {
            b.deposit();
        }
        assert!(b.try_withdraw());
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
    }

    #[test]
    fn interpolation_after_a_quiet_period() {
        let clock = ManualClock::starting_at(palisade_clock::Timestamp::from_nanos(1));
        let b = budget(1.0, 0, &clock);
        b.deposit();
        assert!(b.try_withdraw()); // a sample at t ≈ 0
        // 100 deposits spread over 100 s without a sample: a tenth of them are
        // taken to be in the last 10 s.
        for _ in 0..100 {
            b.deposit();
        }
        clock.advance(Duration::from_secs(100));
        assert_eq!(b.snapshot().deposits(), 10);
    }

    #[test]
    fn validation_names_the_field() {
        let field = |b: BudgetBuilder| b.build().unwrap_err().field().to_owned();
        let b = RetryBudget::builder;
        assert_eq!(
            field(b().window(Duration::from_millis(999))),
            "budget.window"
        );
        assert_eq!(
            field(b().window(Duration::from_secs(3601))),
            "budget.window"
        );
        assert_eq!(field(b().retry_ratio(-0.1)), "budget.retry_ratio");
        assert_eq!(field(b().retry_ratio(f64::NAN)), "budget.retry_ratio");
        assert_eq!(field(b().retry_ratio(1000.5)), "budget.retry_ratio");
        assert_eq!(
            field(b().min_retries_per_sec(1_000_001)),
            "budget.min_retries_per_sec"
        );
        assert_eq!(field(b().buckets(0)), "budget.buckets");
        assert_eq!(
            field(b().window(Duration::from_secs(1)).buckets(101)),
            "budget.buckets"
        );
        let e = b().retry_ratio(2000.0).build().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid retry configuration: `budget.retry_ratio` is 2000.0; allowed: from 0.0 to 1000.0"
        );
        let c: BudgetConfig = serde_json::from_str(r#"{"window":"20s","buckets":20}"#).unwrap();
        assert_eq!(
            c.build().unwrap().snapshot().window(),
            Duration::from_secs(20)
        );
        assert!(serde_json::from_str::<BudgetConfig>(r#"{"windw":"20s"}"#).is_err());
    }

    #[test]
    fn packing() {
        let w = pack(12345, 678);
        assert_eq!(unpack(w), (12345, 678));
        assert_eq!(unpack(pack(1 << 35, COUNT_MASK)), (1 << 35, COUNT_MASK));
    }
}
