use std::any::{Any, TypeId};
use std::fmt;
use std::future::{Future, IntoFuture};
use std::time::Duration;

use palisade_clock::{Clock, Timestamp, TokioClock};

use crate::cause::{Abandoned, Cause};
use crate::future::{Cancelled, Run};
use crate::node::{self, Listener, NO_DEADLINE, Node};
use crate::sync::Arc;
use crate::trace::{RequestId, TraceContext};

/// A cancellation signal, a deadline and typed values, carried by every call.
///
/// A `Context` is cheap to clone (one or two reference-count increments) and is
/// `Send + Sync`. Contexts form a tree: [`Context::background`] is the root that
/// never ends, and each `with_*` method derives a child. A parent's cancellation
/// reaches every descendant; a child never cancels its parent; a child's deadline
/// is never later than its parent's.
///
/// The handle that can cancel a child is a [`CancelGuard`], and dropping it cancels
/// the child: the leak of a forgotten `cancel()` cannot happen. A child whose last
/// handle is gone unregisters from its parent, so a long-lived parent does not grow.
///
/// ```
/// use palisade_context::Context;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let root = Context::background();
/// let (request, _guard) = root.with_timeout(Duration::from_secs(2));
/// let (step, step_guard) = request.with_cancel();
/// assert!(step.remaining().unwrap() <= Duration::from_secs(2));
///
/// drop(step_guard); // cancels `step`, not `request`
/// assert!(step.is_cancelled());
/// assert!(!request.is_cancelled());
///
/// // The deadline ends `request` once it passes.
/// request.cancelled().await;
/// assert!(request.cause().unwrap().is_deadline_exceeded());
/// # }
/// ```
#[derive(Clone)]
pub struct Context {
    /// `None` for a context that can never be cancelled (background, `without_cancel`).
    node: Option<Arc<Node>>,
    values: Link,
    /// A deadline of this handle's own, set by [`Context::capped`], or [`NO_CAP`]:
    /// the deadline in nanoseconds on the [`TokioClock`] axis with its two low
    /// bits replaced by the [`Abandoned`] code it ends the context with.
    cap: u64,
}

impl Default for Context {
    #[allow(clippy::disallowed_methods)] // the default is the background context by definition
    fn default() -> Context {
        Context::background()
    }
}

/// The `cap` of a context without a deadline of its own.
pub(crate) const NO_CAP: u64 = u64::MAX;
/// The bits of a `cap` that hold its [`Abandoned`] code.
const CAP_REASON: u64 = 0b11;

/// The deadline of a `cap`, or [`NO_DEADLINE`].
#[inline]
pub(crate) const fn cap_deadline(cap: u64) -> u64 {
    if cap == NO_CAP {
        NO_DEADLINE
    } else {
        cap & !CAP_REASON
    }
}

/// The [`Abandoned`] code of a `cap`.
#[inline]
pub(crate) const fn cap_reason(cap: u64) -> u8 {
    (cap & CAP_REASON) as u8
}

/// Whether the deadline of `cap` (not [`NO_CAP`]) has passed; out of line, so
/// that [`Context::is_cancelled`] stays a load and a compare inline.
#[inline(never)]
fn cap_passed(cap: u64) -> bool {
    node::deadline_passed(cap_deadline(cap))
}

/// The node that stands for a capped context where something must be told of
/// its end (a waiter, a callback, a child): a child of `node` (or a root) whose
/// own deadline is the cap's, ending it with the cap's cause.
pub(crate) fn cap_node(node: Option<&Arc<Node>>, cap: u64) -> Arc<Node> {
    let deadline = cap_deadline(cap);
    let reason = cap_reason(cap);
    match node {
        Some(parent) => Node::child_for(parent, deadline, reason),
        None => Node::root_for(deadline, reason),
    }
}

struct ValueNode {
    entry: Entry,
    next: Option<Arc<ValueNode>>,
}

