//! The scripted failing dependency: a real HTTP/1.1 server on loopback.
//!
//! [`Dependency::start`] binds `127.0.0.1` on an ephemeral port and walks its
//! [`Timeline`]: healthy answers, latency spikes, bursts of `503` with `Retry-After`,
//! TCP resets, a hard outage (the listener is closed, so connections are refused, and
//! every open connection is reset), then recovery on the same port. It counts what
//! it received per phase, and [`Dependency::shutdown`] ends every task and
//! connection it started.

use std::convert::Infallible;
use std::future::pending;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use palisade_clock::{Clock, Timestamp, TokioClock};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::timeline::{Behaviour, Phase, Timeline};
use palisade::Context;
use palisade::edge::Inbound;

/// The path of the cheap health probe; it is counted apart from the work requests.
pub const PROBE_PATH: &str = "/probe";

/// What the dependency received and answered during one phase.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PhaseStats {
    /// The phase.
    pub phase: Phase,
    /// Work requests received (the probe excluded).
    pub received: u64,
    /// Requests answered `200`.
    pub ok: u64,
    /// Requests answered `200` after a latency spike (counted in `ok` too).
    pub spiked: u64,
    /// Requests answered `503` with `Retry-After`.
    pub unavailable: u64,
    /// Requests answered by resetting the connection.
    pub reset: u64,
}

/// A snapshot of the dependency's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DependencyStats {
    /// Per phase, in timeline order.
    pub phases: Vec<PhaseStats>,
    /// Health probes received, over the whole run.
    pub probes: u64,
    /// Connections accepted, over the whole run.
    pub accepted_connections: u64,
    /// Connections open now.
    pub open_connections: usize,
    /// The budgets work requests arrived with (a deadline header), sorted.
    pub deadlines: Vec<Duration>,
    /// Work stopped when its request's deadline passed (answered `504`).
    pub stopped_at_deadline: u64,
}

impl DependencyStats {
    /// The counters of the first phase of the given kind.
    pub fn phase(&self, phase: Phase) -> Option<&PhaseStats> {
        self.phases.iter().find(|p| p.phase == phase)
    }

    /// Work requests received over the whole run.
    pub fn received(&self) -> u64 {
        self.phases.iter().map(|p| p.received).sum()
    }

    /// The median budget work requests arrived with, if any carried one.
    pub fn deadline_p50(&self) -> Option<Duration> {
        self.deadlines.get(self.deadlines.len() / 2).copied()
    }
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    ok: AtomicU64,
    spiked: AtomicU64,
    unavailable: AtomicU64,
    reset: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    timeline: Timeline,
    behaviour: Behaviour,
    start: Timestamp,
    clock: TokioClock,
    /// The index of the current phase.
    phase: AtomicUsize,
    seq: AtomicU64,
    counters: Vec<Counters>,
    probes: AtomicU64,
    accepted: AtomicU64,
    open: AtomicUsize,
    /// The budgets work requests arrived with.
    deadlines: Mutex<Vec<Duration>>,
    stopped: AtomicU64,
    /// Cancelled to reset every open connection; replaced after each use.
    connections: Mutex<CancellationToken>,
    root: CancellationToken,
    tracker: TaskTracker,
}

/// The scripted dependency. Dropping it stops it too, but only
/// [`shutdown`](Dependency::shutdown) waits until every task has ended.
#[derive(Debug)]
pub struct Dependency {
    shared: Arc<Shared>,
}

impl Dependency {
    /// Binds `127.0.0.1` on an ephemeral port and starts the timeline at `start`
    /// (requests before it see the first phase; after its end, the last phase
    /// continues).
    pub async fn start(
        timeline: Timeline,
        behaviour: Behaviour,
        start: Timestamp,
    ) -> io::Result<Dependency> {
        let listener = bind("127.0.0.1:0".parse().expect("a valid address"))?;
        let addr = listener.local_addr()?;
        let root = CancellationToken::new();
        let counters = timeline
            .phases()
            .iter()
            .map(|_| Counters::default())
            .collect();
        let shared = Arc::new(Shared {
            addr,
            timeline,
            behaviour,
            start,
            clock: TokioClock,
            phase: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            counters,
            probes: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            deadlines: Mutex::new(Vec::new()),
            stopped: AtomicU64::new(0),
            connections: Mutex::new(root.child_token()),
            root,
            tracker: TaskTracker::new(),
        });
        let stop = shared.root.child_token();
        let accept = shared
            .tracker
            .spawn(accept_loop(listener, shared.clone(), stop.clone()));
        shared.tracker.spawn(control(shared.clone(), stop, accept));
        Ok(Dependency { shared })
    }

