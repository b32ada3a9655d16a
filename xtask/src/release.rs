//! The guard rails of a release: every publishable crate packages, the declared
//! minimum Rust version holds, and no public interface breaks by accident.
//!
//! - [`package`]: `cargo xtask package`, `cargo package` of every publishable crate,
//!   verified (each crate builds from its own tarball, against its siblings'
//!   tarballs). A `ci` step.
//! - [`msrv`]: `cargo xtask msrv`. With the toolchain of the declared
//!   `rust-version` installed, the publishable crates are checked with it. Without
//!   it (this machine has one toolchain and cannot fetch another), every dependency
//!   a published crate builds with must declare a `rust-version` no newer than ours;
//!   clippy's `incompatible_msrv` lint (on by default, in the `clippy` step) catches
//!   our own use of a newer standard library API. A `ci` step.
//! - [`semver`]: `cargo xtask semver [--baseline REV]`. cargo-semver-checks
//!   against the revision in `.semver-baseline` (the interface as of the last
//!   deliberate change), installed from crates.io when missing. Its own command: the
//!   install alone compiles for several minutes on two cores.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use crate::{Step, cargo, run_steps};

/// The crates under `crates/` that do not say `publish = false`, by name.
pub(crate) fn publishable(root: &Path) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let dir = root.join("crates");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let value: toml::Value =
            toml::from_str(&text).map_err(|e| format!("{}: not TOML: {e}", manifest.display()))?;
        let package = value.get("package");
        let unpublished = package
            .and_then(|p| p.get("publish"))
            .and_then(toml::Value::as_bool)
            == Some(false);
        if let Some(name) = package.and_then(|p| p.get("name")).and_then(|n| n.as_str())
            && !unpublished
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// `cargo xtask package`: `cargo package` of every publishable crate, verified.
///
/// Cargo verifies the crates against a local registry of their own tarballs, and
/// takes a registry's crate of a given version to be immutable: it unpacks each
/// tarball once into `$CARGO_HOME/registry/src/-<hash>/` (the directory of a
/// registry without a host) and never rebuilds what it compiled from it. Under an
/// unchanged version number, a later run would build against the source and the
/// artifacts of an earlier one. So the unpacked copies of our own crates are
/// removed, and the verification builds in a target directory of its own
/// (`target/package-verify`, its dependencies kept between runs) from which our
/// own crates' fingerprints are removed first.
pub(crate) fn package(root: &Path) -> Result<(), String> {
    let crates = publishable(root)?;
    let version = declared(root, "version")?;
    remove_unpacked_copies(&crates, &version)?;
    let target = root.join("target").join("package-verify");
    remove_fingerprints(&target, &crates)?;
    // The working tree as it is, committed or not: what the other steps check.
    let mut args = vec!["package", "--quiet", "--allow-dirty"];
    for name in &crates {
        args.extend(["--package", name.as_str()]);
    }
    let target = target.to_string_lossy().into_owned();
    run_steps(vec![
        Step::new("cargo package (publishable crates)", root, &args)
            .env("CARGO_TARGET_DIR", &target),
    ])
}

/// Removes the build fingerprints of `crates` under `target`, so that cargo
/// builds them again.
fn remove_fingerprints(target: &Path, crates: &[String]) -> Result<(), String> {
    let Ok(profiles) = std::fs::read_dir(target) else {
        return Ok(());
    };
    for profile in profiles.flatten() {
        let Ok(entries) = std::fs::read_dir(profile.path().join(".fingerprint")) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            // `<name>-<hash>`: the name is everything before the last dash.
            let ours = file
                .rsplit_once('-')
                .is_some_and(|(name, _)| crates.iter().any(|c| c == name));
            if ours {
                std::fs::remove_dir_all(entry.path())
                    .map_err(|e| format!("cannot remove {}: {e}", entry.path().display()))?;
            }
        }
    }
    Ok(())
}