/// What one [`ValueNode`] holds: a value ([`Context::with_value`]) or several
/// attached together ([`Context::with_values`]).
enum Entry {
    /// Nothing: a node kept for reuse ([`value_pool`]).
    #[cfg_attr(loom, allow(dead_code))]
    Empty,
    One {
        type_id: TypeId,
        type_name: &'static str,
        value: Box<dyn Any + Send + Sync>,
    },
    /// The trace context and the request id that the inbound edge attaches
    /// to every request's context, held in the node itself.
    Request(TraceContext, RequestId),
    Many(Box<dyn values::Set>),
}

impl ValueNode {
    #[inline]
    fn get(&self, wanted: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        match &self.entry {
            Entry::One { type_id, value, .. } => (*type_id == wanted).then_some(&**value),
            Entry::Request(trace, id) => {
                if wanted == TypeId::of::<RequestId>() {
                    Some(id)
                } else if wanted == TypeId::of::<TraceContext>() {
                    Some(trace)
                } else {
                    None
                }
            }
            Entry::Many(set) => set.get(wanted),
            Entry::Empty => None,
        }
    }

    fn type_names(&self, out: &mut Vec<&'static str>) {
        match &self.entry {
            Entry::One { type_name, .. } => out.push(type_name),
            Entry::Request(..) => {
                out.push(std::any::type_name::<RequestId>());
                out.push(std::any::type_name::<TraceContext>());
            }
            Entry::Many(set) => set.type_names(out),
            Entry::Empty => {}
        }
    }
}

/// Several values attached to a [`Context`] together, by
/// [`Context::with_values`]: a tuple of one to four values, each
/// `Send + Sync + 'static`.
///
/// Implemented for tuples only; the trait cannot be implemented elsewhere.
pub trait Values: values::Set {}

mod values {
    use std::any::{Any, TypeId};

    /// What a [`ValueNode`](super::ValueNode) of several values answers.
    pub trait Set: Send + Sync + 'static {
        /// The last value of type `wanted` (a later one shadows an earlier one
        /// of its type, as a later [`with_value`](super::Context::with_value)
        /// does).
        fn get(&self, wanted: TypeId) -> Option<&(dyn Any + Send + Sync)>;
        /// The values' type names, last first (nearest first, as the
        /// context's `Debug` lists them).
        fn type_names(&self, out: &mut Vec<&'static str>);
    }

    // The types in order, then again last first: the order they are looked up in.
    macro_rules! tuple {
        ($($name:ident),+ ; $($last:ident $index:tt),+) => {
            impl<$($name: Send + Sync + 'static),+> Set for ($($name,)+) {
                #[inline]
                fn get(&self, wanted: TypeId) -> Option<&(dyn Any + Send + Sync)> {
                    $(
                        if TypeId::of::<$last>() == wanted {
                            return Some(&self.$index);
                        }
                    )+
                    None
                }

                fn type_names(&self, out: &mut Vec<&'static str>) {
                    $(out.push(std::any::type_name::<$last>());)+
                }
            }

            impl<$($name: Send + Sync + 'static),+> super::Values for ($($name,)+) {}
        };
    }

    tuple!(A; A 0);
    tuple!(A, B; B 1, A 0);
    tuple!(A, B, C; C 2, B 1, A 0);
    tuple!(A, B, C, D; D 3, C 2, B 1, A 0);
}

impl Context {
    /// The root context: never cancelled, no deadline, no values. Allocates nothing.
    pub const fn background() -> Context {
        Context {
            node: None,
            values: Link(None),
            cap: NO_CAP,
        }
    }

    /// A child that can be cancelled through the returned guard (Go's `WithCancel`
    /// and `WithCancelCause`). Dropping the guard cancels the child.
    pub fn with_cancel(&self) -> (Context, CancelGuard) {
        self.child(NO_DEADLINE)
    }

    /// A child that ends at the earlier of `deadline` and the parent's deadline (Go's
    /// `WithDeadline`). `deadline` is on the [`TokioClock`] axis (`TokioClock.now()`).
    pub fn with_deadline(&self, deadline: Timestamp) -> (Context, CancelGuard) {
        self.child(deadline.as_nanos())
    }

