#![allow(clippy::disallowed_methods)] // a test is the root
//! The balancer over in-process endpoints: load-aware choice, ejected endpoints
//! left out, retries and hedges elsewhere, discovery without dropped calls, and
//! the edges (no endpoints, everything ejected).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_clock::{Clock, ManualClock};
use palisade_endpoint::{Balance, Change, EndpointState, OutlierConfig, Outliers, Tried};
use tokio::sync::{Notify, mpsc};
use tower::{Service, ServiceExt};

/// A request: its number and the set its attempts share.
#[derive(Clone, Debug, Default)]
struct Req {
    tried: Option<Tried>,
}

fn tried_of(req: &Req) -> Option<&Tried> {
    req.tried.as_ref()
}

type Hits = Arc<Mutex<HashMap<&'static str, usize>>>;

/// An endpoint that answers its name, failing when `fail` says so, and waits on
/// `gate` when given one.
#[derive(Clone)]
struct Replica {
    name: &'static str,
    hits: Hits,
    fail: Arc<Mutex<bool>>,
    gate: Option<Arc<Notify>>,
}

impl Replica {
    fn new(name: &'static str, hits: &Hits) -> Self {
        Replica {
            name,
            hits: hits.clone(),
            fail: Arc::new(Mutex::new(false)),
            gate: None,
        }
    }
}

impl Service<Req> for Replica {
    type Response = &'static str;
    type Error = &'static str;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<&'static str, &'static str>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Req) -> Self::Future {
        *self.hits.lock().unwrap().entry(self.name).or_default() += 1;
        let fail = *self.fail.lock().unwrap();
        let name = self.name;
        let gate = self.gate.clone();
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.notified().await;
            }
            if fail { Err(name) } else { Ok(name) }
        })
    }
}

