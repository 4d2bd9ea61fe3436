//! A real Prometheus server for the analysis tests: Debian's `prometheus`
//! binary (unpacked by `.ci/tools.sh` into `target/ci-tools/bin`, or on
//! PATH), started on 127.0.0.1 with its own temporary storage, scraping a
//! tiny exporter the test serves on 127.0.0.1 every second. Killed on drop.
//!
//! Without the binary a test skips with one line, except in CI (`CI` set),
//! where the analysis tests must run.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;

/// A hang guard for Prometheus starting and scraping: both take a second or two.
const STARTUP_GUARD: Duration = Duration::from_secs(60);

/// Where the `prometheus` binary is: `target/ci-tools/bin`, else PATH.
pub fn binary() -> Option<PathBuf> {
    let ci_tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ci-tools/bin/prometheus");
    if ci_tools.is_file() {
        return Some(ci_tools);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    })
}

/// The binary, or `None` after printing the skip line; panics in CI.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    match binary() {
        Some(b) => Some(b),
        None if std::env::var_os("CI").is_some() => panic!(
            "{test}: prometheus not found in target/ci-tools/bin or PATH, and CI must run this test: run .ci/tools.sh"
        ),
        None => {
            println!("{test}: skipped: prometheus not found");
            None
        }
    }
}

/// An exporter on 127.0.0.1 serving one gauge, `tollgate_test_error_ratio`,
/// whose value the test sets.
pub struct Exporter {
    addr: SocketAddr,
    value: Arc<Mutex<f64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    pub async fn start(value: f64) -> Exporter {
        let shared = Arc::new(Mutex::new(value));
        let v = shared.clone();
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let v = *v.lock().unwrap_or_else(|p| p.into_inner());
                async move {
                    format!(
                        "# HELP tollgate_test_error_ratio The error ratio the test sets.\n# TYPE tollgate_test_error_ratio gauge\ntollgate_test_error_ratio {v}\n"
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the exporter on loopback");
        let addr = listener.local_addr().expect("exporter address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Exporter {
            addr,
            value: shared,
            task,
        }
    }

    pub fn set(&self, value: f64) {
        *self.value.lock().unwrap_or_else(|p| p.into_inner()) = value;
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running Prometheus; killed, and its storage removed, on drop.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Prometheus {
    /// Starts `binary` scraping `target` every second; returns once it is ready.
    pub async fn start(binary: &std::path::Path, target: SocketAddr) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "tollgate-prometheus-{}-{}",
            std::process::id(),
            target.port()
        ));
        std::fs::create_dir_all(dir.join("data")).expect("prometheus storage dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n- job_name: exporter\n  static_configs:\n  - targets: ['{target}']\n"
            ),
        )
        .expect("prometheus config");
        // A free loopback port: bound, read, released for Prometheus.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            dir,
            url: format!("http://{listen}"),
        };
        p.ready().await;
        p
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn ready(&self) {
        let client = tollgate::prometheus::Prometheus::new(&settings(&self.url)).expect("client");
        let deadline = tokio::time::Instant::now() + STARTUP_GUARD;
        // `up` answers once the server is ready and has scraped once.
        loop {
            if let Ok(v) = client.query("up{job=\"exporter\"}").await
                && v == [1.0]
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus at {} never became ready",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Returns once an instant query of `query` reads `value`: the latest
    /// scrape has reached Prometheus.
    pub async fn reads(&self, query: &str, value: f64) {
        let client = tollgate::prometheus::Prometheus::new(&settings(&self.url)).expect("client");
        let deadline = tokio::time::Instant::now() + STARTUP_GUARD;
        loop {
            if client.query(query).await.ok().as_deref() == Some(&[value][..]) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus never read {query} = {value}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Client settings for a Prometheus at `url`.
pub fn settings(url: &str) -> tollgate::config::PrometheusSettings {
    tollgate::config::PrometheusSettings {
        url: url.to_string(),
        timeout: Duration::from_secs(5),
        bearer_token_file: None,
        ca_file: None,
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
