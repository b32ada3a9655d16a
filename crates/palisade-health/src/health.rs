//! The builder, the running health and its evaluation.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use palisade_clock::{Clock, Timestamp as Instant, TokioClock};
use palisade_context::{CancelGuard, Context};
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::watch;

use crate::observe::{Judge, weigh};
use crate::report::{ComponentReport, HealthReport};
use crate::{ConfigError, Criticality, DependencyRules, Group, Groups, Observe, Status, Verdict};

type ProbeFn = dyn Fn(Context) -> Pin<Box<dyn Future<Output = Verdict> + Send>> + Send + Sync;
type CheckFn = dyn Fn() -> Verdict + Send + Sync;
type ChangeHook = dyn Fn(&Change) + Send + Sync;

/// What kind of thing a component is, as reports name it (`componentType`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ComponentKind {
    /// A dependency judged from its pipeline's counters.
    Dependency,
    /// An active probe, run in the background on its own schedule.
    Probe,
    /// A check of local state, run at each evaluation.
    Check,
    /// The tokio runtime's scheduling lag.
    Runtime,
}

impl ComponentKind {
    /// `dependency`, `probe`, `check` or `runtime`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Dependency => "dependency",
            ComponentKind::Probe => "probe",
            ComponentKind::Check => "check",
            ComponentKind::Runtime => "runtime",
        }
    }
}

/// When an active probe runs and how long it may take.
#[derive(Copy, Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ProbeConfig {
    /// Time between the end of one run and the start of the next. Default 10 s,
    /// Kubernetes' default period: a probe is a real call to the dependency, and
    /// the pipelines' own counters see problems between runs.
    pub interval: Duration,
    /// How long one run may take before it fails as timed out; its context is
    /// cancelled then. Default 1 s.
    pub timeout: Duration,
    /// Each interval is stretched or shrunk at random by up to this fraction, so
    /// that a fleet's probes do not arrive at the dependency together. Default
    /// 0.1.
    pub jitter: f64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            jitter: 0.1,
        }
    }
}

impl ProbeConfig {
    /// A probe run every `interval`, with the default timeout and jitter.
    pub fn every(interval: Duration) -> ProbeConfig {
        ProbeConfig {
            interval,
            ..ProbeConfig::default()
        }
    }

    /// This config with `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> ProbeConfig {
        self.timeout = timeout;
        self
    }

    /// This config with `jitter`.
    pub fn jitter(mut self, jitter: f64) -> ProbeConfig {
        self.jitter = jitter;
        self
    }

    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        if self.interval.is_zero() || self.interval > MAX_INTERVAL {
            return Err(ConfigError::duration(
                format!("probe `{name}`: interval"),
                self.interval,
                "above zero and at most a day",
            ));
        }
        if self.timeout.is_zero() || self.timeout > MAX_INTERVAL {
            return Err(ConfigError::duration(
                format!("probe `{name}`: timeout"),
                self.timeout,
                "above zero and at most a day",
            ));
        }
        if !(self.jitter.is_finite() && (0.0..1.0).contains(&self.jitter)) {
            return Err(ConfigError::shown(
                format!("probe `{name}`: jitter"),
                self.jitter,
                "a fraction in [0, 1)",
            ));
        }
        Ok(())
    }
}

/// The longest probe interval and timeout: a day.
const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// How long a new status must hold before health reports it, so that health
/// does not flap with every lost packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Hysteresis {
    /// Consecutive evaluations a worse status must be seen before it is
    /// reported. Default 2: one bad reading is not an outage.
    pub worse: u32,
    /// Consecutive evaluations a better status must be seen before it is
    /// reported. Default 3: an instance taken out of rotation comes back only
    /// once it has been well for a while (Kubernetes' and Envoy's thresholds are
    /// asymmetric for the same reason).
    pub better: u32,
}

impl Hysteresis {
    /// A worse status reported after `worse` consecutive evaluations, a better
    /// one after `better`.
    pub const fn new(worse: u32, better: u32) -> Hysteresis {
        Hysteresis { worse, better }
    }
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis {
            worse: 2,
            better: 3,
        }
    }
}

/// A reported change: a component's or a group's status moved.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Change {
    /// The component's id, or `None` for a group.
    pub component: Option<String>,
    /// The group, for a group's change.
    pub group: Option<Group>,
    /// The status before.
    pub from: Status,
    /// The status now.
    pub to: Status,
    /// Why, when the new status is not `pass`.
    pub output: Option<String>,
}

