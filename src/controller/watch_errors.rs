//! Log lines for failing watches. The watcher retries with backoff by itself;
//! without a line of ours the only trace is kube's own "client error
//! (Connect)" at debug, which names neither the server nor the resource.

use std::sync::Arc;

use kube::runtime::watcher;

use crate::cluster::crds::describe;
use crate::telemetry::Throttle;

/// Reports the failures of one shard's watches, at most one line a minute
/// per resource (a server that is down fails every backoff step).
#[derive(Clone)]
pub struct WatchErrors {
    server: Arc<str>,
    resource: &'static str,
    shard: Arc<str>,
    throttle: Arc<Throttle>,
}

impl WatchErrors {
    pub fn new(server: &str, resource: &'static str, shard: &str) -> WatchErrors {
        WatchErrors {
            server: server.into(),
            resource,
            shard: shard.into(),
            throttle: Arc::new(Throttle::per_minute()),
        }
    }

    pub fn report(&self, e: &watcher::Error) {
        if let Some(suppressed) = self.throttle.admit() {
            tracing::warn!(
                resource = self.resource,
                namespace = %self.shard,
                server = %self.server,
                error = %describe(e),
                suppressed,
                "cannot watch {}; retrying with backoff",
                self.resource
            );
        }
    }
}