    /// A child that ends after `timeout` or at the parent's deadline, whichever comes
    /// first (Go's `WithTimeout`).
    pub fn with_timeout(&self, timeout: Duration) -> (Context, CancelGuard) {
        self.with_deadline(TokioClock.now().saturating_add(timeout))
    }

    /// A child that ends at the earlier of `deadline` and the parent's deadline,
    /// like [`with_deadline`](Self::with_deadline); when it is `deadline` that
    /// passes, the child ends with [`Cause::abandoned`]`(reason)` rather than
    /// [`Cause::deadline_exceeded`]. For the context of one attempt of a
    /// resilience pipeline, whose deadline is an attempt or a total timeout.
    ///
    /// Like every child, it allocates nothing when a node that this thread
    /// released before can be reused.
    ///
    /// ```
    /// use palisade_context::{Abandoned, Context};
    /// use palisade_clock::{Clock, TokioClock};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let deadline = TokioClock.now().saturating_add(Duration::from_millis(100));
    /// let (attempt, _guard) = Context::background()
    ///     .with_deadline_reason(deadline, Abandoned::AttemptTimeout);
    /// attempt.cancelled().await;
    /// let cause = attempt.cause().unwrap();
    /// assert!(cause.is_deadline_exceeded());
    /// assert_eq!(cause.abandoned_by(), Some(Abandoned::AttemptTimeout));
    /// # }
    /// ```
    #[inline]
    pub fn with_deadline_reason(
        &self,
        deadline: Timestamp,
        reason: Abandoned,
    ) -> (Context, CancelGuard) {
        self.child_for(deadline.as_nanos(), reason.code())
    }

    #[inline]
    fn child(&self, deadline: u64) -> (Context, CancelGuard) {
        self.child_for(deadline, 0)
    }

    #[inline]
    fn child_for(&self, deadline: u64, reason: u8) -> (Context, CancelGuard) {
        // A capped context's children end at its cap too, with its cause.
        let capped = cap_deadline(self.cap);
        let (deadline, reason) = if capped < deadline {
            (capped, cap_reason(self.cap))
        } else {
            (deadline, reason)
        };
        let node = match &self.node {
            Some(parent) => Node::child_for(parent, deadline, reason),
            None => Node::root_for(deadline, reason),
        };
        let guard = CancelGuard {
            node: Some(Arc::clone(&node)),
        };
        let ctx = Context {
            node: Some(node),
            values: self.values.clone(),
            cap: NO_CAP,
        };
        (ctx, guard)
    }

    /// A context with the same cancellation and deadline that also carries `value`
    /// (Go's `WithValue`). Values are keyed by type: a value of a type already present
    /// shadows it. Wrap values in a newtype to give them a meaning of their own.
    ///
    /// ```
    /// use palisade_context::Context;
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct RequestId(u64);
    ///
    /// let ctx = Context::background().with_value(RequestId(7));
    /// assert_eq!(ctx.get::<RequestId>(), Some(&RequestId(7)));
    /// assert_eq!(ctx.get::<String>(), None);
    /// ```
    pub fn with_value<T: Send + Sync + 'static>(&self, value: T) -> Context {
        Context {
            node: self.node.clone(),
            cap: self.cap,
            values: Link(Some(value_node(
                Entry::One {
                    type_id: TypeId::of::<T>(),
                    type_name: std::any::type_name::<T>(),
                    value: Box::new(value),
                },
                self.values.0.clone(),
            ))),
        }
    }

