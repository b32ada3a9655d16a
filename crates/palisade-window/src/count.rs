//! The count-based window: the last N outcomes.

use std::fmt;
use std::time::Duration;

use palisade_classify::OutcomeKind;
use palisade_clock::Timestamp;

use crate::config::CountConfig;
use crate::fastmod::FastMod;
use crate::histogram::nanos;
use crate::snapshot::WindowSnapshot;
use crate::sync::{AtomicU8, AtomicU64, CachePadded, Ordering::Relaxed};
use crate::{ConfigError, Window};

// A slot holds one outcome: empty (0) or a call, perhaps failed, perhaps slow.
const CALL: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;

// The running counts of the slots, packed in one word as three signed 21-bit fields
// (calls, failures, slow calls), so that one addition moves all three. A field can
// dip below zero or rise above the size for as long as a recorder sits between
// replacing a slot and adding its difference; sizes up to a million leave ample room
// in 21 bits, and snapshots bound what they read.
const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;

#[inline]
fn packed(slot: u8) -> u64 {
    (slot & CALL) as u64
        | (((slot & FAILED) >> 1) as u64) << FIELD_BITS
        | (((slot & SLOW) >> 2) as u64) << (2 * FIELD_BITS)
}

fn unpack(mut word: u64) -> [i64; 3] {
    let mut fields = [0; 3];
    for field in &mut fields {
        let low = word & FIELD_MASK;
        // Sign-extend the 21-bit field.
        let value = ((low << (64 - FIELD_BITS)) as i64) >> (64 - FIELD_BITS);
        *field = value;
        word = word.wrapping_sub(value as u64) >> FIELD_BITS;
    }
    fields
}

/// A window over the last `size` recorded calls: a ring buffer of outcomes.
///
/// Recording takes one atomic addition on the shared position, and only when the
/// outcome differs from the one it replaces, a swap of its slot and one addition to
/// the running counts; it never allocates or locks. A snapshot reads the running
/// counts in one load, whatever the size.
///
/// Ignored outcomes take no slot; they only count in
/// [`WindowSnapshot::total_ignored`].
///
/// ```
/// use palisade_window::{CountConfig, CountWindow, OutcomeKind, Window};
///
/// let window = CountWindow::new(CountConfig::new(4)).unwrap();
/// for kind in [OutcomeKind::Failure, OutcomeKind::Success, OutcomeKind::Success,
///              OutcomeKind::Success, OutcomeKind::Failure] {
///     window.record(kind);
/// }
/// // The first failure has left the window of 4.
/// let snapshot = window.snapshot();
/// assert_eq!((snapshot.calls(), snapshot.failures()), (4, 1));
/// assert_eq!(snapshot.failure_rate(), 0.25);
/// assert_eq!((snapshot.total_calls(), snapshot.total_failures()), (5, 2));
/// ```
pub struct CountWindow {
    /// Calls recorded so far; the next call goes to slot `head % size`.
    head: CachePadded<AtomicU64>,
    /// The packed running counts of the slots.
    counts: CachePadded<AtomicU64>,
    totals: CachePadded<Totals>,
    slots: Box<[AtomicU8]>,
    modulo: FastMod,
    size: usize,
    /// The slow-call threshold in nanoseconds; `u64::MAX` when there is none.
    slow_nanos: u64,
    config: CountConfig,
}

struct Totals {
    failures: AtomicU64,
    slow_calls: AtomicU64,
    ignored: AtomicU64,
}

impl CountWindow {
    /// A window over the last `config.size` calls; fails if the configuration is out
    /// of range (see [`CountConfig`]).
    pub fn new(config: CountConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let size = config.size;
        Ok(CountWindow {
            head: CachePadded::new(AtomicU64::new(0)),
            counts: CachePadded::new(AtomicU64::new(0)),
            totals: CachePadded::new(Totals {
                failures: AtomicU64::new(0),
                slow_calls: AtomicU64::new(0),
                ignored: AtomicU64::new(0),
            }),
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            modulo: FastMod::new(size as u64),
            size,
            slow_nanos: config.slow_call_threshold.map_or(u64::MAX, nanos),
            config,
        })
    }

