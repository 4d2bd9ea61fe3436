//! The gate index: where the gates of a (repository, environment, commit) and
//! of a GitHub deployment are, kept in memory from the gate watch so that
//! intake finds a `deployment_status`'s gate without listing anything.
//!
//! It holds names, not objects: a lookup gives candidates, and the caller
//! reads each (a GET) and checks it, so a stale or colliding entry costs one
//! read and never a wrong answer. Keys are hashed with this process's own
//! random keys, so nobody can choose names that collide on purpose.
//!
//! Fed by the watches of the gate controller's shards, or, on a standby
//! replica (which runs no controllers), by watches of its own (see
//! [`follow`]). Each shard (a watched namespace, or the whole cluster) is
//! one partition, rebuilt whole at every relist, so an entry lives exactly
//! as long as its gate: a delete removes it, and a relist drops whatever the
//! API server no longer has.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::api::DeploymentGate;

/// A gate's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GateRef {
    pub namespace: String,
    pub name: String,
}

/// The index. Cheap to clone (a shared handle).
#[derive(Clone)]
pub struct GateIndex {
    inner: Arc<Inner>,
}

impl Default for GateIndex {
    fn default() -> Self {
        GateIndex::new()
    }
}

struct Inner {
    hasher: RandomState,
    state: RwLock<State>,
    ready: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    /// The partitions the operator watches; the index is ready once each
    /// has been listed.
    expected: Vec<Option<String>>,
    partitions: HashMap<Option<String>, Partition>,
}

#[derive(Default)]
struct Partition {
    synced: bool,
    live: Entries,
    /// A relist in progress, swapped in when it is complete.
    relist: Option<Entries>,
}

#[derive(Default)]
struct Entries {
    /// Each gate's keys, so a change or a delete removes exactly what it added.
    gates: HashMap<Arc<GateRef>, Keys>,
    by_commit: HashMap<u64, Vec<Arc<GateRef>>>,
    by_deployment: HashMap<u64, Vec<Arc<GateRef>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Keys {
    commit: u64,
    deployment: Option<u64>,
}

impl Entries {
    fn insert(&mut self, at: Arc<GateRef>, keys: Keys) {
        if let Some(old) = self.gates.get(&at).copied() {
            if old == keys {
                return;
            }
            self.remove(&at);
        }
        self.by_commit
            .entry(keys.commit)
            .or_default()
            .push(at.clone());
        if let Some(d) = keys.deployment {
            self.by_deployment.entry(d).or_default().push(at.clone());
        }
        self.gates.insert(at, keys);
    }

    fn remove(&mut self, at: &GateRef) {
        let Some(keys) = self.gates.remove(at) else {
            return;
        };
        unlink(&mut self.by_commit, keys.commit, at);
        if let Some(d) = keys.deployment {
            unlink(&mut self.by_deployment, d, at);
        }
    }
}

fn unlink(map: &mut HashMap<u64, Vec<Arc<GateRef>>>, key: u64, at: &GateRef) {
    if let Some(list) = map.get_mut(&key) {
        list.retain(|r| **r != *at);
        if list.is_empty() {
            map.remove(&key);
        }
    }
}

impl GateIndex {
    /// An empty index, not ready until its partitions are named and listed.
    pub fn new() -> GateIndex {
        GateIndex {
            inner: Arc::new(Inner {
                hasher: RandomState::new(),
                state: RwLock::new(State::default()),
                ready: tokio::sync::watch::channel(false).0,
            }),
        }
    }

    /// Names the partitions the operator watches (a namespace each, or
    /// `None` for the whole cluster). Entries of other partitions are dropped.
    pub fn expect(&self, partitions: &[Option<String>]) {
        let mut state = self.write();
        state.expected = partitions.to_vec();
        state.partitions.retain(|p, _| partitions.contains(p));
        self.update_ready(&state);
    }

