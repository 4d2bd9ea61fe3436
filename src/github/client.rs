//! The GitHub client: configuration, authentication and raw requests.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::BodyExt;
use octocrab::Octocrab;
use octocrab::models::{AppId, InstallationId};

use super::error::GitHubError;
use super::limiter::Limiter;
use super::redact::scrub;

/// How the operator authenticates to GitHub.
#[derive(Clone)]
pub enum Auth {
    /// As a GitHub App: installation tokens minted from the App's private key.
    App {
        app_id: u64,
        private_key_pem: String,
    },
    /// A plain token (some GitHub Enterprise setups).
    Token(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::App { app_id, .. } => {
                write!(f, "App {{ app_id: {app_id}, private_key_pem: <redacted> }}")
            }
            Auth::Token(_) => write!(f, "Token(<redacted>)"),
        }
    }
}

/// Configuration of the client.
#[derive(Clone, Debug)]
pub struct GitHubConfig {
    /// `https://api.github.com`, or `https://HOST/api/v3` for GitHub Enterprise Server.
    pub api_base: String,
    /// Credentials.
    pub auth: Auth,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// Content-creating requests a minute (GitHub's secondary limit is about 80).
    pub writes_per_minute: u32,
    /// Content-creating requests an hour (GitHub's secondary limit is about 500).
    pub writes_per_hour: u32,
    /// Requests in flight at most.
    pub max_in_flight: usize,
}

impl Default for GitHubConfig {
    fn default() -> Self {
        GitHubConfig {
            api_base: "https://api.github.com".into(),
            auth: Auth::Token(String::new()),
            request_timeout: Duration::from_secs(15),
            writes_per_minute: 80,
            writes_per_hour: 500,
            max_in_flight: 100,
        }
    }
}

impl GitHubConfig {
    /// True when a plain token is used against GitHub.com, where reviews of
    /// custom deployment protection rules are accepted only from the App's
    /// own installation token: such an operator cannot answer a real request.
    pub fn plain_token_on_github_com(&self) -> bool {
        if !matches!(self.auth, Auth::Token(_)) {
            return false;
        }
        let host = self
            .api_base
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_ascii_lowercase));
        host.as_deref() == Some("api.github.com")
    }
}

/// A raw answer.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    /// What GitHub said of it: rate limits are read (and fed to the limiter)
    /// on every call, here, so no caller can forget.
    pub class: super::response::Class,
    /// For a rate-limit answer: the pause every request now waits out.
    pub paused: Option<Duration>,
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct GitHub {
    inner: Arc<Inner>,
}

struct Inner {
    base: String,
    /// Authenticated as the App (JWT) or with the plain token.
    root: Octocrab,
    app: bool,
    timeout: Duration,
    /// Shared, not cloned: cloning an `Octocrab` copies its cached installation
    /// token, so a clone's freshly minted token would never be reused.
    installations: Mutex<HashMap<i64, Arc<Octocrab>>>,
    repo_installations: Mutex<HashMap<String, i64>>,
    /// Requests sent since the metrics last took them, by (operation,
    /// status): operations are this client's fixed names and statuses
    /// GitHub's codes (or `transport`), so the keys are few.
    sent: Mutex<HashMap<(String, String), u64>>,
    /// The login GitHub shows on this client's own reviews, once read.
    own_login: Mutex<Option<String>>,
    pub(super) limiter: Limiter,
}

impl fmt::Debug for GitHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GitHub {{ base: {}, app: {} }}",
            self.inner.base, self.inner.app
        )
    }
}

/// The media type GitHub documents for its REST API.
pub const ACCEPT: &str = "application/vnd.github+json";
/// The REST API version Tollgate is written against.
pub const API_VERSION: &str = "2022-11-28";

/// Splits `owner/name`.
pub fn split_repository(repo: &str) -> Result<(&str, &str), GitHubError> {
    match repo.split_once('/') {
        Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/') => Ok((o, n)),
        _ => Err(GitHubError::Repository(repo.to_string())),
    }
}

