//! Waiting on a rate limiter: each waiter reserves its own slot and sleeps until
//! it, waiting is not a rejection, a dropped wait gives its slot back; several calls
//! at once.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use palisade_clock::{Clock, ManualClock, Timestamp, TokioClock};
use palisade_limit::{RateLimiter, RateLimiterConfig};

fn poll<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// The tokio clock, counting how often it is read and slept on.
#[derive(Clone, Debug, Default)]
struct Counting {
    reads: Arc<AtomicUsize>,
    sleeps: Arc<AtomicUsize>,
}

impl Clock for Counting {
    type Sleep = <TokioClock as Clock>::Sleep;

    fn now(&self) -> Timestamp {
        self.reads.fetch_add(1, Ordering::Relaxed);
        TokioClock.now()
    }

    fn sleep_until(&self, deadline: Timestamp) -> Self::Sleep {
        self.sleeps.fetch_add(1, Ordering::Relaxed);
        TokioClock.sleep_until(deadline)
    }
}

fn manual(config: RateLimiterConfig) -> RateLimiter<ManualClock> {
    RateLimiter::with_clock(config, ManualClock::new()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn twenty_waiters_pass_each_at_its_own_slot_and_none_is_rejected() {
    let clock = Counting::default();
    let limiter = RateLimiter::with_clock(
        RateLimiterConfig::per_second(10).with_burst(1),
        clock.clone(),
    )
    .unwrap();
    let start = TokioClock.now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let limiter = limiter.clone();
        tasks.spawn(async move {
            limiter.until_ready().await;
            TokioClock.now() - start
        });
    }
    let mut passed = tasks.join_all().await;
    passed.sort();
    let slots: Vec<Duration> = (0..20).map(|i| Duration::from_millis(100 * i)).collect();
    assert_eq!(passed, slots);
    assert_eq!(limiter.snapshot().rejected, 0);
    // One reservation and at most one timer per waiter: no waiter wakes for
    // another's slot.
    assert_eq!(clock.sleeps.load(Ordering::Relaxed), 19);
    assert!(clock.reads.load(Ordering::Relaxed) <= 3 * 20);
}

#[tokio::test(start_paused = true)]
async fn waiters_beyond_the_burst_are_no_rejections() {
    let limiter = RateLimiter::new(RateLimiterConfig::per_second(10)).unwrap();
    let start = TokioClock.now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let limiter = limiter.clone();
        tasks.spawn(async move { limiter.until_ready().await });
    }
    tasks.join_all().await;
    // Ten at once, ten more at 100 ms each.
    assert_eq!(TokioClock.now() - start, Duration::from_secs(1));
    assert_eq!(limiter.snapshot().rejected, 0);
}

#[test]
fn a_dropped_latest_wait_gives_its_slot_back() {
    let l = manual(RateLimiterConfig::per_second(10).with_burst(1));
    l.check().unwrap();
    {
        let mut w = pin!(l.until_ready());
        assert!(poll(w.as_mut()).is_pending());
        assert_eq!(l.clock().pending_sleeps(), 1);
    }
    // The next waiter gets the slot at 100 ms, not 200 ms.
    let mut w = pin!(l.until_ready());
    assert!(poll(w.as_mut()).is_pending());
    l.clock().advance(Duration::from_millis(100));
    assert!(poll(w.as_mut()).is_ready());
    assert_eq!(l.snapshot().rejected, 0);
}

#[test]
fn a_dropped_wait_in_the_middle_of_the_schedule_leaves_its_slot_unused() {
    let l = manual(RateLimiterConfig::per_second(10).with_burst(1));
    l.check().unwrap();
    let mut first = Box::pin(l.until_ready());
    let mut second = pin!(l.until_ready());
    assert!(poll(first.as_mut()).is_pending());
    assert!(poll(second.as_mut()).is_pending());
    drop(first);
    // The limiter stays within its rate: a newcomer comes after the second waiter.
    let mut third = pin!(l.until_ready());
    assert!(poll(third.as_mut()).is_pending());
    l.clock().advance(Duration::from_millis(200));
    assert!(poll(second.as_mut()).is_ready());
    assert!(poll(third.as_mut()).is_pending());
    l.clock().advance(Duration::from_millis(100));
    assert!(poll(third.as_mut()).is_ready());
}

