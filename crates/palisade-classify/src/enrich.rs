use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::sync::Arc;

use crate::{ClassifyError, Outcome};

/// An error with labels that say where it happened: the dependency and operation, the
/// request id, and the tracing span that was current when it was made.
///
/// `Display` prints the labels; [`source()`](Error::source) is the wrapped error, so
/// the chain stays intact for reporters that walk it. The outcome (through
/// [`ClassifyError`]) is the wrapped error's.
///
/// ```
/// use palisade_classify::{Enriched, ResultExt};
/// use std::error::Error;
/// use std::io;
///
/// let r: Result<(), io::Error> = Err(io::ErrorKind::ConnectionReset.into());
/// let err = r
///     .enrich("billing", "charge")
///     .map_err(|e| e.with_request_id("req-42"))
///     .unwrap_err();
/// assert_eq!(err.dependency(), Some("billing"));
/// assert_eq!(err.to_string(), "billing.charge failed (request_id=req-42)");
/// assert!(err.source().unwrap().to_string().contains("reset"));
/// ```
pub struct Enriched<E> {
    error: E,
    dependency: Option<Cow<'static, str>>,
    operation: Option<Cow<'static, str>>,
    request_id: Option<Arc<str>>,
    span_id: Option<tracing::span::Id>,
}

impl<E> Enriched<E> {
    /// Wraps `error`, recording the id of the current tracing span (if any).
    pub fn new(error: E) -> Self {
        Enriched {
            error,
            dependency: None,
            operation: None,
            request_id: None,
            span_id: tracing::Span::current().id(),
        }
    }

    /// Labels the dependency the call went to (`"billing"`, `"users-db"`).
    pub fn with_dependency(mut self, dependency: impl Into<Cow<'static, str>>) -> Self {
        self.dependency = Some(dependency.into());
        self
    }

    /// Labels the operation (`"charge"`, `"GET /users/{id}"`).
    pub fn with_operation(mut self, operation: impl Into<Cow<'static, str>>) -> Self {
        self.operation = Some(operation.into());
        self
    }

    /// Attaches the request id that ties the error to logs and traces.
    pub fn with_request_id(mut self, request_id: impl Into<Arc<str>>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// The dependency label.
    pub fn dependency(&self) -> Option<&str> {
        self.dependency.as_deref()
    }

    /// The operation label.
    pub fn operation(&self) -> Option<&str> {
        self.operation.as_deref()
    }

    /// The request id.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The id of the tracing span that was current when the error was wrapped.
    pub fn span_id(&self) -> Option<&tracing::span::Id> {
        self.span_id.as_ref()
    }

    /// The wrapped error.
    pub fn inner(&self) -> &E {
        &self.error
    }

    /// Unwraps the error, dropping the labels.
    pub fn into_inner(self) -> E {
        self.error
    }
}

impl<E> fmt::Display for Enriched<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.dependency, &self.operation) {
            (Some(d), Some(o)) => write!(f, "{d}.{o} failed")?,
            (Some(d), None) => write!(f, "{d} failed")?,
            (None, Some(o)) => write!(f, "{o} failed")?,
            (None, None) => f.write_str("call failed")?,
        }
        let mut sep = " (";
        if let Some(id) = &self.request_id {
            write!(f, "{sep}request_id={id}")?;
            sep = ", ";
        }
        if let Some(span) = &self.span_id {
            write!(f, "{sep}span={}", span.into_u64())?;
            sep = ", ";
        }
        if sep == ", " {
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl<E: fmt::Debug> fmt::Debug for Enriched<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enriched")
            .field("error", &self.error)
            .field("dependency", &self.dependency)
            .field("operation", &self.operation)
            .field("request_id", &self.request_id)
            .field("span_id", &self.span_id)
            .finish()
    }
}

impl<E: Error + 'static> Error for Enriched<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.error)
    }
}

impl<E: ClassifyError> ClassifyError for Enriched<E> {
    fn outcome(&self) -> Outcome {
        self.error.outcome()
    }
}

/// Labels the error of a `Result` in place: `result.enrich("billing", "charge")`.
///
/// Sealed: implemented for `Result` only, so that methods can be added without
/// breaking anyone.
pub trait ResultExt<T, E>: sealed::Sealed {
    /// Wraps the error in [`Enriched`] with a dependency and an operation label.
    fn enrich(
        self,
        dependency: impl Into<Cow<'static, str>>,
        operation: impl Into<Cow<'static, str>>,
    ) -> Result<T, Enriched<E>>;
}

impl<T, E> ResultExt<T, E> for Result<T, E> {
    fn enrich(
        self,
        dependency: impl Into<Cow<'static, str>>,
        operation: impl Into<Cow<'static, str>>,
    ) -> Result<T, Enriched<E>> {
        self.map_err(|e| {
            Enriched::new(e)
                .with_dependency(dependency)
                .with_operation(operation)
        })
    }
}

mod sealed {
    /// Keeps [`ResultExt`](super::ResultExt) to `Result`.
    pub trait Sealed {}
    impl<T, E> Sealed for Result<T, E> {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn display_and_chain() {
        let e = Enriched::new(io::Error::other("boom"));
        assert_eq!(e.to_string(), "call failed");
        let e = e.with_operation("get");
        assert_eq!(e.to_string(), "get failed");
        let e = Enriched::new(io::Error::other("boom")).with_dependency("db");
        assert_eq!(e.to_string(), "db failed");
        assert_eq!(e.source().unwrap().to_string(), "boom");
        assert_eq!(e.outcome(), Outcome::Permanent);
        assert_eq!(e.into_inner().to_string(), "boom");
    }

    #[test]
    fn captures_the_current_span() {
        let subscriber = tracing_subscriber::registry();
        let subscriber = subscriber.with(tracing_subscriber::fmt::layer().with_test_writer());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("call", dependency = "db");
            let id = span.id().expect("span enabled");
            let e = span.in_scope(|| Enriched::new(io::Error::other("x")).with_request_id("r1"));
            assert_eq!(e.span_id(), Some(&id));
            assert_eq!(e.request_id(), Some("r1"));
            assert_eq!(
                e.to_string(),
                format!("call failed (request_id=r1, span={})", id.into_u64())
            );
        });
    }
}
