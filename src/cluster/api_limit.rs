//! A cap on the operator's Kubernetes API requests in flight.
//!
//! kube's client speaks HTTP/1.1 and opens one connection per concurrent
//! request. Reconciles run unbounded (a gate waiting for GitHub's pacing must
//! never delay another gate's deadline), so a wake of a thousand gates would
//! otherwise open a thousand connections to the API server, each with its own
//! buffers. The cap queues requests instead; watches hold a place only until
//! their response headers arrive.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::Semaphore;

use crate::telemetry::labels;

/// Where a limited client's requests are counted, and under which name.
#[derive(Clone)]
pub struct Counted {
    pub requests: Family<Vec<(&'static str, String)>, Counter>,
    /// The client's name in the `client` label (`work`, `events`, `retention`).
    pub client: &'static str,
}

/// Requests in flight at once, by default: enough to keep a busy API server
/// fed, few enough to keep the connection pool small.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;
/// Event writes in flight at once: few, so that under a slow API server the
/// status writes that decide and deliver gates get nearly all of it.
pub const EVENTS_MAX_IN_FLIGHT: usize = 4;

/// `client`, sending at most `max_in_flight` requests at once (first come,
/// first served), each counted in `counted`.
pub fn limited(client: Client, max_in_flight: usize, counted: Counted) -> Client {
    let namespace = client.default_namespace().to_string();
    Client::new(
        Limited {
            client,
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
            counted,
        },
        namespace,
    )
}

#[derive(Clone)]
struct Limited {
    client: Client,
    permits: Arc<Semaphore>,
    counted: Counted,
}

/// The verb and resource of an API request, as `kubectl` would name them
/// (`get`, `list`, `watch`, `create`, `patch`, …; `deploymentgates/status`).
/// Unknown paths count as `other`, so labels stay a small, fixed set.
pub fn verb_and_resource(method: &http::Method, uri: &http::Uri) -> (&'static str, String) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/... or /apis/GROUP/VERSION/...
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    }
    .unwrap_or_default();
    let rest = match rest {
        ["namespaces", _, more @ ..] if !more.is_empty() => more,
        other => other,
    };
    let resource = match rest {
        [] => "other".to_string(),
        [kind] | [kind, _] => (*kind).to_string(),
        [kind, _, sub, ..] => format!("{kind}/{sub}"),
    };
    let named = rest.len() >= 2 || rest.is_empty();
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match *method {
        http::Method::GET if watch => "watch",
        http::Method::GET if named => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    };
    (verb, resource)
}

impl tower::Service<Request<Body>> for Limited {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is decided per request in `call`, so queued requests never
        // hold up the client's shared buffer.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let client = self.client.clone();
        let permits = self.permits.clone();
        let (verb, resource) = verb_and_resource(req.method(), req.uri());
        self.counted
            .requests
            .get_or_create(&labels([
                ("client", self.counted.client),
                ("verb", verb),
                ("resource", &resource),
            ]))
            .inc();
        Box::pin(async move {
            // The semaphore is never closed, so a permit always comes.
            let _permit = permits.acquire_owned().await;
            client.send(req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_as_kubectl_names_them() {
        let cases = [
            (
                "GET",
                "/apis/tollgate.dev/v1alpha1/namespaces/web/deploymentgates/g1",
                ("get", "deploymentgates"),
            ),
            (
                "GET",
                "/apis/tollgate.dev/v1alpha1/deploymentgates?watch=true&resourceVersion=5",
                ("watch", "deploymentgates"),
            ),
            (
                "GET",
                "/apis/tollgate.dev/v1alpha1/namespaces/web/deploymentgates?limit=500",
                ("list", "deploymentgates"),
            ),
            (
                "PATCH",
                "/apis/tollgate.dev/v1alpha1/namespaces/web/deploymentgates/g1/status",
                ("patch", "deploymentgates/status"),
            ),
            (
                "POST",
                "/apis/events.k8s.io/v1/namespaces/web/events",
                ("create", "events"),
            ),
            ("GET", "/api/v1/namespaces/web", ("get", "namespaces")),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/t/leases/tollgate",
                ("update", "leases"),
            ),
            ("GET", "/version", ("get", "other")),
        ];
        for (method, uri, (verb, resource)) in cases {
            let got =
                verb_and_resource(&method.parse().expect("method"), &uri.parse().expect("uri"));
            assert_eq!(got, (verb, resource.to_string()), "{method} {uri}");
        }
    }
}
