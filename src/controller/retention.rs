//! Retention, the Kubernetes side: one task per shard reads the caches, asks
//! the engine (`policy::retention`) what is due, and deletes it, each delete
//! with preconditions on the UID and resourceVersion it decided on, so an
//! object that changed since (a keep label added, a new failure restated on a
//! pause, a namesake recreated) is never deleted.
//!
//! Deletes run on a budget of their own — their own cap on requests in
//! flight and `retention.deletionsPerSecond` — so they never take API
//! requests from gate work. Each is one log line and a count in
//! `tollgate_retention_deletions_total`, never an Event. A pass looks at the
//! whole cache, so passes are coalesced: one when something finishes (at
//! most one every [`MIN_GAP`]), one when the next object becomes due, and one
//! at least every [`SAFETY_PASS`].
//!
//! Lifetime: the task holds no per-object memory; what it decided is gone
//! when the pass ends.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::Notify;

use super::context::Context;
use crate::api::{DeploymentGate, LABEL_KEEP, LABEL_MADE_BY, MADE_BY_INTAKE, ReleasePause};
use crate::cluster::status::key_of;
use crate::policy::retention::{self, Finished, Rules};
use crate::telemetry::labels;

/// Deletes in flight at once, at most.
pub const MAX_IN_FLIGHT: usize = 2;
/// Passes are at least this far apart, however often gates finish.
const MIN_GAP: Duration = Duration::from_secs(1);
/// Even with nothing due, a pass runs this often (a missed nudge costs at
/// most this much delay).
const SAFETY_PASS: Duration = Duration::from_secs(600);
/// Deletes per pass at most, so each works from a recent look at the cache.
const MAX_PER_PASS: usize = 500;
/// After a failed delete, the next pass waits this long, doubling to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// True when `labels` pin the object (`tollgate.dev/keep=true`).
fn pinned<K: Resource>(obj: &K) -> bool {
    obj.labels().get(LABEL_KEEP).is_some_and(|v| v == "true")
}

/// True for the pauses intake writes (auto-pause, pause on a failed deployment).
pub fn automatic(pause: &ReleasePause) -> bool {
    pause
        .labels()
        .get(LABEL_MADE_BY)
        .is_some_and(|v| v == MADE_BY_INTAKE)
}

/// True when a gate event may make something due: a finished gate appeared
/// or changed (a newer finish pushes an older one out; a keep label went).
pub fn concerns_gate(gate: &DeploymentGate) -> bool {
    gate.status.as_ref().is_some_and(retention::is_finished)
}

/// Something due, and since when it is finished.
struct Due<K> {
    obj: Arc<K>,
    since: Timestamp,
}

/// Runs retention for one shard until the task is dropped. `shard` names it
/// in logs and metrics.
pub async fn run(ctx: Arc<Context>, client: Client, nudge: Arc<Notify>, shard: String) {
    let settings = ctx.config.retention.clone();
    if !settings.enabled {
        tracing::info!(shard = %shard, "retention is off: finished gates and automatic pauses stay until someone deletes them");
        return std::future::pending().await;
    }
    let rules = settings.rules();
    let mut pace = tokio::time::interval(Duration::from_secs(1) / settings.deletions_per_second);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = FIRST_BACKOFF;
    let mut synced = ctx.pauses_synced.clone();
    let _ = synced.wait_for(|s| *s).await;
    loop {
        let now = ctx.now();
        let gates = due_gates(&ctx, &rules, now);
        let pauses = due_pauses(&ctx, &rules, now);
        let mut failed = false;
        for due in gates.delete.iter().take(MAX_PER_PASS) {
            pace.tick().await;
            let outcome = delete(&client, &*due.obj).await;
            let g = &due.obj;
            match &outcome {
                Outcome::Deleted => tracing::info!(
                    shard = %shard,
                    gate = %key_of(&**g),
                    repository = %g.spec.repository,
                    environment = %g.spec.environment,
                    sha = %g.spec.sha,
                    run_id = g.spec.run_id,
                    finished_at = %due.since,
                    "retention deleted a finished DeploymentGate (finished longer than retention.finishedTTL ago, and not among the newest retention.keepPerEnvironment of its environment)"
                ),
                other => other.log(&shard, "DeploymentGate", &key_of(&**g)),
            }
            failed = outcome.count(&ctx, "DeploymentGate");
            if failed {
                break;
            }
        }
        let budget = MAX_PER_PASS.saturating_sub(gates.delete.len());
        for due in pauses.delete.iter().take(budget) {
            if failed {
                break;
            }
            pace.tick().await;
            let outcome = delete(&client, &*due.obj).await;
            let p = &due.obj;
            match &outcome {
                Outcome::Deleted => tracing::info!(
                    shard = %shard,
                    pause = %key_of(&**p),
                    reason = %p.spec.reason,
                    sha = p.spec.sha.as_deref(),
                    over_since = %due.since,
                    "retention deleted an automatic ReleasePause, resumed or expired longer than retention.finishedTTL ago"
                ),
                other => other.log(&shard, "ReleasePause", &key_of(&**p)),
            }
            failed = outcome.count(&ctx, "ReleasePause");
        }
        ctx.metrics
            .retention_last_pass
            .get_or_create(&labels([("shard", &shard)]))
            .set(now.as_second());
        if failed {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        backoff = FIRST_BACKOFF;
        let truncated =
            gates.more || pauses.more || gates.delete.len() + pauses.delete.len() > MAX_PER_PASS;
        if !truncated {
            let next = match (gates.next_look, pauses.next_look) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                _ = nudge.notified() => {}
                _ = ctx.clock.sleep_until(next, SAFETY_PASS) => {}
            }
        }
        // A burst of finishing gates (or a long backlog) costs one pass per gap.
        tokio::time::sleep(MIN_GAP).await;
    }
}

