//! One Kubernetes Event and one structured log line per transition.

use std::sync::Arc;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::metrics::counter::Counter;

use crate::api::DeploymentGate;
use crate::telemetry::Throttle;

/// A transition worth telling people about.
pub struct Transition<'a> {
    /// PascalCase reason: `Waiting`, `Approved`, `Rejected`, `Delivered`, …
    pub reason: &'a str,
    /// What happened, in words.
    pub note: String,
    /// Warning for things a person should look at.
    pub warning: bool,
}

/// Queued Events written at once, one per lane. The reconcilers give the
/// publisher a client of its own with a smaller cap than this (see
/// `EVENTS_MAX_IN_FLIGHT`), so Events never take a place a status write needs.
const LANES: usize = 16;
/// At most one "could not publish" warning this often, process-wide.
static PUBLISH_FAILURES: std::sync::LazyLock<Throttle> =
    std::sync::LazyLock::new(|| Throttle::new(std::time::Duration::from_secs(10)));

/// Events a lane holds; when it is full, a new Event is dropped (and counted)
/// rather than making a reconcile wait: Events are best-effort, the status
/// write, the log line and the metrics already record the transition.
const LANE_QUEUE: usize = 256;

/// Writes events.k8s.io/v1 Events. Each transition happens once, so there is
/// no series to aggregate and nothing to cache: memory stays flat with the
/// number of gates (kube's Recorder keeps every Event for minutes).
#[derive(Clone)]
pub struct Events {
    client: Client,
    instance: String,
    /// Set for the reconcilers: Events go through queues, so a reconcile does
    /// not wait for them (the status write already recorded the transition).
    /// An object's Events always take the same lane, so they keep their order.
    lanes: Option<Arc<[tokio::sync::mpsc::Sender<Event>]>>,
    /// Counts Events dropped at a full lane.
    dropped: Option<Counter>,
}

/// Drains the lanes of a queued [`Events`]; runs as long as the controllers.
pub struct Publisher {
    client: Client,
    lanes: Vec<tokio::sync::mpsc::Receiver<Event>>,
}

impl Events {
    /// Each Event is written before `publish` returns.
    pub fn new(client: Client, instance: Option<String>) -> Events {
        Events {
            client,
            instance: instance.unwrap_or_else(|| "tollgate".into()),
            lanes: None,
            dropped: None,
        }
    }

    /// Events are queued and written by the returned [`Publisher`]; `publish`
    /// never waits: at a full lane the Event is dropped and counted in `dropped`.
    pub fn queued(
        client: Client,
        instance: Option<String>,
        dropped: Counter,
    ) -> (Events, Publisher) {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..LANES)
            .map(|_| tokio::sync::mpsc::channel(LANE_QUEUE))
            .unzip();
        let events = Events {
            lanes: Some(senders.into()),
            dropped: Some(dropped),
            ..Events::new(client.clone(), instance)
        };
        let publisher = Publisher {
            client,
            lanes: receivers,
        };
        (events, publisher)
    }
}

/// Events written a second at most, after a burst of [`EVENTS_BURST`]: as
/// client-go's clients are rate-limited, so that a burst of transitions
/// leaves the API server to the status writes that decide and deliver gates.
/// What the lanes cannot hold meanwhile is dropped and counted.
const EVENTS_PER_SECOND: u32 = 25;
const EVENTS_BURST: u32 = 100;

/// A token bucket on tokio's clock: `take` waits for the next token.
struct Pace {
    /// When the next token is due; earlier than now by up to the burst.
    next: std::sync::Mutex<tokio::time::Instant>,
    period: std::time::Duration,
    burst: u32,
}

impl Pace {
    /// Starts full: a burst may go out at once.
    fn new(per_second: u32, burst: u32) -> Pace {
        let period = std::time::Duration::from_secs(1) / per_second.max(1);
        let now = tokio::time::Instant::now();
        Pace {
            next: std::sync::Mutex::new(now.checked_sub(period * burst).unwrap_or(now)),
            period,
            burst,
        }
    }

