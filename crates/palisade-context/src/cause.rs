use std::error::Error;
use std::fmt;

use crate::sync::Arc;

/// A user-supplied cancellation cause, as given to
/// [`CancelGuard::cancel_with`](crate::CancelGuard::cancel_with).
pub type UserCause = Arc<dyn Error + Send + Sync + 'static>;

/// Why a [`Context`](crate::Context) ended: it was cancelled (possibly with a
/// user-supplied cause), or its deadline passed.
///
/// A descendant reports the cause of the ancestor whose cancellation reached it.
/// `Cause` is cheap to clone (the user cause is shared).
///
/// ```
/// use palisade_context::Context;
///
/// let (ctx, guard) = Context::background().with_cancel();
/// guard.cancel_with(std::io::Error::other("client went away"));
/// let cause = ctx.cause().unwrap();
/// assert!(cause.is_canceled());
/// assert_eq!(cause.to_string(), "context canceled: client went away");
/// assert!(cause.user_cause().is_some());
/// ```
#[derive(Clone)]
pub struct Cause {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Canceled,
    DeadlineExceeded,
    User(UserCause),
    Abandoned(Abandoned),
}

/// Why a caller stopped waiting for the work a context was made for: what
/// [`Cause::abandoned`] carries. A resilience pipeline cancels each attempt's
/// context with one of these when it gives the attempt up.
///
/// ```
/// use palisade_context::{Abandoned, Cause};
///
/// let cause = Cause::abandoned(Abandoned::AttemptTimeout);
/// assert!(cause.is_deadline_exceeded());
/// assert_eq!(cause.abandoned_by(), Some(Abandoned::AttemptTimeout));
/// assert_eq!(cause.to_string(), "context deadline exceeded: attempt timeout");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Abandoned {
    /// The attempt's own timeout passed.
    AttemptTimeout,
    /// The timeout of the whole operation, every attempt included, passed.
    TotalTimeout,
    /// Another attempt run at the same time (a hedge) answered first.
    HedgeLost,
}

impl Abandoned {
    /// Whether this is a time limit passing (a deadline) rather than a plain
    /// cancellation.
    pub const fn is_deadline(self) -> bool {
        matches!(self, Abandoned::AttemptTimeout | Abandoned::TotalTimeout)
    }

    /// A short name: `attempt timeout`, `total timeout`, `hedge lost`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Abandoned::AttemptTimeout => "attempt timeout",
            Abandoned::TotalTimeout => "total timeout",
            Abandoned::HedgeLost => "hedge lost",
        }
    }

    /// The code a node keeps for the cause its own deadline ends it with: 0 for
    /// plain [`Cause::deadline_exceeded`].
    pub(crate) const fn code(self) -> u8 {
        match self {
            Abandoned::AttemptTimeout => 1,
            Abandoned::TotalTimeout => 2,
            Abandoned::HedgeLost => 3,
        }
    }

    pub(crate) const fn from_code(code: u8) -> Option<Abandoned> {
        match code {
            1 => Some(Abandoned::AttemptTimeout),
            2 => Some(Abandoned::TotalTimeout),
            3 => Some(Abandoned::HedgeLost),
            _ => None,
        }
    }
}

impl fmt::Display for Abandoned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Cause {
    /// Plain cancellation, without a user cause (Go's `context.Canceled`).
    pub const fn canceled() -> Cause {
        Cause {
            kind: Kind::Canceled,
        }
    }

    /// The deadline passed (Go's `context.DeadlineExceeded`).
    pub const fn deadline_exceeded() -> Cause {
        Cause {
            kind: Kind::DeadlineExceeded,
        }
    }