impl GitHub {
    /// Builds the client. Must be called inside a tokio runtime.
    pub fn new(config: GitHubConfig) -> Result<GitHub, GitHubError> {
        let base = config.api_base.trim_end_matches('/').to_string();
        let uri: http::Uri =
            base.parse()
                .map_err(|e: http::uri::InvalidUri| GitHubError::BaseUrl {
                    url: base.clone(),
                    why: e.to_string(),
                })?;
        if !matches!(uri.scheme_str(), Some("https" | "http")) || uri.host().is_none() {
            return Err(GitHubError::BaseUrl {
                url: base.clone(),
                why: "it needs a scheme and a host".into(),
            });
        }
        let builder = Octocrab::builder()
            .base_uri(base.as_str())
            .map_err(|e| GitHubError::BaseUrl {
                url: base.clone(),
                why: e.to_string(),
            })?
            // GitHub's documented media type and REST version, on every call
            // (token mints included: installation clients share these headers).
            .add_header(http::header::ACCEPT, ACCEPT.into())
            .add_header(
                http::HeaderName::from_static("x-github-api-version"),
                API_VERSION.into(),
            );
        let (root, app) = match &config.auth {
            Auth::App {
                app_id,
                private_key_pem,
            } => {
                let key = octocrab::EncodingKey::from_rsa_pem(private_key_pem.as_bytes())
                    .map_err(|e| GitHubError::PrivateKey(e.to_string()))?;
                (builder.app(AppId(*app_id), key).build(), true)
            }
            Auth::Token(token) => (builder.personal_token(token.clone()).build(), false),
        };
        let root = root.map_err(|e| GitHubError::Client(e.to_string()))?;
        Ok(GitHub {
            inner: Arc::new(Inner {
                base,
                root,
                app,
                timeout: config.request_timeout,
                installations: Mutex::default(),
                repo_installations: Mutex::default(),
                sent: Mutex::default(),
                own_login: Mutex::default(),
                limiter: Limiter::new(
                    config.writes_per_minute,
                    config.writes_per_hour,
                    config.max_in_flight,
                ),
            }),
        })
    }

    /// The configured API base URL (without a trailing slash).
    pub fn api_base(&self) -> &str {
        &self.inner.base
    }

    /// True in App mode.
    pub fn is_app(&self) -> bool {
        self.inner.app
    }

    pub(super) fn limiter(&self) -> &Limiter {
        &self.inner.limiter
    }

    /// The run id of a `deployment_callback_url`, which must be exactly the review
    /// endpoint of `repo` on the configured base: anything else is refused.
    pub fn callback_run_id(&self, callback_url: &str, repo: &str) -> Result<i64, GitHubError> {
        let base = &self.inner.base;
        let Some(rest) = callback_url.strip_prefix(base.as_str()) else {
            return Err(GitHubError::ForeignCallback {
                url: callback_url.to_string(),
                base: base.clone(),
            });
        };
        let bad = || GitHubError::BadCallback {
            url: callback_url.to_string(),
            repo: repo.to_string(),
        };
        let path = rest
            .strip_prefix("/repos/")
            .ok_or_else(|| GitHubError::ForeignCallback {
                url: callback_url.to_string(),
                base: base.clone(),
            })?;
        let (repo_part, tail) = path.split_at_checked(repo.len()).ok_or_else(bad)?;
        if !repo_part.eq_ignore_ascii_case(repo) {
            return Err(bad());
        }
        let id = tail
            .strip_prefix("/actions/runs/")
            .and_then(|t| t.strip_suffix("/deployment_protection_rule"))
            .ok_or_else(bad)?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        id.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(bad)
    }

