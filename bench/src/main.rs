//! Palisade next to the crates it would replace, measured side by side in one run.
//!
//! ```text
//! cargo xtask bench                  # every area: table, report.md, ratios.svg, callgrind counts
//! cargo xtask bench --quick          # fewer, shorter rounds; no callgrind
//! cargo xtask bench --quick breaker  # one area (or any part of a case id)
//! cargo xtask bench --callgrind      # instruction counts of the key paths only
//! cargo run -p palisade-bench -- --check   # CI: every case runs and returns what it should
//! ```
//!
//! The method (batches, interleaved rounds, paired ratios) is described in the
//! `harness` module and in `docs/performance.md`.
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)] // a benchmark reads the wall clock by design

mod callgrind;
mod cases;
mod harness;
mod report;
mod sysinfo;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use harness::{Case, Settings};

const USAGE: &str = "\
usage: palisade-bench [options] [filter...]

Runs palisade and its peers side by side and writes target/palisade-bench/report.md
and target/palisade-bench/ratios.svg.

options:
  --quick            fewer, shorter rounds (under a minute of measuring); no callgrind
  --check            run every case a few times and check its results; no timing (CI)
  --list             list the case ids
  --callgrind        only count instructions per operation of the key paths (valgrind)
  --no-callgrind     skip the instruction counts of a full run
  --callgrind-iters N  operations per counted batch (default 20000)
  -h, --help         this text

filter: an area (floors, clock, breaker, retry, ratelimit, bulkhead, context,
timeout, pipeline, window, endpoint) or any part of a case id (see --list). Floors are always measured.";

#[derive(Debug, Default)]
struct Args {
    quick: bool,
    check: bool,
    list: bool,
    callgrind_only: bool,
    no_callgrind: bool,
    callgrind_iters: u64,
    child: Option<(String, u64)>,
    filters: Vec<String>,
}

