//! An in-process fake Kubernetes API server on 127.0.0.1 for tests and the
//! benchmark: list and watch (resourceVersion, bookmarks, 410 on expired
//! versions), get, create, replace, merge/JSON/apply patches, the status
//! subresource of `tollgate.dev` resources, `generation` bumped only by spec
//! changes, deletion with finalizers and preconditions, 409 on stale
//! resourceVersions, a log of every write (and, when asked, of every
//! request), and optionally namespaced RBAC (403 outside the allowed
//! namespaces). Objects are stored as JSON; any resource path works.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

/// How many watch events are kept for watchers resuming from a resourceVersion.
const HISTORY: usize = 20_000;
/// Live watchers further behind than this get 410 and relist, as from a real server.
const BROADCAST: usize = 16_384;

/// One write the server saw.
#[derive(Clone, Debug)]
pub struct WriteLog {
    pub method: String,
    pub collection: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub status_subresource: bool,
    pub patch_type: Option<String>,
    pub code: u16,
    /// True when the write changed the stored object.
    pub changed: bool,
    /// When the server answered it.
    pub at: jiff::Timestamp,
}

/// One request the server saw (recorded after [`FakeKube::record_requests`]).
#[derive(Clone, Debug)]
pub struct RequestLog {
    pub method: String,
    pub collection: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// A watch (`?watch=true`), not a list.
    pub watch: bool,
    pub label_selector: Option<String>,
    /// Refused for namespaced RBAC (see [`FakeKube::allow_only_namespaces`]).
    pub forbidden: bool,
}

impl RequestLog {
    /// A LIST: a GET of a collection that is not a watch.
    pub fn is_list(&self) -> bool {
        self.method == "GET" && self.name.is_none() && !self.watch
    }
}

/// Changes an object the moment a DELETE for it arrives, before its
/// preconditions are checked: another writer winning the race.
type BeforeDelete = Box<dyn FnOnce(&mut Value) + Send>;

#[derive(Clone, Debug)]
struct WatchEvent {
    rv: u64,
    collection: String,
    namespace: String,
    kind: &'static str,
    /// Shared by the history and every watcher: one copy per version.
    object: Arc<Snapshot>,
}

/// One version of an object as watchers need it: serialised once, with its
/// metadata kept for label and field selectors. Compact, because the history
/// and the broadcast buffer hold thousands of them.
#[derive(Debug)]
struct Snapshot {
    /// `{"metadata": ...}` of the object.
    meta: Value,
    json: Bytes,
}

impl Snapshot {
    fn of(obj: &Value) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            meta: json!({"metadata": obj.get("metadata").cloned().unwrap_or(Value::Null)}),
            json: Bytes::from(serde_json::to_vec(obj).expect("a JSON value serialises")),
        })
    }
}

struct Inner {
    rv: u64,
    uid: u64,
    /// collection ("group/version/plural") → (namespace, name) → object.
    objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    history: VecDeque<WatchEvent>,
    log: Vec<WriteLog>,
    fail_writes: VecDeque<u16>,
    /// Failures queued for writes to one object, by name.
    fail_named: HashMap<String, VecDeque<u16>>,
    delay: Duration,
    /// Each live watch event reaches watchers this much later (a lagging cache).
    watch_lag: Duration,
    user: String,
    history_limit: usize,
    keep_events: bool,
    /// When each object's `status.decision` was first stored, by (namespace, name).
    decision_stored: BTreeMap<(String, String), jiff::Timestamp>,
    /// Every request, once `record_requests` turned recording on.
    requests: Option<Vec<RequestLog>>,
    /// Namespaced RBAC: requests for namespaced resources outside these get 403.
    allowed_namespaces: Option<Vec<String>>,
    before_delete: HashMap<String, BeforeDelete>,
    /// (verb, resource[/subresource]) SelfSubjectAccessReview answers "not allowed" to.
    denied: Vec<(String, String)>,
}

/// The fake API server.
#[derive(Clone)]
pub struct FakeKube {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<WatchEvent>,
    url: String,
}

struct Target {
    collection: String,
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest.to_vec()),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest.to_vec()),
        _ => return None,
    };
    let (namespace, rest) = match rest.as_slice() {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest.to_vec()),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [p] => (p.to_string(), None, None),
        [p, n] => (p.to_string(), Some(n.to_string()), None),
        [p, n, s] => (p.to_string(), Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    Some(Target {
        collection: format!("{group}/{version}/{plural}"),
        group,
        version,
        plural,
        namespace,
        name,
        sub,
    })
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(code: u16, v: &Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::now())
        .to_string()
}

/// Everything but metadata and status: a change here bumps `generation`.
fn spec_part(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    v
}

fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    v
}

fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("just made an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn pointer_parts(path: &str) -> Vec<String> {
    path.split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn json_patch(target: &mut Value, ops: &[Value]) -> Result<(), (u16, String)> {
    for op in ops {
        let kind = op.get("op").and_then(|o| o.as_str()).unwrap_or("");
        let path = op.get("path").and_then(|o| o.as_str()).unwrap_or("");
        let parts = pointer_parts(path);
        let value = op.get("value").cloned().unwrap_or(Value::Null);
        match kind {
            "test" => {
                if target.pointer(path) != Some(&value) {
                    return Err((
                        422,
                        format!("the server rejected our request: testing value {path} failed"),
                    ));
                }
            }
            "add" | "replace" => {
                let (last, parent_parts) =
                    parts.split_last().ok_or((422, "empty path".to_string()))?;
                let parent_path: String = parent_parts.iter().map(|p| format!("/{p}")).collect();
                let parent = target
                    .pointer_mut(&parent_path)
                    .ok_or((422, format!("missing parent of {path}")))?;
                match parent {
                    Value::Object(o) => {
                        if kind == "replace" && !o.contains_key(last) {
                            return Err((422, format!("replace of missing {path}")));
                        }
                        o.insert(last.clone(), value);
                    }
                    Value::Array(a) => {
                        if last == "-" {
                            a.push(value);
                        } else {
                            let i: usize = last
                                .parse()
                                .map_err(|_| (422, format!("bad index in {path}")))?;
                            if kind == "replace" && i < a.len() {
                                a[i] = value;
                            } else if i <= a.len() {
                                a.insert(i, value);
                            } else {
                                return Err((422, format!("index out of range in {path}")));
                            }
                        }
                    }
                    _ => return Err((422, format!("cannot add to {path}"))),
                }
            }
            "remove" => {
                let (last, parent_parts) =
                    parts.split_last().ok_or((422, "empty path".to_string()))?;
                let parent_path: String = parent_parts.iter().map(|p| format!("/{p}")).collect();
                match target.pointer_mut(&parent_path) {
                    Some(Value::Object(o)) => {
                        o.remove(last)
                            .ok_or((422, format!("remove of missing {path}")))?;
                    }
                    Some(Value::Array(a)) => {
                        let i: usize = last
                            .parse()
                            .map_err(|_| (422, format!("bad index in {path}")))?;
                        if i >= a.len() {
                            return Err((422, format!("index out of range in {path}")));
                        }
                        a.remove(i);
                    }
                    _ => return Err((422, format!("remove of missing {path}"))),
                }
            }
            other => return Err((422, format!("unsupported JSON patch op {other:?}"))),
        }
    }
    Ok(())
}

fn labels_match(obj: &Value, selector: &str) -> bool {
    let labels = obj.pointer("/metadata/labels").and_then(|l| l.as_object());
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(|v| v.as_str());
    let mut terms = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    terms.push(cur);
    terms
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .all(|t| {
            if let Some((k, v)) = t.split_once("!=") {
                get(k.trim()) != Some(v.trim())
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                get(k.trim()) == Some(v.trim())
            } else if let Some((k, set)) = t.split_once(" notin ") {
                let set: Vec<&str> = set
                    .trim()
                    .trim_matches(|c| c == '(' || c == ')')
                    .split(',')
                    .map(str::trim)
                    .collect();
                !get(k.trim()).is_some_and(|v| set.contains(&v))
            } else if let Some((k, set)) = t.split_once(" in ") {
                let set: Vec<&str> = set
                    .trim()
                    .trim_matches(|c| c == '(' || c == ')')
                    .split(',')
                    .map(str::trim)
                    .collect();
                get(k.trim()).is_some_and(|v| set.contains(&v))
            } else if let Some(k) = t.strip_prefix('!') {
                get(k.trim()).is_none()
            } else {
                get(t).is_some()
            }
        })
}

fn fields_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|t| {
        let (k, v, neg) = match t.split_once("!=") {
            Some((k, v)) => (k, v, true),
            None => match t.split_once("==").or_else(|| t.split_once('=')) {
                Some((k, v)) => (k, v, false),
                None => return true,
            },
        };
        let actual = match k {
            "metadata.name" => obj.pointer("/metadata/name"),
            "metadata.namespace" => obj.pointer("/metadata/namespace"),
            _ => return true,
        }
        .and_then(|x| x.as_str());
        (actual == Some(v)) != neg
    })
}