fn outliers(clock: &ManualClock) -> Outliers<ManualClock> {
    let config = OutlierConfig::default()
        .with_consecutive_failures(Some(3))
        .with_ejection(Duration::from_secs(10), Duration::from_secs(60));
    Outliers::builder(config)
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_empty_set_is_an_error_not_a_wait() {
    let clock = ManualClock::new();
    let mut b = Balance::builder(outliers(&clock)).endpoints(Vec::<(&str, Replica)>::new());
    let err = b
        .ready()
        .await
        .unwrap()
        .call(Req::default())
        .await
        .unwrap_err();
    assert!(err.is_no_endpoints());
    assert_eq!(err.to_string(), "no endpoints to balance over");
}

#[tokio::test]
async fn the_less_loaded_endpoint_takes_the_call() {
    let clock = ManualClock::new();
    let hits = Hits::default();
    let gate = Arc::new(Notify::new());
    let mut busy = Replica::new("busy", &hits);
    busy.gate = Some(gate.clone());
    let idle = Replica::new("idle", &hits);
    let mut b = Balance::builder(outliers(&clock))
        .seed(1)
        .endpoints([("busy", busy), ("idle", idle)]);
    // Hold one call in flight on "busy".
    let mut held = Vec::new();
    for _ in 0..100 {
        if b.health(&"busy").unwrap().in_flight() == 1 {
            break;
        }
        let before = b.health(&"busy").unwrap().in_flight();
        let f = b.ready().await.unwrap().call(Req::default());
        if b.health(&"busy").unwrap().in_flight() > before {
            held.push(f);
        }
    }
    assert_eq!(b.health(&"busy").unwrap().in_flight(), 1);
    assert_eq!(b.health(&"idle").unwrap().in_flight(), 0);
    // With two endpoints, both are always the two choices: the idle one wins.
    for _ in 0..20 {
        assert_eq!(
            b.ready().await.unwrap().call(Req::default()).await.unwrap(),
            "idle"
        );
    }
    drop(held);
    assert_eq!(
        b.health(&"busy").unwrap().in_flight(),
        0,
        "dropped calls leave the count"
    );
}

#[tokio::test]
async fn an_ejected_endpoint_gets_no_calls_and_returns_on_probation() {
    let clock = ManualClock::new();
    let hits = Hits::default();
    let bad = Replica::new("bad", &hits);
    *bad.fail.lock().unwrap() = true;
    let fail = bad.fail.clone();
    let mut b = Balance::builder(outliers(&clock)).seed(7).endpoints([
        ("a", Replica::new("a", &hits)),
        ("b", Replica::new("b", &hits)),
        ("bad", bad),
    ]);
    for _ in 0..60 {
        let _ = b.ready().await.unwrap().call(Req::default()).await;
    }
    assert!(matches!(
        b.health(&"bad").unwrap().state(),
        EndpointState::Ejected { .. }
    ));
    assert_eq!(
        hits.lock().unwrap()["bad"],
        3,
        "three failures, then no more calls"
    );
    *fail.lock().unwrap() = false;
    clock.advance(Duration::from_secs(10));
    for _ in 0..60 {
        assert!(b.ready().await.unwrap().call(Req::default()).await.is_ok());
    }
    assert_eq!(b.health(&"bad").unwrap().state(), EndpointState::Healthy);
    assert!(hits.lock().unwrap()["bad"] > 3, "readmitted");
}

#[tokio::test]
async fn a_retry_and_a_hedge_go_to_endpoints_not_yet_tried() {
    let clock = ManualClock::new();
    let hits = Hits::default();
    let names = ["a", "b", "c"];
    let mut b = Balance::builder(outliers(&clock))
        .tried(tried_of)
        .endpoints(names.map(|n| (n, Replica::new(n, &hits))));
    for _ in 0..50 {
        let req = Req {
            tried: Some(Tried::new()),
        };
        // Three attempts of one request (say a call, its hedge, its retry): three endpoints.
        let first = b.ready().await.unwrap().call(req.clone());
        let hedge = b.ready().await.unwrap().call(req.clone());
        let (first, hedge) = tokio::join!(first, hedge);
        let retry = b.ready().await.unwrap().call(req.clone()).await.unwrap();
        let mut seen = vec![first.unwrap(), hedge.unwrap(), retry];
        seen.sort();
        assert_eq!(seen, names, "each attempt on another endpoint");
        // Once all are tried, a fourth attempt still goes somewhere.
        assert!(b.ready().await.unwrap().call(req).await.is_ok());
    }
}

#[tokio::test]
async fn everything_ejected_falls_back_to_the_least_bad() {
    let clock = ManualClock::new();
    let hits = Hits::default();
    let a = Replica::new("a", &hits);
    let c = Replica::new("c", &hits);
    *a.fail.lock().unwrap() = true;
    *c.fail.lock().unwrap() = true;
    let mut b = Balance::builder(outliers(&clock))
        .tried(tried_of)
        .endpoints([("a", a), ("c", c)]);
    // One of two may be ejected; the other stays, so calls keep going.
    for _ in 0..20 {
        let _ = b.ready().await.unwrap().call(Req::default()).await;
    }
    assert_eq!(b.outliers().ejected(), 1);
    // A retry that tried the one left goes to the ejected one rather than nowhere.
    let req = Req {
        tried: Some(Tried::new()),
    };
    let first = b
        .ready()
        .await
        .unwrap()
        .call(req.clone())
        .await
        .unwrap_err();
    let second = b.ready().await.unwrap().call(req).await.unwrap_err();
    assert_ne!(first.into_endpoint(), second.into_endpoint());
}

#[tokio::test]
async fn discovery_inserts_and_removes_without_dropping_calls_in_flight() {
    let clock = ManualClock::new();
    let hits = Hits::default();
    let (tx, rx) = mpsc::unbounded_channel();
    let stream = tokio_stream(rx);
    let mut b = Balance::builder(outliers(&clock)).discover(stream);
    let gate = Arc::new(Notify::new());
    let mut slow = Replica::new("slow", &hits);
    slow.gate = Some(gate.clone());
    tx.send(Change::Insert("slow", slow)).unwrap();
    let in_flight = b.ready().await.unwrap().call(Req::default());
    assert_eq!(b.len(), 1);
    tx.send(Change::Insert("next", Replica::new("next", &hits)))
        .unwrap();
    tx.send(Change::Remove("slow")).unwrap();
    b.ready().await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b.outliers().len(), 1);
    // The call on the removed endpoint still finishes.
    let (done, ()) = tokio::join!(in_flight, async { gate.notify_one() });
    assert_eq!(done.unwrap(), "slow");
    assert_eq!(b.call(Req::default()).await.unwrap(), "next");
    drop(tx);
    b.ready().await.unwrap();
    assert_eq!(
        b.call(Req::default()).await.unwrap(),
        "next",
        "a finished stream keeps the set"
    );
    let _ = clock.now();
}