/// What a delete did.
enum Outcome {
    Deleted,
    /// A precondition failed: it changed (or was recreated) since it was read.
    Changed,
    /// Someone else deleted it first.
    Gone,
    Failed(kube::Error),
}

impl Outcome {
    fn log(&self, shard: &str, kind: &str, object: &str) {
        match self {
            Outcome::Deleted | Outcome::Gone => {}
            Outcome::Changed => tracing::info!(
                shard,
                kind,
                object,
                "retention did not delete: it changed since it was read, and is judged again as it is now"
            ),
            Outcome::Failed(e) => {
                tracing::warn!(shard, kind, object, error = %e, "retention could not delete a finished object; retrying with backoff")
            }
        }
    }

    /// Counts the outcome; true when the pass should stop (the API server failed).
    fn count(&self, ctx: &Context, kind: &str) -> bool {
        let word = match self {
            Outcome::Deleted => "deleted",
            Outcome::Changed => "changed",
            Outcome::Gone => "gone",
            Outcome::Failed(_) => "error",
        };
        ctx.metrics
            .retention_deletions
            .get_or_create(&labels([("kind", kind), ("outcome", word)]))
            .inc();
        matches!(self, Outcome::Failed(_))
    }
}

struct DuePlan<K> {
    delete: Vec<Due<K>>,
    /// More is due than one pass deletes.
    more: bool,
    next_look: Option<Timestamp>,
}

fn due_gates(ctx: &Context, rules: &Rules, now: Timestamp) -> DuePlan<DeploymentGate> {
    let mut objects = Vec::new();
    let mut finished = Vec::new();
    let hasher = RandomState::new();
    for g in ctx.gates.state() {
        let created = g.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let Some(since) = retention::finished_since(g.status.as_ref(), created, rules, now) else {
            continue;
        };
        // Gone already (deleting, its finalizer about to go): not ours to delete again.
        if g.metadata.deletion_timestamp.is_some() {
            continue;
        }
        finished.push(Finished {
            group: Some(group_of(&hasher, &g)),
            since,
            pinned: pinned(&*g),
        });
        objects.push(g);
    }
    let plan = retention::plan(&finished, rules, now);
    DuePlan {
        // Only what this pass can delete is held on to.
        delete: plan
            .delete
            .iter()
            .take(MAX_PER_PASS)
            .map(|&i| Due {
                obj: objects[i].clone(),
                since: finished[i].since,
            })
            .collect(),
        more: plan.delete.len() > MAX_PER_PASS,
        next_look: plan.next_look,
    }
}

/// The group of a gate — (namespace, repository, environment), compared as
/// GitHub compares names — as a hash, so a pass over a hundred thousand
/// finished gates copies no strings. (Two groups colliding would only share
/// their newest places, never delete anything before its TTL.)
fn group_of(hasher: &RandomState, g: &DeploymentGate) -> u64 {
    let mut h = hasher.build_hasher();
    h.write(g.metadata.namespace.as_deref().unwrap_or("").as_bytes());
    h.write_u8(0);
    for b in g.spec.repository.bytes() {
        h.write_u8(b.to_ascii_lowercase());
    }
    h.write_u8(0);
    for c in g.spec.environment.chars().flat_map(char::to_lowercase) {
        h.write_u32(c as u32);
    }
    h.finish()
}

fn due_pauses(ctx: &Context, rules: &Rules, now: Timestamp) -> DuePlan<ReleasePause> {
    let mut objects = Vec::new();
    let mut finished: Vec<Finished<()>> = Vec::new();
    for p in ctx.pauses.state() {
        if !automatic(&p) || p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(since) = retention::pause_over_since(&p, now) else {
            continue;
        };
        finished.push(Finished {
            group: None,
            since,
            pinned: pinned(&*p),
        });
        objects.push(p);
    }
    let plan = retention::plan(&finished, rules, now);
    DuePlan {
        // Only what this pass can delete is held on to.
        delete: plan
            .delete
            .iter()
            .take(MAX_PER_PASS)
            .map(|&i| Due {
                obj: objects[i].clone(),
                since: finished[i].since,
            })
            .collect(),
        more: plan.delete.len() > MAX_PER_PASS,
        next_look: plan.next_look,
    }
}

/// Deletes one object as cached, only if it is still exactly that object.
async fn delete<K>(client: &Client, obj: &K) -> Outcome
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: obj.meta().uid.clone(),
            resource_version: obj.meta().resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    match api.delete(&obj.name_any(), &params).await {
        Ok(_) => Outcome::Deleted,
        Err(kube::Error::Api(s)) if s.code == 409 => Outcome::Changed,
        Err(kube::Error::Api(s)) if s.code == 404 => Outcome::Gone,
        Err(e) => Outcome::Failed(e),
    }
}
