//! The gate index: where the gates of a (repository, environment, commit)
//! are, kept in memory from the gate watch so that intake finds a
//! `deployment_status`'s gate without listing anything. (A deployment's gate,
//! matched by `spec.deploymentId`, has the deployment's commit and
//! environment, which GitHub sends with every status, so one key serves both
//! of `find_gate`'s matches.)
//!
//! It holds names, not objects: a lookup gives candidates, and the caller
//! reads each (a GET) and checks it, so a stale or colliding entry costs one
//! read and never a wrong answer. Keys are hashed with this process's own
//! random keys, so nobody can choose names that collide on purpose. An entry
//! is a key and a name, about a hundred bytes a gate.
//!
//! Fed by the watches of the gate controller's shards, or, on a standby
//! replica (which runs no controllers), by watches of its own (see
//! [`follow`]). Each shard (a watched namespace, or the whole cluster) is
//! one partition, rebuilt whole at every relist. An entry lives exactly as
//! long as its gate: the key is made of immutable spec fields, a delete
//! removes it, and a relist drops whatever the API server no longer has.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher, RandomState};
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

/// Commit key → the gates under it, as `namespace/name`.
#[derive(Default)]
struct Entries {
    by_commit: HashMap<u64, Names>,
    len: usize,
}

/// Usually one gate per key; more when a commit is deployed to one
/// environment by several runs. Anyone who may create gates can put any
/// number under one key, so the many are a set: an event costs the same
/// whatever the bucket holds.
enum Names {
    One(Box<str>),
    Many(HashSet<Box<str>>),
}

impl Names {
    fn contains(&self, at: &str) -> bool {
        match self {
            Names::One(one) => **one == *at,
            Names::Many(many) => many.contains(at),
        }
    }

    fn push(&mut self, at: Box<str>) {
        *self = match std::mem::replace(self, Names::Many(HashSet::new())) {
            Names::One(one) => Names::Many(HashSet::from([one, at])),
            Names::Many(mut many) => {
                many.insert(at);
                Names::Many(many)
            }
        };
    }
}

impl Entries {
    fn insert(&mut self, key: u64, at: Box<str>) {
        match self.by_commit.get_mut(&key) {
            None => {
                self.by_commit.insert(key, Names::One(at));
            }
            Some(names) if names.contains(&at) => return,
            Some(names) => names.push(at),
        }
        self.len += 1;
    }

    fn remove(&mut self, key: u64, at: &str) {
        let Some(names) = self.by_commit.get_mut(&key) else {
            return;
        };
        match names {
            Names::One(one) if **one == *at => {
                self.by_commit.remove(&key);
                self.len -= 1;
            }
            Names::One(_) => {}
            Names::Many(many) => {
                if many.remove(at) {
                    self.len -= 1;
                }
                if many.is_empty() {
                    self.by_commit.remove(&key);
                }
            }
        }
    }

    fn get(&self, key: u64) -> Vec<GateRef> {
        let names: Vec<&str> = match self.by_commit.get(&key) {
            None => Vec::new(),
            Some(Names::One(one)) => vec![one],
            Some(Names::Many(many)) => {
                // In a stable order, whatever the set's.
                let mut names: Vec<&str> = many.iter().map(|n| &**n).collect();
                names.sort_unstable();
                names
            }
        };
        names
            .into_iter()
            .filter_map(|n| n.split_once('/'))
            .map(|(namespace, name)| GateRef {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
            .collect()
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
                let (key, at) = self.entry_of(g);
                p.relist
                    .get_or_insert_with(Entries::default)
                    .insert(key, at);
            }
            watcher::Event::InitDone => {
                p.live = p.relist.take().unwrap_or_default();
                p.synced = true;
                self.update_ready(&state);
            }
            watcher::Event::Apply(g) => {
                let (key, at) = self.entry_of(g);
                p.live.insert(key, at);
            }
            watcher::Event::Delete(g) => {
                let (key, at) = self.entry_of(g);
                p.live.remove(key, &at);
            }
        }
    }

