#![allow(clippy::disallowed_methods)] // a test is the root: it may use any clock
//! The admission controller in virtual time: partitions, queue discipline,
//! deadline-aware refusal, drop safety, configuration, and a property of the limit.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use palisade_clock::{Clock, TokioClock};
use palisade_limit::adaptive::{AdaptiveConfig, AimdConfig};
use palisade_limit::admission::{
    AdmissionConfig, AdmissionController, AdmissionPermit, Admit, Criticality, Reason, Refused,
    Request, Shares,
};
use proptest::prelude::*;

fn fixed(limit: u32) -> AdmissionConfig {
    let mut aimd = AimdConfig::default();
    aimd.initial_limit = limit;
    aimd.min_limit = limit;
    aimd.max_limit = limit;
    AdmissionConfig::new(AdaptiveConfig::Aimd(aimd))
}

fn poll(admit: &mut Admit) -> Poll<Result<AdmissionPermit, Refused>> {
    let mut cx = TaskContext::from_waker(Waker::noop());
    Pin::new(admit).poll(&mut cx)
}

fn ready(admit: &mut Admit) -> AdmissionPermit {
    match poll(admit) {
        Poll::Ready(Ok(p)) => p,
        other => panic!("expected a permit, got {other:?}"),
    }
}

fn refused(admit: &mut Admit) -> Reason {
    match poll(admit) {
        Poll::Ready(Err(e)) => e.reason(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn fill(c: &AdmissionController, n: u32, class: Criticality) -> Vec<AdmissionPermit> {
    (0..n)
        .map(|_| c.try_acquire(Request::new(class)).unwrap())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn spare_capacity_goes_to_any_class() {
    let c = AdmissionController::new(fixed(4)).unwrap();
    // Sheddable's share is 10 %, yet it may take the whole limit while it is free.
    let permits = fill(&c, 4, Criticality::Sheddable);
    assert_eq!(c.in_flight(), 4);
    let e = c
        .try_acquire(Request::new(Criticality::Critical))
        .unwrap_err();
    assert_eq!(e.reason(), Reason::LimitReached);
    drop(permits);
    assert_eq!(c.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_freed_slot_goes_to_a_class_below_its_share_then_by_rank() {
    let c = AdmissionController::new(fixed(4)).unwrap();
    let mut permits = fill(&c, 4, Criticality::Sheddable);
    let mut sheddable = c.acquire(Request::new(Criticality::Sheddable));
    let mut retry = c.acquire(Request::new(Criticality::Critical).with_retry(true));
    let mut default = c.acquire(Request::new(Criticality::Default));
    let mut critical = c.acquire(Request::new(Criticality::Critical));
    for a in [&mut sheddable, &mut retry, &mut default, &mut critical] {
        assert!(poll(a).is_pending());
    }
    assert_eq!(c.queued(), 4);
    permits.pop();
    let first = ready(&mut critical);
    assert!(poll(&mut retry).is_pending());
    permits.pop();
    // Critical is still below its share (1 of 4 < 50 %): its retry comes before default.
    let second = ready(&mut retry);
    permits.pop();
    let third = ready(&mut default);
    permits.pop();
    let fourth = ready(&mut sheddable);
    assert_eq!(c.in_flight(), 4);
    drop((first, second, third, fourth));
}

#[tokio::test(start_paused = true)]
async fn shares_decide_between_classes_when_full() {
    let mut shares = Shares::default();
    shares.critical = 0.25;
    shares.default = 0.75;
    shares.sheddable = 0.0;
    let c = AdmissionController::new(fixed(4).with_shares(shares)).unwrap();
    let mut permits = fill(&c, 3, Criticality::Critical);
    permits.extend(fill(&c, 1, Criticality::Default));
    let mut critical = c.acquire(Request::new(Criticality::Critical));
    let mut default = c.acquire(Request::new(Criticality::Default));
    assert!(poll(&mut critical).is_pending());
    assert!(poll(&mut default).is_pending());
    // Critical holds 2 of 4 after the release, above its 25 %; default holds 1,
    // below its 75 %: default goes first although it ranks lower.
    drop(permits.remove(0));
    let _d = ready(&mut default);
    assert!(poll(&mut critical).is_pending());
}

#[tokio::test(start_paused = true)]
async fn fifo_normally_lifo_while_overloaded() {
    let config = fixed(1).with_codel(Duration::from_millis(5), Duration::from_millis(100));
    let c = AdmissionController::new(config).unwrap();
    let permit = c.try_acquire(Request::new(Criticality::Default)).unwrap();
    let mut a = c.acquire(Request::new(Criticality::Default));
    let mut b = c.acquire(Request::new(Criticality::Default));
    assert!(poll(&mut a).is_pending());
    assert!(poll(&mut b).is_pending());
    tokio::time::advance(Duration::from_millis(110)).await;
    drop(permit);
    let permit = ready(&mut a); // FIFO: the oldest first
    assert!(!c.is_overloaded());
    let mut newest = c.acquire(Request::new(Criticality::Default));
    assert!(poll(&mut newest).is_pending());
    // Over that interval the shortest wait was 110 ms, above the 5 ms target.
    tokio::time::advance(Duration::from_millis(110)).await;
    drop(permit);
    assert!(c.is_overloaded());
    let _p = ready(&mut newest); // LIFO: the newest first
    assert!(poll(&mut b).is_pending());
    // While overloaded a waiter waits at most the target.
    let mut short = c.acquire(Request::new(Criticality::Default));
    assert!(poll(&mut short).is_pending());
    tokio::time::advance(Duration::from_millis(6)).await;
    assert_eq!(refused(&mut short), Reason::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_that_cannot_be_met_is_refused_at_once() {
    let c = AdmissionController::new(fixed(1)).unwrap();
    let now = TokioClock.now();
    let mut late = c.acquire(Request::new(Criticality::Critical).with_deadline(Some(now)));
    assert_eq!(refused(&mut late), Reason::Deadline);
    // Teach it a service time of 50 ms.
    let p = c.try_acquire(Request::new(Criticality::Default)).unwrap();
    tokio::time::advance(Duration::from_millis(50)).await;
    p.success();
    assert_eq!(c.service_time(), Duration::from_millis(50));
    let soon = TokioClock.now() + Duration::from_millis(20);
    let e = c
        .try_acquire(Request::new(Criticality::Critical).with_deadline(Some(soon)))
        .unwrap_err();
    assert_eq!(e.reason(), Reason::Deadline);
    assert_eq!(
        c.snapshot()
            .refused(Criticality::Critical, Reason::Deadline),
        2
    );
    // One that can be met waits, at most until its deadline less the service time.
    let _hold = c.try_acquire(Request::new(Criticality::Default)).unwrap();
    let later = TokioClock.now() + Duration::from_millis(80);
    let mut waits = c.acquire(Request::new(Criticality::Default).with_deadline(Some(later)));
    assert!(poll(&mut waits).is_pending());
    tokio::time::advance(Duration::from_millis(29)).await;
    assert!(poll(&mut waits).is_pending());
    tokio::time::advance(Duration::from_millis(2)).await;
    assert_eq!(refused(&mut waits), Reason::Deadline);
    assert_eq!(c.queued(), 0);
}

#[tokio::test(start_paused = true)]
async fn expired_entries_are_dropped_when_reached() {
    let c = AdmissionController::new(fixed(1)).unwrap();
    let hold = c.try_acquire(Request::new(Criticality::Default)).unwrap();
    let deadline = TokioClock.now() + Duration::from_millis(150);
    let mut expiring = c.acquire(Request::new(Criticality::Critical).with_deadline(Some(deadline)));
    let mut patient = c.acquire(Request::new(Criticality::Default));
    assert!(poll(&mut expiring).is_pending());
    assert!(poll(&mut patient).is_pending());
    // The hold took 100 ms: the 50 ms the critical request has left no longer
    // cover the service time, so the slot goes past it.
    tokio::time::advance(Duration::from_millis(100)).await;
    hold.success();
    assert_eq!(refused(&mut expiring), Reason::Expired);
    let _p = ready(&mut patient);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_evicts_the_lowest_rank() {
    let c = AdmissionController::new(fixed(1).with_queue(2, Duration::from_secs(1))).unwrap();
    let _hold = c.try_acquire(Request::new(Criticality::Default)).unwrap();
    let mut shed = c.acquire(Request::new(Criticality::Sheddable));
    let mut retry = c.acquire(Request::new(Criticality::Default).with_retry(true));
    assert!(poll(&mut shed).is_pending());
    assert!(poll(&mut retry).is_pending());
    let mut critical = c.acquire(Request::new(Criticality::Critical));
    assert!(poll(&mut critical).is_pending());
    assert_eq!(refused(&mut shed), Reason::Evicted);
    let mut another = c.acquire(Request::new(Criticality::Default).with_retry(true));
    assert_eq!(refused(&mut another), Reason::QueueFull);
    assert!(poll(&mut retry).is_pending());
}

#[tokio::test(start_paused = true)]
async fn dropping_a_waiter_or_a_permit_frees_its_place() {
    let c = AdmissionController::new(fixed(1)).unwrap();
    let hold = c.try_acquire(Request::new(Criticality::Default)).unwrap();
    let mut gone = c.acquire(Request::new(Criticality::Default));
    let mut next = c.acquire(Request::new(Criticality::Default));
    assert!(poll(&mut gone).is_pending());
    assert!(poll(&mut next).is_pending());
    drop(hold);
    // The slot was granted to `gone`, which is dropped before taking it.
    drop(gone);
    let p = ready(&mut next);
    assert_eq!(c.in_flight(), 1);
    drop(p);
    assert_eq!((c.in_flight(), c.queued()), (0, 0));
}

#[test]
fn configuration_errors_name_the_field() {
    let mut shares = Shares::default();
    shares.critical = 0.8;
    let e = AdmissionConfig::default()
        .with_shares(shares)
        .validate()
        .unwrap_err();
    assert_eq!(e.field(), "shares");
    assert!(e.to_string().contains("130 %"), "{e}");
    let e = AdmissionConfig::default()
        .with_codel(Duration::from_millis(200), Duration::from_millis(100))
        .validate()
        .unwrap_err();
    assert_eq!(e.field(), "target");
    let mut aimd = AimdConfig::default();
    aimd.max_limit = 0;
    let e = AdmissionConfig::new(AdaptiveConfig::Aimd(aimd))
        .validate()
        .unwrap_err();
    assert_eq!(e.field(), "limit.max_limit");
    let config: AdmissionConfig = toml::from_str(
        "max_queue = 10\ntarget = \"10ms\"\n[limit]\nalgorithm = \"vegas\"\n[shares]\ncritical = 0.5\n",
    )
    .unwrap();
    assert_eq!(config.target, Duration::from_millis(10));
    assert!(config.validate().is_ok());
}

#[derive(Clone, Debug)]
enum Op {
    Arrive(u8, bool),
    FinishOldest,
    FinishNewest,
    DropWaiter(usize),
    Advance(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, any::<bool>()).prop_map(|(c, r)| Op::Arrive(c, r)),
        2 => Just(Op::FinishOldest),
        1 => Just(Op::FinishNewest),
        2 => (0usize..16).prop_map(Op::DropWaiter),
        1 => (0u8..20).prop_map(Op::Advance),
    ]
}

proptest! {
    /// Under arbitrary arrivals, completions, cancellations and time, the admitted
    /// count never exceeds the limit, and everything is given back at the end.
    #[test]
    fn admitted_never_exceeds_the_limit(limit in 1u32..6, ops in prop::collection::vec(op(), 1..120)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async move {
            let c = AdmissionController::new(fixed(limit).with_queue(4, Duration::from_millis(50))).unwrap();
            let mut held: Vec<AdmissionPermit> = Vec::new();
            let mut waiting: Vec<Admit> = Vec::new();
            for op in ops {
                match op {
                    Op::Arrive(class, retry) => {
                        let deadline = TokioClock.now() + Duration::from_millis(30);
                        let req = Request::new(Criticality::ALL[class as usize]).with_retry(retry).with_deadline(Some(deadline));
                        waiting.push(c.acquire(req));
                    }
                    Op::FinishOldest => { if !held.is_empty() { held.remove(0).success(); } }
                    Op::FinishNewest => { drop(held.pop()); }
                    Op::DropWaiter(i) => { if !waiting.is_empty() { let i = i % waiting.len(); drop(waiting.remove(i)); } }
                    Op::Advance(ms) => tokio::time::advance(Duration::from_millis(u64::from(ms))).await,
                }
                let mut still = Vec::new();
                for mut w in waiting.drain(..) {
                    match poll(&mut w) {
                        Poll::Ready(Ok(p)) => held.push(p),
                        Poll::Ready(Err(_)) => {}
                        Poll::Pending => still.push(w),
                    }
                }
                waiting = still;
                prop_assert!(c.in_flight() <= c.limit(), "{} > {}", c.in_flight(), c.limit());
                prop_assert!(held.len() as u32 <= c.in_flight());
                prop_assert!(c.queued() as usize <= 4);
            }
            drop(waiting);
            drop(held);
            prop_assert_eq!((c.in_flight(), c.queued()), (0, 0));
            Ok(())
        })?;
    }
}
