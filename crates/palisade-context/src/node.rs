//! The cancellation tree.
//!
//! Every cancellable context owns a [`Node`]. A node's `state` is one atomic byte:
//! how it ended (the cause's kind, or zero while it runs), whether anything was ever
//! registered on it, and whether it is still lazy. `is_cancelled` is a single load
//! on the common path; the user cause, the registered children, the waiters and the
//! callbacks live behind the node's mutex.
//!
//! **Lazy children.** A child that does not tighten its parent's deadline starts out
//! unregistered (`LAZY`): creating and dropping it touches neither the parent's lock
//! nor its registry, and it learns of its parent's end by looking (`is_cancelled`
//! walks up through lazy ancestors). It registers with its parent (and they with
//! theirs) the first time it has to be told rather than ask: when something waits
//! on it, a callback or task is attached, or a registered child is derived from it.
//! Invariant: a node with registrations (`REG`) is never lazy, so a cancellation
//! pushed down the registered tree reaches every waiter. A node's first
//! registration clears `LAZY` and sets `REG` in one read-modify-write, after the
//! node entered its parent's registry (until then it looks up and is told).
//!
//! The protocol, which `tests/loom.rs` checks:
//!
//! - Cancelling a node that never had registrations is one compare-and-swap of its
//!   state. Otherwise it takes the node's lock, publishes the state (a plain store:
//!   with `REG` set, no other writer changes it), and drains the
//!   children, waiters and callbacks, all under that lock; then it wakes and
//!   cancels them with no lock held. A drained node never registers anything again,
//!   so a key in a drained slab is never reused.
//! - Registering on a node takes its lock and sets `REG` with a read-modify-write
//!   that also returns the current state: either the cancellation's compare-and-swap
//!   came first and the registration sees the end, or it comes after and finds `REG`
//!   set, so it takes the lock and drains the registration. Never missed.
//! - The parent holds only a `Weak` to a child: a child whose last handle is gone
//!   unregisters in its `Drop`, and a cancellation that meets it half-dropped skips it.
//!
//! **Reuse.** The last handle of a node that nothing else refers to (checked with
//! `Arc::get_mut`, which also rules out any `Weak`) and that was never registered
//! anywhere is reset and kept in a one-node slot per thread ([`pool`]); the next
//! node created on that thread takes it instead of allocating. Nothing is shared
//! between threads, so the loom models, which check the protocol above, run
//! without it.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::task::Waker;

use palisade_clock::{Clock, TokioClock};

use crate::cause::{Abandoned, Cause, KIND_CANCELED, KIND_DEADLINE, KIND_USER, UserCause};
use crate::slab::Slab;
use crate::sync::{
    Arc, AtomicBool, AtomicU8, AtomicU32, Fault, Mutex, MutexGuard, Ordering, Weak, fault,
};

/// The deadline of a node that has none.
pub(crate) const NO_DEADLINE: u64 = u64::MAX;
/// How close to its deadline (by [`Clock::recent`]) a node must be for
/// `is_cancelled` to read the exact clock, at the least: 5 ms, five ticks of the
/// recent clock's ticker.
const MIN_DEADLINE_GUARD: u64 = 5_000_000;

/// How close to its deadline (by [`Clock::recent`]) a node must be for
/// `is_cancelled` to read the exact clock: [`MIN_DEADLINE_GUARD`], or four times
/// how far the recent clock lags ([`palisade_clock::recent_resolution`]) where
/// that is coarser (a coarse kernel clock standing in for the ticker). Worked out
/// once per process.
#[inline]
fn deadline_guard() -> u64 {
    // A plain std atomic also under loom: a cache of a constant, not a protocol.
    static GUARD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    match GUARD.load(std::sync::atomic::Ordering::Relaxed) {
        0 => {
            let lag =
                u64::try_from(palisade_clock::recent_resolution().as_nanos()).unwrap_or(u64::MAX);
            let guard = lag.saturating_mul(4).max(MIN_DEADLINE_GUARD);
            GUARD.store(guard, std::sync::atomic::Ordering::Relaxed);
            guard
        }
        guard => guard,
    }
}
/// Whether `deadline` (nanoseconds on the [`TokioClock`] axis) has passed: the
/// recent clock first, the exact clock only within [`deadline_guard`] of it, as
/// [`Node::is_cancelled`] weighs a node's own deadline.
#[inline]
pub(crate) fn deadline_passed(deadline: u64) -> bool {
    TokioClock
        .recent()
        .as_nanos()
        .saturating_add(deadline_guard())
        >= deadline
        && TokioClock.now().as_nanos() >= deadline
}

/// The key of a node that is not registered with a parent.
const NO_KEY: u32 = u32::MAX;

/// The two low bits: how the node ended (see `cause::KIND_*`), zero while it runs.
const KIND: u8 = 0b011;
/// Something is registered on the node (set and cleared under its lock).
const REG: u8 = 0b100;
/// The node has a parent but is not registered with it: it looks up instead.
const LAZY: u8 = 0b1000;
/// The node has a deadline (fixed at creation), so that `is_cancelled` decides
/// from the state alone whether it must look further.
const DEADLINE: u8 = 0b1_0000;

