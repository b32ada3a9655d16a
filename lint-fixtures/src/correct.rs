//! The same request code keeping its context: the correct form of each misuse in
//! `misuse.rs`, in the same order. Nothing here may be flagged.

use std::time::Duration;

use palisade::Context;
use palisade::clock::{Clock, Timestamp, TokioClock};
use palisade::context::{Spawned, Tracker, current};

/// Spawns the follow-up work under the request's context, so it stops with it and
/// carries its trace: on the tracker the context holds, or on a given tracker.
pub fn spawn_with_context(ctx: &Context, tracker: &Tracker) -> [Spawned<()>; 2] {
    [
        palisade::context::spawn(ctx, async {}),
        tracker.spawn(ctx, async {}),
    ]
}

/// Bounds the work by the request's deadline and a timeout of its own, or by a
/// deadline of its own, and paces it on the request's clock, stopping when the
/// request ends.
pub async fn timers_under_the_context(ctx: &Context, at: Timestamp) {
    let _ = palisade::context::timeout(ctx, Duration::from_millis(100), async {}).await;
    let (until, _guard) = ctx.with_deadline(at);
    let _ = until.run(async {}).await;
    let _ = ctx.run(TokioClock.sleep(Duration::from_millis(10))).await;
}

/// Takes the caller's context, or the task's current one, instead of starting over.
pub fn keep_the_context(ctx: &Context) -> [Context; 2] {
    [ctx.clone(), current()]
}
