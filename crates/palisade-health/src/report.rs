//! One evaluation's result, and its forms: `application/health+json` and the
//! Kubernetes-style text of `/readyz?verbose`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::health::group_reason;
use crate::{ComponentKind, Group, Groups, Status, Verdict};

/// The media type of [`HealthReport::to_json`].
pub const HEALTH_JSON: &str = "application/health+json";

/// One component as the latest evaluation left it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ComponentReport {
    /// Its id.
    pub id: String,
    /// What it is.
    pub kind: ComponentKind,
    /// Whether its failure fails its groups.
    pub critical: bool,
    /// Its groups.
    pub groups: Groups,
    /// Its reported verdict (after hysteresis).
    pub verdict: Verdict,
    /// When its reported status last changed.
    pub since: SystemTime,
    /// A different status seen lately that the hysteresis has not reported yet.
    pub pending: Option<Status>,
}

/// The result of one evaluation: each group's status and each component's.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthReport {
    statuses: [Status; 3],
    components: Vec<ComponentReport>,
    shutting_down: bool,
    started: bool,
    at: SystemTime,
}

impl HealthReport {
    pub(crate) fn empty() -> HealthReport {
        HealthReport {
            statuses: [Status::Fail; 3],
            components: Vec::new(),
            shutting_down: false,
            started: false,
            at: UNIX_EPOCH,
        }
    }

    pub(crate) fn new(
        statuses: [Status; 3],
        components: Vec<ComponentReport>,
        shutting_down: bool,
        started: bool,
        at: SystemTime,
    ) -> HealthReport {
        HealthReport {
            statuses,
            components,
            shutting_down,
            started,
            at,
        }
    }

    /// The status of `group`.
    pub fn status(&self, group: Group) -> Status {
        match group {
            Group::Startup => self.statuses[0],
            Group::Liveness => self.statuses[1],
            Group::Readiness => self.statuses[2],
        }
    }

    /// Every component.
    pub fn components(&self) -> &[ComponentReport] {
        &self.components
    }

    /// The component with `id`.
    pub fn component(&self, id: &str) -> Option<&ComponentReport> {
        self.components.iter().find(|c| c.id == id)
    }

    /// Whether graceful shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Whether every startup component has passed once.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// When the evaluation ran.
    pub fn time(&self) -> SystemTime {
        self.at
    }

    /// Why `group` does not pass ("" when it does).
    pub fn reason(&self, group: Group) -> String {
        if self.status(group) == Status::Pass {
            return String::new();
        }
        group_reason(&self.components, group, self.shutting_down, self.started)
    }

    /// The report of `group` (every component, for `None`) in the
    /// `application/health+json` draft's form: `status`, `output`, and `checks`
    /// keyed `"{id}:{kind}"`, each with `componentId`, `componentType`,
    /// `status`, `time` (when the status last changed, RFC 3339), `output`,
    /// `observedValue` and `observedUnit` where there are.
    pub fn to_json(&self, group: Option<Group>) -> Value {
        let status = match group {
            Some(g) => self.status(g),
            None => self
                .status(Group::Readiness)
                .max(self.status(Group::Liveness)),
        };
        let mut checks = Map::new();
        for c in self
            .components
            .iter()
            .filter(|c| group.is_none_or(|g| c.groups.contains(g)))
        {
            let mut entry = Map::new();
            entry.insert("componentId".into(), json!(c.id));
            entry.insert("componentType".into(), json!(c.kind.as_str()));
            entry.insert("status".into(), json!(c.verdict.status().as_str()));
            entry.insert("time".into(), json!(rfc3339(c.since)));
            entry.insert("critical".into(), json!(c.critical));
            if let Some(output) = c.verdict.output() {
                entry.insert("output".into(), json!(output));
            }
            if let Some(observed) = c.verdict.observed_value() {
                if observed.value.is_finite() {
                    entry.insert("observedValue".into(), json!(observed.value));
                    entry.insert("observedUnit".into(), json!(observed.unit));
                }
            }
            checks.insert(
                format!("{}:{}", c.id, c.kind.as_str()),
                Value::Array(vec![Value::Object(entry)]),
            );
        }
        let mut out = Map::new();
        out.insert("status".into(), json!(status.as_str()));
        let reason = match group {
            Some(g) => self.reason(g),
            None => self.reason(Group::Readiness),
        };
        if !reason.is_empty() {
            out.insert("output".into(), json!(reason));
        }
        out.insert("checks".into(), Value::Object(checks));
        Value::Object(out)
    }

    /// The Kubernetes-style text of `group`: one line per component, `[+]id ok`
    /// or `[-]id failed: reason` (`[~]id warn: reason` for a warning), then the
    /// group's own line.
    pub fn to_text(&self, group: Group) -> String {
        let mut out = String::new();
        for c in self.components.iter().filter(|c| c.groups.contains(group)) {
            let _ = match c.verdict.status() {
                Status::Pass => writeln!(out, "[+]{} ok", c.id),
                Status::Warn => writeln!(
                    out,
                    "[~]{} warn: {}",
                    c.id,
                    c.verdict.output().unwrap_or("")
                ),
                Status::Fail => writeln!(
                    out,
                    "[-]{} failed: {}",
                    c.id,
                    c.verdict.output().unwrap_or("")
                ),
            };
        }
        if group == Group::Readiness && self.shutting_down {
            out.push_str("[-]shutdown failed: shutting down\n");
        }
        let _ = match self.status(group) {
            Status::Fail => writeln!(out, "{group} check failed"),
            _ => writeln!(out, "{group} check passed"),
        };
        out
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn record_metrics(&self) {
        for group in Group::ALL {
            metrics::gauge!("palisade_health_status", "group" => group.as_str())
                .set(self.status(group).as_gauge());
        }
        for c in &self.components {
            metrics::gauge!("palisade_health_component_status", "component" => c.id.clone())
                .set(c.verdict.status().as_gauge());
        }
    }
}

/// `t` as RFC 3339 in UTC, to the second.
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_647_567);
        assert_eq!(rfc3339(t), "2026-12-07T12:46:07Z");
    }
}
