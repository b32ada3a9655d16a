//! The cheap reading behind [`Clock::recent`](crate::Clock::recent): a timestamp that a
//! background thread refreshes every [`TICK`], read with one relaxed load.
//!
//! The thread (`palisade-clock-ticker`) starts on the first `recent()` call and runs
//! for the life of the process; it wakes once a tick and does one clock read and one
//! atomic store, so its cost is negligible. Readings never run ahead of `now()` and
//! never go backwards; they lag by at most one tick plus however long the operating
//! system delays the thread. If the thread cannot be started, `recent()` falls back to
//! the coarse kernel clock (`CLOCK_MONOTONIC_COARSE` on Linux), then to `now()`.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Timestamp;
use crate::origin::origin;

/// How often the ticker refreshes the recent timestamp.
pub(crate) const TICK: Duration = Duration::from_millis(1);

static LATEST: AtomicU64 = AtomicU64::new(0);
static START: Once = Once::new();
static FAILED: AtomicBool = AtomicBool::new(false);

#[inline]
pub(crate) fn recent() -> Timestamp {
    let latest = LATEST.load(Ordering::Relaxed);
    if latest != 0 {
        return Timestamp::from_nanos(latest);
    }
    slow()
}

#[cold]
fn slow() -> Timestamp {
    START.call_once(|| {
        publish();
        let spawned = std::thread::Builder::new()
            .name("palisade-clock-ticker".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(TICK);
                    publish();
                }
            });
        if spawned.is_err() {
            FAILED.store(true, Ordering::Relaxed);
            LATEST.store(0, Ordering::Relaxed);
        }
    });
    if FAILED.load(Ordering::Relaxed) {
        origin().coarse()
    } else {
        // The first reading, published above, is never zero (the origin lies a day
        // back), so later calls take the fast path.
        Timestamp::from_nanos(LATEST.load(Ordering::Relaxed))
    }
}

fn publish() {
    let now = origin().since(Instant::now()).as_nanos().max(1);
    LATEST.fetch_max(now, Ordering::Relaxed);
}
