//! Concurrency models: run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p palisade-endpoint --test loom --target-dir target/loom`.
//!
//! Each model has a broken twin that switches a deliberate bug on and must fail,
//! which shows the model reaches the interleaving the real code guards against.
#![cfg(loom)]
#![allow(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use futures_util::task::noop_waker;
use loom::thread;
use palisade_context::Context;
use palisade_endpoint::__loom::{Bug, set};
use palisade_endpoint::Coalesce;

fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    let waker = noop_waker();
    let mut cx = TaskContext::from_waker(&waker);
    Pin::new(fut).poll(&mut cx)
}

/// One caller starts a flight and leaves it (its last caller), racing a second
/// caller of the same key. Whichever way it goes, the second caller's flight is
/// in the map for as long as that caller waits: a flight that ends never removes
/// the entry of a later one (which would let a third caller start a concurrent
/// duplicate call).
fn a_flight_that_ends_leaves_a_later_flight_in_place() {
    loom::model(|| {
        let c: Coalesce<u8, u8, ()> = Coalesce::new();
        let ctx = Context::background();
        let c2 = c.clone();
        let ctx2 = ctx.clone();
        let t = thread::spawn(move || {
            let mut first = c2.call(&ctx2, 1, |_| std::future::pending());
            assert!(poll_once(&mut first).is_pending());
            drop(first);
        });
        let mut second = c.call(&ctx, 1, |_| std::future::pending());
        assert!(poll_once(&mut second).is_pending());
        t.join().unwrap();
        assert!(
            c.contains(&1),
            "the flight of a waiting caller lost its entry"
        );
        drop(second);
        assert!(!c.contains(&1), "the last caller's flight left its entry");
    });
}

#[test]
fn flight_removal() {
    set(Bug::None);
    a_flight_that_ends_leaves_a_later_flight_in_place();
}

#[test]
#[should_panic(expected = "lost its entry")]
fn flight_removal_broken() {
    set(Bug::RemoveAnyFlight);
    a_flight_that_ends_leaves_a_later_flight_in_place();
}

/// A call that is pending on its first poll and ends on its second.
struct TwoPolls(bool);

impl Future for TwoPolls {
    type Output = Result<u8, ()>;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        if self.0 {
            Poll::Ready(Ok(5))
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

/// The caller that drives a flight polls it once and is dropped, racing a
/// follower's poll. Whichever way it goes, once the driver has gone the follower
/// carries the call on: its next poll ends the call.
fn a_dropped_driver_hands_the_call_on() {
    loom::model(|| {
        let c: Coalesce<u8, u8, ()> = Coalesce::new();
        let ctx = Context::background();
        let mut leader = c.call(&ctx, 1, |_| TwoPolls(false));
        let mut follower = c.call(&ctx, 1, |_| TwoPolls(false));
        assert!(follower.joined());
        let t = thread::spawn(move || {
            let _ = poll_once(&mut leader);
            drop(leader);
        });
        let first = poll_once(&mut follower);
        t.join().unwrap();
        let outcome = match first {
            Poll::Ready(r) => r,
            Poll::Pending => match poll_once(&mut follower) {
                Poll::Ready(r) => r,
                Poll::Pending => panic!("the driver left without handing the call on"),
            },
        };
        assert_eq!(outcome.unwrap(), 5);
        drop(follower);
        assert!(!c.contains(&1));
    });
}

#[test]
fn driver_hand_over() {
    set(Bug::None);
    a_dropped_driver_hands_the_call_on();
}

#[test]
#[should_panic(expected = "without handing the call on")]
fn driver_hand_over_broken() {
    set(Bug::KeepDriverRole);
    a_dropped_driver_hands_the_call_on();
}