    /// How many calls the window holds at most.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The configuration the window was built from.
    pub fn config(&self) -> &CountConfig {
        &self.config
    }

    /// The bytes this window occupies, fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.size * std::mem::size_of::<AtomicU8>()
    }

    #[inline]
    fn record_slot(&self, kind: OutcomeKind, slow: bool) {
        let mut slot = match kind {
            OutcomeKind::Success => CALL,
            OutcomeKind::Failure => CALL | FAILED,
            // Ignored, and any kind a later version adds: not counted.
            _ => {
                self.totals.ignored.fetch_add(1, Relaxed);
                return;
            }
        };
        if slow {
            slot |= SLOW;
            self.totals.slow_calls.fetch_add(1, Relaxed);
        }
        if slot & FAILED != 0 {
            self.totals.failures.fetch_add(1, Relaxed);
        }
        let position = self.head.fetch_add(1, Relaxed);
        let cell = &self.slots[self.modulo.rem(position) as usize];
        // The common case in a healthy window: a success replaces a success and
        // nothing changes. Skipping the write is safe: the counts always describe
        // the slots' contents, and the contents do not change.
        if cell.load(Relaxed) == slot {
            return;
        }
        let old = cell.swap(slot, Relaxed);
        if old != slot {
            let delta = packed(slot).wrapping_sub(packed(old));
            #[cfg(loom)]
            if crate::sync::broken::is(crate::sync::broken::Bug::LostUpdate) {
                // Deliberately wrong: a load and a store are not one step.
                let counts = self.counts.load(Relaxed);
                self.counts.store(counts.wrapping_add(delta), Relaxed);
                return;
            }
            self.counts.fetch_add(delta, Relaxed);
        }
    }
}

impl Window for CountWindow {
    #[inline]
    fn record(&self, kind: OutcomeKind) {
        self.record_slot(kind, false);
    }

    #[inline]
    fn record_with_duration(&self, kind: OutcomeKind, elapsed: Duration) {
        self.record_slot(kind, nanos(elapsed) >= self.slow_nanos);
    }

    /// The same as [`record`](Window::record): a count-based window has no use for
    /// the time.
    #[inline]
    fn record_at(&self, kind: OutcomeKind, _now: Timestamp) {
        self.record(kind);
    }

    /// The same as [`record_with_duration`](Window::record_with_duration).
    #[inline]
    fn record_with_duration_at(&self, kind: OutcomeKind, elapsed: Duration, _now: Timestamp) {
        self.record_with_duration(kind, elapsed);
    }

    fn snapshot(&self) -> WindowSnapshot {
        let [calls, failures, slow_calls] = unpack(self.counts.load(Relaxed));
        let totals = [
            self.head.load(Relaxed),
            self.totals.failures.load(Relaxed),
            self.totals.slow_calls.load(Relaxed),
            self.totals.ignored.load(Relaxed),
        ];
        WindowSnapshot::bounded(self.size as u64, calls, failures, slow_calls, totals, None)
    }

    /// Empties the window; the totals since creation stay.
    fn reset(&self) {
        for cell in self.slots.iter() {
            let old = cell.swap(0, Relaxed);
            if old != 0 {
                self.counts
                    .fetch_add(0u64.wrapping_sub(packed(old)), Relaxed);
            }
        }
    }
}