    /// A context with the same cancellation and deadline that also carries
    /// each of `values`, a tuple: the same as a [`with_value`](Self::with_value)
    /// of each in turn (a later value shadows an earlier one of its type), in
    /// one link of the context's values, so that it costs at most two
    /// allocations however many values it attaches, not two for each. (The
    /// pair the inbound edge attaches to every request, a
    /// [`TraceContext`] and a [`RequestId`], costs none once a context of
    /// this thread has been dropped: it is held in the link itself, and a
    /// link is reused as [`with_cancel`](Self::with_cancel) reuses a node.)
    ///
    /// ```
    /// use palisade_context::Context;
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct RequestId(u64);
    /// #[derive(Debug, PartialEq)]
    /// struct Tenant(&'static str);
    ///
    /// let ctx = Context::background().with_values((RequestId(7), Tenant("acme")));
    /// assert_eq!(ctx.get::<RequestId>(), Some(&RequestId(7)));
    /// assert_eq!(ctx.get::<Tenant>(), Some(&Tenant("acme")));
    /// assert_eq!(ctx.get::<String>(), None);
    /// ```
    pub fn with_values<V: Values>(&self, values: V) -> Context {
        let mut values = Some(values);
        // The edge's pair is held in the link; any other set is boxed. (The
        // type is known at compile time: the test costs nothing.)
        let request = (&mut values as &mut dyn Any)
            .downcast_mut::<Option<(TraceContext, RequestId)>>()
            .and_then(Option::take);
        let entry = match (request, values) {
            (Some((trace, id)), _) => Entry::Request(trace, id),
            (None, Some(values)) => Entry::Many(Box::new(values)),
            (None, None) => Entry::Empty,
        };
        Context {
            node: self.node.clone(),
            cap: self.cap,
            values: Link(Some(value_node(entry, self.values.0.clone()))),
        }
    }

