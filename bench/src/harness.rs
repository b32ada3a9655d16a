//! The runner: cases, batches, interleaved rounds and the statistics over them.
//!
//! # Method
//!
//! Every case is one operation (a breaker call, a rate-limit check, ...) behind a
//! [`Bench`]. A measurement runs the operation in a *batch* of `n` back-to-back
//! iterations and divides the batch's wall time by `n`, so the cost of reading the
//! timer is spread over thousands of operations. `n` is calibrated per case so that a
//! batch lasts about [`Settings::batch`].
//!
//! A *round* runs one batch of every selected case, in an order shuffled anew each
//! round. Many rounds give many ns/op samples per case; the report quotes the median.
//! Because every round visits every case within a few milliseconds, a ratio between
//! two cases is taken per round (both measured under the same machine conditions)
//! and the median of those paired ratios is reported: drift of a shared, noisy
//! machine (other processes, frequency changes) cancels out.
//!
//! # Async cases
//!
//! Async cases run on a current-thread tokio runtime (time driver enabled), one per
//! thread. A batch is one `block_on` of a loop that awaits the operation `n` times;
//! the timer is read inside the loop's future, so entering the runtime is not
//! counted. The method is identical for palisade and for every peer, and the floor
//! "bare awaited call" measures what the loop itself costs.
//!
//! # Two-thread cases
//!
//! A two-thread case runs the same batch on two threads at once against one shared
//! object; the threads start together on a barrier and the batch time is from the
//! first start to the last end. Its ns/op is wall time divided by all operations of
//! both threads (the inverse of throughput), so `scaling` = one-thread ns/op divided
//! by two-thread ns/op is 2.0 for perfect scaling and below 1.0 when the threads
//! slow each other down.
//!
//! Two things keep that ratio honest. Each thread runs the same loop as the
//! one-thread case it is compared with: an awaited loop on a current-thread runtime
//! for async operations ([`bench_parallel!`]), a plain loop for synchronous ones
//! ([`bench_parallel_sync!`]). And a multi-thread batch lasts ten times as long as a
//! one-thread batch, because the second thread wakes from the barrier up to a few
//! hundred microseconds after the first: in a short batch the threads barely
//! overlap, which hides contention, and the skew itself counts as lost throughput.

use std::fmt;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// What a bench is asked to do.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    /// Run the operation this many times and report the elapsed wall time.
    Run(u64),
    /// Run the operation once and check that its result is what the case expects.
    Check,
}

/// What a bench answers.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Wall time of a [`Mode::Run`] batch.
    Elapsed(Duration),
    /// Result of a [`Mode::Check`]: `Err` describes the unexpected value.
    Checked(Result<(), String>),
}

impl Answer {
    /// The elapsed time of a run (zero for a check answer, which `run` never gets).
    pub(crate) fn elapsed(self) -> Duration {
        match self {
            Answer::Elapsed(d) => d,
            Answer::Checked(_) => Duration::ZERO,
        }
    }

    /// The result of a check (a run answer counts as a pass).
    pub(crate) fn checked(self) -> Result<(), String> {
        match self {
            Answer::Elapsed(_) => Ok(()),
            Answer::Checked(r) => r,
        }
    }
}

/// One measurable operation.
pub(crate) struct Bench(Box<dyn FnMut(Mode) -> Answer>);

impl Bench {
    /// A bench from its driver function.
    pub(crate) fn from_fn(f: impl FnMut(Mode) -> Answer + 'static) -> Bench {
        Bench(Box::new(f))
    }

    /// Runs `iters` operations and returns their wall time.
    pub(crate) fn run(&mut self, iters: u64) -> Duration {
        (self.0)(Mode::Run(iters)).elapsed()
    }

    /// Runs the operation once and checks its result.
    pub(crate) fn check(&mut self) -> Result<(), String> {
        (self.0)(Mode::Check).checked()
    }
}

impl fmt::Debug for Bench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bench")
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread tokio runtime");
}

/// Runs `f` with this thread's current-thread runtime.
pub(crate) fn with_runtime<T>(f: impl FnOnce(&tokio::runtime::Runtime) -> T) -> T {
    RUNTIME.with(f)
}

/// Runs `f` inside this thread's runtime context (for constructors that need one).
pub(crate) fn in_runtime<T>(f: impl FnOnce() -> T) -> T {
    with_runtime(|rt| {
        let _guard = rt.enter();
        f()
    })
}

