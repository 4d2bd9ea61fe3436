//! `tollgate run`: configuration, clients, leader election, the HTTP server
//! and the controllers, wired together once at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{CrdError, Installed, Server, check_crds};
use crate::config::{ConfigError, OperatorConfig};
use crate::controller::{self, Runtime, Scope, Settings, Wiring};
use crate::github::webhook::{self, Intake};
use crate::github::{CredentialError, GitHub, GitHubConfig, GitHubFlags, read_secret};
use crate::telemetry::{self, Limits, LogFormat, Metrics};

/// Flags of `tollgate run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The operator's configuration file (policies, tenancy, defaults).
    #[arg(long, env = "TOLLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the webhook receiver: `POST /webhook` and nothing else, the
    /// one port to expose to GitHub (through an Ingress).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Address of `/metrics`, `/livez` and `/readyz`; keep it inside the cluster.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// Connections the webhook listener keeps open at once. At the cap a new
    /// connection replaces the oldest idle one; it is refused only when every
    /// connection is answering a request.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub webhook_max_connections: u32,
    /// How long a webhook connection may sit idle (before a request, or between keep-alive requests).
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    pub webhook_idle_timeout: Duration,
    /// How long a webhook request's headers may take from its first byte.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub webhook_header_timeout: Duration,
    /// How long a webhook request's body may take after its headers.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub webhook_body_timeout: Duration,
    #[command(flatten)]
    pub github: GitHubFlags,
    /// File holding the webhook secret GitHub signs deliveries with.
    #[arg(long)]
    pub webhook_secret_file: Option<PathBuf>,
    /// Content-creating GitHub requests per minute (GitHub's secondary limit is about 80).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u32).range(1..))]
    pub github_writes_per_minute: u32,
    /// Content-creating GitHub requests per hour (GitHub's secondary limit is about 500).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub github_writes_per_hour: u32,
    /// Timeout of one GitHub request.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub github_timeout: Duration,
    /// Only watch gates and pauses in this namespace (repeatable; the
    /// operator's own namespace is always added). Namespaced RBAC (a Role
    /// per namespace) then suffices. Default: the whole cluster.
    #[arg(long = "namespace")]
    pub namespaces: Vec<String>,
    /// Only reconcile objects matching this label selector (for sharding).
    #[arg(long)]
    pub label_selector: Option<String>,
    /// Elect a leader through a Lease; only the leader reconciles.
    #[arg(long)]
    pub leader_elect: bool,
    /// The operator's own namespace: ReleasePauses there hold every team's
    /// gates (for release managers); elsewhere a pause holds only what its
    /// namespace may gate. Default: the configuration's `defaults.namespace`.
    #[arg(long, env = "POD_NAMESPACE")]
    pub operator_namespace: Option<String>,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "tollgate")]
    pub lease_name: String,
    /// Gate reconciles run at once (at least 1). None waits for GitHub's
    /// pacing, so this bounds memory; raise it when GitHub or the API server is slow.
    #[arg(long, default_value_t = controller::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,
    /// Kill switch: evaluate and record every gate, but tell GitHub approve.
    #[arg(long)]
    pub dry_run: bool,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax). The default leaves out the
    /// Kubernetes client's own line per failed request: Tollgate logs each
    /// failure itself, with the object's name, and summarises repeats.
    #[arg(long, default_value = "info,kube_client::client::builder=off")]
    pub log_filter: String,
    /// This instance's name in Events and the Lease (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::api::parse_duration(s).map_err(|e| e.to_string())
}

