//! Request coalescing ("singleflight"): concurrent calls for one key share one
//! in-flight call and its result.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use futures_util::future::{BoxFuture, FutureExt, Shared, WeakShared};
use palisade_classify::{Panicked, catch_panic};
use palisade_context::Context;

use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

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

type Flight<T, E> = BoxFuture<'static, Result<T, CoalesceError<E>>>;

/// One key's flight in the map: an id, so that only this flight removes it, and a
/// weak handle, so that the map alone does not keep the call alive.
struct Entry<T, E> {
    id: u64,
    flight: WeakShared<Flight<T, E>>,
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
/// - **Drop-safe.** The flight is driven by whichever of its callers polls it; when
///   the caller that started it is dropped, the others carry it on. It is cancelled
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
        let (shared, joined) = match flights.entry(key) {
            MapEntry::Occupied(mut e) => match e.get().flight.upgrade() {
                Some(shared) => (shared, true),
                None => {
                    // Every caller of the flight there has gone and its removal is
                    // under way: a new flight takes the key (the old one then
                    // leaves it alone, its id no longer matches).
                    let (entry, shared) = self.new_flight(ctx, e.key().clone(), f);
                    e.insert(entry);
                    (shared, false)
                }
            },
            MapEntry::Vacant(v) if len < self.inner.max_keys => {
                let (entry, shared) = self.new_flight(ctx, v.key().clone(), f);
                v.insert(entry);
                (shared, false)
            }
            MapEntry::Vacant(_) => {
                drop(flights);
                crate::event::coalesce_overflow();
                return Call {
                    kind: CallKind::Solo(flight::<K, T, E, F, Fut>(ctx, f, None)),
                    joined: false,
                };
            }
        };
        drop(flights);
        Call {
            kind: CallKind::Flight(shared),
            joined,
        }
    }

    /// A new flight of `f` for `key`, and its map entry.
    fn new_flight<F, Fut>(&self, ctx: &Context, key: K, f: F) -> (Entry<T, E>, Shared<Flight<T, E>>)
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let remover = Remover {
            inner: self.inner.clone(),
            key: Some(key),
            id,
        };
        let shared = flight(ctx, f, Some(remover)).shared();
        let weak = shared.downgrade().expect("a new flight has not completed");
        (Entry { id, flight: weak }, shared)
    }
}

/// The flight's future: `f` under a context of its own, its panic caught, and the
/// key's removal when it ends or is dropped.
fn flight<K, T, E, F, Fut>(ctx: &Context, f: F, remover: Option<Remover<K, T, E>>) -> Flight<T, E>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    T: Send + Sync + 'static,
    E: Send + Sync + 'static,
    F: FnOnce(Context) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    let (child, guard) = ctx.without_cancel().with_cancel();
    async move {
        // Dropped with the future: on completion, or when the last caller goes.
        let _remover = remover;
        let _guard = guard;
        match catch_panic(f(child)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(CoalesceError::Failed(std::sync::Arc::new(e))),
            Err(panic) => Err(CoalesceError::Panicked(std::sync::Arc::new(panic))),
        }
    }
    .boxed()
}

/// Removes its flight's entry from the map when the flight's future is dropped,
/// unless a later flight has taken the key.
struct Remover<K: Eq + Hash, T, E> {
    inner: Arc<Inner<K, T, E>>,
    key: Option<K>,
    id: u64,
}

impl<K: Eq + Hash, T, E> Drop for Remover<K, T, E> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut flights = self.inner.flights.lock();
        // A caller that found this flight's entry dead (every caller gone, this
        // drop not yet run) has put a new flight under the key: that one stays.
        let removed = match flights.entry(key) {
            MapEntry::Occupied(e) if e.get().id == self.id || crate::sync::broken_remove_any() => {
                Some(e.remove())
            }
            _ => None,
        };
        drop(flights);
        drop(removed);
    }
}

enum CallKind<T, E> {
    /// Waits for the key's shared flight.
    Flight(Shared<Flight<T, E>>),
    /// Runs on its own: the map was full.
    Solo(Flight<T, E>),
}

/// The future of one caller of [`Coalesce::call`]: the shared flight's result.
///
/// Dropping it leaves the flight to its other callers; the flight is cancelled when
/// the last of them is dropped.
#[must_use = "futures do nothing unless polled"]
pub struct Call<T, E> {
    kind: CallKind<T, E>,
    joined: bool,
}

impl<T, E> Call<T, E> {
    /// Whether this call joined a flight another caller started.
    pub fn joined(&self) -> bool {
        self.joined
    }
}

impl<T, E> fmt::Debug for Call<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("joined", &self.joined)
            .field("solo", &matches!(self.kind, CallKind::Solo(_)))
            .finish()
    }
}

impl<T: Clone, E> Future for Call<T, E> {
    type Output = Result<T, CoalesceError<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        // Both futures are `Unpin` (a `Shared` handle, a boxed future).
        match &mut self.kind {
            CallKind::Flight(shared) => Pin::new(shared).poll(cx),
            CallKind::Solo(fut) => fut.as_mut().poll(cx),
        }
    }
}
