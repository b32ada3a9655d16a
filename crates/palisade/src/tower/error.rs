//! The one error of the single-strategy layers, and how a layer recognises the
//! error of the layer below it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_classify::{Outcome, Rejection, Strategy};

use crate::TimeoutKind;

/// The error of every single-strategy layer ([`retry`](super::retry),
/// [`breaker`](super::breaker), [`bulkhead`](super::bulkhead),
/// [`rate_limiter`](super::rate_limiter), [`attempt_timeout`](super::attempt_timeout)):
/// the inner service's own error, or which layer refused or timed out the call.
///
/// It is flat: a layer over another layer's service passes that layer's
/// `LayerError<E>` through as it is (see [`IntoLayerError`]), so a stack of
/// `retry ∘ breaker ∘ attempt_timeout` over a service failing with `E` fails with
/// `LayerError<E>`, never `LayerError<LayerError<E>>`. Each refusal carries the
/// name of the layer that made it.
///
/// A layer's own error is one pointer wide (its fields live on the heap, one
/// allocation on that failure path), so that a call's `Result` stays as small as
/// the inner service's: the healthy path moves no more than it would without the
/// layers.
///
/// New variants may be added; a `match` needs a wildcard arm.
#[non_exhaustive]
pub enum LayerError<E> {
    /// The inner service's own error.
    Inner(E),
    /// A strategy refused the call before it reached the inner service: an open
    /// breaker (when the call did not wait for readiness), a bulkhead whose queue
    /// was full or whose wait ran out, a rate limiter without a token, a retry
    /// whose context ended before any attempt completed.
    Rejected(Box<Refused>),
    /// An attempt took longer than an attempt timeout.
    TimedOut(Box<TimedOut>),
}

/// A layer's refusal of a call ([`LayerError::Rejected`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    layer: Arc<str>,
    rejection: Rejection,
}

impl Refused {
    /// The name of the layer that refused.
    pub fn layer(&self) -> &str {
        &self.layer
    }

    /// Which strategy refused, and when to try again.
    pub fn rejection(&self) -> Rejection {
        self.rejection
    }
}

/// An attempt timeout of a layer ran out ([`LayerError::TimedOut`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedOut {
    layer: Arc<str>,
    after: Duration,
}

impl TimedOut {
    /// The name of the layer whose limit ran out.
    pub fn layer(&self) -> &str {
        &self.layer
    }

    /// The limit.
    pub fn after(&self) -> Duration {
        self.after
    }
}

impl<E> LayerError<E> {
    /// Whether this is the inner service's own error.
    pub fn is_inner(&self) -> bool {
        matches!(self, LayerError::Inner(_))
    }

    /// The inner service's error, if it is one.
    pub fn inner(&self) -> Option<&E> {
        match self {
            LayerError::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// The inner service's error, if it is one.
    pub fn into_inner(self) -> Option<E> {
        match self {
            LayerError::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// Whether a strategy refused the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self, LayerError::Rejected(_))
    }

    /// The refusal, if a strategy refused the call.
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            LayerError::Rejected(r) => Some(r.rejection),
            _ => None,
        }
    }

    /// Which strategy refused the call, if one did.
    pub fn rejected_by(&self) -> Option<Strategy> {
        self.rejection().map(|r| r.strategy())
    }

    /// Whether an attempt timeout ran out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, LayerError::TimedOut(_))
    }

    /// Which timeout ran out: always [`TimeoutKind::Attempt`] for a layer (a layer
    /// limits the calls of the service it wraps), as the pipeline's
    /// [`Error::timeout_kind`](crate::Error::timeout_kind) says it.
    pub fn timeout_kind(&self) -> Option<TimeoutKind> {
        self.is_timeout().then_some(TimeoutKind::Attempt)
    }

    /// The name of the layer that refused or timed out the call; `None` for the
    /// inner service's own error.
    pub fn layer(&self) -> Option<&str> {
        match self {
            LayerError::Rejected(r) => Some(&r.layer),
            LayerError::TimedOut(t) => Some(&t.layer),
            _ => None,
        }
    }

