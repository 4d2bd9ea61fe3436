//! A fake GitHub API on 127.0.0.1 for tests, the benchmark and e2e, following
//! GitHub's documented behaviour (REST 2022-11-28): the
//! deployment protection rule review (204, then 422 once answered; 422 for a
//! comment over 1024 characters or an 11th status report on a deployment;
//! environment names case-insensitive), the environments a run waits on
//! (`pending_deployments`), the run's
//! review history (`approvals`, each entry with its reviewer's login), the
//! authenticated App (`GET /app`, JWT only) and user (`GET /user`, not for
//! installation tokens), workflow runs, check runs and commit statuses,
//! installation tokens, the App's webhook deliveries, scripted and seeded
//! random faults, and a log of every request with its (tokio) arrival time.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// A throwaway RSA key for App-mode tests only; it authenticates nothing anywhere.
pub const TEST_APP_KEY: &str = include_str!("test_app_key.pem");

/// One request the fake saw.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    /// Every header of the request, as sent.
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub at: tokio::time::Instant,
    pub status: u16,
}

/// A scripted answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and GitHub-style message.
    Status(u16, &'static str),
    /// Never answer (the client times out); the request still takes effect when `lands`.
    Hang { lands: bool },
    /// Drop the connection without an answer; the request still takes effect when `lands`.
    Reset { lands: bool },
    /// 403 secondary rate limit, with an optional `retry-after`.
    SecondaryLimit { retry_after: Option<u64> },
    /// 429 with `retry-after`.
    RetryAfter(u64),
    /// 403 with the primary limit spent, resetting in this many seconds.
    PrimaryExhausted { reset_in: u64 },
    /// 401 (an expired token).
    Unauthorized,
    /// 307 Temporary Redirect to this URL (e.g. another host).
    Redirect(String),
}

/// Seeded random faults for load and fault-injection tests.
pub struct RandomFaults {
    pub share: f64,
    pub rng: StdRng,
    /// The kinds drawn from, uniformly.
    pub kinds: Vec<FaultKind>,
}

/// The kinds of fault `random_faults` draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// 500.
    ServerError,
    /// 502.
    BadGateway,
    /// 503.
    Unavailable,
    /// No answer; lands or not at random.
    Hang,
    /// Connection reset; lands or not at random.
    Reset,
    /// 403 secondary rate limit with `retry-after: 1`.
    SecondaryLimit,
    /// 429 with `retry-after: 1`.
    RetryAfter,
    /// 401.
    Unauthorized,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::ServerError,
        FaultKind::BadGateway,
        FaultKind::Hang,
        FaultKind::Reset,
        FaultKind::SecondaryLimit,
        FaultKind::RetryAfter,
        FaultKind::Unauthorized,
        FaultKind::Unavailable,
    ];
}

/// The commit a workflow run reports as its `head_sha` unless a test sets
/// another with [`FakeGitHub::set_run_head`]: the suite's usual test commit.
pub const DEFAULT_HEAD_SHA: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";

#[derive(Default)]
struct Run {
    gone: bool,
    /// `None`: [`DEFAULT_HEAD_SHA`].
    head_sha: Option<String>,
    status: String,
    conclusion: Option<String>,
    /// environment (lowercased: GitHub's names are case-insensitive) →
    /// (state, login, comment)
    answers: HashMap<String, (String, String, String)>,
    /// Environments the run has asked about (lowercased → as first spelled):
    /// it waits on those not answered (`pending_deployments`).
    asked: HashMap<String, String>,
    /// Status reports per environment (lowercased): GitHub keeps 10.
    reports: HashMap<String, u32>,
    /// The review history as `GET …/approvals` lists it, oldest first: every
    /// answer, and reviews that answer no protection rule of ours (an
    /// environment's required reviewers).
    history: Vec<Value>,
}