fn query_map(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn kind_for(plural: &str) -> String {
    match plural {
        "deploymentgates" => "DeploymentGate".into(),
        "releasepauses" => "ReleasePause".into(),
        "events" => "Event".into(),
        "leases" => "Lease".into(),
        "configmaps" => "ConfigMap".into(),
        "deployments" => "Deployment".into(),
        "statefulsets" => "StatefulSet".into(),
        "daemonsets" => "DaemonSet".into(),
        "namespaces" => "Namespace".into(),
        other => {
            let mut c = other.trim_end_matches('s').chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        }
    }
}

/// Where the CRDs live, as on a real API server.
pub const CRDS: &str = "apiextensions.k8s.io/v1/customresourcedefinitions";

/// `GET /apis/{group}/{version}`: the resources of the CRDs stored for that
/// group and version, or 404 when there are none, as the API server answers
/// before the CRDs are applied.
fn discovery(fake: &FakeKube, group: &str, version: &str) -> Response {
    let resources: Vec<Value> = fake.map_objects(CRDS, |crd| {
        let spec = &crd["spec"];
        let served = spec["versions"].as_array().is_some_and(|vs| {
            vs.iter()
                .any(|v| v["name"] == version && v["served"] == true)
        });
        (spec["group"] == group && served).then(|| {
            json!({
                "name": spec["names"]["plural"], "singularName": spec["names"]["singular"],
                "namespaced": spec["scope"] == "Namespaced", "kind": spec["names"]["kind"],
                "verbs": ["delete", "get", "list", "patch", "create", "update", "watch"],
            })
        })
    });
    if resources.is_empty() {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    ok(
        200,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{group}/{version}"), "resources": resources}),
    )
}

impl FakeKube {
    /// Stores both CRDs as this binary generates them, as `kubectl apply` would.
    pub fn install_crds(&self) {
        for crd in tollgate::api::crds() {
            self.put(CRDS, serde_json::to_value(&crd).expect("a CRD is JSON"));
        }
    }

    /// Starts the server on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> FakeKube {
        let (events, _) = broadcast::channel(BROADCAST);
        let inner = Arc::new(Mutex::new(Inner {
            rv: 1,
            uid: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            log: Vec::new(),
            fail_writes: VecDeque::new(),
            fail_named: HashMap::new(),
            delay: Duration::ZERO,
            watch_lag: Duration::ZERO,
            user: "test-user".into(),
            history_limit: HISTORY,
            decision_stored: BTreeMap::new(),
            keep_events: true,
            requests: None,
            allowed_namespaces: None,
            before_delete: HashMap::new(),
            denied: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let fake = FakeKube {
            inner,
            events,
            url: format!("http://{addr}"),
        };
        let app = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A kube client talking to this server, default namespace `default`.
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().expect("fake url"));
        config.default_namespace = "default".into();
        config.read_timeout = Some(Duration::from_secs(300));
        kube::Client::try_from(config).expect("client for the fake API")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every stored object of a collection (`group/version/plural`, e.g. `tollgate.dev/v1alpha1/deploymentgates`).
    pub fn objects(&self, collection: &str) -> Vec<Value> {
        self.lock()
            .objects
            .get(collection)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// How many stored objects of a collection satisfy `f`, without copying them.
    #[allow(dead_code)]
    pub fn count_where(&self, collection: &str, f: impl Fn(&Value) -> bool) -> usize {
        self.lock()
            .objects
            .get(collection)
            .map(|m| m.values().filter(|o| f(o)).count())
            .unwrap_or_default()
    }

    /// `f` of every stored object of a collection, without copying the objects.
    #[allow(dead_code)]
    pub fn map_objects<T>(&self, collection: &str, f: impl FnMut(&Value) -> Option<T>) -> Vec<T> {
        self.lock()
            .objects
            .get(collection)
            .map(|m| m.values().filter_map(f).collect())
            .unwrap_or_default()
    }

    /// When the write that first stored each object's `status.decision` landed
    /// (its decision write), by (namespace, name).
    #[allow(dead_code)]
    pub fn decisions_stored(&self) -> BTreeMap<(String, String), jiff::Timestamp> {
        self.lock().decision_stored.clone()
    }

    /// One stored object.
    pub fn get(&self, collection: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(collection)
            .and_then(|m| m.get(&(namespace.to_string(), name.to_string())).cloned())
    }

    /// The write log.
    pub fn writes(&self) -> Vec<WriteLog> {
        self.lock().log.clone()
    }

    /// Events (events.k8s.io/v1) stored so far.
    pub fn events(&self) -> Vec<Value> {
        self.objects("events.k8s.io/v1/events")
    }

    /// Fails the next writes with these HTTP codes, one per write.
    pub fn fail_next_writes(&self, codes: &[u16]) {
        self.lock().fail_writes.extend(codes.iter().copied());
    }

    /// Fails the next writes to the object called `name` (any collection)
    /// with these status codes; writes to other objects go through.
    pub fn fail_next_writes_to(&self, name: &str, codes: &[u16]) {
        self.lock()
            .fail_named
            .entry(name.to_string())
            .or_default()
            .extend(codes.iter().copied());
    }

    /// Records every request from now on (see [`FakeKube::requests`]).
    pub fn record_requests(&self) {
        self.lock().requests.get_or_insert_with(Vec::new);
    }

    /// The requests recorded so far.
    pub fn requests(&self) -> Vec<RequestLog> {
        self.lock().requests.clone().unwrap_or_default()
    }

    /// Namespaced RBAC, as a Role per namespace grants it: a request for a
    /// namespaced resource outside `namespaces`, or across all namespaces,
    /// is refused with 403.
    pub fn allow_only_namespaces(&self, namespaces: &[&str]) {
        self.lock().allowed_namespaces = Some(namespaces.iter().map(|n| n.to_string()).collect());
    }

    /// When the next DELETE of the object called `name` arrives, `change`
    /// is applied to it first (a new resourceVersion, a watch event), as if
    /// another writer had just won the race.
    pub fn before_delete_of(&self, name: &str, change: impl FnOnce(&mut Value) + Send + 'static) {
        self.lock()
            .before_delete
            .insert(name.to_string(), Box::new(change));
    }

    /// Delays every response (a slow API server).
    pub fn set_delay(&self, d: Duration) {
        self.lock().delay = d;
    }

    /// Delays every live watch event of watches opened from now on (a
    /// watch cache that lags behind the writes).
    pub fn set_watch_lag(&self, d: Duration) {
        self.lock().watch_lag = d;
    }

    /// RBAC that does not grant `verb` on `resource` (`deploymentgates`,
    /// `deploymentgates/status`, any group): SelfSubjectAccessReview answers
    /// not allowed for it, as it does outside [`FakeKube::allow_only_namespaces`].
    pub fn deny(&self, verb: &str, resource: &str) {
        self.lock()
            .denied
            .push((verb.to_string(), resource.to_string()));
    }

    /// The user SelfSubjectReview reports.
    pub fn set_user(&self, user: &str) {
        self.lock().user = user.to_string();
    }

    /// Stores an object directly (as an administrator would), returning it.
    pub fn put(&self, collection: &str, mut obj: Value) -> Value {
        let mut inner = self.lock();
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let name = obj
            .pointer("/metadata/name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        inner.rv += 1;
        inner.uid += 1;
        let (rv, uid) = (inner.rv, inner.uid);
        let meta = obj["metadata"].as_object_mut().expect("metadata");
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.entry("uid").or_insert(json!(format!("uid-{uid}")));
        meta.entry("creationTimestamp")
            .or_insert(json!(now_rfc3339()));
        meta.entry("generation").or_insert(json!(1));
        let existed = inner
            .objects
            .entry(collection.to_string())
            .or_default()
            .insert((ns.clone(), name), obj.clone())
            .is_some();
        let kind = if existed { "MODIFIED" } else { "ADDED" };
        self.emit(
            &mut inner,
            WatchEvent {
                rv,
                collection: collection.to_string(),
                namespace: ns,
                kind,
                object: Snapshot::of(&obj),
            },
        );
        obj
    }

    /// Keeps fewer past watch events (watchers further behind get 410 and relist).
    pub fn set_history_limit(&self, n: usize) {
        self.lock().history_limit = n.max(1);
    }

    /// Accepts Events without storing them (the write log still counts them):
    /// for the benchmark, whose memory figure is about the operator.
    pub fn discard_events(&self) {
        self.lock().keep_events = false;
    }

    fn emit(&self, inner: &mut Inner, e: WatchEvent) {
        inner.history.push_back(e.clone());
        let limit = inner.history_limit;
        while inner.history.len() > limit {
            inner.history.pop_front();
        }
        let _ = self.events.send(e);
    }
}

async fn handle(State(fake): State<FakeKube>, req: Request) -> Response {
    let delay = fake.lock().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let method = req.method().clone();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let body = match axum::body::to_bytes(req.into_body(), 64 << 20).await {
        Ok(b) => b,
        Err(_) => return status(413, "RequestEntityTooLarge", "body too large"),
    };
    let path = uri.path();
    if path == "/version" {
        return ok(
            200,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake"}),
        );
    }
    if let ["apis", group, version] = path.trim_matches('/').split('/').collect::<Vec<_>>()[..] {
        return discovery(&fake, group, version);
    }
    let Some(t) = parse_path(path) else {
        return status(
            404,
            "NotFound",
            &format!("the server could not find the requested resource {path}"),
        );
    };
    let q = query_map(uri.query());
    let forbidden = {
        let mut inner = fake.lock();
        let forbidden = inner.allowed_namespaces.as_ref().is_some_and(|allowed| {
            namespaced(&t) && t.namespace.as_ref().is_none_or(|ns| !allowed.contains(ns))
        });
        if let Some(log) = inner.requests.as_mut() {
            log.push(RequestLog {
                method: method.to_string(),
                collection: t.collection.clone(),
                namespace: t.namespace.clone(),
                name: t.name.clone(),
                watch: q.get("watch").is_some_and(|w| w == "true" || w == "1"),
                label_selector: q.get("labelSelector").cloned(),
                forbidden,
            });
        }
        forbidden
    };
    if forbidden {
        let scope = match &t.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        return status(
            403,
            "Forbidden",
            &format!(
                "{}.{} is forbidden: User \"system:serviceaccount:tollgate:tollgate\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
                t.plural,
                t.group,
                method.as_str().to_lowercase(),
                t.plural,
                t.group
            ),
        );
    }
    if t.group == "authentication.k8s.io"
        && t.plural == "selfsubjectreviews"
        && method == Method::POST
    {
        let user = fake.lock().user.clone();
        return ok(
            201,
            &json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {},
                "status": {"userInfo": {"username": user, "groups": ["system:authenticated"]}},
            }),
        );
    }
    if t.group == "authorization.k8s.io"
        && t.plural == "selfsubjectaccessreviews"
        && method == Method::POST
    {
        let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let attrs = &review["spec"]["resourceAttributes"];
        let field = |k: &str| attrs[k].as_str().unwrap_or("").to_string();
        let resource = match field("subresource").as_str() {
            "" => field("resource"),
            sub => format!("{}/{sub}", field("resource")),
        };
        let (verb, namespace) = (field("verb"), field("namespace"));
        let inner = fake.lock();
        let denied = inner
            .denied
            .iter()
            .any(|(v, r)| *v == verb && *r == resource);
        let outside = inner
            .allowed_namespaces
            .as_ref()
            .is_some_and(|allowed| !allowed.contains(&namespace));
        let allowed = !denied && !outside;
        let mut answer = review.clone();
        answer["status"] = if allowed {
            json!({"allowed": true, "reason": "RBAC: allowed by the fake"})
        } else {
            json!({"allowed": false})
        };
        return ok(201, &answer);
    }
    // Bound first: a guard in the `if let` condition would live through the
    // block below (edition 2024) and `fake.log` would deadlock on the mutex.
    let injected = if method != Method::GET {
        let mut inner = fake.lock();
        let named = t
            .name
            .as_ref()
            .and_then(|n| inner.fail_named.get_mut(n))
            .and_then(|q| q.pop_front());
        named.or_else(|| inner.fail_writes.pop_front())
    } else {
        None
    };
    if let Some(code) = injected {
        let reason = if code == 409 {
            "Conflict"
        } else {
            "InternalError"
        };
        fake.log(&t, &method, &headers, code, false);
        return status(code, reason, "injected failure");
    }
    match (method.clone(), t.name.is_some()) {
        (Method::GET, false) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(fake, t, q)
        }
        (Method::GET, false) => list(&fake, &t, &q),
        (Method::GET, true) => {
            let inner = fake.lock();
            match lookup(&inner, &t) {
                Some(o) => ok(200, o),
                None => not_found(&t),
            }
        }
        (Method::POST, false) => create(&fake, &t, &body, &headers),
        (Method::PUT, true) => update(&fake, &t, &body, &headers, &method),
        (Method::PATCH, true) => update(&fake, &t, &body, &headers, &method),
        (Method::DELETE, true) => delete(&fake, &t, &body, &headers),
        _ => status(405, "MethodNotAllowed", "method not allowed"),
    }
}

/// Whether the resource lives in namespaces (everything but a few cluster-wide kinds).
fn namespaced(t: &Target) -> bool {
    !matches!(
        t.plural.as_str(),
        "namespaces"
            | "customresourcedefinitions"
            | "selfsubjectreviews"
            | "selfsubjectaccessreviews"
            | "nodes"
    )
}

fn not_found(t: &Target) -> Response {
    status(
        404,
        "NotFound",
        &format!(
            "{}.{} \"{}\" not found",
            t.plural,
            t.group,
            t.name.as_deref().unwrap_or("")
        ),
    )
}

fn lookup<'a>(inner: &'a Inner, t: &Target) -> Option<&'a Value> {
    inner.objects.get(&t.collection)?.get(&(
        t.namespace.clone().unwrap_or_default(),
        t.name.clone().unwrap_or_default(),
    ))
}

impl FakeKube {
    fn log(&self, t: &Target, method: &Method, headers: &HeaderMap, code: u16, changed: bool) {
        let patch_type = headers
            .get("content-type")
            .and_then(|c| c.to_str().ok())
            .map(str::to_string);
        self.lock().log.push(WriteLog {
            method: method.to_string(),
            collection: t.collection.clone(),
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            status_subresource: t.sub.as_deref() == Some("status"),
            patch_type: if *method == Method::PATCH {
                patch_type
            } else {
                None
            },
            code,
            changed,
            at: jiff::Timestamp::now(),
        });
    }
}

fn has_status_subresource(t: &Target) -> bool {
    t.group == "tollgate.dev"
}

fn list(fake: &FakeKube, t: &Target, q: &BTreeMap<String, String>) -> Response {
    let inner = fake.lock();
    let items: Vec<Value> = inner
        .objects
        .get(&t.collection)
        .map(|m| {
            m.iter()
                .filter(|((ns, _), _)| t.namespace.as_ref().is_none_or(|want| want == ns))
                .map(|(_, o)| o)
                .filter(|o| q.get("labelSelector").is_none_or(|s| labels_match(o, s)))
                .filter(|o| q.get("fieldSelector").is_none_or(|s| fields_match(o, s)))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let api_version = if t.group.is_empty() {
        t.version.clone()
    } else {
        format!("{}/{}", t.group, t.version)
    };
    ok(
        200,
        &json!({
            "kind": format!("{}List", kind_for(&t.plural)),
            "apiVersion": api_version,
            "metadata": {"resourceVersion": inner.rv.to_string()},
            "items": items,
        }),
    )
}

fn watch(fake: FakeKube, t: Target, q: BTreeMap<String, String>) -> Response {
    let from: Option<u64> = q
        .get("resourceVersion")
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0);
    let selector = q.get("labelSelector").cloned();
    let fields = q.get("fieldSelector").cloned();
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(300);
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let mut rx = fake.events.subscribe();
    let lag = fake.lock().watch_lag;
    let (initial, current_rv, expired) = {
        let inner = fake.lock();
        let matches = |e: &WatchEvent| {
            e.collection == t.collection && t.namespace.as_ref().is_none_or(|n| *n == e.namespace)
        };
        match from {
            Some(rv) => {
                let oldest = inner.history.front().map(|e| e.rv).unwrap_or(inner.rv + 1);
                if rv + 1 < oldest && inner.history.len() >= inner.history_limit {
                    (Vec::new(), inner.rv, true)
                } else {
                    let evs: Vec<WatchEvent> = inner
                        .history
                        .iter()
                        .filter(|e| e.rv > rv && matches(e))
                        .cloned()
                        .collect();
                    (evs, inner.rv, false)
                }
            }
            None => {
                let evs: Vec<WatchEvent> = inner
                    .objects
                    .get(&t.collection)
                    .map(|m| {
                        m.iter()
                            .filter(|((ns, _), _)| t.namespace.as_ref().is_none_or(|n| n == ns))
                            .map(|((ns, _), o)| WatchEvent {
                                rv: 0,
                                collection: t.collection.clone(),
                                namespace: ns.clone(),
                                kind: "ADDED",
                                object: Snapshot::of(o),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (evs, inner.rv, false)
            }
        }
    };
    let kind = kind_for(&t.plural);
    let api_version = if t.group.is_empty() {
        t.version.clone()
    } else {
        format!("{}/{}", t.group, t.version)
    };
    let line = |kind: &str, object: &Value| {
        Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
    };
    let event_line = |kind: &str, s: &Snapshot| {
        let mut b = Vec::with_capacity(s.json.len() + 32);
        b.extend_from_slice(format!("{{\"type\":\"{kind}\",\"object\":").as_bytes());
        b.extend_from_slice(&s.json);
        b.extend_from_slice(b"}\n");
        Bytes::from(b)
    };
    let stream = async_stream_lines(move |tx| async move {
        if expired {
            let s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "too old resource version", "reason": "Expired", "code": 410});
            let _ = tx.send(line("ERROR", &s)).await;
            return;
        }
        let filter = |o: &Value| {
            selector.as_ref().is_none_or(|s| labels_match(o, s))
                && fields.as_ref().is_none_or(|s| fields_match(o, s))
        };
        let mut last = from.unwrap_or(current_rv);
        for e in initial {
            last = last.max(e.rv);
            if filter(&e.object.meta) && tx.send(event_line(e.kind, &e.object)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tick.tick(), if bookmarks => {
                    let b = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last.to_string()}});
                    if tx.send(line("BOOKMARK", &b)).await.is_err() { return; }
                }
                e = rx.recv() => match e {
                    Ok(e) => {
                        if e.rv <= last || e.collection != t.collection || t.namespace.as_ref().is_some_and(|n| *n != e.namespace) {
                            continue;
                        }
                        last = e.rv;
                        if !lag.is_zero() {
                            tokio::time::sleep(lag).await;
                        }
                        if filter(&e.object.meta) && tx.send(event_line(e.kind, &e.object)).await.is_err() { return; }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "watch lagged", "reason": "Expired", "code": 410});
                        let _ = tx.send(line("ERROR", &s)).await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        }
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .expect("watch response")
}

/// A body stream fed by a task through a channel.
fn async_stream_lines<F, Fut>(f: F) -> impl futures::Stream<Item = Result<Bytes, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1024);
    tokio::spawn(f(tx));
    tokio_stream_from(rx).map(Ok)
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> impl futures::Stream<Item = Bytes> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn create(fake: &FakeKube, t: &Target, body: &Bytes, headers: &HeaderMap) -> Response {
    let mut obj: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", &format!("invalid JSON: {e}")),
    };
    let mut inner = fake.lock();
    let ns = t.namespace.clone().unwrap_or_default();
    let name = match obj.pointer("/metadata/name").and_then(|n| n.as_str()) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => match obj
            .pointer("/metadata/generateName")
            .and_then(|n| n.as_str())
        {
            Some(prefix) => format!("{prefix}{:05x}", inner.uid + 1),
            None => {
                drop(inner);
                fake.log(t, &Method::POST, headers, 422, false);
                return status(
                    422,
                    "Invalid",
                    "metadata.name: Required value: name or generateName is required",
                );
            }
        },
    };
    if inner
        .objects
        .get(&t.collection)
        .is_some_and(|m| m.contains_key(&(ns.clone(), name.clone())))
    {
        drop(inner);
        fake.log(t, &Method::POST, headers, 409, false);
        return status(
            409,
            "AlreadyExists",
            &format!("{}.{} \"{name}\" already exists", t.plural, t.group),
        );
    }
    inner.rv += 1;
    inner.uid += 1;
    let (rv, uid) = (inner.rv, inner.uid);
    {
        let meta = obj
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert(json!({})));
        let Some(Value::Object(meta)) = meta else {
            return status(400, "BadRequest", "metadata must be an object");
        };
        meta.insert("name".into(), json!(name));
        if t.namespace.is_some() {
            meta.insert("namespace".into(), json!(ns));
        }
        meta.insert("uid".into(), json!(format!("uid-{uid}")));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("generation".into(), json!(1));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.remove("deletionTimestamp");
    }
    if has_status_subresource(t)
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    if !inner.keep_events && t.plural == "events" {
        drop(inner);
        fake.log(t, &Method::POST, headers, 201, true);
        return ok(201, &obj);
    }
    inner
        .objects
        .entry(t.collection.clone())
        .or_default()
        .insert((ns.clone(), name), obj.clone());
    fake.emit(
        &mut inner,
        WatchEvent {
            rv,
            collection: t.collection.clone(),
            namespace: ns,
            kind: "ADDED",
            object: Snapshot::of(&obj),
        },
    );
    drop(inner);
    fake.log(t, &Method::POST, headers, 201, true);
    ok(201, &obj)
}

