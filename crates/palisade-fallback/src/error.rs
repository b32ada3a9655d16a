use std::borrow::Cow;
use std::error::Error;
use std::fmt;

use palisade_classify::{ClassifyError, Outcome};

pub use palisade_classify::BoxError;

/// A fallback chain that could not replace a failure.
///
/// Either no tier applied ([`is_unhandled`](Self::is_unhandled): the error is the
/// original one, transparently), or the tiers that applied failed too
/// ([`failed_tier`](Self::failed_tier)): then `Display` names the tier and its error,
/// and [`source()`](Error::source) is the original error, so the chain of causes
/// still leads to what went wrong first.
pub struct FallbackError<E> {
    original: E,
    tier: Option<(Cow<'static, str>, BoxError)>,
    compensating: bool,
}

impl<E> FallbackError<E> {
    pub(crate) fn new(
        original: E,
        tier: Option<(Cow<'static, str>, BoxError)>,
        compensating: bool,
    ) -> Self {
        FallbackError {
            original,
            tier,
            compensating,
        }
    }

    /// Whether no tier failed: none applied, or only a compensation started.
    pub fn is_unhandled(&self) -> bool {
        self.tier.is_none()
    }

    /// Whether a compensation task was started for this failure.
    pub fn is_compensating(&self) -> bool {
        self.compensating
    }

    /// The name of the last tier that failed, if one did.
    pub fn failed_tier(&self) -> Option<&str> {
        self.tier.as_ref().map(|(name, _)| &**name)
    }

    /// The error of the last tier that failed, if one did.
    pub fn tier_error(&self) -> Option<&(dyn Error + Send + Sync + 'static)> {
        self.tier.as_ref().map(|(_, e)| &**e)
    }

    /// The error of the call that the chain tried to replace.
    pub fn original(&self) -> &E {
        &self.original
    }

    /// Takes the error of the call that the chain tried to replace.
    pub fn into_original(self) -> E {
        self.original
    }

    /// Takes the original error and, if a tier failed, that tier's name and error.
    pub fn into_parts(self) -> (E, Option<(Cow<'static, str>, BoxError)>) {
        (self.original, self.tier)
    }
}

impl<E: fmt::Display> fmt::Display for FallbackError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tier {
            None => self.original.fmt(f),
            Some((name, error)) => write!(
                f,
                "fallback `{name}` failed ({error}) after: {}",
                self.original
            ),
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for FallbackError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackError")
            .field("original", &self.original)
            .field("failed_tier", &self.failed_tier())
            .field("tier_error", &self.tier_error())
            .field("compensating", &self.compensating)
            .finish()
    }
}

impl<E: Error + 'static> Error for FallbackError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self.tier {
            // Transparent: this error is the original one.
            None => self.original.source(),
            Some(_) => Some(&self.original),
        }
    }
}

impl<E: ClassifyError> ClassifyError for FallbackError<E> {
    /// The original error's outcome.
    fn outcome(&self) -> Outcome {
        self.original.outcome()
    }
}

/// A configuration value out of its allowed range (the shape every Palisade crate
/// shares).
pub use palisade_clock::ConfigError;
