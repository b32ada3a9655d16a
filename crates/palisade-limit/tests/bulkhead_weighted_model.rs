//! The bulkhead with several permits per call, closing and its counters, against a
//! plain reference model: random steps applied to both, with the outcome of every
//! step and the snapshot after it compared.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use palisade_clock::{Clock, ManualClock, Timestamp};
use palisade_limit::bulkhead::AcquireMany;
use palisade_limit::{Bulkhead, BulkheadConfig, BulkheadFull, Permits};
use proptest::prelude::*;

const MAX_QUEUE: usize = 3;
const MAX_WAIT: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
enum Step {
    TryAcquire(u32),
    StartWait(u32),
    PollWaiter(usize),
    DropWaiter(usize),
    DropPermit(usize),
    SetLimit(u32),
    Close,
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u32..5).prop_map(Step::TryAcquire),
        4 => (0u32..5).prop_map(Step::StartWait),
        4 => (0usize..8).prop_map(Step::PollWaiter),
        1 => (0usize..8).prop_map(Step::DropWaiter),
        4 => (0usize..8).prop_map(Step::DropPermit),
        1 => (1u32..5).prop_map(Step::SetLimit),
        1 => Just(Step::Close),
        2 => (0u64..80).prop_map(Step::Advance),
    ]
}

#[derive(Copy, Clone, Debug, PartialEq)]
enum Refused {
    Closed,
    TooMany,
}

#[derive(Default)]
struct Model {
    limit: u32,
    in_use: u32,
    closed: bool,
    /// `(id, permits, deadline)`, oldest first.
    queue: VecDeque<(u64, u32, Timestamp)>,
    granted: HashMap<u64, u32>,
    refused: HashMap<u64, Refused>,
    rejected: u64,
    timed_out: u64,
    cancelled: u64,
}

impl Model {
    fn free_for(&self, n: u32) -> bool {
        !self.closed && self.queue.is_empty() && self.in_use + n <= self.limit
    }

    /// The refusal of a call that found no free permits.
    fn refusal(&self, n: u32) -> Option<Refused> {
        if self.closed {
            Some(Refused::Closed)
        } else if n > self.limit {
            Some(Refused::TooMany)
        } else {
            None
        }
    }

    fn grant_fitting(&mut self) {
        while let Some(&(id, n, _)) = self.queue.front() {
            if n > self.limit {
                self.refused.insert(id, Refused::TooMany);
            } else if self.in_use + n <= self.limit {
                self.granted.insert(id, n);
                self.in_use += n;
            } else {
                break;
            }
            self.queue.pop_front();
        }
    }

    fn release(&mut self, n: u32) {
        self.in_use -= n;
        self.grant_fitting();
    }

    fn remove(&mut self, id: u64) {
        let pos = self.queue.iter().position(|w| w.0 == id).unwrap();
        self.queue.remove(pos);
        if pos == 0 {
            self.grant_fitting();
        }
    }
}

fn kind(e: &BulkheadFull) -> Option<Refused> {
    if e.is_closed() {
        Some(Refused::Closed)
    } else if e.exceeds_capacity() {
        Some(Refused::TooMany)
    } else {
        None
    }
}

struct Waiting<'a> {
    id: u64,
    future: Pin<Box<AcquireMany<'a, ManualClock>>>,
}

