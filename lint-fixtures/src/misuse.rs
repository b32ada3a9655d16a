//! Request code that drops its context, each misuse once. Every line that must be
//! flagged ends with `// flagged: <path>`: the rule's path in the configuration,
//! then, after `as`, the path clippy names when the rule's path is a re-export.

use std::time::Duration;

use palisade::Context;
use tokio::runtime::Handle;
use tokio::time::Instant;

/// Spawns the request's follow-up work without the request's context: it outlives
/// the request's deadline and cancellation and loses its trace.
pub fn spawn_without_context(_ctx: &Context, handle: &Handle) {
    drop(tokio::spawn(async {})); // flagged: tokio::spawn as tokio::task::spawn
    drop(tokio::task::spawn(async {})); // flagged: tokio::task::spawn
    drop(tokio::task::spawn_local(async {})); // flagged: tokio::task::spawn_local
    drop(handle.spawn(async {})); // flagged: tokio::runtime::Handle::spawn
}

/// Bounds and paces the request's work with raw tokio timers, which know nothing of
/// the request's deadline or cancellation.
pub async fn raw_timers(_ctx: &Context, at: Instant) {
    let _ = tokio::time::timeout(Duration::from_millis(100), async {}).await; // flagged: tokio::time::timeout
    let _ = tokio::time::timeout_at(at, async {}).await; // flagged: tokio::time::timeout_at
    tokio::time::sleep(Duration::from_millis(10)).await; // flagged: tokio::time::sleep
}

/// Starts over from a fresh background context inside the request: no deadline, no
/// cancellation, no trace, no values. `Context::background` is a `const fn`; the
/// rule sees it called at run time and in a constant alike.
pub fn fresh_background(_ctx: &Context) -> [Context; 3] {
    const ROOT: Context = palisade_context::Context::background(); // flagged: palisade_context::Context::background
    [
        Context::background(), // flagged: palisade::Context::background as palisade_context::Context::background
        palisade_context::Context::background(), // flagged: palisade_context::Context::background
        ROOT,
    ]
}