#[test]
fn a_timed_wait_that_cannot_make_it_counts_one_rejection_and_reserves_nothing() {
    let l = manual(RateLimiterConfig::per_second(10).with_burst(1));
    l.check().unwrap();
    let mut w = pin!(l.until_ready_timeout(Duration::from_millis(50)));
    match poll(w.as_mut()) {
        Poll::Ready(Err(e)) => assert_eq!(e.retry_after(), Duration::from_millis(100)),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(l.snapshot().rejected, 1);
    assert_eq!(l.clock().pending_sleeps(), 0);
    l.clock().advance(Duration::from_millis(100));
    l.check().unwrap();
}

#[test]
fn several_calls_pass_at_once_within_the_burst() {
    let l = manual(RateLimiterConfig::per_second(10).with_burst(5));
    l.check_n(3).unwrap();
    let e = l.check_n(3).unwrap_err();
    assert!(!e.exceeds_capacity());
    // Two are left; the third comes back after one interval.
    assert_eq!(e.retry_after(), Duration::from_millis(100));
    assert_eq!(l.snapshot().available, 2);
    l.check_n(0).unwrap();
    l.check_n(2).unwrap();
    assert_eq!(l.snapshot().rejected, 1);
}

#[test]
fn more_calls_than_the_burst_are_refused_at_once_and_never_waited_on() {
    let l = manual(RateLimiterConfig::per_second(10).with_burst(5));
    let e = l.check_n(6).unwrap_err();
    assert!(e.exceeds_capacity());
    assert_eq!(e.rejection().retry_after(), None);
    assert_eq!(
        e.to_string(),
        "rate limit too small: 6 calls asked for at once, the burst is 5"
    );
    let mut w = pin!(l.until_n_ready(6));
    assert!(matches!(poll(w.as_mut()), Poll::Ready(Err(e)) if e.exceeds_capacity()));
    assert_eq!(l.clock().pending_sleeps(), 0);
    assert_eq!(l.snapshot().rejected, 2);
    // Nothing was taken.
    assert_eq!(l.snapshot().available, 5);
}

#[test]
fn a_wait_for_several_calls_sleeps_until_they_all_fit() {
    let l = manual(RateLimiterConfig::per_second(10).with_burst(5));
    l.check_n(5).unwrap();
    let mut w = pin!(l.until_n_ready(3));
    assert!(poll(w.as_mut()).is_pending());
    l.clock().advance(Duration::from_millis(299));
    assert!(poll(w.as_mut()).is_pending());
    l.clock().advance(Duration::from_millis(1));
    assert!(matches!(poll(w.as_mut()), Poll::Ready(Ok(()))));
    assert_eq!(l.snapshot().available, 0);
    assert_eq!(l.snapshot().rejected, 0);
}

mod model {
    use super::*;
    use palisade_limit::rate::UntilNReady;
    use proptest::prelude::*;

    const INTERVAL: u64 = 100_000_000;
    const BURST: u64 = 3;
    const TOLERANCE: u64 = (BURST - 1) * INTERVAL;

    #[derive(Clone, Debug)]
    enum Step {
        Check(u32),
        StartWait(u32),
        PollWaiter(usize),
        DropWaiter(usize),
        Advance(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0u32..5).prop_map(Step::Check),
            3 => (0u32..5).prop_map(Step::StartWait),
            4 => (0usize..6).prop_map(Step::PollWaiter),
            1 => (0usize..6).prop_map(Step::DropWaiter),
            3 => (0u64..250).prop_map(Step::Advance),
        ]
    }

    /// A GCRA with reservations, in plain arithmetic.
    struct Model {
        tat: u64,
        rejected: u64,
    }

    impl Model {
        /// `Ok((wait, written))` or `Err(wait)`; `None` when `n` exceeds the burst.
        fn reserve(&mut self, now: u64, n: u32, max_wait: u64) -> Option<Result<(u64, u64), u64>> {
            let n = u64::from(n);
            if n > BURST {
                return None;
            }
            let base = self.tat.max(now);
            let wait = (base + (n - 1) * INTERVAL).saturating_sub(now + TOLERANCE);
            if wait > max_wait {
                return Some(Err(wait));
            }
            self.tat = base + n * INTERVAL;
            Some(Ok((wait, self.tat)))
        }

        fn available(&self, now: u64) -> u64 {
            let latest = now + TOLERANCE;
            if self.tat > latest {
                0
            } else {
                (latest - self.tat.max(now)) / INTERVAL + 1
            }
        }
    }

    struct Waiter<'a> {
        /// When it is due, what it wrote and how much it took; `None` once
        /// finished.
        reserved: Option<(u64, u64, u64)>,
        future: Pin<Box<UntilNReady<'a, ManualClock>>>,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn reservations_match_a_gcra_with_reservations(
            steps in proptest::collection::vec(step(), 1..100),
        ) {
            let l = manual(RateLimiterConfig::per_second(10).with_burst(BURST as u32));
            let mut model = Model { tat: 0, rejected: 0 };
            let mut waiters: Vec<Waiter<'_>> = Vec::new();
            for step in steps {
                let now = l.clock().now().as_nanos();
                match step {
                    Step::Check(n) => {
                        let got = l.check_n(n);
                        let want = if n == 0 { Some(Ok((0, model.tat))) } else { model.reserve(now, n, 0) };
                        match want {
                            None => {
                                prop_assert!(got.is_err_and(|e| e.exceeds_capacity()));
                                model.rejected += 1;
                            }
                            Some(Ok(_)) => prop_assert!(got.is_ok(), "{got:?}"),
                            Some(Err(wait)) => {
                                prop_assert_eq!(got.map_err(|e| e.retry_after()), Err(Duration::from_nanos(wait)));
                                model.rejected += 1;
                            }
                        }
                    }
                    Step::StartWait(n) => {
                        let mut future = Box::pin(l.until_n_ready(n));
                        let got = poll(future.as_mut());
                        let want = if n == 0 { Some(Ok((0, model.tat))) } else { model.reserve(now, n, u64::MAX) };
                        match want {
                            None => {
                                prop_assert!(matches!(got, Poll::Ready(Err(e)) if e.exceeds_capacity()));
                                model.rejected += 1;
                            }
                            Some(Ok((0, _))) => prop_assert!(matches!(got, Poll::Ready(Ok(()))), "{got:?}"),
                            Some(Ok((wait, written))) => {
                                prop_assert!(got.is_pending());
                                let reserved = Some((now + wait, written, u64::from(n) * INTERVAL));
                                waiters.push(Waiter { reserved, future });
                            }
                            Some(Err(_)) => unreachable!("an unbounded wait is never refused"),
                        }
                    }
                    Step::PollWaiter(i) if !waiters.is_empty() => {
                        let i = i % waiters.len();
                        let w = &mut waiters[i];
                        if let Some((due, _, _)) = w.reserved {
                            let got = poll(w.future.as_mut());
                            if now >= due {
                                prop_assert!(matches!(got, Poll::Ready(Ok(()))), "{got:?}");
                                w.reserved = None;
                            } else {
                                prop_assert!(got.is_pending());
                            }
                        }
                    }
                    Step::DropWaiter(i) if !waiters.is_empty() => {
                        let w = waiters.remove(i % waiters.len());
                        if let Some((_, written, amount)) = w.reserved {
                            if model.tat == written {
                                model.tat -= amount;
                            }
                        }
                    }
                    Step::Advance(ms) => l.clock().advance(Duration::from_millis(ms)),
                    _ => {}
                }
                let now = l.clock().now().as_nanos();
                let s = l.snapshot();
                prop_assert_eq!(s.available, model.available(now));
                prop_assert_eq!(s.rejected, model.rejected);
            }
        }
    }
}
