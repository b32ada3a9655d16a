//! Request coalescing ("singleflight"): concurrent calls for one key share one
//! in-flight call and its result.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use std::task::Waker;

use palisade_classify::{CatchPanic, Panicked, catch_panic};
use palisade_context::{CancelGuard, Context};

use crate::sync::{Arc, AtomicU64, AtomicUsize, Mutex, Ordering};

/// The default bound on keys in flight at once: [`DEFAULT_MAX_KEYS`].
///
/// 10 000 keys keep the map within a few hundred kilobytes while covering any
/// realistic set of hot keys; a flood of distinct keys beyond it runs uncoalesced
/// instead of growing the map.
pub const DEFAULT_MAX_KEYS: usize = 10_000;

/// Why a coalesced call did not return the shared call's value.
///
/// Every waiter of one flight receives the same error: the call's own error is
/// shared behind an [`Arc`](std::sync::Arc), so `E` need not be `Clone`.
#[non_exhaustive]
pub enum CoalesceError<E> {
    /// The shared call returned this error.
    Failed(std::sync::Arc<E>),
    /// The shared call panicked; every waiter receives the panic as a value.
    Panicked(std::sync::Arc<Panicked>),
}

impl<E> CoalesceError<E> {
    /// The shared call's own error, if it returned one.
    pub fn failed(&self) -> Option<&E> {
        match self {
            CoalesceError::Failed(e) => Some(e),
            CoalesceError::Panicked(_) => None,
        }
    }

    /// Whether the shared call panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, CoalesceError::Panicked(_))
    }
}

impl<E> Clone for CoalesceError<E> {
    fn clone(&self) -> Self {
        match self {
            CoalesceError::Failed(e) => CoalesceError::Failed(e.clone()),
            CoalesceError::Panicked(p) => CoalesceError::Panicked(p.clone()),
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for CoalesceError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoalesceError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
            CoalesceError::Panicked(p) => f.debug_tuple("Panicked").field(p).finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for CoalesceError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoalesceError::Failed(e) => write!(f, "coalesced call failed: {e}"),
            CoalesceError::Panicked(p) => write!(f, "coalesced call panicked: {}", p.message()),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CoalesceError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CoalesceError::Failed(e) => Some(&**e),
            CoalesceError::Panicked(_) => None,
        }
    }
}

type Outcome<T, E> = Result<T, CoalesceError<E>>;

/// One key's flight in the map: an id, so that only this flight removes it, and
/// the flight itself.
struct Entry<T, E> {
    id: u64,
    flight: std::sync::Arc<dyn Drive<T, E>>,
}

struct Inner<K, T, E> {
    flights: Mutex<HashMap<K, Entry<T, E>>>,
    next_id: AtomicU64,
    max_keys: usize,
}

/// Request coalescing: concurrent calls with the same key share one in-flight
/// call and its result.
///
/// The first caller of a key starts the call (the *flight*); callers that arrive
/// while it is in flight join it and receive a clone of its result. Once the flight
/// ends its key is free again: the next call starts a new flight (no result is
/// cached).
///
/// - **Drop-safe.** The flight is driven by the caller that started it, inside its
///   own future; when that caller is dropped, the next of the others to be polled
///   carries it on. It is cancelled
///   (its future dropped and its [`Context`] cancelled) only when *every* caller has
///   gone.
/// - **Shared outcomes.** The result is `Result<T, CoalesceError<E>>`: `T` is
///   cloned to every caller, an error is shared behind an `Arc`, and a panic in the
///   call reaches every caller as [`CoalesceError::Panicked`].
/// - **Bounded.** At most `max_keys` keys are in flight at once (default
///   [`DEFAULT_MAX_KEYS`]); a call for a new key beyond that runs on its own,
///   uncoalesced, so a flood of distinct keys costs calls, not memory.
/// - **No lock across an await.** The map's lock is held to look a key up and to
///   insert or remove it, never while the call runs.
///
/// In a pipeline, coalescing sits outside everything else (before the fallback):
/// one flight then passes once through retries, the breaker and the limits, and its
/// callers share the outcome of all of it.
///
/// ```
/// use palisade_context::Context;
/// use palisade_endpoint::Coalesce;
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// static UPSTREAM: AtomicUsize = AtomicUsize::new(0);
/// let coalesce: Coalesce<&str, u32, std::io::Error> = Coalesce::new();
/// let ctx = Context::background();
/// let call = |_ctx: Context| async {
///     UPSTREAM.fetch_add(1, Ordering::SeqCst);
///     tokio::task::yield_now().await;
///     Ok(7)
/// };
/// let (a, b) = tokio::join!(
///     coalesce.call(&ctx, "user:1", call),
///     coalesce.call(&ctx, "user:1", call),
/// );
/// assert_eq!((a.unwrap(), b.unwrap()), (7, 7));
/// assert_eq!(UPSTREAM.load(Ordering::SeqCst), 1);
/// # }
/// ```
pub struct Coalesce<K, T, E> {
    inner: Arc<Inner<K, T, E>>,
}