    /// The gates of `repository`'s commit `sha` in `environment` (names
    /// compare case-insensitively, as at GitHub), sorted.
    pub fn by_commit(&self, repository: &str, environment: &str, sha: &str) -> Vec<GateRef> {
        let key = self.commit_key(repository, environment, sha);
        let state = self.read();
        let mut out: Vec<GateRef> = state
            .partitions
            .values()
            .flat_map(|p| p.live.get(key))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Gates indexed, over every partition.
    pub fn len(&self) -> usize {
        self.read().partitions.values().map(|p| p.live.len).sum()
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

    fn entry_of(&self, g: &DeploymentGate) -> (u64, Box<str>) {
        let key = self.commit_key(&g.spec.repository, &g.spec.environment, &g.spec.sha);
        let at = format!("{}/{}", g.namespace().unwrap_or_default(), g.name_any());
        (key, at.into_boxed_str())
    }

    /// The key of (repository, environment, sha), lowercased as GitHub
    /// compares them, hashed without a copy.
    fn commit_key(&self, repository: &str, environment: &str, sha: &str) -> u64 {
        let mut h = self.inner.hasher.build_hasher();
        for b in repository.bytes() {
            h.write_u8(b.to_ascii_lowercase());
        }
        h.write_u8(0);
        for c in environment.chars().flat_map(char::to_lowercase) {
            h.write_u32(c as u32);
        }
        h.write_u8(0);
        for b in sha.bytes() {
            h.write_u8(b.to_ascii_lowercase());
        }
        h.finish()
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

    fn gate(ns: &str, name: &str, repo: &str, env: &str) -> DeploymentGate {
        serde_json::from_value(json!({
            "apiVersion": "tollgate.dev/v1alpha1",
            "kind": "DeploymentGate",
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
            "spec": {
                "repository": repo,
                "environment": env,
                "sha": "9fceb02d0ae598e95dc970b74767f19372d61af8",
                "runId": 1,
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
    fn many_gates_under_one_commit_are_each_found_once_and_each_removed_alone() {
        // Adversary: anyone who may create gates can put thousands under one
        // (repository, environment, sha); each stays one entry, in a stable order.
        let index = GateIndex::new();
        let all = None;
        index.expect(std::slice::from_ref(&all));
        index.observe(&all, &watcher::Event::Init);
        index.observe(&all, &watcher::Event::InitDone);
        let names: Vec<String> = (0..200).map(|i| format!("g{i:03}")).collect();
        for name in names.iter().chain(&names) {
            index.observe(
                &all,
                &watcher::Event::Apply(gate("web", name, "acme/web", "production")),
            );
        }
        let found = index.by_commit("acme/web", "production", SHA);
        let expected: Vec<GateRef> = names.iter().map(|n| at("web", n)).collect();
        assert_eq!(found, expected);
        for name in names.iter().skip(1) {
            index.observe(
                &all,
                &watcher::Event::Delete(gate("web", name, "acme/web", "production")),
            );
        }
        assert_eq!(
            index.by_commit("acme/web", "production", SHA),
            vec![at("web", "g000")]
        );
    }

    #[test]
    fn a_gate_is_found_by_its_commit_case_insensitively_until_it_is_deleted() {
        let index = GateIndex::new();
        let all = None;
        index.expect(std::slice::from_ref(&all));
        assert!(!index.is_ready());
        index.observe(&all, &watcher::Event::Init);
        index.observe(
            &all,
            &watcher::Event::InitApply(gate("web", "a", "acme/web", "production")),
        );
        index.observe(&all, &watcher::Event::InitDone);
        assert!(index.is_ready());
        for (name, env) in [("b", "staging"), ("c", "Production")] {
            index.observe(
                &all,
                &watcher::Event::Apply(gate("web", name, "acme/web", env)),
            );
        }
        assert_eq!(
            index.by_commit("Acme/Web", "PRODUCTION", SHA),
            vec![at("web", "a"), at("web", "c")]
        );
        assert_eq!(
            index.by_commit("acme/web", "staging", SHA),
            vec![at("web", "b")]
        );
        assert!(index.by_commit("acme/other", "staging", SHA).is_empty());
        // A change of the same gate is not a second entry.
        index.observe(
            &all,
            &watcher::Event::Apply(gate("web", "b", "acme/web", "staging")),
        );
        assert_eq!(index.len(), 3);
        index.observe(
            &all,
            &watcher::Event::Delete(gate("web", "a", "acme/web", "production")),
        );
        index.observe(
            &all,
            &watcher::Event::Delete(gate("web", "b", "acme/web", "staging")),
        );
        assert_eq!(
            index.by_commit("acme/web", "production", SHA),
            vec![at("web", "c")]
        );
        assert!(index.by_commit("acme/web", "staging", SHA).is_empty());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_relist_drops_gates_the_server_no_longer_has_and_readiness_needs_every_partition() {
        let index = GateIndex::new();
        let (web, pay) = (Some("web".to_string()), Some("payments".to_string()));
        index.expect(&[web.clone(), pay.clone()]);
        for (p, g) in [
            (&web, gate("web", "a", "acme/web", "production")),
            (&pay, gate("payments", "p", "acme/pay", "production")),
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
        index.expect(std::slice::from_ref(&web));
        assert_eq!(index.len(), 0, "an unwatched partition's entries go");
    }
}
