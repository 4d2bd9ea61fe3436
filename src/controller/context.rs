//! What every reconcile shares: clients, caches, configuration, telemetry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};

use super::backoff::Backoff;
use super::error::Error;
use crate::api::{Decision, DeploymentGate, DeploymentGateStatus, Phase, ReleasePause, Reports};
use crate::cluster::status::key_of;
use crate::config::OperatorConfig;
use crate::github::GitHub;
use crate::policy::{CheckResults, Tenancy};
use crate::telemetry::{Metrics, Throttle, labels};

/// Gate reconciles that run at once unless configured otherwise.
pub const DEFAULT_CONCURRENCY: u16 = 512;

/// Operator-wide switches from the command line, and the clients the
/// configuration names (built once at start-up).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The global kill switch: every gate is evaluated and recorded, GitHub is told approve.
    pub dry_run: bool,
    /// Name of this instance in Events (the pod name in a cluster).
    pub instance: Option<String>,
    /// Gate reconciles that run at once; the rest wait their turn in the queue.
    /// No reconcile waits for GitHub's pacing (it comes back when its slot is
    /// due), so this bounds memory without delaying deadlines.
    pub concurrency: u16,
    /// The operator's own namespace: ReleasePauses there are cluster-wide.
    /// `None`: the configuration's `defaults.namespace`.
    pub operator_namespace: Option<String>,
    /// The API server, as log lines name it: its URL and kubeconfig context.
    pub api_server: String,
    /// The Prometheus server metric analyses read (`prometheus` in the
    /// configuration); `None`: analyses cannot be read and hold their gates.
    pub prometheus: Option<crate::prometheus::Prometheus>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dry_run: false,
            instance: None,
            concurrency: DEFAULT_CONCURRENCY,
            operator_namespace: None,
            api_server: "the Kubernetes API server".into(),
            prometheus: None,
        }
    }
}

/// What the last reads of a gate's workflow run said.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    /// When the run was last read.
    pub checked: Option<Instant>,
    /// The run's head commit, once read.
    pub head_sha: Option<String>,
    /// When GitHub first said the run does not exist (404), if it has said so
    /// since the last good read: one 404 is not proof, a run is gone only when
    /// it keeps saying so.
    pub gone_since: Option<Timestamp>,
}

