//! The two reconcilers: they load what they need from caches, ask the decision
//! engine, carry out its verdict, and record what happened.

mod analysis;
mod backoff;
mod clock;
mod context;
mod error;
mod gate;
pub mod index;
mod pause;
pub mod retention;
mod triggers;
mod watch_errors;

pub use backoff::Backoff;
pub use clock::Clock;
pub use context::{Context, DEFAULT_CONCURRENCY, Settings};
pub use error::Error;
pub use gate::{gate_reconcile, gates_for_pause};
pub use index::{GateIndex, GateRef};
pub use pause::pause_reconcile;
use triggers::SpecChanges;
use watch_errors::WatchErrors;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};

use crate::api::{DeploymentGate, ReleasePause};
use crate::cluster::{api_limit, events};
use crate::config::OperatorConfig;
use crate::github::GitHub;
use crate::telemetry::Metrics;

/// Which objects this operator instance reconciles (its shard).
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Only these namespaces; empty: all namespaces.
    pub namespaces: Vec<String>,
    /// Only objects with these labels (a label selector); `None`: all.
    pub label_selector: Option<String>,
}

impl Scope {
    /// The shards to run: each namespace of the scope, plus the operator's
    /// own (its pauses hold every team's gates, so they are reconciled, and
    /// intake writes there by default); `[None]`, the whole cluster, when the
    /// scope names no namespace.
    pub fn partitions(&self, operator_namespace: &str) -> Vec<Option<String>> {
        if self.namespaces.is_empty() {
            return vec![None];
        }
        let mut namespaces = self.namespaces.clone();
        if !namespaces.iter().any(|n| n == operator_namespace) {
            namespaces.push(operator_namespace.to_string());
        }
        let mut seen = std::collections::HashSet::new();
        namespaces.retain(|n| seen.insert(n.clone()));
        namespaces.into_iter().map(Some).collect()
    }
}

/// What the controllers share with the rest of the process.
#[derive(Clone, Default)]
pub struct Wiring {
    /// Where gates are, for intake (fed from the controllers' gate watches).
    pub gate_index: GateIndex,
    /// The clock of the reconcilers and of retention.
    pub clock: Clock,
}

/// The namespace whose ReleasePauses are cluster-wide, for `config` and `settings`.
pub fn operator_namespace<'a>(config: &'a OperatorConfig, settings: &'a Settings) -> &'a str {
    settings
        .operator_namespace
        .as_deref()
        .unwrap_or(&config.defaults.namespace)
}

/// Everything `run` needs.
pub struct Runtime {
    pub client: Client,
    pub github: GitHub,
    pub config: Arc<OperatorConfig>,
    pub settings: Settings,
    pub metrics: Metrics,
    pub scope: Scope,
}

type ShutdownSignal =
    futures::future::Shared<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>;

/// How long the controllers may finish what they are doing after the stop
/// signal. kube-runtime's graceful shutdown waits for caches that never sync
/// (CRDs missing, API server gone), so after this the shard stops regardless.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long Events still queued at the stop are written.
const EVENTS_DRAIN: Duration = Duration::from_secs(2);

/// The readiness of the controllers: true once both caches have synced.
pub type Ready = tokio::sync::watch::Receiver<bool>;

/// Runs both controllers until `shutdown` resolves. Each namespace of the scope
/// gets its own pair of watches; without namespaces, the whole cluster.
pub async fn run(
    rt: Runtime,
    ready: tokio::sync::watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    run_wired(rt, Wiring::default(), ready, shutdown).await
}