    /// The client for a repository's installation (App mode), or the token
    /// client. The installation is the one last looked up for the repository,
    /// else `installation` (the webhook's), else looked up now. An
    /// installation whose token GitHub will not mint (401, 404: the App was
    /// reinstalled, which changes the id) is dropped and the repository's
    /// looked up again, once.
    pub(super) async fn for_repo(
        &self,
        repo: &str,
        installation: Option<i64>,
        op: &str,
    ) -> Result<Arc<Octocrab>, GitHubError> {
        if !self.inner.app {
            return Ok(Arc::new(self.inner.root.clone()));
        }
        let id = match self.cached_installation(repo).or(installation) {
            Some(id) => id,
            None => self.installation_of(repo, op).await?,
        };
        match self.installation_client(id, op).await {
            Err(e) if installation_refused(&e) => {
                let fresh = self.relookup(repo, id, op).await?;
                if fresh == id {
                    return Err(e);
                }
                self.installation_client(fresh, op).await
            }
            other => other,
        }
    }

    /// One request on a repository's installation (see [`GitHub::for_repo`]).
    /// In App mode a 401 or 404 may mean the installation changed (an App
    /// reinstall): the repository's installation is looked up again, and if
    /// that gives another one the request is sent once more with its token —
    /// before the caller counts a failure.
    pub(super) async fn send_repo(
        &self,
        repo: &str,
        installation: Option<i64>,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        op: &str,
    ) -> Result<Answer, GitHubError> {
        let crab = self.for_repo(repo, installation, op).await?;
        let first = self.send(&crab, method.clone(), path, body, op).await;
        // A 401 or 404 answer, or a token octocrab could not mint again after
        // a 401 (the installation is gone): perhaps a reinstall.
        let refused = match &first {
            Ok(a) => matches!(a.status, 401 | 404),
            Err(e) => installation_refused(e),
        };
        if !self.inner.app || !refused {
            return first;
        }
        let used = self.cached_installation(repo).or(installation);
        let Some(used) = used else {
            return first;
        };
        // (octocrab itself retries a 401 once with a freshly minted token.)
        let fresh = match self.relookup(repo, used, op).await {
            Ok(id) => id,
            // The repository has no installation any more: the first answer stands.
            Err(_) => return first,
        };
        if fresh == used {
            return first;
        }
        tracing::info!(
            repository = repo,
            old = used,
            new = fresh,
            "the App's installation on the repository changed; sending once more with the new one"
        );
        let crab = self.for_repo(repo, Some(fresh), op).await?;
        self.send(&crab, method, path, body, op).await
    }

    /// The requests sent since the last call, by (operation, status); taking
    /// them empties the tally, so concurrent readers never count one twice.
    pub fn take_requests_sent(&self) -> Vec<((String, String), u64)> {
        std::mem::take(&mut *self.inner.sent.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .collect()
    }

    /// The installation last looked up for `repo`, if any.
    fn cached_installation(&self, repo: &str) -> Option<i64> {
        self.inner
            .repo_installations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&repo.to_ascii_lowercase())
            .copied()
    }