    async fn take(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = tokio::time::Instant::now();
            let earliest = now.checked_sub(self.period * self.burst).unwrap_or(now);
            let at = (*next).max(earliest);
            *next = at + self.period;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

impl Publisher {
    /// Writes queued Events, each lane in order and all of them at
    /// [`EVENTS_PER_SECOND`], until every sender is gone.
    pub async fn run(self) {
        let client = &self.client;
        let pace = &Pace::new(EVENTS_PER_SECOND, EVENTS_BURST);
        futures::future::join_all(self.lanes.into_iter().map(|mut lane| async move {
            while let Some(event) = lane.recv().await {
                pace.take().await;
                create(client, &event).await;
            }
        }))
        .await;
    }
}

/// The lane of an object's Events.
fn lane_of(namespace: &str, name: &str, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (namespace, name).hash(&mut h);
    (h.finish() % lanes.max(1) as u64) as usize
}

async fn create(client: &Client, event: &Event) {
    let ns = event.metadata.namespace.as_deref().unwrap_or("default");
    let api = Api::<Event>::namespaced(client.clone(), ns);
    if let Err(e) = Box::pin(api.create(&PostParams::default(), event)).await {
        // With the API server down every Event fails: one line per period
        // says so, the rest go to debug.
        match PUBLISH_FAILURES.admit() {
            Some(similar_left_out) => {
                tracing::warn!(error = %e, reason = event.reason.as_deref().unwrap_or(""), similar_left_out, "could not publish a Kubernetes Event")
            }
            None => {
                tracing::debug!(error = %e, reason = event.reason.as_deref().unwrap_or(""), "could not publish a Kubernetes Event")
            }
        }
    }
}

/// Publishes the Event (queued, or at once); a failure to publish is logged,
/// never fatal: the status write already recorded the transition.
pub async fn publish<K: Resource<DynamicType = ()>>(events: &Events, obj: &K, t: &Transition<'_>) {
    let mut note: String = t.note.clone();
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    let now = jiff::Timestamp::now();
    let ns = obj.namespace().unwrap_or_else(|| "default".into());
    let event = Event {
        metadata: ObjectMeta {
            // Unique per transition; sortable by time for people listing them.
            name: Some(format!(
                "{}.{:x}{:04x}",
                obj.name_any(),
                now.as_microsecond(),
                rand::random::<u16>()
            )),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        action: Some(t.reason.to_string()),
        reason: Some(t.reason.to_string()),
        note: Some(note),
        type_: Some(if t.warning { "Warning" } else { "Normal" }.to_string()),
        event_time: Some(MicroTime(now)),
        regarding: Some(obj.object_ref(&())),
        reporting_controller: Some("tollgate.dev/tollgate".into()),
        reporting_instance: Some(events.instance.clone()),
        ..Event::default()
    };
    let event = match &events.lanes {
        Some(lanes) => {
            let lane = &lanes[lane_of(&ns, &obj.name_any(), lanes.len())];
            match lane.try_send(event) {
                Ok(()) => return,
                Err(tokio::sync::mpsc::error::TrySendError::Full(event)) => {
                    if let Some(dropped) = &events.dropped {
                        dropped.inc();
                    }
                    tracing::debug!(reason = event.reason.as_deref().unwrap_or(""), object = %obj.name_any(), "Event dropped: the API server is behind on Events");
                    return;
                }
                // The publisher stopped (the controllers are stopping): write it here.
                Err(tokio::sync::mpsc::error::TrySendError::Closed(event)) => event,
            }
        }
        None => event,
    };
    create(&events.client, &event).await;
}

/// The structured log line of a gate transition.
pub fn log_gate(gate: &DeploymentGate, t: &Transition<'_>, latency_ms: Option<u128>) {
    let status = gate.status.as_ref();
    let decision = status.and_then(|s| s.decision.as_ref());
    let deployment_id = gate.spec.deployment_id;
    let name = format!(
        "{}/{}",
        gate.metadata.namespace.as_deref().unwrap_or(""),
        gate.metadata.name.as_deref().unwrap_or("")
    );
    let fields = (
        name.as_str(),
        gate.spec.repository.as_str(),
        gate.spec.environment.as_str(),
        gate.spec.sha.as_str(),
        gate.spec.run_id,
    );
    if t.warning {
        tracing::warn!(
            gate = fields.0, repository = fields.1, environment = fields.2, sha = fields.3, run_id = fields.4,
            deployment_id, decision = decision.map(|d| d.verdict.github_state()), source = decision.map(|d| format!("{:?}", d.source)),
            transition = t.reason, reason = %t.note, latency_ms, "gate transition"
        );
    } else {
        tracing::info!(
            gate = fields.0, repository = fields.1, environment = fields.2, sha = fields.3, run_id = fields.4,
            deployment_id, decision = decision.map(|d| d.verdict.github_state()), source = decision.map(|d| format!("{:?}", d.source)),
            transition = t.reason, reason = %t.note, latency_ms, "gate transition"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adversary: a burst of transitions (10,000 deadlines at once). Events
    /// leave the API server to the status writes, at their own pace.
    #[tokio::test(start_paused = true)]
    async fn events_keep_to_their_pace_after_a_burst() {
        let pace = Pace::new(EVENTS_PER_SECOND, EVENTS_BURST);
        let start = tokio::time::Instant::now();
        for _ in 0..EVENTS_BURST {
            pace.take().await;
        }
        // The burst goes out at once (paused clock: no time has passed).
        assert_eq!(start.elapsed(), std::time::Duration::ZERO);
        for _ in 0..EVENTS_PER_SECOND * 2 {
            pace.take().await;
        }
        let took = start.elapsed();
        assert!(
            took >= std::time::Duration::from_millis(1960)
                && took <= std::time::Duration::from_secs(2),
            "two seconds' worth after the burst took {took:?}"
        );
    }

    /// Adversary: an API server too slow to take Events. Lifetime: a queued
    /// Event ends when written or dropped; the queue never grows past its
    /// bound and a reconcile never waits for it.
    #[tokio::test]
    async fn a_full_lane_drops_the_event_and_never_waits() {
        // Nothing listens there, and nothing is sent: the publisher never runs.
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        let dropped = Counter::default();
        let (events, publisher) = Events::queued(client, None, dropped.clone());
        let gate: DeploymentGate = serde_json::from_value(serde_json::json!({
            "apiVersion": "tollgate.dev/v1alpha1", "kind": "DeploymentGate",
            "metadata": {"name": "g", "namespace": "web", "uid": "u1"},
            "spec": {"repository": "acme/web", "environment": "production", "sha": "abc", "runId": 1},
        }))
        .expect("gate");
        let t = Transition {
            reason: "Waiting",
            note: "held".into(),
            warning: false,
        };
        // One object always takes one lane: it fills after LANE_QUEUE Events.
        let publishing = async {
            for _ in 0..LANE_QUEUE + 10 {
                publish(&events, &gate, &t).await;
            }
        };
        // A guard, not a timing: a waiting publish would hang here forever.
        tokio::time::timeout(std::time::Duration::from_secs(20), publishing)
            .await
            .expect("publish never waits for a full lane");
        assert_eq!(dropped.get(), 10);
        drop(publisher);
    }
}
