//! Health and metrics endpoints, served on the metrics listener
//! (`--metrics-listen`), never on the Internet-facing webhook one.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Metrics;

#[derive(Clone)]
struct Health {
    ready: tokio::sync::watch::Receiver<bool>,
    waiting: tokio::sync::watch::Receiver<String>,
    metrics: Metrics,
}

/// `GET /livez`, `GET /readyz` (ready once the watch caches are synced; until
/// then it says what start-up waits for, `waiting`) and `GET /metrics`.
pub fn routes(
    ready: tokio::sync::watch::Receiver<bool>,
    waiting: tokio::sync::watch::Receiver<String>,
    metrics: Metrics,
) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Health {
            ready,
            waiting,
            metrics,
        })
}

async fn readyz(State(h): State<Health>) -> impl IntoResponse {
    if *h.ready.borrow() {
        (StatusCode::OK, "ready".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, h.waiting.borrow().clone())
    }
}

async fn metrics_text(State(h): State<Health>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.render(),
    )
}