    /// The outcome of a call that ended in a layer's own error (not the inner
    /// service's, which only a classifier can judge): a refusal is
    /// [`Outcome::Rejected`] (neither retried nor counted by a breaker), a timeout a
    /// transient failure (retried, counted).
    pub fn layer_outcome(&self) -> Option<Outcome> {
        match self {
            LayerError::Inner(_) => None,
            LayerError::Rejected(r) => Some(Outcome::Rejected(r.rejection)),
            LayerError::TimedOut(_) => Some(Outcome::transient()),
        }
    }

    /// The same error with the inner error mapped by `f`.
    pub fn map_inner<E2>(self, f: impl FnOnce(E) -> E2) -> LayerError<E2> {
        match self {
            LayerError::Inner(e) => LayerError::Inner(f(e)),
            LayerError::Rejected(r) => LayerError::Rejected(r),
            LayerError::TimedOut(t) => LayerError::TimedOut(t),
        }
    }

    #[cold]
    #[cfg(any(feature = "retry", feature = "breaker", feature = "limit"))]
    pub(crate) fn rejected(layer: &Arc<str>, rejection: Rejection) -> Self {
        LayerError::Rejected(Box::new(Refused {
            layer: layer.clone(),
            rejection,
        }))
    }

    #[cold]
    pub(crate) fn timed_out(layer: &Arc<str>, after: Duration) -> Self {
        LayerError::TimedOut(Box::new(TimedOut {
            layer: layer.clone(),
            after,
        }))
    }
}

impl<E: fmt::Debug> fmt::Debug for LayerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerError::Inner(e) => f.debug_tuple("Inner").field(e).finish(),
            LayerError::Rejected(r) => f.debug_tuple("Rejected").field(r).finish(),
            LayerError::TimedOut(t) => f.debug_tuple("TimedOut").field(t).finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for LayerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerError::Inner(e) => e.fmt(f),
            LayerError::Rejected(r) => write!(f, "{}: {}", r.layer, r.rejection),
            LayerError::TimedOut(t) => {
                write!(f, "{}: attempt timed out after {:?}", t.layer, t.after)
            }
        }
    }
}

/// An error: so it converts into a [`BoxError`](crate::BoxError), as tower's
/// `load_shed`, `Buffer` and `timeout` ask, even when the inner error is itself a
/// `BoxError` (which does not implement `std::error::Error`). Its source is the
/// inner error ([`IntoLayerError::source_of`]).
impl<E> std::error::Error for LayerError<E>
where
    E: IntoLayerError<Inner = E> + fmt::Debug + fmt::Display,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LayerError::Inner(e) => e.source_of(),
            _ => None,
        }
    }
}

/// The error of a service that a single-strategy layer wraps: either a plain
/// error (the inner service's own, which becomes [`LayerError::Inner`]) or a
/// [`LayerError`] of a layer below, which passes through unchanged. This is what
/// keeps a stack of layers flat.
///
/// Implemented for `LayerError<E>` and for the common error types: `std::io::Error`,
/// [`BoxError`](crate::BoxError) (tower's and tower-test's error),
/// `std::convert::Infallible`, `String`, `&'static str`, the pipeline's
/// [`Error<E>`](crate::Error), and `http::Error` with the `http` feature. For an
/// error type of your own, one line: [`impl_into_layer_error!`](crate::impl_into_layer_error).
/// For a foreign error type you cannot implement it for (`hyper::Error`,
/// `tonic::Status`), map the service's error first (`tower::ServiceExt::map_err`
/// into a `BoxError` or a type of yours).
///
/// Open: implement it for your own types. A method added later comes with a
/// default body.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an error a palisade tower layer knows how to wrap",
    label = "the inner service fails with `{Self}`",
    note = "implement `palisade::tower::IntoLayerError` for it with `palisade::impl_into_layer_error!({Self});`, or map the inner service's error into a `palisade::BoxError`"
)]
pub trait IntoLayerError: Sized {
    /// The inner service's own error type under every layer.
    type Inner;

    /// This error as a layer error: a plain error is [`LayerError::Inner`], a
    /// `LayerError` is itself.
    fn into_layer_error(self) -> LayerError<Self::Inner>;