/// Shared state of the controllers.
pub struct Context {
    pub client: Client,
    pub github: GitHub,
    pub config: Arc<OperatorConfig>,
    /// The tenancy in force (explicit rules, or what intake writes).
    pub tenancy: Tenancy,
    pub settings: Settings,
    pub metrics: Metrics,
    pub gates: Store<DeploymentGate>,
    pub pauses: Store<ReleasePause>,
    /// The operator namespace's pauses, for a shard of another namespace.
    pub cluster_pauses: Option<Store<ReleasePause>>,
    /// This shard's namespace (`*`: the whole cluster), the `shard` label of
    /// the gauges it sets, so shards never overwrite each other's counts.
    pub shard: String,
    /// True once the pause cache holds every pause: no gate is decided before.
    pub pauses_synced: tokio::sync::watch::Receiver<bool>,
    pub events: crate::cluster::events::Events,
    pub backoff: Backoff,
    /// The one clock of the reconcilers (a hand-driven one in tests).
    pub clock: super::Clock,
    // Per-object memory below is keyed by UID, never by name: a gate deleted
    // and recreated under the same name is another gate and inherits nothing.
    /// Our writes per object since the cache last showed the newest of them:
    /// a cached copy at one of the earlier versions is known to be older than
    /// ours, so ours is used (no read); a copy at a version we did not write
    /// is re-read before anything is sent to GitHub. Ends when the cache
    /// catches up, or with the object.
    written: Mutex<HashMap<String, Written>>,
    /// The last status this process wrote for each decided gate: a foreign
    /// writer that overwrites it without a resourceVersion (which the API
    /// server cannot refuse) is repaired from here.
    decided: Mutex<HashMap<String, Decided>>,
    /// Check results per (repository, sha), shared by gates of the same commit.
    checks: Mutex<HashMap<(String, String), (Instant, CheckResults)>>,
    /// What each undecided gate's workflow run said when last read.
    run_facts: Mutex<HashMap<String, RunFacts>>,
    /// Status reports posted when their pacing turn came, not yet in the
    /// gate's status: the next status write records them, so a report costs no
    /// write of its own. Lost on a restart, which at worst posts one again.
    unrecorded_reports: Mutex<HashMap<String, Reports>>,
    /// One throttle per (controller, error kind): when the API server is down
    /// every gate fails at once, and one line per kind every few seconds says
    /// as much as thousands would. Keys are a fixed, small set.
    failure_logs: Mutex<HashMap<(&'static str, &'static str), Throttle>>,
    /// The label sets of this shard's `tollgate_gate_deadline_timestamp_seconds`
    /// series: each tick removes those whose gate is no longer undecided, so
    /// the series follow the waiting gates. Each shard keeps its own, so one
    /// never removes another's.
    deadline_series: Mutex<std::collections::HashSet<Vec<(&'static str, String)>>>,
}

/// At most one "reconcile failed" line per controller and error kind this often.
const FAILURE_LOG_PERIOD: Duration = Duration::from_secs(10);

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        github: GitHub,
        config: Arc<OperatorConfig>,
        settings: Settings,
        metrics: Metrics,
        gates: Store<DeploymentGate>,
        pauses: Store<ReleasePause>,
        pauses_synced: tokio::sync::watch::Receiver<bool>,
        events: crate::cluster::events::Events,
    ) -> Self {
        Context {
            events,
            client,
            github,
            tenancy: config.tenancy(),
            config,
            settings,
            metrics,
            gates,
            pauses,
            cluster_pauses: None,
            shard: "*".into(),
            pauses_synced,
            backoff: Backoff::default(),
            clock: super::Clock::system(),
            written: Mutex::default(),
            decided: Mutex::default(),
            checks: Mutex::default(),
            run_facts: Mutex::default(),
            unrecorded_reports: Mutex::default(),
            failure_logs: Mutex::default(),
            deadline_series: Mutex::default(),
        }
    }

    /// The current time. The only clock read of the reconcilers.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The namespace whose ReleasePauses are cluster-wide.
    pub fn operator_namespace(&self) -> &str {
        self.settings
            .operator_namespace
            .as_deref()
            .unwrap_or(&self.config.defaults.namespace)
    }

    /// Remembers the object we just wrote, as the API server returned it.
    pub fn wrote<K: Resource + Clone + Send + Sync + 'static>(&self, obj: &K) {
        let Some(rv) = obj.meta().resource_version.clone() else {
            return;
        };
        let mut written = lock(&self.written);
        let entry = written.entry(uid_of(obj)).or_insert_with(|| Written {
            rv: String::new(),
            earlier: Vec::new(),
            obj: Arc::new(()),
        });
        let before = std::mem::replace(&mut entry.rv, rv);
        if !before.is_empty() && entry.earlier.len() < MAX_EARLIER_WRITES {
            entry.earlier.push(before);
        }
        entry.obj = Arc::new(obj.clone());
    }

    /// Forgets an object that is gone.
    pub fn forget<K: Resource>(&self, obj: &K) {
        let key = uid_of(obj);
        lock(&self.written).remove(&key);
        lock(&self.decided).remove(&key);
        lock(&self.run_facts).remove(&key);
        lock(&self.unrecorded_reports).remove(&key);
    }

    /// Forgets every object whose UID is not in `live` (deleted without a
    /// reconcile seeing it go), so memory follows the objects that exist.
    pub fn retain_live(&self, live: &std::collections::HashSet<String>) {
        lock(&self.written).retain(|k, _| live.contains(k));
        lock(&self.decided).retain(|k, _| live.contains(k));
        lock(&self.run_facts).retain(|k, _| live.contains(k));
        lock(&self.unrecorded_reports).retain(|k, _| live.contains(k));
    }

    /// Forgets what is kept only while a gate has work (its run's facts, its
    /// unrecorded reports): the gate is finished.
    pub fn finished(&self, gate: &DeploymentGate) {
        let key = uid_of(gate);
        lock(&self.run_facts).remove(&key);
    }

    /// The reports of `gate`: its status's, or newer ones posted since.
    pub fn reports(&self, gate: &DeploymentGate) -> Reports {
        let recorded = gate
            .status
            .as_ref()
            .and_then(|s| s.reports.clone())
            .unwrap_or_default();
        match lock(&self.unrecorded_reports).get(&uid_of(gate)) {
            Some(r) if r.count > recorded.count => r.clone(),
            _ => recorded,
        }
    }

    /// A report was posted and the status is not written now: keep it for the next write.
    pub fn report_unrecorded(&self, gate: &DeploymentGate, reports: Reports) {
        lock(&self.unrecorded_reports).insert(uid_of(gate), reports);
    }

    /// Adds the reports posted since the last write to a status about to be written.
    pub fn with_unrecorded_reports(
        &self,
        gate: &DeploymentGate,
        status: &mut DeploymentGateStatus,
    ) {
        if let Some(r) = lock(&self.unrecorded_reports).get(&uid_of(gate))
            && status.reports.as_ref().is_none_or(|w| w.count < r.count)
        {
            status.reports = Some(r.clone());
        }
    }

    /// The reports in a written status are recorded now.
    pub fn reports_recorded(&self, gate: &DeploymentGate) {
        let written = gate.status.as_ref().and_then(|s| s.reports.as_ref());
        let mut unrecorded = lock(&self.unrecorded_reports);
        if let Some(r) = unrecorded.get(&uid_of(gate))
            && written.is_some_and(|w| w.count >= r.count)
        {
            unrecorded.remove(&uid_of(gate));
        }
    }

    /// Remembers the status just written for a gate, if it carries a decision.
    pub fn remember_decided(&self, gate: &DeploymentGate) {
        if let Some(status) = gate.status.as_ref()
            && let Some(decided) = Decided::of(status)
        {
            lock(&self.decided).insert(uid_of(gate), decided);
        }
    }

    /// The status this process last wrote for `gate`, when `gate` no longer
    /// shows its decision and phase: someone else overwrote them.
    pub fn overwritten_decision(&self, gate: &DeploymentGate) -> Option<DeploymentGateStatus> {
        let decided = lock(&self.decided);
        let ours = decided.get(&uid_of(gate))?;
        let intact = gate.status.as_ref().is_some_and(|s| ours.shown_by(s));
        if intact {
            return None;
        }
        match serde_json::from_slice(&ours.status) {
            Ok(status) => Some(status),
            Err(e) => {
                tracing::error!(gate = %key_of(gate), error = %e, "cannot read back the status this process wrote; not restoring it");
                None
            }
        }
    }

    /// How `cached` stands against our own writes of it.
    pub fn freshness<K: Resource + Clone + Send + Sync + 'static>(
        &self,
        cached: &K,
    ) -> Freshness<K> {
        let key = uid_of(cached);
        let mut written = lock(&self.written);
        let Some(ours) = written.get(&key) else {
            return Freshness::Cached;
        };
        match cached.meta().resource_version.as_ref() {
            Some(rv) if *rv == ours.rv => {
                written.remove(&key);
                Freshness::Cached
            }
            Some(rv) if ours.earlier.contains(rv) => match ours.obj.downcast_ref::<K>() {
                Some(obj) => Freshness::Ours(obj.clone()),
                None => Freshness::Unknown,
            },
            _ => Freshness::Unknown,
        }
    }

    /// Cached check results younger than the poll interval.
    pub fn cached_checks(
        &self,
        repository: &str,
        sha: &str,
        max_age: Duration,
    ) -> Option<CheckResults> {
        let checks = lock(&self.checks);
        checks
            .get(&(repository.to_string(), sha.to_string()))
            .filter(|(at, _)| at.elapsed() < max_age)
            .map(|(_, r)| r.clone())
    }

    /// Caches check results for a commit.
    pub fn cache_checks(&self, repository: &str, sha: &str, results: CheckResults) {
        let mut checks = lock(&self.checks);
        if checks.len() > 10_000 {
            checks.retain(|_, (at, _)| at.elapsed() < Duration::from_secs(600));
        }
        checks.insert(
            (repository.to_string(), sha.to_string()),
            (Instant::now(), results),
        );
    }

    /// True when the gate's run is due to be read (orphan check, head commit);
    /// marks it read.
    pub fn run_check_due(&self, gate: &DeploymentGate, every: Duration) -> bool {
        let mut facts = lock(&self.run_facts);
        let f = facts.entry(uid_of(gate)).or_default();
        match f.checked {
            Some(at) if at.elapsed() < every => false,
            _ => {
                f.checked = Some(Instant::now());
                true
            }
        }
    }

    /// What the last reads of the gate's run said.
    pub fn run_facts(&self, gate: &DeploymentGate) -> RunFacts {
        lock(&self.run_facts)
            .get(&uid_of(gate))
            .cloned()
            .unwrap_or_default()
    }

    /// Records what a read of the gate's run said.
    pub fn record_run(&self, gate: &DeploymentGate, update: impl FnOnce(&mut RunFacts)) {
        let mut facts = lock(&self.run_facts);
        let f = facts.entry(uid_of(gate)).or_default();
        f.checked = Some(Instant::now());
        update(f);
    }

    /// The requeue after a failed reconcile: per-object exponential backoff
    /// with jitter from 1–2 s to five minutes; before a gate's deadline no later
    /// than the deadline, and never sooner than a second (see `backoff.rs`).
    pub fn error_action<K: Resource>(
        &self,
        obj: &K,
        err: &Error,
        controller: &'static str,
        deadline: Option<Timestamp>,
    ) -> Action {
        let key = key_of(obj);
        self.metrics
            .reconcile_errors
            .get_or_create(&labels([("controller", controller), ("error", err.kind())]))
            .inc();
        let deadline_in = deadline.map(|d| {
            let left = d.as_millisecond() - self.now().as_millisecond();
            Duration::from_millis(left.max(0) as u64)
        });
        let delay = self.backoff.failed(&key, deadline_in);
        let retry_in_ms = delay.as_millis() as u64;
        if matches!(err, Error::Conflict { .. }) {
            // Someone wrote after us: the next attempt reads rather than
            // trusting our own last write.
            if let Some(ours) = lock(&self.written).get_mut(&uid_of(obj)) {
                ours.earlier.clear();
            }
            tracing::debug!(object = %key, controller, error = %err, retry_in_ms, "reconcile conflicted");
        } else if let Some(left_out) = lock(&self.failure_logs)
            .entry((controller, err.kind()))
            .or_insert_with(|| Throttle::new(FAILURE_LOG_PERIOD))
            .admit()
        {
            // `similar_left_out`: failures of the same kind since the last
            // line (every one is counted in tollgate_reconcile_errors_total
            // and logged at debug).
            tracing::warn!(object = %key, controller, error = %err, retry_in_ms, similar_left_out = left_out, "reconcile failed");
        } else {
            tracing::debug!(object = %key, controller, error = %err, retry_in_ms, "reconcile failed");
        }
        Action::requeue(delay)
    }

    /// Updates the gauges from the caches and the GitHub client.
    pub fn update_gauges(&self) {
        self.metrics
            .github_writes_queued
            .set(self.github.writes_queued() as i64);
        self.metrics
            .status_reports_waiting
            .set(self.github.reports_queued() as i64);
        let dropped = self.github.reports_dropped();
        let counted = self.metrics.status_reports_dropped.get();
        if dropped > counted {
            self.metrics
                .status_reports_dropped
                .inc_by(dropped - counted);
        }
        for (window, left) in self.github.write_budget() {
            self.metrics
                .github_write_budget_remaining
                .get_or_create(&labels([("window", window)]))
                .set(left as i64);
        }
        let pauses = self.github.rate_limit_pauses();
        let counted = self.metrics.rate_limit_waits.get();
        if pauses > counted {
            self.metrics.rate_limit_waits.inc_by(pauses - counted);
        }
        for ((operation, status), n) in self.github.take_requests_sent() {
            self.metrics
                .github_requests
                .get_or_create(&labels([("operation", &operation), ("status", &status)]))
                .inc_by(n);
        }
        let mut phases: HashMap<&'static str, i64> = HashMap::new();
        for g in self.gates.state() {
            let phase = match g.status.as_ref().and_then(|s| s.phase) {
                None | Some(Phase::Pending) => "Pending",
                Some(Phase::Waiting) => "Waiting",
                Some(Phase::Approved) => "Approved",
                Some(Phase::Rejected) => "Rejected",
                Some(Phase::Unknown) => "Unknown",
            };
            *phases.entry(phase).or_default() += 1;
        }
        for p in ["Pending", "Waiting", "Approved", "Rejected", "Unknown"] {
            self.metrics
                .gates_by_phase
                .get_or_create(&labels([("phase", p), ("shard", &self.shard)]))
                .set(phases.get(p).copied().unwrap_or(0));
        }
        self.update_deadline_gauges();
        let mut states: HashMap<String, i64> = HashMap::new();
        for p in self.pauses.state() {
            let s = p
                .status
                .as_ref()
                .and_then(|s| s.state)
                .map(|s| format!("{s:?}"))
                .unwrap_or_else(|| "Unknown".into());
            *states.entry(s).or_default() += 1;
        }
        for s in ["Active", "Resumed", "Inactive"] {
            self.metrics
                .pauses_by_state
                .get_or_create(&labels([("state", s), ("shard", &self.shard)]))
                .set(states.get(s).copied().unwrap_or(0));
        }
    }

    /// One deadline series per undecided gate of this shard's cache (not
    /// forbidden, not being deleted: those are never, or already, answered
    /// by their deadline); the series of gates decided or gone are removed.
    fn update_deadline_gauges(&self) {
        let mut now_waiting = std::collections::HashSet::new();
        for g in self.gates.state() {
            let status = g.status.as_ref();
            let decided = status
                .is_some_and(|s| s.decision.is_some() || s.phase.is_some_and(|p| p.is_terminal()));
            let forbidden = status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == crate::api::CONDITION_FORBIDDEN && c.status == "True")
            });
            let deadline = status.and_then(|s| s.deadline).or(g.spec.deadline);
            let (Some(deadline), false, false, None) = (
                deadline,
                decided,
                forbidden,
                g.metadata.deletion_timestamp.as_ref(),
            ) else {
                continue;
            };
            let namespace = g.namespace().unwrap_or_default();
            let name = g.name_any();
            let key = labels([
                ("namespace", namespace.as_str()),
                ("gate", name.as_str()),
                ("repository", g.spec.repository.as_str()),
                ("environment", g.spec.environment.as_str()),
            ]);
            self.metrics
                .gate_deadline
                .get_or_create(&key)
                .set(deadline.as_second());
            now_waiting.insert(key);
        }
        let mut series = lock(&self.deadline_series);
        for gone in series.difference(&now_waiting) {
            self.metrics.gate_deadline.remove(gone);
        }
        *series = now_waiting;
    }

    /// Name for logs.
    pub fn name_of<K: Resource>(obj: &K) -> String {
        format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
    }
}

