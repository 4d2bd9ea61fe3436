//! Prometheus metrics (prefix `tollgate_`, units in the names).

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
        3600.0, 14400.0, 86400.0,
    ]
    .into_iter()
}

/// The `outcome` label values of `tollgate_deliveries_total`, one per way a
/// delivery attempt ends (see the gate controller's delivery).
const DELIVERY_OUTCOMES: [&str; 6] = ["delivered", "settled", "gone", "denied", "invalid", "retry"];

/// Every metric Tollgate exports. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Webhooks received, by event and outcome.
    pub webhooks: Family<Labels, Counter>,
    /// Webhooks refused for a bad or missing signature.
    pub signature_failures: Counter,
    /// Gates created from webhooks.
    pub gates_created: Counter,
    /// Gates tenancy refused (each counted once, when it became Forbidden).
    pub gates_forbidden: Counter,
    /// Decisions, by verdict and source.
    pub decisions: Family<Labels, Counter>,
    /// Seconds from gate creation to decision.
    pub decision_latency: Histogram,
    /// Seconds a deadline decision came after the deadline.
    pub deadline_lateness: Histogram,
    /// Delivery attempts, by outcome.
    pub deliveries: Family<Labels, Counter>,
    /// Metric analysis readings, by result (`pass`, `fail`, `inconclusive`, `error`).
    pub analysis_readings: Family<Labels, Counter>,
    /// GitHub requests, by status.
    pub github_requests: Family<Labels, Counter>,
    /// Times a GitHub rate limit paused every write.
    pub rate_limit_waits: Counter,
    /// GitHub writes holding a pacing slot, waiting for it to come.
    pub github_writes_queued: Gauge,
    /// Status reports waiting for a write slot no answer wants.
    pub status_reports_waiting: Gauge,
    /// Status reports given up (an answer came first, or nobody came back).
    pub status_reports_dropped: Counter,
    /// Gates by phase, as seen in the cache.
    pub gates_by_phase: Family<Labels, Gauge>,
    /// Pauses by state, as seen in the cache.
    pub pauses_by_state: Family<Labels, Gauge>,
    /// Reconcile duration by controller.
    pub reconcile_duration: Family<Labels, Histogram>,
    /// Reconcile errors by controller and kind.
    pub reconcile_errors: Family<Labels, Counter>,
    /// Status reports posted to workflow runs.
    pub status_reports: Counter,
    /// Requests GitHub refused as invalid (a 4xx that is no limit, no
    /// credential problem and no settled answer), by operation.
    pub github_invalid_requests: Family<Labels, Counter>,
    /// GitHub writes left in each pacing window (`minute`, `hour`).
    pub github_write_budget_remaining: Family<Labels, Gauge>,
    /// Lost webhook deliveries GitHub was asked to redeliver.
    pub recovered_deliveries: Counter,
    /// Status writes refused by the transition guard.
    pub guard_refusals: Counter,
    /// Approved deployments by outcome.
    pub deployments: Family<Labels, Counter>,
    /// Seconds from approval to a Ready deployment.
    pub approval_to_ready: Histogram,
    /// ReleasePauses created or updated from failed workflow runs.
    pub auto_pauses: Counter,
    /// Signed webhook deliveries answered as duplicates of an earlier one.
    pub duplicate_deliveries: Counter,
    /// Open HTTP connections, by listener.
    pub http_connections: Family<Labels, Gauge>,
    /// HTTP requests being answered, by listener.
    pub http_requests_in_flight: Family<Labels, Gauge>,
    /// HTTP connections refused at the connection cap, by listener.
    pub http_connections_refused: Family<Labels, Counter>,
    /// Idle HTTP connections closed to make room for a new one, by listener.
    pub http_connections_evicted: Family<Labels, Counter>,
    /// HTTP connections cut for a read timeout, by listener and phase
    /// (`idle`, `header`, `body`).
    pub http_connection_timeouts: Family<Labels, Counter>,
    /// Retention's deletes, by kind and outcome (`deleted`, `changed`, `gone`, `error`).
    pub retention_deletions: Family<Labels, Counter>,
    /// The (clock) time of each shard's last retention pass, Unix seconds.
    pub retention_last_pass: Family<Labels, Gauge>,
    /// Kubernetes API requests sent, by client (`work`, `events`,
    /// `retention`), verb and resource.
    pub kube_requests: Family<Labels, Counter>,
    /// Kubernetes Events given up because their queue was full (the status
    /// write already recorded the transition).
    pub events_dropped: Counter,
    /// 1 while this instance runs the controllers (it holds the Lease, or
    /// runs without leader election), 0 on a standby: the sum over a
    /// release's pods is 1 when it has a leader.
    pub leader: Gauge,
    /// The deadline of each undecided gate (Unix seconds), by namespace,
    /// gate, repository and environment: what "about to be answered by its
    /// deadline" alerts on. A series ends when its gate is decided or gone,
    /// so there are as many as gates waiting, never more.
    pub gate_deadline: Family<Labels, Gauge>,
    /// Seconds after its gate's deadline that GitHub confirmed an answer
    /// (0 when the answer came before the deadline).
    pub delivery_lateness: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("tollgate");
        let webhooks = Family::<Labels, Counter>::default();
        r.register(
            "webhooks",
            "Webhooks received, by event and outcome",
            webhooks.clone(),
        );
        let signature_failures = Counter::default();
        r.register(
            "webhook_signature_failures",
            "Webhooks refused for a bad or missing signature",
            signature_failures.clone(),
        );
        let gates_created = Counter::default();
        r.register(
            "gates_created",
            "DeploymentGates created from webhooks",
            gates_created.clone(),
        );
        let gates_forbidden = Counter::default();
        r.register(
            "gates_forbidden",
            "DeploymentGates refused by tenancy: their namespace may not gate their repository",
            gates_forbidden.clone(),
        );
        let decisions = Family::<Labels, Counter>::default();
        r.register(
            "decisions",
            "Decisions, by verdict and source",
            decisions.clone(),
        );
        let decision_latency = Histogram::new(latency_buckets());
        r.register(
            "decision_latency_seconds",
            "Seconds from gate creation to its decision",
            decision_latency.clone(),
        );
        let deadline_lateness =
            Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0]);
        r.register(
            "deadline_lateness_seconds",
            "Seconds a deadline decision was recorded after the deadline",
            deadline_lateness.clone(),
        );
        let deliveries = Family::<Labels, Counter>::default();
        r.register(
            "deliveries",
            "Delivery attempts to GitHub, by outcome",
            deliveries.clone(),
        );
        let analysis_readings = Family::<Labels, Counter>::default();
        r.register(
            "analysis_readings",
            "Metric analysis readings of Prometheus, by result (pass, fail, inconclusive, error)",
            analysis_readings.clone(),
        );
        // Every outcome is exported from the start at 0: Prometheus sees a
        // series' first increment only as a change from an earlier sample, so
        // an alert on `increase(…{outcome="denied"}[10m])` would otherwise miss
        // the first denial of a process's life.
        for outcome in DELIVERY_OUTCOMES {
            let _ = deliveries.get_or_create(&labels([("outcome", outcome)]));
        }
        let github_requests = Family::<Labels, Counter>::default();
        r.register(
            "github_requests",
            "GitHub API requests, by operation and status",
            github_requests.clone(),
        );
        let rate_limit_waits = Counter::default();
        r.register(
            "github_rate_limit_waits",
            "Times a GitHub rate limit paused every write",
            rate_limit_waits.clone(),
        );
        let github_writes_queued = Gauge::default();
        r.register(
            "github_writes_queued",
            "GitHub writes (answers, status reports) holding a pacing slot that has not come yet",
            github_writes_queued.clone(),
        );
        let status_reports_waiting = Gauge::default();
        r.register(
            "status_reports_waiting",
            "Status reports waiting for a GitHub write slot that no answer wants",
            status_reports_waiting.clone(),
        );
        let status_reports_dropped = Counter::default();
        r.register(
            "status_reports_dropped",
            "Status reports given up: the gate's answer came first, or its reconcile never came back",
            status_reports_dropped.clone(),
        );
        let gates_by_phase = Family::<Labels, Gauge>::default();
        r.register(
            "gates",
            "DeploymentGates by phase, per shard (its namespace, or * for the whole cluster)",
            gates_by_phase.clone(),
        );
        let pauses_by_state = Family::<Labels, Gauge>::default();
        r.register(
            "pauses",
            "ReleasePauses by state, per shard (its namespace, or * for the whole cluster)",
            pauses_by_state.clone(),
        );
        let reconcile_duration =
            Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(latency_buckets()));
        r.register(
            "reconcile_duration_seconds",
            "Reconcile duration, by controller",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<Labels, Counter>::default();
        r.register(
            "reconcile_errors",
            "Reconcile errors, by controller and kind",
            reconcile_errors.clone(),
        );
        let status_reports = Counter::default();
        r.register(
            "status_reports",
            "Status reports posted to waiting workflow runs",
            status_reports.clone(),
        );
        let github_invalid_requests = Family::<Labels, Counter>::default();
        r.register(
            "github_invalid_requests",
            "Requests GitHub refused as invalid (recorded on the gate, never retried), by operation",
            github_invalid_requests.clone(),
        );
        let github_write_budget_remaining = Family::<Labels, Gauge>::default();
        r.register(
            "github_write_budget_remaining",
            "GitHub writes left in each pacing window (window: minute or hour)",
            github_write_budget_remaining.clone(),
        );
        let recovered_deliveries = Counter::default();
        r.register(
            "recovered_deliveries",
            "Lost webhook deliveries GitHub was asked to redeliver",
            recovered_deliveries.clone(),
        );
        let guard_refusals = Counter::default();
        r.register(
            "guard_refusals",
            "Status writes refused by the transition guard",
            guard_refusals.clone(),
        );
        let deployments = Family::<Labels, Counter>::default();
        r.register(
            "deployments",
            "Approved deployments, by outcome",
            deployments.clone(),
        );
        let approval_to_ready = Histogram::new(latency_buckets());
        r.register(
            "approval_to_ready_seconds",
            "Seconds from approval to a Ready deployment",
            approval_to_ready.clone(),
        );
        let auto_pauses = Counter::default();
        r.register(
            "auto_pauses",
            "ReleasePauses created or updated from failed workflow runs",
            auto_pauses.clone(),
        );
        let duplicate_deliveries = Counter::default();
        r.register(
            "webhook_duplicate_deliveries",
            "Signed webhook deliveries answered as duplicates of an earlier one (same X-GitHub-Delivery)",
            duplicate_deliveries.clone(),
        );
        let http_connections = Family::<Labels, Gauge>::default();
        r.register(
            "http_connections",
            "Open HTTP connections, by listener",
            http_connections.clone(),
        );
        let http_requests_in_flight = Family::<Labels, Gauge>::default();
        r.register(
            "http_requests_in_flight",
            "HTTP requests being answered (head received, answer not yet given), by listener",
            http_requests_in_flight.clone(),
        );
        let http_connections_refused = Family::<Labels, Counter>::default();
        r.register(
            "http_connections_refused",
            "HTTP connections refused because every connection slot was answering a request, by listener",
            http_connections_refused.clone(),
        );
        let http_connections_evicted = Family::<Labels, Counter>::default();
        r.register(
            "http_connections_evicted",
            "Idle HTTP connections closed at the connection cap to make room for a new one, by listener",
            http_connections_evicted.clone(),
        );
        let http_connection_timeouts = Family::<Labels, Counter>::default();
        r.register(
            "http_connection_timeouts",
            "HTTP connections cut for a read timeout, by listener and phase (idle, header, body)",
            http_connection_timeouts.clone(),
        );
        let retention_deletions = Family::<Labels, Counter>::default();
        r.register(
            "retention_deletions",
            "Deletes of finished DeploymentGates and automatic ReleasePauses by retention, by kind and outcome (deleted; changed: a precondition failed, nothing deleted; gone; error)",
            retention_deletions.clone(),
        );
        let retention_last_pass = Family::<Labels, Gauge>::default();
        r.register(
            "retention_last_pass_timestamp_seconds",
            "When each shard's retention last looked at its cache (Unix seconds); alert when it falls far behind",
            retention_last_pass.clone(),
        );
        let kube_requests = Family::<Labels, Counter>::default();
        r.register(
            "kube_requests",
            "Kubernetes API requests sent, by client (work: gates and pauses; events; retention), verb and resource",
            kube_requests.clone(),
        );
        let events_dropped = Counter::default();
        r.register(
            "events_dropped",
            "Kubernetes Events given up because the API server was too slow to take them (status, logs and metrics still record each transition)",
            events_dropped.clone(),
        );
        let leader = Gauge::default();
        r.register(
            "leader",
            "1 while this instance runs the controllers (holds the leader Lease, or runs without leader election), 0 on a standby",
            leader.clone(),
        );
        let gate_deadline = Family::<Labels, Gauge>::default();
        r.register(
            "gate_deadline_timestamp_seconds",
            "Deadline of each undecided DeploymentGate (Unix seconds), by namespace, gate, repository and environment; the series ends when the gate is decided or deleted",
            gate_deadline.clone(),
        );
        // Bucket 0 counts answers that reached GitHub in time; the rest say
        // how late the others were.
        let delivery_lateness =
            Histogram::new([0.0, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0]);
        r.register(
            "delivery_lateness_seconds",
            "Seconds after its gate's deadline that GitHub confirmed an answer (0: before the deadline)",
            delivery_lateness.clone(),
        );
        Metrics {
            registry: Arc::new(r),
            webhooks,
            signature_failures,
            gates_created,
            gates_forbidden,
            decisions,
            decision_latency,
            deadline_lateness,
            deliveries,
            analysis_readings,
            github_requests,
            rate_limit_waits,
            github_writes_queued,
            status_reports_waiting,
            status_reports_dropped,
            gates_by_phase,
            pauses_by_state,
            reconcile_duration,
            reconcile_errors,
            status_reports,
            github_invalid_requests,
            github_write_budget_remaining,
            recovered_deliveries,
            guard_refusals,
            deployments,
            approval_to_ready,
            auto_pauses,
            duplicate_deliveries,
            http_connections,
            http_requests_in_flight,
            http_connections_refused,
            http_connections_evicted,
            http_connection_timeouts,
            retention_deletions,
            retention_last_pass,
            kube_requests,
            events_dropped,
            leader,
            gate_deadline,
            delivery_lateness,
        }
    }

    /// Marks this instance as running the controllers until the returned
    /// guard is dropped (the controllers stopped, were aborted or lost the
    /// Lease): the `tollgate_leader` gauge can never outlive the leading.
    pub fn leading(&self) -> Leading {
        self.leader.set(1);
        Leading(self.leader.clone())
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// While it lives, `tollgate_leader` is 1 (see [`Metrics::leading`]).
pub struct Leading(Gauge);

impl Drop for Leading {
    fn drop(&mut self) {
        self.0.set(0);
    }
}

/// Builds a label set.
pub fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}
