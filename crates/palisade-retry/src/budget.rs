//! The retry budget: retries allowed as a share of first attempts over a sliding
//! window, plus a floor of retries per second.

use std::fmt;
use std::time::Duration;

use palisade_clock::{Clock, DefaultClock};
use serde::Deserialize;

use crate::ConfigError;
use crate::sync::{Arc, AtomicU64, Ordering, thread_index};

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
/// slides in tenths (1 s with the default window): a deposit or retry counts for
/// between 90 % and 100 % of the window, and the rings stay small (16 words a
/// stripe) for a withdrawal to sum.
pub const DEFAULT_BUCKETS: u32 = 10;

/// A retry budget shared by every call through it (a tower/Finagle TPS budget).
///
/// Every first attempt *deposits*; every retry and hedge must *withdraw*. Over the
/// sliding [window](DEFAULT_WINDOW), withdrawals may reach
/// `retry_ratio × deposits + min_retries_per_sec × window`; past that, retries are
/// rejected until deposits come in or old withdrawals leave the window. Clones share
/// one budget.
///
/// **Resolution**: the window is measured in [buckets](BudgetBuilder::buckets) of
/// `window / buckets` (default [`DEFAULT_BUCKETS`]: 1 s buckets of the 10 s
/// window). Deposits and withdrawals are counted exactly per bucket, by the
/// clock's `recent()` time when they are made; the window at a time `t` is the
/// bucket of `t` and the `buckets − 1` before it. So a deposit or withdrawal counts
/// for at least `window − window / buckets` and less than `window` after it is
/// made, and then leaves the window whole, with its bucket. The expiry is exact
/// to the bucket, however the calls are spread in time.
///
/// Costs: a deposit reads the clock's cheap `recent()` (a relaxed load for the
/// default clock), finds its bucket's slot in this thread's stripe and counts in
/// it with one relaxed add (a thread's first deposit in a new bucket moves the
/// slot there with one compare-and-swap). No lock, no allocation, and no cache line
/// shared among the first threads. A withdrawal — only on a retry — counts the
/// retry in its bucket with one compare-and-swap, sums the window's counts and
/// takes the retry back if it overdraws. Nothing takes a lock.
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
    /// First attempts per bucket, in one ring of `stride` words per stripe (a
    /// stripe per thread, up to the stripe count). Each word packs a bucket number
    /// (counted from the budget's creation, in the high 36 bits: over 20 years at
    /// the narrowest bucket of 10 ms) and the count in it (the low 28 bits), so
    /// that moving a slot to a new bucket and counting in it are one atomic step.
    deposits: Box<[AtomicU64]>,
    /// Retries taken per bucket, one ring packed like `deposits` (up to
    /// 268 million retries per bucket, past which retries are refused).
    withdrawals: Box<[AtomicU64]>,
    /// Cumulative retries refused.
    rejected: AtomicU64,
    /// When the budget was created: counting starts here, at zero.
    created: u64,
    /// The bucket width in nanoseconds, at least 1.
    width: u64,
    /// `u64::MAX / width`: a bucket number is found by a multiply and one
    /// correction, not a division (tens of cycles on some processors).
    reciprocal: u64,
    window: u64,
    buckets: u64,
    /// Slots per ring minus one: a ring has a power of two of slots, at least
    /// `buckets`.
    slot_mask: usize,
    /// Words per stripe of `deposits`, as a shift (a power of two of words).
    stride_shift: u32,
    /// Stripes minus one (a power of two of stripes).
    stripe_mask: usize,
    ratio: f64,
    /// `min_retries_per_sec × window`.
    reserve: f64,
    min_per_sec: u32,
}

const COUNT_BITS: u32 = 28;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// The most deposits a bucket counts in one slot: below the count's capacity by
/// room for 2²⁰ racing adds, so that an add that passed the check can never carry
/// into the bucket number. Past it, deposits are dropped (which is conservative).
const DEPOSIT_LIMIT: u64 = COUNT_MASK - (1 << 20);
/// Stripes share at most this many words of deposit rings in all.
const MAX_DEPOSIT_WORDS: usize = 1024;
/// The least words per stripe: two cache lines, so stripes do not share one.
const MIN_STRIDE: usize = 16;