    /// Takes one event of a partition's gate watch.
    pub fn observe(&self, partition: &Option<String>, event: &watcher::Event<DeploymentGate>) {
        let mut state = self.write();
        let p = state.partitions.entry(partition.clone()).or_default();
        match event {
            watcher::Event::Init => p.relist = Some(Entries::default()),
            watcher::Event::InitApply(g) => {
                let (at, keys) = self.entry_of(g);
                p.relist
                    .get_or_insert_with(Entries::default)
                    .insert(at, keys);
            }
            watcher::Event::InitDone => {
                p.live = p.relist.take().unwrap_or_default();
                p.synced = true;
                self.update_ready(&state);
            }
            watcher::Event::Apply(g) => {
                let (at, keys) = self.entry_of(g);
                p.live.insert(at, keys);
            }
            watcher::Event::Delete(g) => {
                let (at, _) = self.entry_of(g);
                p.live.remove(&at);
            }
        }
    }

    /// The gates of `repository`'s commit `sha` in `environment` (names
    /// compare case-insensitively, as at GitHub).
    pub fn by_commit(&self, repository: &str, environment: &str, sha: &str) -> Vec<GateRef> {
        let key = self.commit_key(repository, environment, sha);
        self.lookup(|e| e.by_commit.get(&key))
    }

    /// The gates whose `spec.deploymentId` is `deployment_id` in `repository`.
    pub fn by_deployment(&self, repository: &str, deployment_id: i64) -> Vec<GateRef> {
        let key = self.deployment_key(repository, deployment_id);
        self.lookup(|e| e.by_deployment.get(&key))
    }

    /// Gates indexed, over every partition.
    pub fn len(&self) -> usize {
        self.read()
            .partitions
            .values()
            .map(|p| p.live.gates.len())
            .sum()
    }

