//! `cargo xtask overload [--quick]`: the goodput benchmark. A real HTTP server on
//! 127.0.0.1 with a fixed capacity, open-loop load at 1×, 2× and 4× capacity with
//! 10 % critical traffic, and three servers side by side: unprotected, tower's
//! `ConcurrencyLimit` + `LoadShed` at the best fixed limit, and palisade's
//! admission layer. The workload is the facade's `overload` example (it needs the
//! facade's dependencies, which this tool does not build); nine phases of 3 s
//! (0.5 s with `--quick`), well under two minutes in all. Not a `ci` step: its
//! release build alone takes longer than a smoke run should.

use std::path::Path;

use crate::{Step, run_steps};

pub(crate) fn overload(root: &Path, args: &[String]) -> Result<(), String> {
    let mut step = Step::new(
        "overload",
        root,
        &[
            "run",
            "--release",
            "--quiet",
            "--package",
            "palisade",
            "--example",
            "overload",
            "--features",
            "tower,http,limit",
            "--",
        ],
    );
    for a in args {
        if a != "--quick" {
            return Err(format!("overload takes only --quick, got `{a}`"));
        }
        step.command.arg(a);
    }
    run_steps(vec![step])
}
