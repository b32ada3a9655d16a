use std::fmt;
use std::marker::PhantomData;

use crate::Outcome;

/// Decides the [`Outcome`] of one attempt from its result.
///
/// A classifier sees the whole `Result`, not only the error: an `Ok` HTTP 503
/// response is a transient failure, and an `Err` "not found" may be ignored.
///
/// Any `Fn(&Result<T, E>) -> Outcome` is a classifier:
///
/// ```
/// use palisade_classify::{Classify, Outcome};
///
/// let by_value = |r: &Result<u32, String>| match r {
///     Ok(0) => Outcome::Ignored,
///     Ok(_) => Outcome::Success,
///     Err(_) => Outcome::transient(),
/// };
/// assert_eq!(by_value.classify(&Ok(0)), Outcome::Ignored);
/// assert_eq!(by_value.classify(&Err("x".into())), Outcome::transient());
/// ```
///
/// Open: implement it for your own types. A method added in a later version comes
/// with a default body, so an implementation keeps compiling.
pub trait Classify<T, E> {
    /// The outcome of an attempt that returned `result`.
    fn classify(&self, result: &Result<T, E>) -> Outcome;
}

impl<T, E, F> Classify<T, E> for F
where
    F: Fn(&Result<T, E>) -> Outcome,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}

/// An error that knows its own outcome (a timeout is transient, a panic permanent).
///
/// [`ByError`] classifies `Ok` as success and an `Err` by this trait.
///
/// Open: implement it for your own types. A method added in a later version comes
/// with a default body, so an implementation keeps compiling.
pub trait ClassifyError {
    /// The outcome this error stands for.
    fn outcome(&self) -> Outcome;
}

impl<E: ClassifyError + ?Sized> ClassifyError for &E {
    fn outcome(&self) -> Outcome {
        (**self).outcome()
    }
}

impl<E: ClassifyError + ?Sized> ClassifyError for Box<E> {
    fn outcome(&self) -> Outcome {
        (**self).outcome()
    }
}

impl<E: ClassifyError + ?Sized> ClassifyError for std::sync::Arc<E> {
    fn outcome(&self) -> Outcome {
        (**self).outcome()
    }
}

impl ClassifyError for crate::Rejection {
    fn outcome(&self) -> Outcome {
        Outcome::Rejected(*self)
    }
}

/// The classifier strategies use when none is given: `Ok` is a success and every
/// `Err` a transient failure.
///
/// Every error is treated as transient because, knowing nothing of the error, the
/// useful default is to let the retry try again and let the breaker count it (the
/// same default as Polly and resilience4j). Narrow it with the [`ClassifyExt`]
/// combinators or use [`ByError`] when the error type implements [`ClassifyError`].
#[derive(Copy, Clone, Debug, Default)]
pub struct AnyErrorIsTransient;

impl<T, E> Classify<T, E> for AnyErrorIsTransient {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::transient(),
        }
    }
}

/// `Ok` is a success; an `Err` is classified by its [`ClassifyError`] impl.
///
/// ```
/// use palisade_classify::{ByError, Classify, Outcome};
/// use std::io;
///
/// let refused: Result<(), io::Error> = Err(io::ErrorKind::ConnectionRefused.into());
/// assert!(matches!(ByError.classify(&refused), Outcome::Transient(_)));
/// ```
#[derive(Copy, Clone, Debug, Default)]
pub struct ByError;

impl<T, E: ClassifyError> Classify<T, E> for ByError {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) => e.outcome(),
        }
    }
}

