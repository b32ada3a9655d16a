//! The project's own commands, in plain Rust so they run the same everywhere.
//!
//! - `cargo xtask test`: the workspace's tests, after installing what they need
//!   (`redis-server`, for the Redis rate limit's tests against a real server) when
//!   it is missing; the README's test command and the `ci` tests step.
//! - `cargo xtask ci`: everything CI checks, in order, stopping at the first failure.
//!   The benchmarks' smoke run (`palisade-bench --check`) is one of the workspace's
//!   tests, so it shares their build.
//! - `cargo xtask lint-fixtures`: each rule of `docs/clippy-context.toml` fires on
//!   its misuse in the fixture crate and nowhere else (one of the `ci` steps).
//! - `cargo xtask fuzz [--seconds N] [target…]`: each fuzz target (`fuzz/`, stable
//!   Rust) for N seconds (default 3); a crash is saved under `fuzz/regressions/`,
//!   which the `regressions` test replays (one of the `ci` steps, at 2 s a target).
//! - `cargo xtask features`: clippy, warnings as errors, on the facade with no
//!   feature, each feature alone and the default set, and on palisade-health and
//!   palisade-endpoint with each of their features alone (one of the `ci` steps).
//! - `cargo xtask msrv`, `cargo xtask package`: the declared minimum Rust version
//!   holds, and every publishable crate packages (both `ci` steps);
//!   `cargo xtask semver [--baseline REV]`: no accidental breaking change (its own
//!   command: see `release`).
//! - `cargo xtask bench [--quick]`: the side-by-side benchmarks.
//! - `cargo xtask demo`: the defence against a failing dependency, live.
//! - `cargo xtask overload`: goodput of an overloaded server, unprotected, behind
//!   tower's fixed limit and behind palisade's admission layer (not in `ci`).
#![allow(clippy::disallowed_methods)] // a build tool may read the wall clock

