//! The cancellation tree.
//!
//! Every cancellable context owns a [`Node`]. A node's `state` is one atomic byte,
//! so `is_cancelled` is a single load; everything else (the cause, the registered
//! children, the waiters and callbacks) lives behind the node's mutex.
//!
//! The protocol, which `tests/loom.rs` checks:
//!
//! - Cancelling takes the node's lock, stores the cause, publishes the state and
//!   drains the children, waiters and callbacks, all under that lock; then it wakes
//!   and cancels them with no lock held. A drained node never registers anything
//!   again, so a key in a drained slab is never reused.
//! - A child registers under its parent's lock after checking the parent's state
//!   under the same lock, so it is either drained by the cancellation or born
//!   cancelled; never missed.
//! - The parent holds only a `Weak` to a child: a child whose last handle is gone
//!   unregisters in its `Drop`, and a cancellation that meets it half-dropped skips
//!   it.
//! - A waiter registers its waker after checking the state under the lock, so a
//!   cancellation either sees the waker or the waiter sees the cancellation.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::task::Waker;

use palisade_clock::{Clock, TokioClock};

use crate::cause::Cause;
use crate::slab::Slab;
use crate::sync::{Arc, AtomicBool, AtomicU8, AtomicUsize, Fault, Mutex, Ordering, Weak, fault};

/// The deadline of a node that has none.
pub(crate) const NO_DEADLINE: u64 = u64::MAX;
/// The key of a node that is not registered with a parent.
const NO_KEY: usize = usize::MAX;

const ACTIVE: u8 = 0;
const CANCELLED: u8 = 1;

pub(crate) struct Node {
    state: AtomicU8,
    /// The effective deadline in nanoseconds on the [`TokioClock`] axis: never later
    /// than the parent's.
    deadline: u64,
    /// Whether a timer for `deadline` was started (on this node, the deadline's owner).
    #[cfg_attr(loom, allow(dead_code))]
    timer_armed: AtomicBool,
    /// The parent this node is registered with.
    parent: Option<Arc<Node>>,
    /// This node's key in the parent's `children`, or [`NO_KEY`].
    key: AtomicUsize,
    inner: Mutex<Inner>,
}

struct Inner {
    cause: Option<Cause>,
    children: Slab<Weak<Node>>,
    listeners: Slab<Listener>,
    /// Tasks that serve this node (its deadline timer), aborted when it ends.
    #[cfg(not(loom))]
    tasks: Vec<tokio::task::AbortHandle>,
}

pub(crate) type Callback = Box<dyn FnOnce() + Send + 'static>;

pub(crate) enum Listener {
    Waker(Waker),
    Callback(Callback),
}

impl Node {
    fn new(deadline: u64, parent: Option<Arc<Node>>) -> Node {
        Node {
            state: AtomicU8::new(ACTIVE),
            deadline,
            timer_armed: AtomicBool::new(false),
            parent,
            key: AtomicUsize::new(NO_KEY),
            inner: Mutex::new(Inner {
                cause: None,
                children: Slab::new(),
                listeners: Slab::new(),
                #[cfg(not(loom))]
                tasks: Vec::new(),
            }),
        }
    }

    /// A node with no parent.
    pub(crate) fn root(deadline: u64) -> Arc<Node> {
        Arc::new(Node::new(deadline, None))
    }

    /// A node registered with `parent`, with the earlier of the two deadlines. If the
    /// parent is already cancelled, the child is born cancelled with its cause.
    pub(crate) fn child(parent: &Arc<Node>, deadline: u64) -> Arc<Node> {
        let child = Arc::new(Node::new(
            deadline.min(parent.deadline),
            Some(Arc::clone(parent)),
        ));
        let seen_before_lock =
            fault(Fault::RegisterWithoutRecheck).then(|| parent.state.load(Ordering::Acquire));
        let mut inner = parent.inner.lock();
        let state = seen_before_lock.unwrap_or_else(|| parent.state.load(Ordering::Relaxed));
        if state == ACTIVE {
            let key = inner.children.insert(Arc::downgrade(&child));
            child.key.store(key, Ordering::Relaxed);
        } else {
            // Nobody else can see the child yet: taking its lock under the parent's
            // cannot deadlock.
            let cause = inner.cause.clone().unwrap_or_else(Cause::canceled);
            drop(inner);
            child.inner.lock().cause = Some(cause);
            child.state.store(CANCELLED, Ordering::Release);
        }
        child
    }

    #[inline]
    pub(crate) fn deadline(&self) -> u64 {
        self.deadline
    }

