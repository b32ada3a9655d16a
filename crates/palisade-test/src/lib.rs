//! A test kit for async code, made for code that uses Palisade: checks that a test
//! left nothing behind.
//!
//! Three checks, each of which fails with a message that says what was left:
//!
//! | check | what it proves |
//! | --- | --- |
//! | [`assert_no_live_tasks`] (and [`TaskBaseline`]) | no task spawned during the test is still alive at its end, like Go's goleak |
//! | [`drop_at_every_poll`] | a future dropped at any of its await points releases what it held |
//! | [`LeakCheck`] | named gauges (permits in use, probe slots, queued waiters, registered contexts) are back to zero |
//!
//! The crate depends on tokio alone, so any crate's tests can use it. The facade
//! re-exports it as `palisade::testing` (feature `testing`), with gauges for
//! every palisade primitive ready made.
//!
//! # Waiting is bounded, and virtual in paused time
//!
//! Work that ends when a future is dropped may need the runtime to run once more
//! (a task woken by a cancellation, a timer task that sees its context gone). So
//! each check first lets the runtime run ([`tokio::task::yield_now`], a few hundred
//! times, during which no time passes). [`assert_no_live_tasks`] and
//! [`LeakCheck::assert_released`] then wait on tokio's clock, in steps of
//! [`WAIT_STEP`], up to [`DEFAULT_WAIT`] (or the bound given): under
//! `#[tokio::test(start_paused = true)]` that wait is virtual, so it costs no real
//! time and does not depend on the machine's speed. A check that passes at once
//! does not wait at all.
//!
//! Letting time pass can hide a leak that a timer would clean up later, so the
//! checks of "a drop releases at once" let none pass: [`assert_no_live_tasks_now`],
//! [`LeakCheck::check`], and the check after each drop of [`drop_at_every_poll`]
//! (unless [`DropAtEveryPoll::release_wait`] says otherwise).
//!
//! # Example
//!
//! ```
//! use palisade_test::{LeakCheck, assert_no_live_tasks, drop_at_every_poll};
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::Duration;
//!
//! /// A slot held while a call runs: the kind of resource a drop must release.
//! struct Slot(Arc<AtomicU64>);
//! impl Drop for Slot {
//!     fn drop(&mut self) {
//!         self.0.fetch_sub(1, Ordering::Relaxed);
//!     }
//! }
//!
//! async fn call(in_use: Arc<AtomicU64>) -> u32 {
//!     in_use.fetch_add(1, Ordering::Relaxed);
//!     let _slot = Slot(in_use);
//!     tokio::time::sleep(Duration::from_millis(10)).await;
//!     tokio::task::yield_now().await;
//!     7
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let in_use = Arc::new(AtomicU64::new(0));
//! let gauge = in_use.clone();
//! let leaks = LeakCheck::new().gauge("slots in use", move || gauge.load(Ordering::Relaxed));
//!
//! // Dropped before its first poll, after one, after two, then run to the end:
//! // after every drop, every slot is back.
//! let done = drop_at_every_poll(|| call(in_use.clone()), || leaks.check()).await;
//! assert_eq!(done.output, 7);
//! assert_eq!(done.polls, 3);
//!
//! leaks.assert_released().await;
//! assert_no_live_tasks().await;
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// A test kit runs at the root of a test: it waits on the test's own runtime clock.
#![allow(clippy::disallowed_methods)]

mod drop;
mod leak;
mod tasks;

use std::time::Duration;

pub use drop::{DropAtEveryPoll, Dropped, drop_at_every_poll};
pub use leak::{Leak, LeakCheck, Leaks};
pub use tasks::{
    LiveTasks, TaskBaseline, assert_no_live_tasks, assert_no_live_tasks_now, live_tasks,
    no_live_tasks,
};

/// How long a check waits, on tokio's clock, for what it watches to reach zero
/// before it fails: one second. Long enough for any timer a drop sets off to run
/// (they run at once), short enough that a leak fails a test quickly even on a
/// runtime whose time is not paused.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(1);

/// The step of a check's wait on tokio's clock: one millisecond.
pub const WAIT_STEP: Duration = Duration::from_millis(1);

/// How many times a check lets the runtime run before it starts waiting on the
/// clock: enough for a chain of tasks that wake one another to end.
const YIELDS: usize = 256;

/// Polls `done` until it is true: first between yields to the runtime, then
/// between sleeps of [`WAIT_STEP`] on tokio's clock, for at most `wait` of that
/// clock. Returns whether it became true.
async fn settle(wait: Duration, mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..YIELDS {
        if done() {
            return true;
        }
        tokio::task::yield_now().await;
    }
    let mut waited = Duration::ZERO;
    while waited < wait {
        if done() {
            return true;
        }
        tokio::time::sleep(WAIT_STEP).await;
        waited += WAIT_STEP;
    }
    done()
}