    /// Forgets `stale` for `repo` and looks the repository's installation up again.
    async fn relookup(&self, repo: &str, stale: i64, op: &str) -> Result<i64, GitHubError> {
        self.inner
            .repo_installations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&repo.to_ascii_lowercase());
        let fresh = self.installation_of(repo, op).await?;
        if fresh != stale {
            self.drop_installation_client(stale);
        }
        Ok(fresh)
    }

    fn drop_installation_client(&self, id: i64) {
        self.inner
            .installations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// The client of installation `id`, with a token valid for a while yet.
    async fn installation_client(&self, id: i64, op: &str) -> Result<Arc<Octocrab>, GitHubError> {
        let crab = {
            let mut map = self
                .inner
                .installations
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match map.get(&id) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(
                        self.inner
                            .root
                            .installation(InstallationId(id as u64))
                            .map_err(|e| GitHubError::Client(e.to_string()))?,
                    );
                    map.insert(id, c.clone());
                    c
                }
            }
        };
        // Refresh the installation token ~5 minutes before it expires, so no
        // request goes out with a token about to lapse.
        match tokio::time::timeout(
            self.inner.timeout,
            crab.installation_token_with_buffer(chrono::Duration::minutes(5)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(crab),
            Ok(Err(e)) => {
                let e = transport_or_status(op, e);
                if installation_refused(&e) {
                    // Never keep a client whose token cannot be minted.
                    self.drop_installation_client(id);
                }
                Err(e)
            }
            Err(_) => Err(GitHubError::Transport {
                op: op.into(),
                why: "timed out minting an installation token".into(),
            }),
        }
    }

    /// The repository's installation (looked up now unless cached) with a
    /// freshly minted token for it.
    pub(super) async fn installation_with_token(
        &self,
        repo: &str,
        op: &str,
    ) -> Result<i64, GitHubError> {
        let id = self.installation_of(repo, op).await?;
        self.installation_client(id, op).await?;
        Ok(id)
    }

    /// Looks up the App's installation on a repository.
    async fn installation_of(&self, repo: &str, op: &str) -> Result<i64, GitHubError> {
        if let Some(id) = self.cached_installation(repo) {
            return Ok(id);
        }
        let (owner, name) = split_repository(repo)?;
        let a = self
            .send(
                &self.inner.root,
                Method::GET,
                &format!("/repos/{owner}/{name}/installation"),
                None,
                op,
            )
            .await?;
        match a.status {
            200 => {
                let v: serde_json::Value =
                    serde_json::from_str(&a.body).map_err(|e| GitHubError::Decode {
                        op: op.into(),
                        why: e.to_string(),
                    })?;
                let id =
                    v.get("id")
                        .and_then(|i| i.as_i64())
                        .ok_or_else(|| GitHubError::Decode {
                            op: op.into(),
                            why: "no installation id".into(),
                        })?;
                self.inner
                    .repo_installations
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(repo.to_ascii_lowercase(), id);
                Ok(id)
            }
            404 => Err(GitHubError::NotInstalled {
                op: op.into(),
                repo: repo.into(),
            }),
            s => Err(GitHubError::Status {
                op: op.into(),
                status: s,
                message: super::response::message_of(&a.body),
            }),
        }
    }

    /// The login GitHub puts on the reviews this client sends: the App's bot
    /// user `<slug>[bot]` (slug from `GET /app`, with the App's JWT), or with a
    /// plain token that token's user (`GET /user`). Read once, then kept; a
    /// failed read is an error (and is read again next time), never a guess.
    pub(super) async fn own_login(&self) -> Result<String, GitHubError> {
        if let Some(login) = self
            .inner
            .own_login
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(login);
        }
        let (path, field, op) = if self.inner.app {
            ("/app", "slug", "reading the App's own login (GET /app)")
        } else {
            (
                "/user",
                "login",
                "reading the token's own login (GET /user)",
            )
        };
        let (v, _) = self.get_json(&self.inner.root, path, op).await?;
        let name = v
            .get(field)
            .and_then(|n| n.as_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| GitHubError::Decode {
                op: op.into(),
                why: format!("no {field} in the answer"),
            })?;
        let login = if self.inner.app {
            format!("{name}[bot]")
        } else {
            name.to_string()
        };
        *self
            .inner
            .own_login
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(login.clone());
        Ok(login)
    }

    /// App-level client (JWT), for the App's own endpoints.
    pub(super) fn app_client(&self, op: &str) -> Result<Octocrab, GitHubError> {
        if self.inner.app {
            Ok(self.inner.root.clone())
        } else {
            Err(GitHubError::NeedsApp { op: op.into() })
        }
    }

    /// GETs `path` and parses its JSON body, with the response headers (for
    /// pagination links). Any status but 200 is an error naming `op`.
    pub(super) async fn get_json(
        &self,
        crab: &Octocrab,
        path: &str,
        op: &str,
    ) -> Result<(serde_json::Value, http::HeaderMap), GitHubError> {
        let a = self.send(crab, Method::GET, path, None, op).await?;
        json_of(op, a)
    }

    /// [`GitHub::get_json`] on a repository's installation, re-looked-up
    /// once on a 401 or 404 (see [`GitHub::send_repo`]).
    pub(super) async fn get_json_repo(
        &self,
        repo: &str,
        installation: Option<i64>,
        path: &str,
        op: &str,
    ) -> Result<(serde_json::Value, http::HeaderMap), GitHubError> {
        let a = self
            .send_repo(repo, installation, Method::GET, path, None, op)
            .await?;
        json_of(op, a)
    }

    /// Sends one request on the configured base (path relative to it) with the timeout.
    pub(super) async fn send(
        &self,
        crab: &Octocrab,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        op: &str,
    ) -> Result<Answer, GitHubError> {
        debug_assert!(
            path.starts_with('/'),
            "GitHub paths are relative to the configured base"
        );
        // A rate limit GitHub imposed holds every call, reads included:
        // sending during it only earns another refusal (and, for secondary
        // limits, a longer one).
        let paused = self.inner.limiter.paused_for();
        if !paused.is_zero() {
            return Err(GitHubError::RateLimited {
                op: op.into(),
                after: paused,
            });
        }
        let fut = async {
            let response = match method {
                Method::POST => crab._post(path, body).await,
                Method::GET => crab._get(path).await,
                _ => unreachable!("only GET and POST are used"),
            };
            let response = response.map_err(|e| transport_or_status(op, e))?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes: Bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| GitHubError::Transport {
                    op: op.into(),
                    why: scrub(&e.to_string()),
                })?
                .to_bytes();
            let body = String::from_utf8_lossy(&bytes).into_owned();
            let class = super::response::classify(
                status,
                &headers,
                &body,
                jiff::Timestamp::now().as_second(),
            );
            Ok(Answer {
                status,
                headers,
                body,
                class,
                paused: None,
            })
        };
        // Boxed: every caller waiting in the pacing queue then holds a pointer,
        // not room for the whole request (thousands of gates may wait at once).
        let answer = match tokio::time::timeout(self.inner.timeout, Box::pin(fut)).await {
            Ok(r) => r,
            Err(_) => Err(GitHubError::Transport {
                op: op.into(),
                why: format!("no answer within {:?}", self.inner.timeout),
            }),
        };
        let status = match &answer {
            Ok(a) => a.status.to_string(),
            Err(GitHubError::Status { status, .. }) => status.to_string(),
            Err(_) => "transport".to_string(),
        };
        *self
            .inner
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((endpoint(&method, path).to_string(), status))
            .or_default() += 1;
        let mut answer = answer?;
        answer.paused = match &answer.class {
            super::response::Class::SecondaryLimit { retry_after } => {
                Some(self.inner.limiter.secondary_limit(*retry_after))
            }
            super::response::Class::RateLimited { after } => {
                self.inner.limiter.wait_until(*after);
                Some(*after)
            }
            _ => None,
        };
        if let Some(after) = answer.paused {
            tracing::warn!(
                op,
                status = answer.status,
                pause_s = after.as_secs(),
                "GitHub rate limit; every request waits it out"
            );
        }
        Ok(answer)
    }
}

