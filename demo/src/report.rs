//! What a run measured: the side-by-side table and the SVG timeline chart.

use std::fmt::Write as _;
use std::time::Duration;

use crate::health::BreakerView;
use crate::load::{Record, Served};
use crate::timeline::{Phase, Timeline};

/// A bucket of the run's timeline: what the requests started in it met.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Requests started.
    pub started: u64,
    /// Of those, served by the dependency.
    pub dependency: u64,
    /// Of those, served by a fallback.
    pub fallback: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Attempts sent to the dependency within the bucket.
    pub attempts: u64,
    /// The worst breaker state seen within the bucket.
    pub breaker: Option<BreakerView>,
}

/// The measurements of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunReport {
    /// The service's name.
    pub name: String,
    /// Requests started.
    pub requests: u64,
    /// Requests served by the dependency.
    pub dependency: u64,
    /// Requests served by a fallback.
    pub fallback: u64,
    /// Requests failed.
    pub failed: u64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Maximum latency.
    pub max: Duration,
    /// The most any request outlived its deadline by (zero if none did).
    pub max_over_deadline: Duration,
    /// Attempts sent to the dependency.
    pub attempts: u64,
    /// Attempts sent to the dependency while it was down.
    pub attempts_during_outage: u64,
    /// Attempts sent to the dependency per phase of the timeline, in its order.
    pub attempts_per_phase: Vec<u64>,
    /// Requests that sent at least one attempt.
    pub requests_attempted: u64,
    /// From the outage's start until the client stopped calling the dependency
    /// (at most one attempt per bucket and a tenth of the offered load for the
    /// rest of the outage); `None` if it never stopped.
    pub detect: Option<Duration>,
    /// From the recovery's start until nine requests in ten were served by the
    /// dependency again, sustained over a window; `None` if that never happened.
    pub recover: Option<Duration>,
    /// The width of a bucket.
    pub bucket: Duration,
    /// The run's timeline in buckets.
    pub buckets: Vec<Bucket>,
    /// The median budget the dependency saw on the requests it received (their
    /// deadline header), if any carried one.
    pub downstream_deadline: Option<Duration>,
    /// Work the dependency stopped because its request's deadline passed.
    pub downstream_stopped: u64,
}