fn update(
    fake: &FakeKube,
    t: &Target,
    body: &Bytes,
    headers: &HeaderMap,
    method: &Method,
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|c| c.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let patch: Value = if content_type.contains("yaml") {
        match serde_yaml_ng::from_slice(body) {
            Ok(v) => v,
            Err(e) => return status(400, "BadRequest", &format!("invalid YAML: {e}")),
        }
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return status(400, "BadRequest", &format!("invalid JSON: {e}")),
        }
    };
    let status_sub = t.sub.as_deref() == Some("status");
    let mut inner = fake.lock();
    let key = (
        t.namespace.clone().unwrap_or_default(),
        t.name.clone().unwrap_or_default(),
    );
    let existing = inner
        .objects
        .get(&t.collection)
        .and_then(|m| m.get(&key))
        .cloned();
    let apply = content_type.contains("apply-patch");
    let (old, creating) = match existing {
        Some(o) => (o, false),
        None if apply => (Value::Null, true),
        None => {
            drop(inner);
            fake.log(t, method, headers, 404, false);
            return not_found(t);
        }
    };
    if creating {
        drop(inner);
        let resp = create(fake, t, &Bytes::from(patch.to_string()), headers);
        return resp;
    }
    let current_rv = old
        .pointer("/metadata/resourceVersion")
        .and_then(|r| r.as_str())
        .unwrap_or("")
        .to_string();
    let mut new = old.clone();
    let result: Result<(), (u16, String)> = if *method == Method::PUT {
        new = patch.clone();
        Ok(())
    } else if content_type.contains("json-patch") {
        match patch.as_array() {
            Some(ops) => json_patch(&mut new, ops),
            None => Err((400, "a JSON patch must be an array".into())),
        }
    } else if content_type.contains("merge-patch") || apply {
        merge_patch(&mut new, &patch);
        Ok(())
    } else if content_type.contains("strategic-merge-patch") {
        if has_status_subresource(t) {
            Err((
                415,
                "strategic merge patch is not supported for custom resources".into(),
            ))
        } else {
            merge_patch(&mut new, &patch);
            Ok(())
        }
    } else {
        Err((415, format!("unsupported content type {content_type}")))
    };
    if let Err((code, msg)) = result {
        drop(inner);
        fake.log(t, method, headers, code, false);
        let reason = if code == 415 {
            "UnsupportedMediaType"
        } else {
            "Invalid"
        };
        return status(code, reason, &msg);
    }
    // Optimistic concurrency: a resourceVersion in the body must be current.
    let sent_rv = new
        .pointer("/metadata/resourceVersion")
        .and_then(|r| r.as_str())
        .map(str::to_string);
    let precondition = if *method == Method::PUT || content_type.contains("merge-patch") {
        patch
            .pointer("/metadata/resourceVersion")
            .and_then(|r| r.as_str())
            .map(str::to_string)
    } else {
        sent_rv.filter(|r| *r != current_rv)
    };
    if let Some(rv) = precondition
        && rv != current_rv
    {
        drop(inner);
        fake.log(t, method, headers, 409, false);
        return status(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {}.{} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                t.plural, t.group, key.1
            ),
        );
    }
    // The status subresource changes only status; the main resource never does.
    if has_status_subresource(t) {
        let mut merged = old.clone();
        if status_sub {
            match new.get("status") {
                Some(s) => {
                    merged["status"] = s.clone();
                }
                None => {
                    if let Some(o) = merged.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        } else {
            let keep_status = old.get("status").cloned();
            merged = new.clone();
            match keep_status {
                Some(s) => merged["status"] = s,
                None => {
                    if let Some(o) = merged.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        new = merged;
    }
    // Identity fields are the server's.
    for field in [
        "uid",
        "creationTimestamp",
        "name",
        "namespace",
        "deletionTimestamp",
        "generation",
    ] {
        match old.pointer(&format!("/metadata/{field}")) {
            Some(v) => new["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = new.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                    m.remove(field);
                }
            }
        }
    }
    let deleting = old.pointer("/metadata/deletionTimestamp").is_some();
    let old_finalizers: Vec<Value> = old
        .pointer("/metadata/finalizers")
        .and_then(|f| f.as_array())
        .cloned()
        .unwrap_or_default();
    let new_finalizers: Vec<Value> = new
        .pointer("/metadata/finalizers")
        .and_then(|f| f.as_array())
        .cloned()
        .unwrap_or_default();
    if deleting && new_finalizers.iter().any(|f| !old_finalizers.contains(f)) {
        drop(inner);
        fake.log(t, method, headers, 422, false);
        return status(
            422,
            "Invalid",
            "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted",
        );
    }
    if comparable(&new) == comparable(&old) {
        drop(inner);
        fake.log(t, method, headers, 200, false);
        return ok(200, &old);
    }
    if spec_part(&new) != spec_part(&old) {
        let g = old
            .pointer("/metadata/generation")
            .and_then(|g| g.as_i64())
            .unwrap_or(1);
        new["metadata"]["generation"] = json!(g + 1);
    }
    inner.rv += 1;
    let rv = inner.rv;
    new["metadata"]["resourceVersion"] = json!(rv.to_string());
    if old.pointer("/status/decision").is_none_or(Value::is_null)
        && new
            .pointer("/status/decision")
            .is_some_and(|d| !d.is_null())
    {
        inner
            .decision_stored
            .insert(key.clone(), jiff::Timestamp::now());
    }
    let ns = key.0.clone();
    if deleting && new_finalizers.is_empty() {
        inner.objects.get_mut(&t.collection).map(|m| m.remove(&key));
        fake.emit(
            &mut inner,
            WatchEvent {
                rv,
                collection: t.collection.clone(),
                namespace: ns,
                kind: "DELETED",
                object: Snapshot::of(&new),
            },
        );
    } else {
        inner
            .objects
            .entry(t.collection.clone())
            .or_default()
            .insert(key, new.clone());
        fake.emit(
            &mut inner,
            WatchEvent {
                rv,
                collection: t.collection.clone(),
                namespace: ns,
                kind: "MODIFIED",
                object: Snapshot::of(&new),
            },
        );
    }
    drop(inner);
    fake.log(t, method, headers, 200, true);
    ok(200, &new)
}

fn delete(fake: &FakeKube, t: &Target, body: &Bytes, headers: &HeaderMap) -> Response {
    let mut inner = fake.lock();
    let key = (
        t.namespace.clone().unwrap_or_default(),
        t.name.clone().unwrap_or_default(),
    );
    let Some(mut old) = inner
        .objects
        .get(&t.collection)
        .and_then(|m| m.get(&key))
        .cloned()
    else {
        drop(inner);
        fake.log(t, &Method::DELETE, headers, 404, false);
        return not_found(t);
    };
    // Another writer got there first: its change lands before this delete.
    if let Some(change) = inner.before_delete.remove(&key.1) {
        change(&mut old);
        inner.rv += 1;
        let rv = inner.rv;
        old["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner
            .objects
            .entry(t.collection.clone())
            .or_default()
            .insert(key.clone(), old.clone());
        fake.emit(
            &mut inner,
            WatchEvent {
                rv,
                collection: t.collection.clone(),
                namespace: key.0.clone(),
                kind: "MODIFIED",
                object: Snapshot::of(&old),
            },
        );
    }
    // DeleteOptions.preconditions: refused unless the object is still the one named.
    let options: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    for (field, pointer) in [
        ("uid", "/metadata/uid"),
        ("resourceVersion", "/metadata/resourceVersion"),
    ] {
        let Some(want) = options
            .pointer(&format!("/preconditions/{field}"))
            .and_then(|v| v.as_str())
        else {
            continue;
        };
        let have = old.pointer(pointer).and_then(|v| v.as_str()).unwrap_or("");
        if want != have {
            drop(inner);
            fake.log(t, &Method::DELETE, headers, 409, false);
            return status(
                409,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on {}.{} \"{}\": Precondition failed: {field} in precondition: {want}, {field} in object meta: {have}",
                    t.plural, t.group, key.1
                ),
            );
        }
    }
    let finalizers = old
        .pointer("/metadata/finalizers")
        .and_then(|f| f.as_array())
        .is_some_and(|f| !f.is_empty());
    inner.rv += 1;
    let rv = inner.rv;
    let ns = key.0.clone();
    if finalizers {
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            drop(inner);
            fake.log(t, &Method::DELETE, headers, 200, false);
            return ok(200, &old);
        }
        let mut new = old.clone();
        new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        let g = old
            .pointer("/metadata/generation")
            .and_then(|g| g.as_i64())
            .unwrap_or(1);
        new["metadata"]["generation"] = json!(g + 1);
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner
            .objects
            .entry(t.collection.clone())
            .or_default()
            .insert(key, new.clone());
        fake.emit(
            &mut inner,
            WatchEvent {
                rv,
                collection: t.collection.clone(),
                namespace: ns,
                kind: "MODIFIED",
                object: Snapshot::of(&new),
            },
        );
        drop(inner);
        fake.log(t, &Method::DELETE, headers, 200, true);
        return ok(200, &new);
    }
    inner.objects.get_mut(&t.collection).map(|m| m.remove(&key));
    let mut gone = old.clone();
    gone["metadata"]["resourceVersion"] = json!(rv.to_string());
    fake.emit(
        &mut inner,
        WatchEvent {
            rv,
            collection: t.collection.clone(),
            namespace: ns,
            kind: "DELETED",
            object: Snapshot::of(&gone),
        },
    );
    drop(inner);
    fake.log(t, &Method::DELETE, headers, 200, true);
    ok(200, &gone)
}
