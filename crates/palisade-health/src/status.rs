//! The vocabulary: a status, the groups a component belongs to, how much it
//! matters, and what one check found.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A health status, in the words of the `application/health+json` draft.
///
/// Ordered from best to worst, so `a.max(b)` is the worse of two.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Working.
    Pass,
    /// Working, with a problem worth a look: answers come from a fallback, an
    /// optional dependency is down, latency nears the deadline.
    Warn,
    /// Not working: the group this component belongs to must not take traffic
    /// (readiness), must be restarted (liveness), or has not started yet.
    Fail,
}

impl Status {
    /// `pass`, `warn` or `fail`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    /// Whether a probe of a group with this status answers "up" (HTTP 200, gRPC
    /// `SERVING`): `pass` and `warn` do, `fail` does not.
    pub const fn is_up(self) -> bool {
        !matches!(self, Status::Fail)
    }

    /// The value of the `palisade_health_status` gauge: 0 pass, 1 warn, 2 fail.
    pub const fn as_gauge(self) -> f64 {
        match self {
            Status::Pass => 0.0,
            Status::Warn => 1.0,
            Status::Fail => 2.0,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of the three questions an orchestrator asks.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Group {
    /// Has the service finished starting? Until it has, liveness and readiness
    /// are not asked (Kubernetes' startup probe). Once every startup component
    /// has passed, startup stays passed.
    Startup,
    /// Is the process working at all, or should it be restarted? Never depends on
    /// a dependency: a database outage must not restart every instance.
    Liveness,
    /// Should traffic be sent to this instance now?
    Readiness,
}

impl Group {
    /// Every group, in the order above.
    pub const ALL: [Group; 3] = [Group::Startup, Group::Liveness, Group::Readiness];

    /// `startup`, `liveness` or `readiness`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Group::Startup => "startup",
            Group::Liveness => "liveness",
            Group::Readiness => "readiness",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Group::Startup => 1,
            Group::Liveness => 2,
            Group::Readiness => 4,
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The groups a component belongs to: a small set of [`Group`]s.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Default)]
pub struct Groups(u8);

impl Groups {
    /// No group.
    pub const NONE: Groups = Groups(0);
    /// Startup only.
    pub const STARTUP: Groups = Groups(1);
    /// Liveness only.
    pub const LIVENESS: Groups = Groups(2);
    /// Readiness only: the default of dependencies, probes and checks.
    pub const READINESS: Groups = Groups(4);

    /// This set and `group`.
    pub const fn and(self, group: Group) -> Groups {
        Groups(self.0 | group.bit())
    }

    /// Whether `group` is in the set.
    pub const fn contains(self, group: Group) -> bool {
        self.0 & group.bit() != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl From<Group> for Groups {
    fn from(group: Group) -> Groups {
        Groups(group.bit())
    }
}

impl fmt::Debug for Groups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(Group::ALL.iter().filter(|g| self.contains(**g)))
            .finish()
    }
}

/// How much a component matters to its groups.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Criticality {
    /// Its failure fails the group.
    #[default]
    Critical,
    /// Its failure only warns: the service still works without it (a
    /// recommendation engine, a cache in front of a database that answers).
    Optional,
}

/// What one evaluation of a component found: a status, why, and the value it
/// looked at.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    status: Status,
    output: Option<String>,
    observed: Option<Observed>,
}

/// A value a check looked at, with its unit (the draft's `observedValue` and
/// `observedUnit`).
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The value.
    pub value: f64,
    /// Its unit: `"ms"`, `"percent"`, `"calls"`, `"bytes"` …
    pub unit: &'static str,
}

impl Verdict {
    /// Working.
    pub fn pass() -> Verdict {
        Verdict {
            status: Status::Pass,
            output: None,
            observed: None,
        }
    }

    /// Working with a problem, and what it is.
    pub fn warn(output: impl Into<String>) -> Verdict {
        Verdict {
            status: Status::Warn,
            output: Some(output.into()),
            observed: None,
        }
    }

    /// Not working, and why.
    pub fn fail(output: impl Into<String>) -> Verdict {
        Verdict {
            status: Status::Fail,
            output: Some(output.into()),
            observed: None,
        }
    }

    /// This verdict with the value it was reached on.
    pub fn observed(mut self, value: f64, unit: &'static str) -> Verdict {
        self.observed = Some(Observed { value, unit });
        self
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Why, for a `warn` or a `fail` (and any note a `pass` carries).
    pub fn output(&self) -> Option<&str> {
        self.output.as_deref()
    }

    /// The value the verdict was reached on.
    pub fn observed_value(&self) -> Option<&Observed> {
        self.observed.as_ref()
    }
}

/// `Ok(())` passes; an error fails with its message.
impl<E: fmt::Display> From<Result<(), E>> for Verdict {
    fn from(result: Result<(), E>) -> Verdict {
        match result {
            Ok(()) => Verdict::pass(),
            Err(e) => Verdict::fail(e.to_string()),
        }
    }
}

/// `true` passes, `false` fails with "check returned false".
impl From<bool> for Verdict {
    fn from(ok: bool) -> Verdict {
        if ok {
            Verdict::pass()
        } else {
            Verdict::fail("check returned false")
        }
    }
}