/// Combinators on every classifier.
///
/// ```
/// use palisade_classify::{AnyErrorIsTransient, Classify, ClassifyExt, Outcome};
///
/// // Validation errors are the caller's fault: ignore them; the rest stays transient.
/// let classifier = AnyErrorIsTransient
///     .ignore_err(|e: &String| e.starts_with("invalid"))
///     .permanent_err(|e: &String| e == "corrupt");
/// assert_eq!(classifier.classify(&Err::<(), _>("invalid id".into())), Outcome::Ignored);
/// assert_eq!(classifier.classify(&Err::<(), _>("corrupt".into())), Outcome::Permanent);
/// assert_eq!(classifier.classify(&Err::<(), _>("reset".into())), Outcome::transient());
/// ```
///
/// The combinators are available on every type once the trait is in scope, and
/// check that the result is a classifier where it is used, so they chain on the
/// generic classifiers ([`AnyErrorIsTransient`], [`ByError`]) without annotations.
pub trait ClassifyExt: Sized {
    /// Where `when` matches the result, the outcome is `outcome`; elsewhere `self`
    /// decides.
    fn with_override<P, T, E>(self, when: P, outcome: Outcome) -> Override<Self, P>
    where
        P: Fn(&Result<T, E>) -> bool,
    {
        Override {
            inner: self,
            when,
            outcome,
        }
    }

    /// Errors that `when` matches are [`Outcome::Ignored`].
    fn ignore_err<P, E>(self, when: P) -> Override<Self, OnErr<P, E>>
    where
        P: Fn(&E) -> bool,
    {
        self.override_err(when, Outcome::Ignored)
    }

    /// Errors that `when` matches are [`Outcome::Permanent`].
    fn permanent_err<P, E>(self, when: P) -> Override<Self, OnErr<P, E>>
    where
        P: Fn(&E) -> bool,
    {
        self.override_err(when, Outcome::Permanent)
    }

    /// Errors that `when` matches are transient (without a retry-after hint).
    fn transient_err<P, E>(self, when: P) -> Override<Self, OnErr<P, E>>
    where
        P: Fn(&E) -> bool,
    {
        self.override_err(when, Outcome::transient())
    }

    /// `Ok` values that `when` matches are transient failures (an `Ok` 503, an empty
    /// page from a degraded backend).
    fn transient_ok<P, T>(self, when: P) -> Override<Self, OnOk<P, T>>
    where
        P: Fn(&T) -> bool,
    {
        Override {
            inner: self,
            when: OnOk {
                pred: when,
                _t: PhantomData,
            },
            outcome: Outcome::transient(),
        }
    }

    /// Errors that `when` matches have outcome `outcome`.
    fn override_err<P, E>(self, when: P, outcome: Outcome) -> Override<Self, OnErr<P, E>>
    where
        P: Fn(&E) -> bool,
    {
        Override {
            inner: self,
            when: OnErr {
                pred: when,
                _e: PhantomData,
            },
            outcome,
        }
    }

    /// Rewrites the outcome `self` decides.
    fn map_outcome<F>(self, f: F) -> MapOutcome<Self, F>
    where
        F: Fn(Outcome) -> Outcome,
    {
        MapOutcome { inner: self, f }
    }
}

impl<C> ClassifyExt for C {}

/// A predicate on results: what [`Override`] asks before it overrides.
///
/// Open: implement it for your own types. A method added in a later version comes
/// with a default body, so an implementation keeps compiling.
pub trait ResultPredicate<T, E> {
    /// Whether the result matches.
    fn matches(&self, result: &Result<T, E>) -> bool;
}

impl<T, E, F: Fn(&Result<T, E>) -> bool> ResultPredicate<T, E> for F {
    #[inline]
    fn matches(&self, result: &Result<T, E>) -> bool {
        self(result)
    }
}

/// A predicate on the error of a result, made by the `*_err` combinators.
pub struct OnErr<P, E> {
    pred: P,
    _e: PhantomData<fn(&E)>,
}

impl<T, E, P: Fn(&E) -> bool> ResultPredicate<T, E> for OnErr<P, E> {
    #[inline]
    fn matches(&self, result: &Result<T, E>) -> bool {
        matches!(result, Err(e) if (self.pred)(e))
    }
}

/// A predicate on the `Ok` value of a result, made by [`ClassifyExt::transient_ok`].
pub struct OnOk<P, T> {
    pred: P,
    _t: PhantomData<fn(&T)>,
}

