//! Every input the fuzzer saved as a crash, and every target's seeds, replayed:
//! a crash found once fails this test until it is fixed.

use palisade_fuzz::{Target, default_regressions_root, regressions, run_one, targets};

fn replay(target: &Target) -> Vec<String> {
    let mut failures = Vec::new();
    for seed in target.seeds {
        if let Err(e) = run_one(target, seed) {
            failures.push(format!(
                "{} seed {:?}: {e}",
                target.name,
                String::from_utf8_lossy(seed)
            ));
        }
    }
    let saved = regressions(&default_regressions_root(), target.name).expect("readable");
    for (path, input) in saved {
        if let Err(e) = run_one(target, &input) {
            failures.push(format!("{}: {e}", path.display()));
        }
    }
    failures
}

#[test]
fn every_saved_crash_and_seed_passes() {
    let failures: Vec<String> = targets::ALL.iter().flat_map(replay).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The fuzzer finds a planted bug, the saved input fails the replay, and the
/// directory of saved inputs is read back.
#[test]
fn a_crash_is_found_saved_and_replayed() {
    fn planted(data: &[u8]) -> u64 {
        assert!(!data.windows(3).any(|w| w == b"BUG"), "planted bug");
        data.len() as u64 % 4
    }
    let target = Target {
        name: "planted",
        run: planted,
        seeds: &[b"BUx"],
        dictionary: &[b"G", b"B"],
    };
    let crash = palisade_fuzz::fuzz(&target, std::time::Duration::from_secs(10), 7)
        .expect_err("the planted bug is found");
    assert!(crash.message.contains("planted bug"), "{}", crash.message);
    let dir = std::env::temp_dir().join(format!("palisade-fuzz-test-{}", std::process::id()));
    let path = palisade_fuzz::save_regression(&dir, "planted", &crash.input).unwrap();
    let saved = regressions(&dir, "planted").unwrap();
    assert_eq!(saved, [(path, crash.input.clone())]);
    assert!(run_one(&target, &saved[0].1).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn targets_have_distinct_names() {
    let mut names: Vec<_> = targets::ALL.iter().map(|t| t.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), targets::ALL.len());
}