/// The endpoint a request went to, as a metric label: a fixed name per
/// kind of request, never its repository, run or delivery id.
fn endpoint(method: &Method, path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or(path);
    let last = path.rsplit('/').next().unwrap_or("");
    match (method, last) {
        (_, "deployment_protection_rule") => "review",
        (_, "pending_deployments") => "pending_deployments",
        (_, "approvals") => "approvals",
        (_, "check-runs") => "check_runs",
        (_, "status") if path.contains("/commits/") => "commit_status",
        (_, "installation") => "installation",
        (_, "attempts") => "redeliver",
        (_, "deliveries") => "hook_deliveries",
        _ if path.starts_with("/app/hook/deliveries/") => "hook_delivery",
        _ if path.contains("/actions/runs/") => "run",
        _ if path.contains("/deployments/") => "deployment_status",
        _ if path == "/app" => "app",
        _ if path.starts_with("/user") => "user",
        _ if path.starts_with("/app/installations/") => "installation_token",
        _ => "other",
    }
}

/// True when GitHub refused an installation's token (401) or does not know
/// the installation (404): it may have been removed or reinstalled.
fn installation_refused(e: &GitHubError) -> bool {
    matches!(
        e,
        GitHubError::Status {
            status: 401 | 404,
            ..
        }
    )
}

