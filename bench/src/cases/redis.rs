//! Fleet-wide rate limits on Redis: one decision of palisade-limit-redis (one
//! `EVALSHA` of its GCRA script) next to a bare `PING` on the same connection and
//! a fixed-window `INCR` + `EXPIRE` pipeline (Envoy's method) on the same server,
//! against a `redis-server` the benchmark starts on a free loopback port (and
//! stops at the end). Without `redis-server` the area is skipped, saying why.
//!
//! The table's rows are the mean of back-to-back round trips; [`latency_report`]
//! adds each one's p50 and p99, and the decisions per second of many concurrent
//! decisions pipelined on the one connection.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_context::Context;
use palisade_limit_redis::{RedisLimitConfig, RedisRateLimiter, Source};
use redis::aio::MultiplexedConnection;

use crate::harness::{Answer, Bench, Case, Floor, Mode, Role};

const ONE: &str = "one round trip on loopback";

/// The server this process started, stopped by [`stop_server`].
static SERVER: Mutex<Option<Child>> = Mutex::new(None);

/// Everything the cases share: their runtime (with the IO driver), the limiter
/// and a plain connection to the same server.
struct Shared {
    rt: tokio::runtime::Runtime,
    limiter: RedisRateLimiter,
    conn: MultiplexedConnection,
}

