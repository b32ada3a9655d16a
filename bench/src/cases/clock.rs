//! Reading the time: palisade-clock next to the clocks it wraps.

use palisade_clock::{Clock, MonotonicClock, Timestamp, TokioClock};

use crate::harness::{Case, Floor, Role, bench_sync};

const NOW: &str = "now()";
const RECENT: &str = "recent()";

fn positive(t: &Timestamp) -> bool {
    t.as_nanos() > 0
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "clock",
            NOW,
            "palisade TokioClock",
            Role::Palisade,
            bench_sync!(TokioClock, |s| s.now(), positive),
        )
        .floor(Floor::Clock)
        .key()
        .note("the default clock: tokio's Instant (follows paused time)"),
        Case::new(
            "clock",
            NOW,
            "palisade MonotonicClock",
            Role::Palisade,
            bench_sync!(MonotonicClock, |s| s.now(), positive),
        )
        .floor(Floor::Clock),
        Case::new(
            "clock",
            NOW,
            "tokio::time::Instant::now",
            Role::Peer,
            bench_sync!(
                (),
                |_s| tokio::time::Instant::now(),
                |_r: &tokio::time::Instant| true
            ),
        )
        .floor(Floor::Clock),
        Case::new(
            "clock",
            RECENT,
            "palisade TokioClock",
            Role::Palisade,
            bench_sync!(TokioClock, |s| s.recent(), positive),
        )
        .floor(Floor::Clock)
        .key()
        .note("the cheap reading: may lag now() by about a millisecond"),
        Case::new(
            "clock",
            RECENT,
            "palisade MonotonicClock",
            Role::Palisade,
            bench_sync!(MonotonicClock, |s| s.recent(), positive),
        )
        .floor(Floor::Clock),
    ]
}
