//! The fake GitHub of `tests/support` as a process, for the e2e suite.
//!
//! Prints the fake API's base URL on the first line of stdout and the control
//! URL on the second, then serves until killed. The control server (its own
//! 127.0.0.1 port, never seen by the operator) lets a script drive and inspect
//! the fake:
//!
//! - `GET /_log`: every request so far, as a JSON array of
//!   `{method, path, body, status, at}` (status 599: the fake never answered;
//!   `at`: when it arrived, in seconds since the Unix epoch).
//! - `POST /_check?sha=..&name=..&conclusion=..`: a completed check run on a
//!   sha (no `conclusion`: an in-progress one).
//! - `POST /_hang?route=review`: the next request on that route takes effect
//!   nowhere and is never answered, so the client is left waiting.
//! - `POST /_run?run=..&head=..`: the commit workflow run `run` reports as its
//!   `head_sha` (Tollgate answers only for the run's own commit).
//! - `POST /_pending?run=..&environment=..`: a new request of the run waits on
//!   the environment (a re-run or a later job), so it takes a new answer.

#[path = "../tests/support/github.rs"]
mod github;

use std::collections::HashMap;
use std::io::Write;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use github::{FakeGitHub, Fault};
use serde_json::{Value, json};

#[tokio::main]
async fn main() {
    let fake = FakeGitHub::start().await;
    unix_seconds(tokio::time::Instant::now());
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake_github: cannot bind the control port on 127.0.0.1: {e}");
            std::process::exit(1);
        }
    };
    let control = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fake_github: no local address for the control port: {e}");
            std::process::exit(1);
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", fake.url());
        let _ = writeln!(out, "http://{control}");
        let _ = out.flush();
    }
    let app = Router::new()
        .route("/_log", get(log))
        .route("/_check", post(check))
        .route("/_hang", post(hang))
        .route("/_run", post(run))
        .route("/_pending", post(pending))
        .with_state(fake);
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("fake_github: control server stopped: {e}");
        std::process::exit(1);
    }
}

/// The fake records monotonic times; one reading of both clocks converts them.
static CLOCKS: std::sync::OnceLock<(tokio::time::Instant, std::time::SystemTime)> =
    std::sync::OnceLock::new();

fn unix_seconds(at: tokio::time::Instant) -> f64 {
    let (mono, wall) =
        *CLOCKS.get_or_init(|| (tokio::time::Instant::now(), std::time::SystemTime::now()));
    let wall_at = if at >= mono {
        wall + at.duration_since(mono)
    } else {
        wall - mono.duration_since(at)
    };
    wall_at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

async fn log(State(fake): State<FakeGitHub>) -> Response {
    let log: Vec<Value> = fake
        .requests()
        .into_iter()
        .map(|r| json!({"method": r.method, "path": r.path, "body": r.body, "status": r.status, "at": unix_seconds(r.at)}))
        .collect();
    axum::Json(log).into_response()
}

async fn check(
    State(fake): State<FakeGitHub>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (Some(sha), Some(name)) = (q.get("sha"), q.get("name")) else {
        return (StatusCode::BAD_REQUEST, "sha and name are required\n").into_response();
    };
    match q.get("conclusion") {
        Some(c) => fake.add_check_run(sha, name, "completed", Some(c)),
        None => fake.add_check_run(sha, name, "in_progress", None),
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn hang(
    State(fake): State<FakeGitHub>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let route: &'static str = match q.get("route").map(String::as_str) {
        Some("review") => "review",
        Some("approvals") => "approvals",
        Some("run") => "run",
        Some("checks") => "checks",
        other => {
            let msg = format!("unknown route {other:?}: use review, approvals, run or checks\n");
            return (StatusCode::BAD_REQUEST, msg).into_response();
        }
    };
    fake.script(route, &[Fault::Hang { lands: false }]);
    StatusCode::NO_CONTENT.into_response()
}

async fn run(State(fake): State<FakeGitHub>, Query(q): Query<HashMap<String, String>>) -> Response {
    let (Some(run), Some(head)) = (q.get("run").and_then(|r| r.parse().ok()), q.get("head")) else {
        return (
            StatusCode::BAD_REQUEST,
            "run (a number) and head are required\n",
        )
            .into_response();
    };
    fake.set_run_head(run, head);
    StatusCode::NO_CONTENT.into_response()
}

async fn pending(
    State(fake): State<FakeGitHub>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (Some(run), Some(env)) = (
        q.get("run").and_then(|r| r.parse().ok()),
        q.get("environment"),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            "run (a number) and environment are required\n",
        )
            .into_response();
    };
    fake.pending_again(run, env);
    StatusCode::NO_CONTENT.into_response()
}