/// Removes `name-version` of every crate in `crates` from the unpacked sources of
/// the host-less (local) registries of `$CARGO_HOME`.
fn remove_unpacked_copies(crates: &[String], version: &str) -> Result<(), String> {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let Ok(registries) = std::fs::read_dir(home.join("registry").join("src")) else {
        return Ok(());
    };
    for registry in registries.flatten() {
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for name in crates {
            let copy = registry.path().join(format!("{name}-{version}"));
            if copy.is_dir() {
                std::fs::remove_dir_all(&copy)
                    .map_err(|e| format!("cannot remove {}: {e}", copy.display()))?;
            }
        }
    }
    Ok(())
}

/// A `[workspace.package]` setting of the root manifest (`version`, `rust-version`).
fn declared(root: &Path, key: &str) -> Result<String, String> {
    let manifest = root.join("Cargo.toml");
    let text =
        std::fs::read_to_string(&manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    let value: toml::Value =
        toml::from_str(&text).map_err(|e| format!("{}: not TOML: {e}", manifest.display()))?;
    value
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get(key))
        .and_then(toml::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("the root Cargo.toml declares no [workspace.package] {key}"))
}

/// A version such as `1.85` or `1.85.1` as comparable numbers.
fn version_key(version: &str) -> Vec<u64> {
    version
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .chain(std::iter::repeat(0))
        .take(3)
        .collect()
}

/// `cargo xtask msrv`.
pub(crate) fn msrv(root: &Path) -> Result<(), String> {
    let msrv = declared(root, "rust-version")?;
    let crates = publishable(root)?;
    let toolchain = Command::new("rustup")
        .args(["run", &msrv, "cargo", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if toolchain {
        println!("rust-version {msrv}: checking the publishable crates with that toolchain");
        let mut command = Command::new("rustup");
        command
            .current_dir(root)
            .args(["run", &msrv, "cargo", "check", "--all-features", "--lib"]);
        for name in &crates {
            command.args(["--package", name]);
        }
        return run_steps(vec![Step {
            name: format!("cargo check on Rust {msrv}"),
            command,
        }]);
    }
    println!(
        "rust-version {msrv}: no {msrv} toolchain here (`rustup toolchain install {msrv}` \
         makes this step build with it); checking that every dependency of the \
         publishable crates declares a rust-version no newer"
    );
    let output = cargo()
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--all-features"])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cargo metadata printed no JSON: {e}"))?;
    let too_new = newer_dependencies(&metadata, &crates, &msrv)?;
    if too_new.is_empty() {
        println!("every dependency builds with Rust {msrv} by its own declaration");
        Ok(())
    } else {
        Err(format!(
            "these dependencies of published crates need a newer Rust than the declared \
             rust-version {msrv}; raise it (and say so in CHANGELOG.md) or pin older \
             versions:\n  {}",
            too_new.into_iter().collect::<Vec<_>>().join("\n  ")
        ))
    }
}

/// The packages reachable from `roots` through normal and build dependencies whose
/// declared `rust-version` is newer than `msrv`, as `name version (rust-version)`.
fn newer_dependencies(
    metadata: &serde_json::Value,
    roots: &[String],
    msrv: &str,
) -> Result<BTreeSet<String>, String> {
    let packages = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata: no packages")?;
    let by_id: HashMap<&str, &serde_json::Value> = packages
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes = metadata["resolve"]["nodes"]
        .as_array()
        .ok_or("cargo metadata: no resolve graph")?;
    let deps: HashMap<&str, Vec<&str>> = nodes
        .iter()
        .filter_map(|node| {
            let id = node["id"].as_str()?;
            let next = node["deps"]
                .as_array()?
                .iter()
                .filter(|dep| {
                    dep["dep_kinds"].as_array().is_some_and(|kinds| {
                        kinds.iter().any(|k| k["kind"].as_str() != Some("dev"))
                    })
                })
                .filter_map(|dep| dep["pkg"].as_str())
                .collect();
            Some((id, next))
        })
        .collect();
    let mut stack: Vec<&str> = packages
        .iter()
        .filter(|p| {
            p["source"].is_null()
                && p["name"]
                    .as_str()
                    .is_some_and(|n| roots.iter().any(|r| r == n))
        })
        .filter_map(|p| p["id"].as_str())
        .collect();
    let mut seen = BTreeSet::new();
    let mut too_new = BTreeSet::new();
    let limit = version_key(msrv);
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        if let Some(package) = by_id.get(id)
            && let Some(needed) = package["rust_version"].as_str()
            && version_key(needed) > limit
        {
            too_new.insert(format!(
                "{} {} (rust-version {needed})",
                package["name"].as_str().unwrap_or("?"),
                package["version"].as_str().unwrap_or("?"),
            ));
        }
        if let Some(next) = deps.get(id) {
            stack.extend(next.iter().copied());
        }
    }
    Ok(too_new)
}