    /// Whether the node is cancelled or its deadline has passed. Observing a passed
    /// deadline cancels the node that set it, with [`Cause::deadline_exceeded`].
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        if self.state.load(Ordering::Acquire) != ACTIVE {
            return true;
        }
        self.deadline != NO_DEADLINE && self.check_deadline()
    }

    /// Whether the cancelled state is published; ignores the deadline.
    #[inline]
    pub(crate) fn is_marked(&self) -> bool {
        self.state.load(Ordering::Acquire) != ACTIVE
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
        self.deadline_owner()
            .cancel_from(&Cause::deadline_exceeded());
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
        Some(
            self.inner
                .lock()
                .cause
                .clone()
                .unwrap_or_else(Cause::canceled),
        )
    }

    /// Cancels this node and every descendant with `cause`; returns whether this call
    /// cancelled it (`false` if it already was). No lock is held while waking,
    /// running callbacks or descending; the walk uses a heap stack, not recursion.
    ///
    /// Deadlines are lazy, so a node reached here may have a deadline that passed
    /// without anybody looking. It ends with [`Cause::deadline_exceeded`], as it would
    /// have if a timer had fired at its deadline, and so do its descendants.
    pub(crate) fn cancel_from(&self, cause: &Cause) -> bool {
        let mut now = None;
        let own = self.cause_at(cause, &mut now);
        let mut pending = Vec::new();
        let mut panic = None;
        let cancelled = self.cancel_one(&own, &mut pending, &mut panic);
        while let Some((node, cause)) = pending.pop() {
            let cause = node.cause_at(&cause, &mut now);
            node.cancel_one(&cause, &mut pending, &mut panic);
        }
        if let Some(payload) = panic {
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
            Cause::deadline_exceeded()
        } else {
            cause.clone()
        }
    }

    fn cancel_one(
        &self,
        cause: &Cause,
        pending: &mut Vec<(Arc<Node>, Cause)>,
        panic: &mut Option<Box<dyn Any + Send>>,
    ) -> bool {
        let (children, listeners);
        #[cfg(not(loom))]
        let tasks;
        {
            let mut inner = self.inner.lock();
            if self.state.load(Ordering::Relaxed) != ACTIVE {
                return false;
            }
            inner.cause = Some(cause.clone());
            self.state.store(CANCELLED, Ordering::Release);
            pending.reserve(inner.children.len());
            children = inner.children.take_all();
            listeners = inner.listeners.take_all();
            #[cfg(not(loom))]
            {
                tasks = std::mem::take(&mut inner.tasks);
            }
        }
        for listener in listeners {
            match listener {
                Listener::Waker(waker) => waker.wake(),
                Listener::Callback(callback) => {
                    if let Err(payload) = catch_unwind(AssertUnwindSafe(callback)) {
                        panic.get_or_insert(payload);
                    }
                }
            }
        }
        #[cfg(not(loom))]
        for task in tasks {
            task.abort();
        }
        for child in children {
            match child.upgrade() {
                Some(child) => pending.push((child, cause.clone())),
                // The child's last handle is gone and its `Drop` is waiting for our
                // lock to unregister; it has nothing left to cancel.
                None => assert!(
                    !fault(Fault::CancelAssumesChildrenAlive),
                    "a registered child was already dropped"
                ),
            }
        }
        true
    }

    /// Registers `waker` (or updates the one at `key`) to be woken on cancellation.
    /// Returns `true` instead if the node is cancelled.
    pub(crate) fn register_waker(&self, key: &mut Option<usize>, waker: &Waker) -> bool {
        let seen_before_lock =
            fault(Fault::WaitWithoutRecheck).then(|| self.state.load(Ordering::Acquire));
        let mut inner = self.inner.lock();
        let state = seen_before_lock.unwrap_or_else(|| self.state.load(Ordering::Relaxed));
        if state != ACTIVE {
            *key = None;
            return true;
        }
        if let Some(k) = *key {
            if let Some(Listener::Waker(registered)) = inner.listeners.get_mut(k) {
                registered.clone_from(waker);
                return false;
            }
        }
        *key = Some(inner.listeners.insert(Listener::Waker(waker.clone())));
        false
    }

    /// Registers `callback` to run once on cancellation; hands it back if the node is
    /// already cancelled.
    pub(crate) fn register_callback(&self, callback: Callback) -> Result<usize, Callback> {
        let mut inner = self.inner.lock();
        if self.state.load(Ordering::Relaxed) != ACTIVE {
            return Err(callback);
        }
        Ok(inner.listeners.insert(Listener::Callback(callback)))
    }

    /// Removes the listener at `key`, if it has not run yet.
    pub(crate) fn remove_listener(&self, key: usize) -> Option<Listener> {
        let mut inner = self.inner.lock();
        if self.state.load(Ordering::Relaxed) != ACTIVE {
            return None;
        }
        inner.listeners.remove(key)
    }

    /// Starts the one timer of the node that owns this node's deadline, unless it runs
    /// already. The timer cancels that node when the deadline passes; it is aborted
    /// when the node is cancelled or dropped.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    #[cfg(not(loom))]
    pub(crate) fn arm_timer(self: &Arc<Self>) {
        if self.deadline == NO_DEADLINE {
            return;
        }
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
        let task = handle.spawn(async move {
            TokioClock.sleep_until(deadline).await;
            if let Some(node) = weak.upgrade() {
                node.cancel_from(&Cause::deadline_exceeded());
            }
        });
        owner.attach_task(task.abort_handle());
    }

    /// Makes `task` end with this node: it is aborted when the node is cancelled or
    /// dropped (at once if the node is already cancelled).
    #[cfg(not(loom))]
    pub(crate) fn attach_task(&self, task: tokio::task::AbortHandle) {
        let mut inner = self.inner.lock();
        if self.state.load(Ordering::Relaxed) == ACTIVE {
            inner.tasks.push(task);
        } else {
            drop(inner);
            task.abort();
        }
    }

    #[cfg(loom)]
    pub(crate) fn arm_timer(self: &Arc<Self>) {}

    /// How many children are registered (for tests of the registry's size).
    #[allow(dead_code)]
    pub(crate) fn children_len(&self) -> usize {
        self.inner.lock().children.len()
    }

    /// How many waiters and callbacks are registered.
    #[allow(dead_code)]
    pub(crate) fn listeners_len(&self) -> usize {
        self.inner.lock().listeners.len()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        #[cfg(not(loom))]
        for task in self.inner.get_mut().tasks.drain(..) {
            task.abort();
        }
        let key = self.key.load(Ordering::Relaxed);
        if key == NO_KEY {
            return;
        }
        if let Some(parent) = &self.parent {
            let mut inner = parent.inner.lock();
            // A cancelled parent has drained its children and never reuses a key.
            if parent.state.load(Ordering::Relaxed) == ACTIVE {
                inner.children.remove(key);
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
