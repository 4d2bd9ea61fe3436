//! The load benchmark: the real controllers against the in-process fake
//! Kubernetes API and fake GitHub, in one process. Prints one JSON object with
//! every figure and the targets beside them. Timings are reported, never asserted.
//!
//! `cargo bench --bench load -- [--gates N] [--held N] [--deadlines N] [--spread-secs S] [--writes-per-minute N] [--concurrency N] [--operator-process]`
//!
//! `cargo bench --bench load -- --paced N [--paced-held M]` runs only the paced
//! phase instead: N gates decidable at once, then M held gates that want
//! status reports, at GitHub's real pace (default 80 writes a minute). It
//! reports when the first decision, the last answer and the last report went
//! out, against the target of N/80 minutes + 5 %. At N = 10,000 that phase
//! takes over two hours of wall-clock time.
//!
//! With `--operator-process` the operator is the real `tollgate run` binary in
//! a process of its own, against the same fakes over loopback, and its own
//! peak RSS is reported beside the rest.
//!
//! `cargo bench --bench load -- --kubeconfig PATH [--deadlines N] [--spread-secs S]`
//! runs only the deadline phase, against the real API server PATH names (see
//! `load/real_server.rs`).

#[path = "../tests/support/github.rs"]
mod github;
#[path = "../tests/support/kube.rs"]
mod kube_fake;
#[path = "load/real_server.rs"]
mod real_server;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use github::FakeGitHub;
use jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube_fake::FakeKube;
use serde_json::{Value, json};
use tollgate::api::{DeploymentGate, ReleasePause};
use tollgate::config::OperatorConfig;
use tollgate::controller::{self, Runtime, Scope, Settings};
use tollgate::github::{Auth, GitHub, GitHubConfig};
use tollgate::telemetry::Metrics;

const SHA: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";
/// One team owns every namespace of the benchmark.
const BENCH_CONFIG: &str = "tenancy: [{namespace: '*', repositories: ['*']}]\n";
const GATES: &str = "tollgate.dev/v1alpha1/deploymentgates";
/// Each phase gives up after this long (a bound, not a target).
const PHASE_LIMIT: Duration = Duration::from_secs(1200);

struct Opts {
    gates: usize,
    held: usize,
    deadlines: usize,
    spread_secs: u64,
    writes_per_minute: u32,
    concurrency: u16,
    operator_process: bool,
    /// Gates of the paced phase (0: run the load phases instead).
    paced: usize,
    /// Held gates of the paced phase, created after the decidable ones.
    paced_held: Option<usize>,
    /// Whether `--writes-per-minute` was given.
    writes_per_minute_given: bool,
    /// Run the deadline phase against the real API server this kubeconfig names.
    kubeconfig: Option<std::path::PathBuf>,
}

