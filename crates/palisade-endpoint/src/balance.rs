//! Endpoint selection: power of two choices on in-flight load among the endpoints
//! the outlier detector has not ejected.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use futures_core::Stream;
use palisade_classify::{Classify, Outcome};
use palisade_clock::{Clock, DefaultClock, Timestamp};
use pin_project_lite::pin_project;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tower_service::Service;

use crate::outlier::{EndpointHealth, Outliers};
use crate::sync::Ordering;

/// A change to the set of endpoints, from a discovery [`Stream`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change<K, S> {
    /// Adds the endpoint `K` served by `S` (or replaces the one of that key).
    Insert(K, S),
    /// Removes the endpoint `K`. Calls in flight on it finish.
    Remove(K),
}

/// The endpoints one logical request has already tried, shared by its attempts
/// (retries and hedges), so that each attempt goes to an endpoint the others have
/// not.
///
/// Put one in each request (for HTTP, in its extensions) and tell the balancer
/// where to find it with [`BalanceBuilder::tried`]. Cloning shares the set. The
/// balancer records every attempt's endpoint in it; when every endpoint has been
/// tried, the exclusion is dropped rather than the request refused.
#[derive(Clone, Default)]
pub struct Tried {
    inner: std::sync::Arc<parking_lot::Mutex<Vec<u64>>>,
}

impl fmt::Debug for Tried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tried").field("len", &self.len()).finish()
    }
}

impl Tried {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many attempts recorded an endpoint.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// Whether no attempt has.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn contains(&self, id: u64) -> bool {
        self.inner.lock().contains(&id)
    }

    fn record(&self, id: u64) {
        self.inner.lock().push(id);
    }
}

/// The classifier a balancer uses when none is given: `Ok` is a success, `Err` a
/// transient failure.
#[derive(Copy, Clone, Debug, Default)]
#[non_exhaustive]
pub struct ErrorIsFailure;

impl<T, E> Classify<T, E> for ErrorIsFailure {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::transient(),
        }
    }
}

/// Why a balanced call failed.
#[non_exhaustive]
pub enum BalanceError<E> {
    /// The set of endpoints is empty.
    NoEndpoints,
    /// The endpoint chosen returned this error (from `poll_ready` or the call).
    Endpoint(E),
}

impl<E> BalanceError<E> {
    /// Whether the set of endpoints was empty.
    pub fn is_no_endpoints(&self) -> bool {
        matches!(self, BalanceError::NoEndpoints)
    }

    /// The endpoint's error, if it returned one.
    pub fn into_endpoint(self) -> Option<E> {
        match self {
            BalanceError::Endpoint(e) => Some(e),
            BalanceError::NoEndpoints => None,
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for BalanceError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BalanceError::NoEndpoints => f.write_str("NoEndpoints"),
            BalanceError::Endpoint(e) => f.debug_tuple("Endpoint").field(e).finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for BalanceError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BalanceError::NoEndpoints => f.write_str("no endpoints to balance over"),
            BalanceError::Endpoint(e) => write!(f, "endpoint failed: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for BalanceError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BalanceError::Endpoint(e) => Some(e),
            BalanceError::NoEndpoints => None,
        }
    }
}

/// The discovery stream of a balancer over a fixed list: it never yields.
#[derive(Debug)]
pub struct Static<K, S>(PhantomData<fn() -> (K, S)>);

impl<K, S> Stream for Static<K, S> {
    type Item = Change<K, S>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(None)
    }
}

struct Slot<K, S, C: Clock> {
    key: K,
    service: S,
    health: EndpointHealth<C>,
}

/// Where a request keeps its [`Tried`] set.
pub type TriedOf<Req> = for<'a> fn(&'a Req) -> Option<&'a Tried>;