/// `n / d` for `d ≥ 1`, given `reciprocal = u64::MAX / d`. The estimate
/// `⌊n · reciprocal / 2⁶⁴⌋` is more than `n / d − 1` (as `reciprocal > 2⁶⁴ / d − 1`
/// and `n < 2⁶⁴`) and at most `n / d`, so it is the quotient or one less, and one
/// comparison of the remainder corrects it.
#[inline]
fn divide(n: u64, d: u64, reciprocal: u64) -> u64 {
    let q = ((u128::from(n) * u128::from(reciprocal)) >> 64) as u64;
    q + u64::from(n - q * d >= d)
}

#[inline]
fn pack(bucket: u64, count: u64) -> u64 {
    (bucket << COUNT_BITS) | count
}

#[inline]
fn unpack(word: u64) -> (u64, u64) {
    (word >> COUNT_BITS, word & COUNT_MASK)
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
    /// Records a first attempt in the bucket of the clock's `recent()` time: one
    /// relaxed add on this thread's stripe.
    #[inline]
    pub fn deposit(&self) {
        let inner = &*self.inner;
        let bucket = inner.bucket(self.clock.recent().as_nanos());
        let stripe = (thread_index() & inner.stripe_mask) << inner.stride_shift;
        let slot = &inner.deposits[stripe | (bucket as usize & inner.slot_mask)];
        let word = slot.load(Ordering::Relaxed);
        // The slot counts this bucket and has room: the bucket's number in the
        // high bits is `bucket`, and the count below the limit.
        if word.wrapping_sub(pack(bucket, 0)) < DEPOSIT_LIMIT {
            slot.fetch_add(1, Ordering::Relaxed);
        } else {
            inner.deposit_slow(slot, bucket);
        }
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
        let bucket = inner.bucket(now);
        let allowed = inner.allowed(bucket);
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
        let bucket = inner.bucket(now);
        let deposits = inner.window_deposits(bucket);
        let withdrawals = inner.withdrawn(bucket);
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
    static BROKEN_DEPOSIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes withdrawals on this thread check the balance first and count afterwards,
/// so the loom models can show that they catch the overdraft this allows.
#[cfg(loom)]
#[doc(hidden)]
pub fn loom_break_withdraw(broken: bool) {
    BROKEN_TAKE.with(|b| b.set(broken));
}

/// Makes deposits on this thread move a slot to a new bucket with a plain store
/// after reading it, so the loom models can show that they catch the deposit this
/// loses.
#[cfg(loom)]
#[doc(hidden)]
pub fn loom_break_deposit(broken: bool) {
    BROKEN_DEPOSIT.with(|b| b.set(broken));
}

impl Inner {
    /// The number of the bucket `now` falls in, counted from the creation.
    #[inline]
    fn bucket(&self, now: u64) -> u64 {
        divide(
            now.saturating_sub(self.created),
            self.width,
            self.reciprocal,
        )
    }

    /// Whether a count of bucket `id` is in the window that ends with `bucket`.
    /// A count of a later bucket (from a thread whose clock reading is newer) is.
    #[inline]
    fn in_window(&self, id: u64, bucket: u64) -> bool {
        id + self.buckets > bucket
    }

    /// How many retries the window ending with `bucket` allows in all, before
    /// withdrawals.
    fn allowed(&self, bucket: u64) -> f64 {
        self.reserve + self.ratio * self.window_deposits(bucket) as f64
    }

    /// The deposits of the window that ends with `bucket`.
    fn window_deposits(&self, bucket: u64) -> u64 {
        self.deposits
            .iter()
            .map(|slot| unpack(slot.load(Ordering::Relaxed)))
            .filter(|&(id, _)| self.in_window(id, bucket))
            .map(|(_, count)| count)
            .sum()
    }

    /// A deposit whose slot counts another bucket (or is full): moves the slot to
    /// `bucket`, or counts there if another thread just did. A deposit whose slot
    /// has already moved to a later bucket is a whole ring old, out of every
    /// window from now on, and is not counted.
    #[cold]
    #[inline(never)]
    fn deposit_slow(&self, slot: &AtomicU64, bucket: u64) {
        let mut word = slot.load(Ordering::Relaxed);
        loop {
            let (id, count) = unpack(word);
            let next = if id < bucket {
                #[cfg(loom)]
                if BROKEN_DEPOSIT.with(|b| b.get()) {
                    loom::thread::yield_now();
                    slot.store(pack(bucket, 1), Ordering::Relaxed);
                    return;
                }
                pack(bucket, 1)
            } else if id == bucket && count < DEPOSIT_LIMIT {
                pack(id, count + 1)
            } else {
                return;
            };
            match slot.compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => word = seen,
            }
        }
    }

    /// Counts one retry in `bucket`; `false` if the bucket's count is full.
    fn add_withdrawal(&self, bucket: u64) -> bool {
        let slot = &self.withdrawals[bucket as usize & self.slot_mask];
        let mut word = slot.load(Ordering::Acquire);
        loop {
            let (id, count) = unpack(word);
            let next = if id < bucket {
                // The slot still counts an old bucket: start it afresh.
                pack(bucket, 1)
            } else if count < COUNT_MASK {
                // This bucket, or (for a thread whose clock reading is a whole ring
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
        let slot = &self.withdrawals[bucket as usize & self.slot_mask];
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

    /// Retries counted in the window that ends with `bucket`.
    fn withdrawn(&self, bucket: u64) -> u64 {
        self.withdrawals
            .iter()
            .map(|slot| unpack(slot.load(Ordering::Acquire)))
            .filter(|&(id, _)| self.in_window(id, bucket))
            .map(|(_, count)| count)
            .sum()
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
    /// First attempts in the window.
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
/// fields are errors. The window is written in the
/// [duration grammar](palisade_clock::duration#the-grammar) of every Palisade
/// configuration.
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
#[non_exhaustive]
pub struct BudgetConfig {
    /// The sliding window (default [`DEFAULT_WINDOW`]).
    #[serde(with = "palisade_clock::duration::serde_opt")]
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
            return Err(ConfigError::duration(
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
        let width = (window / u64::from(self.buckets)).max(1);
        let slots = (self.buckets as usize).next_power_of_two();
        let stride = slots.max(MIN_STRIDE);
        let stripes = std::thread::available_parallelism()
            .map_or(4, |n| n.get())
            .clamp(1, 64)
            .next_power_of_two()
            .min((MAX_DEPOSIT_WORDS / stride).max(1));
        let stripes = if cfg!(loom) { 1 } else { stripes };
        let now = clock.recent().as_nanos();
        Ok(RetryBudget {
            inner: Arc::new(Inner {
                deposits: (0..stripes * stride).map(|_| AtomicU64::new(0)).collect(),
                withdrawals: (0..slots).map(|_| AtomicU64::new(0)).collect(),
                rejected: AtomicU64::new(0),
                created: now,
                width,
                reciprocal: u64::MAX / width,
                window,
                buckets: u64::from(self.buckets),
                slot_mask: slots - 1,
                stride_shift: stride.trailing_zeros(),
                stripe_mask: stripes - 1,
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
    fn deposits_leave_the_window_bucket_by_bucket() {
        let clock = ManualClock::starting_at(palisade_clock::Timestamp::from_nanos(1));
        let b = budget(0.5, 0, &clock);
        // A steady 10 first attempts per second, with a withdrawal every second.
        for _ in 0..30 {
            for _ in 0..10 {
                b.deposit();
            }
            assert!(b.try_withdraw());
            clock.advance(Duration::from_secs(1));
        }
        let s = b.snapshot();
        // The deposits and withdrawals of the 9 whole buckets since `now − 10 s`
        // (those made exactly 10 s ago have left).
        assert_eq!(s.deposits(), 90, "{s:?}");
        assert_eq!(s.withdrawals(), 9);
        assert_eq!(s.available(), 36);
        // Traffic stops: the deposits slide out of the window.
        for _ in 0..9 {
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
    fn deposits_before_a_quiet_period_have_all_left() {
        let clock = ManualClock::starting_at(palisade_clock::Timestamp::from_nanos(1));
        let b = budget(1.0, 0, &clock);
        b.deposit();
        assert!(b.try_withdraw());
        for _ in 0..100 {
            b.deposit();
        }
        clock.advance(Duration::from_secs(100));
        assert_eq!(b.snapshot().deposits(), 0);
        assert_eq!(b.snapshot().withdrawals(), 0);
        assert!(!b.try_withdraw());
    }

    fn one_second(ratio: f64, clock: &ManualClock) -> RetryBudget<ManualClock> {
        RetryBudget::builder()
            .retry_ratio(ratio)
            .min_retries_per_sec(0)
            .window(Duration::from_secs(1))
            .build_with_clock(clock.clone())
            .unwrap()
    }

    #[test]
    fn a_deposit_older_than_the_window_pays_for_no_retry() {
        let clock = ManualClock::starting_at(palisade_clock::Timestamp::from_nanos(1));
        let b = one_second(1.0, &clock);
        b.deposit();
        clock.advance(Duration::from_secs(3));
        assert_eq!(b.snapshot().deposits(), 0);
        assert!(!b.try_withdraw());
    }

    #[test]
    fn an_exhausted_budget_stays_empty_once_its_deposits_have_expired() {
        let clock = ManualClock::starting_at(palisade_clock::Timestamp::from_nanos(1));
        let b = one_second(1.0, &clock);
        assert!(!b.try_withdraw());
        b.deposit();
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
        // The deposit and the withdrawal both leave the window: nothing is left.
        clock.advance(Duration::from_millis(2100));
        assert_eq!(b.snapshot().deposits(), 0);
        assert!(!b.try_withdraw());
    }

    #[test]
    fn deposits_inside_the_window_count_in_full() {
        let clock = ManualClock::starting_at(palisade_clock::Timestamp::from_nanos(1));
        let b = one_second(1.0, &clock);
        clock.advance(Duration::from_millis(9500));
        assert!(!b.try_withdraw());
        clock.advance(Duration::from_millis(950));
        b.deposit();
        b.deposit();
        clock.advance(Duration::from_millis(50));
        assert!(b.try_withdraw());
        // 850 ms after the two deposits, both are in the window: they pay for the
        // second retry.
        clock.advance(Duration::from_millis(800));
        assert_eq!(b.snapshot().deposits(), 2);
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
    }

    #[test]
    fn a_deposit_leaves_the_window_with_its_bucket() {
        let clock = ManualClock::starting_at(palisade_clock::Timestamp::from_nanos(1));
        // 10 buckets of 100 ms.
        let b = one_second(0.5, &clock);
        clock.advance(Duration::from_millis(50));
        b.deposit(); // bucket 0: [0, 100 ms)
        clock.advance(Duration::from_millis(100));
        b.deposit(); // bucket 1
        clock.advance(Duration::from_millis(849)); // 999 ms: bucket 9
        assert_eq!(b.snapshot().deposits(), 2);
        clock.advance(Duration::from_millis(1)); // bucket 10: bucket 0 has left
        assert_eq!(b.snapshot().deposits(), 1);
        clock.advance(Duration::from_millis(100)); // bucket 11
        assert_eq!(b.snapshot().deposits(), 0);
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
            "`budget.retry_ratio` is 2000.0, allowed from 0.0 to 1000.0"
        );
        let c: BudgetConfig = serde_json::from_str(r#"{"window":"20s","buckets":20}"#).unwrap();
        assert_eq!(
            c.build().unwrap().snapshot().window(),
            Duration::from_secs(20)
        );
        assert!(serde_json::from_str::<BudgetConfig>(r#"{"windw":"20s"}"#).is_err());
    }

    #[test]
    fn the_bucket_number_is_the_exact_quotient() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut divisors = vec![1, 2, 3, 7, 10_000_000, 1 << 30, 3_600_000_000_000];
        for _ in 0..1000 {
            let shift = next() % 64;
            divisors.push((next() >> shift).max(1));
        }
        for d in divisors {
            let r = u64::MAX / d;
            for n in [0, 1, d - 1, d, d.saturating_add(1), u64::MAX - 1, u64::MAX] {
                assert_eq!(divide(n, d, r), n / d, "{n} / {d}");
            }
            for _ in 0..100 {
                let shift = next() % 64;
                let n = next() >> shift;
                assert_eq!(divide(n, d, r), n / d, "{n} / {d}");
            }
        }
    }

    #[test]
    fn packing() {
        let w = pack(12345, 678);
        assert_eq!(unpack(w), (12345, 678));
        assert_eq!(unpack(pack(1 << 35, COUNT_MASK)), (1 << 35, COUNT_MASK));
    }
}