    /// The nearest value of type `T`, if any.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        let wanted = TypeId::of::<T>();
        let mut link = self.values.0.as_deref();
        while let Some(node) = link {
            if let Some(value) = node.get(wanted) {
                return value.downcast_ref::<T>();
            }
            link = node.next.as_deref();
        }
        None
    }

    /// A context with this one's values but neither its cancellation nor its deadline
    /// (Go's `WithoutCancel`): for compensation work that must outlive the request.
    ///
    /// ```
    /// use palisade_context::Context;
    ///
    /// let (request, guard) = Context::background().with_value(42u32).with_cancel();
    /// let cleanup = request.without_cancel();
    /// guard.cancel();
    /// assert!(request.is_cancelled());
    /// assert!(!cleanup.is_cancelled());
    /// assert_eq!(cleanup.get::<u32>(), Some(&42));
    /// ```
    pub fn without_cancel(&self) -> Context {
        Context {
            node: None,
            values: self.values.clone(),
            cap: NO_CAP,
        }
    }

    /// The deadline, on the [`TokioClock`] axis, if the context has one.
    pub fn deadline(&self) -> Option<Timestamp> {
        match self.deadline_nanos() {
            NO_DEADLINE => None,
            nanos => Some(Timestamp::from_nanos(nanos)),
        }
    }

    #[inline]
    pub(crate) fn deadline_nanos(&self) -> u64 {
        self.node
            .as_ref()
            .map_or(NO_DEADLINE, |node| node.deadline())
            .min(cap_deadline(self.cap))
    }

    /// This handle's own deadline, set by [`Context::capped`], and its code.
    #[inline]
    pub(crate) fn cap(&self) -> u64 {
        self.cap
    }

    /// Whether this handle's own deadline has passed.
    #[inline(always)]
    fn cap_passed(&self) -> bool {
        self.cap != NO_CAP && cap_passed(self.cap)
    }

    /// The time left until the deadline (zero once it has passed), or `None` without
    /// a deadline. It does not look at cancellation.
    pub fn remaining(&self) -> Option<Duration> {
        let deadline = self.deadline()?;
        Some(deadline.saturating_duration_since(TokioClock.now()))
    }

    /// Whether the context has ended: cancelled, or its deadline has passed.
    ///
    /// Lock-free: one atomic load. With a deadline, also one load of the cheap
    /// [`recent`](palisade_clock::Clock::recent) clock, and a reading of the exact
    /// clock only near the deadline (within 5 ms, or four times the recent clock's
    /// lag where that is coarser): a passed deadline shows at once unless the
    /// recent clock lags by more than that (a starved ticker thread; see the crate
    /// docs on time). Seeing a passed deadline cancels the context (with
    /// [`Cause::deadline_exceeded`]) as a timer would have. [`Context::cancelled`]
    /// and [`Context::remaining`] are always exact.
    ///
    /// A child that keeps its parent's deadline is created lazily: it does not
    /// register with its parent (which keeps creating and dropping it cheap) until
    /// something waits on it, so until then it also loads its parent's state (and so
    /// on up through such children).
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        let ended = match &self.node {
            Some(node) => node.is_cancelled(),
            None => false,
        };
        ended || self.cap_passed()
    }

    /// Why the context ended, or `None` while it has not (Go's `Err` and `Cause` in
    /// one).
    ///
    /// On a [capped](Context::capped) context whose own deadline has passed, the
    /// cause is the cap's, unless the context ended before through its parent
    /// for another reason than a deadline; a parent cancelled only after the cap
    /// passed is not told apart from one cancelled before it, and the cause is
    /// then the parent's.
    pub fn cause(&self) -> Option<Cause> {
        let ended = self.node.as_ref().and_then(|node| node.cause());
        if !self.cap_passed() {
            return ended;
        }
        let capped = Cause::abandoned_code(cap_reason(self.cap));
        match ended {
            // The parent's deadline is never earlier than the cap: the cap came first.
            Some(cause) if cause.is_deadline_exceeded() => Some(capped),
            Some(cause) => Some(cause),
            None => Some(capped),
        }
    }

    /// A future that completes when the context ends (Go's `<-ctx.Done()`).
    ///
    /// It never completes on a context that cannot be cancelled. On a context with a
    /// deadline, the first poll starts the context's one timer (shared by every
    /// waiter, released with the context); before anybody awaits, a deadline costs
    /// no timer.
    ///
    /// # Panics
    ///
    /// Polling it on a context with a deadline outside a tokio runtime.
    pub fn cancelled(&self) -> Cancelled<'_> {
        Cancelled::new(self, true)
    }

    /// Runs `fut` until it completes or the context ends, whichever comes first. If
    /// the context ends first (or had already ended), `fut` is dropped, so its work
    /// stops, and the cause is returned.
    ///
    /// ```
    /// use palisade_context::Context;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (ctx, _guard) = Context::background().with_timeout(Duration::from_millis(100));
    /// let slow = tokio::time::sleep(Duration::from_secs(10));
    /// let cause = ctx.run(slow).await.unwrap_err();
    /// assert!(cause.is_deadline_exceeded());
    /// # }
    /// ```
    pub fn run<F: IntoFuture>(&self, fut: F) -> Run<'_, F::IntoFuture> {
        Run::new(self, fut.into_future())
    }

    /// Registers `callback` to run once when the context ends (Go's `AfterFunc`). It
    /// runs on the thread that cancels the context, after the context's waiters are
    /// woken: keep it short, and spawn a task for longer work. If the context has
    /// already ended, it runs at once, on this thread.
    ///
    /// The returned handle can stop the callback before it runs. Dropping the handle
    /// does not stop it.
    ///
    /// On a context with a deadline, registering starts the context's timer, as
    /// awaiting [`Context::cancelled`] does.
    ///
    /// ```
    /// use palisade_context::Context;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    ///
    /// let (ctx, guard) = Context::background().with_cancel();
    /// let ran = Arc::new(AtomicBool::new(false));
    /// let flag = ran.clone();
    /// let _handle = ctx.after_cancel(move || flag.store(true, Ordering::SeqCst));
    /// guard.cancel();
    /// assert!(ran.load(Ordering::SeqCst));
    /// ```
    ///
    /// # Panics
    ///
    /// On a context with a deadline outside a tokio runtime. A panic in the callback
    /// is raised again in the thread that cancels, after the whole tree is cancelled.
    pub fn after_cancel<F>(&self, callback: F) -> AfterCancel
    where
        F: FnOnce() + Send + 'static,
    {
        if self.cap != NO_CAP {
            return self.after_cap(Box::new(callback));
        }
        let Some(node) = &self.node else {
            // Never cancelled: the callback can never run.
            return AfterCancel { registration: None };
        };
        if node.is_cancelled() {
            callback();
            return AfterCancel { registration: None };
        }
        match node.register_callback(Box::new(callback)) {
            Ok(key) => {
                node.arm_timer();
                AfterCancel {
                    registration: Some((Arc::clone(node), key)),
                }
            }
            Err(callback) => {
                callback();
                AfterCancel { registration: None }
            }
        }
    }

    /// [`Context::after_cancel`] on a capped context: the callback is registered
    /// on a node that stands for the cap, and keeps that node alive itself until
    /// the node ends (at the latest at the cap, which is never far off), so that
    /// dropping the handle does not stop it.
    #[cold]
    fn after_cap(&self, callback: node::Callback) -> AfterCancel {
        if self.is_cancelled() {
            callback();
            return AfterCancel { registration: None };
        }
        let node = cap_node(self.node.as_ref(), self.cap);
        let keep = Arc::clone(&node);
        let callback: node::Callback = Box::new(move || {
            drop(keep);
            callback();
        });
        match node.register_callback(callback) {
            Ok(key) => {
                node.arm_timer();
                AfterCancel {
                    registration: Some((node, key)),
                }
            }
            Err(callback) => {
                callback();
                AfterCancel { registration: None }
            }
        }
    }

    /// A view of this context that also ends at `deadline` (on the
    /// [`TokioClock`] axis), with [`Cause::abandoned`]`(reason)`, if that comes
    /// before its own end. It shares this context's cancellation and values,
    /// and creating and dropping it costs a few instructions: it allocates
    /// nothing and registers nowhere.
    ///
    /// It has no [`CancelGuard`]: nothing can end it early but this context.
    /// What needs to be told of its end is told on demand: awaiting
    /// [`cancelled`](Self::cancelled), [`run`](Self::run), a callback, a child or
    /// a spawned task make a node for the cap then (a child of this context's
    /// own, with the cap's deadline), as [`with_deadline_reason`] does.
    ///
    /// This is the context each attempt of a resilience pipeline runs under: its
    /// deadline is the attempt's real budget (the earlier of the caller's
    /// deadline, the attempt timeout and what remains of the total timeout), so
    /// that [`remaining`](Self::remaining) and the deadline headers sent
    /// downstream say the truth, and its end says which limit passed. The two
    /// low bits of the deadline's nanoseconds hold the reason, so the cap is
    /// rounded down by at most 3 ns: it never ends later than asked.
    ///
    /// [`with_deadline_reason`]: Self::with_deadline_reason
    ///
    /// ```
    /// use palisade_context::{Abandoned, Context};
    /// use palisade_clock::{Clock, TokioClock};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let deadline = TokioClock.now().saturating_add(Duration::from_millis(100));
    /// let attempt = Context::background().capped(deadline, Abandoned::AttemptTimeout);
    /// // The deadline, rounded down by at most 3 ns.
    /// assert!(attempt.remaining().unwrap() > Duration::from_micros(99_999));
    /// attempt.cancelled().await;
    /// assert_eq!(attempt.cause().unwrap().abandoned_by(), Some(Abandoned::AttemptTimeout));
    /// # }
    /// ```
    #[inline(always)]
    pub fn capped(&self, deadline: Timestamp, reason: Abandoned) -> Context {
        // The two low bits of the deadline hold the reason: it is rounded down
        // by at most 3 ns, never later. A later cap than one already set changes
        // nothing.
        // `NO_CAP & !CAP_REASON` is later than any deadline a cap can hold.
        let nanos = deadline.as_nanos().min(NO_CAP - 4) & !CAP_REASON;
        let cap = if nanos < self.cap & !CAP_REASON {
            nanos | u64::from(reason.code())
        } else {
            self.cap
        };
        Context {
            node: self.node.clone(),
            values: self.values.clone(),
            cap,
        }
    }

    /// How many children, waiters and callbacks are registered with this context
    /// now: what a leak check reads. Each unregisters when it ends (a child when
    /// its last handle is dropped, a waiting future when it is dropped or woken, a
    /// callback when it ran or its handle was dropped), so a context whose calls
    /// have all ended has none. A context with no node of its own (the background
    /// context, a child that keeps its parent's deadline and that nothing has
    /// waited on yet) has none.
    ///
    /// ```
    /// use palisade_context::Context;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (root, _guard) = Context::background().with_cancel();
    /// let (child, child_guard) = root.with_timeout(std::time::Duration::from_secs(1));
    /// assert_eq!(root.registrations(), 1);
    /// drop((child, child_guard));
    /// assert_eq!(root.registrations(), 0);
    /// # }
    /// ```
    pub fn registrations(&self) -> usize {
        self.node
            .as_ref()
            .map_or(0, |node| node.children_len() + node.listeners_len())
    }

    #[allow(dead_code)]
    pub(crate) fn node(&self) -> Option<&Arc<Node>> {
        self.node.as_ref()
    }
}