/// [`run`], sharing the gate index and the clock with the rest of the process.
pub async fn run_wired(
    rt: Runtime,
    wiring: Wiring,
    ready: tokio::sync::watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    // This instance leads from here until the controllers stop (or this
    // future is dropped): `tollgate_leader` says so.
    let _leading = rt.metrics.leading();
    let shutdown: ShutdownSignal = futures::future::FutureExt::shared(
        Box::pin(shutdown) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
    );
    let namespaces = rt
        .scope
        .partitions(operator_namespace(&rt.config, &rt.settings));
    wiring.gate_index.expect(&namespaces);
    // A JoinSet aborts its tasks when dropped: aborting `run` (a crash, a lost
    // lease) stops every shard, never leaving a headless controller behind.
    let mut tasks = tokio::task::JoinSet::new();
    let mut readies = Vec::new();
    let counted = |client| api_limit::Counted {
        requests: rt.metrics.kube_requests.clone(),
        client,
    };
    let client = api_limit::limited(
        rt.client.clone(),
        api_limit::DEFAULT_MAX_IN_FLIGHT,
        counted("work"),
    );
    // Retention's deletes and the Events have caps of their own: they never
    // take a place gate work needs, and when the API server is slow they fall
    // behind (Events are then dropped), never the decisions.
    let retention_client = api_limit::limited(
        rt.client.clone(),
        retention::MAX_IN_FLIGHT,
        counted("retention"),
    );
    let events_client = api_limit::limited(
        rt.client.clone(),
        api_limit::EVENTS_MAX_IN_FLIGHT,
        counted("events"),
    );
    for ns in namespaces {
        let (tx, rx) = tokio::sync::watch::channel(false);
        readies.push(rx);
        tasks.spawn(run_shard(
            ns,
            client.clone(),
            rt.github.clone(),
            rt.config.clone(),
            rt.settings.clone(),
            rt.metrics.clone(),
            rt.scope.label_selector.clone(),
            Shared {
                wiring: wiring.clone(),
                retention_client: retention_client.clone(),
                events_client: events_client.clone(),
            },
            tx,
            shutdown.clone(),
        ));
    }
    tokio::spawn(async move {
        for mut r in readies {
            let _ = r.wait_for(|v| *v).await;
        }
        let _ = ready.send(true);
    });
    while let Some(t) = tasks.join_next().await {
        if let Err(e) = t {
            tracing::error!(error = %e, "a controller task ended abnormally");
        }
    }
}

/// What every shard shares besides clients and configuration.
struct Shared {
    wiring: Wiring,
    retention_client: Client,
    events_client: Client,
}