#[derive(Default)]
struct GhState {
    requests: Vec<Recorded>,
    runs: HashMap<i64, Run>,
    check_runs: HashMap<String, Vec<Value>>,
    statuses: HashMap<String, Vec<Value>>,
    script: HashMap<&'static str, VecDeque<Fault>>,
    random: Option<RandomFaults>,
    tokens_minted: u32,
    /// The App's installation on every repository (default 42); a reinstall
    /// changes it, and the old one's tokens stop working.
    installation: Option<i64>,
    /// Installations removed (their token mints answer 404).
    removed_installations: Vec<i64>,
    /// Repositories (lower case) the App is not installed on: their
    /// installation lookup answers 404.
    not_installed: Vec<String>,
    deliveries: Vec<Value>,
    payloads: HashMap<i64, Value>,
    redelivered: Vec<i64>,
    accepted: HashMap<(i64, String), u32>,
    comments: HashMap<(i64, String), u32>,
    /// The App's slug (`GET /app`); its bot user `<slug>[bot]` gives the
    /// answers sent with an installation token. Default `tollgate`.
    app_slug: Option<String>,
    /// The user of a plain token (`GET /user`), who gives the answers sent
    /// with it. Default: the App's bot login.
    token_login: Option<String>,
}

impl GhState {
    fn app_slug(&self) -> String {
        self.app_slug.clone().unwrap_or_else(|| "tollgate".into())
    }

    fn bot_login(&self) -> String {
        format!("{}[bot]", self.app_slug())
    }

    fn token_login(&self) -> String {
        self.token_login.clone().unwrap_or_else(|| self.bot_login())
    }
}

/// The credentials a request carried, as GitHub tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Credential {
    /// The App's JSON Web Token.
    Jwt,
    /// An installation access token (`ghs_…`).
    Installation,
    /// A plain (personal) token.
    Token,
    None,
}

fn credential(authorization: Option<&str>) -> Credential {
    let Some(token) = authorization.and_then(|a| {
        a.strip_prefix("Bearer ")
            .or_else(|| a.strip_prefix("token "))
    }) else {
        return Credential::None;
    };
    if token.starts_with("ghs_") {
        Credential::Installation
    } else if token.starts_with("eyJ") && token.split('.').count() == 3 {
        Credential::Jwt
    } else {
        Credential::Token
    }
}

/// The installation an installation token was minted for (`ghs_fake{n}_i{id}`).
fn token_installation(authorization: Option<&str>) -> Option<i64> {
    let token = authorization?
        .strip_prefix("Bearer ")
        .or_else(|| authorization?.strip_prefix("token "))?;
    token.rsplit_once("_i")?.1.parse().ok()
}

/// The fake server. Clones share state.
#[derive(Clone)]
pub struct FakeGitHub {
    state: Arc<Mutex<GhState>>,
    url: String,
}

static QUIET_RESETS: Once = Once::new();
const RESET: &str = "fake-github: connection reset";