impl Drop for Context {
    /// A context without a node of its own (the background context and the
    /// contexts capped from it, which are what a healthy call's attempt gets)
    /// drops in a compare or two, inline where it is dropped.
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            release_node(node);
        }
    }
}

/// [`node::release`], out of line: the drop of a context without a node stays
/// small enough to be inlined.
#[inline(never)]
fn release_node(node: Arc<Node>) {
    node::release(node);
}

/// A context's handle of the first link of its values. Its drop keeps the
/// link for reuse when it was the last handle ([`value_pool`]).
#[derive(Clone)]
struct Link(Option<Arc<ValueNode>>);

impl Drop for Link {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(values) = self.0.take() {
            release_values(values);
        }
    }
}

/// A link of a context's values: one this thread kept ([`value_pool`]) if
/// there is one, else a new allocation.
#[inline]
fn value_node(entry: Entry, next: Option<Arc<ValueNode>>) -> Arc<ValueNode> {
    #[cfg(not(loom))]
    if let Some(mut kept) = value_pool::take() {
        if let Some(fields) = Arc::get_mut(&mut kept) {
            fields.entry = entry;
            fields.next = next;
            return kept;
        }
    }
    Arc::new(ValueNode { entry, next })
}

/// Drops a context's handle of its values' link; the last handle of a link
/// keeps it on this thread for the next link made here (its values are
/// dropped now, as they would be with it). Out of line: a context without
/// values pays one compare.
#[inline(never)]
fn release_values(values: Arc<ValueNode>) {
    #[cfg(not(loom))]
    if Arc::strong_count(&values) == 1 {
        value_pool::keep(values);
        return;
    }
    drop(values);
}

