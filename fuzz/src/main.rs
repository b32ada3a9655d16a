//! `palisade-fuzz [--seconds N] [--seed S] [target…]`: runs each target (all of
//! them by default) for N seconds (default 3), prints what each did, and on a
//! crash saves the input under `fuzz/regressions/<target>/` and fails.
#![allow(clippy::disallowed_methods)] // a fuzzer's budget is wall-clock time

use std::process::ExitCode;
use std::time::{Duration, Instant};

use palisade_fuzz::{default_regressions_root, fuzz, quiet_panics, save_regression, targets};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("palisade-fuzz: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<ExitCode, String> {
    let mut seconds = 3.0f64;
    let mut seed = 0x5eed_u64;
    let mut names = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let v = args.next().ok_or("--seconds needs a value")?;
                seconds = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| format!("--seconds: not a positive number: {v}"))?;
            }
            "--seed" => {
                let v = args.next().ok_or("--seed needs a value")?;
                seed = v
                    .parse()
                    .map_err(|_| format!("--seed: not an integer: {v}"))?;
            }
            "--list" => {
                for t in targets::ALL {
                    println!("{}", t.name);
                }
                return Ok(ExitCode::SUCCESS);
            }
            name if !name.starts_with('-') => names.push(name.to_owned()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let chosen: Vec<_> = if names.is_empty() {
        targets::ALL.iter().collect()
    } else {
        names
            .iter()
            .map(|n| {
                targets::ALL
                    .iter()
                    .find(|t| t.name == n)
                    .ok_or_else(|| format!("no target named {n} (see --list)"))
            })
            .collect::<Result<_, _>>()?
    };
    let time = Duration::from_secs_f64(seconds);
    let root = default_regressions_root();
    println!(
        "fuzzing {} targets, {seconds} s each, seed {seed}",
        chosen.len()
    );
    println!(
        "  {:<14} {:>7} {:>11} {:>10} {:>6} {:>8}",
        "target", "time", "inputs", "per sec", "kept", "classes"
    );
    let started = Instant::now();
    let previous = quiet_panics();
    let mut failed = false;
    for target in chosen {
        match fuzz(target, time, seed) {
            Ok(stats) => {
                let secs = stats.elapsed.as_secs_f64();
                println!(
                    "  {:<14} {:>6.1}s {:>11} {:>10.0} {:>6} {:>8}",
                    target.name,
                    secs,
                    stats.inputs,
                    stats.inputs as f64 / secs,
                    stats.kept,
                    stats.classes
                );
            }
            Err(crash) => {
                failed = true;
                let saved = save_regression(&root, target.name, &crash.input)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|e| format!("(not saved: {e})"));
                println!(
                    "  {:<14} CRASH after {} inputs: {}\n    input {:?}\n    saved as {saved}; \
                     `cargo test -p palisade-fuzz --test regressions` replays it",
                    target.name,
                    crash.inputs,
                    crash.message,
                    String::from_utf8_lossy(&crash.input),
                );
            }
        }
    }
    std::panic::set_hook(previous);
    println!("  total          {:>6.1}s", started.elapsed().as_secs_f64());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