mod lint_fixtures;
mod overload;
mod release;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = workspace_root();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(&root, &args[1..]),
        Some("test") => no_arguments("test", &args[1..]).and_then(|()| test(&root)),
        Some("lint-fixtures") => no_arguments("lint-fixtures", &args[1..])
            .and_then(|()| lint_fixtures::lint_fixtures(&root)),
        Some("bench") => bench(&root, &args[1..]),
        Some("fuzz") => fuzz(&root, &args[1..]),
        Some("demo") => demo(&root, &args[1..]),
        Some("overload") => overload::overload(&root, &args[1..]),
        Some("loom") => loom(&root),
        Some("msrv") => no_arguments("msrv", &args[1..]).and_then(|()| release::msrv(&root)),
        Some("semver") => release::semver(&root, &args[1..]),
        Some("package") => {
            no_arguments("package", &args[1..]).and_then(|()| release::package(&root))
        }
        Some("features") => {
            no_arguments("features", &args[1..]).and_then(|()| run_steps(feature_steps(&root)))
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 ci              formatting, clippy, lint fixtures, tests (with a benchmark smoke run), docs, loom models, fuzzing, fuzz builds\n  \
                 test            the workspace's tests, installing redis-server first when it is missing\n  \
                 lint-fixtures   each rule of docs/clippy-context.toml fires on its misuse and nowhere else\n  \
                 fuzz [--seconds N] [--seed S] [target...]\n                  each fuzz target for N seconds (default 3), on stable Rust\n  \
                 bench [--quick] [--callgrind] [filter]\n                  palisade next to its peers, side by side in one run\n  \
                 demo            the defence holding against a failing dependency\n  \
                 features        clippy on each feature of the facade, palisade-health and palisade-endpoint alone\n  \
                 overload        goodput under 1x, 2x, 4x capacity: unprotected, tower's fixed limit, palisade's admission\n  \
                 msrv            the declared rust-version holds for the publishable crates\n  \
                 package         cargo package of every publishable crate, verified\n  \
                 semver [--baseline REV]\n                  cargo-semver-checks against .semver-baseline (installs it if missing)\n  \
                 loom            only the loom models"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

struct Step {
    name: String,
    command: Command,
}

impl Step {
    fn new(name: &str, root: &Path, args: &[&str]) -> Step {
        let mut command = cargo();
        command.current_dir(root).args(args);
        Step {
            name: name.to_owned(),
            command,
        }
    }

    /// This program again, as `cargo xtask <args>`: a step written in Rust here.
    fn xtask(name: &str, root: &Path, args: &[&str]) -> Result<Step, String> {
        let exe = env::current_exe().map_err(|e| format!("{name}: no path to xtask: {e}"))?;
        let mut command = Command::new(exe);
        command.current_dir(root).args(args);
        Ok(Step {
            name: name.to_owned(),
            command,
        })
    }

    fn env(mut self, key: &str, value: &str) -> Step {
        self.command.env(key, value);
        self
    }
}

fn run_steps(steps: Vec<Step>) -> Result<(), String> {
    let started = Instant::now();
    let mut timings = Vec::new();
    for mut step in steps {
        println!("\n==> {}", step.name);
        let t = Instant::now();
        let status = step
            .command
            .status()
            .map_err(|e| format!("{}: could not start: {e}", step.name))?;
        let secs = t.elapsed().as_secs_f64();
        timings.push((step.name.clone(), secs, status.success()));
        if !status.success() {
            print_timings(&timings, started.elapsed().as_secs_f64());
            return Err(format!("{} failed ({status})", step.name));
        }
    }
    print_timings(&timings, started.elapsed().as_secs_f64());
    Ok(())
}

fn print_timings(timings: &[(String, f64, bool)], total: f64) {
    println!("\n==> summary");
    for (name, secs, ok) in timings {
        println!(
            "  {:<7} {:>7.1}s  {name}",
            if *ok { "ok" } else { "FAILED" },
            secs
        );
    }
    println!("  total   {total:>7.1}s");
}

/// The cargo command of the workspace's tests (`cargo xtask test` runs it).
const TEST_ARGS: &[&str] = &["test", "--workspace", "--all-features"];

/// What the tests need besides the Rust toolchain: `redis-server` (the Redis
/// rate limit's tests start real servers on loopback, and fail without one).
/// Installed from the Debian package when it is not on `PATH`.
fn ensure_test_tools() -> Result<(), String> {
    if on_path("redis-server") {
        return Ok(());
    }
    println!("==> redis-server is not installed: installing it (apt-get install redis-server)");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let sudo: &[&str] = if root { &[] } else { &["sudo"] };
    for args in [
        &["apt-get", "update"][..],
        &["apt-get", "install", "-y", "redis-server"][..],
    ] {
        let mut full: Vec<&str> = sudo.to_vec();
        full.extend_from_slice(args);
        let status = Command::new(full[0])
            .args(&full[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("cannot run `{}`: {e}", full.join(" ")))?;
        if !status.success() {
            return Err(format!(
                "`{}` failed ({status}): the tests need redis-server; install it and run again",
                full.join(" ")
            ));
        }
    }
    if on_path("redis-server") {
        Ok(())
    } else {
        Err("redis-server is still not on PATH after installing it".to_owned())
    }
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|paths| env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// `cargo xtask test`: what the tests need, then the tests.
fn test(root: &Path) -> Result<(), String> {
    ensure_test_tools()?;
    run_steps(vec![Step::new("tests", root, TEST_ARGS)])
}

fn no_arguments(command: &str, args: &[String]) -> Result<(), String> {
    match args.first() {
        Some(a) => Err(format!("{command} takes no arguments, got `{a}`")),
        None => Ok(()),
    }
}

fn ci(root: &Path, args: &[String]) -> Result<(), String> {
    no_arguments("ci", args)?;
    let mut steps = vec![
        Step::new("rustfmt", root, &["fmt", "--all", "--", "--check"]),
        Step::new(
            "clippy",
            root,
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
        ),
        Step::xtask("lint fixtures", root, &["lint-fixtures"])?,
        Step::xtask(
            "tests (installing redis-server if missing)",
            root,
            &["test"],
        )?,
        Step::new(
            "docs",
            root,
            &["doc", "--workspace", "--no-deps", "--all-features"],
        )
        .env("RUSTDOCFLAGS", "-D warnings"),
    ];
    steps.push(Step::xtask("feature combinations", root, &["features"])?);
    steps.push(Step::xtask("minimum Rust version", root, &["msrv"])?);
    steps.extend(loom_steps(root));
    steps.push(fuzz_step(root, &[CI_FUZZ_SECONDS]));
    for fuzz in fuzz_dirs(root) {
        let manifest = fuzz.join("Cargo.toml");
        let manifest = manifest.to_string_lossy().into_owned();
        steps.push(
            Step::new(
                &format!("fuzz targets build ({})", fuzz.display()),
                root,
                &["build", "--manifest-path", &manifest, "--bins"],
            )
            .env("RUSTFLAGS", "--cfg fuzzing"),
        );
    }
    steps.push(Step::xtask(
        "cargo package (publishable crates)",
        root,
        &["package"],
    )?);
    run_steps(steps)
}

/// The features a crate's manifest declares, in its order.
fn features_of(manifest: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    let mut features = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[features]";
            continue;
        }
        if !inside || line.starts_with('#') {
            continue;
        }
        if let Some((name, _)) = line.split_once('=') {
            let name = name.trim();
            if !name.is_empty() && name != "default" {
                features.push(name.to_owned());
            }
        }
    }
    Ok(features)
}

/// One clippy run per feature set: the facade with none, with each feature
/// alone and with its default set; palisade-health and palisade-endpoint with
/// each feature alone. A combination that warns (dead code behind a feature, an
/// unused import) fails.
fn feature_steps(root: &Path) -> Vec<Step> {
    let mut steps = Vec::new();
    for (package, defaults) in [
        ("palisade", true),
        ("palisade-health", false),
        ("palisade-endpoint", false),
    ] {
        let manifest = root.join("crates").join(package).join("Cargo.toml");
        let features = match features_of(&manifest) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("xtask: {e}");
                Vec::new()
            }
        };
        let mut sets: Vec<Option<String>> = vec![Some(String::new())];
        sets.extend(features.into_iter().map(Some));
        if defaults {
            sets.push(None);
        }
        for set in sets {
            let mut args = vec!["clippy", "--quiet", "--package", package, "--lib"];
            let label = match &set {
                Some(f) if f.is_empty() => "no feature".to_owned(),
                Some(f) => f.clone(),
                None => "default features".to_owned(),
            };
            if let Some(f) = &set {
                args.push("--no-default-features");
                if !f.is_empty() {
                    args.extend(["--features", f.as_str()]);
                }
            }
            args.extend(["--", "-D", "warnings"]);
            steps.push(Step::new(&format!("{package}: {label}"), root, &args));
        }
    }
    steps
}

