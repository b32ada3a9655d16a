//! Fuzzing on stable Rust, for a bounded time.
//!
//! Each [`Target`] is a function of bytes that panics when a property fails:
//! more than "does not panic" where that is cheap (a parse, format, parse round
//! trip; a decoded value within its documented bound; a window against a naive
//! model). [`fuzz`] feeds it inputs for a set time: its seed inputs first, then
//! mutations of the inputs kept so far (bit flips, random bytes, insertions and
//! deletions, tokens from the target's dictionary, splices of two inputs). An
//! input whose result falls in a class of behaviour not seen before (the
//! target's return value: which error, which form) is kept for further
//! mutation, a coarse stand-in for a coverage-guided fuzzer's feedback.
//!
//! Runs are reproducible: the inputs depend only on the seed of the random
//! generator, and how many are tried only on the time allowed.
//!
//! A panic is a crash: [`fuzz`] returns the input, and the runner
//! (`cargo xtask fuzz`) saves it under `fuzz/regressions/<target>/`, where the
//! `regressions` test replays every saved input of every target, so a crash
//! found once stays a failing test until it is fixed.
// A fuzzer's budget is wall-clock time: it reads the real clock.
#![allow(clippy::disallowed_methods)]

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub mod targets;

/// One fuzz target.
#[derive(Clone, Copy)]
pub struct Target {
    /// Its name: the directory of its regressions.
    pub name: &'static str,
    /// Runs one input; panics when a property fails. Returns the class of
    /// behaviour the input reached (which result, which error).
    pub run: fn(&[u8]) -> u64,
    /// Inputs tried first, and the first the mutations start from.
    pub seeds: &'static [&'static [u8]],
    /// Tokens the mutations insert: the format's keywords and separators.
    pub dictionary: &'static [&'static [u8]],
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("name", &self.name).finish()
    }
}

/// What a run of [`fuzz`] did.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Inputs tried.
    pub inputs: u64,
    /// Inputs kept for mutation (seeds and new classes of behaviour).
    pub kept: usize,
    /// Classes of behaviour reached.
    pub classes: usize,
    /// How long it ran.
    pub elapsed: Duration,
}

/// An input that made a target panic.
#[derive(Clone, Debug)]
pub struct Crash {
    /// The input.
    pub input: Vec<u8>,
    /// The panic's message and location.
    pub message: String,
    /// Inputs tried up to and including it.
    pub inputs: u64,
}

/// The most inputs kept for mutation.
const MAX_KEPT: usize = 4096;
/// The longest input made by mutation.
const MAX_LEN: usize = 4096;

/// The message of the last panic on this process, recorded by the quiet hook.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Runs `input` through `target`, catching a panic: its message and location.
pub fn run_one(target: &Target, input: &[u8]) -> Result<u64, String> {
    let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    result.map_err(|payload| {
        let recorded = LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).take();
        recorded.unwrap_or_else(|| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic without a message".to_owned())
        })
    })
}

/// Replaces the panic hook with one that records the message and location
/// instead of printing them: a fuzzer's expected panics would flood the output.
/// Returns the hook that was installed, to put back with
/// [`std::panic::set_hook`].
#[allow(clippy::type_complexity)]
pub fn quiet_panics() -> Box<dyn Fn(&panic::PanicHookInfo<'_>) + Sync + Send + 'static> {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| {
                info.payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
            })
            .unwrap_or_default();
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(format!("{message}{location}"));
    }));
    previous
}

/// Fuzzes `target` for `time`, with inputs drawn from `seed`; stops at the first
/// crash. Panics are caught whatever the hook; install [`quiet_panics`] first
/// to keep them off the output.
pub fn fuzz(target: &Target, time: Duration, seed: u64) -> Result<Stats, Crash> {
    let started = Instant::now();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut classes = std::collections::HashSet::new();
    let mut inputs = 0u64;
    let mut try_input = |input: Vec<u8>, kept: &mut Vec<Vec<u8>>, inputs: &mut u64| {
        *inputs += 1;
        match run_one(target, &input) {
            Ok(class) => {
                if classes.insert(class) && kept.len() < MAX_KEPT {
                    kept.push(input);
                }
                Ok(())
            }
            Err(message) => Err(Crash {
                input,
                message,
                inputs: *inputs,
            }),
        }
    };
    for seed in target.seeds {
        try_input(seed.to_vec(), &mut kept, &mut inputs)?;
        kept.push(seed.to_vec());
    }
    try_input(Vec::new(), &mut kept, &mut inputs)?;
    loop {
        // The clock is read once per batch: it costs more than a parse.
        for _ in 0..64 {
            let input = mutate(&mut rng, &kept, target.dictionary);
            try_input(input, &mut kept, &mut inputs)?;
        }
        if started.elapsed() >= time {
            break;
        }
    }
    Ok(Stats {
        inputs,
        kept: kept.len(),
        classes: classes.len(),
        elapsed: started.elapsed(),
    })
}