/// Why the operator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error(
        "cannot load the Kubernetes client configuration: {0}; set KUBECONFIG, or run in a pod with a service account"
    )]
    KubeConfig(String),
    #[error(
        "cannot build a Kubernetes client: {0}; check KUBECONFIG or the in-cluster service account"
    )]
    Kube(#[source] kube::Error),
    #[error(transparent)]
    Crds(#[from] CrdError),
    #[error("GitHub client: {0}")]
    GitHub(String),
    #[error("Prometheus client (configuration `prometheus`): {0}")]
    Prometheus(#[from] crate::prometheus::PrometheusError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("leader election failed: {0}")]
    Lease(String),
    #[error("lost the leader-election Lease; exiting so a fresh instance can take over")]
    LostLease,
}

/// The GitHub client configuration from the flags and mounted files.
pub fn github_config(args: &RunArgs) -> Result<GitHubConfig, StartError> {
    let auth = args.github.auth()?;
    Ok(GitHubConfig {
        api_base: args.github.github_api_url.clone(),
        auth,
        request_timeout: args.github_timeout,
        writes_per_minute: args.github_writes_per_minute,
        writes_per_hour: args.github_writes_per_hour,
        ..GitHubConfig::default()
    })
}

/// Runs the operator until SIGTERM/SIGINT.
pub async fn run(args: RunArgs) -> Result<(), StartError> {
    telemetry::init_logging(args.log_format, &args.log_filter);
    // From here on a stop signal ends the process within HARD_STOP, whatever
    // start-up or the controllers are doing.
    let shutdown = Shutdown::listen();
    let config = match &args.config {
        Some(path) => OperatorConfig::load(path)?,
        None => OperatorConfig::default(),
    };
    // Intake must never write a gate that tenancy then forbids.
    let operator_namespace = args
        .operator_namespace
        .clone()
        .unwrap_or_else(|| config.defaults.namespace.clone());
    config.check_tenancy(&operator_namespace)?;
    // With --namespace, intake must write only where the operator watches.
    let scope = Scope {
        namespaces: args.namespaces.clone(),
        label_selector: args.label_selector.clone(),
    };
    let partitions = scope.partitions(&operator_namespace);
    let watched: Vec<String> = partitions.iter().flatten().cloned().collect();
    config.check_watched(&watched)?;
    if !watched.is_empty() {
        tracing::info!(namespaces = ?watched, "watching only these namespaces (the operator's own included): namespaced RBAC suffices");
    }
    if config.tenancy.is_empty() {
        tracing::info!(operator_namespace = %operator_namespace, "no tenancy rules configured: each namespace may gate only what intake writes there");
    }
    let config = Arc::new(config);
    // The token and CA files are read now: a wrong path stops the start.
    let prometheus = match &config.prometheus {
        Some(p) => Some(crate::prometheus::Prometheus::new(p)?),
        None => None,
    };
    let metrics = Metrics::new();
    let github_config = github_config(&args)?;
    if github_config.plain_token_on_github_com() {
        tracing::warn!(
            api_url = %github_config.api_base,
            "--github-token-file is used against api.github.com: GitHub accepts reviews of custom deployment protection rules only from the App's own installation token, so every answer will be refused; use --github-app-id-file and --github-private-key-file (the token mode is for GitHub Enterprise Server proxies and tests)"
        );
    }
    let github = GitHub::new(github_config).map_err(|e| StartError::GitHub(e.to_string()))?;
    let webhook_secret = match &args.webhook_secret_file {
        Some(p) => Some(read_secret("the webhook secret", p)?),
        None => None,
    };
    let github_is_app = github.is_app();
    // Probes are answered from the start, so a pod waiting for its API server
    // is not restarted for it, and `/readyz` says what it waits for.
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let (waiting_tx, waiting_rx) =
        tokio::sync::watch::channel("connecting to the Kubernetes API server".to_string());
    let metrics_listener = bind(args.metrics_listen).await?;
    tracing::info!(addr = %args.metrics_listen, "serving /metrics, /livez and /readyz");
    tokio::spawn(telemetry::serve(
        metrics_listener,
        telemetry::routes(ready_rx.clone(), waiting_rx, metrics.clone()),
        "metrics",
        Limits::METRICS,
        metrics.clone(),
    ));
    let (client, server) = connect().await?;
    tracing::info!(server = %server, "Kubernetes API server");
    if !wait_for_crds(&client, &server, &shutdown, &waiting_tx).await? {
        return Ok(());
    }
    let _ = waiting_tx.send(format!(
        "caches not synced yet: listing deploymentgates and releasepauses from {server}"
    ));
    let intake = webhook_secret.map(|secret| {
        Intake::new(
            client.clone(),
            github.clone(),
            config.clone(),
            secret,
            metrics.clone(),
        )
    });
    // Two listeners, so that exposing /webhook exposes nothing else: the
    // webhook one faces the Internet, the metrics one stays in the cluster.
    let webhook_listener = match &intake {
        Some(_) => Some(bind(args.listen).await?),
        None => {
            tracing::warn!(
                "no --webhook-secret-file: the webhook receiver is off; gates come only from kubectl"
            );
            None
        }
    };
    if let (Some(listener), Some(intake)) = (webhook_listener, &intake) {
        let limits = Limits {
            max_connections: args.webhook_max_connections as usize,
            idle_timeout: args.webhook_idle_timeout,
            header_timeout: args.webhook_header_timeout,
            body_timeout: args.webhook_body_timeout,
        };
        tracing::info!(addr = %args.listen, max_connections = limits.max_connections, "serving POST /webhook");
        tokio::spawn(telemetry::serve(
            listener,
            webhook::routes(intake.clone()),
            "webhook",
            limits,
            metrics.clone(),
        ));
    }

    let rt = Runtime {
        client: client.clone(),
        github,
        config,
        settings: Settings {
            dry_run: args.dry_run,
            instance: args.pod_name.clone(),
            concurrency: args.max_concurrent_reconciles,
            operator_namespace: args.operator_namespace.clone(),
            api_server: server.to_string(),
            prometheus,
        },
        metrics,
        scope: scope.clone(),
    };
    // Intake finds gates in the index the controllers keep; one index serves
    // both, so the leader watches its gates once.
    let wiring = Wiring {
        gate_index: intake.as_ref().map(|i| i.gate_index()).unwrap_or_default(),
        ..Wiring::default()
    };
    if args.dry_run {
        tracing::warn!("dry run: every gate is evaluated and recorded, and GitHub is told approve");
    }

    // The sweeper runs only where the controllers run (the leader), so several
    // replicas never ask GitHub to redeliver the same webhook twice.
    let sweep_period = rt.config.intake.sweep_period;
    let has_intake = intake.is_some();
    let start_sweeper = move || {
        intake
            .filter(|_| github_is_app)
            .map(|i| i.spawn_sweeper(sweep_period))
    };
    if !args.leader_elect {
        let sweeper = start_sweeper();
        controller::run_wired(rt, wiring, ready_tx, shutdown.clone().wait()).await;
        if let Some(s) = sweeper {
            s.abort();
        }
        return Ok(());
    }
    let identity = args
        .pod_name
        .clone()
        .unwrap_or_else(|| format!("tollgate-{}", std::process::id()));
    let client_for_index = client.clone();
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client, &args.lease_name)
        .with_namespace(&args.lease_namespace)
        .with_identity(&identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
        .map_err(|e| StartError::Lease(e.to_string()))?;
    // A standby is ready: it serves /webhook (intake needs no caches) and waits
    // for the Lease. Were it not, rollouts and drains of a multi-replica
    // install would wait forever for a standby to become Ready.
    let _ = ready_tx.send(true);
    // A standby runs no controllers but answers webhooks: it keeps the gate
    // index current with watches of its own until it leads.
    let standby_index = has_intake.then(|| {
        tokio::spawn(controller::index::follow(
            client_for_index.clone(),
            partitions.clone(),
            args.label_selector.clone(),
            wiring.gate_index.clone(),
        ))
    });
    let (mut leader, lease_task) = manager.watch().await;
    tracing::info!(lease = %args.lease_name, identity = %identity, "waiting to become the leader");
    while !*leader.borrow_and_update() {
        tokio::select! {
            changed = leader.changed() => if changed.is_err() { return Err(StartError::LostLease) },
            _ = shutdown.clone().wait() => return Ok(()),
        }
    }
    tracing::info!(identity = %identity, "became the leader; starting the controllers");
    if let Some(follower) = standby_index {
        // The controllers' own watches feed the index from here on.
        follower.abort();
    }
    let sweeper = start_sweeper();
    let mut lost = leader.clone();
    let lost_lease = async move {
        let _ = lost.wait_for(|leading| !*leading).await;
    };
    let (lost_tx, mut lost_rx) = tokio::sync::oneshot::channel::<bool>();
    let stop = async move {
        tokio::select! {
            _ = lost_lease => { let _ = lost_tx.send(true); }
            _ = shutdown.clone().wait() => { let _ = lost_tx.send(false); }
        }
    };
    controller::run_wired(rt, wiring, ready_tx, stop).await;
    if let Some(s) = sweeper {
        s.abort();
    }
    drop(leader);
    // Releasing the Lease is one request; a server that is gone must not hold
    // the exit.
    let _ = tokio::time::timeout(LEASE_RELEASE, lease_task).await;
    if matches!(lost_rx.try_recv(), Ok(true)) {
        return Err(StartError::LostLease);
    }
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })
}