    /// This error as the source of the [`LayerError::Inner`] that holds it. The
    /// default is none; [`impl_into_layer_error!`](crate::impl_into_layer_error)
    /// gives the error itself.
    fn source_of(&self) -> Option<&(dyn std::error::Error + 'static)> {
        None
    }
}

impl<E> IntoLayerError for LayerError<E> {
    type Inner = E;

    #[inline(always)]
    fn into_layer_error(self) -> LayerError<E> {
        self
    }
}

/// Implements [`IntoLayerError`](crate::tower::IntoLayerError) for error types of
/// your own, as plain errors (each becomes `LayerError::Inner`).
///
/// The types must implement `std::error::Error`: the error is the source of the
/// `LayerError::Inner` that holds it.
///
/// ```
/// #[derive(Debug)]
/// struct ApiError;
///
/// impl std::fmt::Display for ApiError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("the API failed")
///     }
/// }
///
/// impl std::error::Error for ApiError {}
///
/// palisade::impl_into_layer_error!(ApiError);
///
/// let e: palisade::tower::LayerError<ApiError> =
///     palisade::tower::IntoLayerError::into_layer_error(ApiError);
/// assert!(e.is_inner());
/// ```
#[macro_export]
macro_rules! impl_into_layer_error {
    ($($t:ty),+ $(,)?) => {
        $(
            impl $crate::tower::IntoLayerError for $t {
                type Inner = $t;

                #[inline(always)]
                fn into_layer_error(self) -> $crate::tower::LayerError<$t> {
                    $crate::tower::LayerError::Inner(self)
                }

                fn source_of(&self) -> ::std::option::Option<&(dyn ::std::error::Error + 'static)> {
                    ::std::option::Option::Some(self)
                }
            }
        )+
    };
}

crate::impl_into_layer_error!(std::io::Error, std::convert::Infallible);

macro_rules! plain_without_source {
    ($($t:ty),+) => {
        $(
            impl IntoLayerError for $t {
                type Inner = $t;

                #[inline(always)]
                fn into_layer_error(self) -> LayerError<$t> {
                    LayerError::Inner(self)
                }
            }
        )+
    };
}
plain_without_source!(String, &'static str);

impl IntoLayerError for crate::BoxError {
    type Inner = crate::BoxError;

    #[inline(always)]
    fn into_layer_error(self) -> LayerError<Self> {
        LayerError::Inner(self)
    }

    fn source_of(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&**self)
    }
}

#[cfg(feature = "http")]
crate::impl_into_layer_error!(http::Error);

impl<E: std::error::Error + 'static> IntoLayerError for crate::Error<E> {
    type Inner = crate::Error<E>;

    #[inline(always)]
    fn into_layer_error(self) -> LayerError<Self> {
        LayerError::Inner(self)
    }

    fn source_of(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self)
    }
}

/// Classifies a flat result by value: the inner error and an `Ok` by `k`, a
/// layer's own error by [`LayerError::layer_outcome`]. By value, because a
/// classifier reads a `&Result<T, E>` and a `&Result<T, LayerError<E>>` holds none.
#[inline(always)]
#[cfg(any(feature = "retry", feature = "breaker"))]
pub(crate) fn judge<T, E, K: palisade_classify::Classify<T, E> + ?Sized>(
    k: &K,
    result: Result<T, LayerError<E>>,
) -> (Result<T, LayerError<E>>, Outcome) {
    match result {
        Ok(v) => {
            let r: Result<T, E> = Ok(v);
            let outcome = k.classify(&r);
            (r.map_err(LayerError::Inner), outcome)
        }
        Err(LayerError::Inner(e)) => {
            let r: Result<T, E> = Err(e);
            let outcome = k.classify(&r);
            (r.map_err(LayerError::Inner), outcome)
        }
        Err(other) => {
            let outcome = other.layer_outcome().unwrap_or(Outcome::Ignored);
            (Err(other), outcome)
        }
    }
}

/// A layer's name, shared by its services and carried by its refusals.
pub(crate) type Name = Arc<str>;

pub(crate) fn name(name: impl Into<Arc<str>>) -> Name {
    name.into()
}
