//! The bulkhead against a plain reference model: random steps (acquire, wait, poll,
//! give up, release, change the limit, let time pass) applied to both, with the
//! outcome of every step and the counters after it compared.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use palisade_clock::{Clock, ManualClock, Timestamp};
use palisade_limit::bulkhead::Acquire;
use palisade_limit::{Bulkhead, BulkheadConfig, Permit};
use proptest::prelude::*;

const MAX_QUEUE: usize = 3;
const MAX_WAIT: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
enum Step {
    TryAcquire,
    StartWait,
    PollWaiter(usize),
    DropWaiter(usize),
    DropPermit(usize),
    SetLimit(u32),
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::TryAcquire),
        3 => Just(Step::StartWait),
        4 => (0usize..8).prop_map(Step::PollWaiter),
        1 => (0usize..8).prop_map(Step::DropWaiter),
        4 => (0usize..8).prop_map(Step::DropPermit),
        1 => (1u32..5).prop_map(Step::SetLimit),
        2 => (0u64..80).prop_map(Step::Advance),
    ]
}

/// The model: counts, a FIFO queue of (waiter, deadline) and the set of waiters
/// granted a permit they have not collected.
struct Model {
    limit: u32,
    in_use: u32,
    queue: VecDeque<(u64, Timestamp)>,
    granted: HashSet<u64>,
}

impl Model {
    fn release(&mut self) {
        if !self.queue.is_empty() && self.in_use <= self.limit {
            let (w, _) = self.queue.pop_front().unwrap();
            self.granted.insert(w);
        } else {
            self.in_use -= 1;
        }
    }

    fn admit_waiters(&mut self) {
        while !self.queue.is_empty() && self.in_use < self.limit {
            let (w, _) = self.queue.pop_front().unwrap();
            self.granted.insert(w);
            self.in_use += 1;
        }
    }
}

struct Waiting<'a> {
    id: u64,
    future: Pin<Box<Acquire<'a, ManualClock>>>,
}

fn poll<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn bulkhead_matches_the_model(steps in proptest::collection::vec(step(), 1..120)) {
        let clock = ManualClock::new();
        let bulkhead = Bulkhead::with_clock(
            BulkheadConfig::new(2).with_queue(MAX_QUEUE as u32, MAX_WAIT),
            clock.clone(),
        ).unwrap();
        let mut model = Model { limit: 2, in_use: 0, queue: VecDeque::new(), granted: HashSet::new() };
        let mut permits: Vec<Permit<'_>> = Vec::new();
        let mut waiting: Vec<Waiting<'_>> = Vec::new();
        let mut next_id = 0u64;

        for step in steps {
            match step {
                Step::TryAcquire => {
                    let expected = model.queue.is_empty() && model.in_use < model.limit;
                    match bulkhead.try_acquire() {
                        Ok(p) => {
                            prop_assert!(expected, "acquired past the model");
                            model.in_use += 1;
                            permits.push(p);
                        }
                        Err(e) => {
                            prop_assert!(!expected, "refused where the model admits");
                            prop_assert!(!e.is_queue_full() && !e.is_timed_out());
                        }
                    }
                }
                Step::StartWait => {
                    let mut future = Box::pin(bulkhead.acquire());
                    let result = poll(future.as_mut());
                    if model.queue.is_empty() && model.in_use < model.limit {
                        let Poll::Ready(Ok(p)) = result else {
                            return Err(TestCaseError::fail(format!("expected a permit, got {result:?}")));
                        };
                        model.in_use += 1;
                        permits.push(p);
                    } else if model.queue.len() >= MAX_QUEUE {
                        prop_assert!(matches!(result, Poll::Ready(Err(ref e)) if e.is_queue_full()), "{result:?}");
                    } else {
                        prop_assert!(result.is_pending(), "{result:?}");
                        model.queue.push_back((next_id, clock.now() + MAX_WAIT));
                        waiting.push(Waiting { id: next_id, future });
                        next_id += 1;
                    }
                }
                Step::PollWaiter(i) if !waiting.is_empty() => {
                    let i = i % waiting.len();
                    let id = waiting[i].id;
                    let result = poll(waiting[i].future.as_mut());
                    if model.granted.remove(&id) {
                        let Poll::Ready(Ok(p)) = result else {
                            return Err(TestCaseError::fail(format!("granted waiter got {result:?}")));
                        };
                        permits.push(p);
                        waiting.remove(i);
                    } else {
                        let pos = model.queue.iter().position(|(w, _)| *w == id).unwrap();
                        if clock.now() >= model.queue[pos].1 {
                            prop_assert!(matches!(result, Poll::Ready(Err(ref e)) if e.is_timed_out()), "{result:?}");
                            model.queue.remove(pos);
                            waiting.remove(i);
                        } else {
                            prop_assert!(result.is_pending(), "{result:?}");
                        }
                    }
                }
                Step::DropWaiter(i) if !waiting.is_empty() => {
                    let w = waiting.remove(i % waiting.len());
                    if model.granted.remove(&w.id) {
                        model.release();
                    } else {
                        let pos = model.queue.iter().position(|(x, _)| *x == w.id).unwrap();
                        model.queue.remove(pos);
                    }
                    drop(w);
                }
                Step::DropPermit(i) if !permits.is_empty() => {
                    drop(permits.remove(i % permits.len()));
                    model.release();
                }
                Step::SetLimit(n) => {
                    bulkhead.set_limit(n).unwrap();
                    model.limit = n;
                    model.admit_waiters();
                }
                Step::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                _ => {}
            }
            let s = bulkhead.snapshot();
            prop_assert_eq!(s.in_flight, model.in_use);
            prop_assert_eq!(s.waiting as usize, model.queue.len());
            prop_assert!(model.in_use as usize >= permits.len());
        }
        drop(waiting);
        drop(permits);
        let s = bulkhead.snapshot();
        prop_assert_eq!((s.in_flight, s.waiting), (0, 0));
        prop_assert_eq!(clock.pending_sleeps(), 0);
    }
}