/// `cargo xtask semver [--baseline REV]`.
pub(crate) fn semver(root: &Path, args: &[String]) -> Result<(), String> {
    let baseline = match args {
        [] => {
            let file = root.join(".semver-baseline");
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .ok_or_else(|| format!("{} names no revision", file.display()))?
                .to_owned()
        }
        [flag, rev] if flag == "--baseline" => rev.clone(),
        _ => return Err("usage: cargo xtask semver [--baseline REV]".into()),
    };
    let known = Command::new("git")
        .current_dir(root)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{baseline}^{{commit}}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !known {
        return Err(format!(
            "the baseline revision {baseline} is not in this clone's history (a shallow \
             clone? fetch it, or pass --baseline REV)"
        ));
    }
    let installed = cargo()
        .args(["semver-checks", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut steps = Vec::new();
    if !installed {
        println!("cargo-semver-checks is not installed: installing it from crates.io (minutes)");
        steps.push(Step::new(
            "install cargo-semver-checks",
            root,
            &["install", "cargo-semver-checks", "--locked"],
        ));
    }
    // A crate the baseline does not have has no interface to break yet: it is
    // named and left out, and checked from the next baseline on.
    let mut crates = Vec::new();
    for name in publishable(root)? {
        let at_baseline = Command::new("git")
            .current_dir(root)
            .args([
                "cat-file",
                "-e",
                &format!("{baseline}:crates/{name}/Cargo.toml"),
            ])
            .status()
            .map_err(|e| format!("git: {e}"))?
            .success();
        if at_baseline {
            crates.push(name);
        } else {
            println!("{name}: new since {baseline}, nothing to compare yet");
        }
    }
    let mut check = vec![
        "semver-checks",
        "check-release",
        "--baseline-rev",
        &baseline,
    ];
    for name in &crates {
        check.extend(["--package", name.as_str()]);
    }
    steps.push(Step::new(
        &format!("semver check against {baseline}"),
        root,
        &check,
    ));
    run_steps(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_number() {
        assert!(version_key("1.85") < version_key("1.85.1"));
        assert!(version_key("1.9") < version_key("1.85"));
        assert_eq!(version_key("1.85"), version_key("1.85.0"));
    }

    #[test]
    fn a_dependency_newer_than_the_msrv_is_named_and_dev_dependencies_are_not() {
        let metadata = serde_json::json!({
            "packages": [
                { "id": "a", "name": "a", "version": "0.1.0", "source": null, "rust_version": "1.85" },
                { "id": "b", "name": "b", "version": "2.0.0", "source": "registry", "rust_version": "1.88" },
                { "id": "c", "name": "c", "version": "1.0.0", "source": "registry", "rust_version": "1.90" },
                { "id": "d", "name": "d", "version": "1.0.0", "source": "registry", "rust_version": null },
            ],
            "resolve": { "nodes": [
                { "id": "a", "deps": [
                    { "pkg": "b", "dep_kinds": [{ "kind": null }] },
                    { "pkg": "c", "dep_kinds": [{ "kind": "dev" }] },
                    { "pkg": "d", "dep_kinds": [{ "kind": "build" }] },
                ] },
                { "id": "b", "deps": [] },
                { "id": "c", "deps": [] },
                { "id": "d", "deps": [] },
            ] }
        });
        let found = newer_dependencies(&metadata, &["a".to_owned()], "1.85").unwrap();
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            ["b 2.0.0 (rust-version 1.88)"]
        );
        let none = newer_dependencies(&metadata, &["a".to_owned()], "1.88").unwrap();
        assert!(none.is_empty());
    }
}
