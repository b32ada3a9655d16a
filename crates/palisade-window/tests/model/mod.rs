//! A naive model of both windows, and a checker that runs the same operations on
//! the model and on the real window and compares every snapshot.
//!
//! Shared by the property tests (`tests/model.rs`) and the fuzz targets (`fuzz/`).
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use palisade_clock::{Clock, ManualClock, Timestamp};
use palisade_window::{
    CountConfig, CountWindow, OutcomeKind, TimeConfig, TimeWindow, Window, WindowSnapshot,
};

/// When a record happens.
#[derive(Copy, Clone, Debug)]
pub enum At {
    /// Now, read from the window's clock (`record`, `record_with_duration`).
    Clock,
    /// Given by the caller (`record_at`), this long before now.
    Past(u64),
    /// Given by the caller, this long after now.
    Future(u64),
}

/// One step.
#[derive(Copy, Clone, Debug)]
pub enum Op {
    /// Record an outcome, with a duration in nanoseconds or without.
    Record {
        kind: OutcomeKind,
        elapsed: Option<u64>,
        at: At,
    },
    /// Move the clock forward, in nanoseconds.
    Advance(u64),
    /// Take a snapshot and compare it with the model.
    Snapshot,
    /// Empty the window.
    Reset,
}

#[derive(Clone, Debug)]
struct Call {
    failed: bool,
    slow: bool,
    elapsed: Option<u64>,
    /// The epoch of the call's time.
    epoch: u64,
    /// The newest epoch seen when the call was recorded (its own included).
    cursor: u64,
}

#[derive(Default, Clone, Debug)]
struct Totals {
    calls: u64,
    failures: u64,
    slow: u64,
    ignored: u64,
}

impl Totals {
    fn add(&mut self, kind: OutcomeKind, slow: bool) {
        match kind {
            OutcomeKind::Ignored => self.ignored += 1,
            _ => {
                self.calls += 1;
                self.failures += (kind == OutcomeKind::Failure) as u64;
                self.slow += slow as u64;
            }
        }
    }

    fn check(&self, s: &WindowSnapshot) -> Result<(), String> {
        let real = (
            s.total_calls(),
            s.total_failures(),
            s.total_slow_calls(),
            s.total_ignored(),
        );
        let model = (self.calls, self.failures, self.slow, self.ignored);
        if real != model {
            return Err(format!("totals: window {real:?}, model {model:?}"));
        }
        Ok(())
    }
}

fn is_slow(threshold: Option<Duration>, elapsed: Option<u64>) -> bool {
    match (threshold, elapsed) {
        (Some(t), Some(e)) => Duration::from_nanos(e) >= t,
        _ => false,
    }
}

fn check_counts(s: &WindowSnapshot, calls: &[&Call]) -> Result<(), String> {
    let model = (
        calls.len() as u64,
        calls.iter().filter(|c| c.failed).count() as u64,
        calls.iter().filter(|c| c.slow).count() as u64,
    );
    let real = (s.calls(), s.failures(), s.slow_calls());
    if real != model {
        return Err(format!(
            "calls, failures, slow calls: window {real:?}, model {model:?}"
        ));
    }
    let rate = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    };
    if s.failure_rate() != rate(model.1, model.0) || s.slow_call_rate() != rate(model.2, model.0) {
        return Err(format!("rates differ: {s:?}"));
    }
    Ok(())
}

/// The latency the window reports for the `q` quantile of `durations` (sorted): the
/// upper edge of the exact value's bin, at most 25 % above it, at least 1024 ns, and
/// 2^36 ns for anything from there up.
fn check_quantile(q: f64, reported: Option<Duration>, durations: &[u64]) -> Result<(), String> {
    if durations.is_empty() {
        return match reported {
            None => Ok(()),
            Some(r) => Err(format!("q{q}: {r:?} without durations")),
        };
    }
    let n = durations.len() as u64;
    let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
    let exact = durations[rank as usize - 1];
    let Some(reported) = reported else {
        return Err(format!("q{q}: none, model {exact} ns"));
    };
    let r = reported.as_nanos() as u64;
    const TOP: u64 = 1 << 36;
    let ok = if exact >= TOP {
        r == TOP
    } else {
        r > exact && r <= (exact + exact / 4).max(1024)
    };
    if !ok {
        return Err(format!("q{q}: window {r} ns, exact {exact} ns"));
    }
    Ok(())
}

