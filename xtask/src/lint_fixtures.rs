//! `cargo xtask lint-fixtures`: proves that each rule of the lint configuration
//! users copy (`docs/clippy-context.toml`) fires on its misuse and stays quiet on
//! the correct form, and that the workspace's own `clippy.toml` holds every rule.
//!
//! It runs clippy on the fixture crate (`lint-fixtures/`) with that file as the
//! only configuration (`CLIPPY_CONF_DIR`) and `--cfg palisade_lint_misuse`, which
//! builds its `misuse` module, and reads the diagnostics from cargo's JSON
//! messages. A line of `misuse.rs` that must be flagged ends with
//! `// flagged: <path>` (the rule's path), or `// flagged: <path> as <name>` when
//! clippy names the item by another path (a re-export: `tokio::spawn` is
//! `tokio::task::spawn`). The check fails when a rule has no marked misuse, when a
//! marked line gets anything but exactly that rule's diagnostic with its reason,
//! or when anything at all fires elsewhere in the crate, above all in `correct.rs`.
//!
//! Only the fixture is linted (`--no-deps`); the dependencies are checked once with
//! the fixture's features and stay cached next to the workspace's own build.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

/// The configuration users copy.
const SNIPPET: &str = "docs/clippy-context.toml";
/// The workspace's own configuration, which must hold every rule of the snippet.
const OWN: &str = "clippy.toml";
const FIXTURE: &str = "palisade-lint-fixtures";
const MISUSE: &str = "lint-fixtures/src/misuse.rs";
const CORRECT: &str = "lint-fixtures/src/correct.rs";
/// Builds the fixture's `misuse` module.
const MISUSE_CFG: &str = "palisade_lint_misuse";
const MARK: &str = "// flagged: ";
/// Each kind of rule: its configuration key and the lint it drives.
const KINDS: &[(&str, &str)] = &[
    ("disallowed-methods", "clippy::disallowed_methods"),
    ("disallowed-types", "clippy::disallowed_types"),
];

/// One entry of a `disallowed-*` list.
struct Rule {
    lint: &'static str,
    path: String,
    reason: Option<String>,
}

/// A line of `misuse.rs` that must be flagged.
struct Marker {
    line: usize,
    /// The rule's path in the configuration.
    path: String,
    /// The path clippy names in its message.
    reported: String,
}

/// One diagnostic on the fixture crate, from cargo's JSON messages.
struct Diagnostic {
    lint: Option<String>,
    message: String,
    file: String,
    line: usize,
    notes: Vec<String>,
}