    /// True when no gate is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once every expected partition has been listed.
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// Waits (at most `timeout`) until the index is ready; false if it is not.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.ready.subscribe();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|r| *r)).await,
            Ok(Ok(_))
        )
    }

    fn lookup<'a>(&'a self, pick: impl Fn(&Entries) -> Option<&Vec<Arc<GateRef>>>) -> Vec<GateRef> {
        let state = self.read();
        let mut out: Vec<GateRef> = state
            .partitions
            .values()
            .filter_map(|p| pick(&p.live))
            .flatten()
            .map(|r| (**r).clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn entry_of(&self, g: &DeploymentGate) -> (Arc<GateRef>, Keys) {
        let at = Arc::new(GateRef {
            namespace: g.namespace().unwrap_or_default(),
            name: g.name_any(),
        });
        let keys = Keys {
            commit: self.commit_key(&g.spec.repository, &g.spec.environment, &g.spec.sha),
            deployment: g
                .spec
                .deployment_id
                .map(|d| self.deployment_key(&g.spec.repository, d)),
        };
        (at, keys)
    }

    fn commit_key(&self, repository: &str, environment: &str, sha: &str) -> u64 {
        self.inner.hasher.hash_one((
            'c',
            repository.to_ascii_lowercase(),
            environment.to_lowercase(),
            sha.to_ascii_lowercase(),
        ))
    }

    fn deployment_key(&self, repository: &str, deployment_id: i64) -> u64 {
        self.inner
            .hasher
            .hash_one(('d', repository.to_ascii_lowercase(), deployment_id))
    }

    fn update_ready(&self, state: &State) {
        let ready = !state.expected.is_empty()
            && state
                .expected
                .iter()
                .all(|p| state.partitions.get(p).is_some_and(|p| p.synced));
        self.inner.ready.send_if_modified(|r| {
            let changed = *r != ready;
            *r = ready;
            changed
        });
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keeps `index` current from watches of its own, one per partition, until
/// dropped or aborted: for a replica that runs no controllers (a standby
/// waiting for the Lease) but answers webhooks. `labels` is the operator's
/// label selector, if it shards by one.
pub async fn follow(
    client: Client,
    partitions: Vec<Option<String>>,
    labels: Option<String>,
    index: GateIndex,
) {
    index.expect(&partitions);
    let watches = partitions.into_iter().map(|partition| {
        let api = super::api::<DeploymentGate>(&client, &partition);
        let mut wc = watcher::Config::default().any_semantic();
        if let Some(l) = &labels {
            wc = wc.labels(l);
        }
        let index = index.clone();
        watcher(api, wc).default_backoff().for_each(move |e| {
            if let Ok(e) = &e {
                index.observe(&partition, e);
            }
            futures::future::ready(())
        })
    });
    futures::future::join_all(watches).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gate(
        ns: &str,
        name: &str,
        repo: &str,
        env: &str,
        deployment: Option<i64>,
    ) -> DeploymentGate {
        serde_json::from_value(json!({
            "apiVersion": "tollgate.dev/v1alpha1",
            "kind": "DeploymentGate",
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
            "spec": {
                "repository": repo,
                "environment": env,
                "sha": "9fceb02d0ae598e95dc970b74767f19372d61af8",
                "runId": 1,
                "deploymentId": deployment,
            },
        }))
        .expect("gate")
    }

    fn at(ns: &str, name: &str) -> GateRef {
        GateRef {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    const SHA: &str = "9FCEB02D0AE598E95DC970B74767F19372D61AF8";

    #[test]
    fn a_gate_is_found_by_commit_and_by_deployment_until_it_is_deleted() {
        let index = GateIndex::new();
        let all = None;
        index.expect(std::slice::from_ref(&all));
        assert!(!index.is_ready());
        index.observe(&all, &watcher::Event::Init);
        index.observe(
            &all,
            &watcher::Event::InitApply(gate("web", "a", "acme/web", "production", Some(7))),
        );
        index.observe(&all, &watcher::Event::InitDone);
        assert!(index.is_ready());
        index.observe(
            &all,
            &watcher::Event::Apply(gate("web", "b", "acme/web", "staging", None)),
        );
        assert_eq!(
            index.by_commit("Acme/Web", "PRODUCTION", SHA),
            vec![at("web", "a")]
        );
        assert_eq!(
            index.by_commit("acme/web", "staging", SHA),
            vec![at("web", "b")]
        );
        assert_eq!(index.by_deployment("acme/web", 7), vec![at("web", "a")]);
        assert!(index.by_deployment("acme/other", 7).is_empty());
        index.observe(
            &all,
            &watcher::Event::Delete(gate("web", "a", "acme/web", "production", Some(7))),
        );
        assert!(index.by_commit("acme/web", "production", SHA).is_empty());
        assert!(index.by_deployment("acme/web", 7).is_empty());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_changed_deployment_id_moves_the_entry_and_leaves_nothing_behind() {
        let index = GateIndex::new();
        let all = None;
        index.observe(
            &all,
            &watcher::Event::Apply(gate("web", "a", "acme/web", "production", None)),
        );
        index.observe(
            &all,
            &watcher::Event::Apply(gate("web", "a", "acme/web", "production", Some(9))),
        );
        assert_eq!(index.by_deployment("acme/web", 9), vec![at("web", "a")]);
        index.observe(
            &all,
            &watcher::Event::Apply(gate("web", "a", "acme/web", "production", Some(10))),
        );
        assert!(index.by_deployment("acme/web", 9).is_empty());
        assert_eq!(
            index.by_commit("acme/web", "production", SHA),
            vec![at("web", "a")],
            "one entry, not one per change"
        );
    }

    #[test]
    fn a_relist_drops_gates_the_server_no_longer_has_and_readiness_needs_every_partition() {
        let index = GateIndex::new();
        let (web, pay) = (Some("web".to_string()), Some("payments".to_string()));
        index.expect(&[web.clone(), pay.clone()]);
        for (p, g) in [
            (&web, gate("web", "a", "acme/web", "production", None)),
            (&pay, gate("payments", "p", "acme/pay", "production", None)),
        ] {
            index.observe(p, &watcher::Event::Init);
            index.observe(p, &watcher::Event::InitApply(g));
            if *p == web {
                index.observe(p, &watcher::Event::InitDone);
                assert!(!index.is_ready(), "payments is not listed yet");
            }
        }
        index.observe(&pay, &watcher::Event::InitDone);
        assert!(index.is_ready());
        // The web watch relists; gate a was deleted meanwhile.
        index.observe(&web, &watcher::Event::Init);
        assert_eq!(
            index.by_commit("acme/web", "production", SHA),
            vec![at("web", "a")],
            "the old entries serve until the relist is complete"
        );
        index.observe(&web, &watcher::Event::InitDone);
        assert!(index.by_commit("acme/web", "production", SHA).is_empty());
        assert_eq!(index.len(), 1);
        assert!(index.is_ready(), "a relist does not make the index unready");
    }
}