/// A new input: a kept one (or random bytes), changed by one to eight mutations.
fn mutate(rng: &mut SmallRng, kept: &[Vec<u8>], dictionary: &[&[u8]]) -> Vec<u8> {
    let mut input = if kept.is_empty() || rng.random_ratio(1, 32) {
        let len = rng.random_range(0..64);
        (0..len).map(|_| rng.random()).collect()
    } else {
        kept[rng.random_range(0..kept.len())].clone()
    };
    let rounds = 1 << rng.random_range(0..4);
    for _ in 0..rounds {
        let len = input.len();
        match rng.random_range(0..10) {
            // Flip one bit.
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                input[i] ^= 1 << rng.random_range(0..8);
            }
            // Replace a byte with a random one, or an interesting one.
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                const INTERESTING: &[u8] = b"\0\t\n\r ,-.09:;=AFHMSZafmnuz\x7f\x80\xff";
                input[i] = if rng.random() {
                    rng.random()
                } else {
                    INTERESTING[rng.random_range(0..INTERESTING.len())]
                };
            }
            // Insert a random byte.
            2 => {
                let i = rng.random_range(0..=len);
                input.insert(i, rng.random());
            }
            // Delete a range.
            3 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(8));
                input.drain(i..i + n);
            }
            // Insert a dictionary token.
            4 | 5 if !dictionary.is_empty() => {
                let token = dictionary[rng.random_range(0..dictionary.len())];
                let i = rng.random_range(0..=len);
                input.splice(i..i, token.iter().copied());
            }
            // Overwrite with a dictionary token.
            6 if !dictionary.is_empty() && len > 0 => {
                let token = dictionary[rng.random_range(0..dictionary.len())];
                let i = rng.random_range(0..len);
                let end = (i + token.len()).min(len);
                input.splice(i..end, token.iter().copied());
            }
            // Duplicate a range in place.
            7 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(16));
                let copy = input[i..i + n].to_vec();
                input.splice(i..i, copy);
            }
            // Splice with another kept input.
            8 if !kept.is_empty() => {
                let other = &kept[rng.random_range(0..kept.len())];
                let cut = rng.random_range(0..=len);
                let from = rng.random_range(0..=other.len());
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            // Write a number in ASCII: large, small, at the edges of integer types.
            _ => {
                let n: u64 = match rng.random_range(0..4) {
                    0 => rng.random_range(0..100),
                    1 => rng.random(),
                    2 => u64::MAX - rng.random_range(0..3),
                    _ => 10u64.pow(rng.random_range(0..20)) - rng.random_range(0..2),
                };
                let digits = n.to_string().into_bytes();
                let i = rng.random_range(0..=len);
                input.splice(i..i, digits);
            }
        }
        input.truncate(MAX_LEN);
    }
    input
}

/// The directory of `target`'s saved crashes, under `root` (`fuzz/regressions`).
pub fn regression_dir(root: &Path, target: &str) -> PathBuf {
    root.join(target)
}

/// Saves `input` as a regression of `target` under `root`, named by a hash of
/// its bytes; returns the file's path.
pub fn save_regression(root: &Path, target: &str, input: &[u8]) -> std::io::Result<PathBuf> {
    let dir = regression_dir(root, target);
    std::fs::create_dir_all(&dir)?;
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in input {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let path = dir.join(format!("crash-{hash:016x}"));
    std::fs::write(&path, input)?;
    Ok(path)
}

/// Every saved regression of `target` under `root`, sorted by name.
pub fn regressions(root: &Path, target: &str) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let dir = regression_dir(root, target);
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_file() {
            let bytes = std::fs::read(&path)?;
            files.push((path, bytes));
        }
    }
    files.sort();
    Ok(files)
}

/// The default directory of saved regressions: `fuzz/regressions`.
pub fn default_regressions_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions")
}
