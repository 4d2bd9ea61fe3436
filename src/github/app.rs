//! Who the client is at GitHub and where the App is installed: what
//! `tollgate doctor` asks before anything depends on it.

use super::client::GitHub;
use super::error::GitHubError;

impl GitHub {
    /// The login the credentials act as, read from GitHub now: the App's bot
    /// user (`GET /app` with the App's JWT, so the private key and App ID are
    /// proven) or a plain token's user (`GET /user`).
    pub async fn whoami(&self) -> Result<String, GitHubError> {
        self.own_login().await
    }

    /// The App's installation on `repo`, proven by minting an installation
    /// token for it (App mode only; a plain token has no installations).
    pub async fn installation_token_for(&self, repo: &str) -> Result<i64, GitHubError> {
        let op = format!("checking the App's installation on {repo}");
        if !self.is_app() {
            return Err(GitHubError::NeedsApp { op });
        }
        self.installation_with_token(repo, &op).await
    }
}