pub(crate) fn lint_fixtures(root: &Path) -> Result<(), String> {
    let rules = read_rules(root, SNIPPET)?;
    if rules.is_empty() {
        return Err(format!("{SNIPPET} holds no rule"));
    }
    let mut problems = Vec::new();

    // The workspace follows the configuration it ships.
    let own = read_rules(root, OWN)?;
    for rule in &rules {
        let followed = own
            .iter()
            .any(|o| o.lint == rule.lint && o.path == rule.path && o.reason == rule.reason);
        if !followed {
            problems.push(format!(
                "{OWN}: has no entry `{}` with the reason {SNIPPET} gives it",
                rule.path
            ));
        }
    }

    // Every rule has a misuse, and every marker names a rule.
    let markers = markers(&read(root, MISUSE)?);
    for rule in &rules {
        if !markers.iter().any(|m| m.path == rule.path) {
            problems.push(format!(
                "{MISUSE}: no line is marked `{MARK}{}`: the rule has no misuse",
                rule.path
            ));
        }
    }
    for m in &markers {
        if !rules.iter().any(|r| r.path == m.path) {
            problems.push(format!(
                "{MISUSE}:{}: `{}` is not a rule of {SNIPPET}",
                m.line, m.path
            ));
        }
    }

    let diagnostics = run_clippy(root)?;

    // Each marked line gets exactly its rule's diagnostic, with the rule's reason.
    let mut explained = vec![false; diagnostics.len()];
    let mut fired = Vec::new();
    for m in &markers {
        let Some(rule) = rules.iter().find(|r| r.path == m.path) else {
            continue;
        };
        let here: Vec<usize> = (0..diagnostics.len())
            .filter(|&i| diagnostics[i].file == MISUSE && diagnostics[i].line == m.line)
            .collect();
        for &i in &here {
            explained[i] = true;
        }
        let [i] = here[..] else {
            problems.push(if here.is_empty() {
                format!(
                    "{MISUSE}:{}: `{}` did not fire on its misuse",
                    m.line, m.path
                )
            } else {
                format!(
                    "{MISUSE}:{}: {} diagnostics where `{}` alone should fire: {}",
                    m.line,
                    here.len(),
                    m.path,
                    here.iter()
                        .map(|&i| describe(&diagnostics[i]))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            });
            continue;
        };
        let d = &diagnostics[i];
        if d.lint.as_deref() != Some(rule.lint) || !d.message.contains(&format!("`{}`", m.reported))
        {
            problems.push(format!(
                "{MISUSE}:{}: expected {} naming `{}`, got {}",
                m.line,
                rule.lint,
                m.reported,
                describe(d)
            ));
            continue;
        }
        // Entries that name the same item (a path and its re-export) share one
        // diagnostic, which shows the reason of either.
        let reasons: Vec<&str> = rules
            .iter()
            .filter(|r| r.path == m.path || r.path == m.reported)
            .filter_map(|r| r.reason.as_deref())
            .collect();
        if !reasons.is_empty() && !d.notes.iter().any(|n| reasons.contains(&n.as_str())) {
            problems.push(format!(
                "{MISUSE}:{}: `{}` fired without its reason (notes: {:?})",
                m.line, m.path, d.notes
            ));
            continue;
        }
        fired.push((m, d));
    }

    // Nothing else fires anywhere in the fixture.
    for (d, _) in diagnostics.iter().zip(&explained).filter(|(_, e)| !**e) {
        let place = if d.file == CORRECT {
            " in the correct form"
        } else {
            ""
        };
        problems.push(format!(
            "{}:{}: nothing may fire here{place}, but: {}",
            d.file,
            d.line,
            describe(d)
        ));
    }

    let mut report = String::from("\n  rule (path in the configuration)             fired at\n");
    for (m, d) in &fired {
        let alias = if m.reported == m.path {
            String::new()
        } else {
            format!(" (as `{}`)", m.reported)
        };
        let _ = writeln!(report, "  {:<45} {}:{}{alias}", m.path, d.file, d.line);
    }
    print!("{report}");
    if problems.is_empty() {
        println!(
            "  {} rules, {} misuses flagged, nothing in {CORRECT}; {OWN} holds every rule",
            rules.len(),
            fired.len()
        );
        Ok(())
    } else {
        Err(format!(
            "lint fixtures: {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        ))
    }
}

fn read(root: &Path, file: &str) -> Result<String, String> {
    std::fs::read_to_string(root.join(file)).map_err(|e| format!("{file}: {e}"))
}

/// The `disallowed-methods` and `disallowed-types` entries of a clippy
/// configuration: each a path, or a table with a `path` and a `reason`.
fn read_rules(root: &Path, file: &str) -> Result<Vec<Rule>, String> {
    let table: toml::Table =
        toml::from_str(&read(root, file)?).map_err(|e| format!("{file}: {e}"))?;
    let mut rules = Vec::new();
    for &(key, lint) in KINDS {
        let Some(entries) = table.get(key) else {
            continue;
        };
        let entries = entries
            .as_array()
            .ok_or_else(|| format!("{file}: `{key}` is not a list"))?;
        for entry in entries {
            let (path, reason) = match entry {
                toml::Value::String(path) => (path.clone(), None),
                toml::Value::Table(t) => (
                    t.get("path")
                        .and_then(toml::Value::as_str)
                        .ok_or_else(|| format!("{file}: an entry of `{key}` has no `path`"))?
                        .to_owned(),
                    t.get("reason")
                        .and_then(toml::Value::as_str)
                        .map(str::to_owned),
                ),
                _ => return Err(format!("{file}: `{key}` holds {entry}")),
            };
            rules.push(Rule { lint, path, reason });
        }
    }
    Ok(rules)
}

/// The marked lines of `misuse.rs` (1-based, as clippy counts them). Comment lines
/// are documentation, never markers.
fn markers(text: &str) -> Vec<Marker> {
    let mut markers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let Some(at) = line.find(MARK) else {
            continue;
        };
        let mark = line[at + MARK.len()..].trim();
        let (path, reported) = mark.split_once(" as ").unwrap_or((mark, mark));
        markers.push(Marker {
            line: i + 1,
            path: path.trim().to_owned(),
            reported: reported.trim().to_owned(),
        });
    }
    markers
}

/// Runs clippy on the fixture with the snippet as its configuration and returns
/// the fixture's diagnostics.
fn run_clippy(root: &Path) -> Result<Vec<Diagnostic>, String> {
    // The snippet under the name clippy looks for, rewritten only when it changed
    // so that an unchanged fixture stays cached.
    let conf = root.join("target/lint-fixtures");
    std::fs::create_dir_all(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
    let snippet = read(root, SNIPPET)?;
    let copy = conf.join("clippy.toml");
    if std::fs::read_to_string(&copy).ok().as_deref() != Some(snippet.as_str()) {
        std::fs::write(&copy, &snippet).map_err(|e| format!("{}: {e}", copy.display()))?;
    }

    let output = crate::cargo()
        .current_dir(root)
        .args([
            "clippy",
            "--package",
            FIXTURE,
            "--no-deps",
            "--message-format=json",
            "--",
            "--cfg",
            MISUSE_CFG,
            // The misuses must be reported, not stop the build, whatever
            // RUSTFLAGS says.
            "--cap-lints",
            "warn",
        ])
        .env("CLIPPY_CONF_DIR", &conf)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo clippy: could not start: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo clippy on {FIXTURE} failed ({})",
            output.status
        ));
    }

    let mut diagnostics = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let ours = message["package_id"]
            .as_str()
            .is_some_and(|id| id.contains(FIXTURE));
        if message["reason"] != "compiler-message" || !ours {
            continue;
        }
        let d = &message["message"];
        let primary = d["spans"]
            .as_array()
            .and_then(|spans| spans.iter().find(|s| s["is_primary"] == true));
        diagnostics.push(Diagnostic {
            lint: d["code"]["code"].as_str().map(str::to_owned),
            message: d["message"].as_str().unwrap_or_default().to_owned(),
            file: primary
                .and_then(|s| s["file_name"].as_str())
                .unwrap_or_default()
                .replace('\\', "/"),
            line: primary
                .and_then(|s| s["line_start"].as_u64())
                .unwrap_or_default() as usize,
            notes: d["children"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["level"] == "note")
                .filter_map(|c| c["message"].as_str().map(str::to_owned))
                .collect(),
        });
    }
    Ok(diagnostics)
}

fn describe(d: &Diagnostic) -> String {
    match &d.lint {
        Some(lint) => format!("{} ({lint})", d.message),
        None => d.message.clone(),
    }
}