impl<K, T, E> Clone for Coalesce<K, T, E> {
    fn clone(&self) -> Self {
        Coalesce {
            inner: self.inner.clone(),
        }
    }
}

impl<K, T, E> fmt::Debug for Coalesce<K, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalesce")
            .field("in_flight", &self.inner.flights.lock().len())
            .field("max_keys", &self.inner.max_keys)
            .finish()
    }
}

impl<K, T, E> Default for Coalesce<K, T, E>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, T, E> Coalesce<K, T, E>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// A coalescer of at most [`DEFAULT_MAX_KEYS`] keys in flight.
    pub fn new() -> Self {
        Self::with_max_keys(DEFAULT_MAX_KEYS)
    }

    /// A coalescer of at most `max_keys` keys in flight (at least 1).
    pub fn with_max_keys(max_keys: usize) -> Self {
        Coalesce {
            inner: Arc::new(Inner {
                flights: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                max_keys: max_keys.max(1),
            }),
        }
    }

    /// How many keys have a flight now.
    pub fn in_flight(&self) -> usize {
        self.inner.flights.lock().len()
    }

    /// Whether `key` has a flight now.
    pub fn contains(&self, key: &K) -> bool {
        self.inner.flights.lock().contains_key(key)
    }

    /// Runs `f` for `key`, or joins the flight already running for it.
    ///
    /// `f` is called only by the caller that starts a flight, and only once the
    /// flight is first polled. It receives a context that carries `ctx`'s values
    /// but neither its cancellation nor its deadline (the flight serves callers
    /// with other deadlines): it is cancelled when every caller has gone. A caller
    /// bounds its own wait by dropping its [`Call`] (for example with
    /// [`Context::run`]), which leaves the flight to the others.
    pub fn call<F, Fut>(&self, ctx: &Context, key: K, f: F) -> Call<T, E>
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let mut flights = self.inner.flights.lock();
        let len = flights.len();
        // One hash of the key: look it up, and insert through the same entry.
        let (flight, joined) = match flights.entry(key) {
            MapEntry::Occupied(mut e) if !e.get().flight.join() => {
                // Every caller of the flight there has gone and its removal is
                // under way: a new flight takes the key (the old one then leaves
                // it alone, its id no longer matches).
                let (entry, flight) = self.new_flight(ctx, Some(e.key().clone()), f);
                e.insert(entry);
                (flight, false)
            }
            MapEntry::Occupied(e) => (e.get().flight.clone(), true),
            MapEntry::Vacant(v) if len < self.inner.max_keys => {
                let (entry, flight) = self.new_flight(ctx, Some(v.key().clone()), f);
                v.insert(entry);
                (flight, false)
            }
            MapEntry::Vacant(_) => {
                drop(flights);
                crate::event::coalesce_overflow();
                let (_, flight) = self.new_flight(ctx, None, f);
                return Call::new(flight, false);
            }
        };
        drop(flights);
        Call::new(flight, joined)
    }

    /// A new flight of `f`, for `key` (none: uncoalesced), and its map entry.
    fn new_flight<F, Fut>(
        &self,
        ctx: &Context,
        key: Option<K>,
        f: F,
    ) -> (Entry<T, E>, std::sync::Arc<dyn Drive<T, E>>)
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (child, guard) = ctx.without_cancel().with_cancel();
        let flight: std::sync::Arc<dyn Drive<T, E>> = std::sync::Arc::new(Flight {
            callers: AtomicUsize::new(1),
            state: Mutex::new(State {
                driving: true,
                result: None,
                wakers: Vec::new(),
            }),
            stage: Mutex::new(Stage::Start {
                f,
                ctx: child,
                guard,
            }),
            home: key.map(|key| (self.inner.clone(), key)),
            id,
        });
        (
            Entry {
                id,
                flight: flight.clone(),
            },
            flight,
        )
    }
}

