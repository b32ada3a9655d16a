//! Where and when a run happened: machine, date, compiler and crate versions.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::report::RunInfo;

/// The crates whose versions the report lists, palisade's first.
const CRATES: &[&str] = &[
    "palisade",
    "palisade-clock",
    "palisade-context",
    "palisade-window",
    "palisade-backoff",
    "palisade-retry",
    "palisade-breaker",
    "palisade-limit",
    "backon",
    "failsafe",
    "governor",
    "recloser",
    "seatbelt",
    "tokio",
    "tokio-retry",
    "tokio-util",
    "tower",
    "tower-resilience-circuitbreaker",
];

/// The workspace root (the benchmark crate lives one level below it).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Everything the report's header needs.
pub(crate) fn run_info(command: &str, settings: String) -> RunInfo {
    RunInfo {
        date: utc_now(),
        machine: machine(),
        rustc: Command::new("rustc")
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| "an unknown rustc".into()),
        command: command.to_owned(),
        settings,
        versions: versions(
            &std::fs::read_to_string(workspace_root().join("Cargo.lock")).unwrap_or_default(),
        ),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!(", {} {}", std::env::consts::OS, k.trim()))
        .unwrap_or_else(|_| format!(", {}", std::env::consts::OS));
    format!("{cpu}, {cores} cores{kernel}")
}

/// `(name, version)` for each of [`CRATES`] found in `lock`.
pub(crate) fn versions(lock: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for name in CRATES {
        let marker = format!("name = \"{name}\"\nversion = \"");
        let mut versions: Vec<&str> = lock
            .match_indices(&marker)
            .filter_map(|(i, _)| lock[i + marker.len()..].split('"').next())
            .collect();
        versions.dedup();
        if !versions.is_empty() {
            found.push(((*name).to_owned(), versions.join(", ")));
        }
    }
    found
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_utc(1_795_435_200 + 3_660), "2026-11-23 13:01 UTC");
    }

    #[test]
    fn versions_come_from_the_lock_file() {
        let lock = "[[package]]\nname = \"tokio\"\nversion = \"1.48.0\"\n\n[[package]]\nname = \"tower\"\nversion = \"0.5.2\"\n";
        assert_eq!(
            versions(lock),
            vec![
                ("tokio".to_owned(), "1.48.0".to_owned()),
                ("tower".to_owned(), "0.5.2".to_owned())
            ]
        );
    }
}