impl RunReport {
    /// Builds the report of one run from its records, the attempts per bucket and
    /// per phase, and the sampled breaker states.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: impl Into<String>,
        timeline: &Timeline,
        deadline: Duration,
        records: &[Record],
        bucket: Duration,
        attempts_per_bucket: &[u64],
        attempts_per_phase: &[u64],
        breaker_per_bucket: &[Option<BreakerView>],
    ) -> Self {
        let n = attempts_per_bucket.len().max(1);
        let mut buckets = vec![Bucket::default(); n];
        for (b, (&a, &s)) in buckets
            .iter_mut()
            .zip(attempts_per_bucket.iter().zip(breaker_per_bucket))
        {
            b.attempts = a;
            b.breaker = s;
        }
        let (mut dependency, mut fallback, mut failed) = (0, 0, 0);
        let mut latencies: Vec<Duration> = Vec::with_capacity(records.len());
        let mut max_over_deadline = Duration::ZERO;
        let mut requests_attempted = 0;
        for r in records {
            let i = ((r.offset.as_nanos() / bucket.as_nanos().max(1)) as usize).min(n - 1);
            let b = &mut buckets[i];
            b.started += 1;
            match r.served {
                Served::Dependency => {
                    dependency += 1;
                    b.dependency += 1;
                }
                Served::Fallback => {
                    fallback += 1;
                    b.fallback += 1;
                }
                Served::Failed(_) => {
                    failed += 1;
                    b.failed += 1;
                }
            }
            latencies.push(r.latency);
            max_over_deadline = max_over_deadline.max(r.latency.saturating_sub(deadline));
            if r.attempts > 0 {
                requests_attempted += 1;
            }
        }
        latencies.sort();
        let outage = timeline.phases().iter().position(|p| p.0 == Phase::Outage);
        let attempts_during_outage = outage.map_or(0, |i| attempts_per_phase[i]);
        RunReport {
            name: name.into(),
            requests: records.len() as u64,
            dependency,
            fallback,
            failed,
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or_default(),
            max_over_deadline,
            attempts: attempts_per_bucket.iter().sum(),
            attempts_during_outage,
            attempts_per_phase: attempts_per_phase.to_vec(),
            requests_attempted,
            detect: detect(timeline, bucket, &buckets),
            recover: recover(timeline, bucket, &buckets),
            bucket,
            buckets,
            downstream_deadline: None,
            downstream_stopped: 0,
        }
    }

    /// The share of requests served by the dependency.
    pub fn success_rate(&self) -> f64 {
        ratio(self.dependency, self.requests)
    }

    /// The share of requests served at all, by the dependency or a fallback.
    pub fn success_rate_with_fallbacks(&self) -> f64 {
        ratio(self.dependency + self.fallback, self.requests)
    }

    /// Retry amplification: calls sent to the dependency per request. 1.0 is one
    /// call each; retries add to it, calls a breaker refused take from it.
    pub fn amplification(&self) -> f64 {
        ratio(self.attempts, self.requests)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn bucket_range(bucket: Duration, n: usize, span: (Duration, Duration)) -> std::ops::Range<usize> {
    let b = bucket.as_nanos().max(1);
    // Buckets wholly inside the span.
    let first = span.0.as_nanos().div_ceil(b) as usize;
    let end = (span.1.as_nanos() / b) as usize;
    first.min(n)..end.min(n)
}

fn detect(timeline: &Timeline, bucket: Duration, buckets: &[Bucket]) -> Option<Duration> {
    let span = timeline.span_of(Phase::Outage)?;
    let range = bucket_range(bucket, buckets.len(), span);
    let quiet = |b: &Bucket| b.attempts <= 1 && b.attempts * 10 <= b.started.max(10);
    let mut first_quiet = None;
    for i in range.clone().rev() {
        if quiet(&buckets[i]) {
            first_quiet = Some(i);
        } else {
            break;
        }
    }
    let i = first_quiet?;
    Some((bucket * i as u32).saturating_sub(span.0))
}

fn recover(timeline: &Timeline, bucket: Duration, buckets: &[Bucket]) -> Option<Duration> {
    let span = timeline.span_of(Phase::Recovery)?;
    let range = bucket_range(bucket, buckets.len(), span);
    // A window of about a thirtieth of the run (a second in the demo), so one
    // unlucky bucket neither hides nor fakes a recovery.
    let window = (buckets.len() / 32).max(1);
    for i in range.clone() {
        let end = (i + window).min(range.end);
        let (ok, all) = buckets[i..end]
            .iter()
            .fold((0, 0), |(ok, all), b| (ok + b.dependency, all + b.started));
        if all > 0 && ok * 10 >= all * 9 {
            return Some((bucket * i as u32).saturating_sub(span.0));
        }
    }
    None
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn secs(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.1} s", d.as_secs_f64()),
        None => "never".into(),
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The side-by-side table of runs, as plain text.
pub fn table(runs: &[RunReport]) -> String {
    type Row = (&'static str, fn(&RunReport) -> String);
    let rows: [Row; 13] = [
        ("requests", |r| r.requests.to_string()),
        ("success rate (dependency only)", |r| pct(r.success_rate())),
        ("success rate (with fallbacks)", |r| {
            pct(r.success_rate_with_fallbacks())
        }),
        ("latency p50", |r| ms(r.p50)),
        ("latency p99", |r| ms(r.p99)),
        ("latency max", |r| ms(r.max)),
        ("worst overrun of the deadline", |r| ms(r.max_over_deadline)),
        ("calls sent during the outage", |r| {
            r.attempts_during_outage.to_string()
        }),
        ("retry amplification (calls per request)", |r| {
            format!("{:.2}x", r.amplification())
        }),
        ("time to detect the outage", |r| secs(r.detect)),
        ("time to recover", |r| secs(r.recover)),
        ("deadline seen downstream (median)", |r| {
            r.downstream_deadline.map_or_else(|| "none".to_string(), ms)
        }),
        ("work stopped downstream at its deadline", |r| {
            r.downstream_stopped.to_string()
        }),
    ];
    let label_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(_, f)| runs.iter().map(f).collect())
        .collect();
    let widths: Vec<usize> = runs
        .iter()
        .enumerate()
        .map(|(j, r)| {
            cells
                .iter()
                .map(|row| row[j].len())
                .chain([r.name.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let _ = write!(out, "{:label_width$}", "");
    for (r, w) in runs.iter().zip(&widths) {
        let _ = write!(out, "  {:>w$}", r.name);
    }
    out.push('\n');
    for ((label, _), row) in rows.iter().zip(&cells) {
        let _ = write!(out, "{label:label_width$}");
        for (cell, w) in row.iter().zip(&widths) {
            let _ = write!(out, "  {cell:>w$}");
        }
        out.push('\n');
    }
    out
}

const PHASE_FILLS: [&str; 6] = [
    "#f4f9f4", "#fdf6e3", "#fdecea", "#f3e8fd", "#eeeeee", "#e8f4fd",
];

fn phase_fill(phase: Phase) -> &'static str {
    match phase {
        Phase::Healthy => PHASE_FILLS[0],
        Phase::LatencySpikes => PHASE_FILLS[1],
        Phase::UnavailableBursts => PHASE_FILLS[2],
        Phase::ConnectionResets => PHASE_FILLS[3],
        Phase::Outage => PHASE_FILLS[4],
        Phase::Recovery => PHASE_FILLS[5],
    }
}

fn breaker_fill(b: Option<BreakerView>) -> &'static str {
    match b {
        None => "#ffffff",
        Some(BreakerView::Closed) => "#2e7d32",
        Some(BreakerView::HalfOpen) => "#f9a825",
        Some(BreakerView::Open) => "#c62828",
    }
}

/// The timeline chart: per run, requests per second served by the dependency, by
/// fallbacks and failed, the attempts sent to the dependency, and the breaker state
/// as a strip beneath; the phases shade the background. Hand-written SVG.
pub fn svg(timeline: &Timeline, runs: &[RunReport]) -> String {
    let (width, left, right) = (960.0, 60.0, 20.0);
    let (panel, strip, gap, top) = (200.0, 12.0, 56.0, 64.0);
    let plot_w = width - left - right;
    let height = top + runs.len() as f64 * (panel + strip + gap) + 20.0;
    let total = timeline.total().as_secs_f64().max(1e-9);
    let x = |t: f64| left + plot_w * t / total;
    // One vertical scale for every panel, so the runs compare at a glance.
    let per_sec = |count: u64, bucket: Duration| count as f64 / bucket.as_secs_f64().max(1e-9);
    let y_max = runs
        .iter()
        .flat_map(|r| {
            r.buckets
                .iter()
                .map(move |b| per_sec(b.started.max(b.attempts), r.bucket))
        })
        .fold(1.0_f64, f64::max)
        * 1.1;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="14" font-weight="bold">Requests per second against the scripted dependency</text>"#
    );
    let legend = [
        ("#2e7d32", "served by the dependency"),
        ("#1565c0", "served by a fallback"),
        ("#c62828", "failed"),
        ("#ef6c00", "attempts sent (dashed)"),
    ];
    for (k, (colour, label)) in legend.iter().enumerate() {
        let lx = left + k as f64 * 170.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="29" width="10" height="10" fill="{colour}"/><text x="{}" y="38">{label}</text>"#,
            lx + 14.0
        );
    }
    for (k, run) in runs.iter().enumerate() {
        let y0 = top + k as f64 * (panel + strip + gap);
        let y = |v: f64| y0 + panel - panel * (v / y_max).min(1.0);
        let mut t = 0.0;
        for &(phase, d) in timeline.phases() {
            let (x0, x1) = (x(t), x(t + d.as_secs_f64()));
            let _ = writeln!(
                s,
                r##"<rect x="{x0:.1}" y="{y0:.1}" width="{:.1}" height="{panel}" fill="{}"/><text x="{:.1}" y="{:.1}" fill="#555">{}</text>"##,
                x1 - x0,
                phase_fill(phase),
                x0 + 3.0,
                y0 + 12.0,
                phase.name()
            );
            t += d.as_secs_f64();
        }
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="{:.1}" font-size="13" font-weight="bold">{}</text>"#,
            y0 - 6.0,
            run.name
        );
        // Axes and a few gridlines.
        for g in 0..=4 {
            let v = y_max * f64::from(g) / 4.0;
            let gy = y(v);
            let _ = writeln!(
                s,
                r##"<line x1="{left}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#ccc" stroke-width="0.5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.0}/s</text>"##,
                left + plot_w,
                left - 4.0,
                gy + 4.0
            );
        }
        type Series = (&'static str, &'static str, fn(&Bucket) -> u64);
        let series: [Series; 4] = [
            ("#2e7d32", "", |b| b.dependency),
            ("#1565c0", "", |b| b.fallback),
            ("#c62828", "", |b| b.failed),
            ("#ef6c00", r#" stroke-dasharray="4 3""#, |b| b.attempts),
        ];
        for (colour, dash, value) in series {
            let points: Vec<String> = run
                .buckets
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let t = (i as f64 + 0.5) * run.bucket.as_secs_f64();
                    format!("{:.1},{:.1}", x(t), y(per_sec(value(b), run.bucket)))
                })
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dash} points="{}"/>"#,
                points.join(" ")
            );
        }
        // The breaker strip.
        let sy = y0 + panel + 4.0;
        let has_breaker = run.buckets.iter().any(|b| b.breaker.is_some());
        if has_breaker {
            for (i, b) in run.buckets.iter().enumerate() {
                let t0 = i as f64 * run.bucket.as_secs_f64();
                let t1 = (t0 + run.bucket.as_secs_f64()).min(total);
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{sy:.1}" width="{:.2}" height="{strip}" fill="{}"/>"#,
                    x(t0),
                    (x(t1) - x(t0)).max(0.0),
                    breaker_fill(b.breaker)
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">breaker</text>"#,
                left - 4.0,
                sy + 10.0
            );
        } else {
            let _ = writeln!(
                s,
                r##"<text x="{left}" y="{:.1}" fill="#777">no breaker</text>"##,
                sy + 10.0
            );
        }
        // The time axis.
        let ay = sy + strip + 14.0;
        let step = if total > 20.0 {
            5.0
        } else if total > 5.0 {
            1.0
        } else {
            0.5
        };
        let mut tick = 0.0;
        while tick <= total + 1e-9 {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{ay:.1}" text-anchor="middle">{tick:.1}s</text>"#,
                x(tick)
            );
            tick += step;
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Failure;

    fn record(offset_ms: u64, latency_ms: u64, served: Served, attempts: u32) -> Record {
        Record {
            offset: Duration::from_millis(offset_ms),
            latency: Duration::from_millis(latency_ms),
            served,
            attempts,
        }
    }

    #[test]
    fn percentiles_and_rates() {
        let timeline = Timeline::new(vec![
            (Phase::Healthy, Duration::from_secs(1)),
            (Phase::Outage, Duration::from_secs(1)),
            (Phase::Recovery, Duration::from_secs(1)),
        ])
        .unwrap();
        let mut records = Vec::new();
        for i in 0..100 {
            let served = match i % 4 {
                0 => Served::Fallback,
                1 => Served::Failed(Failure::Timeout),
                _ => Served::Dependency,
            };
            records.push(record(i * 30, i + 1, served, 1 + (i % 2) as u32));
        }
        let bucket = Duration::from_millis(100);
        let report = RunReport::new(
            "x",
            &timeline,
            Duration::from_millis(90),
            &records,
            bucket,
            &[5; 30],
            &[50, 3, 97],
            &[None; 30],
        );
        assert_eq!(report.requests, 100);
        assert_eq!(report.p50, Duration::from_millis(50));
        assert_eq!(report.p99, Duration::from_millis(99));
        assert_eq!(report.max, Duration::from_millis(100));
        assert_eq!(report.max_over_deadline, Duration::from_millis(10));
        assert_eq!(report.success_rate(), 0.5);
        assert_eq!(report.success_rate_with_fallbacks(), 0.75);
        assert_eq!(report.attempts, 150);
        assert_eq!(report.attempts_during_outage, 3);
        assert_eq!(report.amplification(), 1.5);
        assert_eq!(report.requests_attempted, 100);
        // Five attempts in every bucket: the outage is never detected.
        assert_eq!(report.detect, None);
        let t = table(std::slice::from_ref(&report));
        assert!(t.contains("retry amplification"), "{t}");
        assert!(t.contains("1.50x"), "{t}");
        let chart = svg(&timeline, &[report]);
        assert!(chart.starts_with("<svg") && chart.ends_with("</svg>\n"));
    }

    #[test]
    fn detection_is_when_calls_stop_for_the_rest_of_the_outage() {
        let timeline = Timeline::new(vec![
            (Phase::Outage, Duration::from_secs(1)),
            (Phase::Recovery, Duration::from_secs(1)),
        ])
        .unwrap();
        let bucket = Duration::from_millis(100);
        let mut attempts = vec![0; 20];
        attempts[..3].copy_from_slice(&[5, 5, 4]);
        attempts[6] = 1; // a half-open probe
        let mut records = Vec::new();
        for i in 0..200 {
            // Recovery: failing for 0.3 s, then served.
            let served = if (1000..1300).contains(&(i * 10)) {
                Served::Failed(Failure::Connection)
            } else {
                Served::Dependency
            };
            records.push(record(i * 10, 1, served, 1));
        }
        let report = RunReport::new(
            "x",
            &timeline,
            Duration::from_secs(1),
            &records,
            bucket,
            &attempts,
            &[14, 100],
            &[None; 20],
        );
        assert_eq!(report.detect, Some(Duration::from_millis(300)));
        assert_eq!(report.recover, Some(Duration::from_millis(300)));
    }
}