enum Source {
    Dependency {
        source: Arc<dyn Observe>,
        judge: Box<Mutex<Judge>>,
    },
    /// Written by its background task; `None` until its first run ends.
    Latest(Arc<Mutex<Option<Verdict>>>),
    Check(Arc<CheckFn>),
}

struct Component {
    id: String,
    kind: ComponentKind,
    critical: bool,
    groups: Groups,
    source: Source,
    state: Mutex<Reported>,
}

#[derive(Clone)]
struct Reported {
    verdict: Verdict,
    since: SystemTime,
    /// A different status seen at the last evaluations, and how many times.
    pending: Option<(Status, u32)>,
    evaluated: bool,
}

struct Task {
    id: String,
    kind: TaskKind,
    slot: Arc<Mutex<Option<Verdict>>>,
}

enum TaskKind {
    Probe {
        config: ProbeConfig,
        run: Arc<ProbeFn>,
    },
    Lag {
        interval: Duration,
        warn: Duration,
        fail: Duration,
    },
}

/// Builds a [`Health`]: its components, their rules, and when it evaluates.
///
/// See the crate docs for the semantics.
pub struct HealthBuilder {
    components: Vec<Component>,
    tasks: Vec<Task>,
    rules: DependencyRules,
    hysteresis: Hysteresis,
    every: Duration,
    hooks: Vec<Arc<ChangeHook>>,
    error: Option<ConfigError>,
}

impl fmt::Debug for HealthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthBuilder")
            .field(
                "components",
                &self.components.iter().map(|c| &c.id).collect::<Vec<_>>(),
            )
            .field("rules", &self.rules)
            .field("hysteresis", &self.hysteresis)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl Default for HealthBuilder {
    fn default() -> Self {
        HealthBuilder::new()
    }
}

impl HealthBuilder {
    /// A builder with no components, the default [`DependencyRules`] and
    /// [`Hysteresis`], evaluating every second.
    pub fn new() -> HealthBuilder {
        HealthBuilder {
            components: Vec::new(),
            tasks: Vec::new(),
            rules: DependencyRules::default(),
            hysteresis: Hysteresis::default(),
            every: Duration::from_secs(1),
            hooks: Vec::new(),
            error: None,
        }
    }

    /// How often every component is evaluated. Default 1 s: evaluation only
    /// reads counters, and the hysteresis counts evaluations.
    pub fn evaluate_every(mut self, every: Duration) -> Self {
        if every.is_zero() {
            self.fail(ConfigError::duration("evaluate_every", every, "above zero"));
        }
        self.every = every;
        self
    }

    /// The rules the dependencies added after this call are judged by.
    pub fn rules(mut self, rules: DependencyRules) -> Self {
        if let Err(e) = rules.validate() {
            self.fail(e);
        }
        self.rules = rules;
        self
    }

    /// The hysteresis of every component.
    pub fn hysteresis(mut self, hysteresis: Hysteresis) -> Self {
        if hysteresis.worse == 0 || hysteresis.better == 0 {
            self.fail(ConfigError::shown(
                "hysteresis",
                format!("worse {}, better {}", hysteresis.worse, hysteresis.better),
                "at least 1 evaluation each",
            ));
        }
        self.hysteresis = hysteresis;
        self
    }

    /// A dependency judged from `source`'s counters (a palisade pipeline), in
    /// readiness. A dependency never belongs to liveness.
    pub fn dependency(
        self,
        id: impl Into<String>,
        criticality: Criticality,
        source: impl Observe,
    ) -> Self {
        self.dependency_in(id, criticality, Groups::READINESS, source)
    }

    /// A dependency in the given groups (readiness, startup or both; asking for
    /// liveness is a configuration error).
    pub fn dependency_in(
        mut self,
        id: impl Into<String>,
        criticality: Criticality,
        groups: Groups,
        source: impl Observe,
    ) -> Self {
        let id = id.into();
        if groups.contains(Group::Liveness) {
            self.fail(ConfigError::new(
                format!("dependency `{id}`: groups"),
                groups,
                "startup and readiness (a dependency's outage must not restart the service)",
            ));
        }
        let judge = Box::new(Mutex::new(Judge::new(self.rules.clone())));
        self.push(
            id,
            ComponentKind::Dependency,
            criticality,
            groups,
            Source::Dependency {
                source: Arc::new(source),
                judge,
            },
        )
    }

