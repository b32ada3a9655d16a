//! On a multi-thread runtime, each caught panic keeps the location of its own
//! `panic!`, with the hook installed. (A binary of its own: the hook and the
//! counters are process-wide.)
#![allow(clippy::disallowed_methods)] // a test starts its own contexts and tasks

use std::sync::atomic::{AtomicU32, Ordering};

use palisade::{Context, Pipeline};

/// The line of the last `panic!` in [`boom`].
static BOOM_LINE: AtomicU32 = AtomicU32::new(0);

/// Panics with `message`, noting the line of its `panic!`.
fn boom(message: &str) -> Result<(), std::io::Error> {
    BOOM_LINE.store(line!() + 1, Ordering::SeqCst);
    panic!("{message}")
}

/// Panics from the second helper, a line apart from [`boom`]'s.
fn bang(message: &str) -> Result<(), std::io::Error> {
    BANG_LINE.store(line!() + 1, Ordering::SeqCst);
    panic!("{message}")
}

static BANG_LINE: AtomicU32 = AtomicU32::new(0);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_multi_thread_runtime_each_panic_keeps_its_own_location() {
    palisade::panic::install_hook();
    let p = Pipeline::builder("crashy").build().unwrap();
    // Note both lines first (each helper stores its own line when it runs).
    let ctx = Context::background();
    let _ = p.execute(&ctx, |_| async { boom("first") }).await;
    let _ = p.execute(&ctx, |_| async { bang("first") }).await;
    let (boom_line, bang_line) = (
        BOOM_LINE.load(Ordering::SeqCst),
        BANG_LINE.load(Ordering::SeqCst),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let p = p.clone();
        tasks.spawn(async move {
            let ctx = Context::background();
            let e = if i % 2 == 0 {
                p.execute(&ctx, |_| async {
                    tokio::task::yield_now().await;
                    boom("even")
                })
                .await
            } else {
                p.execute(&ctx, |_| async {
                    tokio::task::yield_now().await;
                    bang("odd")
                })
                .await
            }
            .unwrap_err();
            let panic = e.panic().unwrap();
            (
                i,
                panic.message().to_owned(),
                panic.location().unwrap().line(),
            )
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (i, message, line) = done.unwrap();
        if i % 2 == 0 {
            assert_eq!((message.as_str(), line), ("even", boom_line));
        } else {
            assert_eq!((message.as_str(), line), ("odd", bang_line));
        }
    }
}