    /// The address it listens on (the same after an outage).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The phase it is in now.
    pub fn phase(&self) -> Phase {
        let i = self.shared.phase.load(Relaxed);
        self.shared.timeline.phases()[i].0
    }

    /// A snapshot of its counters.
    pub fn stats(&self) -> DependencyStats {
        let s = &self.shared;
        DependencyStats {
            phases: s
                .timeline
                .phases()
                .iter()
                .zip(&s.counters)
                .map(|(&(phase, _), c)| PhaseStats {
                    phase,
                    received: c.received.load(Relaxed),
                    ok: c.ok.load(Relaxed),
                    spiked: c.spiked.load(Relaxed),
                    unavailable: c.unavailable.load(Relaxed),
                    reset: c.reset.load(Relaxed),
                })
                .collect(),
            probes: s.probes.load(Relaxed),
            accepted_connections: s.accepted.load(Relaxed),
            open_connections: s.open.load(Relaxed),
            deadlines: {
                let mut d = s.deadlines.lock().expect("not poisoned").clone();
                d.sort();
                d
            },
            stopped_at_deadline: s.stopped.load(Relaxed),
        }
    }

    /// Stops listening, resets every connection, waits until every task it
    /// started has ended, and returns its final counters.
    pub async fn shutdown(self) -> DependencyStats {
        self.shared.root.cancel();
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
        self.stats()
    }
}

impl Drop for Dependency {
    fn drop(&mut self) {
        self.shared.root.cancel();
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // Rebinding the same port after the outage must not wait for TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Walks the timeline: sets the current phase and closes and reopens the listener
/// around an outage.
async fn control(shared: Arc<Shared>, mut stop: CancellationToken, accept: JoinHandle<()>) {
    let mut accept = Some(accept);
    let phases = shared.timeline.phases().to_vec();
    for (i, &(phase, _)) in phases.iter().enumerate() {
        let at = shared.start + shared.timeline.start_of(i);
        tokio::select! {
            _ = shared.clock.sleep_until(at) => {}
            _ = shared.root.cancelled() => return,
        }
        shared.phase.store(i, Relaxed);
        if phase == Phase::Outage {
            if let Some(handle) = accept.take() {
                stop.cancel();
                let _ = handle.await;
            }
            let mut connections = shared.connections.lock().expect("not poisoned");
            connections.cancel();
            *connections = shared.root.child_token();
        } else if accept.is_none() {
            // Back from the outage: listen again on the same port.
            let Some(listener) = rebind(&shared).await else {
                return;
            };
            stop = shared.root.child_token();
            accept = Some(shared.tracker.spawn(accept_loop(
                listener,
                shared.clone(),
                stop.clone(),
            )));
        }
    }
}

async fn rebind(shared: &Shared) -> Option<TcpListener> {
    // Another process could briefly hold the port; try for a bounded while.
    for _ in 0..100 {
        match bind(shared.addr) {
            Ok(listener) => return Some(listener),
            Err(_) => tokio::select! {
                _ = shared.clock.sleep(Duration::from_millis(10)) => {}
                _ = shared.root.cancelled() => return None,
            },
        }
    }
    None
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                // Out of file descriptors or similar: back off instead of spinning.
                Err(_) => {
                    tokio::select! {
                        _ = shared.clock.sleep(Duration::from_millis(5)) => continue,
                        _ = stop.cancelled() => return,
                    }
                }
            },
            _ = stop.cancelled() => return,
        };
        shared.accepted.fetch_add(1, Relaxed);
        let guard = OpenConnection::new(shared.clone());
        let token = shared.connections.lock().expect("not poisoned").clone();
        shared
            .tracker
            .spawn(serve_connection(stream, shared.clone(), token, guard));
    }
}

/// Counts an open connection until dropped.
#[derive(Debug)]
struct OpenConnection(Arc<Shared>);

