#![allow(clippy::disallowed_methods)] // a test is the root: it may build its own clocks

//! The admission controller on a manual clock: partitions, queue discipline,
//! deadline-aware refusal, retries, drop safety, configuration; and a property
//! test of the limit under arbitrary cancellation.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use palisade_clock::{Clock, ManualClock};
use palisade_limit::adaptive::{AdaptiveConfig, AimdConfig};
use palisade_limit::admission::{
    Acquire, Admission, AdmissionConfig, AdmissionPermit, AdmissionRejected, Criticality, Reason,
    Ticket,
};
use proptest::prelude::*;

type Result = std::result::Result<AdmissionPermit<ManualClock>, AdmissionRejected>;

fn poll(fut: &mut Acquire<ManualClock>) -> Option<Result> {
    let mut cx = TaskContext::from_waker(Waker::noop());
    match Pin::new(fut).poll(&mut cx) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

fn admission(config: AdmissionConfig) -> Admission<ManualClock> {
    Admission::with_clock(config, ManualClock::new()).unwrap()
}

fn now_ok(a: &Admission<ManualClock>, t: Ticket) -> AdmissionPermit<ManualClock> {
    poll(&mut a.acquire(t)).expect("at once").expect("admitted")
}

const CRITICAL: Criticality = Criticality::Critical;
const DEFAULT: Criticality = Criticality::Default;
const SHEDDABLE: Criticality = Criticality::Sheddable;

#[test]
fn spare_capacity_is_never_wasted() {
    // Sheddable traffic has no guaranteed share, yet takes every free slot.
    let a = admission(AdmissionConfig::fixed(4).with_shares(0.5, 0.5, 0.0));
    let permits: Vec<_> = (0..4).map(|_| now_ok(&a, Ticket::new(SHEDDABLE))).collect();
    assert_eq!(a.snapshot().in_flight, 4);
    drop(permits);
    assert_eq!(a.snapshot().in_flight, 0);
}

#[test]
fn a_class_below_its_share_is_served_first_when_full() {
    let a = admission(AdmissionConfig::fixed(4).with_shares(0.5, 0.5, 0.0));
    let mut held: Vec<_> = (0..4).map(|_| now_ok(&a, Ticket::new(DEFAULT))).collect();
    let mut d = a.acquire(Ticket::new(DEFAULT));
    let mut s = a.acquire(Ticket::new(SHEDDABLE));
    let mut c = a.acquire(Ticket::new(CRITICAL));
    assert!(poll(&mut d).is_none() && poll(&mut s).is_none() && poll(&mut c).is_none());
    assert_eq!(a.snapshot().waiting, 3);
    // Critical holds 0 of its 2 guaranteed slots: it goes first, though it came last.
    drop(held.pop());
    assert!(poll(&mut d).is_none());
    let critical = poll(&mut c).unwrap().unwrap();
    // No class is below its share now: the most critical waiting, default.
    drop(held.pop());
    assert!(poll(&mut s).is_none());
    let default = poll(&mut d).unwrap().unwrap();
    drop(held.pop());
    let sheddable = poll(&mut s).unwrap().unwrap();
    assert_eq!(a.snapshot().in_flight, 4);
    drop((critical, default, sheddable, held));
    assert_eq!(a.snapshot().in_flight, 0);
}

#[test]
fn fifo_until_overloaded_then_lifo() {
    let config = AdmissionConfig::fixed(1)
        .with_queue(100, Duration::from_secs(10))
        .with_codel(Duration::from_millis(5), Duration::from_millis(100));
    let a = admission(config);
    let mut permit = now_ok(&a, Ticket::new(DEFAULT));
    let mut waiting: Vec<_> = (0..30).map(|_| a.acquire(Ticket::new(DEFAULT))).collect();
    for w in &mut waiting {
        assert!(poll(w).is_none());
    }
    // Each waits 10 ms, above the 5 ms target: FIFO until a whole interval passes.
    let mut served = 0;
    while !a.snapshot().overloaded {
        a.clock().advance(Duration::from_millis(10));
        permit.success();
        permit = poll(&mut waiting[served]).expect("the oldest").unwrap();
        served += 1;
        assert!(served < 20, "never overloaded");
    }
    assert!(served >= 10, "overloaded after {served}");
    // Overloaded: the newest is served first.
    let mut newest = a.acquire(Ticket::new(DEFAULT));
    assert!(poll(&mut newest).is_none());
    a.clock().advance(Duration::from_millis(1));
    permit.success();
    let _newest = poll(&mut newest).unwrap().unwrap();
    assert!(poll(&mut waiting[served]).is_none());
    // It waited 1 ms, below the target: the standing queue is gone, FIFO again.
    assert!(!a.snapshot().overloaded);
}

#[test]
fn an_unmeetable_deadline_is_refused_at_once() {
    let a = admission(AdmissionConfig::fixed(2));
    let p = now_ok(&a, Ticket::new(DEFAULT));
    a.clock().advance(Duration::from_millis(50));
    p.success(); // the typical service time is now 50 ms
    let now = a.clock().now();
    let r = poll(&mut a.acquire(Ticket::new(CRITICAL).deadline(now + Duration::from_millis(20))));
    assert_eq!(r.unwrap().unwrap_err().reason(), Reason::Deadline);
    // Enough time: admitted.
    let _p1 = now_ok(
        &a,
        Ticket::new(DEFAULT).deadline(now + Duration::from_millis(80)),
    );
    let _p2 = now_ok(&a, Ticket::new(DEFAULT));
    // Full: it waits only until its deadline minus the service time (30 ms).
    let mut w = a.acquire(Ticket::new(DEFAULT).deadline(now + Duration::from_millis(80)));
    assert!(poll(&mut w).is_none());
    a.clock().advance(Duration::from_millis(29));
    assert!(poll(&mut w).is_none());
    a.clock().advance(Duration::from_millis(1));
    assert_eq!(
        poll(&mut w).unwrap().unwrap_err().reason(),
        Reason::Deadline
    );
    assert_eq!(a.snapshot().waiting, 0);
    assert_eq!(a.snapshot().refused[Reason::Deadline as usize], 2);
}

#[test]
fn expired_entries_are_dropped_when_reached() {
    let a = admission(AdmissionConfig::fixed(1).with_queue(10, Duration::from_secs(1)));
    let p = now_ok(&a, Ticket::new(DEFAULT));
    let now = a.clock().now();
    let mut soon = a.acquire(Ticket::new(DEFAULT).deadline(now + Duration::from_millis(10)));
    let mut later = a.acquire(Ticket::new(DEFAULT));
    assert!(poll(&mut soon).is_none() && poll(&mut later).is_none());
    a.clock().advance(Duration::from_millis(20));
    // The freed slot reaches `soon` first: expired, it is dropped, `later` gets it.
    drop(p);
    assert!(poll(&mut later).unwrap().is_ok());
    assert_eq!(
        poll(&mut soon).unwrap().unwrap_err().reason(),
        Reason::Deadline
    );
}

#[test]
fn retries_are_shed_before_first_attempts() {
    let a = admission(AdmissionConfig::fixed(1));
    let p = now_ok(&a, Ticket::new(DEFAULT).retry(true)); // a free slot: admitted
    let r = poll(&mut a.acquire(Ticket::new(CRITICAL).retry(true))).unwrap();
    let e = r.unwrap_err();
    assert_eq!(
        (e.reason(), e.is_retry(), e.class()),
        (Reason::Retry, true, CRITICAL)
    );
    let mut first = a.acquire(Ticket::new(SHEDDABLE));
    assert!(poll(&mut first).is_none()); // a first attempt waits
    drop(p);
    assert!(poll(&mut first).unwrap().is_ok());
}

#[test]
fn a_full_queue_evicts_the_least_critical() {
    let a = admission(AdmissionConfig::fixed(1).with_queue(2, Duration::from_secs(1)));
    let _p = now_ok(&a, Ticket::new(DEFAULT));
    let mut s1 = a.acquire(Ticket::new(SHEDDABLE));
    let mut s2 = a.acquire(Ticket::new(SHEDDABLE));
    assert!(poll(&mut s1).is_none() && poll(&mut s2).is_none());
    let mut s3 = a.acquire(Ticket::new(SHEDDABLE));
    assert_eq!(
        poll(&mut s3).unwrap().unwrap_err().reason(),
        Reason::QueueFull
    );
    let mut c = a.acquire(Ticket::new(CRITICAL));
    assert!(poll(&mut c).is_none());
    assert_eq!(
        poll(&mut s1).unwrap().unwrap_err().reason(),
        Reason::Evicted
    );
    assert!(poll(&mut s2).is_none());
    assert_eq!(a.snapshot().waiting, 2);
}

#[test]
fn dropped_waiters_and_permits_free_what_they_held() {
    let a = admission(AdmissionConfig::fixed(1).with_queue(1, Duration::from_secs(1)));
    let p = now_ok(&a, Ticket::new(DEFAULT));
    let mut w = a.acquire(Ticket::new(DEFAULT));
    assert!(poll(&mut w).is_none());
    drop(w); // leaves the queue: its place is free
    let mut w2 = a.acquire(Ticket::new(DEFAULT));
    assert!(poll(&mut w2).is_none());
    drop(p); // granted to w2, which is dropped before it sees it: passed on
    drop(w2);
    let s = a.snapshot();
    assert_eq!((s.in_flight, s.waiting), (0, 0));
    let _p = now_ok(&a, Ticket::new(DEFAULT));
}

#[test]
fn a_queue_wait_times_out() {
    let a = admission(AdmissionConfig::fixed(1).with_queue(1, Duration::from_millis(50)));
    let _p = now_ok(&a, Ticket::new(DEFAULT));
    let mut w = a.acquire(Ticket::new(DEFAULT));
    assert!(poll(&mut w).is_none());
    a.clock().advance(Duration::from_millis(50));
    assert_eq!(
        poll(&mut w).unwrap().unwrap_err().reason(),
        Reason::QueueTimeout
    );
    // No queue at all: refused at once.
    let b = admission(AdmissionConfig::fixed(1).with_queue(0, Duration::ZERO));
    let _q = now_ok(&b, Ticket::new(DEFAULT));
    let r = poll(&mut b.acquire(Ticket::new(CRITICAL))).unwrap();
    assert_eq!(r.unwrap_err().reason(), Reason::QueueFull);
}

#[test]
fn the_limit_adapts_from_reports() {
    let mut aimd = AimdConfig::default();
    aimd.initial_limit = 4;
    aimd.min_limit = 1;
    aimd.max_limit = 10;
    let a = admission(AdmissionConfig::default().with_limit(AdaptiveConfig::Aimd(aimd)));
    let permits: Vec<_> = (0..4).map(|_| now_ok(&a, Ticket::new(DEFAULT))).collect();
    for p in permits {
        p.dropped();
    }
    assert!(a.limit() < 4, "{}", a.limit());
}

#[test]
fn configuration_errors_name_the_field() {
    let e = AdmissionConfig::default()
        .with_shares(0.6, 0.5, 0.0)
        .validate()
        .unwrap_err();
    assert!(e.field().contains("critical_share"), "{e}");
    assert!(e.to_string().contains("1.1"), "{e}");
    let e = AdmissionConfig::default()
        .with_codel(Duration::from_millis(200), Duration::from_millis(100))
        .validate()
        .unwrap_err();
    assert_eq!(e.field(), "target");
    assert_eq!(
        AdmissionConfig::fixed(0).validate().unwrap_err().field(),
        "limit.max_limit"
    );
    let e = toml::from_str::<AdmissionConfig>("critical_share = 1.5")
        .unwrap()
        .validate();
    assert_eq!(e.unwrap_err().field(), "critical_share");
    assert!(Admission::new(AdmissionConfig::fixed(0)).is_err());
    assert!(toml::from_str::<AdmissionConfig>("queue = 3").is_err());
}

#[derive(Clone, Debug)]
enum Op {
    Acquire {
        class: u8,
        retry: bool,
        deadline_ms: Option<u8>,
    },
    DropWaiter(usize),
    PollAll,
    Release {
        index: usize,
        report: u8,
    },
    Advance(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, any::<bool>(), proptest::option::of(0u8..60))
            .prop_map(|(class, retry, deadline_ms)| Op::Acquire { class, retry, deadline_ms }),
        2 => any::<usize>().prop_map(Op::DropWaiter),
        2 => Just(Op::PollAll),
        3 => (any::<usize>(), 0u8..3).prop_map(|(index, report)| Op::Release { index, report }),
        2 => (0u8..30).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever is cancelled, granted or reported, the slots in use never grow
    /// beyond the limit of the moment, and the accounts close at zero.
    #[test]
    fn admitted_never_exceeds_the_limit(ops in proptest::collection::vec(op(), 1..120)) {
        let mut aimd = AimdConfig::default();
        aimd.initial_limit = 3;
        aimd.min_limit = 1;
        aimd.max_limit = 6;
        aimd.timeout = Duration::from_millis(20);
        let config = AdmissionConfig::default()
            .with_limit(AdaptiveConfig::Aimd(aimd))
            .with_shares(0.4, 0.3, 0.2)
            .with_queue(4, Duration::from_millis(40))
            .with_codel(Duration::from_millis(5), Duration::from_millis(30));
        let a = admission(config);
        let mut waiters: Vec<Acquire<ManualClock>> = Vec::new();
        let mut permits: Vec<AdmissionPermit<ManualClock>> = Vec::new();
        for op in ops {
            let before = a.snapshot().in_flight;
            match op {
                Op::Acquire { class, retry, deadline_ms } => {
                    let mut t = Ticket::new(Criticality::ALL[usize::from(class)]).retry(retry);
                    if let Some(ms) = deadline_ms {
                        t = t.deadline(a.clock().now() + Duration::from_millis(u64::from(ms)));
                    }
                    let mut w = a.acquire(t);
                    match poll(&mut w) {
                        Some(Ok(p)) => permits.push(p),
                        Some(Err(_)) => {}
                        None => waiters.push(w),
                    }
                }
                Op::DropWaiter(i) => {
                    if !waiters.is_empty() {
                        let i = i % waiters.len();
                        drop(waiters.swap_remove(i));
                    }
                }
                Op::PollAll => {
                    let mut still = Vec::new();
                    for mut w in waiters.drain(..) {
                        match poll(&mut w) {
                            Some(Ok(p)) => permits.push(p),
                            Some(Err(_)) => {}
                            None => still.push(w),
                        }
                    }
                    waiters = still;
                }
                Op::Release { index, report } => {
                    if !permits.is_empty() {
                        let p = permits.swap_remove(index % permits.len());
                        match report {
                            0 => p.success(),
                            1 => p.dropped(),
                            _ => drop(p),
                        }
                    }
                }
                Op::Advance(ms) => a.clock().advance(Duration::from_millis(u64::from(ms))),
            }
            let s = a.snapshot();
            prop_assert!(
                s.in_flight <= before.max(s.limit),
                "{} in flight after {} with a limit of {}", s.in_flight, before, s.limit
            );
            prop_assert!(permits.len() as u32 <= s.in_flight);
            prop_assert!(s.waiting as usize <= waiters.len());
        }
        drop(waiters);
        drop(permits);
        let s = a.snapshot();
        prop_assert_eq!((s.in_flight, s.waiting), (0, 0));
    }
}