/// The result of a check: passes when `ok`, else shows the value.
pub(crate) fn verdict<R: fmt::Debug>(ok: bool, value: &R) -> Answer {
    Answer::Checked(if ok {
        Ok(())
    } else {
        Err(format!("unexpected result: {value:?}"))
    })
}

/// A synchronous case: `bench_sync!(state, |s| operation(s), |r| check(r))`.
///
/// `s` is `&mut` the state; the operation's value goes through `black_box`. The batch
/// runs inside this thread's runtime context (some operations create timers).
///
/// An operation whose value tells nothing (a window's `record` returns `()`) is
/// checked on the state instead: `bench_sync!(state, |s| operation(s), probe = |s|
/// reading(s), |r| check(r))` runs the operation once, then checks what `reading`
/// takes from the state (`s` is `&` the state there). Batches run the operation
/// alone either way.
macro_rules! bench_sync {
    // Batches run `$op`; a check runs `$checked`, with `$c` the state, and judges its
    // value. The two forms below fill `$checked` in.
    (@ $state:expr, |$s:ident| $op:expr, |$c:ident| $checked:expr, $check:expr) => {{
        let mut state = $state;
        let check = $check;
        // Inside the runtime context, for operations that create timers.
        $crate::harness::Bench::from_fn(move |mode| {
            $crate::harness::in_runtime(|| match mode {
                $crate::harness::Mode::Run(n) => {
                    let started = ::std::time::Instant::now();
                    for _ in 0..n {
                        let $s = &mut state;
                        let _ = ::std::hint::black_box($op);
                    }
                    $crate::harness::Answer::Elapsed(started.elapsed())
                }
                $crate::harness::Mode::Check => {
                    let $c = &mut state;
                    let value = $checked;
                    $crate::harness::verdict(check(&value), &value)
                }
            })
        })
    }};
    ($state:expr, |$s:ident| $op:expr, probe = |$p:ident| $probe:expr, $check:expr) => {
        $crate::harness::bench_sync!(@ $state, |$s| $op, |$s| {
            let _ = $op;
            let $p = &*$s;
            $probe
        }, $check)
    };
    ($state:expr, |$s:ident| $op:expr, $check:expr) => {
        $crate::harness::bench_sync!(@ $state, |$s| $op, |$s| $op, $check)
    };
}

/// An async case: `bench_async!(state, |s| future_of(s), |r| check(r))`.
///
/// The future is awaited in a loop inside one `block_on` per batch on this thread's
/// current-thread runtime.
macro_rules! bench_async {
    ($state:expr, |$s:ident| $op:expr, $check:expr) => {{
        let mut state = $state;
        let check = $check;
        $crate::harness::Bench::from_fn(move |mode| {
            $crate::harness::with_runtime(|rt| {
                rt.block_on(async {
                    match mode {
                        $crate::harness::Mode::Run(n) => {
                            let started = ::std::time::Instant::now();
                            for _ in 0..n {
                                let $s = &mut state;
                                let _ = ::std::hint::black_box($op.await);
                            }
                            $crate::harness::Answer::Elapsed(started.elapsed())
                        }
                        $crate::harness::Mode::Check => {
                            let $s = &mut state;
                            let value = $op.await;
                            $crate::harness::verdict(check(&value), &value)
                        }
                    }
                })
            })
        })
    }};
}

/// A case run on several threads at once:
/// `bench_parallel!(threads, make_state, |s| future_of(s), |r| check(r))`.
///
/// `make_state` (a `Fn() -> S + Sync` closure) builds each thread's state, typically
/// a clone of one shared object. Each thread awaits the operation on its own
/// current-thread runtime, as [`bench_async!`] does.
macro_rules! bench_parallel {
    ($threads:expr, $make:expr, |$s:ident| $op:expr, $check:expr) => {{
        let make = $make;
        let check = $check;
        let threads: usize = $threads;
        $crate::harness::Bench::from_fn(move |mode| match mode {
            $crate::harness::Mode::Run(n) => $crate::harness::parallel_batch(threads, |barrier| {
                let mut state = make();
                $crate::harness::with_runtime(|rt| {
                    rt.block_on(async {
                        barrier.wait();
                        let started = ::std::time::Instant::now();
                        for _ in 0..n {
                            let $s = &mut state;
                            let _ = ::std::hint::black_box($op.await);
                        }
                        (started, ::std::time::Instant::now())
                    })
                })
            }),
            $crate::harness::Mode::Check => {
                let mut state = make();
                $crate::harness::with_runtime(|rt| {
                    rt.block_on(async {
                        let $s = &mut state;
                        let value = $op.await;
                        $crate::harness::verdict(check(&value), &value)
                    })
                })
            }
        })
    }};
}