/// How long releasing the Lease may take at the stop.
const LEASE_RELEASE: Duration = Duration::from_secs(2);
/// The longest the process lives after the first stop signal: the controllers'
/// grace, the Event drain and the Lease release fit well inside it, and
/// Kubernetes' default termination grace (30 s) is far beyond it.
const HARD_STOP: Duration = Duration::from_secs(9);

/// The process's stop: the first SIGTERM or SIGINT starts a graceful stop and
/// arms a watchdog that exits after [`HARD_STOP`]; a second signal exits at once.
#[derive(Clone)]
struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    fn listen() -> Shutdown {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut signals = Signals::new();
            signals.next().await;
            tracing::info!(
                within = ?HARD_STOP,
                "shutting down (a second signal stops at once)"
            );
            let _ = tx.send(true);
            // A thread of its own, so a stuck runtime cannot hold it.
            std::thread::spawn(|| {
                std::thread::sleep(HARD_STOP);
                eprintln!("tollgate run: not stopped {HARD_STOP:?} after the signal; exiting");
                std::process::exit(1);
            });
            signals.next().await;
            eprintln!("tollgate run: second stop signal; exiting now");
            std::process::exit(130);
        });
        Shutdown(rx)
    }

    /// Resolves once the stop has begun.
    async fn wait(mut self) {
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

/// SIGTERM and SIGINT, each time one arrives.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! { _ = recv(&mut self.term) => {}, _ = recv(&mut self.int) => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The client, and the server named as its user knows it (URL and context).
async fn connect() -> Result<(kube::Client, Server), StartError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| StartError::KubeConfig(crate::cluster::crds::describe(&e)))?;
    let url = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    // Config::infer prefers a readable kubeconfig over the in-cluster account.
    let server = match kube::config::Kubeconfig::read() {
        Ok(kubeconfig) => Server::from_kubeconfig(url, kubeconfig.current_context),
        Err(_) => Server::in_cluster(url),
    };
    let client = kube::Client::try_from(config).map_err(StartError::Kube)?;
    Ok((client, server))
}