pub(crate) struct Node {
    state: AtomicU8,
    /// The effective deadline in nanoseconds on the [`TokioClock`] axis: never later
    /// than the parent's.
    deadline: u64,
    /// What this node's own deadline ends it with: an [`Abandoned`] code, or 0
    /// for plain [`Cause::deadline_exceeded`]. Fixed at creation.
    deadline_reason: u8,
    /// The [`Abandoned`] code of the cause the node ended with, if it ended with
    /// one (written under the lock, like a user cause, before the end is
    /// published), or 0.
    ended_reason: AtomicU8,
    /// Whether a timer for `deadline` was started (on this node, the deadline's owner).
    #[cfg_attr(loom, allow(dead_code))]
    timer_armed: AtomicBool,
    /// The parent: whose end this node follows.
    parent: Option<Arc<Node>>,
    /// This node's key in the parent's `children`, or [`NO_KEY`]. Written under the
    /// parent's lock.
    key: AtomicU32,
    inner: Mutex<Inner>,
}

struct Inner {
    /// The user cause, once the node ended with one.
    cause: Option<UserCause>,
    /// Everything registered on the node: children, waiters, callbacks and tasks,
    /// in one slab so that an unused node stays small.
    entries: Slab<Listener>,
}

pub(crate) type Callback = Box<dyn FnOnce() + Send + 'static>;

/// Something registered on a node, told when the node ends.
pub(crate) enum Listener {
    /// A registered child, cancelled in turn.
    Child(Weak<Node>),
    Waker(Waker),
    Callback(Callback),
    /// A task that serves the node (its deadline timer), aborted when it ends.
    #[cfg(not(loom))]
    Task(tokio::task::AbortHandle),
}

impl Node {
    fn new(state: u8, deadline: u64, reason: u8, parent: Option<Arc<Node>>) -> Node {
        Node {
            state: AtomicU8::new(state),
            deadline,
            deadline_reason: reason,
            ended_reason: AtomicU8::new(0),
            timer_armed: AtomicBool::new(false),
            parent,
            key: AtomicU32::new(NO_KEY),
            inner: Mutex::new(Inner {
                cause: None,
                entries: Slab::new(),
            }),
        }
    }

