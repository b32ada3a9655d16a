//! The time-based window: `B` buckets of width `W`, rotated lazily.

use std::fmt;
use std::time::Duration;

use palisade_classify::OutcomeKind;
use palisade_clock::{Clock, DefaultClock, Timestamp};

use crate::config::TimeConfig;
use crate::fastmod::FastMod;
use crate::histogram::{self, BINS, nanos};
use crate::snapshot::{Latency, Snapshot};
use crate::sync::{
    AtomicU64, CachePadded,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
    fence,
};
use crate::{ConfigError, Window};

// A bucket counter is one word: the low 24 bits of the bucket's epoch (its tag) and
// a 40-bit count, so that a bucket's epoch and its count change together in one
// compare-and-swap. A stale tag means the bucket still holds an older epoch and is
// reset by the next call that lands in it.
const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const TAG_BITS: u32 = 24;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
// Every 2^20 epochs the advancing cursor sweeps every bucket, and a jump of 2^22
// epochs or more clears them all, so no tag lags the cursor by 2^23 epochs and tags
// never alias (they would after 2^24).
const SWEEP_BITS: u32 = 20;

/// The words of a stripe: three counters per bucket, the cumulative latency bins,
/// and the counts that left the buckets (for the totals since creation).
const LINE_WORDS: usize = 16;
type Line = CachePadded<[AtomicU64; LINE_WORDS]>;

const RETIRED_CALLS: usize = 0;
const RETIRED_FAILURES: usize = 1;
const RETIRED_SLOW: usize = 2;
const IGNORED: usize = 3;

/// A stripe: the counters of the threads whose index falls on it, on cache lines of
/// their own.
struct Stripe {
    lines: Box<[Line]>,
}

impl Stripe {
    #[inline]
    fn word(&self, i: usize) -> &AtomicU64 {
        &self.lines[i / LINE_WORDS][i % LINE_WORDS]
    }
}

/// The latency bins summed over the stripes at the start of an epoch: the window's
/// distribution is the bins now minus those at the start of its oldest epoch.
struct Base {
    /// The epoch this base belongs to, or `WRITING` while it is rewritten.
    epoch: AtomicU64,
    bins: [AtomicU64; BINS],
}

const WRITING: u64 = u64::MAX;

/// A window over the last `buckets × bucket_width` of time.
///
/// Time is cut into buckets of `bucket_width`; a bucket whose time has passed is
/// reset lazily by the next record or snapshot that lands on it. Each record counts
/// the call, and when it fails or is slow, the failure or slow call, each with one
/// compare-and-swap on a counter word that holds the bucket's epoch and count
/// together, so concurrent recorders never lose an update. Counters are striped: each
/// thread records into one of a few cache-line-padded stripes, so threads on
/// different cores do not contend, and a snapshot sums the stripes.
///
/// Calls recorded with a duration also feed a latency histogram (see [`Latency`]).
///
/// # Time
///
/// [`record_at`](Window::record_at) and
/// [`record_with_duration_at`](Window::record_with_duration_at) take the time from
/// the caller, who usually has just read it to measure the call, and read no clock:
/// that is the fastest way to record. [`record`](Window::record) and
/// [`record_with_duration`](Window::record_with_duration) read
/// [`Clock::recent`], the cheap clock, which may lag by a kernel tick.
/// [`snapshot`](Window::snapshot) reads `recent()` too.
///
/// ```
/// use palisade_clock::{Clock, ManualClock};
/// use palisade_window::{OutcomeKind, TimeConfig, TimeWindow, Window};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let config = TimeConfig {
///     buckets: 10,
///     bucket_width: Duration::from_secs(1),
///     slow_call_threshold: Some(Duration::from_millis(500)),
/// };
/// let window = TimeWindow::new(config, clock.clone()).unwrap();
///
/// window.record_with_duration(OutcomeKind::Failure, Duration::from_millis(800));
/// clock.advance(Duration::from_secs(5));
/// window.record_with_duration(OutcomeKind::Success, Duration::from_millis(20));
///
/// let snapshot = window.snapshot();
/// assert_eq!((snapshot.calls(), snapshot.failures(), snapshot.slow_calls()), (2, 1, 1));
/// let latency = snapshot.latency().unwrap();
/// assert!(latency.max().unwrap() >= Duration::from_millis(800));
///
/// // Ten seconds after the failure, it has left the window.
/// clock.advance(Duration::from_secs(5));
/// let snapshot = window.snapshot();
/// assert_eq!((snapshot.calls(), snapshot.failures()), (1, 0));
/// assert_eq!(snapshot.total_failures(), 1);
/// ```
pub struct TimeWindow<C: Clock = DefaultClock> {
    /// The newest epoch any record or snapshot has seen. Epochs are `t / width +
    /// buckets`, so that the oldest epoch of the window is never below zero.
    cursor: CachePadded<AtomicU64>,
    stripes: Box<[Stripe]>,
    stripe_mask: usize,
    bases: Box<[Base]>,
    /// The largest totals reported so far, so that totals never go backwards.
    reported: CachePadded<[AtomicU64; 3]>,
    buckets: u64,
    width: u64,
    modulo: FastMod,
    slow_nanos: u64,
    clock: C,
    config: TimeConfig,
}