fn opts() -> Opts {
    let mut o = Opts {
        gates: 10_000,
        held: 1_000,
        deadlines: 10_000,
        spread_secs: 60,
        writes_per_minute: 60_000,
        concurrency: tollgate::controller::DEFAULT_CONCURRENCY,
        operator_process: false,
        paced: 0,
        paced_held: None,
        writes_per_minute_given: false,
        kubeconfig: None,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        if args[i] == "--operator-process" {
            o.operator_process = true;
            i += 1;
            continue;
        }
        if args[i] == "--kubeconfig"
            && let Some(path) = args.get(i + 1)
        {
            o.kubeconfig = Some(path.into());
            i += 2;
            continue;
        }
        let v = args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match (args[i].as_str(), v) {
            ("--gates", Some(v)) => o.gates = v as usize,
            ("--held", Some(v)) => o.held = v as usize,
            ("--deadlines", Some(v)) => o.deadlines = v as usize,
            ("--spread-secs", Some(v)) => o.spread_secs = v,
            ("--writes-per-minute", Some(v)) => {
                o.writes_per_minute = v.clamp(1, u32::MAX as u64) as u32;
                o.writes_per_minute_given = true;
            }
            ("--paced", Some(v)) => o.paced = v as usize,
            ("--paced-held", Some(v)) => o.paced_held = Some(v as usize),
            ("--concurrency", Some(v)) => o.concurrency = v.clamp(1, u16::MAX as u64) as u16,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    if o.paced > 0 && !o.writes_per_minute_given {
        // GitHub's documented secondary limit, the operator's default.
        o.writes_per_minute = 80;
    }
    o
}

fn gate(name: &str, run_id: i64, environment: &str, deadline: Option<Timestamp>) -> DeploymentGate {
    let mut spec = json!({"repository": "acme/web", "environment": environment, "sha": SHA, "runId": run_id, "timeout": "2h"});
    if let Some(d) = deadline {
        spec["deadline"] = json!(d.to_string());
        spec.as_object_mut().map(|s| s.remove("timeout"));
    }
    serde_json::from_value(json!({
        "apiVersion": "tollgate.dev/v1alpha1", "kind": "DeploymentGate",
        // Created as the webhook receiver creates them: with the finalizer already set.
        "metadata": {"name": name, "namespace": "load", "finalizers": ["tollgate.dev/answer"]},
        "spec": spec,
    }))
    .expect("gate")
}

fn pause(name: &str, environment: &str) -> ReleasePause {
    serde_json::from_value(json!({
        "apiVersion": "tollgate.dev/v1alpha1", "kind": "ReleasePause",
        "metadata": {"name": name, "namespace": "load"},
        "spec": {"scope": {"repositories": ["acme/*"], "environments": [environment]}, "reason": "ci-failed", "sha": SHA},
    }))
    .expect("pause")
}

fn percentiles(mut v: Vec<f64>) -> Value {
    if v.is_empty() {
        return json!({"p50": null, "p99": null, "max": null, "n": 0});
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    json!({"p50": round(at(0.5)), "p99": round(at(0.99)), "max": round(v[v.len() - 1]), "n": v.len()})
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn decided_at(obj: &Value) -> Option<Timestamp> {
    obj.pointer("/status/decision/decidedAt")
        .and_then(|d| d.as_str())
        .and_then(|d| d.parse().ok())
}

type Written = std::collections::BTreeMap<(String, String), Timestamp>;

/// When the gate's decision write landed at the API server.
fn decision_written(written: &Written, obj: &Value) -> Option<Timestamp> {
    let name = obj.pointer("/metadata/name")?.as_str()?;
    written
        .get(&("load".to_string(), name.to_string()))
        .copied()
}

fn phase_of(obj: &Value) -> Option<&str> {
    obj.pointer("/status/phase").and_then(|p| p.as_str())
}

/// One phase's peaks, MiB.
struct Peaks {
    /// This process: the fakes, the driver and (in-process) the operator.
    rss: f64,
    /// What the operator's threads allocated and still held (in-process only).
    heap: Option<f64>,
    /// The operator process's own RSS (`--operator-process` only).
    operator_rss: Option<f64>,
}

impl Peaks {
    fn json(&self) -> Value {
        json!({"peak_rss_mib": self.rss, "operator_peak_heap_mib": self.heap, "operator_process_peak_rss_mib": self.operator_rss})
    }
}

/// Peaks since the last call, then starts measuring the next phase's.
fn take_peaks(operator_pid: Option<u32>) -> Peaks {
    let rss = peak_rss_mib("self");
    let operator_rss = operator_pid.map(|pid| peak_rss_mib(&pid.to_string()));
    let heap = operator_pid
        .is_none()
        .then(|| round(OPERATOR_PEAK.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)));
    // "5" resets the kernel's peak RSS (VmHWM) to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    if let Some(pid) = operator_pid {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
    OPERATOR_PEAK.store(OPERATOR_LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    Peaks {
        rss,
        heap,
        operator_rss,
    }
}

fn peak_rss_mib(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| round(kb / 1024.0))
        .unwrap_or(-1.0)
}

/// Waits, bounded, until `done` holds over the stored gates of `env`.
async fn until_all(
    kube: &FakeKube,
    env: &str,
    n: usize,
    what: &str,
    done: impl Fn(&Value) -> bool,
) {
    let start = Instant::now();
    let mut told = Instant::now();
    loop {
        // Counted in place: copying 10,000 objects every 100 ms would make the
        // benchmark's own memory the peak.
        let count = kube.count_where(GATES, |g| {
            g.pointer("/spec/environment").and_then(|e| e.as_str()) == Some(env) && done(g)
        });
        if count >= n {
            return;
        }
        if start.elapsed() > PHASE_LIMIT {
            eprintln!("load: gave up waiting for {what}: {count}/{n}");
            return;
        }
        if told.elapsed() > Duration::from_secs(10) {
            eprintln!("load: waiting for {what}: {count}/{n}");
            told = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_all(
    api: &Api<DeploymentGate>,
    gates: Vec<DeploymentGate>,
) -> HashMap<String, Timestamp> {
    futures::stream::iter(gates)
        .map(|g| {
            let api = api.clone();
            async move {
                let name = g.metadata.name.clone().unwrap_or_default();
                let before = Timestamp::now();
                api.create(&PostParams::default(), &g)
                    .await
                    .map(|_| (name, before))
            }
        })
        .buffer_unordered(64)
        .filter_map(|r| async move { r.ok() })
        .collect()
        .await
}

// The process's peak RSS covers the fakes and this driver too. To tell the
// operator's own share, every allocation carries a tag saying whether a thread
// of the operator's runtime made it, and the operator's live bytes are counted
// (a free is charged to whoever allocated, on whatever thread it happens).

thread_local! {
    static OPERATOR_THREAD: Cell<bool> = const { Cell::new(false) };
}
static OPERATOR_LIVE: AtomicUsize = AtomicUsize::new(0);
static OPERATOR_PEAK: AtomicUsize = AtomicUsize::new(0);

struct Attributing;

impl Attributing {
    /// Room in front of each block for the tag, keeping the block's alignment.
    fn header(layout: Layout) -> usize {
        layout.align().max(16)
    }

    fn charge(bytes: usize) {
        let live = OPERATOR_LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
        OPERATOR_PEAK.fetch_max(live, Ordering::Relaxed);
    }
}

// SAFETY: every block is a System block `header` bytes larger, returned at
// offset `header`; the tag byte sits at the block's start.
unsafe impl GlobalAlloc for Attributing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let h = Self::header(layout);
        let Ok(outer) = Layout::from_size_align(layout.size() + h, layout.align().max(16)) else {
            return std::ptr::null_mut();
        };
        let base = unsafe { System.alloc(outer) };
        if base.is_null() {
            return base;
        }
        let operator = OPERATOR_THREAD.with(|t| t.get());
        unsafe { *base = operator as u8 };
        if operator {
            Self::charge(layout.size());
        }
        unsafe { base.add(h) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let h = Self::header(layout);
        let base = unsafe { ptr.sub(h) };
        if unsafe { *base } == 1 {
            OPERATOR_LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        let outer =
            unsafe { Layout::from_size_align_unchecked(layout.size() + h, layout.align().max(16)) };
        unsafe { System.dealloc(base, outer) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let h = Self::header(layout);
        let base = unsafe { ptr.sub(h) };
        let outer =
            unsafe { Layout::from_size_align_unchecked(layout.size() + h, layout.align().max(16)) };
        let new_base = unsafe { System.realloc(base, outer, new_size + h) };
        if new_base.is_null() {
            return new_base;
        }
        if unsafe { *new_base } == 1 {
            if new_size >= layout.size() {
                Self::charge(new_size - layout.size());
            } else {
                OPERATOR_LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        unsafe { new_base.add(h) }
    }
}

#[global_allocator]
static ALLOCATOR: Attributing = Attributing;

fn main() {
    let o = opts();
    if let Some(path) = o.kubeconfig.clone() {
        // Only the deadline phase, against a real API server: the operator is
        // a process of its own, the fake GitHub runs here.
        let driver = runtime("driver", false);
        let report = driver.block_on(async {
            let gh = FakeGitHub::start().await;
            real_server::run(&o, &path, &gh).await
        });
        println!("{report}");
        return;
    }
    // Three runtimes: the fakes, the operator (whose threads are tagged), and
    // this driver. Two worker threads each, as on the 2-core reference machine.
    let fakes_rt = runtime("fakes", false);
    let operator_rt = runtime("operator", true);
    let (kube, gh) = fakes_rt.block_on(async {
        let kube = FakeKube::start().await;
        // The fake keeps a short watch history and counts Events without storing them.
        kube.set_history_limit(2_000);
        kube.discard_events();
        (kube, FakeGitHub::start().await)
    });
    let driver = runtime("driver", false);
    let report = driver.block_on(run(o, kube, gh, operator_rt.handle().clone()));
    println!("{report}");
}

fn runtime(name: &str, operator: bool) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .on_thread_start(move || OPERATOR_THREAD.with(|t| t.set(operator)))
        .enable_all()
        .build()
        .expect("runtime")
}

/// The operator in its own process: the `tollgate run` binary this bench was
/// built with, pointed at the fakes over loopback. Killed when dropped.
struct OperatorProcess {
    child: std::process::Child,
    files: std::path::PathBuf,
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.files);
    }
}

async fn start_operator_process(o: &Opts, kube: &FakeKube, gh: &FakeGitHub) -> OperatorProcess {
    // `tollgate run` starts only where its CRDs are served.
    kube.install_crds();
    let files = std::env::temp_dir().join(format!("tollgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&files).expect("temp dir");
    let kubeconfig = files.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"{}\"}}}}]\nusers: [{{name: fake, user: {{}}}}]\ncontexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\ncurrent-context: fake\n",
            kube.url()
        ),
    )
    .expect("kubeconfig");
    spawn_operator(o, gh, &kubeconfig, files, BENCH_CONFIG, &[])
        .await
        .0
}

/// Starts `tollgate run` against `kubeconfig` and the fake GitHub, with
/// `config` as its configuration file and `extra` arguments; waits until it is
/// ready. Returns it and the port of its metrics listener.
async fn spawn_operator(
    o: &Opts,
    gh: &FakeGitHub,
    kubeconfig: &std::path::Path,
    files: std::path::PathBuf,
    config: &str,
    extra: &[String],
) -> (OperatorProcess, u16) {
    let token = files.join("token");
    std::fs::write(&token, "bench").expect("token file");
    let config_file = files.join("config.yaml");
    std::fs::write(&config_file, config).expect("config file");
    // Free loopback ports for its listeners (the webhook receiver, and the
    // metrics listener that also answers /readyz).
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port()
    };
    let port = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["run", "--metrics-listen", &format!("127.0.0.1:{port}")])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--github-api-url", gh.url()])
        .arg("--github-token-file")
        .arg(&token)
        .arg("--config")
        .arg(&config_file)
        .args([
            "--github-writes-per-minute",
            &o.writes_per_minute.to_string(),
        ])
        // The benchmark paces by the minute only.
        .args([
            "--github-writes-per-hour",
            &o.writes_per_minute.saturating_mul(60).to_string(),
        ])
        .args(["--max-concurrent-reconciles", &o.concurrency.to_string()])
        .args(["--log-format", "json"])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start the tollgate binary");
    let operator = OperatorProcess { child, files };
    let start = Instant::now();
    while !ready(port) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the operator process never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (operator, port)
}

/// True when the operator answers 200 on /readyz.
fn ready(port: u16) -> bool {
    get_local(port, "/readyz").is_some_and(|a| a.starts_with("HTTP/1.1 200"))
}

/// The whole answer (head and body) to `GET path` on a loopback port, read
/// with a short timeout (loopback: blocking is brief).
fn get_local(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    Some(answer)
}

/// The operator on its own runtime in this process (its threads are tagged).
async fn start_operator_in_process(
    o: &Opts,
    kube: &FakeKube,
    gh: &FakeGitHub,
    operator: &tokio::runtime::Handle,
) {
    // Built on the operator's runtime, so the clients' tasks and connections are its own.
    let (github, operator_client) = {
        let _guard = operator.enter();
        let github = GitHub::new(GitHubConfig {
            api_base: gh.url().to_string(),
            auth: Auth::Token("bench".into()),
            request_timeout: Duration::from_secs(5),
            writes_per_minute: o.writes_per_minute,
            writes_per_hour: o.writes_per_minute.saturating_mul(60),
            max_in_flight: 100,
        })
        .expect("github client");
        (github, kube.client())
    };
    let runtime = Runtime {
        client: operator_client,
        github,
        config: Arc::new(OperatorConfig::parse(BENCH_CONFIG).expect("benchmark config")),
        settings: Settings {
            dry_run: false,
            instance: Some("bench".into()),
            concurrency: o.concurrency,
            operator_namespace: None,
            prometheus: None,
            ..Settings::default()
        },
        metrics: Metrics::new(),
        scope: Scope::default(),
    };
    let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
    operator.spawn(controller::run(runtime, ready_tx, std::future::pending()));
    let _ = ready_rx.wait_for(|r| *r).await;
}

async fn run(o: Opts, kube: FakeKube, gh: FakeGitHub, operator: tokio::runtime::Handle) -> Value {
    let process = if o.operator_process {
        Some(start_operator_process(&o, &kube, &gh).await)
    } else {
        start_operator_in_process(&o, &kube, &gh, &operator).await;
        None
    };
    let pid = process.as_ref().map(|p| p.child.id());
    if o.paced > 0 {
        let report = paced(&o, &kube, &gh).await;
        drop(process);
        return report;
    }
    let client = kube.client();
    let gates: Api<DeploymentGate> = Api::namespaced(client.clone(), "load");
    let pauses: Api<ReleasePause> = Api::namespaced(client.clone(), "load");

    let startup = take_peaks(pid);
    // Phase 1: decisions. Gates decidable on arrival.
    let t0 = Instant::now();
    let batch: Vec<_> = (0..o.gates)
        .map(|i| gate(&format!("d-{i}"), 1_000_000 + i as i64, "production", None))
        .collect();
    let created = create_all(&gates, batch).await;
    until_all(&kube, "production", o.gates, "decisions", |g| {
        decided_at(g).is_some()
    })
    .await;
    let decide_secs = t0.elapsed().as_secs_f64();
    until_all(&kube, "production", o.gates, "deliveries", |g| {
        g.pointer("/status/delivery/state")
            .and_then(|s| s.as_str())
            .is_some_and(|s| s != "Pending")
    })
    .await;
    let deliver_secs = t0.elapsed().as_secs_f64();
    let written = kube.decisions_stored();
    let decision_latency = kube.map_objects(GATES, |g| {
        let name = g.pointer("/metadata/name").and_then(|n| n.as_str())?;
        Some(
            decision_written(&written, g)?
                .duration_since(*created.get(name)?)
                .as_secs_f64(),
        )
    });

    let burst = take_peaks(pid);
    // Phase 2: wake. Gates held by one pause, then the pause is resumed.
    pauses
        .create(&PostParams::default(), &pause("red-main", "staging"))
        .await
        .expect("pause");
    let held: Vec<_> = (0..o.held)
        .map(|i| gate(&format!("h-{i}"), 2_000_000 + i as i64, "staging", None))
        .collect();
    create_all(&gates, held).await;
    until_all(&kube, "staging", o.held, "held gates waiting", |g| {
        phase_of(g) == Some("Waiting")
    })
    .await;
    // Held and settled: each run was also told why (status reports take
    // GitHub's pacing, so they may trail the phase).
    let told = Instant::now();
    while (0..o.held).any(|i| gh.comments(2_000_000 + i as i64, "staging") == 0)
        && told.elapsed() < PHASE_LIMIT
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resumed_at = Timestamp::now();
    let resume = json!({"spec": {"resume": {"sha": SHA, "reason": "ci-failed"}}});
    pauses
        .patch("red-main", &PatchParams::default(), &Patch::Merge(&resume))
        .await
        .expect("resume");
    until_all(&kube, "staging", o.held, "woken gates decided", |g| {
        decided_at(g).is_some()
    })
    .await;
    let written = kube.decisions_stored();
    let wake = kube.map_objects(GATES, |g| {
        (g.pointer("/spec/environment").and_then(|e| e.as_str()) == Some("staging"))
            .then(|| decision_written(&written, g))
            .flatten()
            .map(|d| d.duration_since(resumed_at).as_secs_f64())
    });

    // Count the lifecycle writes of phases 1 and 2 now, then retire their gates
    // (deleting a decided gate only releases the finalizer), so at most
    // `--deadlines` gates are alive at once, as in a steady-state cluster.
    let lifecycle_writes = kube
        .writes()
        .iter()
        .filter(|w| w.collection == GATES && w.method != "POST" && w.changed)
        .count();
    let lifecycle_gates = o.gates + o.held;
    let names: Vec<String> = kube.map_objects(GATES, |g| {
        g.pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .map(str::to_string)
    });
    futures::stream::iter(names)
        .map(|n| {
            let gates = gates.clone();
            async move {
                gates
                    .delete(&n, &kube::api::DeleteParams::default())
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(64)
        .for_each(|_| async {})
        .await;
    let retire = Instant::now();
    while kube.count_where(GATES, |_| true) > 0 && retire.elapsed() < PHASE_LIMIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let writes_before_phase3 = kube
        .writes()
        .iter()
        .filter(|w| w.collection == GATES && w.method != "POST" && w.changed)
        .count();

    let wake_peaks = take_peaks(pid);
    // Phase 3: deadlines spread over a window, held by a pause nobody resumes.
    pauses
        .create(&PostParams::default(), &pause("freeze", "canary"))
        .await
        .expect("pause");
    let start = Timestamp::now() + SignedDuration::from_secs(20);
    let spread_ms = (o.spread_secs * 1000) as i64;
    let deadline_gates: Vec<_> = (0..o.deadlines)
        .map(|i| {
            let at = start
                + SignedDuration::from_millis(spread_ms * i as i64 / o.deadlines.max(1) as i64);
            gate(&format!("t-{i}"), 3_000_000 + i as i64, "canary", Some(at))
        })
        .collect();
    create_all(&gates, deadline_gates).await;
    until_all(&kube, "canary", o.deadlines, "deadline decisions", |g| {
        decided_at(g).is_some()
    })
    .await;
    let written = kube.decisions_stored();
    let lateness = kube.map_objects(GATES, |g| {
        if g.pointer("/spec/environment").and_then(|e| e.as_str()) != Some("canary") {
            return None;
        }
        let deadline: Timestamp = g.pointer("/spec/deadline")?.as_str()?.parse().ok()?;
        Some(
            decision_written(&written, g)?
                .duration_since(deadline)
                .as_secs_f64()
                .max(0.0),
        )
    });
    until_all(&kube, "canary", o.deadlines, "deadline deliveries", |g| {
        g.pointer("/status/delivery/state")
            .and_then(|s| s.as_str())
            .is_some_and(|s| s != "Pending")
    })
    .await;
    // Let trailing reconciles (events of the last writes) run before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let deadline_peaks = take_peaks(pid);
    drop(process);
    let phases = [&startup, &burst, &wake_peaks, &deadline_peaks];
    let peak_rss = phases.iter().map(|p| p.rss).fold(0.0, f64::max);
    let peak_of =
        |f: fn(&Peaks) -> Option<f64>| phases.iter().filter_map(|p| f(p)).reduce(f64::max);
    let peak_heap = peak_of(|p| p.heap);
    let operator_rss = peak_of(|p| p.operator_rss);
    let total = o.gates + o.held + o.deadlines;
    let writes = kube.writes();
    let phase3_writes = writes
        .iter()
        .filter(|w| w.collection == GATES && w.method != "POST" && w.changed)
        .count()
        - writes_before_phase3;
    let gate_writes = lifecycle_writes + phase3_writes;
    let lifecycle_total = lifecycle_gates + o.deadlines;
    let noop_writes = writes
        .iter()
        .filter(|w| w.collection == GATES && w.method != "POST" && !w.changed && w.code < 300)
        .count();
    let event_writes = writes
        .iter()
        .filter(|w| w.collection.contains("events"))
        .count();
    let requests = gh.requests();
    let reviews: Vec<&github::Recorded> = requests.iter().filter(|r| r.method == "POST").collect();
    // The busiest 60 s of content-creating requests, against the configured pace.
    let mut times: Vec<tokio::time::Instant> = reviews.iter().map(|r| r.at).collect();
    times.sort();
    let mut busiest = 0usize;
    let mut j = 0usize;
    for i in 0..times.len() {
        while times[i].duration_since(times[j]) >= Duration::from_secs(60) {
            j += 1;
        }
        busiest = busiest.max(i - j + 1);
    }
    let duplicate_answers = (0..o.gates)
        .filter(|i| gh.accepted(1_000_000 + *i as i64, "production") != 1)
        .count();

    let wake = percentiles(wake);
    let lateness = percentiles(lateness);
    let writes_per_gate = round(gate_writes as f64 / lifecycle_total as f64);
    let at_most = |v: &Value, limit: f64| v.as_f64().is_some_and(|x| x <= limit);
    let met = json!({
        "wake_latency_p99": at_most(&wake["p99"], 1.0),
        "deadline_lateness_p99": at_most(&lateness["p99"], 0.25),
        "deadline_lateness_max": at_most(&lateness["max"], 1.0),
        "api_writes_per_gate_lifecycle": writes_per_gate <= 3.0,
        "noop_reconciles_that_wrote": noop_writes == 0,
        "peak_heap_operator": peak_heap.map(|h| h <= 150.0),
        "peak_rss_operator_process": operator_rss.map(|r| r <= 150.0),
    });
    json!({
        "gates": total,
        "phases": {"decidable": o.gates, "held_then_resumed": o.held, "deadlines": o.deadlines, "deadline_spread_secs": o.spread_secs},
        "decisions_per_second": round(o.gates as f64 / decide_secs),
        "decision_phase_seconds": round(decide_secs),
        "delivery_phase_seconds": round(deliver_secs),
        "decision_latency_seconds": percentiles(decision_latency),
        "wake_latency_seconds": wake,
        "deadline_lateness_seconds": lateness,
        "api_writes_per_gate_lifecycle": writes_per_gate,
        "peak_live_gates": o.deadlines.max(o.gates + o.held),
        "event_writes_per_gate": round(event_writes as f64 / total as f64),
        "github_requests_per_gate": round(requests.len() as f64 / total as f64),
        "github_writes_busiest_minute": busiest,
        "github_writes_per_minute_limit": o.writes_per_minute,
        "decidable_gates_not_answered_exactly_once": duplicate_answers,
        "noop_reconciles_that_wrote": noop_writes,
        "peak_rss_mib": peak_rss,
        "operator_peak_heap_mib": peak_heap,
        "operator_process_peak_rss_mib": operator_rss,
        "by_phase": {
            "startup": startup.json(),
            "decidable_all_at_once": burst.json(),
            "held_then_resumed": wake_peaks.json(),
            "deadlines_live_at_once": deadline_peaks.json()
        },
        "targets": {
            "wake_latency_p99_seconds": 1.0,
            "deadline_lateness_p99_seconds": 0.25,
            "deadline_lateness_max_seconds": 1.0,
            "api_writes_per_gate_lifecycle": 3,
            "noop_reconciles_that_wrote": 0,
            "peak_rss_mib_at_10000_gates": 150
        },
        "met": met,
        "note": if o.operator_process {
            "two processes: the operator (operator_process_peak_rss_mib) and this one with the fake API server, the fake GitHub and the driver (peak_rss_mib); they share the CPU"
        } else {
            "one process: the controllers, the fake API server and the fake GitHub share the CPU and peak_rss_mib; operator_peak_heap_mib counts only what the operator's threads allocated and still held"
        }
    })
}

/// The run id of a request to `/repos/o/r/actions/runs/{id}/deployment_protection_rule`.
fn run_of(path: &str) -> Option<i64> {
    let rest = path.split("/actions/runs/").nth(1)?;
    rest.split('/').next()?.parse().ok()
}

/// The paced phase: `--paced` gates decidable at once, then `--paced-held`
/// gates held by a pause, all at the configured write pace. Answers must all
/// go out within N/pace minutes + 5 % of the first decision, and no status
/// report may go out before the answer of any gate older than its own.
async fn paced(o: &Opts, kube: &FakeKube, gh: &FakeGitHub) -> Value {
    const ANSWER_RUNS: i64 = 5_000_000;
    const HELD_RUNS: i64 = 6_000_000;
    let n = o.paced;
    let held = o.paced_held.unwrap_or((n / 10).clamp(1, 1_000));
    let gates: Api<DeploymentGate> = Api::namespaced(kube.client(), "load");
    let pauses: Api<ReleasePause> = Api::namespaced(kube.client(), "load");
    // GitHub's clock and the API server's: one anchor converts between them.
    let anchor = (tokio::time::Instant::now(), Timestamp::now());
    let wall = |at: tokio::time::Instant| {
        anchor.1 + SignedDuration::try_from(at.duration_since(anchor.0)).unwrap_or_default()
    };
    let long = |mut g: DeploymentGate| {
        // Longer than the slowest answer's wait, so no deadline decides a gate.
        g.spec.timeout = Some("12h".into());
        g
    };
    let answers: Vec<_> = (0..n)
        .map(|i| {
            long(gate(
                &format!("p-{i}"),
                ANSWER_RUNS + i as i64,
                "paced",
                None,
            ))
        })
        .collect();
    create_all(&gates, answers).await;
    pauses
        .create(&PostParams::default(), &pause("paced-hold", "paced-held"))
        .await
        .expect("pause");
    let reports: Vec<_> = (0..held)
        .map(|i| {
            long(gate(
                &format!("q-{i}"),
                HELD_RUNS + i as i64,
                "paced-held",
                None,
            ))
        })
        .collect();
    let held_created = create_all(&gates, reports).await;
    // Bounded by the pace itself: every answer and report, plus 20 %.
    let writes = (n + held) as f64;
    let limit = Duration::from_secs_f64(writes / o.writes_per_minute as f64 * 60.0 * 1.2 + 60.0);
    let start = Instant::now();
    let mut told = Instant::now();
    loop {
        let requests = gh.requests();
        let answered = requests
            .iter()
            .filter(|r| r.method == "POST" && r.body.get("state").is_some() && r.status < 300)
            .filter(|r| run_of(&r.path).is_some_and(|id| id < HELD_RUNS))
            .count();
        let reported = (0..held)
            .filter(|i| gh.comments(HELD_RUNS + *i as i64, "paced-held") > 0)
            .count();
        if answered >= n && reported >= held {
            break;
        }
        if start.elapsed() > limit {
            eprintln!(
                "load: gave up on the paced phase: {answered}/{n} answers, {reported}/{held} reports"
            );
            break;
        }
        if told.elapsed() > Duration::from_secs(60) {
            eprintln!("load: paced: {answered}/{n} answers, {reported}/{held} reports");
            told = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let first_decision = kube
        .decisions_stored()
        .iter()
        .filter(|((_, name), _)| name.starts_with("p-"))
        .map(|(_, at)| *at)
        .min();
    let requests = gh.requests();
    let answer_times: Vec<(i64, Timestamp)> = requests
        .iter()
        .filter(|r| r.method == "POST" && r.body.get("state").is_some() && r.status < 300)
        .filter_map(|r| Some((run_of(&r.path)?, wall(r.at))))
        .filter(|(id, _)| *id < HELD_RUNS)
        .collect();
    let report_times: Vec<(i64, Timestamp)> = requests
        .iter()
        .filter(|r| r.method == "POST" && r.body.get("state").is_none() && r.status < 300)
        .filter_map(|r| Some((run_of(&r.path)?, wall(r.at))))
        .collect();
    let last_answer = answer_times.iter().map(|(_, t)| *t).max();
    let last_report = report_times.iter().map(|(_, t)| *t).max();
    // Every answering gate is older than every held one, so no report may
    // precede the last answer.
    let reports_before_last_answer = report_times
        .iter()
        .filter(|(_, t)| last_answer.is_some_and(|a| *t < a))
        .count();
    let answers_not_exactly_once = (0..n)
        .filter(|i| gh.accepted(ANSWER_RUNS + *i as i64, "paced") != 1)
        .count();
    let minutes = |from: Option<Timestamp>, to: Option<Timestamp>| match (from, to) {
        (Some(f), Some(t)) => json!(round(t.duration_since(f).as_secs_f64() / 60.0)),
        _ => Value::Null,
    };
    let target_minutes = n as f64 / o.writes_per_minute as f64 * 1.05;
    let answers_minutes = minutes(first_decision, last_answer);
    let held_first = held_created.values().min().copied();
    let met = json!({
        "every_answer_within_target": answers_minutes.as_f64().is_some_and(|m| m <= target_minutes)
            && answers_not_exactly_once == 0,
        "no_report_before_an_older_gates_answer": reports_before_last_answer == 0,
    });
    json!({
        "phase": "paced",
        "decidable_at_once": n,
        "held_wanting_reports": held,
        "writes_per_minute": o.writes_per_minute,
        "minutes_from_first_decision_to_last_answer": answers_minutes,
        "minutes_from_first_decision_to_last_report": minutes(first_decision, last_report),
        "minutes_from_held_gates_created_to_last_report": minutes(held_first, last_report),
        "answers_accepted": answer_times.len(),
        "answers_not_exactly_once": answers_not_exactly_once,
        "reports_posted": report_times.len(),
        "reports_before_last_answer": reports_before_last_answer,
        "targets": {
            "minutes_from_first_decision_to_last_answer": round(target_minutes),
            "reports_before_last_answer": 0
        },
        "met": met,
    })
}
