//! A panic caught by a pipeline says where it happened once the hook is
//! installed, and the hook that was there before still runs.
#![allow(clippy::disallowed_methods)] // a test starts its own contexts

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use palisade::{Context, Pipeline};

/// The line of the last `panic!` in [`boom`].
static BOOM_LINE: AtomicU32 = AtomicU32::new(0);

/// Panics with `message`, noting the line of its `panic!`.
fn boom(message: &str) -> Result<(), std::io::Error> {
    BOOM_LINE.store(line!() + 1, Ordering::SeqCst);
    panic!("{message}")
}

#[tokio::test]
async fn a_caught_panic_carries_its_line_and_the_earlier_hook_still_runs() {
    let ctx = Context::background();
    let p = Pipeline::builder("crashy").build().unwrap();

    // Before the hook: the message alone.
    let e = p
        .execute(&ctx, |_| async { boom("before") })
        .await
        .unwrap_err();
    assert!(e.panic().unwrap().location().is_none());
    assert_eq!(e.to_string(), "panicked: before");

    // The user's hook, then palisade's over it.
    let seen = Arc::new(AtomicU32::new(0));
    let count = seen.clone();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        count.fetch_add(1, Ordering::SeqCst);
        default(info);
    }));
    palisade::panic::install_hook();
    palisade::panic::install_hook(); // twice is once
    let e = p
        .execute(&ctx, |_| async { boom("after") })
        .await
        .unwrap_err();
    let panic = e.panic().unwrap();
    let location = panic.location().expect("the hook records where");
    assert!(location.file().ends_with("panics.rs"), "{location}");
    assert_eq!(location.line(), BOOM_LINE.load(Ordering::SeqCst));
    assert_eq!(e.to_string(), format!("panicked at {location}: after"),);
    assert_eq!(seen.load(Ordering::SeqCst), 1, "the earlier hook ran, once");
    // A panic in the closure itself, before its future exists, too.
    let e = p
        .execute(&ctx, |_| std::future::ready(boom("sync")))
        .await
        .unwrap_err();
    assert_eq!(
        e.panic().unwrap().location().unwrap().line(),
        BOOM_LINE.load(Ordering::SeqCst)
    );
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}