/// Starts `redis-server` on a free port, or says why it cannot.
fn start_server() -> Result<u16, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server ({e}); `cargo xtask test` installs it"))?;
    *SERVER.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(10) {
            stop_server();
            return Err("redis-server did not accept connections within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(port)
}

/// Stops the server this process started, if any.
pub(crate) fn stop_server() {
    if let Some(mut child) = SERVER.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn shared() -> Result<Arc<Shared>, String> {
    let port = start_server()?;
    let url = format!("redis://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (limiter, conn) = rt.block_on(async {
        // A limit so high that every decision of the run is allowed: the workload
        // is the cost of saying yes.
        let config = RedisLimitConfig::new(url.as_str(), 1_000_000, Duration::from_secs(1))
            .with_key_prefix("bench:")
            .with_timeout(Duration::from_secs(1));
        let limiter = RedisRateLimiter::connect(config)
            .await
            .map_err(|e| e.to_string())?;
        let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((limiter, conn))
    })?;
    Ok(Arc::new(Shared { rt, limiter, conn }))
}

async fn decide(s: &Shared) -> bool {
    let d = s.limiter.decide(&Context::background(), b"hot", 1).await;
    d.allowed && d.source == Source::Redis
}

async fn ping(s: &Shared) -> bool {
    s.limiter.ping().await.is_ok()
}

async fn fixed_window(s: &Shared) -> bool {
    let mut conn = s.conn.clone();
    let counted: Result<(i64, i64), _> = redis::pipe()
        .cmd("INCRBY")
        .arg("bench:window")
        .arg(1)
        .cmd("EXPIRE")
        .arg("bench:window")
        .arg(1)
        .query_async(&mut conn)
        .await;
    counted.is_ok()
}

/// The decision's script, sent without the limiter (what the server costs, and
/// the connection's own overhead).
async fn bare_script(s: &Shared) -> bool {
    let mut conn = s.conn.clone();
    let sha = redis::Script::new(palisade_limit_redis::SCRIPT);
    let answer: Result<i64, _> = redis::cmd("EVALSHA")
        .arg(sha.get_hash())
        .arg(1)
        .arg("bench:bare")
        .arg(1)
        .arg(0)
        .arg(1)
        .query_async(&mut conn)
        .await;
    answer.is_ok()
}

fn case<F, Fut>(s: &Arc<Shared>, label: &'static str, role: Role, op: F) -> Case
where
    F: Fn(Arc<Shared>) -> Fut + 'static,
    Fut: std::future::Future<Output = bool>,
{
    let s = s.clone();
    Case::new(
        "redis",
        ONE,
        label,
        role,
        Bench::from_fn(move |mode| {
            let shared = s.clone();
            s.rt.block_on(async {
                match mode {
                    Mode::Run(n) => {
                        let started = Instant::now();
                        for _ in 0..n {
                            std::hint::black_box(op(shared.clone()).await);
                        }
                        Answer::Elapsed(started.elapsed())
                    }
                    Mode::Check => {
                        let ok = op(shared.clone()).await;
                        crate::harness::verdict(ok, &ok)
                    }
                }
            })
        }),
    )
    .floor(Floor::Await)
}

pub(super) fn cases() -> Vec<Case> {
    let s = match shared() {
        Ok(s) => s,
        Err(why) => {
            eprintln!("palisade-bench: the redis area is skipped: {why}");
            return Vec::new();
        }
    };
    *SHARED.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
    vec![
        case(
            &s,
            "palisade-limit-redis decision (EVALSHA)",
            Role::Palisade,
            |s| async move { decide(&s).await },
        )
        .note("GCRA script with Redis TIME, one key; a multiplexed connection"),
        case(
            &s,
            "bare PING, same connection",
            Role::Reference,
            |s| async move { ping(&s).await },
        )
        .note("the round trip itself"),
        case(
            &s,
            "fixed window INCRBY + EXPIRE (Envoy's method)",
            Role::Reference,
            |s| async move { fixed_window(&s).await },
        )
        .note(
            "two commands pipelined in one round trip; lets 2× the limit through at window edges",
        ),
    ]
}

/// The shared state of the cases made last, for [`latency_report`].
static SHARED: Mutex<Option<Arc<Shared>>> = Mutex::new(None);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50 and p99 of each round trip (`samples` back to back), and the decisions
/// per second of `concurrency` decisions in flight at once on the one connection
/// for about `for_how_long`; `None` when the area did not run.
pub(crate) fn latency_report(
    samples: usize,
    concurrency: usize,
    for_how_long: Duration,
) -> Option<String> {
    let s = SHARED.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
    let mut out = String::from(
        "| round trip | p50 µs | p99 µs | p50 ÷ PING |\n| --- | ---: | ---: | ---: |\n",
    );
    let mut ping_p50 = None;
    let ops: [(&str, u8); 4] = [
        ("bare PING, same connection", 0),
        ("palisade-limit-redis decision (EVALSHA)", 1),
        ("the same EVALSHA sent bare (no timeout, breaker, cache)", 3),
        ("fixed window INCRBY + EXPIRE", 2),
    ];
    for (label, which) in ops {
        let mut times: Vec<Duration> = s.rt.block_on(async {
            let mut times = Vec::with_capacity(samples);
            for _ in 0..samples {
                let started = Instant::now();
                let ok = match which {
                    0 => ping(&s).await,
                    1 => decide(&s).await,
                    3 => bare_script(&s).await,
                    _ => fixed_window(&s).await,
                };
                times.push(started.elapsed());
                assert!(ok, "{label} failed during the latency run");
            }
            times
        });
        times.sort();
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        let base = *ping_p50.get_or_insert(p50);
        out.push_str(&format!(
            "| {label} | {:.1} | {:.1} | {:.2} |\n",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            p50.as_secs_f64() / base.as_secs_f64()
        ));
    }
    let (done, took) = s.rt.block_on(async {
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for t in 0..concurrency {
            let s = s.clone();
            set.spawn(async move {
                let key = format!("spread-{t}");
                let mut n = 0u64;
                while started.elapsed() < for_how_long && n < 10_000_000 {
                    let d = s
                        .limiter
                        .decide(&Context::background(), key.as_bytes(), 1)
                        .await;
                    assert!(d.source == Source::Redis, "{d:?}");
                    n += 1;
                }
                n
            });
        }
        let mut done = 0;
        while let Some(n) = set.join_next().await {
            done += n.unwrap_or(0);
        }
        (done, started.elapsed())
    });
    out.push_str(&format!(
        "\n{concurrency} decisions in flight at once on the one connection: {:.0} decisions/s ({done} in {:.2} s)\n",
        done as f64 / took.as_secs_f64(),
        took.as_secs_f64()
    ));
    Some(out)
}