    /// A node with no parent.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn root(deadline: u64) -> Arc<Node> {
        Node::root_for(deadline, 0)
    }

    /// A node with no parent whose deadline ends it with the cause of `reason`
    /// (an [`Abandoned`] code, or 0).
    #[inline]
    pub(crate) fn root_for(deadline: u64, reason: u8) -> Arc<Node> {
        Node::fresh(deadline_bit(deadline), deadline, reason, None)
    }

    /// A new node: one kept by [`release`] on this thread if there is one (which
    /// saves an allocation and a free), or else a new allocation.
    #[inline]
    fn fresh(state: u8, deadline: u64, reason: u8, parent: Option<Arc<Node>>) -> Arc<Node> {
        #[cfg(not(loom))]
        if let Some(mut node) = pool::take() {
            // A kept node is unique (`release` checked), and `reset` left it as
            // `Node::new` would, but for these four fields.
            if let Some(fields) = Arc::get_mut(&mut node) {
                *fields.state.get_mut() = state;
                fields.deadline = deadline;
                fields.deadline_reason = reason;
                fields.parent = parent;
                return node;
            }
        }
        Arc::new(Node::new(state, deadline, reason, parent))
    }

    /// Makes a node that nothing else refers to any more like a new one, if it
    /// can be: nothing registered on it, not registered with a parent, no memory
    /// of past registrations kept. Drops its link to its parent.
    #[cfg(not(loom))]
    #[inline]
    fn reset(&mut self) -> bool {
        let inner = self.inner.get_mut();
        if *self.key.get_mut() != NO_KEY || !inner.entries.is_unallocated() {
            return false;
        }
        // An unallocated slab is as new (no entry, no free list).
        inner.cause = None;
        *self.ended_reason.get_mut() = 0;
        *self.timer_armed.get_mut() = false;
        self.parent = None;
        true
    }

    /// A child of `parent` with the earlier of the two deadlines. A child that keeps
    /// the parent's deadline starts lazy; one with an earlier deadline registers at
    /// once, so that its parent's end reaches it with the right cause (see
    /// [`Node::cancel_from`]). A child of an ended parent ends with the parent's cause.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn child(parent: &Arc<Node>, deadline: u64) -> Arc<Node> {
        Node::child_for(parent, deadline, 0)
    }

    /// [`Node::child`] whose own deadline, if it is earlier than the parent's,
    /// ends it with the cause of `reason` (an [`Abandoned`] code, or 0).
    #[inline]
    pub(crate) fn child_for(parent: &Arc<Node>, deadline: u64, reason: u8) -> Arc<Node> {
        let deadline = deadline.min(parent.deadline);
        let child = Node::fresh(
            LAZY | deadline_bit(deadline),
            deadline,
            reason,
            Some(Arc::clone(parent)),
        );
        if deadline != parent.deadline {
            child.materialize();
        }
        child
    }

    #[inline]
    pub(crate) fn deadline(&self) -> u64 {
        self.deadline
    }

    /// Whether the node has ended: it, or a lazy link up to a registered ancestor,
    /// was cancelled, or its deadline has passed. Observing a passed deadline
    /// cancels the node that set it, with [`Cause::deadline_exceeded`].
    ///
    /// The common answers come from loads alone: a quiet node's state; a lazy
    /// node's parent's state; a deadline that is more than [`deadline_guard`] away
    /// by [`Clock::recent`]. Only near the deadline is the clock read.
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        let state = self.state.load(Ordering::Acquire);
        if state & (KIND | LAZY | DEADLINE) == 0 {
            return false;
        }
        if state & KIND != 0 {
            return true;
        }
        if state & LAZY == 0 {
            // Only the deadline is left to weigh.
            return self.deadline_near() && self.check_deadline();
        }
        if state & DEADLINE == 0 {
            // A lazy node without a deadline: a parent that has not ended and is
            // registered itself (or a root) would have been told of any end above.
            if self.parent_quiet() {
                return false;
            }
        }
        self.look_further(state)
    }

    #[inline(never)]
    fn look_further(&self, state: u8) -> bool {
        if state & LAZY != 0 && self.ended_ancestor().is_some() {
            return true;
        }
        state & DEADLINE != 0 && self.deadline_near() && self.check_deadline()
    }

    /// Whether the deadline may have passed: [`Clock::recent`], which lags the exact
    /// clock by about a millisecond, is within [`deadline_guard`] of it. `false`
    /// proves the deadline has not passed unless the recent clock lags by more than
    /// the guard (a starved ticker thread).
    #[inline]
    fn deadline_near(&self) -> bool {
        TokioClock
            .recent()
            .as_nanos()
            .saturating_add(deadline_guard())
            >= self.deadline
    }

    /// Whether the parent is running, registered (or a root) and without a deadline:
    /// then no ancestor of a lazy node has ended.
    #[inline]
    fn parent_quiet(&self) -> bool {
        self.parent.as_ref().is_some_and(|parent| {
            parent.state.load(Ordering::Acquire) & (KIND | LAZY | DEADLINE) == 0
        })
    }

    /// The nearest ancestor that ended, looking up through lazy links only.
    fn ended_ancestor(&self) -> Option<&Node> {
        let mut node = self;
        while node.state.load(Ordering::Acquire) & LAZY != 0 {
            let parent = node.parent.as_deref()?;
            if parent.state.load(Ordering::Acquire) & KIND != 0 {
                return Some(parent);
            }
            node = parent;
        }
        None
    }

    /// Whether `self` is the node's last handle and nothing is registered on it, so
    /// that nothing could observe it end: no context, child, waiter, callback or
    /// task. (Children and waiters hold the node through a context or a child's
    /// parent link; a callback or a task is registered. The parent's registry and
    /// a timer hold only a `Weak`: a cancellation that upgrades it meanwhile ends
    /// the node anyway.)
    #[inline]
    pub(crate) fn quiet_last_handle(self: &Arc<Self>) -> bool {
        if Arc::strong_count(self) != 1 {
            return false;
        }
        // The count is read relaxed: order it after the release decrement of the
        // handle dropped last, so that this reads the `REG` that handle left.
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        self.state.load(Ordering::Acquire) & REG == 0
    }

    /// Whether the node's own end is published; ignores ancestors and the deadline.
    #[inline]
    pub(crate) fn is_marked(&self) -> bool {
        self.state.load(Ordering::Acquire) & KIND != 0
    }

    #[inline(never)]
    fn check_deadline(&self) -> bool {
        if TokioClock.now().as_nanos() >= self.deadline {
            self.expire();
            true
        } else {
            false
        }
    }

    /// Cancels the node that set this node's deadline, which reaches this node.
    #[cold]
    pub(crate) fn expire(&self) {
        let owner = self.deadline_owner();
        owner.cancel_from(&owner.deadline_cause());
    }

    /// What this node's own deadline ends it with.
    fn deadline_cause(&self) -> Cause {
        match Abandoned::from_code(self.deadline_reason) {
            Some(reason) => Cause::abandoned(reason),
            None => Cause::deadline_exceeded(),
        }
    }

    fn deadline_owner(&self) -> &Node {
        let mut node = self;
        while let Some(parent) = &node.parent {
            if parent.deadline != node.deadline {
                break;
            }
            node = parent;
        }
        node
    }

    #[cfg_attr(loom, allow(dead_code))]
    fn deadline_owner_arc(self: &Arc<Self>) -> &Arc<Node> {
        let mut node = self;
        while let Some(parent) = &node.parent {
            if parent.deadline != node.deadline {
                break;
            }
            node = parent;
        }
        node
    }

    /// Why the node ended, if it has.
    pub(crate) fn cause(&self) -> Option<Cause> {
        if !self.is_cancelled() {
            return None;
        }
        if let Some(cause) = self.own_cause() {
            return Some(cause);
        }
        // A lazy node that ended through an ancestor (or a deadline owner above it).
        let mut node = self;
        while let Some(parent) = &node.parent {
            if let Some(cause) = parent.own_cause() {
                return Some(cause);
            }
            node = parent;
        }
        Some(Cause::canceled())
    }

    /// The cause this node itself ended with, if it has.
    fn own_cause(&self) -> Option<Cause> {
        match self.state.load(Ordering::Acquire) & KIND {
            0 => None,
            KIND_CANCELED => Some(Cause::canceled()),
            KIND_DEADLINE => Some(Cause::deadline_exceeded()),
            _ => {
                let inner = self.inner.lock();
                if let Some(cause) = &inner.cause {
                    return Some(Cause::from_arc(Arc::clone(cause)));
                }
                let reason = self.ended_reason.load(Ordering::Relaxed);
                Some(Abandoned::from_code(reason).map_or_else(Cause::canceled, Cause::abandoned))
            }
        }
    }

    /// Registers a lazy node (and its lazy ancestors) with its parent, so that the
    /// parent's end is pushed to it. A node whose parent has ended ends with it.
    pub(crate) fn materialize(self: &Arc<Self>) {
        self.link_up(true);
    }

    /// [`Node::materialize`]; with `clear_own` false, this node may be left `LAZY`
    /// although registered with its parent, for [`Node::lock_for_registration`] to
    /// clear the flag in the same read-modify-write that sets `REG`. (A registered
    /// node that is still `LAZY` looks up as well as being told: both are right.)
    fn link_up(self: &Arc<Self>, clear_own: bool) {
        if self.state.load(Ordering::Acquire) & LAZY == 0 {
            return;
        }
        let parent_registered = self
            .parent
            .as_ref()
            .is_none_or(|parent| parent.state.load(Ordering::Acquire) & LAZY == 0);
        if parent_registered {
            // The common case: one link, no list to build.
            self.register_with_parent(clear_own);
            return;
        }
        // Top down: a parent registers before its child.
        let mut chain = vec![self];
        let mut node = self;
        while let Some(parent) = &node.parent {
            if parent.state.load(Ordering::Acquire) & LAZY == 0 {
                break;
            }
            chain.push(parent);
            node = parent;
        }
        // Every ancestor is left registered and not lazy, so that its children can
        // register with it.
        for (depth, node) in chain.into_iter().enumerate().rev() {
            node.register_with_parent(clear_own || depth != 0);
        }
    }

    /// Registers this node with its parent unless it is already, and clears `LAZY`
    /// if `clear_lazy`.
    fn register_with_parent(self: &Arc<Self>, clear_lazy: bool) {
        let Some(parent) = &self.parent else {
            self.state.fetch_and(!LAZY, Ordering::AcqRel);
            return;
        };
        match parent.lock_for_registration(Fault::RegisterWithoutRecheck) {
            Ok(mut inner) => {
                // Another thread may have registered this node meanwhile; the key is
                // written under the parent's lock, so this check is exact.
                if self.key.load(Ordering::Relaxed) == NO_KEY || fault(Fault::RegisterChildTwice) {
                    let key = inner.entries.insert(Listener::Child(Arc::downgrade(self)));
                    // A slab counts its entries in 32 bits, so a key is below NO_KEY.
                    self.key.store(key as u32, Ordering::Relaxed);
                }
                if clear_lazy && self.state.load(Ordering::Acquire) & LAZY != 0 {
                    self.state.fetch_and(!LAZY, Ordering::AcqRel);
                }
            }
            Err(inner) => {
                // Another thread registered this node before the parent ended (the
                // key is written under the parent's lock, held here): the parent's
                // own cancellation reaches it, with whatever was registered on it
                // since. Ending it here would drop that walk's descendants.
                if self.key.load(Ordering::Relaxed) != NO_KEY
                    && !fault(Fault::EndRegisteredNodeAlone)
                {
                    return;
                }
                drop(inner);
                // Never registered: born under an ended parent, or the parent ended
                // while this node was lazy. Either way this node ended with it, with
                // the same cause; an unregistered node has no registrations, so there
                // is nothing to descend to. It ends before `LAZY` clears, so that
                // `is_cancelled`, which looked up through the parent until now, never
                // reads it running in between.
                let cause = parent.own_cause().unwrap_or_else(Cause::canceled);
                self.cancel_one(&cause, &mut Walk::default(), false);
                self.state.fetch_and(!LAZY, Ordering::AcqRel);
            }
        }
    }

    /// Locks the node to register something on it, marking it `REG` and clearing
    /// `LAZY` in one read-modify-write. Hands back `Err` (still locked) if the node
    /// has ended. The node must be registered with its parent (or have none).
    fn lock_for_registration(
        &self,
        twin: Fault,
    ) -> Result<MutexGuard<'_, Inner>, MutexGuard<'_, Inner>> {
        let seen_before_lock = fault(twin).then(|| self.state.load(Ordering::Acquire));
        let inner = self.inner.lock();
        let state = match seen_before_lock {
            Some(stale) => stale,
            None => {
                let mut state = self.state.load(Ordering::Acquire);
                // Unless it is already so (or ended), make the state `REG` and not
                // `LAZY`. Only registrations, under this lock, set `REG`; the
                // compare-and-swap orders this against a lock-free cancellation.
                while state & KIND == 0 && state & (REG | LAZY) != REG {
                    match self.state.compare_exchange_weak(
                        state,
                        (state & !LAZY) | REG,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => break,
                        Err(actual) => state = actual,
                    }
                }
                state
            }
        };
        if state & KIND != 0 {
            Err(inner)
        } else {
            Ok(inner)
        }
    }

    /// Cancels this node and every registered descendant with `cause`; returns
    /// whether this call ended it (`false` if it already had). Lazy descendants see
    /// the end when they look. No lock is held while waking, running callbacks or
    /// descending; the walk keeps grandchildren on a heap list,
    /// so the call stack stays two levels deep however deep the tree.
    ///
    /// Deadlines are lazy, so a node reached here may have a deadline that passed
    /// without anybody looking. It ends with [`Cause::deadline_exceeded`], as it would
    /// have if a timer had fired at its deadline, and so do its descendants. (A lazy
    /// child shares its parent's deadline, so the parent's cause is right for it.)
    #[inline]
    pub(crate) fn cancel_from(&self, cause: &Cause) -> bool {
        match self.try_cancel_fast(cause.kind_bits()) {
            Some(cancelled) => cancelled,
            None => self.cancel_tree(cause),
        }
    }

    /// [`Node::cancel_from`] with [`Cause::canceled`], as a dropped guard does.
    #[inline]
    pub(crate) fn cancel_plain(&self) -> bool {
        match self.try_cancel_fast(KIND_CANCELED) {
            Some(cancelled) => cancelled,
            None => self.cancel_tree(&Cause::canceled()),
        }
    }

    /// Ends a node that has nothing registered and no deadline with one
    /// compare-and-swap; `None` if the whole walk is needed.
    #[inline]
    fn try_cancel_fast(&self, kind: u8) -> Option<bool> {
        let state = self.state.load(Ordering::Acquire);
        if state & KIND != 0 {
            return Some(false);
        }
        if state & LAZY != 0 && !self.parent_quiet() && self.ended_ancestor().is_some() {
            // It ended with an ancestor, which it had not yet looked at.
            return Some(false);
        }
        if state & (REG | DEADLINE) == 0 && kind != KIND_USER {
            // Nothing registered and no deadline to weigh: one compare-and-swap.
            match self.state.compare_exchange(
                state,
                state | kind,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(true),
                Err(actual) if actual & KIND != 0 => return Some(false),
                Err(_) => {}
            }
        }
        None
    }

    #[inline(never)]
    fn cancel_tree(&self, cause: &Cause) -> bool {
        let mut walk = Walk::default();
        let own = self.cause_at(cause, &mut walk.now);
        let cancelled = self.cancel_one(&own, &mut walk, true);
        while let Some((node, cause)) = walk.pending.pop() {
            let cause = node.cause_at(&cause, &mut walk.now);
            node.cancel_one(&cause, &mut walk, true);
        }
        if let Some(payload) = walk.panic {
            resume_unwind(payload);
        }
        cancelled
    }

    /// `cause`, or [`Cause::deadline_exceeded`] if this node's deadline has passed.
    /// Reads the clock at most once per cancellation, and only for nodes with a
    /// deadline.
    fn cause_at(&self, cause: &Cause, now: &mut Option<u64>) -> Cause {
        if self.deadline == NO_DEADLINE || cause.is_deadline_exceeded() {
            return cause.clone();
        }
        let now = *now.get_or_insert_with(|| TokioClock.now().as_nanos());
        if now >= self.deadline {
            self.deadline_owner().deadline_cause()
        } else {
            cause.clone()
        }
    }

    /// Ends this node with `cause` and tells what is registered on it. Its registered
    /// children are cancelled in turn right here if `children_now`, and their own
    /// children are left in the walk's `pending` list: the stack stays two calls
    /// deep however deep the tree, and a parent with plain children needs no list.
    fn cancel_one(&self, cause: &Cause, walk: &mut Walk, children_now: bool) -> bool {
        let kind = cause.kind_bits();
        // Fast path: nothing was ever registered, so there is nothing to drain.
        if kind != KIND_USER {
            let mut state = self.state.load(Ordering::Acquire);
            while state & (KIND | REG) == 0 {
                match self.state.compare_exchange_weak(
                    state,
                    state | kind,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return true,
                    Err(actual) => state = actual,
                }
            }
            if state & KIND != 0 {
                return false;
            }
        }
        let (head, rest);
        {
            let mut inner = self.inner.lock();
            let mut state = self.state.load(Ordering::Acquire);
            loop {
                if state & KIND != 0 {
                    return false;
                }
                if state & REG != 0 {
                    // `REG` keeps every other writer off the state while the lock is
                    // held: the lock-free compare-and-swaps expect it clear, `REG`
                    // changes under the lock, and `LAZY` was cleared with it set. A
                    // plain store publishes the end.
                    self.state.store(state | kind, Ordering::Release);
                    break;
                }
                match self.state.compare_exchange_weak(
                    state,
                    state | kind,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(actual) => state = actual,
                }
            }
            if kind == KIND_USER {
                // Readers of such a cause take the lock, which is held until it is set.
                inner.cause = cause.user_cause_arc();
                if let Some(reason) = cause.abandoned_by() {
                    self.ended_reason.store(reason.code(), Ordering::Relaxed);
                }
            }
            if inner.entries.len() == 0 {
                // Nothing to tell; the slab's memory goes with the node.
                return true;
            }
            if !children_now {
                walk.pending.reserve(inner.entries.len());
            }
            (head, rest) = inner.entries.take_all();
        }
        // The inline entry alone (a single waiter) needs no walk over a list.
        if let Some(entry) = head {
            tell(entry, cause, walk, children_now);
        }
        if let Some(rest) = rest {
            for entry in rest {
                tell(entry, cause, walk, children_now);
            }
        }
        true
    }

    /// Registers `waker` (or updates the one at `key`) to be woken on cancellation.
    /// Returns `true` instead if the node has ended.
    pub(crate) fn register_waker(self: &Arc<Self>, key: &mut Option<usize>, waker: &Waker) -> bool {
        self.link_up(false);
        let Ok(mut inner) = self.lock_for_registration(Fault::WaitWithoutRecheck) else {
            *key = None;
            return true;
        };
        if let Some(k) = *key {
            if let Some(Listener::Waker(registered)) = inner.entries.get_mut(k) {
                registered.clone_from(waker);
                return false;
            }
        }
        *key = Some(inner.entries.insert(Listener::Waker(waker.clone())));
        false
    }

    /// Registers `callback` to run once on cancellation; hands it back if the node has
    /// already ended.
    pub(crate) fn register_callback(
        self: &Arc<Self>,
        callback: Callback,
    ) -> Result<usize, Callback> {
        self.link_up(false);
        match self.lock_for_registration(Fault::None) {
            Ok(mut inner) => Ok(inner.entries.insert(Listener::Callback(callback))),
            Err(_) => Err(callback),
        }
    }

    /// Removes the listener at `key`, if it has not run yet. On an ended node this
    /// is one load: its listeners are drained (or being drained under the lock, by
    /// the thread that ended it), so there is nothing to take back.
    #[inline]
    pub(crate) fn remove_listener(&self, key: usize) -> Option<Listener> {
        if self.is_marked() {
            return None;
        }
        self.remove_listener_locked(key)
    }

    #[inline(never)]
    fn remove_listener_locked(&self, key: usize) -> Option<Listener> {
        let mut inner = self.inner.lock();
        if self.state.load(Ordering::Acquire) & KIND != 0 {
            return None;
        }
        let removed = inner.entries.remove(key);
        self.note_if_empty(&inner);
        removed
    }

    /// Clears `REG` once nothing is registered (under the lock), so that ending the
    /// node is one compare-and-swap again.
    fn note_if_empty(&self, inner: &Inner) {
        if inner.entries.len() == 0 {
            self.state.fetch_and(!REG, Ordering::AcqRel);
        }
    }

    /// Starts the one timer of the node that owns this node's deadline, unless it runs
    /// already. The timer cancels that node when the deadline passes; it is aborted
    /// when the node ends or is dropped.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (with a deadline; without one this is one compare).
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn arm_timer(self: &Arc<Self>) {
        if self.deadline != NO_DEADLINE {
            self.start_timer();
        }
    }

    #[cfg(not(loom))]
    #[inline(never)]
    fn start_timer(self: &Arc<Self>) {
        let owner = self.deadline_owner_arc();
        if owner.timer_armed.load(Ordering::Relaxed)
            || owner.timer_armed.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let deadline = palisade_clock::Timestamp::from_nanos(owner.deadline);
        let weak = Arc::downgrade(owner);
        let handle = tokio::runtime::Handle::try_current().unwrap_or_else(|_| {
            panic!("awaiting a context deadline needs a tokio runtime with the time driver")
        });
        #[allow(clippy::disallowed_methods)] // the node's deadline timer, aborted when it ends
        let task = handle.spawn(async move {
            TokioClock.sleep_until(deadline).await;
            if let Some(node) = weak.upgrade() {
                node.cancel_from(&node.deadline_cause());
            }
        });
        owner.attach_task(task.abort_handle());
    }

    /// Makes `task` end with this node: it is aborted when the node ends or is
    /// dropped (at once if the node has already ended).
    #[cfg(not(loom))]
    pub(crate) fn attach_task(self: &Arc<Self>, task: tokio::task::AbortHandle) {
        self.link_up(false);
        match self.lock_for_registration(Fault::None) {
            Ok(mut inner) => {
                inner.entries.insert(Listener::Task(task));
            }
            Err(inner) => {
                drop(inner);
                task.abort();
            }
        }
    }

    #[cfg(loom)]
    pub(crate) fn arm_timer(self: &Arc<Self>) {}

    /// How many children are registered.
    pub(crate) fn children_len(&self) -> usize {
        let inner = self.inner.lock();
        inner
            .entries
            .iter()
            .filter(|entry| matches!(entry, Listener::Child(_)))
            .count()
    }

    /// How many waiters and callbacks are registered.
    pub(crate) fn listeners_len(&self) -> usize {
        let inner = self.inner.lock();
        inner
            .entries
            .iter()
            .filter(|entry| matches!(entry, Listener::Waker(_) | Listener::Callback(_)))
            .count()
    }
}

