//! `cargo xtask overload`: the goodput benchmark of admission control.
//!
//! It runs the `overload` example of the facade in release mode: a real HTTP/2
//! server on 127.0.0.1 whose handler has a fixed capacity (8 slots of 10 ms, 800
//! requests per second), an open-loop load generator at 1×, 2× and 4× capacity with
//! 10 % critical traffic and a 100 ms deadline on every request, and three
//! protections side by side: none; tower's `ConcurrencyLimit` + `LoadShed` at the
//! best fixed limit; palisade's inbound and admission layers. It prints one table
//! row per configuration (goodput as a fraction of capacity, p50/p99 of the
//! successes, share of critical requests served, wasted work); the whole run takes
//! about 30 s after the build. Not part of `ci`.

use std::path::Path;

use crate::{Step, run_steps};

pub(crate) fn overload(root: &Path, args: &[String]) -> Result<(), String> {
    if !args.is_empty() {
        return Err(format!("overload takes no arguments, got {args:?}"));
    }
    let step = Step::new(
        "overload (goodput under 1x, 2x, 4x capacity)",
        root,
        &[
            "run",
            "--release",
            "--package",
            "palisade",
            "--example",
            "overload",
            "--features",
            "admission",
        ],
    );
    run_steps(vec![step])
}
