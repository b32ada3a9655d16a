use std::fmt;
use std::sync::Arc;

use palisade_classify::{Outcome, Strategy};

const TRANSIENT: u8 = 1;
const PERMANENT: u8 = 1 << 1;
const REJECTED: u8 = 1 << 2;
const IGNORED: u8 = 1 << 3;

type ResultPredicate<T, E> = Arc<dyn Fn(&Result<T, E>, &Outcome) -> bool + Send + Sync>;

/// Which outcomes make a tier step in: a set of classes of the taxonomy, a
/// predicate, or both combined with [`or`](Trigger::or).
///
/// The default ([`Trigger::failures`]) is every transient or permanent failure and
/// every rejection by a strategy, and not [`Outcome::Ignored`]: an ignored outcome
/// is the caller's own fault or a business answer (a 404, a validation error) that a
/// default value would hide.
///
/// ```
/// use palisade_classify::{Outcome, Rejection, Strategy};
/// use palisade_fallback::Trigger;
///
/// let t = Trigger::<u32, String>::transient().or(Trigger::rejected_by(Strategy::CircuitBreaker));
/// assert!(t.matches(&Err("reset".into()), &Outcome::transient()));
/// assert!(t.matches(&Err("open".into()), &Outcome::Rejected(Rejection::new(Strategy::CircuitBreaker))));
/// assert!(!t.matches(&Err("full".into()), &Outcome::Rejected(Rejection::new(Strategy::Bulkhead))));
/// assert!(!t.matches(&Err("bug".into()), &Outcome::Permanent));
/// ```
pub struct Trigger<T, E> {
    classes: u8,
    predicates: Vec<ResultPredicate<T, E>>,
}

impl<T, E> Trigger<T, E> {
    const fn classes(classes: u8) -> Self {
        Trigger {
            classes,
            predicates: Vec::new(),
        }
    }

    /// Transient and permanent failures and rejections by any strategy (the default).
    pub const fn failures() -> Self {
        Self::classes(TRANSIENT | PERMANENT | REJECTED)
    }

    /// Transient failures only.
    pub const fn transient() -> Self {
        Self::classes(TRANSIENT)
    }

    /// Permanent failures only.
    pub const fn permanent() -> Self {
        Self::classes(PERMANENT)
    }

    /// Rejections by any strategy (an open breaker, a full bulkhead, a rate limit).
    pub const fn rejected() -> Self {
        Self::classes(REJECTED)
    }

    /// Ignored outcomes (the caller's fault, business rejections, cancelled calls).
    /// Rarely wanted: see the type's documentation.
    pub const fn ignored() -> Self {
        Self::classes(IGNORED)
    }

    /// Every outcome but success.
    pub const fn any() -> Self {
        Self::classes(TRANSIENT | PERMANENT | REJECTED | IGNORED)
    }

    /// No outcome; combine with [`or`](Trigger::or).
    pub const fn never() -> Self {
        Self::classes(0)
    }

    /// Rejections by one strategy.
    pub fn rejected_by(strategy: Strategy) -> Self
    where
        T: 'static,
        E: 'static,
    {
        Self::when(move |_, o| matches!(o, Outcome::Rejected(r) if r.strategy() == strategy))
    }

    /// The results (with their outcome) that `predicate` accepts. It is asked only
    /// of results that are not a success.
    pub fn when<P>(predicate: P) -> Self
    where
        P: Fn(&Result<T, E>, &Outcome) -> bool + Send + Sync + 'static,
    {
        Trigger {
            classes: 0,
            predicates: vec![Arc::new(predicate)],
        }
    }

    /// The errors that `predicate` accepts (whatever their class).
    pub fn when_err<P>(predicate: P) -> Self
    where
        P: Fn(&E) -> bool + Send + Sync + 'static,
        T: 'static,
        E: 'static,
    {
        Self::when(move |r, _| matches!(r, Err(e) if predicate(e)))
    }

    /// Either trigger.
    pub fn or(mut self, other: Trigger<T, E>) -> Self {
        self.classes |= other.classes;
        self.predicates.extend(other.predicates);
        self
    }

    /// Whether a result with this outcome makes the tier step in. A success never
    /// does.
    pub fn matches(&self, result: &Result<T, E>, outcome: &Outcome) -> bool {
        let class = match outcome {
            Outcome::Success => return false,
            Outcome::Transient(_) => TRANSIENT,
            Outcome::Permanent => PERMANENT,
            Outcome::Rejected(_) => REJECTED,
            _ => IGNORED,
        };
        self.classes & class != 0 || self.predicates.iter().any(|p| p(result, outcome))
    }
}

impl<T, E> Default for Trigger<T, E> {
    fn default() -> Self {
        Self::failures()
    }
}

impl<T, E> Clone for Trigger<T, E> {
    fn clone(&self) -> Self {
        Trigger {
            classes: self.classes,
            predicates: self.predicates.clone(),
        }
    }
}

impl<T, E> fmt::Debug for Trigger<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = Vec::new();
        for (bit, name) in [
            (TRANSIENT, "transient"),
            (PERMANENT, "permanent"),
            (REJECTED, "rejected"),
            (IGNORED, "ignored"),
        ] {
            if self.classes & bit != 0 {
                names.push(name);
            }
        }
        f.debug_struct("Trigger")
            .field("classes", &names)
            .field("predicates", &self.predicates.len())
            .finish()
    }
}