/// At most this many earlier versions are remembered per object (a gate
/// writes three or four times in its life); past it, a lagging cache costs a read.
const MAX_EARLIER_WRITES: usize = 8;

/// Our writes of one object the cache has not shown yet.
struct Written {
    /// The version of our latest write.
    rv: String,
    /// Versions we wrote before it.
    earlier: Vec<String>,
    /// The object of our latest write (a gate or a pause).
    obj: Arc<dyn std::any::Any + Send + Sync>,
}

/// How a cached copy stands against our own writes.
pub enum Freshness<K> {
    /// The cache shows our latest write, or we wrote nothing it lacks.
    Cached,
    /// The cache is behind our own writes: this is our latest.
    Ours(K),
    /// The cache shows a version we did not write: read it again.
    Unknown,
}

/// What is kept of a decided gate's last written status: thousands of them
/// stay for the gates' lifetime, so as compact bytes rather than a parsed copy.
struct Decided {
    phase: Option<Phase>,
    /// Compared on every reconcile, to tell whether it was replaced.
    decision: Decision,
    /// The whole status as JSON, read back only to restore it.
    status: Box<[u8]>,
}

impl Decided {
    fn of(status: &DeploymentGateStatus) -> Option<Decided> {
        let decision = status.decision.clone()?;
        let json = serde_json::to_vec(status).ok()?;
        Some(Decided {
            phase: status.phase,
            decision,
            status: json.into_boxed_slice(),
        })
    }

    /// True when `status` still shows the decision and phase this process wrote.
    fn shown_by(&self, status: &DeploymentGateStatus) -> bool {
        status.phase == self.phase && status.decision.as_ref() == Some(&self.decision)
    }
}

/// The key of per-object memory: the UID (names are reused), or the name for
/// an object the API server has not given one yet.
pub fn uid_of<K: Resource>(obj: &K) -> String {
    obj.meta().uid.clone().unwrap_or_else(|| key_of(obj))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
