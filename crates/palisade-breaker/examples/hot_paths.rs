//! The hot paths one at a time, for counting instructions under callgrind, where
//! wall time on a busy machine is noise:
//!
//! ```text
//! cargo build --release -p palisade-breaker --example hot_paths
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured*' \
//!     target/release/examples/hot_paths closed-time 100000
//! ```
//!
//! Paths: `closed-count`, `closed-time`, `closed-async`, `open`, `half-open-full`. A third argument
//! runs the closed-state paths on that many threads sharing one breaker; compare the
//! CPU time per call (`/usr/bin/time -f %U`) with one thread's to see what sharing
//! costs even on a machine too busy for wall time to mean anything.
#![allow(missing_docs)]

use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use palisade_breaker::{Breaker, BreakerConfig, OpenDuration, WindowConfig};
use palisade_classify::Outcome;
use palisade_clock::MonotonicClock;

fn breaker(window: WindowConfig) -> Breaker<MonotonicClock> {
    let config = BreakerConfig::default()
        .window(window)
        .minimum_calls(10)
        .open(OpenDuration::fixed(Duration::from_secs(3600)));
    Breaker::builder(config)
        .clock(MonotonicClock)
        .build()
        .expect("a valid configuration")
}

fn ready<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("never waits"),
    }
}

#[inline(never)]
fn measured_permits(b: &Breaker<MonotonicClock>, n: u64) {
    for _ in 0..n {
        b.try_acquire()
            .expect("closed")
            .record(black_box(Outcome::Success));
    }
}

#[inline(never)]
fn measured_async(b: &Breaker<MonotonicClock>, n: u64) {
    for _ in 0..n {
        let _ = black_box(ready(b.call(async { Ok::<_, ()>(black_box(1u64)) })));
    }
}

#[inline(never)]
fn measured_rejections(b: &Breaker<MonotonicClock>, n: u64) {
    for _ in 0..n {
        black_box(b.try_acquire().is_err());
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "closed-time".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let threads: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let count = WindowConfig::Count { size: 100 };
    let shared = |b: Breaker<MonotonicClock>| {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| measured_permits(&b, n));
            }
        })
    };
    match path.as_str() {
        "closed-count" => shared(breaker(count)),
        "closed-time" => shared(breaker(WindowConfig::default())),
        "closed-async" => measured_async(&breaker(WindowConfig::default()), n),
        "open" => {
            let b = breaker(count);
            for _ in 0..100 {
                let _ = b.call_sync(|| Err::<(), _>(()));
            }
            measured_rejections(&b, n);
        }
        "half-open-full" => {
            let config = BreakerConfig::default()
                .failure_rate_threshold(None)
                .consecutive_failures(Some(1))
                .open(OpenDuration::fixed(Duration::from_millis(1)))
                .half_open_probes(1);
            let b = Breaker::builder(config)
                .clock(MonotonicClock)
                .build()
                .expect("a valid configuration");
            let _ = b.call_sync(|| Err::<(), _>(()));
            let probe = loop {
                if let Ok(p) = b.try_acquire() {
                    break p;
                }
                std::thread::yield_now();
            };
            measured_rejections(&b, n);
            drop(probe);
        }
        other => {
            eprintln!("unknown path `{other}`");
            std::process::exit(2);
        }
    }
}
