//! `cargo xtask demo`: the defence holding against a failing dependency, next to
//! the same service unprotected.
//!
//! ```text
//! palisade-demo [--compress FACTOR] [--rate N] [--svg PATH]
//! ```
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use palisade_demo::report;
use palisade_demo::scenario::{LiveStatus, ScenarioConfig, run_scenario};

struct Args {
    compress: f64,
    rate: Option<u32>,
    svg: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            demo.parent().unwrap_or(&demo).join("target")
        });
    let mut args = Args {
        compress: 1.0,
        rate: None,
        svg: target.join("palisade-demo").join("timeline.svg"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--compress" => {
                args.compress = value("--compress")?
                    .parse()
                    .map_err(|e| format!("--compress: {e}"))?
            }
            "--rate" => {
                args.rate = Some(
                    value("--rate")?
                        .parse()
                        .map_err(|e| format!("--rate: {e}"))?,
                )
            }
            "--svg" => args.svg = PathBuf::from(value("--svg")?),
            "-h" | "--help" => {
                return Err(
                    "usage: palisade-demo [--compress FACTOR (0.01..=10)] [--rate N] [--svg PATH]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?}; try --help")),
        }
    }
    Ok(args)
}

fn live_line(s: &LiveStatus) -> String {
    let mut line = format!(
        "{:>5.1}s/{:.0}s  {:<17}",
        s.elapsed.as_secs_f64(),
        s.total.as_secs_f64(),
        s.phase.name()
    );
    for (name, p) in &s.runs {
        let done = p.dependency + p.fallback + p.failed;
        let ok = if done == 0 {
            100.0
        } else {
            100.0 * (p.dependency + p.fallback) as f64 / done as f64
        };
        line.push_str(&format!(" | {name}: {ok:5.1}% ok, {} calls", p.attempts));
        if p.fallback > 0 {
            line.push_str(&format!(", {} fallbacks", p.fallback));
        }
        if let Some(b) = p.breaker {
            line.push_str(&format!(", breaker {b}"));
        }
    }
    if let Some(h) = s.health {
        line.push_str(&format!(" | health {h}"));
    }
    line
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut config = match ScenarioConfig::compressed(args.compress) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(rate) = args.rate {
        config.rate = rate;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "A scripted HTTP dependency on 127.0.0.1 goes healthy -> latency spikes -> 503 bursts -> \
         connection resets -> outage -> recovery over {:.0} s.\n\
         The same load ({} requests/s, {} ms deadline each) runs through each service at once, \
         each against its own copy of the dependency.\n",
        config.timeline.total().as_secs_f64(),
        config.rate,
        config.deadline.as_millis()
    );
    let tty = std::io::stderr().is_terminal();
    let mut last_printed = Duration::ZERO;
    let result = runtime.block_on(run_scenario(&config, |s| {
        let line = live_line(s);
        if tty {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else if s.elapsed >= last_printed + Duration::from_secs(2) || s.elapsed >= s.total {
            last_printed = s.elapsed;
            eprintln!("{line}");
        }
    }));
    if tty {
        eprintln!();
    }
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("\n{}", report::table(&result.reports));
    if let Some(report) = &result.sample_report {
        println!(
            "the first request the protected service's retries gave up on (its fallback answered), as its error reports it:\n{report}\n"
        );
    }
    if std::env::var_os("PALISADE_DEMO_DEBUG").is_some() {
        for r in &result.reports {
            println!("{}: calls per phase {:?}", r.name, r.attempts_per_phase);
        }
    }
    let mut changes: Vec<String> = Vec::new();
    let mut last = None;
    for &(at, status) in &result.health {
        if last != Some(status) {
            changes.push(format!("{status} at {:.1}s", at.as_secs_f64()));
            last = Some(status);
        }
    }
    println!(
        "health of the protected service (GET /health, computed by palisade::health from its pipeline, a probe and the runtime): {}",
        changes.join(" -> ")
    );
    let svg = report::svg(&result.timeline, &result.reports);
    if let Some(dir) = args.svg.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&args.svg, svg) {
        Ok(()) => println!("timeline chart: {}", args.svg.display()),
        Err(e) => eprintln!("could not write {}: {e}", args.svg.display()),
    }
    ExitCode::SUCCESS
}