impl fmt::Debug for CountWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountWindow")
            .field("size", &self.size)
            .field("slow_call_threshold", &self.config.slow_call_threshold)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use OutcomeKind::*;

    fn window(size: usize, slow_ms: Option<u64>) -> CountWindow {
        CountWindow::new(CountConfig {
            size,
            slow_call_threshold: slow_ms.map(Duration::from_millis),
        })
        .unwrap()
    }

    #[test]
    fn packing_round_trips_signed_fields() {
        for (c, f, s) in [
            (0i64, 0i64, 0i64),
            (5, -1, 3),
            (-2, -2, -2),
            (1_000_000, 999, -7),
        ] {
            let word = (c as u64)
                .wrapping_add((f as u64) << FIELD_BITS)
                .wrapping_add((s as u64) << (2 * FIELD_BITS));
            assert_eq!(unpack(word), [c, f, s]);
        }
    }

    #[test]
    fn holds_the_last_n_calls() {
        let w = window(3, None);
        assert!(w.snapshot().is_empty());
        w.record(Failure);
        w.record(Failure);
        let s = w.snapshot();
        assert_eq!((s.calls(), s.failures()), (2, 2));
        w.record(Success);
        w.record(Success);
        let s = w.snapshot();
        assert_eq!((s.calls(), s.failures(), s.successes()), (3, 1, 2));
        assert!((s.failure_rate() - 1.0 / 3.0).abs() < 1e-12);
        w.record(Success);
        let s = w.snapshot();
        assert_eq!((s.calls(), s.failures()), (3, 0));
        assert_eq!((s.total_calls(), s.total_failures()), (5, 2));
    }

    #[test]
    fn ignored_outcomes_take_no_slot() {
        let w = window(2, None);
        w.record(Failure);
        w.record(Ignored);
        w.record_with_duration(Ignored, Duration::from_secs(9));
        let s = w.snapshot();
        assert_eq!((s.calls(), s.failures(), s.total_ignored()), (1, 1, 2));
        assert_eq!(s.total_calls(), 1);
    }

    #[test]
    fn slow_calls_count_from_the_threshold_on() {
        let w = window(4, Some(100));
        w.record_with_duration(Success, Duration::from_millis(99));
        w.record_with_duration(Success, Duration::from_millis(100));
        w.record_with_duration(Failure, Duration::from_secs(1));
        w.record(Success);
        let s = w.snapshot();
        assert_eq!((s.calls(), s.failures(), s.slow_calls()), (4, 1, 2));
        assert_eq!(s.slow_call_rate(), 0.5);
        // A slow success replaced by a fast one leaves the slow count.
        w.record_with_duration(Success, Duration::from_millis(1));
        w.record_with_duration(Success, Duration::from_millis(1));
        let s = w.snapshot();
        assert_eq!((s.slow_calls(), s.total_slow_calls()), (1, 2));
        assert!(s.latency().is_none());
    }

    #[test]
    fn without_threshold_nothing_is_slow() {
        let w = window(2, None);
        w.record_with_duration(Success, Duration::MAX);
        assert_eq!(w.snapshot().slow_calls(), 0);
    }

    #[test]
    fn reset_empties_the_window_but_keeps_totals() {
        let w = window(5, Some(1));
        for _ in 0..7 {
            w.record_with_duration(Failure, Duration::from_secs(1));
        }
        w.reset();
        let s = w.snapshot();
        assert_eq!((s.calls(), s.failures(), s.slow_calls()), (0, 0, 0));
        assert_eq!(
            (s.total_calls(), s.total_failures(), s.total_slow_calls()),
            (7, 7, 7)
        );
        w.record(Success);
        assert_eq!(w.snapshot().calls(), 1);
    }

    #[test]
    fn size_one_and_concurrent_recorders_lose_nothing() {
        let w = window(1, None);
        w.record(Failure);
        w.record(Success);
        assert_eq!(w.snapshot().failures(), 0);

        let w = std::sync::Arc::new(window(1000, None));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        w.record(if (i + t) % 4 == 0 { Failure } else { Success });
                        let s = w.snapshot();
                        assert!(s.calls() <= 1000 && s.failures() <= s.calls());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = w.snapshot();
        assert_eq!(s.total_calls(), 40_000);
        assert_eq!(s.total_failures(), 10_000);
        assert_eq!(s.calls(), 1000);
        // The counts describe the slots exactly once everyone is done.
        let failed = w
            .slots
            .iter()
            .filter(|c| c.load(Relaxed) & FAILED != 0)
            .count();
        assert_eq!(s.failures(), failed as u64);
    }
}