pub(crate) fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_shard(
    ns: Option<String>,
    client: Client,
    github: GitHub,
    config: Arc<OperatorConfig>,
    settings: Settings,
    metrics: Metrics,
    labels: Option<String>,
    shared: Shared,
    ready: tokio::sync::watch::Sender<bool>,
    shutdown: ShutdownSignal,
) {
    let index = shared.wiring.gate_index.clone();
    let stop = shutdown.clone();
    let operator_ns = operator_namespace(&config, &settings).to_string();
    let nudge = Arc::new(tokio::sync::Notify::new());
    let shard = ns.clone().unwrap_or_else(|| "*".to_string());
    let mut wc = watcher::Config::default().any_semantic();
    if let Some(l) = &labels {
        wc = wc.labels(l);
    }
    let gate_api: Api<DeploymentGate> = api(&client, &ns);
    let pause_api: Api<ReleasePause> = api(&client, &ns);

    // The reflectors are ours, so readiness is read off the watch streams
    // (InitDone) rather than from Store::wait_until_ready, whose future wakes
    // only one waiter and is already awaited by the controllers themselves.
    let (gates, gate_writer) = reflector::store::<DeploymentGate>();
    let (pauses, pause_writer) = reflector::store::<ReleasePause>();
    let (gates_synced_tx, gates_synced) = tokio::sync::watch::channel(false);
    let (pauses_synced_tx, pauses_synced) = tokio::sync::watch::channel(false);
    // managedFields are never read here and can be the larger part of an
    // object the API server sends: the caches keep the rest.
    // The index and retention look at every event: the index keeps where
    // each gate is, retention wakes when a gate finished.
    let (partition, gate_nudge) = (ns.clone(), nudge.clone());
    let gate_errors = WatchErrors::new(&settings.api_server, "deploymentgates", &shard);
    let pause_errors = WatchErrors::new(&settings.api_server, "releasepauses", &shard);
    let cluster_pause_errors =
        WatchErrors::new(&settings.api_server, "releasepauses", &operator_ns);
    let gate_stream = watcher(gate_api, wc)
        .default_backoff()
        .modify(|g: &mut DeploymentGate| g.metadata.managed_fields = None)
        .reflect(gate_writer)
        .inspect(move |e| {
            if let Err(e) = e {
                gate_errors.report(e);
            }
            if let Ok(event) = e {
                index.observe(&partition, event);
                match event {
                    watcher::Event::InitDone => {
                        let _ = gates_synced_tx.send(true);
                        gate_nudge.notify_one();
                    }
                    watcher::Event::Apply(g) if retention::concerns_gate(g) => {
                        gate_nudge.notify_one();
                    }
                    _ => {}
                }
            }
        })
        .applied_objects();
    // Spec changes of pauses wake the gates in their scope; they are read off
    // this stream after the reflector stored them (see triggers.rs).
    let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel::<ReleasePause>();
    let mut spec_changes = SpecChanges::default();
    let cluster_wake_tx = wake_tx.clone();
    let pause_nudge = nudge.clone();
    let pause_stream = watcher(pause_api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|p: &mut ReleasePause| p.metadata.managed_fields = None)
        .reflect(pause_writer)
        .inspect(move |e| match e {
            Ok(watcher::Event::InitDone) => {
                let _ = pauses_synced_tx.send(true);
            }
            Ok(event) => {
                if let watcher::Event::Apply(p) = event
                    && retention::automatic(p)
                {
                    pause_nudge.notify_one();
                }
                if let Some(p) = spec_changes.changed(event) {
                    // The receiver lives as long as the gate controller.
                    let _ = wake_tx.send(p);
                }
            }
            Err(e) => pause_errors.report(e),
        })
        .applied_objects();
    // A shard of another namespace still sees the operator namespace's pauses,
    // which hold every team's gates (read-only here: the shard that owns that
    // namespace reconciles them).
    let (cluster_pauses, cluster_stream) = match &ns {
        Some(n) if *n != operator_ns => {
            let (store, writer) = reflector::store::<ReleasePause>();
            let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
            let wake_tx = cluster_wake_tx;
            let mut changes = SpecChanges::default();
            let stream = watcher(
                Api::<ReleasePause>::namespaced(client.clone(), &operator_ns),
                watcher::Config::default().any_semantic(),
            )
            .default_backoff()
            .modify(|p: &mut ReleasePause| p.metadata.managed_fields = None)
            .reflect(writer)
            .inspect(move |e| match e {
                Ok(watcher::Event::InitDone) => {
                    let _ = synced_tx.send(true);
                }
                Ok(event) => {
                    if let Some(p) = changes.changed(event) {
                        let _ = wake_tx.send(p);
                    }
                }
                Err(e) => cluster_pause_errors.report(e),
            })
            .for_each(|_| futures::future::ready(()));
            (Some((store, synced_rx)), Some(stream))
        }
        _ => (None, None),
    };
    let wakes = futures::stream::unfold(wake_rx, |mut rx| async move {
        rx.recv().await.map(|p| (Ok::<_, watcher::Error>(p), rx))
    });

    let (events, publisher) = events::Events::queued(
        shared.events_client.clone(),
        settings.instance.clone(),
        metrics.events_dropped.clone(),
    );
    // Gates are decided only once every pause they may be held by is cached.
    let pauses_synced = match &cluster_pauses {
        Some((_, cluster_synced)) => both_synced(pauses_synced, cluster_synced.clone()),
        None => pauses_synced,
    };
    let mut ctx = Context::new(
        client,
        github,
        config,
        settings,
        metrics,
        gates.clone(),
        pauses.clone(),
        pauses_synced.clone(),
        events,
    );
    ctx.cluster_pauses = cluster_pauses.map(|(store, _)| store);
    ctx.shard = shard.clone();
    ctx.clock = shared.wiring.clock.clone();
    let ctx = Arc::new(ctx);
    {
        let (mut g, mut p) = (gates_synced, pauses_synced);
        tokio::spawn(async move {
            if g.wait_for(|v| *v).await.is_ok() && p.wait_for(|v| *v).await.is_ok() {
                tracing::info!("caches synced; reconciling");
                let _ = ready.send(true);
            }
        });
    }

    let mapper_gates = gates.clone();
    let concurrency = ctx.settings.concurrency.max(1);
    let gate_run = Controller::for_stream(gate_stream, gates)
        .with_config(controller::Config::default().concurrency(concurrency))
        .watches_stream(wakes, {
            let ctx = ctx.clone();
            move |pause| {
                gates_for_pause(
                    &mapper_gates,
                    &pause,
                    &ctx.tenancy,
                    ctx.operator_namespace(),
                )
            }
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(gate_reconcile, gate_error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let pause_run = Controller::for_stream(pause_stream, pauses)
        .with_config(controller::Config::default().debounce(Duration::from_millis(500)))
        .graceful_shutdown_on(shutdown.clone())
        .run(pause_reconcile, pause_error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));

    // The gauges and the Event publisher run in this task, so they stop with it
    // (also when it is aborted).
    let mut publishing = std::pin::pin!(publisher.run());
    let cluster_watch = async move {
        match cluster_stream {
            Some(stream) => stream.await,
            None => futures::future::pending().await,
        }
    };
    let retention = retention::run(ctx.clone(), shared.retention_client, nudge, shard);
    let overdue = async move {
        stop.await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "the controllers did not stop within the grace period; stopping them now");
    };
    tokio::select! {
        _ = overdue => {}
        _ = futures::future::join(gate_run, pause_run) => {}
        _ = cluster_watch => {}
        _ = gauges_loop(ctx.clone()) => {}
        _ = retention => {}
        _ = &mut publishing => {}
    }
    // A graceful stop: Events already queued are still written, briefly.
    drop(ctx);
    let _ = tokio::time::timeout(EVENTS_DRAIN, publishing).await;
}

/// Keeps the by-phase and by-state gauges in step with the caches, and
/// forgets the memory of gates that are gone.
async fn gauges_loop(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        ctx.update_gauges();
        let live: std::collections::HashSet<String> = ctx
            .gates
            .state()
            .iter()
            .filter_map(|g| g.metadata.uid.clone())
            .collect();
        ctx.retain_live(&live);
    }
}