fn poll<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn weighted_bulkhead_matches_the_model(steps in proptest::collection::vec(step(), 1..120)) {
        let clock = ManualClock::new();
        let bulkhead = Bulkhead::with_clock(
            BulkheadConfig::new(3).with_queue(MAX_QUEUE as u32, MAX_WAIT),
            clock.clone(),
        ).unwrap();
        let mut model = Model { limit: 3, ..Model::default() };
        let mut permits: Vec<Permits<'_>> = Vec::new();
        let mut waiting: Vec<Waiting<'_>> = Vec::new();
        let mut next_id = 0u64;

        for step in steps {
            match step {
                Step::TryAcquire(n) => match bulkhead.try_acquire_many(n) {
                    Ok(p) => {
                        prop_assert!(model.free_for(n), "acquired past the model");
                        prop_assert_eq!(p.count(), n);
                        model.in_use += n;
                        permits.push(p);
                    }
                    Err(e) => {
                        prop_assert!(!model.free_for(n), "refused where the model admits");
                        prop_assert_eq!(kind(&e), model.refusal(n));
                        prop_assert!(!e.is_timed_out());
                        model.rejected += 1;
                    }
                },
                Step::StartWait(n) => {
                    let mut future = Box::pin(bulkhead.acquire_many(n));
                    let result = poll(future.as_mut());
                    if model.free_for(n) {
                        let Poll::Ready(Ok(p)) = result else {
                            return Err(TestCaseError::fail(format!("expected permits, got {result:?}")));
                        };
                        model.in_use += n;
                        permits.push(p);
                    } else if let Some(r) = model.refusal(n) {
                        prop_assert!(matches!(result, Poll::Ready(Err(ref e)) if kind(e) == Some(r)), "{result:?}");
                        model.rejected += 1;
                    } else if model.queue.len() >= MAX_QUEUE {
                        prop_assert!(matches!(result, Poll::Ready(Err(ref e)) if e.is_queue_full()), "{result:?}");
                        model.rejected += 1;
                    } else {
                        prop_assert!(result.is_pending(), "{result:?}");
                        model.queue.push_back((next_id, n, clock.now() + MAX_WAIT));
                        waiting.push(Waiting { id: next_id, future });
                        next_id += 1;
                    }
                }
                Step::PollWaiter(i) if !waiting.is_empty() => {
                    let i = i % waiting.len();
                    let id = waiting[i].id;
                    let result = poll(waiting[i].future.as_mut());
                    if let Some(n) = model.granted.remove(&id) {
                        let Poll::Ready(Ok(p)) = result else {
                            return Err(TestCaseError::fail(format!("granted waiter got {result:?}")));
                        };
                        prop_assert_eq!(p.count(), n);
                        permits.push(p);
                        waiting.remove(i);
                    } else if let Some(r) = model.refused.remove(&id) {
                        prop_assert!(matches!(result, Poll::Ready(Err(ref e)) if kind(e) == Some(r)), "{result:?}");
                        model.rejected += 1;
                        waiting.remove(i);
                    } else {
                        let deadline = model.queue.iter().find(|w| w.0 == id).unwrap().2;
                        if clock.now() >= deadline {
                            prop_assert!(matches!(result, Poll::Ready(Err(ref e)) if e.is_timed_out()), "{result:?}");
                            model.remove(id);
                            model.timed_out += 1;
                            waiting.remove(i);
                        } else {
                            prop_assert!(result.is_pending(), "{result:?}");
                        }
                    }
                }
                Step::DropWaiter(i) if !waiting.is_empty() => {
                    let w = waiting.remove(i % waiting.len());
                    drop(w.future);
                    if let Some(n) = model.granted.remove(&w.id) {
                        model.release(n);
                    } else if model.refused.remove(&w.id).is_some() {
                        model.rejected += 1;
                    } else {
                        model.remove(w.id);
                        model.cancelled += 1;
                    }
                }
                Step::DropPermit(i) if !permits.is_empty() => {
                    let p = permits.remove(i % permits.len());
                    let n = p.count();
                    drop(p);
                    model.release(n);
                }
                Step::SetLimit(n) => {
                    bulkhead.set_limit(n).unwrap();
                    model.limit = n;
                    let refused: Vec<u64> =
                        model.queue.iter().filter(|w| w.1 > n).map(|w| w.0).collect();
                    model.queue.retain(|w| w.1 <= n);
                    for id in refused {
                        model.refused.insert(id, Refused::TooMany);
                    }
                    model.grant_fitting();
                }
                Step::Close => {
                    bulkhead.close();
                    if !model.closed {
                        model.closed = true;
                        for (id, _, _) in model.queue.drain(..) {
                            model.refused.insert(id, Refused::Closed);
                        }
                    }
                }
                Step::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                _ => {}
            }
            let s = bulkhead.snapshot();
            prop_assert_eq!(s.in_flight, model.in_use);
            prop_assert_eq!(s.waiting as usize, model.queue.len());
            prop_assert_eq!(s.closed, model.closed);
            prop_assert_eq!(
                (s.rejected, s.timed_out, s.cancelled),
                (model.rejected, model.timed_out, model.cancelled)
            );
        }
        drop(waiting);
        drop(permits);
        let s = bulkhead.snapshot();
        prop_assert_eq!((s.in_flight, s.waiting), (0, 0));
        prop_assert_eq!(clock.pending_sleeps(), 0);
    }
}