/// Waits until the API server answers and serves both CRDs at this binary's
/// version. A server that is down is retried with backoff, each failure one
/// line naming it; missing or stale CRDs end start-up with the command that
/// installs them. `false`: stopped by a signal while waiting.
async fn wait_for_crds(
    client: &kube::Client,
    server: &Server,
    shutdown: &Shutdown,
    waiting: &tokio::sync::watch::Sender<String>,
) -> Result<bool, StartError> {
    let mut delay = Duration::from_secs(1);
    loop {
        match check_crds(client, server).await {
            Ok(Installed::Current) => {
                tracing::info!("both CRDs are installed at this version");
                return Ok(true);
            }
            Ok(Installed::ServedUnverified) => {
                tracing::info!(
                    "both CRDs are served; their version was not checked (no permission to get customresourcedefinitions)"
                );
                return Ok(true);
            }
            Err(e) if e.retryable() => {
                let _ = waiting.send(format!("{e}; retrying in {delay:?}"));
                tracing::warn!(error = %e, retry_in = ?delay, "the Kubernetes API server is not answering; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.clone().wait() => return Ok(false),
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                let _ = waiting.send(e.to_string());
                return Err(e.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn the_webhook_flags_default_to_the_webhook_limits_and_two_ports() {
        let a = Cli::try_parse_from(["tollgate"])
            .expect("defaults parse")
            .run;
        assert_eq!(
            Limits {
                max_connections: a.webhook_max_connections as usize,
                idle_timeout: a.webhook_idle_timeout,
                header_timeout: a.webhook_header_timeout,
                body_timeout: a.webhook_body_timeout,
            },
            Limits::WEBHOOK
        );
        assert_eq!(a.listen, "0.0.0.0:8080".parse().expect("addr"));
        assert_eq!(a.metrics_listen, "0.0.0.0:9090".parse().expect("addr"));
        assert!(Cli::try_parse_from(["tollgate", "--webhook-max-connections", "0"]).is_err());
    }
}
