//! Property: a random tree of contexts, random cancellations, dropped guards and
//! passing time always leaves exactly the expected contexts ended, each with the
//! expected cause, checked against a plain model of Go's semantics: a context ends
//! at the earliest of its deadline, its own first cancellation and its parent's end;
//! at equal times a deadline wins; a context created under an ended parent ends
//! with the parent's cause.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts

use std::time::Duration;

use palisade_context::{CancelGuard, Context};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// A child of node `of % len`, with an optional timeout in ms.
    Child { of: usize, timeout: Option<u64> },
    /// A child with the values but not the cancellation of node `of % len`.
    WithoutCancel { of: usize },
    /// Cancel node `node % len` through its guard, with an optional user cause.
    Cancel { node: usize, user: Option<u8> },
    /// Drop the guard of node `node % len`.
    DropGuard { node: usize },
    /// Let time pass.
    Advance { ms: u64 },
    /// Look at every node (which may expire deadlines nobody looked at).
    Observe,
    /// Poll `cancelled()` on node `node % len` once: registers it (and its lazy
    /// ancestors) to be told of its end, and starts its deadline's timer.
    Wait { node: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<usize>(), prop::option::of(0u64..50)).prop_map(|(of, timeout)| Op::Child { of, timeout }),
        1 => any::<usize>().prop_map(|of| Op::WithoutCancel { of }),
        2 => (any::<usize>(), prop::option::of(0u8..4)).prop_map(|(node, user)| Op::Cancel { node, user }),
        1 => any::<usize>().prop_map(|node| Op::DropGuard { node }),
        2 => (0u64..30).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Observe),
        2 => any::<usize>().prop_map(|node| Op::Wait { node }),
    ]
}

/// A node of the model.
struct Model {
    /// The node whose cancellation reaches this one.
    parent: Option<usize>,
    /// The effective deadline in ms since the start.
    deadline: Option<u64>,
    /// When the node was created: (time, sequence number).
    created: (u64, usize),
    /// The first cancellation of this node itself: (time, sequence number, cause).
    cancelled: Option<(u64, usize, String)>,
}

const DEADLINE: &str = "context deadline exceeded";

/// An event that ends a node: (time, rank, cause). Events compare by time, then by
/// rank: 0 for a deadline passing (it wins ties, as a timer would have fired), the
/// operation's sequence number plus one otherwise.
type End = (u64, usize, String);

impl Model {
    /// How every node ends by time `now`, if it does: the earliest of its deadline,
    /// its own first cancellation and its parent's end.
    fn ends(nodes: &[Model], now: u64) -> Vec<Option<End>> {
        let mut ends: Vec<Option<End>> = Vec::with_capacity(nodes.len());
        for node in nodes {
            let mut candidates: Vec<End> = Vec::new();
            if let Some(deadline) = node.deadline {
                let (created_at, created_seq) = node.created;
                if deadline <= created_at {
                    // Already past when created: it ends on creation.
                    candidates.push((created_at, created_seq + 1, DEADLINE.to_string()));
                } else if deadline <= now {
                    candidates.push((deadline, 0, DEADLINE.to_string()));
                }
            }
            if let Some(cancelled) = &node.cancelled {
                candidates.push((cancelled.0, cancelled.1 + 1, cancelled.2.clone()));
            }
            if let Some(parent) = node.parent {
                if let Some(end) = &ends[parent] {
                    candidates.push(end.clone());
                }
            }
            ends.push(
                candidates
                    .into_iter()
                    .min_by_key(|(t, rank, _)| (*t, *rank)),
            );
        }
        ends
    }
}

fn check(ops: Vec<Op>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let (root, root_guard) = Context::background().with_cancel();
        let mut contexts: Vec<Context> = vec![root];
        let mut guards: Vec<Option<CancelGuard>> = vec![Some(root_guard)];
        let mut model = vec![Model {
            parent: None,
            deadline: None,
            created: (0, 0),
            cancelled: None,
        }];
        let mut now = 0u64;

        let verify = |contexts: &[Context], model: &[Model], now: u64, step: usize| {
            let ends = Model::ends(model, now);
            for (i, ctx) in contexts.iter().enumerate() {
                let expected = ends[i].as_ref().map(|end| end.2.clone());
                let actual = ctx.cause().map(|c| c.to_string());
                assert_eq!(actual, expected, "node {i} after step {step} at {now} ms");
                assert_eq!(ctx.is_cancelled(), expected.is_some());
            }
        };

        for (seq, op) in ops.into_iter().enumerate() {
            let len = contexts.len();
            match op {
                Op::Child { of, timeout } => {
                    let parent = of % len;
                    let (ctx, guard) = match timeout {
                        Some(ms) => contexts[parent].with_timeout(Duration::from_millis(ms)),
                        None => contexts[parent].with_cancel(),
                    };
                    let own = timeout.map(|ms| now + ms);
                    let deadline = match (model[parent].deadline, own) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    contexts.push(ctx);
                    guards.push(Some(guard));
                    model.push(Model {
                        parent: Some(parent),
                        deadline,
                        created: (now, seq),
                        cancelled: None,
                    });
                }
                Op::WithoutCancel { of } => {
                    let (ctx, guard) = contexts[of % len].without_cancel().with_cancel();
                    contexts.push(ctx);
                    guards.push(Some(guard));
                    model.push(Model {
                        parent: None,
                        deadline: None,
                        created: (now, seq),
                        cancelled: None,
                    });
                }
                Op::Cancel { node, user } => {
                    let node = node % len;
                    let cause = match (&guards[node], user) {
                        (Some(guard), Some(u)) => {
                            guard.cancel_with(format!("cause {u}"));
                            format!("context canceled: cause {u}")
                        }
                        (Some(guard), None) => {
                            guard.cancel();
                            "context canceled".to_string()
                        }
                        (None, _) => continue,
                    };
                    model[node].cancelled.get_or_insert((now, seq, cause));
                }
                Op::DropGuard { node } => {
                    let node = node % len;
                    if guards[node].take().is_some() {
                        model[node].cancelled.get_or_insert((
                            now,
                            seq,
                            "context canceled".to_string(),
                        ));
                    }
                }
                Op::Advance { ms } => {
                    tokio::time::advance(Duration::from_millis(ms)).await;
                    now += ms;
                }
                Op::Observe => verify(&contexts, &model, now, seq),
                Op::Wait { node } => {
                    let node = node % len;
                    let mut wait = Box::pin(contexts[node].cancelled());
                    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                    let ready = wait.as_mut().poll(&mut cx).is_ready();
                    let expected = Model::ends(&model, now)[node].is_some();
                    assert_eq!(ready, expected, "waiting on node {node} at step {seq}");
                }
            }
        }
        verify(&contexts, &model, now, usize::MAX);
        drop(guards);
        drop(contexts);
        // Every deadline timer ends with its context.
        palisade_test::assert_no_live_tasks_now().await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_end_exactly_as_modelled(ops in prop::collection::vec(op(), 1..60)) {
        check(ops);
    }
}

#[test]
fn a_cancel_after_an_unobserved_deadline_reports_the_deadline() {
    check(vec![
        Op::Child {
            of: 0,
            timeout: Some(10),
        },
        Op::Child {
            of: 1,
            timeout: None,
        },
        Op::Advance { ms: 10 },
        Op::Cancel {
            node: 1,
            user: Some(1),
        },
        Op::Observe,
    ]);
}
