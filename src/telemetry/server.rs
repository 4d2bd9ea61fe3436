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
    metrics: Metrics,
}

/// `GET /livez`, `GET /readyz` (ready once the watch caches are synced) and `GET /metrics`.
pub fn routes(ready: tokio::sync::watch::Receiver<bool>, metrics: Metrics) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Health { ready, metrics })
}

async fn readyz(State(h): State<Health>) -> impl IntoResponse {
    if *h.ready.borrow() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
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