/// The state of one cancellation's walk down the tree.
#[derive(Default)]
struct Walk {
    /// Nodes still to cancel, with the cause that reached them.
    pending: Vec<(Arc<Node>, Cause)>,
    /// The first panic of a callback, raised again once the walk is done.
    panic: Option<Box<dyn Any + Send>>,
    /// The clock, read at most once per walk (see [`Node::cause_at`]).
    now: Option<u64>,
}

/// Tells one listener of a drained node that the node ended with `cause`; a child
/// is cancelled at once if `child_now`, or else left in `walk.pending`.
#[inline]
fn tell(entry: Listener, cause: &Cause, walk: &mut Walk, child_now: bool) {
    match entry {
        Listener::Waker(waker) => waker.wake(),
        Listener::Callback(callback) => {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(callback)) {
                walk.panic.get_or_insert(payload);
            }
        }
        #[cfg(not(loom))]
        Listener::Task(task) => task.abort(),
        Listener::Child(child) => match child.upgrade() {
            Some(child) if child_now => {
                let cause = child.cause_at(cause, &mut walk.now);
                child.cancel_one(&cause, walk, false);
            }
            Some(child) => walk.pending.push((child, cause.clone())),
            // The child's last handle is gone and its `Drop` is waiting for the
            // parent's lock to unregister, or returned on seeing the parent ended;
            // it has nothing left to cancel.
            None => assert!(
                !fault(Fault::CancelAssumesChildrenAlive),
                "a registered child was already dropped"
            ),
        },
    }
}