/// A synchronous case run on several threads at once, as [`bench_sync!`] runs it on
/// one: `bench_parallel_sync!(threads, make_state, |s| operation(s), |r| check(r))`,
/// or with `probe = |s| reading(s)` before the check to check the state, as there.
/// Each thread runs the same plain loop as the one-thread case it is scaled against,
/// inside its own runtime context, so that the scaling compares like with like.
macro_rules! bench_parallel_sync {
    // As in `bench_sync!`: batches run `$op`, a check judges `$checked`.
    (@ $threads:expr, $make:expr, |$s:ident| $op:expr, |$c:ident| $checked:expr, $check:expr) => {{
        let make = $make;
        let check = $check;
        let threads: usize = $threads;
        $crate::harness::Bench::from_fn(move |mode| match mode {
            $crate::harness::Mode::Run(n) => $crate::harness::parallel_batch(threads, |barrier| {
                let mut state = make();
                $crate::harness::in_runtime(|| {
                    barrier.wait();
                    let started = ::std::time::Instant::now();
                    for _ in 0..n {
                        let $s = &mut state;
                        let _ = ::std::hint::black_box($op);
                    }
                    (started, ::std::time::Instant::now())
                })
            }),
            $crate::harness::Mode::Check => {
                let mut state = make();
                $crate::harness::in_runtime(|| {
                    let $c = &mut state;
                    let value = $checked;
                    $crate::harness::verdict(check(&value), &value)
                })
            }
        })
    }};
    ($threads:expr, $make:expr, |$s:ident| $op:expr, probe = |$p:ident| $probe:expr, $check:expr) => {
        $crate::harness::bench_parallel_sync!(@ $threads, $make, |$s| $op, |$s| {
            let _ = $op;
            let $p = &*$s;
            $probe
        }, $check)
    };
    ($threads:expr, $make:expr, |$s:ident| $op:expr, $check:expr) => {
        $crate::harness::bench_parallel_sync!(@ $threads, $make, |$s| $op, |$s| $op, $check)
    };
}

pub(crate) use {bench_async, bench_parallel, bench_parallel_sync, bench_sync};

/// Runs `body` on `threads` scoped threads that start together and returns the wall
/// time from the first start to the last end.
pub(crate) fn parallel_batch<F>(threads: usize, body: F) -> Answer
where
    F: Fn(&Barrier) -> (Instant, Instant) + Sync,
{
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| body(&barrier)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a benchmark thread panicked"))
            .collect()
    });
    let start = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one thread");
    let end = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one thread");
    Answer::Elapsed(end.duration_since(start))
}

/// What a case is, for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A floor: the cheapest thing the workload could possibly cost.
    Floor,
    /// Palisade's own implementation.
    Palisade,
    /// A crate a user would otherwise pick.
    Peer,
    /// A building block shown for orientation (not counted as a peer).
    Reference,
}

/// The floors every case is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Floor {
    /// A call of a black-boxed function returning `Ok(1)`.
    Call,
    /// An awaited async function returning `Ok(1)` at once.
    Await,
    /// One relaxed `fetch_add` on an `AtomicU64`.
    Atomic,
    /// One `std::time::Instant::now()`.
    Clock,
}

impl Floor {
    /// The floor's short name in tables.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Floor::Call => "call",
            Floor::Await => "await",
            Floor::Atomic => "atomic",
            Floor::Clock => "clock",
        }
    }
}

/// One row of the benchmark.
#[derive(Debug)]
pub(crate) struct Case {
    /// The area (module) the case belongs to: `breaker`, `retry`, ...
    pub(crate) area: &'static str,
    /// The workload, shared by palisade and the peers it is compared with.
    pub(crate) workload: &'static str,
    /// Who implements it: `palisade-breaker`, `recloser`, ...
    pub(crate) label: &'static str,
    /// Palisade, peer, reference or floor.
    pub(crate) role: Role,
    /// The floor this case's ratio is taken to (for a floor case: which floor it is).
    pub(crate) floor: Option<Floor>,
    /// Threads running the operation at once.
    pub(crate) threads: usize,
    /// For a multi-thread case: the one-thread workload of the same label.
    pub(crate) scales: Option<&'static str>,
    /// A key path: counted under callgrind.
    pub(crate) key: bool,
    /// A note for the report (what exactly is measured, caveats).
    pub(crate) note: &'static str,
    /// The operation.
    pub(crate) bench: Bench,
}