/// A tower [`Service`] over a set of endpoints that sends each request to one of
/// them: of two endpoints picked at random among those not ejected by its
/// [`Outliers`] detector (and not yet tried by the request), the one with fewer
/// calls in flight.
///
/// - **Outliers.** Every call's outcome (by the [`Classify`] given, default
///   [`ErrorIsFailure`]) and latency go to the detector, which ejects bad endpoints
///   from the choice and readmits them on probation.
/// - **Retries and hedges** go elsewhere: a request that carries a [`Tried`] set is
///   sent to an endpoint not in it, and its endpoint is added.
/// - **Fallbacks.** When every endpoint the request may use is ejected, it goes to
///   the least bad: the one whose ejection ends first. When every endpoint has been
///   tried, the least loaded available one is used again. An empty set is an error,
///   [`BalanceError::NoEndpoints`], not a wait.
/// - **Discovery.** Built over a list, the set is fixed; built over a [`Stream`] of
///   [`Change`]s, `poll_ready` applies every change that is ready. A removed
///   endpoint's calls in flight finish: each call holds a clone of its endpoint's
///   service.
/// - **Readiness.** `poll_ready` applies discovery and is then ready: the balancer
///   itself has no capacity to wait for. The chosen endpoint's own readiness is
///   awaited inside the response future, on that endpoint (so that the choice can
///   honour the request's [`Tried`] set), and counts as in flight, so a backed-up
///   endpoint draws fewer calls.
///
/// The healthy path takes no lock and allocates nothing: a clock reading, two
/// random picks, their state and load (atomic loads), the endpoint service's clone.
///
/// ```
/// use palisade_clock::ManualClock;
/// use palisade_endpoint::{Balance, OutlierConfig, Outliers};
/// use tower::{Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let outliers = Outliers::builder(OutlierConfig::default())
///     .clock(ManualClock::new())
///     .name("users")
///     .build()
///     .unwrap();
/// let replica = |name: &'static str| {
///     service_fn(move |req: u32| async move { Ok::<_, std::io::Error>(format!("{name}: {req}")) })
/// };
/// let mut balance = Balance::builder(outliers)
///     .endpoints([("a", replica("a")), ("b", replica("b"))]);
/// let answer = balance.ready().await.unwrap().call(7).await.unwrap();
/// assert!(answer.ends_with(": 7"));
/// # }
/// ```
pub struct Balance<K, S, Req, C: Clock = DefaultClock, Cl = ErrorIsFailure, D = Static<K, S>> {
    endpoints: Vec<Slot<K, S, C>>,
    outliers: Outliers<C>,
    classify: std::sync::Arc<Cl>,
    discover: Option<D>,
    rng: SmallRng,
    tried_of: TriedOf<Req>,
}

impl<K: fmt::Debug, S, Req, C: Clock, Cl, D> fmt::Debug for Balance<K, S, Req, C, Cl, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balance")
            .field(
                "endpoints",
                &self.endpoints.iter().map(|s| &s.key).collect::<Vec<_>>(),
            )
            .field("outliers", &self.outliers)
            .field("discovering", &self.discover.is_some())
            .finish()
    }
}

/// Builds a [`Balance`]: where requests keep their [`Tried`] set, the classifier,
/// the random seed; then the endpoints, as a list or a discovery stream.
#[must_use]
pub struct BalanceBuilder<Req, C: Clock = DefaultClock, Cl = ErrorIsFailure> {
    outliers: Outliers<C>,
    classify: Cl,
    seed: Option<u64>,
    tried_of: TriedOf<Req>,
}

impl<Req, C: Clock, Cl: fmt::Debug> fmt::Debug for BalanceBuilder<Req, C, Cl> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalanceBuilder")
            .field("outliers", &self.outliers)
            .field("classify", &self.classify)
            .field("seed", &self.seed)
            .finish()
    }
}

fn no_tried<Req>(_: &Req) -> Option<&Tried> {
    None
}

impl<C: Clock> Balance<(), (), (), C> {
    /// A builder of a balancer whose endpoints `outliers` judges.
    pub fn builder<Req>(outliers: Outliers<C>) -> BalanceBuilder<Req, C> {
        BalanceBuilder {
            outliers,
            classify: ErrorIsFailure,
            seed: None,
            tried_of: no_tried::<Req>,
        }
    }
}

impl<Req, C: Clock, Cl> BalanceBuilder<Req, C, Cl> {
    /// Where a request keeps its [`Tried`] set (default: nowhere), for example
    /// `|req: &http::Request<B>| req.extensions().get::<Tried>()`.
    pub fn tried(mut self, tried_of: TriedOf<Req>) -> Self {
        self.tried_of = tried_of;
        self
    }

    /// How a call's result counts for its endpoint (default: [`ErrorIsFailure`]).
    pub fn classify<Cl2>(self, classify: Cl2) -> BalanceBuilder<Req, C, Cl2> {
        BalanceBuilder {
            outliers: self.outliers,
            classify,
            seed: self.seed,
            tried_of: self.tried_of,
        }
    }