const fn deadline_bit(deadline: u64) -> u8 {
    if deadline == NO_DEADLINE { 0 } else { DEADLINE }
}

/// Drops a handle of a node (a [`Context`](crate::Context)'s or a
/// [`CancelGuard`](crate::CancelGuard)'s). The last handle of a node that nothing
/// else refers to (no registration in a parent, no timer, no waiter) keeps the
/// allocation on this thread for the next node created here; see [`pool`].
#[inline(always)]
pub(crate) fn release(node: Arc<Node>) {
    // The key is written by a registration, which needs a handle: with this the
    // last one, it cannot change now. `pool::keep` checks both again.
    #[cfg(not(loom))]
    if Arc::strong_count(&node) == 1 && node.key.load(Ordering::Relaxed) == NO_KEY {
        pool::keep(node);
        return;
    }
    drop(node);
}

/// One node kept for reuse per thread.
///
/// A child context that comes and goes (`with_cancel`, a check or two, both
/// handles dropped) is the commonest use of this crate, and a memory allocation
/// and a free were most of what it cost. A node whose last handle is dropped and
/// that nothing else refers to is reset and kept here, and the next node created
/// on the thread takes it. Reuse cannot be observed: a kept node is unique (no
/// handle, child, registration or timer refers to it), and it is reset to what a
/// new one would be. One slot is kept, not a list: it serves a loop that creates
/// and drops children one at a time, it costs two moves, and a list's bookkeeping
/// measured at about a third of what the slot saves. A node released while the
/// slot is full is freed (the slot keeps the node it has); the kept node (about
/// 120 bytes) is freed when the thread exits.
#[cfg(not(loom))]
mod pool {
    use std::cell::Cell;