/// One link of values kept for reuse per thread, as [`node`]'s pool keeps a
/// node: a request's context that comes and goes with its values costs no
/// allocation and free of the link. A kept link holds nothing (no value, no
/// next link); a link released while the slot is full is freed.
#[cfg(not(loom))]
mod value_pool {
    use std::cell::Cell;

    use super::{Arc, Entry, ValueNode};

    std::thread_local! {
        static SLOT: Cell<Option<Arc<ValueNode>>> = const { Cell::new(None) };
    }

    /// The kept link, if this thread has one.
    #[inline]
    pub(super) fn take() -> Option<Arc<ValueNode>> {
        SLOT.try_with(Cell::take).ok().flatten()
    }

    /// Empties `link` and keeps it if it is the last handle and the slot is
    /// free; frees it otherwise.
    #[inline(never)]
    pub(super) fn keep(mut link: Arc<ValueNode>) {
        let Some(fields) = Arc::get_mut(&mut link) else {
            return;
        };
        // The values and the rest of the chain go now, outside the slot.
        let entry = std::mem::replace(&mut fields.entry, Entry::Empty);
        let next = fields.next.take();
        drop(entry);
        drop(next);
        let mut link = Some(link);
        let _ = SLOT.try_with(|slot| {
            let kept = slot.take();
            slot.set(kept.or_else(|| link.take()));
        });
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut values = Vec::new();
        let mut link = self.values.0.as_deref();
        while let Some(node) = link {
            node.type_names(&mut values);
            link = node.next.as_deref();
        }
        f.debug_struct("Context")
            .field("cancellable", &self.node.is_some())
            .field(
                "cancelled",
                &self.node.as_ref().is_some_and(|node| node.is_marked()),
            )
            .field("deadline", &self.deadline())
            .field(
                "capped",
                &(self.cap != NO_CAP).then(|| Abandoned::from_code(cap_reason(self.cap))),
            )
            .field("values", &values)
            .finish()
    }
}