impl FakeGitHub {
    /// Starts the server on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> FakeGitHub {
        QUIET_RESETS.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let quiet = info
                    .payload()
                    .downcast_ref::<&str>()
                    .is_some_and(|m| *m == RESET);
                if !quiet {
                    previous(info);
                }
            }));
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let fake = FakeGitHub {
            state: Arc::default(),
            url: format!("http://{addr}"),
        };
        let app = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    /// The API base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GhState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Requests whose path contains `needle`.
    pub fn requests_to(&self, method: &str, needle: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.contains(needle))
            .collect()
    }

    /// Review POSTs that carried a state, for a run.
    pub fn reviews(&self, run_id: i64) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r.method == "POST"
                    && r.path.ends_with(&format!(
                        "/actions/runs/{run_id}/deployment_protection_rule"
                    ))
                    && r.body.get("state").is_some()
            })
            .collect()
    }

    /// How many answers GitHub accepted (204) for (run, environment).
    pub fn accepted(&self, run_id: i64, environment: &str) -> u32 {
        self.lock()
            .accepted
            .get(&(run_id, environment.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// The answer recorded for (run, environment): (state, login).
    pub fn answer(&self, run_id: i64, environment: &str) -> Option<(String, String)> {
        self.lock()
            .runs
            .get(&run_id)
            .and_then(|r| r.answers.get(&environment.to_lowercase()))
            .map(|(s, l, _)| (s.clone(), l.clone()))
    }

    /// Someone else answers first (e.g. a person in the GitHub UI).
    pub fn answer_as(&self, run_id: i64, environment: &str, state: &str, login: &str) {
        let mut s = self.lock();
        let run = s.runs.entry(run_id).or_default();
        run.answers.insert(
            environment.to_lowercase(),
            (state.to_string(), login.to_string(), String::new()),
        );
        run.history
            .push(history_entry(environment, state, login, ""));
    }

    /// A review in the run's history that answers no rule of ours (a person
    /// approving the environment's required reviewers): `approvals` lists it,
    /// and our own request stays pending.
    pub fn add_review_history(&self, run_id: i64, environment: &str, state: &str, login: &str) {
        let mut s = self.lock();
        let run = s.runs.entry(run_id).or_default();
        run.history.push(history_entry(
            environment,
            state,
            login,
            "approved by a required reviewer",
        ));
    }

    /// The App's slug (`GET /app`); its answers are given by `<slug>[bot]`.
    pub fn set_app_slug(&self, slug: &str) {
        self.lock().app_slug = Some(slug.to_string());
    }

    /// The user a plain token belongs to (`GET /user`), who gives its answers.
    pub fn set_token_login(&self, login: &str) {
        self.lock().token_login = Some(login.to_string());
    }

    /// Status reports posted for (run, environment).
    pub fn comments(&self, run_id: i64, environment: &str) -> u32 {
        self.lock()
            .comments
            .get(&(run_id, environment.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Sets a workflow run's state: `completed` with a conclusion, or `gone`.
    pub fn set_run(&self, run_id: i64, status: &str, conclusion: Option<&str>) {
        let mut s = self.lock();
        let run = s.runs.entry(run_id).or_default();
        run.gone = status == "gone";
        run.status = status.to_string();
        run.conclusion = conclusion.map(str::to_string);
    }

    /// A new request of the run waits on `environment` (a re-run, or a later
    /// job): the earlier answer stays in the approvals, and a new review is
    /// taken again.
    pub fn pending_again(&self, run_id: i64, environment: &str) {
        let mut s = self.lock();
        s.runs
            .entry(run_id)
            .or_default()
            .answers
            .remove(&environment.to_lowercase());
    }

    /// Sets the commit a workflow run reports as its `head_sha`.
    pub fn set_run_head(&self, run_id: i64, sha: &str) {
        self.lock().runs.entry(run_id).or_default().head_sha = Some(sha.to_string());
    }

    /// Adds a check run on a sha.
    pub fn add_check_run(&self, sha: &str, name: &str, status: &str, conclusion: Option<&str>) {
        let mut s = self.lock();
        let list = s.check_runs.entry(sha.to_string()).or_default();
        let id = list.len() as i64 + 1;
        list.push(json!({"id": id, "name": name, "status": status, "conclusion": conclusion}));
    }

    /// Adds a commit status on a sha.
    pub fn add_status(&self, sha: &str, context: &str, state: &str) {
        let mut s = self.lock();
        let list = s.statuses.entry(sha.to_string()).or_default();
        list.retain(|x| x["context"] != context);
        list.insert(0, json!({"context": context, "state": state}));
    }

    /// The App is not installed on `repo` (`owner/name`): its installation
    /// lookup answers 404.
    pub fn not_installed_on(&self, repo: &str) {
        self.lock().not_installed.push(repo.to_lowercase());
    }

    /// Scripts the next answers of a route: `review`, `approvals`, `pending`, `run`, `checks`, `token`, `deliveries`, `installation`.
    pub fn script(&self, route: &'static str, faults: &[Fault]) {
        self.lock()
            .script
            .entry(route)
            .or_default()
            .extend(faults.iter().cloned());
    }

    /// Fails this share of review requests at random, seeded.
    pub fn random_faults(&self, share: f64, seed: u64) {
        self.random_faults_with(share, seed, &FaultKind::ALL);
    }

    /// Fails this share of review requests at random, seeded, with faults of these kinds only.
    pub fn random_faults_with(&self, share: f64, seed: u64, kinds: &[FaultKind]) {
        assert!(!kinds.is_empty(), "random faults need at least one kind");
        self.lock().random = Some(RandomFaults {
            share,
            rng: StdRng::seed_from_u64(seed),
            kinds: kinds.to_vec(),
        });
    }

    /// Review requests (with or without a state) the fake has answered or dropped so far.
    pub fn review_requests(&self) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/deployment_protection_rule"))
            .count()
    }

    /// Stops random faults.
    pub fn no_random_faults(&self) {
        self.lock().random = None;
    }

    /// The App is reinstalled on every repository: `GET …/installation` now
    /// answers `new_id`; the old installation's token mints answer 404 and
    /// its tokens 401 (GitHub revokes them).
    pub fn reinstall(&self, new_id: i64) {
        let mut s = self.lock();
        let old = s.installation.unwrap_or(42);
        s.removed_installations.push(old);
        s.installation = Some(new_id);
    }

    /// The run waits on `environment` (GitHub created the request), as
    /// `pending_deployments` lists it. A review or report to an environment
    /// also marks it asked.
    pub fn waits_on(&self, run_id: i64, environment: &str) {
        let mut s = self.lock();
        s.runs
            .entry(run_id)
            .or_default()
            .asked
            .entry(environment.to_lowercase())
            .or_insert_with(|| environment.to_string());
    }

    /// Adds an App webhook delivery at a given time, with its payload.
    pub fn add_delivery_at(
        &self,
        id: i64,
        event: &str,
        status_code: i64,
        delivered_at: jiff::Timestamp,
        payload: Value,
    ) {
        self.add_delivery(id, event, status_code, payload);
        let mut s = self.lock();
        if let Some(d) = s.deliveries.iter_mut().find(|d| d["id"] == id) {
            d["delivered_at"] = json!(delivered_at.to_string());
        }
        // GitHub lists newest first.
        s.deliveries.sort_by(|a, b| {
            b["delivered_at"]
                .as_str()
                .unwrap_or("")
                .cmp(a["delivered_at"].as_str().unwrap_or(""))
        });
    }

    /// Installation tokens minted so far.
    pub fn tokens_minted(&self) -> u32 {
        self.lock().tokens_minted
    }

    /// Adds an App webhook delivery (as listed by GET /app/hook/deliveries), with its payload.
    pub fn add_delivery(&self, id: i64, event: &str, status_code: i64, payload: Value) {
        let mut s = self.lock();
        s.deliveries.insert(0, json!({
            "id": id, "guid": format!("guid-{id}"), "delivered_at": jiff::Timestamp::now().to_string(),
            "redelivery": false, "duration": 0.1, "status": if (200..300).contains(&status_code) { "OK" } else { "Invalid HTTP Response: 503" },
            "status_code": status_code, "event": event, "action": payload.get("action").cloned().unwrap_or(Value::Null),
            "installation_id": 42, "repository_id": 1,
        }));
        s.payloads.insert(id, payload);
    }

    /// Deliveries GitHub was asked to redeliver.
    pub fn redelivered(&self) -> Vec<i64> {
        self.lock().redelivered.clone()
    }
}

fn gh(status: u16, message: &str) -> Response {
    let body = json!({"message": message, "documentation_url": "https://docs.github.com/rest"});
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn history_entry(environment: &str, state: &str, login: &str, comment: &str) -> Value {
    json!({
        "state": state,
        "comment": comment,
        "environments": [{"id": 1, "name": environment}],
        "user": {"login": login, "type": if login.ends_with("[bot]") { "Bot" } else { "User" }},
    })
}

fn json_ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn route_of(method: &Method, parts: &[&str]) -> &'static str {
    match (method, parts) {
        (
            &Method::POST,
            [
                "repos",
                _,
                _,
                "actions",
                "runs",
                _,
                "deployment_protection_rule",
            ],
        ) => "review",
        (&Method::GET, ["repos", _, _, "actions", "runs", _, "approvals"]) => "approvals",
        (&Method::GET, ["repos", _, _, "actions", "runs", _, "pending_deployments"]) => "pending",
        (&Method::GET, ["repos", _, _, "actions", "runs", _]) => "run",
        (&Method::GET, ["repos", _, _, "commits", _, _]) => "checks",
        (&Method::POST, ["app", "installations", _, "access_tokens"]) => "token",
        (_, ["app", "hook", "deliveries", ..]) => "deliveries",
        (&Method::GET, ["repos", _, _, "installation"]) => "installation",
        (&Method::GET, ["app"]) => "app",
        (&Method::GET, ["user"]) => "user",
        _ => "other",
    }
}

/// What a fault does to a request.
enum Effect {
    Respond(Response),
    Hang { lands: bool },
    Reset { lands: bool },
}

fn apply(fault: Fault) -> Effect {
    match fault {
        Fault::Status(code, msg) => Effect::Respond(gh(code, msg)),
        Fault::Hang { lands } => Effect::Hang { lands },
        Fault::Reset { lands } => Effect::Reset { lands },
        Fault::SecondaryLimit { retry_after } => {
            let mut r = gh(
                403,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            );
            if let Some(s) = retry_after {
                r.headers_mut()
                    .insert("retry-after", s.to_string().parse().expect("header"));
            }
            Effect::Respond(r)
        }
        Fault::RetryAfter(s) => {
            let mut r = gh(429, "Too many requests");
            r.headers_mut()
                .insert("retry-after", s.to_string().parse().expect("header"));
            Effect::Respond(r)
        }
        Fault::PrimaryExhausted { reset_in } => {
            let mut r = gh(403, "API rate limit exceeded for installation.");
            let reset = jiff::Timestamp::now().as_second() + reset_in as i64;
            r.headers_mut()
                .insert("x-ratelimit-remaining", "0".parse().expect("header"));
            r.headers_mut().insert(
                "x-ratelimit-reset",
                reset.to_string().parse().expect("header"),
            );
            Effect::Respond(r)
        }
        Fault::Unauthorized => Effect::Respond(gh(401, "Bad credentials")),
        Fault::Redirect(location) => {
            let mut r = gh(307, "Temporary Redirect");
            r.headers_mut().insert(
                "location",
                location
                    .parse()
                    .expect("redirect location is a header value"),
            );
            Effect::Respond(r)
        }
    }
}

fn random_fault(rng: &mut StdRng, kinds: &[FaultKind]) -> Fault {
    match kinds[rng.random_range(0..kinds.len())] {
        FaultKind::ServerError => Fault::Status(500, "Server Error"),
        FaultKind::BadGateway => Fault::Status(502, "Bad Gateway"),
        FaultKind::Hang => Fault::Hang {
            lands: rng.random_bool(0.5),
        },
        FaultKind::Reset => Fault::Reset {
            lands: rng.random_bool(0.5),
        },
        FaultKind::SecondaryLimit => Fault::SecondaryLimit {
            retry_after: Some(1),
        },
        FaultKind::RetryAfter => Fault::RetryAfter(1),
        FaultKind::Unauthorized => Fault::Unauthorized,
        FaultKind::Unavailable => Fault::Status(503, "Service Unavailable"),
    }
}

async fn handle(State(fake): State<FakeGitHub>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|a| a.to_str().ok())
        .map(str::to_string);
    // Owned copies: the request's header values share hyper's read buffer, and
    // a log of thousands of requests would keep every buffer alive.
    let headers: axum::http::HeaderMap = req
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            let v = axum::http::HeaderValue::from_bytes(v.as_bytes()).ok()?;
            Some((k.clone(), v))
        })
        .collect();
    let body: Bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let route = route_of(&method, &parts);
    let at = tokio::time::Instant::now();
    if route == "review"
        && let (Some(run), Some(env)) = (
            parts.get(5).and_then(|r| r.parse::<i64>().ok()),
            body.get("environment_name").and_then(|e| e.as_str()),
        )
    {
        // A review names a request GitHub created: the run waits on it.
        fake.waits_on(run, env);
    }
    let fault = {
        let mut s = fake.lock();
        let scripted = s.script.get_mut(route).and_then(|q| q.pop_front());
        scripted.or_else(|| {
            if route != "review" {
                return None;
            }
            let r = s.random.as_mut()?;
            if r.rng.random_bool(r.share.clamp(0.0, 1.0)) {
                Some(random_fault(&mut r.rng, &r.kinds))
            } else {
                None
            }
        })
    };
    let effect = fault.map(apply);
    let (response, broken) = match effect {
        Some(Effect::Respond(r)) => (r, None),
        Some(Effect::Hang { lands }) => (
            if lands {
                serve(
                    &fake,
                    &method,
                    &parts,
                    &query,
                    &body,
                    authorization.as_deref(),
                )
            } else {
                gh(599, "never sent")
            },
            Some(true),
        ),
        Some(Effect::Reset { lands }) => (
            if lands {
                serve(
                    &fake,
                    &method,
                    &parts,
                    &query,
                    &body,
                    authorization.as_deref(),
                )
            } else {
                gh(599, "never sent")
            },
            Some(false),
        ),
        None => (
            serve(
                &fake,
                &method,
                &parts,
                &query,
                &body,
                authorization.as_deref(),
            ),
            None,
        ),
    };
    let status = response.status().as_u16();
    fake.lock().requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        authorization,
        headers,
        body: body.clone(),
        at,
        status,
    });
    match broken {
        None => response,
        // Hang past any client timeout: the client gives up without an answer.
        Some(true) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            response
        }
        // Drop the connection without an answer.
        Some(false) => std::panic::panic_any(RESET),
    }
}