    /// An active probe: `probe` runs in the background, first at once and then
    /// every `config.interval` (with jitter), under a context that ends at its
    /// timeout. A probe that panics or outlasts its timeout fails, with the
    /// reason. Until its first run ends, it fails with "not run yet".
    pub fn probe<F, Fut, V>(
        mut self,
        id: impl Into<String>,
        criticality: Criticality,
        groups: Groups,
        config: ProbeConfig,
        probe: F,
    ) -> Self
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = V> + Send + 'static,
        V: Into<Verdict> + 'static,
    {
        let id = id.into();
        if let Err(e) = config.validate(&id) {
            self.fail(e);
        }
        let run: Arc<ProbeFn> = Arc::new(move |ctx| Box::pin(probe(ctx).map(Into::into)));
        let slot = Arc::new(Mutex::new(None));
        self.tasks.push(Task {
            id: id.clone(),
            kind: TaskKind::Probe { config, run },
            slot: slot.clone(),
        });
        self.push(
            id,
            ComponentKind::Probe,
            criticality,
            groups,
            Source::Latest(slot),
        )
    }

    /// A check of local state (disk space, a queue's depth), run at each
    /// evaluation. It must be quick and must not block; a panic fails it with
    /// the panic's message.
    pub fn check<F, V>(
        self,
        id: impl Into<String>,
        criticality: Criticality,
        groups: Groups,
        check: F,
    ) -> Self
    where
        F: Fn() -> V + Send + Sync + 'static,
        V: Into<Verdict>,
    {
        let check: Arc<CheckFn> = Arc::new(move || check().into());
        self.push(
            id.into(),
            ComponentKind::Check,
            criticality,
            groups,
            Source::Check(check),
        )
    }

    /// The tokio runtime's own health: a task sleeps `interval` at a time and
    /// measures how late it wakes. A lag of `warn` warns and of `fail` fails.
    /// It belongs to readiness, not liveness: a runtime lagging under load
    /// should shed traffic, and restarting it would lose what it is doing.
    /// Put it in liveness with [`runtime_lag_in`](Self::runtime_lag_in) if a
    /// stuck runtime is what you want restarted.
    pub fn runtime_lag(self, interval: Duration, warn: Duration, fail: Duration) -> Self {
        self.runtime_lag_in(Groups::READINESS, interval, warn, fail)
    }

    /// [`runtime_lag`](Self::runtime_lag) in the given groups.
    pub fn runtime_lag_in(
        mut self,
        groups: Groups,
        interval: Duration,
        warn: Duration,
        fail: Duration,
    ) -> Self {
        if interval.is_zero() {
            self.fail(ConfigError::duration(
                "runtime_lag: interval",
                interval,
                "above zero",
            ));
        }
        if warn > fail {
            self.fail(ConfigError::duration(
                "runtime_lag: warn",
                warn,
                "at most the fail threshold",
            ));
        }
        let id = "tokio-runtime".to_string();
        let slot = Arc::new(Mutex::new(Some(Verdict::pass())));
        self.tasks.push(Task {
            id: id.clone(),
            kind: TaskKind::Lag {
                interval,
                warn,
                fail,
            },
            slot: slot.clone(),
        });
        self.push(
            id,
            ComponentKind::Runtime,
            Criticality::Critical,
            groups,
            Source::Latest(slot),
        )
    }

    /// Calls `hook` on every reported change, after the tracing event.
    pub fn on_change(mut self, hook: impl Fn(&Change) + Send + Sync + 'static) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    fn fail(&mut self, error: ConfigError) {
        self.error.get_or_insert(error);
    }