/// The handle that cancels a child [`Context`]; dropping it cancels the child.
///
/// Returned by [`Context::with_cancel`], [`Context::with_timeout`] and
/// [`Context::with_deadline`]. Because dropping it cancels, the child's waiters, timer
/// and registration in its parent are always released: Go's forgotten `cancel()`
/// cannot happen. Call [`detach`](CancelGuard::detach) to let the child live on
/// until its parent ends or its deadline passes.
#[must_use = "dropping the guard cancels the context at once"]
pub struct CancelGuard {
    node: Option<Arc<Node>>,
}

impl CancelGuard {
    /// Cancels the context and its descendants with [`Cause::canceled`]. Returns
    /// whether this call ended it (`false` if it had already ended).
    pub fn cancel(&self) -> bool {
        self.cancel_with_cause(Cause::canceled())
    }

    /// Cancels the context and its descendants with a user-supplied cause (Go's
    /// `WithCancelCause`): any error, or a message. Returns whether this call ended
    /// it; a context that already ended keeps its first cause.
    pub fn cancel_with(&self, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> bool {
        self.cancel_with_cause(Cause::user(cause))
    }

    /// Cancels the context with `cause`. Returns whether this call ended it.
    pub fn cancel_with_cause(&self, cause: Cause) -> bool {
        match &self.node {
            Some(node) => node.cancel_from(&cause),
            None => false,
        }
    }

    /// Whether the context has ended.
    pub fn is_cancelled(&self) -> bool {
        self.node.as_ref().is_some_and(|node| node.is_cancelled())
    }

    /// Drops the guard without cancelling: the context then ends only with its
    /// parent or at its deadline, and unregisters once its last handle is gone.
    pub fn detach(mut self) {
        self.node = None;
    }
}

impl Drop for CancelGuard {
    #[inline]
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            // With the contexts gone and nothing registered, nobody can see the
            // node end: it is dropped as it is.
            if !node.quiet_last_handle() {
                node.cancel_plain();
            }
            node::release(node);
        }
    }
}

impl fmt::Debug for CancelGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelGuard")
            .field(
                "cancelled",
                &self.node.as_ref().map(|node| node.is_marked()),
            )
            .finish()
    }
}

/// A callback registered with [`Context::after_cancel`] (Go's `AfterFunc`).
#[derive(Debug)]
pub struct AfterCancel {
    registration: Option<(Arc<Node>, usize)>,
}

impl AfterCancel {
    /// Stops the callback from running. Returns `true` if it was stopped, `false` if
    /// it has already run (or started running) or can never run.
    pub fn stop(mut self) -> bool {
        match self.registration.take() {
            Some((node, key)) => matches!(node.remove_listener(key), Some(Listener::Callback(_))),
            None => false,
        }
    }
}

// Keep the `Future` import used in docs of this module meaningful.
#[allow(dead_code)]
fn _assert_traits() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Context>();
    send_sync::<CancelGuard>();
    send_sync::<AfterCancel>();
    fn is_future<T: Future>() {}
    is_future::<Cancelled<'static>>();
}