    use super::{Arc, Node};

    std::thread_local! {
        static POOL: Cell<Option<Arc<Node>>> = const { Cell::new(None) };
    }

    /// A kept node, if this thread has one.
    #[inline]
    pub(super) fn take() -> Option<Arc<Node>> {
        POOL.try_with(Cell::take).ok().flatten()
    }

    /// Keeps `node` if the slot is free and the node is unique and can be reset
    /// (see [`Node::reset`]); frees it otherwise, and if the thread's slot is gone
    /// (a handle dropped as the thread exits). A full slot is left as it is: a
    /// burst of nodes dropped together pays for one reset, not one each.
    #[inline(never)]
    pub(super) fn keep(node: Arc<Node>) {
        let mut node = Some(node);
        let _ = POOL.try_with(|slot| match slot.take() {
            None => {
                // `get_mut` also proves that no `Weak` is left (a parent's registry,
                // a timer).
                if node
                    .as_mut()
                    .and_then(Arc::get_mut)
                    .is_some_and(Node::reset)
                {
                    slot.set(node.take());
                }
            }
            kept => slot.set(kept),
        });
    }

    /// How many nodes this thread keeps (for tests).
    #[cfg(test)]
    pub(super) fn len() -> usize {
        POOL.with(|pool| {
            let node = pool.take();
            let len = usize::from(node.is_some());
            pool.set(node);
            len
        })
    }
}