    fn push(
        mut self,
        id: String,
        kind: ComponentKind,
        criticality: Criticality,
        groups: Groups,
        source: Source,
    ) -> Self {
        if id.is_empty() || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            self.fail(ConfigError::new(
                "component id",
                &id,
                "a non-empty name without spaces",
            ));
        } else if self.components.iter().any(|c| c.id == id) {
            self.fail(ConfigError::shown(
                "component id",
                &id,
                "a name not already used",
            ));
        }
        if groups.is_empty() {
            self.fail(ConfigError::shown(
                format!("`{id}`: groups"),
                "none",
                "at least one of startup, liveness, readiness",
            ));
        }
        self.components.push(Component {
            id,
            kind,
            critical: criticality == Criticality::Critical,
            groups,
            source,
            state: Mutex::new(Reported {
                verdict: Verdict::pass(),
                since: SystemTime::now(),
                pending: None,
                evaluated: false,
            }),
        });
        self
    }

    /// Starts the probes and the evaluation in the background (on the current
    /// tokio runtime) and returns the handle. Every task ends when the last
    /// handle is dropped, or at [`Health::stop`].
    ///
    /// # Errors
    /// The first configuration error of the builder's calls, or no component
    /// at all.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(self) -> Result<Health, ConfigError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.components.is_empty() {
            return Err(ConfigError::shown(
                "components",
                "none",
                "at least one dependency, probe or check",
            ));
        }
        // The root of health's own tasks: they serve no request, and live as
        // long as a handle does.
        #[allow(clippy::disallowed_methods)]
        let (ctx, guard) = Context::background().with_cancel();
        let inner = Arc::new(Inner {
            components: self.components,
            hysteresis: self.hysteresis,
            hooks: self.hooks,
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            started: std::sync::atomic::AtomicBool::new(false),
            groups: Mutex::new(None),
            evaluating: Mutex::new(()),
            report: watch::channel(Arc::new(HealthReport::empty())).0,
            guard: Mutex::new(Some(guard)),
            ctx: ctx.clone(),
        });
        for task in self.tasks {
            let ctx = ctx.clone();
            match task.kind {
                TaskKind::Probe { config, run } => {
                    let _detached = palisade_context::spawn(
                        &ctx,
                        run_probe(ctx.clone(), task.id, config, run, task.slot),
                    );
                }
                TaskKind::Lag {
                    interval,
                    warn,
                    fail,
                } => {
                    let _detached = palisade_context::spawn(
                        &ctx,
                        run_lag(ctx.clone(), interval, warn, fail, task.slot),
                    );
                }
            }
        }
        inner.evaluate();
        let _detached = palisade_context::spawn(
            &ctx,
            run_evaluation(ctx.clone(), Arc::downgrade(&inner), self.every),
        );
        Ok(Health { inner })
    }
}

struct Inner {
    components: Vec<Component>,
    hysteresis: Hysteresis,
    hooks: Vec<Arc<ChangeHook>>,
    shutting_down: std::sync::atomic::AtomicBool,
    /// Latched once every startup component has passed.
    started: std::sync::atomic::AtomicBool,
    groups: Mutex<Option<[Status; 3]>>,
    evaluating: Mutex<()>,
    report: watch::Sender<Arc<HealthReport>>,
    guard: Mutex<Option<CancelGuard>>,
    ctx: Context,
}

/// A running health: its latest report, a stream of reports, shutdown, and
/// (with features) HTTP and gRPC endpoints. Cheap to clone; the background
/// tasks end when the last clone is dropped.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health")
            .field("report", &*self.report())
            .finish()
    }
}

impl Health {
    /// A builder.
    pub fn builder() -> HealthBuilder {
        HealthBuilder::new()
    }

    /// The report of the latest evaluation.
    pub fn report(&self) -> Arc<HealthReport> {
        self.inner.report.borrow().clone()
    }

    /// The latest status of `group`.
    pub fn status(&self, group: Group) -> Status {
        self.report().status(group)
    }

    /// A receiver of every new report (one per evaluation).
    pub fn watch(&self) -> watch::Receiver<Arc<HealthReport>> {
        self.inner.report.subscribe()
    }

    /// Evaluates every component now, instead of at the next tick, and returns
    /// the report.
    pub fn evaluate(&self) -> Arc<HealthReport> {
        self.inner.evaluate();
        self.report()
    }

    /// Graceful shutdown begins: readiness fails at once ("shutting down"),
    /// without hysteresis, so that the load balancer stops sending traffic while
    /// the service drains what it has. Liveness is unaffected.
    pub fn begin_shutdown(&self) {
        self.inner
            .shutting_down
            .store(true, std::sync::atomic::Ordering::Release);
        self.inner.evaluate();
    }

    /// Whether [`begin_shutdown`](Self::begin_shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner
            .shutting_down
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stops the background probes and evaluation; the last report stays.
    pub fn stop(&self) {
        self.inner.guard.lock().take();
    }

    /// The context the background tasks run under (cancelled at [`stop`](Self::stop)).
    pub fn context(&self) -> &Context {
        &self.inner.ctx
    }
}