impl<C: Clock> TimeWindow<C> {
    /// A window of `config.buckets` buckets of `config.bucket_width` on `clock`;
    /// fails if the configuration is out of range (see [`TimeConfig`]).
    pub fn new(config: TimeConfig, clock: C) -> Result<Self, ConfigError> {
        config.validate()?;
        let buckets = config.buckets as u64;
        let width = nanos(config.bucket_width);
        let modulo = FastMod::new(buckets);
        let cursor = clock.recent().as_nanos() / width + buckets;
        let stripes = crate::sync::stripe_count();
        let words = 3 * config.buckets + BINS + 4;
        let lines = words.div_ceil(LINE_WORDS);
        let expected_tag =
            |i: usize| expected_epoch(cursor, modulo.rem(cursor), buckets, i) & TAG_MASK;
        let stripes: Box<[Stripe]> = (0..stripes)
            .map(|_| {
                let stripe = Stripe {
                    lines: (0..lines)
                        .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))))
                        .collect(),
                };
                for kind in 0..3 {
                    for i in 0..config.buckets {
                        stripe
                            .word(kind * config.buckets + i)
                            .store(expected_tag(i) << COUNT_BITS, Relaxed);
                    }
                }
                stripe
            })
            .collect();
        let bases = (0..config.buckets)
            .map(|i| Base {
                epoch: AtomicU64::new(expected_epoch(cursor, modulo.rem(cursor), buckets, i)),
                bins: std::array::from_fn(|_| AtomicU64::new(0)),
            })
            .collect();
        Ok(TimeWindow {
            cursor: CachePadded::new(AtomicU64::new(cursor)),
            stripe_mask: stripes.len() - 1,
            stripes,
            bases,
            reported: CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))),
            buckets,
            width,
            modulo,
            slow_nanos: config.slow_call_threshold.map_or(u64::MAX, nanos),
            clock,
            config,
        })
    }

    /// The configuration the window was built from.
    pub fn config(&self) -> &TimeConfig {
        &self.config
    }

    /// The clock the window reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The time the window spans: `buckets × bucket_width`.
    pub fn span(&self) -> Duration {
        Duration::from_nanos(self.width * self.buckets)
    }

    /// The bytes this window occupies, fixed at construction: per stripe, three
    /// counters per bucket and the latency bins; per bucket, one copy of the bins.
    pub fn memory_bytes(&self) -> usize {
        let lines: usize = self.stripes.iter().map(|s| s.lines.len()).sum();
        std::mem::size_of::<Self>()
            + self.stripes.len() * std::mem::size_of::<Stripe>()
            + lines * std::mem::size_of::<Line>()
            + self.bases.len() * std::mem::size_of::<Base>()
    }

    #[inline]
    fn stripe(&self) -> &Stripe {
        &self.stripes[crate::sync::thread_index() & self.stripe_mask]
    }

    #[inline]
    fn epoch_of(&self, t: u64) -> u64 {
        t / self.width + self.buckets
    }

    /// Counts one call at time `t` (nanoseconds on the clock).
    #[inline]
    fn record_inner(&self, kind: OutcomeKind, elapsed: Option<Duration>, t: u64) {
        let stripe = self.stripe();
        let failed = match kind {
            OutcomeKind::Success => false,
            OutcomeKind::Failure => true,
            OutcomeKind::Ignored => {
                stripe.word(self.extra(IGNORED)).fetch_add(1, Relaxed);
                return;
            }
        };
        let elapsed = elapsed.map(nanos);
        let slow = elapsed.is_some_and(|e| e >= self.slow_nanos);
        let cursor = self.cursor.load(Relaxed);
        let start = (cursor - self.buckets) * self.width;
        let epoch = if t.wrapping_sub(start) < self.width {
            cursor
        } else {
            match self.locate(t, cursor) {
                Some(epoch) => epoch,
                None => {
                    // Older than the window: it counts in the totals only.
                    self.retire(stripe, 1, failed, slow);
                    return;
                }
            }
        };
        let index = self.modulo.rem(epoch) as usize;
        let tag = epoch & TAG_MASK;
        let b = self.config.buckets;
        self.bump(stripe, index, tag, RETIRED_CALLS);
        if failed {
            self.bump(stripe, b + index, tag, RETIRED_FAILURES);
        }
        if slow {
            self.bump(stripe, 2 * b + index, tag, RETIRED_SLOW);
        }
        if let Some(e) = elapsed {
            stripe
                .word(3 * b + histogram::bin_of(e))
                .fetch_add(1, Relaxed);
        }
    }

    /// The epoch of a call at `t` that is not in the cursor's epoch: a later one
    /// (moving the cursor), an earlier one still in the window, or `None`.
    #[cold]
    fn locate(&self, t: u64, cursor: u64) -> Option<u64> {
        let epoch = self.epoch_of(t);
        if epoch > cursor {
            self.advance(epoch);
            Some(epoch)
        } else if epoch + self.buckets <= cursor {
            None
        } else {
            Some(epoch)
        }
    }

    #[inline]
    fn extra(&self, which: usize) -> usize {
        3 * self.config.buckets + BINS + which
    }

    fn retire(&self, stripe: &Stripe, calls: u64, failed: bool, slow: bool) {
        stripe
            .word(self.extra(RETIRED_CALLS))
            .fetch_add(calls, Relaxed);
        if failed {
            stripe
                .word(self.extra(RETIRED_FAILURES))
                .fetch_add(1, Relaxed);
        }
        if slow {
            stripe.word(self.extra(RETIRED_SLOW)).fetch_add(1, Relaxed);
        }
    }

    /// Adds one to counter `i` of `stripe` for the epoch tagged `tag`, resetting it
    /// first if it holds an older epoch, in one compare-and-swap.
    #[inline]
    fn bump(&self, stripe: &Stripe, i: usize, tag: u64, retired: usize) {
        let word = stripe.word(i);
        let mut current = word.load(Relaxed);
        loop {
            let current_tag = current >> COUNT_BITS;
            let (next, evicted) = if current_tag == tag {
                if current & COUNT_MASK == COUNT_MASK {
                    // Saturated: the call counts in the totals only.
                    stripe.word(self.extra(retired)).fetch_add(1, Relaxed);
                    return;
                }
                (current + 1, 0)
            } else if is_newer(tag, current_tag) {
                #[cfg(loom)]
                if crate::sync::broken::is(crate::sync::broken::Bug::SplitRollover) {
                    // Deliberately wrong: the reset and the count in two steps.
                    word.store(tag << COUNT_BITS, Relaxed);
                    word.fetch_add(1, Relaxed);
                    stripe
                        .word(self.extra(retired))
                        .fetch_add(current & COUNT_MASK, Relaxed);
                    return;
                }
                ((tag << COUNT_BITS) | 1, current & COUNT_MASK)
            } else {
                // The bucket already holds a later epoch: this call has left the window.
                stripe.word(self.extra(retired)).fetch_add(1, Relaxed);
                return;
            };
            #[cfg(loom)]
            if crate::sync::broken::is(crate::sync::broken::Bug::LostUpdate) {
                // Deliberately wrong: a load and a store are not one step.
                word.store(next, Relaxed);
                if evicted != 0 {
                    stripe.word(self.extra(retired)).fetch_add(evicted, Relaxed);
                }
                return;
            }
            match word.compare_exchange_weak(current, next, Relaxed, Relaxed) {
                Ok(_) => {
                    if evicted != 0 {
                        stripe.word(self.extra(retired)).fetch_add(evicted, Relaxed);
                    }
                    return;
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Moves the cursor to `target` if it is behind; returns the cursor after.
    fn advance(&self, target: u64) -> u64 {
        let mut current = self.cursor.load(Acquire);
        while current < target {
            match self
                .cursor
                .compare_exchange_weak(current, target, AcqRel, Acquire)
            {
                Ok(_) => {
                    self.rotated(current, target);
                    return target;
                }
                Err(actual) => current = actual,
            }
        }
        current
    }

    /// After the cursor moved from `from` to `to`: records the latency bins at the
    /// start of the new epochs, and every 2^20 epochs sweeps stale buckets (all of
    /// them after a jump of 2^22 epochs).
    #[cold]
    fn rotated(&self, from: u64, to: u64) {
        let bins = self.cumulative_bins();
        let first = from.max(to - self.buckets) + 1;
        for epoch in first..=to {
            self.write_base(epoch, &bins);
        }
        if to - from >= 1 << (TAG_BITS - 2) {
            // So long a pause that tags may alias: nothing from before it is current.
            self.clear(to, true);
        } else if from >> SWEEP_BITS != to >> SWEEP_BITS {
            self.clear(to, false);
        }
    }

    fn cumulative_bins(&self) -> [u64; BINS] {
        let first = 3 * self.config.buckets;
        let mut bins = [0u64; BINS];
        for stripe in self.stripes.iter() {
            for (bin, sum) in bins.iter_mut().enumerate() {
                *sum = sum.wrapping_add(stripe.word(first + bin).load(Relaxed));
            }
        }
        bins
    }

    fn write_base(&self, epoch: u64, bins: &[u64; BINS]) {
        let base = &self.bases[self.modulo.rem(epoch) as usize];
        base.epoch.store(WRITING, Relaxed);
        fence(Release);
        for (slot, &value) in base.bins.iter().zip(bins) {
            slot.store(value, Relaxed);
        }
        base.epoch.store(epoch, Release);
    }

    /// The bins at the start of `epoch`, or at the start of another epoch if that
    /// base is being rewritten.
    fn read_base(&self, epoch: u64) -> Option<[u64; BINS]> {
        let base = &self.bases[self.modulo.rem(epoch) as usize];
        for _ in 0..64 {
            let before = base.epoch.load(Acquire);
            if before != WRITING {
                let bins = std::array::from_fn(|i| base.bins[i].load(Relaxed));
                fence(Acquire);
                if base.epoch.load(Relaxed) == before {
                    return Some(bins);
                }
            }
            std::hint::spin_loop();
        }
        None
    }

    /// Resets every counter word: all of them (`everything`) or those that hold an
    /// epoch outside the window ending at `cursor`; their counts go to the totals.
    fn clear(&self, cursor: u64, everything: bool) {
        let b = self.config.buckets;
        let cursor_index = self.modulo.rem(cursor);
        for stripe in self.stripes.iter() {
            for (kind, retired) in [RETIRED_CALLS, RETIRED_FAILURES, RETIRED_SLOW]
                .into_iter()
                .enumerate()
            {
                for i in 0..b {
                    let tag = expected_epoch(cursor, cursor_index, self.buckets, i) & TAG_MASK;
                    let word = stripe.word(kind * b + i);
                    let mut current = word.load(Relaxed);
                    loop {
                        let current_tag = current >> COUNT_BITS;
                        if !everything && (current_tag == tag || is_newer(current_tag, tag)) {
                            break;
                        }
                        let next_tag = if is_newer(current_tag, tag) {
                            current_tag
                        } else {
                            tag
                        };
                        match word.compare_exchange_weak(
                            current,
                            next_tag << COUNT_BITS,
                            Relaxed,
                            Relaxed,
                        ) {
                            Ok(_) => {
                                let evicted = current & COUNT_MASK;
                                if evicted != 0 {
                                    stripe.word(self.extra(retired)).fetch_add(evicted, Relaxed);
                                }
                                break;
                            }
                            Err(actual) => current = actual,
                        }
                    }
                }
            }
        }
    }

    fn snapshot_at(&self, t: u64) -> Snapshot {
        let cursor = self.advance(self.epoch_of(t));
        let b = self.config.buckets;
        let cursor_index = self.modulo.rem(cursor) as usize;
        // Epoch of bucket i: cursor - cursor_index + i up to the cursor's bucket,
        // one lap earlier after it.
        let this_lap = cursor - cursor_index as u64;
        let last_lap = this_lap - self.buckets;
        let mut window = [0u64; 3];
        let mut totals = [0u64; 4];
        for stripe in self.stripes.iter() {
            for kind in 0..3 {
                let words = kind * b;
                let mut in_window = 0u64;
                let mut all = 0u64;
                for i in 0..b {
                    let epoch = if i <= cursor_index {
                        this_lap
                    } else {
                        last_lap
                    } + i as u64;
                    let word = stripe.word(words + i).load(Relaxed);
                    let count = word & COUNT_MASK;
                    all += count;
                    if word >> COUNT_BITS == epoch & TAG_MASK {
                        in_window += count;
                    }
                }
                window[kind] += in_window;
                totals[kind] += all + stripe.word(self.extra(kind)).load(Relaxed);
            }
            totals[3] += stripe.word(self.extra(IGNORED)).load(Relaxed);
        }
        for (total, reported) in totals.iter_mut().zip(self.reported.iter()) {
            *total = reported.fetch_max(*total, Relaxed).max(*total);
        }
        let now = self.cumulative_bins();
        let oldest = cursor + 1 - self.buckets;
        let base = self.read_base(oldest).unwrap_or(now);
        let bins = std::array::from_fn(|i| now[i].saturating_sub(base[i]));
        // A window holds at most what its stripes' 40-bit counters can.
        let capacity = (self.stripes.len() as u64 * self.buckets).saturating_mul(COUNT_MASK);
        Snapshot::bounded(
            capacity,
            window[0] as i64,
            window[1] as i64,
            window[2] as i64,
            totals,
            Some(Latency::from_bins(bins)),
        )
    }
}

/// The epoch bucket `i` holds in the window that ends at `cursor`.
#[inline]
fn expected_epoch(cursor: u64, cursor_index: u64, buckets: u64, i: usize) -> u64 {
    let i = i as u64;
    if i <= cursor_index {
        cursor - cursor_index + i
    } else {
        cursor - cursor_index + i - buckets
    }
}

/// Whether tag `a` is a later epoch than tag `b` (tags within 2^23 epochs).
#[inline]
fn is_newer(a: u64, b: u64) -> bool {
    a != b && (a.wrapping_sub(b) & TAG_MASK) < 1 << (TAG_BITS - 1)
}

impl<C: Clock> Window for TimeWindow<C> {
    /// Records at [`Clock::recent`].
    #[inline]
    fn record(&self, kind: OutcomeKind) {
        self.record_inner(kind, None, self.clock.recent().as_nanos());
    }

    /// Records at [`Clock::recent`].
    #[inline]
    fn record_with_duration(&self, kind: OutcomeKind, elapsed: Duration) {
        self.record_inner(kind, Some(elapsed), self.clock.recent().as_nanos());
    }

    /// Records at `now` without reading the clock. A time older than the window
    /// counts in the totals only; a later time than any seen moves the window.
    #[inline]
    fn record_at(&self, kind: OutcomeKind, now: Timestamp) {
        self.record_inner(kind, None, now.as_nanos());
    }

    /// Records at `now` without reading the clock. The latency of a call recorded
    /// at a time earlier than the newest bucket counts as if it were recorded in
    /// the newest bucket.
    #[inline]
    fn record_with_duration_at(&self, kind: OutcomeKind, elapsed: Duration, now: Timestamp) {
        self.record_inner(kind, Some(elapsed), now.as_nanos());
    }

    /// The counts of the window ending at [`Clock::recent`] (or at the latest time
    /// recorded, if later), with the latency distribution of its calls recorded with
    /// a duration.
    fn snapshot(&self) -> Snapshot {
        self.snapshot_at(self.clock.recent().as_nanos())
    }

    /// Empties the window; the totals since creation stay.
    fn reset(&self) {
        let cursor = self.advance(self.epoch_of(self.clock.recent().as_nanos()));
        self.clear(cursor, true);
        let bins = self.cumulative_bins();
        for epoch in cursor + 1 - self.buckets..=cursor {
            self.write_base(epoch, &bins);
        }
    }
}

impl<C: Clock> fmt::Debug for TimeWindow<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeWindow")
            .field("buckets", &self.config.buckets)
            .field("bucket_width", &self.config.bucket_width)
            .field("slow_call_threshold", &self.config.slow_call_threshold)
            .field("stripes", &self.stripes.len())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}