impl Drop for Node {
    /// A quiet node (nothing registered on it, not registered with its parent)
    /// drops with two loads; the rest is out of line.
    #[inline]
    fn drop(&mut self) {
        #[cfg(not(loom))]
        if self.inner.get_mut().entries.len() != 0 {
            self.abort_tasks();
        }
        let key = self.key.load(Ordering::Relaxed);
        if key != NO_KEY {
            self.unregister(key);
        }
    }
}

impl Node {
    /// Aborts the tasks that serve a node being dropped.
    #[cfg(not(loom))]
    #[inline(never)]
    fn abort_tasks(&mut self) {
        let (head, rest) = self.inner.get_mut().entries.take_all();
        for entry in head.into_iter().chain(rest.into_iter().flatten()) {
            if let Listener::Task(task) = entry {
                task.abort();
            }
        }
    }

    /// Removes a node being dropped from its parent's registry.
    #[inline(never)]
    fn unregister(&self, key: u32) {
        if let Some(parent) = &self.parent {
            if parent.is_marked() {
                // An ended parent has drained its children (or is draining them under
                // its lock, and skips this one, whose last handle is gone).
                return;
            }
            let mut inner = parent.inner.lock();
            // An ended parent has drained its children and never reuses a key.
            if parent.state.load(Ordering::Acquire) & KIND == 0 {
                inner.entries.remove(key as usize);
                parent.note_if_empty(&inner);
            }
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("cancelled", &self.is_marked())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom), target_pointer_width = "64"))]
mod tests {
    use super::*;

