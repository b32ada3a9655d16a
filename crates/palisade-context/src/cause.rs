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

    /// Whether the context's deadline passed.
    pub fn is_deadline_exceeded(&self) -> bool {
        matches!(self.kind, Kind::DeadlineExceeded)
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
/// exceeded, 3 a user cause (kept beside the state, under the node's lock).
pub(crate) const KIND_CANCELED: u8 = 1;
pub(crate) const KIND_DEADLINE: u8 = 2;
pub(crate) const KIND_USER: u8 = 3;

impl Cause {
    pub(crate) fn kind_bits(&self) -> u8 {
        match self.kind {
            Kind::Canceled => KIND_CANCELED,
            Kind::DeadlineExceeded => KIND_DEADLINE,
            Kind::User(_) => KIND_USER,
        }
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Canceled => f.write_str("Canceled"),
            Kind::DeadlineExceeded => f.write_str("DeadlineExceeded"),
            Kind::User(cause) => f.debug_tuple("Canceled").field(cause).finish(),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Canceled => f.write_str("context canceled"),
            Kind::DeadlineExceeded => f.write_str("context deadline exceeded"),
            Kind::User(cause) => write!(f, "context canceled: {cause}"),
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
    }
}
