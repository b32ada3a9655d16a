//! The time-based window: `B` buckets of width `W`, rotated lazily.

use std::fmt;
use std::time::Duration;

use palisade_classify::OutcomeKind;
use palisade_clock::{Clock, DefaultClock, Timestamp};

use crate::config::TimeConfig;
use crate::fastmod::FastMod;
use crate::histogram::{self, BINS, nanos};
use crate::snapshot::{Latency, WindowSnapshot};
use crate::sync::{
    AtomicU64, CachePadded,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
    fence,
};
use crate::{ConfigError, Window};

mod layout;

use layout::*;

/// A window over the last `buckets × bucket_width` of time.
///
/// Time is cut into buckets of `bucket_width`, starting when the window is created
/// (not at the clock's phase), so a call recorded at the window's creation stays
/// for the whole span, and any call for at least the span less one bucket; a
/// bucket whose time has passed is reset lazily by the next record or snapshot
/// that lands on it. Counters are
/// striped: each thread records into one of a few cache-line-padded stripes, so
/// threads on different cores do not contend, and a snapshot sums the stripes. Each
/// counter is one word that holds the bucket's epoch and count together, so a
/// bucket's reset and the first call of its new epoch are one compare-and-swap and
/// concurrent recorders never lose an update; after that, while the bucket is its
/// stripe's current one, each call is one atomic addition, and one more for each
/// of these: it failed, it has a duration (its latency bin), it was slow.
///
/// Calls recorded with a duration also feed a latency histogram (see [`Latency`]):
/// per stripe, the number of calls in each bin since creation, and per bucket a
/// copy of their sum taken when the bucket's epoch began. A snapshot reads the
/// counters and bins of each stripe that has been recorded into once, and one
/// copy: its cost grows with `buckets × stripes in use`, plus `stripes in use + 1`
/// times the 106 bins.
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
/// let config = TimeConfig::new(10, Duration::from_secs(1))
///     .with_slow_call_threshold(Some(Duration::from_millis(500)));
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
    /// The newest epoch any record or snapshot has seen. Epochs are `(t - origin)
    /// / width + buckets`, so that the oldest epoch of the window is never below
    /// zero.
    cursor: CachePadded<AtomicU64>,
    /// The stripes' words: stripe `s` starts at `GAP + (s << stride_shift)`; a
    /// power-of-two stride makes finding one's stripe a shift.
    words: Box<[AtomicU64]>,
    stride_shift: u32,
    stripe_count: usize,
    /// Where in a stripe the latency bins start: after the bucket counters.
    bins_at: usize,
    bases: Box<[Base]>,
    /// The largest totals reported so far, so that totals never go backwards.
    reported: CachePadded<[AtomicU64; 3]>,
    /// `buckets` as a `usize` and as a `u64`.
    b: usize,
    buckets: u64,
    /// Bucket width in nanoseconds, and `buckets × width`.
    width: u64,
    span: u64,
    /// The clock reading the window was created at: buckets start at it and every
    /// `width` after it, so the first bucket is a whole one whatever the clock's
    /// phase.
    origin: u64,
    /// `span - origin` (wrapping): epoch `e` starts at `e × width - offset`, one
    /// subtraction as without an origin.
    offset: u64,
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
        let b = config.buckets;
        let buckets = b as u64;
        let width = nanos(config.bucket_width);
        let modulo = FastMod::new(buckets);
        let origin = clock.recent().as_nanos();
        let cursor = buckets;
        let cursor_index = modulo.rem(cursor);
        let stride = (CALLS + 3 * b + BINS + EXTRAS + GAP).next_power_of_two();
        let stripe_count = crate::sync::stripe_count();
        let all: Box<[AtomicU64]> = (0..GAP + stripe_count * stride)
            .map(|_| AtomicU64::new(0))
            .collect();
        for s in 0..stripe_count {
            let words = Stripe {
                words: &all,
                base: GAP + s * stride,
            };
            // `CURRENT` stays zero (`UNUSED`) until the stripe's first call, which
            // takes the slow path since no time falls in epoch zero's bucket.
            for kind in 0..3 {
                for i in 0..b {
                    let tag = expected_epoch(cursor, cursor_index, buckets, i) & TAG_MASK;
                    words[counter(kind, i)].store(tag << COUNT_BITS, Relaxed);
                }
            }
        }
        let bases = (0..b)
            .map(|i| Base {
                epoch: AtomicU64::new(expected_epoch(cursor, cursor_index, buckets, i)),
                bins: std::array::from_fn(|_| AtomicU64::new(0)),
            })
            .collect();
        Ok(TimeWindow {
            cursor: CachePadded::new(AtomicU64::new(cursor)),
            words: all,
            stride_shift: stride.trailing_zeros(),
            stripe_count,
            bins_at: CALLS + 3 * b,
            bases,
            reported: CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))),
            b,
            buckets,
            width,
            span: width * buckets,
            origin,
            offset: (width * buckets).wrapping_sub(origin),
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
        Duration::from_nanos(self.span)
    }

    /// The bytes this window occupies, fixed at construction: per stripe (one per
    /// hardware thread, rounded up to a power of two, from 2 to 16), three counters
    /// per bucket and the latency bins; per bucket, one copy of the bins.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.words.len() * std::mem::size_of::<AtomicU64>()
            + self.bases.len() * std::mem::size_of::<Base>()
    }

    #[inline(always)]
    fn stripe(&self) -> Stripe<'_> {
        self.stripe_at(crate::sync::stripe_index())
    }

    #[inline(always)]
    fn stripe_at(&self, s: usize) -> Stripe<'_> {
        self.stripe_from(GAP + (s << self.stride_shift))
    }

    /// The stripe whose words start at `base`.
    #[inline(always)]
    fn stripe_from(&self, base: usize) -> Stripe<'_> {
        Stripe {
            words: &self.words,
            base,
        }
    }

    #[inline]
    fn epoch_of(&self, t: u64) -> u64 {
        if t >= self.origin {
            (t - self.origin) / self.width + self.buckets
        } else {
            // Before the window's creation: the epochs below `buckets`, all older
            // than the window, which holds epoch `buckets` from the start.
            self.buckets
                .saturating_sub((self.origin - t).div_ceil(self.width))
        }
    }

    /// Counts a call given a time before the window's creation: older than the
    /// window, so in the totals only. (The fast path's bucket check is for times
    /// from the creation on: an unused stripe's current bucket is epoch zero's,
    /// which only such a time could fall in.)
    #[cold]
    #[inline(never)]
    fn record_before(&self, kind: OutcomeKind, elapsed: Option<Duration>, t: u64) {
        let base = self.stripe().base;
        match kind {
            OutcomeKind::Ignored => self.record_ignored(base),
            kind => self.record_more(base, kind == OutcomeKind::Failure, elapsed, t),
        }
    }

    #[inline(always)]
    fn bins(&self) -> usize {
        self.bins_at
    }

    #[inline(always)]
    fn extra(&self, which: usize) -> usize {
        self.bins_at + BINS + which
    }

    /// Counts one call at time `t` (nanoseconds on the clock).
    ///
    /// The fast path: the stripe's current bucket covers `t`, and its counters were
    /// reset for that epoch when it became current, so one addition counts the call.
    #[inline(always)]
    fn record_inner(&self, kind: OutcomeKind, elapsed: Option<Duration>, t: u64) {
        let words = self.stripe();
        let failed = match kind {
            OutcomeKind::Success => false,
            OutcomeKind::Failure => true,
            // Ignored, and any kind a later version adds: not counted.
            _ => return self.record_ignored(words.base),
        };
        let current = words[CURRENT].load(Relaxed);
        let start = (current >> POS_BITS)
            .wrapping_mul(self.width)
            .wrapping_sub(self.offset);
        if !failed && t.wrapping_sub(start) < self.width {
            // A success in the stripe's current bucket: one addition, and one more
            // for its latency bin when it comes with a duration.
            let pos = (current & POS_MASK) as usize;
            self.add(words, pos + CALLED, RETIRED_CALLS);
            if let Some(elapsed) = elapsed {
                self.record_latency(words, current, pos, nanos(elapsed));
            }
        } else {
            self.record_more(words.base, failed, elapsed, t);
        }
    }

    /// Counts the duration `elapsed` (nanoseconds) of a call just counted in the
    /// stripe's current bucket, whose counters start at `pos`: its latency bin, and
    /// whether it was slow.
    #[inline(always)]
    fn record_latency(&self, words: Stripe<'_>, current: u64, pos: usize, elapsed: u64) {
        if elapsed >= self.slow_nanos {
            return self.record_slow_latency(words.base, current, pos, elapsed);
        }
        // A bucket that has left the window (the stripe has been idle, or the time
        // given is old) counts the call in the totals only; its latency is dropped.
        if self.in_window(current) {
            self.count_latency(words, elapsed);
        }
    }

    /// Whether the bucket a stripe's current word names is still in the window.
    #[inline(always)]
    fn in_window(&self, current: u64) -> bool {
        (current >> POS_BITS) + self.buckets > self.cursor.load(Relaxed)
    }

    /// Counts a duration (nanoseconds) in the stripe's latency histogram.
    #[inline(always)]
    fn count_latency(&self, words: Stripe<'_>, elapsed: u64) {
        words[self.bins() + histogram::bin_of(elapsed)].fetch_add(1, Relaxed);
    }

    /// [`record_latency`](Self::record_latency) for a slow call.
    #[cold]
    #[inline(never)]
    fn record_slow_latency(&self, base: usize, current: u64, pos: usize, elapsed: u64) {
        let words = self.stripe_from(base);
        self.add(words, pos + SLOW, RETIRED_SLOW);
        if self.in_window(current) {
            self.count_latency(words, elapsed);
        }
    }

    #[inline(never)]
    fn record_ignored(&self, base: usize) {
        let words = self.stripe_from(base);
        words[self.extra(IGNORED)].fetch_add(1, Relaxed);
    }

    /// A call that failed, or falls outside the stripe's current bucket.
    #[inline(never)]
    fn record_more(&self, base: usize, failed: bool, elapsed: Option<Duration>, t: u64) {
        let words = self.stripe_from(base);
        let current = words[CURRENT].load(Relaxed);
        let start = (current >> POS_BITS)
            .wrapping_mul(self.width)
            .wrapping_sub(self.offset);
        let elapsed = elapsed.map(nanos);
        let slow = elapsed.is_some_and(|e| e >= self.slow_nanos);
        // The stripe's current bucket, unless it has left the window: then the call
        // may be older than the window, which `record_slow` sorts out.
        if t.wrapping_sub(start) < self.width && self.in_window(current) {
            let pos = (current & POS_MASK) as usize;
            self.add(words, pos + CALLED, RETIRED_CALLS);
            if failed {
                self.add(words, pos + FAILED, RETIRED_FAILURES);
            }
            if slow {
                self.add(words, pos + SLOW, RETIRED_SLOW);
            }
        } else if !self.record_slow(words, t, failed, slow) {
            return;
        }
        if let Some(e) = elapsed {
            self.count_latency(words, e);
        }
    }

    /// Adds one to a counter known to hold the current epoch.
    #[inline(always)]
    fn add(&self, words: Stripe<'_>, i: usize, retired: usize) {
        #[cfg(loom)]
        if crate::sync::broken::is(crate::sync::broken::Bug::LostUpdate) {
            // Deliberately wrong: a load and a store are not one step.
            let value = words[i].load(Relaxed);
            words[i].store(value + 1, Relaxed);
            return;
        }
        let before = words[i].fetch_add(1, Relaxed);
        if before & COUNT_MASK == COUNT_MASK {
            self.overflowed(words.base, i, retired);
        }
    }

    /// The count was full and the addition carried into the tag: undo it and count
    /// the call in the totals only.
    #[cold]
    fn overflowed(&self, base: usize, i: usize, retired: usize) {
        let words = self.stripe_from(base);
        words[i].fetch_sub(1, Relaxed);
        words[self.extra(retired)].fetch_add(1, Relaxed);
    }

    /// Counts a call outside the stripe's current bucket: in a later epoch (which
    /// becomes the stripe's current bucket, and moves the cursor if it is the latest),
    /// in an earlier epoch still in the window, or, older than that, in the totals
    /// only (then returns `false`).
    #[cold]
    #[inline(never)]
    fn record_slow(&self, words: Stripe<'_>, t: u64, failed: bool, slow: bool) -> bool {
        let epoch = self.epoch_of(t);
        let cursor = self.cursor.load(Acquire);
        if epoch > cursor {
            self.advance(epoch);
        } else if epoch + self.buckets <= cursor {
            self.retire(words, failed, slow);
            return false;
        }
        let i = self.modulo.rem(epoch) as usize;
        let tag = epoch & TAG_MASK;
        self.bump(words, counter(CALLED, i), tag, RETIRED_CALLS, true);
        self.bump(words, counter(FAILED, i), tag, RETIRED_FAILURES, failed);
        self.bump(words, counter(SLOW, i), tag, RETIRED_SLOW, slow);
        // The bucket's three counters now hold this epoch: it may become current.
        words[CURRENT].fetch_max(epoch << POS_BITS | counter(CALLED, i) as u64, Relaxed);
        true
    }

    fn retire(&self, words: Stripe<'_>, failed: bool, slow: bool) {
        words[self.extra(RETIRED_CALLS)].fetch_add(1, Relaxed);
        if failed {
            words[self.extra(RETIRED_FAILURES)].fetch_add(1, Relaxed);
        }
        if slow {
            words[self.extra(RETIRED_SLOW)].fetch_add(1, Relaxed);
        }
    }

    /// Adds `count` (0 or 1) to counter `i` for the epoch tagged `tag`, resetting it
    /// first if it holds an older epoch, in one compare-and-swap.
    fn bump(&self, words: Stripe<'_>, i: usize, tag: u64, retired: usize, count: bool) {
        let count = count as u64;
        let word = &words[i];
        let mut current = word.load(Relaxed);
        loop {
            let current_tag = current >> COUNT_BITS;
            let (next, evicted) = if current_tag == tag {
                if count == 0 {
                    return;
                }
                if current & COUNT_MASK == COUNT_MASK {
                    // Saturated: the call counts in the totals only.
                    words[self.extra(retired)].fetch_add(1, Relaxed);
                    return;
                }
                (current + 1, 0)
            } else if is_newer(tag, current_tag) {
                #[cfg(loom)]
                if crate::sync::broken::is(crate::sync::broken::Bug::SplitRollover) {
                    // Deliberately wrong: the reset and the count in two steps.
                    word.store(tag << COUNT_BITS, Relaxed);
                    word.fetch_add(count, Relaxed);
                    words[self.extra(retired)].fetch_add(current & COUNT_MASK, Relaxed);
                    return;
                }
                ((tag << COUNT_BITS) | count, current & COUNT_MASK)
            } else {
                // The bucket already holds a later epoch: this call has left the window.
                if count != 0 {
                    words[self.extra(retired)].fetch_add(count, Relaxed);
                }
                return;
            };
            match word.compare_exchange_weak(current, next, Relaxed, Relaxed) {
                Ok(_) => {
                    if evicted != 0 {
                        words[self.extra(retired)].fetch_add(evicted, Relaxed);
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
        let first = self.bins();
        let mut bins = [0u64; BINS];
        for s in 0..self.stripe_count {
            let words = self.stripe_at(s).range(first, BINS);
            for (sum, word) in bins.iter_mut().zip(words) {
                *sum = sum.wrapping_add(word.load(Relaxed));
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

    /// The distribution of the calls since the start of `epoch` (or of another
    /// epoch, if a writer is racing ahead): `now`, the cumulative bins now, minus
    /// those recorded then; empty if a writer keeps the base busy.
    fn latency_since(&self, epoch: u64, now: &[u64; BINS]) -> Latency {
        let base = &self.bases[self.modulo.rem(epoch) as usize];
        let mut bins = [0u64; BINS];
        for _ in 0..64 {
            let before = base.epoch.load(Acquire);
            if before != WRITING {
                let mut count = 0u64;
                for ((out, now), slot) in bins.iter_mut().zip(now).zip(&base.bins) {
                    *out = now.saturating_sub(slot.load(Relaxed));
                    count = count.wrapping_add(*out);
                }
                fence(Acquire);
                if base.epoch.load(Relaxed) == before {
                    return Latency { bins, count };
                }
            }
            std::hint::spin_loop();
        }
        Latency {
            bins: [0; BINS],
            count: 0,
        }
    }

    /// Resets counter words: all of them (`everything`) or those that hold an epoch
    /// outside the window ending at `cursor`; their counts go to the totals. Then
    /// makes the cursor's bucket every stripe's current one.
    fn clear(&self, cursor: u64, everything: bool) {
        let b = self.b;
        let cursor_index = self.modulo.rem(cursor);
        for s in 0..self.stripe_count {
            let words = self.stripe_at(s);
            for (kind, retired) in [RETIRED_CALLS, RETIRED_FAILURES, RETIRED_SLOW]
                .into_iter()
                .enumerate()
            {
                for i in 0..b {
                    let tag = expected_epoch(cursor, cursor_index, self.buckets, i) & TAG_MASK;
                    let word = &words[counter(kind, i)];
                    let mut current = word.load(Relaxed);
                    loop {
                        let current_tag = current >> COUNT_BITS;
                        // Only tags within 2^23 epochs compare; `everything`
                        // follows jumps too long for that.
                        if !everything && (current_tag == tag || is_newer(current_tag, tag)) {
                            break;
                        }
                        match word.compare_exchange_weak(
                            current,
                            tag << COUNT_BITS,
                            Relaxed,
                            Relaxed,
                        ) {
                            Ok(_) => {
                                let evicted = current & COUNT_MASK;
                                if evicted != 0 {
                                    words[self.extra(retired)].fetch_add(evicted, Relaxed);
                                }
                                break;
                            }
                            Err(actual) => current = actual,
                        }
                    }
                }
            }
            let current = cursor << POS_BITS | counter(CALLED, cursor_index as usize) as u64;
            let _ = words[CURRENT].fetch_update(Relaxed, Relaxed, |c| {
                (c != UNUSED && c < current).then_some(current)
            });
        }
    }

    fn snapshot_at(&self, t: u64) -> WindowSnapshot {
        let cursor = self.advance(self.epoch_of(t));
        let b = self.b;
        let cursor_index = self.modulo.rem(cursor) as usize;
        // Bucket i holds epoch `cursor - cursor_index + i` up to the cursor's bucket,
        // and one lap earlier after it. `first_tags` are the words that the first
        // bucket of each of these two runs holds, with a count of zero, when it
        // holds the expected epoch.
        let this_lap = cursor - cursor_index as u64;
        let first_tags = [
            (this_lap & TAG_MASK) << COUNT_BITS,
            ((this_lap - self.buckets + cursor_index as u64 + 1) & TAG_MASK) << COUNT_BITS,
        ];
        let mut window = [0u64; 3];
        let mut totals = [0u64; 4];
        let mut bins = [0u64; BINS];
        for s in 0..self.stripe_count {
            let words = self.stripe_at(s);
            for (total, which) in
                totals
                    .iter_mut()
                    .zip([RETIRED_CALLS, RETIRED_FAILURES, RETIRED_SLOW, IGNORED])
            {
                *total += words[self.extra(which)].load(Relaxed);
            }
            if words[CURRENT].load(Relaxed) == UNUSED {
                // No call has been counted in its buckets or bins.
                continue;
            }
            let counters = words.range(CALLS, 3 * b);
            // One sweep over the buckets, in two runs of consecutive epochs. A word
            // whose tag is the expected one counts in the window; every count
            // counts in the totals until it is retired. A bucket's three words
            // carry the same tag except while a record or a sweep retags them.
            let mut in_window = [0u64; 3];
            let mut stale = [0u64; 3];
            let (this, last) = counters.split_at(3 * (cursor_index + 1));
            for (run, mut tag) in [(this, first_tags[0]), (last, first_tags[1])] {
                for bucket in run.chunks_exact(3) {
                    // Counts if the tags are `tag`.
                    let counts = [
                        bucket[CALLED].load(Relaxed) ^ tag,
                        bucket[FAILED].load(Relaxed) ^ tag,
                        bucket[SLOW].load(Relaxed) ^ tag,
                    ];
                    if counts[0] | counts[1] | counts[2] <= COUNT_MASK {
                        for (sum, count) in in_window.iter_mut().zip(counts) {
                            *sum += count;
                        }
                    } else {
                        tally_stale(counts, &mut in_window, &mut stale);
                    }
                    tag = tag.wrapping_add(1 << COUNT_BITS);
                }
            }
            for kind in 0..3 {
                window[kind] += in_window[kind];
                totals[kind] += in_window[kind] + stale[kind];
            }
            for (sum, word) in bins.iter_mut().zip(words.range(self.bins(), BINS)) {
                *sum = sum.wrapping_add(word.load(Relaxed));
            }
        }
        for (total, reported) in totals.iter_mut().zip(self.reported.iter()) {
            *total = reported.fetch_max(*total, Relaxed).max(*total);
        }
        let oldest = cursor + 1 - self.buckets;
        let latency = self.latency_since(oldest, &bins);
        // A window holds at most what its stripes' 40-bit counters can.
        let capacity = (self.stripe_count as u64 * self.buckets).saturating_mul(COUNT_MASK);
        WindowSnapshot::bounded(
            capacity,
            window[0] as i64,
            window[1] as i64,
            window[2] as i64,
            totals,
            Some(latency),
        )
    }
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
        let t = now.as_nanos();
        if t < self.origin {
            return self.record_before(kind, None, t);
        }
        self.record_inner(kind, None, t);
    }

    /// Records at `now` without reading the clock. The latency of a call recorded
    /// at a time earlier than the newest bucket counts as if it were recorded in
    /// the newest bucket.
    #[inline]
    fn record_with_duration_at(&self, kind: OutcomeKind, elapsed: Duration, now: Timestamp) {
        let t = now.as_nanos();
        if t < self.origin {
            return self.record_before(kind, Some(elapsed), t);
        }
        self.record_inner(kind, Some(elapsed), t);
    }

    /// The counts of the window ending at [`Clock::recent`] (or at the latest time
    /// recorded, if later), with the latency distribution of its calls recorded with
    /// a duration.
    fn snapshot(&self) -> WindowSnapshot {
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
            .field("buckets", &self.b)
            .field("bucket_width", &self.config.bucket_width)
            .field("slow_call_threshold", &self.config.slow_call_threshold)
            .field("stripes", &self.stripe_count)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use OutcomeKind::*;

    #[test]
    fn stripes_never_share_a_cache_line() {
        use palisade_clock::ManualClock;
        for buckets in [1, 10, 100, 1000] {
            let config = TimeConfig {
                buckets,
                bucket_width: Duration::from_millis(1),
                slow_call_threshold: None,
            };
            let window = TimeWindow::new(config, ManualClock::new()).unwrap();
            // A stripe's words run from its first to the ignored-outcome counter; at
            // least 16 words (128 bytes, two cache lines) lie between any two
            // stripes, and before the first and after the last, so no two stripes
            // and nothing else touch the same line or adjacent-line pair.
            let used = window.extra(IGNORED) + 1;
            let mut end = 0;
            for s in 0..window.stripe_count {
                let base = window.stripe_at(s).base;
                assert!(base >= end + GAP, "{buckets} buckets, stripe {s}");
                end = base + used;
            }
            assert!(window.words.len() >= end + GAP);
            assert!(window.stripe_count >= 2);
        }
    }

    #[test]
    fn recording_writes_only_the_recording_threads_stripe() {
        use palisade_clock::ManualClock;
        let clock = ManualClock::new();
        clock.advance(Duration::from_secs(3600));
        let config = TimeConfig {
            buckets: 10,
            bucket_width: Duration::from_secs(1),
            slow_call_threshold: Some(Duration::from_millis(100)),
        };
        let window = TimeWindow::new(config, clock.clone()).unwrap();
        let words = |w: &TimeWindow<ManualClock>| -> Vec<u64> {
            w.words.iter().map(|word| word.load(Relaxed)).collect()
        };
        let cursor = window.cursor.load(Relaxed);
        // One thread after the other, each alive while it records, as in a pool.
        for _ in 0..3 {
            let (base, changed) = std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        let before = words(&window);
                        for kind in [Success, Failure, Success, Ignored] {
                            window.record(kind);
                            window.record_with_duration(kind, Duration::from_micros(300));
                            window.record_with_duration(kind, Duration::from_millis(300));
                        }
                        let after = words(&window);
                        let changed: Vec<usize> = (0..before.len())
                            .filter(|&i| before[i] != after[i])
                            .collect();
                        (window.stripe().base, changed)
                    })
                    .join()
                    .unwrap()
            });
            // Calls, failures, slow calls, latency bins and ignored outcomes: all in
            // the stripe's own words.
            assert!(changed.len() >= 5, "{changed:?}");
            let own = base..base + window.extra(IGNORED) + 1;
            assert!(
                changed.iter().all(|i| own.contains(i)),
                "{changed:?} outside {own:?}"
            );
        }
        assert_eq!(window.cursor.load(Relaxed), cursor);
        let s = window.snapshot();
        assert_eq!((s.calls(), s.failures(), s.slow_calls()), (27, 9, 9));
        assert_eq!(s.total_ignored(), 9);
        assert_eq!(s.latency().unwrap().count(), 18);
    }

    #[test]
    fn a_stripe_without_calls_in_its_buckets_still_counts_in_the_totals() {
        use palisade_clock::{Clock, ManualClock};
        let clock = ManualClock::new();
        clock.advance(Duration::from_secs(3600));
        let window = TimeWindow::new(TimeConfig::default(), clock.clone()).unwrap();
        let current = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    window.record(Ignored);
                    // Older than the window: counted in the totals only.
                    let long_ago = clock.now() - Duration::from_secs(60);
                    window.record_at(Failure, long_ago);
                    window.stripe()[CURRENT].load(Relaxed)
                })
                .join()
                .unwrap()
        });
        assert_eq!(current, UNUSED);
        let s = window.snapshot();
        assert_eq!((s.calls(), s.failures()), (0, 0));
        assert_eq!((s.total_calls(), s.total_failures()), (1, 1));
        assert_eq!(s.total_ignored(), 1);
    }

    #[test]
    fn a_bucket_caught_while_retagged_counts_only_its_fresh_words_in_the_window() {
        let tag = 5u64 << COUNT_BITS;
        let older = 4u64 << COUNT_BITS;
        // Calls already retagged (3 calls of the expected epoch), failures still of
        // the older epoch (7 of them), slow calls retagged with none.
        let counts = [tag | 3, older | 7, tag].map(|word| word ^ tag);
        let (mut in_window, mut stale) = ([0; 3], [0; 3]);
        tally_stale(counts, &mut in_window, &mut stale);
        assert_eq!(in_window, [3, 0, 0]);
        assert_eq!(stale, [0, 7, 0]);
    }
}
