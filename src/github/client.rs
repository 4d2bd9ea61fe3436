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
            max_in_flight: 100,
        }
    }
}

/// A raw answer.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
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
        let builder =
            Octocrab::builder()
                .base_uri(base.as_str())
                .map_err(|e| GitHubError::BaseUrl {
                    url: base.clone(),
                    why: e.to_string(),
                })?;
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
                own_login: Mutex::default(),
                limiter: Limiter::new(config.writes_per_minute, config.max_in_flight),
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

    /// The client for an installation (App mode), or the token client.
    pub(super) async fn for_repo(
        &self,
        repo: &str,
        installation: Option<i64>,
        op: &str,
    ) -> Result<Arc<Octocrab>, GitHubError> {
        if !self.inner.app {
            return Ok(Arc::new(self.inner.root.clone()));
        }
        let id = match installation {
            Some(id) => id,
            None => self.installation_of(repo, op).await?,
        };
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
            Ok(Err(e)) => Err(transport_or_status(op, e)),
            Err(_) => Err(GitHubError::Transport {
                op: op.into(),
                why: "timed out minting an installation token".into(),
            }),
        }
    }

    /// Looks up the App's installation on a repository.
    async fn installation_of(&self, repo: &str, op: &str) -> Result<i64, GitHubError> {
        if let Some(id) = self
            .inner
            .repo_installations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(repo)
        {
            return Ok(*id);
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
                    .insert(repo.to_string(), id);
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
        if a.status != 200 {
            return Err(GitHubError::Status {
                op: op.to_string(),
                status: a.status,
                message: super::response::message_of(&a.body),
            });
        }
        let v = serde_json::from_str(&a.body).map_err(|e| GitHubError::Decode {
            op: op.to_string(),
            why: e.to_string(),
        })?;
        Ok((v, a.headers))
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
            Ok(Answer {
                status,
                headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        };
        // Boxed: every caller waiting in the pacing queue then holds a pointer,
        // not room for the whole request (thousands of gates may wait at once).
        match tokio::time::timeout(self.inner.timeout, Box::pin(fut)).await {
            Ok(r) => r,
            Err(_) => Err(GitHubError::Transport {
                op: op.into(),
                why: format!("no answer within {:?}", self.inner.timeout),
            }),
        }
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

/// Removes anything that looks like a GitHub token from a message.
pub(super) fn scrub(s: &str) -> String {
    s.split_whitespace()
        .map(|w| {
            let t = w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_');
            if ["ghs_", "ghp_", "gho_", "ghu_", "github_pat_", "v1."]
                .iter()
                .any(|p| t.starts_with(p))
            {
                "<redacted>"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