    /// A node created after one was released on this thread reuses it, and
    /// nothing of the old node shows: its cause, its parent, its deadline.
    #[test]
    fn a_released_node_is_reused_as_new() {
        let old_parent = Node::root(NO_DEADLINE);
        let new_parent = Node::root(NO_DEADLINE);
        let old = Node::child(&old_parent, NO_DEADLINE);
        old.cancel_from(&Cause::user("gone"));
        assert!(old.cause().unwrap().user_cause().is_some());
        let address = Arc::as_ptr(&old);
        release(old);
        assert_eq!(pool::len(), 1);
        assert_eq!(
            Arc::strong_count(&old_parent),
            1,
            "the parent link was dropped"
        );

        let deadline = TokioClock.now().as_nanos() + 3_600_000_000_000;
        let new = Node::child(&new_parent, deadline);
        assert_eq!(Arc::as_ptr(&new), address, "the kept node was taken");
        assert_eq!(pool::len(), 0);
        assert!(!new.is_cancelled());
        assert!(new.cause().is_none());
        assert_eq!(new.deadline(), deadline);
        assert_eq!(
            new.key.load(Ordering::Relaxed),
            0,
            "registered with its new parent"
        );
        old_parent.cancel_plain();
        assert!(!new.is_cancelled(), "the old parent is not its parent");
        new_parent.cancel_plain();
        assert!(new.is_cancelled());
        assert!(new.cause().unwrap().is_canceled());
    }

    /// A node that something else still refers to (another handle, its parent's
    /// registry, a listener) is not kept.
    #[test]
    fn only_an_unreferenced_quiet_node_is_kept() {
        let parent = Node::root(NO_DEADLINE);
        drop(pool::take());

        // Another handle.
        let child = Node::child(&parent, NO_DEADLINE);
        let other = Arc::clone(&child);
        release(child);
        assert_eq!(pool::len(), 0);
        assert_eq!(Arc::strong_count(&other), 1);

        // Registered with its parent: the registry holds a `Weak`.
        other.materialize();
        release(other);
        assert_eq!(pool::len(), 0);
        assert_eq!(parent.children_len(), 0, "it unregistered as it was freed");

        // Past registrations left memory behind (on a root, which no registry
        // refers to).
        let root = Node::root(NO_DEADLINE);
        let keys: Vec<_> = (0..2)
            .map(|_| {
                root.register_callback(Box::new(|| {}))
                    .unwrap_or_else(|_| panic!("the root ended"))
            })
            .collect();
        for key in keys {
            assert!(root.remove_listener(key).is_some());
        }
        release(root);
        assert_eq!(pool::len(), 0);
        // Without that memory, it is kept.
        let root = Node::root(NO_DEADLINE);
        let key = root
            .register_callback(Box::new(|| {}))
            .unwrap_or_else(|_| panic!("the root ended"));
        assert!(root.remove_listener(key).is_some());
        release(root);
        assert_eq!(pool::len(), 1);
        drop(pool::take());

        // A quiet lazy child is kept.
        let kept = Node::child(&parent, NO_DEADLINE);
        let address = Arc::as_ptr(&kept);
        release(kept);
        assert_eq!(pool::len(), 1);
        // A full slot is left as it is; the node is freed.
        release(Node::child(&parent, NO_DEADLINE));
        let taken = pool::take().expect("a node is kept");
        assert_eq!(Arc::as_ptr(&taken), address, "the slot kept the first node");
        assert_eq!(
            Arc::strong_count(&parent),
            1,
            "the kept node dropped its parent link"
        );
    }

    /// A node with its reference counts stays within 120 bytes, the largest
    /// allocation that the system allocator serves from its fast bins: a larger
    /// node makes creating and dropping children markedly slower.
    #[test]
    fn a_node_fits_a_fast_bin() {
        let size = std::mem::size_of::<Node>() + 2 * std::mem::size_of::<usize>();
        assert!(size <= 120, "a node with its counts takes {size} bytes");
    }
}