impl<T, E, P: Fn(&T) -> bool> ResultPredicate<T, E> for OnOk<P, T> {
    #[inline]
    fn matches(&self, result: &Result<T, E>) -> bool {
        matches!(result, Ok(v) if (self.pred)(v))
    }
}

impl<P: Clone, E> Clone for OnErr<P, E> {
    fn clone(&self) -> Self {
        OnErr {
            pred: self.pred.clone(),
            _e: PhantomData,
        }
    }
}

impl<P: Clone, T> Clone for OnOk<P, T> {
    fn clone(&self) -> Self {
        OnOk {
            pred: self.pred.clone(),
            _t: PhantomData,
        }
    }
}

impl<P, E> fmt::Debug for OnErr<P, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnErr(..)")
    }
}

impl<P, T> fmt::Debug for OnOk<P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnOk(..)")
    }
}

/// A classifier with an override for the results a predicate matches.
#[derive(Clone)]
pub struct Override<C, P> {
    inner: C,
    when: P,
    outcome: Outcome,
}

impl<T, E, C, P> Classify<T, E> for Override<C, P>
where
    C: Classify<T, E>,
    P: ResultPredicate<T, E>,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        if self.when.matches(result) {
            self.outcome
        } else {
            self.inner.classify(result)
        }
    }
}

impl<C: fmt::Debug, P> fmt::Debug for Override<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Override")
            .field("inner", &self.inner)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

/// A classifier whose outcome is rewritten by a function.
#[derive(Clone)]
pub struct MapOutcome<C, F> {
    inner: C,
    f: F,
}

impl<T, E, C, F> Classify<T, E> for MapOutcome<C, F>
where
    C: Classify<T, E>,
    F: Fn(Outcome) -> Outcome,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        (self.f)(self.inner.classify(result))
    }
}

impl<C: fmt::Debug, F> fmt::Debug for MapOutcome<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapOutcome")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Rejection, Strategy};

    #[test]
    fn default_classifier() {
        let c = AnyErrorIsTransient;
        assert_eq!(c.classify(&Ok::<_, ()>(1)), Outcome::Success);
        assert_eq!(c.classify(&Err::<(), _>(1)), Outcome::transient());
    }

    #[test]
    fn overrides_apply_in_order_outermost_first() {
        let c = AnyErrorIsTransient
            .ignore_err(|e: &i32| *e < 0)
            .permanent_err(|e: &i32| *e == -1)
            .transient_ok(|v: &i32| *v == 503);
        assert_eq!(c.classify(&Err(-1)), Outcome::Permanent);
        assert_eq!(c.classify(&Err(-2)), Outcome::Ignored);
        assert_eq!(c.classify(&Err(2)), Outcome::transient());
        assert_eq!(c.classify(&Ok(503)), Outcome::transient());
        assert_eq!(c.classify(&Ok(200)), Outcome::Success);
    }

    #[test]
    fn with_override_and_map() {
        let c = AnyErrorIsTransient
            .with_override(|r: &Result<i32, i32>| r.is_ok(), Outcome::Ignored)
            .map_outcome(|o| {
                if o == Outcome::Ignored {
                    Outcome::Permanent
                } else {
                    o
                }
            });
        assert_eq!(c.classify(&Ok(1)), Outcome::Permanent);
        assert_eq!(c.classify(&Err(1)), Outcome::transient());
    }

    #[test]
    fn by_error_uses_the_error() {
        let r: Result<(), Rejection> = Err(Rejection::new(Strategy::RateLimiter));
        assert_eq!(
            ByError.classify(&r),
            Outcome::Rejected(Rejection::new(Strategy::RateLimiter))
        );
        let boxed: Result<(), Box<Rejection>> = Err(Box::new(Rejection::new(Strategy::Bulkhead)));
        assert!(matches!(ByError.classify(&boxed), Outcome::Rejected(_)));
    }
}
