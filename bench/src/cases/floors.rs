//! The floors: the least any workload can cost, measured in the same run.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::{Boom, ok_call};
use crate::harness::{Case, Floor, Role, bench_async, bench_sync};

#[inline(never)]
fn bare() -> Result<u64, Boom> {
    Ok(black_box(1))
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "floors",
            "bare call",
            "fn() -> Result",
            Role::Floor,
            bench_sync!(
                bare as fn() -> Result<u64, Boom>,
                |s| (black_box(*s))(),
                |r: &Result<u64, Boom>| *r == Ok(1)
            ),
        )
        .floor(Floor::Call)
        .key()
        .note("a non-inlined function returning Ok(1)"),
        Case::new(
            "floors",
            "bare awaited call",
            "async fn().await",
            Role::Floor,
            bench_async!((), |_s| ok_call(), |r: &Result<u64, Boom>| *r == Ok(1)),
        )
        .floor(Floor::Await)
        .key()
        .note("the protected call of every async workload, awaited alone"),
        Case::new(
            "floors",
            "relaxed atomic add",
            "AtomicU64::fetch_add",
            Role::Floor,
            bench_sync!(
                AtomicU64::new(0),
                |s| s.fetch_add(1, Ordering::Relaxed),
                |_r: &u64| true
            ),
        )
        .floor(Floor::Atomic)
        .key()
        .note("one uncontended fetch_add(Relaxed)"),
        Case::new(
            "floors",
            "clock read",
            "std Instant::now",
            Role::Floor,
            bench_sync!((), |_s| Instant::now(), |_r: &Instant| true),
        )
        .floor(Floor::Clock)
        .key()
        .note("one read of the OS monotonic clock"),
    ]
}
