//! Instructions per operation under callgrind: repeatable where wall time is noisy.
//!
//! For each key case the benchmark runs itself twice under
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect=*callgrind_measured_batch*`,
//! once with `n` and once with `2n` operations in the counted batch. Only the batch
//! function is counted, and the difference of the two totals divided by `n` removes
//! whatever a batch costs once (entering the runtime, reading the timer). By hand:
//!
//! ```text
//! cargo build --release -p palisade-bench
//! valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect='*callgrind_measured_batch*' \
//!     target/release/palisade-bench --callgrind-child breaker/closed-state-call/recloser 20000
//! ```

use std::process::{Command, ExitCode};

use crate::harness::{Bench, Case};
use crate::report::Count;

/// The hidden flag of the counted child process.
pub(crate) const CHILD_FLAG: &str = "--callgrind-child";

/// The counted function: one batch of `n` operations.
#[inline(never)]
fn callgrind_measured_batch(bench: &mut Bench, n: u64) {
    std::hint::black_box(bench.run(n));
}

/// The child: builds the case `id`, warms it up and runs one counted batch.
pub(crate) fn child(id: &str, n: u64) -> ExitCode {
    let area = id.split('/').next().unwrap_or_default().to_owned();
    let mut cases = crate::cases::cases(|a| a == area);
    let Some(case) = cases.iter_mut().find(|c| c.id() == id) else {
        eprintln!("palisade-bench: no case `{id}`");
        return ExitCode::from(2);
    };
    if let Err(e) = case.bench.check() {
        eprintln!("palisade-bench: {id} is broken: {e}");
        return ExitCode::FAILURE;
    }
    case.bench.run(100);
    callgrind_measured_batch(&mut case.bench, n);
    ExitCode::SUCCESS
}

/// Whether valgrind can be started.
pub(crate) fn available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn instructions(id: &str, n: u64) -> Result<u64, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the benchmark binary: {e}"))?;
    let out = std::env::temp_dir().join(format!(
        "palisade-bench-callgrind-{}-{n}.out",
        std::process::id()
    ));
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--collect-atstart=no")
        .arg("--toggle-collect=*callgrind_measured_batch*")
        .arg(&exe)
        .args([CHILD_FLAG, id, &n.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    if !status.success() {
        return Err(format!("valgrind failed on {id} ({status})"));
    }
    total(&text).ok_or_else(|| format!("no instruction total in callgrind's output for {id}"))
}

/// The `summary:` (or `totals:`) instruction count of a callgrind output file.
fn total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Counts the one-thread cases of every workload with a key path among `cases`,
/// with `n` and `2n` operations.
pub(crate) fn count_all(cases: &[Case], n: u64) -> Result<Vec<Count>, String> {
    if !available() {
        return Err("valgrind is not installed".into());
    }
    let mut counts = Vec::new();
    // Every one-thread case of a workload with a key path, so that palisade's count
    // stands next to the peers'.
    let counted = cases.iter().filter(|c| {
        c.threads == 1
            && cases
                .iter()
                .any(|k| k.key && k.area == c.area && k.workload == c.workload)
    });
    for case in counted {
        let id = case.id();
        eprintln!("callgrind: {id}");
        let once = instructions(&id, n)?;
        let twice = instructions(&id, 2 * n)?;
        counts.push(Count {
            area: case.area,
            workload: case.workload,
            label: case.label,
            role: case.role,
            per_op: twice.saturating_sub(once) as f64 / n as f64,
        });
    }
    Ok(counts)
}

/// The counts as a console table.
pub(crate) fn table(counts: &[Count]) -> String {
    let mut out = String::from("\n== instructions per operation (callgrind) ==\n");
    for c in counts {
        out.push_str(&format!(
            "{:<50} {:<32} {:>8.0}\n",
            format!("{}: {}", c.area, c.workload),
            c.label,
            c.per_op
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_read_from_callgrind_output() {
        assert_eq!(total("events: Ir\nsummary: 12345\n"), Some(12345));
        assert_eq!(total("events: Ir\ntotals: 77 3\n"), Some(77));
        assert_eq!(total("events: Ir\n"), None);
    }
}