impl Inner {
    fn evaluate(&self) {
        // One evaluation at a time: the tick, `evaluate` and `begin_shutdown`
        // publish their reports in the order they read their sources.
        let _one = self.evaluating.lock();
        let now = TokioClock.now();
        let wall = SystemTime::now();
        let mut changes = Vec::new();
        let mut reports = Vec::with_capacity(self.components.len());
        for c in &self.components {
            let (raw, known) = c.raw(now);
            let mut state = c.state.lock();
            let before = state.verdict.status();
            // Whether the reported status moves now. The first known status is
            // reported as it is: there was none before it, so it is no change.
            let mut moved = false;
            if !state.evaluated {
                state.evaluated = known;
                state.verdict = raw;
                state.since = wall;
            } else if raw.status() == before {
                state.pending = None;
                // The same status: its latest reason and value.
                state.verdict = raw;
            } else {
                // Consecutive evaluations on the same side of the reported
                // status (all worse, or all better) count together, so that a
                // status alternating between fail and warn still leaves pass.
                let worse = raw.status() > before;
                let needed = if worse {
                    self.hysteresis.worse
                } else {
                    self.hysteresis.better
                };
                let seen = match state.pending {
                    Some((s, n)) if (s > before) == worse => n + 1,
                    _ => 1,
                };
                if seen >= needed {
                    state.pending = None;
                    state.verdict = raw;
                    state.since = wall;
                    moved = true;
                } else {
                    state.pending = Some((raw.status(), seen));
                }
            }
            if moved {
                changes.push(Change {
                    component: Some(c.id.clone()),
                    group: None,
                    from: before,
                    to: state.verdict.status(),
                    output: state.verdict.output().map(str::to_owned),
                });
            }
            reports.push(ComponentReport {
                id: c.id.clone(),
                kind: c.kind,
                critical: c.critical,
                groups: c.groups,
                verdict: state.verdict.clone(),
                since: state.since,
                pending: state.pending.map(|p| p.0),
            });
        }

        let shutting_down = self
            .shutting_down
            .load(std::sync::atomic::Ordering::Acquire);
        let mut started = self.started.load(std::sync::atomic::Ordering::Acquire);
        let group_status = |group: Group| {
            reports
                .iter()
                .filter(|r| r.groups.contains(group))
                .map(|r| weigh(r.verdict.status(), r.critical))
                .max()
                .unwrap_or(Status::Pass)
        };
        let startup = if started {
            Status::Pass
        } else {
            group_status(Group::Startup)
        };
        if !started && startup == Status::Pass {
            started = true;
            self.started
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let liveness = group_status(Group::Liveness);
        let readiness = if shutting_down {
            Status::Fail
        } else if !started {
            // Not ready before it has started.
            Status::Fail
        } else {
            group_status(Group::Readiness)
        };
        let statuses = [startup, liveness, readiness];
        {
            let mut groups = self.groups.lock();
            if let Some(before) = *groups {
                for (i, group) in Group::ALL.iter().enumerate() {
                    if before[i] != statuses[i] {
                        changes.push(Change {
                            component: None,
                            group: Some(*group),
                            from: before[i],
                            to: statuses[i],
                            output: (statuses[i] != Status::Pass)
                                .then(|| group_reason(&reports, *group, shutting_down, started)),
                        });
                    }
                }
            }
            *groups = Some(statuses);
        }
        let report = HealthReport::new(statuses, reports, shutting_down, started, wall);
        #[cfg(feature = "metrics")]
        report.record_metrics();
        self.report.send_replace(Arc::new(report));
        for change in &changes {
            tell(change);
            for hook in &self.hooks {
                // A hook that panics loses its call, not the evaluation.
                if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| hook(change))) {
                    tracing::error!(
                        target: "palisade::health",
                        panic = %message(&*payload),
                        "an on_change hook panicked"
                    );
                }
            }
        }
    }
}

/// Why `group` does not pass, as one line.
pub(crate) fn group_reason(
    reports: &[ComponentReport],
    group: Group,
    shutting_down: bool,
    started: bool,
) -> String {
    if group == Group::Readiness && shutting_down {
        return "shutting down".to_string();
    }
    if group == Group::Readiness && !started {
        return "not started yet".to_string();
    }
    let mut out = String::new();
    for r in reports.iter().filter(|r| r.groups.contains(group)) {
        if r.verdict.status() != Status::Pass {
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(&r.id);
            out.push_str(": ");
            out.push_str(r.verdict.output().unwrap_or(r.verdict.status().as_str()));
        }
    }
    out
}

fn tell(change: &Change) {
    let what = change
        .component
        .as_deref()
        .or(change.group.map(Group::as_str))
        .unwrap_or("");
    let output = change.output.as_deref().unwrap_or("");
    if change.to == Status::Pass {
        tracing::info!(
            target: "palisade::health",
            component = what,
            from = change.from.as_str(),
            to = change.to.as_str(),
            "health changed"
        );
    } else {
        tracing::warn!(
            target: "palisade::health",
            component = what,
            from = change.from.as_str(),
            to = change.to.as_str(),
            output,
            "health changed"
        );
    }
}

