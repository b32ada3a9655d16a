//! The misuses that `docs/clippy-context.toml` flags, and their correct forms.
//!
//! `cargo xtask lint-fixtures` runs clippy on this crate with that file as its
//! only configuration and `--cfg palisade_lint_misuse`, which builds `misuse.rs`,
//! and checks that each rule fires exactly on the lines there marked
//! `// flagged: <path>` and that nothing fires anywhere else, above all not in
//! `correct.rs`. Without the cfg (the workspace's own clippy step) only the
//! correct forms are built, under the workspace's configuration, which holds the
//! same rules.

#[cfg(palisade_lint_misuse)]
pub mod misuse;

pub mod correct;