impl Case {
    /// A case of `area`/`workload` implemented by `label`.
    pub(crate) fn new(
        area: &'static str,
        workload: &'static str,
        label: &'static str,
        role: Role,
        bench: Bench,
    ) -> Case {
        Case {
            area,
            workload,
            label,
            role,
            floor: None,
            threads: 1,
            scales: None,
            key: false,
            note: "",
            bench,
        }
    }

    /// Compares the case with `floor`.
    pub(crate) fn floor(mut self, floor: Floor) -> Case {
        self.floor = Some(floor);
        self
    }

    /// Marks a case as running on `threads` threads, scaled against `single`.
    pub(crate) fn threads(mut self, threads: usize, single: &'static str) -> Case {
        self.threads = threads;
        self.scales = Some(single);
        self
    }

    /// Marks the case as a key path, counted under callgrind.
    pub(crate) fn key(mut self) -> Case {
        self.key = true;
        self
    }

    /// Adds a note for the report.
    pub(crate) fn note(mut self, note: &'static str) -> Case {
        self.note = note;
        self
    }

    /// A stable identifier: `area/workload/label` in lower case, every run of other
    /// characters than letters and digits as one dash.
    pub(crate) fn id(&self) -> String {
        [self.area, self.workload, self.label]
            .iter()
            .map(|part| slug(part))
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// `text` in lower case with every run of non-alphanumeric characters as one dash.
pub(crate) fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    /// Rounds (one batch of every case each).
    pub(crate) rounds: usize,
    /// Target wall time of one batch.
    pub(crate) batch: Duration,
}

impl Settings {
    /// `cargo xtask bench`: under a minute of measuring for all cases.
    pub(crate) const FULL: Settings = Settings {
        rounds: 151,
        batch: Duration::from_millis(2),
    };
    /// `cargo xtask bench --quick`: a few seconds of measuring.
    pub(crate) const QUICK: Settings = Settings {
        rounds: 31,
        batch: Duration::from_millis(1),
    };
}

/// The samples of one case.
#[derive(Debug, Clone)]
pub(crate) struct Samples {
    /// Iterations per batch (per thread).
    pub(crate) iters: u64,
    /// ns per operation, one sample per round, in round order.
    pub(crate) ns: Vec<f64>,
}

/// Finds `n` such that a batch of `n` operations lasts about `target`.
pub(crate) fn calibrate(bench: &mut Bench, target: Duration) -> u64 {
    let mut n: u64 = 1;
    loop {
        let elapsed = bench.run(n);
        if elapsed >= target || n >= 1 << 32 {
            return n;
        }
        let scale = target.as_secs_f64() / elapsed.as_secs_f64().max(1e-9);
        if elapsed * 2 >= target {
            // Close enough to extrapolate.
            return ((n as f64) * scale).ceil() as u64;
        }
        n = ((n as f64) * scale.clamp(2.0, 10.0)).ceil() as u64;
    }
}

/// How long one batch of `case` should last. A multi-thread batch starts its threads
/// on a barrier, and the last thread wakes from it tens to hundreds of microseconds
/// after the first; a batch ten times longer keeps that skew to a few per cent of
/// the batch instead of a third of it.
fn batch_target(case: &Case, batch: Duration) -> Duration {
    if case.threads > 1 {
        batch * PARALLEL_BATCH_FACTOR
    } else {
        batch
    }
}

/// How many times longer a multi-thread batch is than a one-thread batch.
const PARALLEL_BATCH_FACTOR: u32 = 10;

/// Measures `cases` in interleaved rounds; `progress` is called after each round.
pub(crate) fn measure(
    cases: &mut [Case],
    settings: Settings,
    mut progress: impl FnMut(usize),
) -> Vec<Samples> {
    // Two warm-up calibrations: the first also pays lazy initialisation.
    let mut iters: Vec<u64> = cases
        .iter_mut()
        .map(|c| {
            let target = batch_target(c, settings.batch);
            calibrate(&mut c.bench, target / 4)
        })
        .collect();
    for (case, n) in cases.iter_mut().zip(iters.iter_mut()) {
        let target = batch_target(case, settings.batch);
        *n = calibrate(&mut case.bench, target);
    }
    let mut samples: Vec<Samples> = iters
        .iter()
        .map(|&n| Samples {
            iters: n,
            ns: Vec::with_capacity(settings.rounds),
        })
        .collect();
    let mut order: Vec<usize> = (0..cases.len()).collect();
    let mut rng = SplitMix(0x5eed_1234_abcd_0001);
    for round in 0..settings.rounds {
        shuffle(&mut order, &mut rng);
        for &i in &order {
            let n = samples[i].iters;
            let elapsed = cases[i].bench.run(n);
            let ops = n * cases[i].threads as u64;
            samples[i].ns.push(elapsed.as_nanos() as f64 / ops as f64);
        }
        progress(round);
    }
    samples
}

/// A small deterministic generator for the round order.
#[derive(Debug)]
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn shuffle(v: &mut [usize], rng: &mut SplitMix) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// The `q` quantile (0..=1) of `values`, linearly interpolated.
pub(crate) fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// The median of `values`.
pub(crate) fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

/// The median over rounds of `a[r] / b[r]`: a ratio measured side by side.
pub(crate) fn paired_ratio(a: &[f64], b: &[f64]) -> f64 {
    let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    median(&ratios)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert_eq!(median(&v), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn paired_ratio_cancels_common_drift() {
        // The machine gets twice as slow in the second half; b is always half of a.
        let a = [10.0, 10.0, 20.0, 20.0, 20.0];
        let b = [5.0, 5.0, 10.0, 10.0, 10.0];
        assert_eq!(paired_ratio(&a, &b), 2.0);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<usize> = (0..50).collect();
        shuffle(&mut v, &mut SplitMix(7));
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }

    #[test]
    fn ids_are_slugs() {
        let case = Case::new(
            "breaker",
            "closed-state call, 2 threads",
            "palisade-breaker",
            Role::Palisade,
            bench_sync!((), |_s| 1u8, |r: &u8| *r == 1),
        );
        assert_eq!(
            case.id(),
            "breaker/closed-state-call-2-threads/palisade-breaker"
        );
        assert_eq!(
            slug("tokio::time::timeout (ready)"),
            "tokio-time-timeout-ready"
        );
    }

    #[test]
    fn sync_bench_runs_and_checks() {
        let mut b = bench_sync!(
            0u64,
            |s| {
                *s += 1;
                *s
            },
            |r: &u64| *r > 0
        );
        b.run(10);
        assert!(b.check().is_ok());
        let mut bad = bench_sync!((), |_s| 0u8, |r: &u8| *r == 1);
        assert!(bad.check().is_err());
    }

    #[test]
    fn a_probe_checks_the_state_after_one_operation() {
        let mut b = bench_sync!(10u64, |s| *s += 1, probe = |s| *s, |r: &u64| *r == 11);
        assert!(b.check().is_ok());
        b.run(10);
        // The state has moved on: the probe sees it.
        assert!(b.check().is_err());
        let mut idle = bench_sync!(0u64, |_s| (), probe = |s| *s, |r: &u64| *r > 0);
        assert_eq!(idle.check(), Err("unexpected result: 0".to_string()));
    }

    #[test]
    fn parallel_sync_bench_counts_all_threads_and_probes_a_fresh_state() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let shared = Arc::new(AtomicU64::new(0));
        let probe = Arc::clone(&shared);
        let mut b = bench_parallel_sync!(
            2,
            move || Arc::clone(&shared),
            |s| s.fetch_add(1, Ordering::Relaxed),
            probe = |s| s.load(Ordering::Relaxed),
            |r: &u64| *r > 0
        );
        assert!(b.check().is_ok());
        b.run(100);
        assert_eq!(probe.load(Ordering::Relaxed), 201);
        let mut idle = bench_parallel_sync!(
            2,
            || AtomicU64::new(0),
            |_s| (),
            probe = |s| s.load(Ordering::Relaxed),
            |r: &u64| *r > 0
        );
        assert!(idle.check().is_err());
    }

    #[test]
    fn parallel_bench_counts_all_threads() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let shared = Arc::new(AtomicU64::new(0));
        let probe = Arc::clone(&shared);
        let mut b = bench_parallel!(
            2,
            move || Arc::clone(&shared),
            |s| async { s.fetch_add(1, Ordering::Relaxed) },
            |_r: &u64| true
        );
        b.run(100);
        assert_eq!(probe.load(Ordering::Relaxed), 200);
        assert!(b.check().is_ok());
    }
}