    /// Seeds the random choice, for reproducible tests (default: from the thread's
    /// generator).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    fn build<K: fmt::Debug, S, D>(self, discover: Option<D>) -> Balance<K, S, Req, C, Cl, D> {
        let rng = match self.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_rng(&mut rand::rng()),
        };
        Balance {
            endpoints: Vec::new(),
            outliers: self.outliers,
            classify: std::sync::Arc::new(self.classify),
            discover,
            rng,
            tried_of: self.tried_of,
        }
    }

    /// The balancer over a fixed list of endpoints.
    pub fn endpoints<K, S>(
        self,
        endpoints: impl IntoIterator<Item = (K, S)>,
    ) -> Balance<K, S, Req, C, Cl, Static<K, S>>
    where
        K: fmt::Debug + PartialEq,
    {
        let mut balance = self.build(None);
        for (key, service) in endpoints {
            balance.insert(key, service);
        }
        balance
    }

    /// The balancer over the endpoints a discovery stream inserts and removes,
    /// starting from none.
    pub fn discover<K, S, D>(self, discover: D) -> Balance<K, S, Req, C, Cl, D>
    where
        K: fmt::Debug + PartialEq,
        D: Stream<Item = Change<K, S>> + Unpin,
    {
        self.build(Some(discover))
    }
}

impl<K, S, Req, C, Cl, D> Balance<K, S, Req, C, Cl, D>
where
    K: fmt::Debug + PartialEq,
    C: Clock,
{
    /// Adds an endpoint (or replaces the one of that key).
    pub fn insert(&mut self, key: K, service: S) {
        self.remove(&key);
        let health = self.outliers.insert(&key);
        self.endpoints.push(Slot {
            key,
            service,
            health,
        });
    }

    /// Removes an endpoint; its calls in flight finish.
    pub fn remove(&mut self, key: &K) {
        if let Some(i) = self.endpoints.iter().position(|s| s.key == *key) {
            let slot = self.endpoints.swap_remove(i);
            self.outliers.remove(&slot.health);
        }
    }

    /// How many endpoints there are.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The outlier detector.
    pub fn outliers(&self) -> &Outliers<C> {
        &self.outliers
    }

    /// The health of endpoint `key`.
    pub fn health(&self, key: &K) -> Option<&EndpointHealth<C>> {
        self.endpoints
            .iter()
            .find(|s| s.key == *key)
            .map(|s| &s.health)
    }

    /// The index of the endpoint for a request that tried `tried`.
    fn pick(&mut self, tried: Option<&Tried>) -> Option<usize> {
        let n = self.endpoints.len();
        if n <= 1 {
            return (n == 1).then_some(0);
        }
        let ok = |s: &Slot<K, S, C>| {
            s.health.is_available() && tried.is_none_or(|t| !t.contains(s.health.health_id()))
        };
        // The healthy path: two distinct random endpoints, the less loaded.
        let a = self.rng.random_range(0..n);
        let mut b = self.rng.random_range(0..n - 1);
        if b >= a {
            b += 1;
        }
        let (ea, eb) = (&self.endpoints[a], &self.endpoints[b]);
        match (ok(ea), ok(eb)) {
            (true, true) => {
                return Some(if eb.health.in_flight() < ea.health.in_flight() {
                    b
                } else {
                    a
                });
            }
            (true, false) => return Some(a),
            (false, true) => return Some(b),
            (false, false) => {}
        }
        // Both unusable: two random picks among the usable, by rank.
        let usable = self.endpoints.iter().filter(|s| ok(s)).count();
        if usable > 0 {
            let nth = |rank: usize| {
                self.endpoints
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| ok(s))
                    .nth(rank)
                    .map(|(i, _)| i)
            };
            let a = nth(self.rng.random_range(0..usable))?;
            let b = nth(self.rng.random_range(0..usable))?;
            let load = |i: usize| self.endpoints[i].health.in_flight();
            return Some(if load(b) < load(a) { b } else { a });
        }
        let untried = |s: &Slot<K, S, C>| tried.is_none_or(|t| !t.contains(s.health.health_id()));
        // Every untried endpoint is ejected: the one whose ejection ends first.
        let least_bad = self
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, s)| untried(s))
            .min_by_key(|(_, s)| s.health.ejected_until().unwrap_or(Timestamp::ZERO))
            .map(|(i, _)| i);
        if least_bad.is_some() {
            return least_bad;
        }
        // Every endpoint was tried: the least loaded available one, else the least bad.
        self.endpoints
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| {
                (
                    s.health.ejected_until().unwrap_or(Timestamp::ZERO),
                    s.health.in_flight(),
                )
            })
            .map(|(i, _)| i)
    }
}