/// Runs `ops` on a [`TimeWindow`] over a [`ManualClock`] and on the model; returns the
/// first difference.
pub fn check_time(config: TimeConfig, ops: &[Op]) -> Result<(), String> {
    let clock = ManualClock::new();
    let window = TimeWindow::new(config.clone(), clock.clone()).map_err(|e| e.to_string())?;
    let width = config.bucket_width.as_nanos() as u64;
    let buckets = config.buckets as u64;
    let epoch = |t: u64| t / width;
    let mut cursor = epoch(clock.now().as_nanos());
    let mut calls: Vec<Call> = Vec::new();
    let mut totals = Totals::default();
    for (step, op) in ops.iter().enumerate() {
        let now = clock.now().as_nanos();
        match *op {
            Op::Record { kind, elapsed, at } => {
                let slow = is_slow(config.slow_call_threshold, elapsed);
                let t = match at {
                    At::Clock => now,
                    At::Past(d) => now.saturating_sub(d),
                    At::Future(d) => now.saturating_add(d),
                };
                let d = elapsed.map(Duration::from_nanos);
                match (at, d) {
                    (At::Clock, None) => window.record(kind),
                    (At::Clock, Some(d)) => window.record_with_duration(kind, d),
                    (_, None) => window.record_at(kind, Timestamp::from_nanos(t)),
                    (_, Some(d)) => {
                        window.record_with_duration_at(kind, d, Timestamp::from_nanos(t))
                    }
                }
                totals.add(kind, slow);
                if kind != OutcomeKind::Ignored {
                    let e = epoch(t);
                    cursor = cursor.max(e);
                    // Older than the window when recorded: counted in the totals only.
                    if e + buckets > cursor {
                        calls.push(Call {
                            failed: kind == OutcomeKind::Failure,
                            slow,
                            elapsed,
                            epoch: e,
                            cursor,
                        });
                    }
                }
            }
            Op::Advance(d) => clock.advance(Duration::from_nanos(d)),
            Op::Snapshot => {
                let s = window.snapshot();
                cursor = cursor.max(epoch(now));
                let oldest = (cursor + 1).saturating_sub(buckets);
                let in_window: Vec<&Call> = calls.iter().filter(|c| c.epoch >= oldest).collect();
                let result = check_counts(&s, &in_window)
                    .and_then(|()| totals.check(&s))
                    .and_then(|()| {
                        let mut durations: Vec<u64> = calls
                            .iter()
                            .filter(|c| c.cursor >= oldest)
                            .filter_map(|c| c.elapsed)
                            .collect();
                        durations.sort_unstable();
                        let latency = s.latency().ok_or("no latency")?;
                        if latency.count() != durations.len() as u64 {
                            return Err(format!(
                                "latency count: window {}, model {}",
                                latency.count(),
                                durations.len()
                            ));
                        }
                        for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
                            check_quantile(q, latency.quantile(q), &durations)?;
                        }
                        check_quantile(1.0, latency.max(), &durations)
                    });
                result.map_err(|e| format!("step {step} ({op:?}): {e}\n{s:?}"))?;
            }
            Op::Reset => {
                window.reset();
                cursor = cursor.max(epoch(now));
                calls.clear();
            }
        }
    }
    Ok(())
}