/// A GET that did not answer 200, as an error: a rate limit is one (and
/// transient), whatever the status.
pub(super) fn status_error(op: &str, a: &Answer) -> GitHubError {
    match a.paused {
        Some(after) => GitHubError::RateLimited {
            op: op.into(),
            after,
        },
        None => GitHubError::Status {
            op: op.into(),
            status: a.status,
            message: super::response::message_of(&a.body),
        },
    }
}

/// An octocrab error as ours, with anything token-like removed.
fn transport_or_status(op: &str, e: octocrab::Error) -> GitHubError {
    match e {
        octocrab::Error::GitHub { source, .. } => GitHubError::Status {
            op: op.into(),
            status: source.status_code.as_u16(),
            message: scrub(&source.message),
        },
        other => GitHubError::Transport {
            op: op.into(),
            why: scrub(&other.to_string()),
        },
    }
}

/// The JSON body of a 200 answer and its headers; any other status is an
/// error naming `op`.
fn json_of(op: &str, a: Answer) -> Result<(serde_json::Value, http::HeaderMap), GitHubError> {
    if a.status != 200 {
        return Err(status_error(op, &a));
    }
    let v = serde_json::from_str(&a.body).map_err(|e| GitHubError::Decode {
        op: op.to_string(),
        why: e.to_string(),
    })?;
    Ok((v, a.headers))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_requests_endpoint_label_names_its_kind_never_its_ids() {
        use super::{Method, endpoint};
        for (method, path, want) in [
            (
                Method::POST,
                "/repos/acme/web/actions/runs/7/deployment_protection_rule",
                "review",
            ),
            (
                Method::GET,
                "/repos/acme/web/actions/runs/7/pending_deployments",
                "pending_deployments",
            ),
            (
                Method::GET,
                "/repos/acme/web/actions/runs/7/approvals",
                "approvals",
            ),
            (Method::GET, "/repos/acme/web/actions/runs/7", "run"),
            (
                Method::GET,
                "/repos/acme/web/commits/abc/check-runs?per_page=100&page=2",
                "check_runs",
            ),
            (
                Method::GET,
                "/repos/acme/web/commits/abc/status?per_page=100&page=1",
                "commit_status",
            ),
            (Method::GET, "/repos/acme/web/installation", "installation"),
            (
                Method::GET,
                "/app/hook/deliveries?per_page=100&status=failure",
                "hook_deliveries",
            ),
            (Method::GET, "/app/hook/deliveries/12", "hook_delivery"),
            (
                Method::POST,
                "/app/hook/deliveries/12/attempts",
                "redeliver",
            ),
            (Method::GET, "/app", "app"),
            (Method::GET, "/user", "user"),
        ] {
            assert_eq!(endpoint(&method, path), want, "{path}");
        }
    }

    use super::{Auth, GitHubConfig};

    #[test]
    fn a_plain_token_is_flagged_on_github_com_only() {
        let with = |api_base: &str, auth: Auth| GitHubConfig {
            api_base: api_base.into(),
            auth,
            ..GitHubConfig::default()
        };
        let token = || Auth::Token("t".into());
        assert!(with("https://api.github.com", token()).plain_token_on_github_com());
        assert!(with("https://API.GitHub.com/", token()).plain_token_on_github_com());
        assert!(!with("https://ghe.example.com/api/v3", token()).plain_token_on_github_com());
        let app = Auth::App {
            app_id: 1,
            private_key_pem: String::new(),
        };
        assert!(!with("https://api.github.com", app).plain_token_on_github_com());
    }
}