    /// Cancellation with a user-supplied cause (Go's `WithCancelCause`): any error,
    /// or a message as a `&str` or `String`.
    pub fn user(cause: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Cause {
        Cause::from_arc(Arc::from(cause.into()))
    }

    /// The work was given up for `reason`: an attempt timeout or a total timeout
    /// (which are deadlines: [`is_deadline_exceeded`](Self::is_deadline_exceeded)
    /// holds), or a hedge that lost (a cancellation). Allocates nothing.
    pub const fn abandoned(reason: Abandoned) -> Cause {
        Cause {
            kind: Kind::Abandoned(reason),
        }
    }

    /// The cause of an [`Abandoned`] code: [`Cause::abandoned`], or plain
    /// [`Cause::deadline_exceeded`] for 0.
    pub(crate) fn abandoned_code(code: u8) -> Cause {
        Abandoned::from_code(code).map_or_else(Cause::deadline_exceeded, Cause::abandoned)
    }

    /// Why the work was given up, if the context ended with
    /// [`Cause::abandoned`].
    pub fn abandoned_by(&self) -> Option<Abandoned> {
        match self.kind {
            Kind::Abandoned(reason) => Some(reason),
            _ => None,
        }
    }

    /// Cancellation with a user-supplied cause that is already shared.
    pub fn from_arc(cause: UserCause) -> Cause {
        Cause {
            kind: Kind::User(cause),
        }
    }

    /// Whether the context was cancelled (with or without a user cause) rather than
    /// timed out.
    pub fn is_canceled(&self) -> bool {
        !self.is_deadline_exceeded()
    }

    /// Whether the context's deadline passed: a plain deadline, or an
    /// [attempt or total timeout](Abandoned::is_deadline).
    pub fn is_deadline_exceeded(&self) -> bool {
        match self.kind {
            Kind::DeadlineExceeded => true,
            Kind::Abandoned(reason) => reason.is_deadline(),
            _ => false,
        }
    }

    /// The user-supplied cause, if the cancellation carried one.
    pub fn user_cause(&self) -> Option<&(dyn Error + Send + Sync + 'static)> {
        match &self.kind {
            Kind::User(cause) => Some(&**cause),
            _ => None,
        }
    }

    /// The user-supplied cause as a shared pointer, if the cancellation carried one.
    pub fn user_cause_arc(&self) -> Option<UserCause> {
        match &self.kind {
            Kind::User(cause) => Some(Arc::clone(cause)),
            _ => None,
        }
    }

    /// The user-supplied cause, if the cancellation carried one of type `E`.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        self.user_cause()?.downcast_ref::<E>()
    }
}

/// The cause's kind in the two low bits of a node's state: 1 canceled, 2 deadline
/// exceeded, 3 any other cause (a user cause or an abandoned one, kept beside the
/// state, under the node's lock).
pub(crate) const KIND_CANCELED: u8 = 1;
pub(crate) const KIND_DEADLINE: u8 = 2;
pub(crate) const KIND_USER: u8 = 3;

impl Cause {
    pub(crate) fn kind_bits(&self) -> u8 {
        match self.kind {
            Kind::Canceled => KIND_CANCELED,
            Kind::DeadlineExceeded => KIND_DEADLINE,
            Kind::User(_) | Kind::Abandoned(_) => KIND_USER,
        }
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Canceled => f.write_str("Canceled"),
            Kind::DeadlineExceeded => f.write_str("DeadlineExceeded"),
            Kind::User(cause) => f.debug_tuple("Canceled").field(cause).finish(),
            Kind::Abandoned(reason) => f.debug_tuple("Abandoned").field(reason).finish(),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Canceled => f.write_str("context canceled"),
            Kind::DeadlineExceeded => f.write_str("context deadline exceeded"),
            Kind::User(cause) => write!(f, "context canceled: {cause}"),
            Kind::Abandoned(reason) if reason.is_deadline() => {
                write!(f, "context deadline exceeded: {reason}")
            }
            Kind::Abandoned(reason) => write!(f, "context canceled: {reason}"),
        }
    }
}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.kind {
            Kind::User(cause) => Some(&**cause as &(dyn Error + 'static)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_text() {
        let c = Cause::canceled();
        assert!(c.is_canceled() && !c.is_deadline_exceeded());
        assert_eq!(c.to_string(), "context canceled");
        assert!(c.source().is_none() && c.user_cause().is_none());
        let d = Cause::deadline_exceeded();
        assert!(d.is_deadline_exceeded() && !d.is_canceled());
        assert_eq!(d.to_string(), "context deadline exceeded");
        assert_eq!(format!("{d:?}"), "DeadlineExceeded");
        let u = Cause::user(std::io::Error::other("gone"));
        assert!(u.is_canceled());
        assert_eq!(u.to_string(), "context canceled: gone");
        assert_eq!(u.source().unwrap().to_string(), "gone");
        assert!(u.downcast_ref::<std::io::Error>().is_some());
        assert!(u.user_cause_arc().is_some());
        let h = Cause::abandoned(Abandoned::HedgeLost);
        assert!(h.is_canceled() && !h.is_deadline_exceeded());
        assert_eq!(h.to_string(), "context canceled: hedge lost");
        assert_eq!(format!("{h:?}"), "Abandoned(HedgeLost)");
        assert!(h.user_cause().is_none());
        let t = Cause::abandoned(Abandoned::TotalTimeout);
        assert!(t.is_deadline_exceeded() && !t.is_canceled());
        assert_eq!(t.abandoned_by(), Some(Abandoned::TotalTimeout));
        for reason in [
            Abandoned::AttemptTimeout,
            Abandoned::TotalTimeout,
            Abandoned::HedgeLost,
        ] {
            assert_eq!(Abandoned::from_code(reason.code()), Some(reason));
        }
        assert_eq!(Abandoned::from_code(0), None);
    }
}