impl Component {
    /// The component's status now, before hysteresis, and whether it is known
    /// (a probe that has not run yet is not).
    fn raw(&self, now: Instant) -> (Verdict, bool) {
        let verdict = match &self.source {
            Source::Dependency { source, judge } => {
                match std::panic::catch_unwind(AssertUnwindSafe(|| source.observe())) {
                    Ok(observation) => judge.lock().judge(now, observation),
                    Err(payload) => {
                        Verdict::fail(format!("observing panicked: {}", message(&*payload)))
                    }
                }
            }
            Source::Latest(slot) => match slot.lock().clone() {
                Some(verdict) => verdict,
                None => return (Verdict::fail("not run yet"), false),
            },
            Source::Check(check) => match std::panic::catch_unwind(AssertUnwindSafe(|| check())) {
                Ok(verdict) => verdict,
                Err(payload) => Verdict::fail(format!("check panicked: {}", message(&*payload))),
            },
        };
        (verdict, true)
    }
}

/// The text of a caught panic, as palisade-classify reads it.
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    palisade_classify::Panicked::from_payload(payload)
        .message()
        .to_owned()
}

async fn run_probe(
    ctx: Context,
    id: String,
    config: ProbeConfig,
    run: Arc<ProbeFn>,
    slot: Arc<Mutex<Option<Verdict>>>,
) {
    loop {
        let (probe_ctx, guard) = ctx.with_timeout(config.timeout);
        let started = TokioClock.now();
        let verdict = {
            let attempt = AssertUnwindSafe(run(probe_ctx)).catch_unwind();
            let mut attempt = std::pin::pin!(attempt);
            tokio::select! {
                biased;
                () = ctx.cancelled() => return,
                done = &mut attempt => match done {
                    Ok(verdict) => verdict,
                    Err(payload) => Verdict::fail(format!("probe panicked: {}", message(&*payload))),
                },
                () = TokioClock.sleep(config.timeout) => {
                    // Its context ends before the probe is dropped, so that what
                    // it started sees why.
                    guard.cancel();
                    Verdict::fail(format!(
                        "probe timed out after {} ms",
                        config.timeout.as_millis()
                    ))
                }
            }
        };
        drop(guard);
        let took = TokioClock.now().saturating_duration_since(started);
        let verdict = if verdict.observed_value().is_none() {
            verdict.observed(took.as_secs_f64() * 1e3, "ms")
        } else {
            verdict
        };
        tracing::trace!(target: "palisade::health", probe = %id, status = verdict.status().as_str(), "probe ran");
        *slot.lock() = Some(verdict);
        let spread = if config.jitter > 0.0 {
            rand::rng().random_range(-config.jitter..=config.jitter)
        } else {
            0.0
        };
        let pause = config.interval.mul_f64(1.0 + spread);
        tokio::select! {
            biased;
            () = ctx.cancelled() => return,
            () = TokioClock.sleep(pause) => {}
        }
    }
}

async fn run_lag(
    ctx: Context,
    interval: Duration,
    warn: Duration,
    fail: Duration,
    slot: Arc<Mutex<Option<Verdict>>>,
) {
    loop {
        let asleep = TokioClock.now();
        tokio::select! {
            biased;
            () = ctx.cancelled() => return,
            () = TokioClock.sleep(interval) => {}
        }
        let lag = TokioClock
            .now()
            .saturating_duration_since(asleep)
            .saturating_sub(interval);
        let ms = lag.as_secs_f64() * 1e3;
        let verdict = if lag >= fail {
            Verdict::fail(format!("the runtime wakes {} ms late", lag.as_millis()))
        } else if lag >= warn {
            Verdict::warn(format!("the runtime wakes {} ms late", lag.as_millis()))
        } else {
            Verdict::pass()
        };
        *slot.lock() = Some(verdict.observed(ms, "ms"));
    }
}

async fn run_evaluation(ctx: Context, inner: Weak<Inner>, every: Duration) {
    let mut next = TokioClock.now();
    loop {
        // A fixed rate; a late tick is not made up for.
        next = next.saturating_add(every).max(TokioClock.now());
        tokio::select! {
            biased;
            () = ctx.cancelled() => return,
            () = TokioClock.sleep_until(next) => {}
        }
        match inner.upgrade() {
            Some(inner) => inner.evaluate(),
            None => return,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.guard.get_mut().take();
    }
}