/// A `Stream` over an unbounded receiver.
fn tokio_stream<T>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl futures_core::Stream<Item = T> + Unpin {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(start_paused = true)]
async fn the_retry_executor_s_attempts_share_one_tried_set() {
    use futures_util::FutureExt;
    use palisade_backoff::{Backoff, Jitter};
    use palisade_context::Context;
    use palisade_retry::RetryPolicy;

    let clock = ManualClock::new();
    let hits = Hits::default();
    let bad = Replica::new("bad", &hits);
    *bad.fail.lock().unwrap() = true;
    // No ejection at all: only the Tried set keeps the retries off "bad".
    let config = OutlierConfig::default()
        .with_consecutive_failures(None)
        .with_failure_rate(None)
        .with_latency_factor(None);
    let outliers = Outliers::builder(config)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut b = Balance::builder(outliers).tried(tried_of).endpoints([
        ("a", Replica::new("a", &hits)),
        ("b", Replica::new("b", &hits)),
        ("bad", bad),
    ]);
    let policy = RetryPolicy::builder()
        .backoff(
            Backoff::constant(Duration::from_millis(10))
                .jitter(Jitter::None)
                .max_attempts(3)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let ctx = Context::background();
    for _ in 0..50 {
        // One set per execution, a clone in every attempt's request.
        let req = Req {
            tried: Some(Tried::new()),
        };
        let before = hits.lock().unwrap().get("bad").copied().unwrap_or(0);
        let answer = policy
            .retry(&ctx, |_attempt| {
                std::future::poll_fn(|cx| b.poll_ready(cx))
                    .now_or_never()
                    .expect("a balancer over a list is always ready")
                    .unwrap();
                b.call(req.clone())
            })
            .await
            .unwrap();
        assert_ne!(answer, "bad");
        let after = hits.lock().unwrap().get("bad").copied().unwrap_or(0);
        assert!(
            after - before <= 1,
            "a retry went back to the endpoint that failed"
        );
    }
    assert!(
        hits.lock().unwrap()["bad"] > 0,
        "the bad endpoint was tried first sometimes"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hedge_goes_to_another_endpoint_and_the_loser_leaves_the_count() {
    use futures_util::FutureExt;
    use palisade_backoff::{Backoff, Jitter};
    use palisade_context::Context;
    use palisade_retry::{Hedging, RetryPolicy};

    let clock = ManualClock::new();
    let hits = Hits::default();
    let mut stuck = Replica::new("stuck", &hits);
    stuck.gate = Some(Arc::new(Notify::new())); // never opened
    let config = OutlierConfig::default()
        .with_consecutive_failures(None)
        .with_failure_rate(None)
        .with_latency_factor(None);
    let outliers = Outliers::builder(config)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut b = Balance::builder(outliers).tried(tried_of).endpoints([
        ("stuck", stuck),
        ("a", Replica::new("a", &hits)),
        ("b", Replica::new("b", &hits)),
    ]);
    let policy = RetryPolicy::builder()
        .backoff(
            Backoff::constant(Duration::from_millis(10))
                .jitter(Jitter::None)
                .max_attempts(1)
                .build()
                .unwrap(),
        )
        .hedging(
            Hedging::fixed(Duration::from_millis(20))
                .max_hedges(1)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let ctx = Context::background();
    let mut hedged = 0;
    for _ in 0..50 {
        let req = Req {
            tried: Some(Tried::new()),
        };
        let stuck_before = hits.lock().unwrap().get("stuck").copied().unwrap_or(0);
        let answer = policy
            .retry(&ctx, |_attempt| {
                std::future::poll_fn(|cx| b.poll_ready(cx))
                    .now_or_never()
                    .expect("a balancer over a list is always ready")
                    .unwrap();
                b.call(req.clone())
            })
            .await
            .unwrap();
        assert_ne!(answer, "stuck");
        let stuck_after = hits.lock().unwrap().get("stuck").copied().unwrap_or(0);
        assert!(
            stuck_after - stuck_before <= 1,
            "the hedge went to the stuck endpoint too"
        );
        if stuck_after > stuck_before {
            hedged += 1;
            assert_eq!(
                req.tried.as_ref().unwrap().len(),
                2,
                "the primary and its hedge"
            );
        }
        assert_eq!(
            b.health(&"stuck").unwrap().in_flight(),
            0,
            "the losing attempt was dropped"
        );
    }
    assert!(hedged > 0, "some primaries landed on the stuck endpoint");
}