impl OpenConnection {
    fn new(shared: Arc<Shared>) -> Self {
        shared.open.fetch_add(1, Relaxed);
        OpenConnection(shared)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    token: CancellationToken,
    _open: OpenConnection,
) {
    let _ = stream.set_nodelay(true);
    // Dropping the socket sends a reset rather than a clean close.
    let _ = stream.set_zero_linger();
    let reset = Arc::new(Notify::new());
    let service = {
        let reset = reset.clone();
        service_fn(move |request| handle(request, shared.clone(), reset.clone()))
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        _ = reset.notified() => {}
        _ = token.cancelled() => {}
    }
}

type Reply = Result<Response<Full<Bytes>>, Infallible>;

fn respond(status: StatusCode, retry_after: Option<u32>, body: &'static str) -> Reply {
    let mut builder = Response::builder().status(status);
    if let Some(secs) = retry_after {
        builder = builder.header(hyper::header::RETRY_AFTER, secs);
    }
    Ok(builder
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a valid response"))
}

/// A well-mixed pseudo-random roll in `0..100` from a request's sequence number:
/// deterministic, lock-free, and spread evenly over consecutive numbers.
fn roll(n: u64) -> u8 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) % 100) as u8
}

async fn handle(request: Request<Incoming>, shared: Arc<Shared>, reset: Arc<Notify>) -> Reply {
    let b = shared.behaviour;
    let i = shared.phase.load(Relaxed);
    let phase = shared.timeline.phases()[i].0;
    if request.uri().path() == PROBE_PATH {
        shared.probes.fetch_add(1, Relaxed);
        if phase == Phase::Outage {
            reset.notify_one();
            return pending().await;
        }
        return respond(StatusCode::OK, None, "ok");
    }
    let counters = &shared.counters[i];
    counters.received.fetch_add(1, Relaxed);
    // The request's context, from its deadline header if it has one: the work
    // stops when that deadline passes, instead of outliving the caller.
    let (ctx, _guard) = Inbound::new()
        .context(request.headers())
        .unwrap_or_else(|_| {
            #[allow(clippy::disallowed_methods)] // a request's context begins at the server
            Context::background().with_cancel()
        });
    if let Some(budget) = ctx.remaining() {
        shared.deadlines.lock().expect("not poisoned").push(budget);
    }
    let roll = roll(shared.seq.fetch_add(1, Relaxed));
    match phase {
        Phase::Healthy | Phase::Recovery => {}
        Phase::LatencySpikes => {
            if roll < b.spike_percent {
                counters.spiked.fetch_add(1, Relaxed);
                if !work(&ctx, &shared, b.spike_latency).await {
                    return respond(StatusCode::GATEWAY_TIMEOUT, None, "deadline exceeded");
                }
            }
        }
        Phase::UnavailableBursts => {
            let phase_start = shared.start + shared.timeline.start_of(i);
            let into = shared.clock.now().saturating_duration_since(phase_start);
            let period = shared.timeline.phases()[i].1 / 3;
            let burst = period.mul_f64(f64::from(b.burst_percent) / 100.0);
            let in_period = Duration::from_nanos(
                (into.as_nanos() % period.as_nanos().max(1))
                    .try_into()
                    .unwrap_or(0),
            );
            if in_period < burst {
                counters.unavailable.fetch_add(1, Relaxed);
                return respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some(b.retry_after_secs),
                    "unavailable",
                );
            }
        }
        Phase::ConnectionResets => {
            if roll < b.reset_percent {
                counters.reset.fetch_add(1, Relaxed);
                reset.notify_one();
                return pending().await;
            }
        }
        Phase::Outage => {
            // A request on a connection that raced the outage's start.
            counters.reset.fetch_add(1, Relaxed);
            reset.notify_one();
            return pending().await;
        }
    }
    if !work(&ctx, &shared, b.base_latency).await {
        return respond(StatusCode::GATEWAY_TIMEOUT, None, "deadline exceeded");
    }
    counters.ok.fetch_add(1, Relaxed);
    respond(StatusCode::OK, None, "ok")
}

/// Works for `time`, unless the request's context ends first (its deadline
/// passed): then the work stops, is counted, and `false` says so.
async fn work(ctx: &Context, shared: &Shared, time: Duration) -> bool {
    tokio::select! {
        () = shared.clock.sleep(time) => true,
        () = ctx.cancelled() => {
            shared.stopped.fetch_add(1, Relaxed);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_are_spread_evenly() {
        let below_30 = (0..10_000).filter(|&n| roll(n) < 30).count();
        assert!((2_700..3_300).contains(&below_30), "{below_30}");
    }
}
