//! What can go wrong talking to GitHub, in words an operator can act on.

use std::time::Duration;

/// A failed GitHub operation. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error(
        "the GitHub API base URL {url:?} is not valid: {why}; use https://api.github.com or https://HOST/api/v3"
    )]
    BaseUrl { url: String, why: String },
    #[error(
        "the GitHub App private key cannot be used ({0}); mount the PEM file generated on the App's settings page"
    )]
    PrivateKey(String),
    #[error("cannot build the GitHub client: {0}")]
    Client(String),
    #[error(
        "callback URL {url:?} does not point at the configured GitHub API {base}; refusing it (possible forgery)"
    )]
    ForeignCallback { url: String, base: String },
    #[error("callback URL {url:?} is not the deployment protection rule review URL of {repo}")]
    BadCallback { url: String, repo: String },
    #[error("repository {0:?} is not of the form owner/name")]
    Repository(String),
    #[error(
        "{op}: the GitHub App is not installed on {repo}; install it on the repository, or set spec.installationId"
    )]
    NotInstalled { op: String, repo: String },
    #[error("{op} needs GitHub App authentication; the operator runs with a plain token")]
    NeedsApp { op: String },
    #[error("{op}: GitHub could not be reached ({why}); retrying")]
    Transport { op: String, why: String },
    #[error("{op}: GitHub rate limit; retrying after {after:?}")]
    RateLimited { op: String, after: Duration },
    #[error("{op}: GitHub answered {status}: {message}")]
    Status {
        op: String,
        status: u16,
        message: String,
    },
    #[error("{op}: {why}")]
    Denied { op: String, why: String },
    #[error(
        "{op}: GitHub refused the request as invalid ({status}: {message}); it is not sent again — this is a defect in Tollgate's request, please report it"
    )]
    Invalid {
        op: String,
        status: u16,
        message: String,
    },
    #[error("{op}: GitHub's answer could not be read: {why}")]
    Decode { op: String, why: String },
}

impl GitHubError {
    /// True when retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            GitHubError::Transport { .. } | GitHubError::RateLimited { .. } => true,
            GitHubError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// True when GitHub refused the request itself (a 4xx that is neither a
    /// rate limit nor a credential problem): sending it again cannot succeed.
    pub fn is_invalid(&self) -> bool {
        matches!(self, GitHubError::Invalid { .. })
    }
}