fn serve(
    fake: &FakeGitHub,
    method: &Method,
    parts: &[&str],
    query: &str,
    body: &Value,
    authorization: Option<&str>,
) -> Response {
    let mut s = fake.lock();
    let credential = credential(authorization);
    // A removed installation's tokens were revoked with it.
    if credential == Credential::Installation
        && token_installation(authorization).is_some_and(|i| s.removed_installations.contains(&i))
    {
        return gh(401, "Bad credentials");
    }
    match (method, parts) {
        // "You must use a JWT to access this endpoint."
        (&Method::GET, ["app"]) => match credential {
            Credential::Jwt => {
                let slug = s.app_slug();
                json_ok(json!({"id": 1, "slug": slug, "name": slug, "owner": {"login": "acme"}}))
            }
            _ => gh(401, "A JSON web token could not be decoded"),
        },
        (&Method::GET, ["user"]) => match credential {
            Credential::Token => {
                json_ok(json!({"login": s.token_login(), "id": 7, "type": "User"}))
            }
            Credential::None => gh(401, "Requires authentication"),
            _ => gh(403, "Resource not accessible by integration"),
        },
        (&Method::POST, ["app", "installations", id, "access_tokens"]) => {
            let id: i64 = id.parse().unwrap_or(0);
            if s.removed_installations.contains(&id) {
                return gh(404, "Not Found");
            }
            s.tokens_minted += 1;
            let n = s.tokens_minted;
            let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
            (
                StatusCode::CREATED,
                [("content-type", "application/json")],
                json!({"token": format!("ghs_fake{n}_i{id}"), "expires_at": expires.to_string(), "permissions": {"actions": "read", "checks": "read", "deployments": "write", "statuses": "read"}})
                    .to_string(),
            )
                .into_response()
        }
        (&Method::GET, ["repos", owner, name, "installation"]) => {
            // GitHub: "You must use a JWT to access this endpoint."
            if credential != Credential::Jwt {
                return gh(401, "A JSON web token could not be decoded");
            }
            if s.not_installed
                .contains(&format!("{owner}/{name}").to_lowercase())
            {
                return gh(404, "Not Found");
            }
            json_ok(json!({"id": s.installation.unwrap_or(42), "app_id": 1}))
        }
        (
            &Method::POST,
            [
                "repos",
                _,
                _,
                "actions",
                "runs",
                run,
                "deployment_protection_rule",
            ],
        ) => {
            let run_id: i64 = run.parse().unwrap_or(0);
            let env = body
                .get("environment_name")
                .and_then(|e| e.as_str())
                .unwrap_or("")
                .to_string();
            let state = body
                .get("state")
                .and_then(|e| e.as_str())
                .map(str::to_string);
            let comment = body
                .get("comment")
                .and_then(|e| e.as_str())
                .unwrap_or("")
                .to_string();
            let key = env.to_lowercase();
            let entry = s.runs.entry(run_id).or_default();
            if entry.gone {
                return gh(404, "Not Found");
            }
            if entry.answers.contains_key(&key) {
                return gh(422, "No pending deployment requests to approve or reject");
            }
            // GitHub's validation: a comment of at most 1024 characters, at
            // most 10 status reports per deployment.
            if comment.chars().count() > 1024 {
                return gh(
                    422,
                    "Validation Failed: comment is too long (maximum is 1024 characters)",
                );
            }
            if state.is_none() && entry.reports.get(&key).copied().unwrap_or(0) >= 10 {
                return gh(
                    422,
                    "Validation Failed: a deployment can have at most 10 status reports",
                );
            }
            let login = match credential {
                Credential::Installation => s.bot_login(),
                _ => s.token_login(),
            };
            let entry = s.runs.entry(run_id).or_default();
            match state {
                Some(state) => {
                    entry
                        .history
                        .push(history_entry(&env, &state, &login, &comment));
                    entry.answers.insert(key, (state, login, comment));
                    *s.accepted.entry((run_id, env)).or_default() += 1;
                }
                None => {
                    *entry.reports.entry(key).or_default() += 1;
                    *s.comments.entry((run_id, env)).or_default() += 1;
                }
            }
            StatusCode::NO_CONTENT.into_response()
        }
        (&Method::GET, ["repos", _, _, "actions", "runs", run, "approvals"]) => {
            let run_id: i64 = run.parse().unwrap_or(0);
            let list = s
                .runs
                .get(&run_id)
                .map(|r| r.history.clone())
                .unwrap_or_default();
            json_ok(Value::Array(list))
        }
        (&Method::GET, ["repos", _, _, "actions", "runs", run, "pending_deployments"]) => {
            let run_id: i64 = run.parse().unwrap_or(0);
            let Some(r) = s.runs.get(&run_id) else {
                return json_ok(json!([]));
            };
            if r.gone {
                return gh(404, "Not Found");
            }
            if r.status == "completed" {
                return json_ok(json!([]));
            }
            let mut waiting: Vec<(&String, &String)> = r
                .asked
                .iter()
                .filter(|(key, _)| !r.answers.contains_key(*key))
                .collect();
            waiting.sort();
            let list: Vec<Value> = waiting
                .into_iter()
                .enumerate()
                .map(|(i, (_, name))| {
                    json!({
                        "environment": {
                            "id": 161088068 + i as i64,
                            "node_id": "MDExOkVudmlyb25tZW50MTYxMDg4MDY4",
                            "name": name,
                            "url": format!("https://api.github.com/repos/acme/web/environments/{name}"),
                            "html_url": format!("https://github.com/acme/web/deployments/activity_log?environments_filter={name}"),
                        },
                        "wait_timer": 0,
                        "wait_timer_started_at": null,
                        "current_user_can_approve": false,
                        "reviewers": [],
                    })
                })
                .collect();
            json_ok(Value::Array(list))
        }
        (&Method::GET, ["repos", _, _, "actions", "runs", run]) => {
            let run_id: i64 = run.parse().unwrap_or(0);
            let head = s
                .runs
                .get(&run_id)
                .and_then(|r| r.head_sha.clone())
                .unwrap_or_else(|| DEFAULT_HEAD_SHA.to_string());
            match s.runs.get(&run_id) {
                Some(r) if r.gone => gh(404, "Not Found"),
                Some(r) if !r.status.is_empty() => json_ok(
                    json!({"id": run_id, "status": r.status, "conclusion": r.conclusion, "head_sha": head}),
                ),
                _ => json_ok(
                    json!({"id": run_id, "status": "waiting", "conclusion": null, "head_sha": head}),
                ),
            }
        }
        (&Method::GET, ["repos", _, _, "commits", sha, "check-runs"]) => {
            let runs = s.check_runs.get(*sha).cloned().unwrap_or_default();
            json_ok(json!({"total_count": runs.len(), "check_runs": runs}))
        }
        (&Method::GET, ["repos", _, _, "commits", sha, "status"]) => {
            let statuses = s.statuses.get(*sha).cloned().unwrap_or_default();
            json_ok(json!({"state": "pending", "statuses": statuses}))
        }
        (&Method::GET, ["app", "hook", "deliveries"]) => {
            // `status=failure`: answers 400 to 599; `per_page` (at most
            // 100) and `cursor`, with a `Link: rel="next"` while more remain.
            let param = |name: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                    .map(str::to_string)
            };
            let per_page = param("per_page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(30)
                .clamp(1, 100);
            let from = param("cursor")
                .and_then(|c| c.strip_prefix('c').and_then(|n| n.parse::<usize>().ok()))
                .unwrap_or(0);
            let filter = param("status");
            let listed: Vec<Value> = s
                .deliveries
                .iter()
                .filter(|d| {
                    let code = d["status_code"].as_i64().unwrap_or(0);
                    match filter.as_deref() {
                        Some("failure") => (400..=599).contains(&code),
                        Some("success") => (200..=399).contains(&code),
                        _ => true,
                    }
                })
                .cloned()
                .collect();
            let page: Vec<Value> = listed.iter().skip(from).take(per_page).cloned().collect();
            let mut r = json_ok(Value::Array(page));
            if from + per_page < listed.len() {
                let mut next = format!(
                    "/app/hook/deliveries?per_page={per_page}&cursor=c{}",
                    from + per_page
                );
                if let Some(f) = &filter {
                    next.push_str(&format!("&status={f}"));
                }
                r.headers_mut().insert(
                    "link",
                    format!("<{}{next}>; rel=\"next\"", fake.url)
                        .parse()
                        .expect("link header"),
                );
            }
            r
        }
        (&Method::GET, ["app", "hook", "deliveries", id]) => {
            let id: i64 = id.parse().unwrap_or(0);
            match s.payloads.get(&id) {
                Some(p) => json_ok(json!({"id": id, "request": {"headers": {}, "payload": p}})),
                None => gh(404, "Not Found"),
            }
        }
        (&Method::POST, ["app", "hook", "deliveries", id, "attempts"]) => {
            let id: i64 = id.parse().unwrap_or(0);
            s.redelivered.push(id);
            StatusCode::ACCEPTED.into_response()
        }
        _ => gh(404, "Not Found"),
    }
}
