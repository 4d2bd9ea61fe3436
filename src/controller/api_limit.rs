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
use tokio::sync::Semaphore;

/// Requests in flight at once, by default: enough to keep a busy API server
/// fed, few enough to keep the connection pool small.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;

/// `client`, sending at most `max_in_flight` requests at once (first come, first served).
pub fn limited(client: Client, max_in_flight: usize) -> Client {
    let namespace = client.default_namespace().to_string();
    Client::new(
        Limited {
            client,
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
        },
        namespace,
    )
}

#[derive(Clone)]
struct Limited {
    client: Client,
    permits: Arc<Semaphore>,
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
        Box::pin(async move {
            // The semaphore is never closed, so a permit always comes.
            let _permit = permits.acquire_owned().await;
            client.send(req).await
        })
    }
}