/// A receiver that turns true once both do.
fn both_synced(
    mut a: tokio::sync::watch::Receiver<bool>,
    mut b: tokio::sync::watch::Receiver<bool>,
) -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if a.wait_for(|v| *v).await.is_ok() && b.wait_for(|v| *v).await.is_ok() {
            let _ = tx.send(true);
        }
    });
    rx
}

fn gate_error_policy(gate: Arc<DeploymentGate>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.error_action(
        &*gate,
        err,
        "gate",
        gate.status.as_ref().and_then(|s| s.deadline),
    )
}

fn pause_error_policy(pause: Arc<ReleasePause>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.error_action(&*pause, err, "pause", None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespaced_scope_watches_the_operators_namespace_too_and_each_once() {
        assert_eq!(Scope::default().partitions("tollgate"), vec![None]);
        let scope = Scope {
            namespaces: vec!["team-a".into(), "team-b".into(), "team-a".into()],
            label_selector: None,
        };
        assert_eq!(
            scope.partitions("tollgate"),
            vec![
                Some("team-a".to_string()),
                Some("team-b".to_string()),
                Some("tollgate".to_string())
            ]
        );
        assert_eq!(
            scope.partitions("team-b"),
            vec![Some("team-a".to_string()), Some("team-b".to_string())]
        );
    }
}