impl<K, S, Req, C, Cl, D> Service<Req> for Balance<K, S, Req, C, Cl, D>
where
    K: fmt::Debug + PartialEq,
    S: Service<Req> + Clone,
    C: Clock,
    Cl: Classify<S::Response, S::Error>,
    D: Stream<Item = Change<K, S>> + Unpin,
{
    type Response = S::Response;
    type Error = BalanceError<S::Error>;
    type Future = ResponseFuture<S, Req, C, Cl>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        // Apply every discovery change that is ready; a finished stream leaves the
        // set as it is.
        while let Some(discover) = self.discover.as_mut() {
            match Pin::new(discover).poll_next(cx) {
                Poll::Ready(Some(Change::Insert(key, service))) => self.insert(key, service),
                Poll::Ready(Some(Change::Remove(key))) => self.remove(&key),
                Poll::Ready(None) => self.discover = None,
                Poll::Pending => break,
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let clock = self.outliers.clock().clone();
        let start = clock.now();
        self.outliers.tick(start);
        let tried = (self.tried_of)(&req);
        let Some(i) = self.pick(tried) else {
            return ResponseFuture {
                state: State::Failed {
                    error: Some(BalanceError::NoEndpoints),
                },
                guard: None,
                start,
                clock,
                classify: self.classify.clone(),
            };
        };
        let slot = &self.endpoints[i];
        if let Some(tried) = tried {
            tried.record(slot.health.health_id());
        }
        slot.health.health.in_flight.fetch_add(1, Ordering::Relaxed);
        ResponseFuture {
            state: State::Ready {
                service: slot.service.clone(),
                request: Some(req),
            },
            guard: Some(InFlight(slot.health.clone())),
            start,
            clock,
            classify: self.classify.clone(),
        }
    }
}

/// Counts a call in flight on its endpoint until it is dropped.
struct InFlight<C: Clock>(EndpointHealth<C>);

impl<C: Clock> Drop for InFlight<C> {
    fn drop(&mut self) {
        self.0.health.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<Req>, Req> {
        // Waits for the chosen endpoint's readiness, then calls it.
        Ready { service: S, request: Option<Req> },
        // Polls the endpoint's call.
        Calling { #[pin] future: S::Future },
        // Resolves at once to the error.
        Failed { error: Option<BalanceError<S::Error>> },
    }
}

pin_project! {
    /// The response future of a [`Balance`]: the chosen endpoint's readiness, then
    /// its call; the outcome and latency are recorded for the endpoint when it
    /// ends. Dropping it records nothing and frees its place in the endpoint's
    /// in-flight count.
    pub struct ResponseFuture<S: Service<Req>, Req, C: Clock, Cl> {
        #[pin]
        state: State<S, Req>,
        guard: Option<InFlight<C>>,
        start: Timestamp,
        clock: C,
        classify: std::sync::Arc<Cl>,
    }
}

impl<S: Service<Req>, Req, C: Clock, Cl> fmt::Debug for ResponseFuture<S, Req, C, Cl> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("endpoint", &self.guard.as_ref().map(|g| g.0.label()))
            .finish()
    }
}

impl<S, Req, C, Cl> Future for ResponseFuture<S, Req, C, Cl>
where
    S: Service<Req>,
    C: Clock,
    Cl: Classify<S::Response, S::Error>,
{
    type Output = Result<S::Response, BalanceError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = loop {
            match this.state.as_mut().project() {
                StateProj::Ready { service, request } => {
                    // The endpoint's own readiness; an error there is its failure.
                    match ready!(service.poll_ready(cx)) {
                        Ok(()) => {
                            let req = request.take().expect("polled after the call started");
                            let future = service.call(req);
                            this.state.set(State::Calling { future });
                        }
                        Err(e) => break Err(e),
                    }
                }
                StateProj::Calling { future } => break ready!(future.poll(cx)),
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
            }
        };
        // Record the outcome and latency for the endpoint.
        if let Some(guard) = this.guard.take() {
            let end = this.clock.now();
            let kind = this.classify.classify(&result).kind();
            let elapsed = end.saturating_duration_since(*this.start);
            guard.0.record(kind, Some(elapsed), end);
        }
        Poll::Ready(result.map_err(BalanceError::Endpoint))
    }
}