/// Runs `ops` on a [`CountWindow`] and on the model; returns the first difference.
/// Times are irrelevant to a count window: `Advance` does nothing.
pub fn check_count(config: CountConfig, ops: &[Op]) -> Result<(), String> {
    let window = CountWindow::new(config.clone()).map_err(|e| e.to_string())?;
    let mut calls: Vec<Call> = Vec::new();
    let mut totals = Totals::default();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Record { kind, elapsed, at } => {
                let slow = is_slow(config.slow_call_threshold, elapsed);
                let d = elapsed.map(Duration::from_nanos);
                let t = Timestamp::from_nanos(match at {
                    At::Past(d) => (1u64 << 40) - d.min(1 << 39),
                    _ => 1 << 40,
                });
                match (at, d) {
                    (At::Clock, None) => window.record(kind),
                    (At::Clock, Some(d)) => window.record_with_duration(kind, d),
                    (_, None) => window.record_at(kind, t),
                    (_, Some(d)) => window.record_with_duration_at(kind, d, t),
                }
                totals.add(kind, slow);
                if kind != OutcomeKind::Ignored {
                    calls.push(Call {
                        failed: kind == OutcomeKind::Failure,
                        slow,
                        elapsed,
                        epoch: 0,
                        cursor: 0,
                    });
                }
            }
            Op::Advance(_) => {}
            Op::Snapshot => {
                let s = window.snapshot();
                let keep = calls.len().saturating_sub(config.size);
                let last: Vec<&Call> = calls[keep..].iter().collect();
                check_counts(&s, &last)
                    .and_then(|()| totals.check(&s))
                    .and_then(|()| match s.latency() {
                        None => Ok(()),
                        Some(_) => Err("a count window has no latency".into()),
                    })
                    .map_err(|e| format!("step {step} ({op:?}): {e}\n{s:?}"))?;
            }
            Op::Reset => {
                window.reset();
                calls.clear();
            }
        }
    }
    Ok(())
}

/// Decodes fuzzer bytes into a configuration and operations: the first bytes choose
/// the window's shape, then each operation takes a tag byte and its arguments.
pub struct Decoder<'a> {
    bytes: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Decoder { bytes }
    }

    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(b)
    }

    fn u32(&mut self) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..4 {
            v = v << 8 | self.byte()? as u32;
        }
        Some(v)
    }

    /// A duration in nanoseconds spread over many scales: `mantissa << shift`.
    fn nanos(&mut self) -> Option<u64> {
        let shift = self.byte()? % 40;
        let mantissa = self.byte()? as u64;
        Some(mantissa << shift)
    }

    pub fn time_config(&mut self) -> Option<TimeConfig> {
        let buckets = self.byte()? as usize % 12 + 1;
        let width = Duration::from_micros(
            (self.byte()? as u64 % 64 + 1) * [1, 10, 1000][self.byte()? as usize % 3],
        );
        let slow = self.slow()?;
        Some(TimeConfig::new(buckets, width).with_slow_call_threshold(slow))
    }

    pub fn count_config(&mut self) -> Option<CountConfig> {
        let size = self.byte()? as usize % 40 + 1;
        Some(CountConfig::new(size).with_slow_call_threshold(self.slow()?))
    }

    fn slow(&mut self) -> Option<Option<Duration>> {
        let b = self.byte()?;
        Some(if b % 2 == 0 {
            None
        } else {
            Some(Duration::from_nanos(self.nanos()?.min(86_400_000_000_000)))
        })
    }

    pub fn ops(&mut self) -> Vec<Op> {
        let mut ops = Vec::new();
        while let Some(op) = self.op() {
            ops.push(op);
        }
        ops.push(Op::Snapshot);
        ops
    }

    fn op(&mut self) -> Option<Op> {
        let tag = self.byte()?;
        Some(match tag % 8 {
            0..=2 => {
                let kind = [
                    OutcomeKind::Success,
                    OutcomeKind::Failure,
                    OutcomeKind::Ignored,
                ][(tag / 8 % 3) as usize];
                let elapsed = if tag & 0x80 != 0 {
                    Some(self.nanos()?)
                } else {
                    None
                };
                let at = match tag % 8 {
                    0 => At::Clock,
                    1 => At::Past(self.nanos()?),
                    _ => At::Future(self.nanos()? % 1_000_000_000),
                };
                Op::Record { kind, elapsed, at }
            }
            3 | 4 => Op::Advance(self.nanos()?),
            5 => Op::Advance(self.u32()? as u64 * 1000),
            6 => Op::Snapshot,
            _ => Op::Reset,
        })
    }
}