/// Crates with loom models: those with a `tests/loom.rs`.
fn loom_crates(root: &Path) -> Vec<String> {
    let mut crates = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.join("crates")) {
        for entry in entries.flatten() {
            if entry.path().join("tests/loom.rs").is_file() {
                crates.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    crates.sort();
    crates
}

/// One step for every crate's loom models: a single cargo invocation, so the
/// dependencies are resolved and built once for all of them.
fn loom_steps(root: &Path) -> Vec<Step> {
    let crates = loom_crates(root);
    if crates.is_empty() {
        return Vec::new();
    }
    let target = root.join("target/loom");
    let target = target.to_string_lossy().into_owned();
    let mut args = vec![
        "test",
        "--release",
        "--test",
        "loom",
        "--target-dir",
        &target,
    ];
    for krate in &crates {
        args.push("--package");
        args.push(krate);
    }
    vec![
        Step::new(&format!("loom models ({})", crates.join(", ")), root, &args)
            .env("RUSTFLAGS", "--cfg loom")
            .env("LOOM_MAX_PREEMPTIONS", "2"),
    ]
}

fn loom(root: &Path) -> Result<(), String> {
    let steps = loom_steps(root);
    if steps.is_empty() {
        println!("no crate has loom models yet");
    }
    run_steps(steps)
}

fn fuzz_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.join("crates")) {
        for entry in entries.flatten() {
            let fuzz = entry.path().join("fuzz");
            if fuzz.join("Cargo.toml").is_file() {
                dirs.push(fuzz);
            }
        }
    }
    dirs.sort();
    dirs
}

/// Seconds each fuzz target runs in `ci`: nine targets, under 20 s in all.
const CI_FUZZ_SECONDS: &str = "2";

/// The stable fuzzer (`fuzz/`), built in the tests' profile so that it shares
/// their build, with its overflow checks on.
fn fuzz_step(root: &Path, seconds: &[&str]) -> Step {
    let mut step = Step::new(
        "fuzzing (stable, bounded time)",
        root,
        &["run", "--quiet", "--package", "palisade-fuzz", "--"],
    );
    if let [seconds] = seconds {
        step.command.args(["--seconds", seconds]);
    }
    step
}

fn fuzz(root: &Path, args: &[String]) -> Result<(), String> {
    let mut step = fuzz_step(root, &[]);
    step.command.args(args);
    run_steps(vec![step])
}

fn has_bench(root: &Path) -> bool {
    root.join("bench/Cargo.toml").is_file()
}

fn bench(root: &Path, args: &[String]) -> Result<(), String> {
    if !has_bench(root) {
        return Err("the benchmark crate (bench/) does not exist yet".into());
    }
    let mut step = Step::new(
        "benchmarks",
        root,
        &["run", "--release", "--package", "palisade-bench", "--"],
    );
    step.command.args(args);
    run_steps(vec![step])
}

fn demo(root: &Path, args: &[String]) -> Result<(), String> {
    if !root.join("demo/Cargo.toml").is_file() {
        println!(
            "The demo (a failing HTTP dependency, a client with and without palisade) is not \
             built yet. Until it lands, `cargo test --workspace --all-features` runs every \
             strategy's tests in virtual time."
        );
        return Ok(());
    }
    let mut step = Step::new(
        "demo",
        root,
        &["run", "--release", "--package", "palisade-demo", "--"],
    );
    step.command.args(args);
    run_steps(vec![step])
}