fn parse(raw: Vec<String>) -> Result<Args, String> {
    let mut args = Args {
        callgrind_iters: 20_000,
        ..Args::default()
    };
    let mut it = raw.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--check" => args.check = true,
            "--list" => args.list = true,
            "--callgrind" => args.callgrind_only = true,
            "--no-callgrind" => args.no_callgrind = true,
            "--callgrind-iters" => {
                let n = it.next().ok_or("--callgrind-iters needs a number")?;
                args.callgrind_iters = n
                    .parse()
                    .ok()
                    .filter(|n| *n >= 10)
                    .ok_or_else(|| format!("--callgrind-iters: `{n}` is not a number >= 10"))?;
            }
            callgrind::CHILD_FLAG => {
                let id = it.next().ok_or("missing case id")?;
                let n = it.next().ok_or("missing iteration count")?;
                let n = n
                    .parse()
                    .map_err(|_| format!("bad iteration count `{n}`"))?;
                args.child = Some((id, n));
            }
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`")),
            _ => args.filters.push(squash(&a)),
        }
    }
    Ok(args)
}

/// Whether `case` passes the filters (floors always do).
fn selected(args: &Args, case: &Case) -> bool {
    case.role == harness::Role::Floor
        || args.filters.is_empty()
        || args
            .filters
            .iter()
            .any(|f| squash(&case.id()).contains(f.as_str()))
}

/// Lower-case letters and digits only, so that `breaker/closed-state-call`,
/// `closed state call` and `closedstatecall` all match the same cases.
fn squash(text: &str) -> String {
    text.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Whether an area may hold selected cases.
fn area_selected(args: &Args, area: &str) -> bool {
    args.filters.is_empty()
        || args
            .filters
            .iter()
            .any(|f| f == area || !cases::AREAS.contains(&f.as_str()))
}

fn main() -> ExitCode {
    let code = run();
    // The redis area's server, if it started one.
    cases::redis::stop_server();
    code
}

fn run() -> ExitCode {
    let args = match parse(std::env::args().skip(1).collect()) {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("palisade-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some((id, n)) = &args.child {
        return callgrind::child(id, *n);
    }
    let mut cases: Vec<Case> = cases::cases(|area| area_selected(&args, area))
        .into_iter()
        .filter(|c| selected(&args, c))
        .collect();
    let gaps: Vec<cases::Gap> = cases::gaps(|area| area_selected(&args, area))
        .into_iter()
        .filter(|g| {
            args.filters.is_empty()
                || cases
                    .iter()
                    .any(|c| c.area == g.area && c.workload == g.workload)
        })
        .collect();
    if cases.iter().all(|c| c.role == harness::Role::Floor) && !args.filters.is_empty() {
        eprintln!(
            "palisade-bench: no case matches {:?} (see --list)",
            args.filters
        );
        return ExitCode::from(2);
    }
    if args.list {
        for c in &cases {
            println!("{}{}", c.id(), if c.key { "  (key path)" } else { "" });
        }
        return ExitCode::SUCCESS;
    }
    if args.check {
        return check(&mut cases, &gaps);
    }
    if args.callgrind_only {
        let counts = match callgrind::count_all(&cases, args.callgrind_iters) {
            Ok(counts) => counts,
            Err(e) => {
                eprintln!("palisade-bench: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("{}", callgrind::table(&counts));
        return ExitCode::SUCCESS;
    }
    measure(&args, cases, &gaps)
}

/// `--check`: every case answers what it should, before and after a few runs, and
/// the report renders. No timing is asserted.
fn check(cases: &mut [Case], gaps: &[cases::Gap]) -> ExitCode {
    let started = Instant::now();
    let mut failed = 0;
    for case in cases.iter_mut() {
        let before = case.bench.check();
        let elapsed = case.bench.run(50);
        let after = case.bench.check();
        match before.and(after) {
            Ok(()) => println!("ok      {} ({} ns for 50)", case.id(), elapsed.as_nanos()),
            Err(e) => {
                failed += 1;
                println!("FAILED  {}: {e}", case.id());
            }
        }
    }
    // A tiny measurement, to exercise the statistics and the report.
    let settings = Settings {
        rounds: 3,
        batch: Duration::from_micros(20),
    };
    let samples = harness::measure(cases, settings, |_| {});
    let rows = report::rows(cases, &samples, gaps);
    for row in &rows {
        if let Some(s) = &row.stats {
            let sane = s.median.is_finite() && s.median > 0.0 && s.rounds == settings.rounds;
            if !sane {
                failed += 1;
                println!("FAILED  {}/{}: median {} ns", row.area, row.label, s.median);
            }
        }
    }
    let info = sysinfo::run_info("cargo run -p palisade-bench -- --check", "check".into());
    let md = report::markdown(&rows, &info, &[], "");
    let svg = report::svg(&rows, &info);
    if !md.contains("| --- |") || !svg.ends_with("</svg>\n") {
        failed += 1;
        println!("FAILED  the report did not render");
    }
    println!(
        "\n{} cases, {} empty cells, checked in {:.1} s",
        cases.len(),
        gaps.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "{} passed, {} failed",
        cases.len() - failed.min(cases.len()),
        failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| sysinfo::workspace_root().join("target"));
    target.join("palisade-bench")
}

fn measure(args: &Args, mut cases: Vec<Case>, gaps: &[cases::Gap]) -> ExitCode {
    // Every case must work before it is timed.
    for case in cases.iter_mut() {
        if let Err(e) = case.bench.check() {
            eprintln!("palisade-bench: {} is broken: {e}", case.id());
            return ExitCode::FAILURE;
        }
    }
    let settings = if args.quick {
        Settings::QUICK
    } else {
        Settings::FULL
    };
    let mut command = String::from("cargo xtask bench");
    if args.quick {
        command.push_str(" --quick");
    }
    for f in &args.filters {
        command.push(' ');
        command.push_str(f);
    }
    eprintln!(
        "measuring {} cases: {} rounds of one {:?} batch each, interleaved",
        cases.len(),
        settings.rounds,
        settings.batch
    );
    let started = Instant::now();
    let samples = harness::measure(&mut cases, settings, |round| {
        if (round + 1) % 10 == 0 {
            eprint!(" {}", round + 1);
        }
    });
    eprintln!(" rounds ({:.1} s)", started.elapsed().as_secs_f64());
    let rows = report::rows(&cases, &samples, gaps);
    println!("{}", report::console(&rows));
    let (samples, run_for) = if args.quick {
        (500, Duration::from_millis(300))
    } else {
        (5000, Duration::from_secs(2))
    };
    if let Some(latency) = cases::redis::latency_report(samples, 64, run_for) {
        println!("redis: latency per round trip ({samples} each, back to back)\n\n{latency}");
    }

    let (counts, callgrind_note) = if args.quick || args.no_callgrind {
        (
            Vec::new(),
            "Not counted in this run (`--quick` or `--no-callgrind`); run \
             `cargo xtask bench --callgrind`."
                .to_owned(),
        )
    } else {
        match callgrind::count_all(&cases, args.callgrind_iters) {
            Ok(counts) => {
                println!("{}", callgrind::table(&counts));
                (counts, String::new())
            }
            Err(e) => {
                eprintln!("palisade-bench: instruction counts skipped: {e}");
                (Vec::new(), format!("Not counted: {e}."))
            }
        }
    };

    let settings_text = format!(
        "{} rounds, batches of about {} µs per case",
        settings.rounds,
        settings.batch.as_micros()
    );
    let info = sysinfo::run_info(&command, settings_text);
    let dir = out_dir();
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| {
            std::fs::write(
                dir.join("report.md"),
                report::markdown(&rows, &info, &counts, &callgrind_note),
            )
        })
        .and_then(|()| std::fs::write(dir.join("ratios.svg"), report::svg(&rows, &info)));
    match written {
        Ok(()) => {
            println!(
                "wrote {} and {}",
                dir.join("report.md").display(),
                dir.join("ratios.svg").display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("palisade-bench: could not write {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse(list.iter().map(|s| s.to_string()).collect())
    }

    /// The smoke run CI relies on: every case compiles, runs and answers what it
    /// should, and the report renders. It runs as part of the workspace's tests, so
    /// it shares their build.
    #[test]
    fn every_case_checks_out() {
        // The redis area's server stops with the test, passed or failed.
        struct StopRedis;
        impl Drop for StopRedis {
            fn drop(&mut self) {
                cases::redis::stop_server();
            }
        }
        let _stop = StopRedis;
        let mut cases = cases::cases(|_| true);
        let gaps = cases::gaps(|_| true);
        assert!(cases.len() > 20, "only {} cases", cases.len());
        assert_eq!(check(&mut cases, &gaps), ExitCode::SUCCESS);
    }

    #[test]
    fn arguments_parse() {
        let a = args(&["--quick", "breaker"]).expect("valid");
        assert!(a.quick && !a.check);
        assert_eq!(a.filters, vec!["breaker"]);
        assert!(args(&["--bogus"]).is_err());
        assert!(args(&["--callgrind-iters", "3"]).is_err());
        assert_eq!(args(&["--help"]).unwrap_err(), "");
    }

    #[test]
    fn filters_select_areas_and_ids() {
        let a = args(&["breaker"]).expect("valid");
        assert!(area_selected(&a, "breaker"));
        assert!(!area_selected(&a, "retry"));
        let a = args(&["tower-timeout"]).expect("valid");
        assert!(area_selected(&a, "retry"));
        assert_eq!(
            squash("breaker/Closed-state call"),
            "breakerclosedstatecall"
        );
    }
}