/// A flight's side of its callers: one allocation holds the call's future, its
/// outcome for the callers that wait, and their wakers.
///
/// The future is polled by one caller at a time, the *driver*: at first the caller
/// that started the flight, then, if it is dropped before the end, whichever of
/// the others polls next. The other callers register their wakers and are woken by
/// the outcome (or by the driver leaving).
trait Drive<T, E>: Send + Sync {
    /// Counts one more caller, unless every caller has gone (then `false`).
    fn join(&self) -> bool;
    /// Polls for the outcome on behalf of the caller in `seat`.
    fn poll_seat(&self, seat: &mut Seat, cx: &mut TaskContext<'_>) -> Poll<Outcome<T, E>>;
    /// The caller in `seat` has gone.
    fn leave(&self, seat: &Seat);
}

/// One caller's place in its flight.
struct Seat {
    /// Whether this caller polls the call's future.
    driver: bool,
    /// This caller's slot in the flight's wakers, once it has waited.
    slot: Option<usize>,
    /// Whether this caller has received the outcome.
    done: bool,
}

/// What the callers of a flight share under its lock.
struct State<T, E> {
    /// Whether a caller holds the driver's role.
    driving: bool,
    /// The outcome, once the call has ended and another caller is waiting.
    result: Option<Outcome<T, E>>,
    /// The waiting callers' wakers, by slot.
    wakers: Vec<Option<Waker>>,
}

/// The call's future through its life.
enum Stage<F, Fut> {
    /// Not polled yet: `f`, its context and the guard that cancels it.
    Start {
        f: F,
        ctx: Context,
        guard: CancelGuard,
    },
    /// Running, its panic caught; the guard cancels its context when dropped.
    Running {
        fut: Pin<Box<CatchPanic<Fut>>>,
        _guard: CancelGuard,
    },
    /// Ended, or cancelled.
    Done,
}

/// The map a flight is under, and its key there.
type Home<K, T, E> = (Arc<Inner<K, T, E>>, K);

struct Flight<K, T, E, F, Fut> {
    /// The callers that have not gone; 0 once every one has, and for good.
    callers: AtomicUsize,
    state: Mutex<State<T, E>>,
    /// Locked only by the driver, or by the last caller once every other has
    /// gone (no driver then polls): never contended, never re-entered.
    stage: Mutex<Stage<F, Fut>>,
    /// The map and key this flight is under (none when uncoalesced).
    home: Option<Home<K, T, E>>,
    id: u64,
}

impl<K, T, E, F, Fut> Flight<K, T, E, F, Fut>
where
    K: Eq + Hash,
{
    /// Removes this flight's entry from the map, unless a later flight has taken
    /// the key.
    fn remove_entry(&self) {
        let Some((inner, key)) = &self.home else {
            return;
        };
        let mut flights = inner.flights.lock();
        // A caller that found this flight's entry dead (every caller gone, this
        // removal not yet run) has put a new flight under the key: that one stays.
        // One hash: remove, and put it back in the rare case it is not this one.
        let removed = match flights.remove_entry(key) {
            Some((_, e)) if e.id == self.id || crate::sync::broken_remove_any() => Some(e),
            Some((key, later)) => {
                flights.insert(key, later);
                None
            }
            None => None,
        };
        drop(flights);
        drop(removed);
    }
}

impl<K, T, E, F, Fut> Drive<T, E> for Flight<K, T, E, F, Fut>
where
    K: Eq + Hash + Send + Sync,
    T: Clone + Send + Sync,
    E: Send + Sync,
    F: FnOnce(Context) -> Fut + Send,
    Fut: Future<Output = Result<T, E>> + Send,
{
    fn join(&self) -> bool {
        let mut n = self.callers.load(Ordering::Relaxed);
        loop {
            if n == 0 {
                return false;
            }
            match self
                .callers
                .compare_exchange_weak(n, n + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
    }

    fn poll_seat(&self, seat: &mut Seat, cx: &mut TaskContext<'_>) -> Poll<Outcome<T, E>> {
        if !seat.driver {
            let mut state = self.state.lock();
            if let Some(result) = &state.result {
                seat.done = true;
                return Poll::Ready(result.clone());
            }
            if state.driving {
                match seat.slot {
                    Some(i) => match &mut state.wakers[i] {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        w => *w = Some(cx.waker().clone()),
                    },
                    None => {
                        seat.slot = Some(state.wakers.len());
                        state.wakers.push(Some(cx.waker().clone()));
                    }
                }
                return Poll::Pending;
            }
            // The driver has gone before the end: this caller carries the call on.
            state.driving = true;
            seat.driver = true;
        }
        // This caller holds the driver's role: the stage's lock is its alone.
        let mut stage = self.stage.lock();
        if matches!(*stage, Stage::Start { .. }) {
            let Stage::Start { f, ctx, guard } = std::mem::replace(&mut *stage, Stage::Done) else {
                unreachable!()
            };
            *stage = Stage::Running {
                fut: Box::pin(catch_panic(f(ctx))),
                _guard: guard,
            };
        }
        let Stage::Running { fut, .. } = &mut *stage else {
            unreachable!("a coalesced call polled after it ended")
        };
        let out = match fut.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(Ok(value))) => Ok(value),
            Poll::Ready(Ok(Err(e))) => Err(CoalesceError::Failed(std::sync::Arc::new(e))),
            Poll::Ready(Err(panic)) => Err(CoalesceError::Panicked(std::sync::Arc::new(panic))),
        };
        // The future and its context's guard are dropped outside the lock.
        let ended = std::mem::replace(&mut *stage, Stage::Done);
        drop(stage);
        drop(ended);
        seat.done = true;
        self.remove_entry();
        // The entry is gone: no caller joins now. Alone, the outcome is this
        // caller's without a clone.
        if self.callers.load(Ordering::Acquire) == 1 {
            return Poll::Ready(out);
        }
        let mut state = self.state.lock();
        state.result = Some(out.clone());
        let wakers = std::mem::take(&mut state.wakers);
        drop(state);
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
        Poll::Ready(out)
    }

    fn leave(&self, seat: &Seat) {
        let last = self.callers.fetch_sub(1, Ordering::AcqRel) == 1;
        if seat.done {
            // The call has ended: its driver removed the entry and dropped the future.
            return;
        }
        if last {
            // Every caller has gone before the end: the call is cancelled.
            self.remove_entry();
            let cancelled = std::mem::replace(&mut *self.stage.lock(), Stage::Done);
            drop(cancelled);
            return;
        }
        if seat.driver {
            // Hand the call on to whichever caller polls next.
            let mut state = self.state.lock();
            state.driving = crate::sync::broken_keep_driver();
            let wakers: Vec<Waker> = state.wakers.iter_mut().filter_map(Option::take).collect();
            drop(state);
            for w in wakers {
                w.wake();
            }
        } else if let Some(i) = seat.slot {
            if let Some(w) = self.state.lock().wakers.get_mut(i) {
                *w = None;
            }
        }
    }
}

/// The future of one caller of [`Coalesce::call`]: the shared flight's result.
///
/// Dropping it leaves the flight to its other callers; the flight is cancelled when
/// the last of them is dropped.
///
/// The flight's call runs inside the `Call` of the caller that started it: callers
/// that joined make progress while that one is polled (each caller awaiting its own
/// `Call`, in its own task or joined, is the usual shape). A `Call` that is kept but
/// no longer polled holds the others up until it is polled again or dropped.
#[must_use = "futures do nothing unless polled"]
pub struct Call<T, E> {
    flight: std::sync::Arc<dyn Drive<T, E>>,
    seat: Seat,
    joined: bool,
}

impl<T, E> Call<T, E> {
    fn new(flight: std::sync::Arc<dyn Drive<T, E>>, joined: bool) -> Self {
        Call {
            flight,
            seat: Seat {
                driver: !joined,
                slot: None,
                done: false,
            },
            joined,
        }
    }

    /// Whether this call joined a flight another caller started.
    pub fn joined(&self) -> bool {
        self.joined
    }
}

impl<T, E> Drop for Call<T, E> {
    fn drop(&mut self) {
        self.flight.leave(&self.seat);
    }
}

impl<T, E> fmt::Debug for Call<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("joined", &self.joined)
            .field("driver", &self.seat.driver)
            .finish()
    }
}

impl<T: Clone, E> Future for Call<T, E> {
    type Output = Result<T, CoalesceError<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.flight.poll_seat(&mut this.seat, cx)
    }
}
