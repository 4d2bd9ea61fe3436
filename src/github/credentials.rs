//! The GitHub credentials as `tollgate run` and `tollgate doctor` take them:
//! the same flags, read from their files the same way, so the doctor checks
//! exactly what start-up would use.

use std::path::{Path, PathBuf};

use super::Auth;

/// The GitHub flags both commands share.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GitHubFlags {
    /// GitHub API base URL: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server.
    #[arg(long, default_value = "https://api.github.com")]
    pub github_api_url: String,
    /// File holding the GitHub App ID.
    #[arg(long)]
    pub github_app_id_file: Option<PathBuf>,
    /// File holding the GitHub App's private key (PEM).
    #[arg(long)]
    pub github_private_key_file: Option<PathBuf>,
    /// File holding a plain token, instead of App authentication.
    #[arg(long, conflicts_with_all = ["github_app_id_file", "github_private_key_file"])]
    pub github_token_file: Option<PathBuf>,
}

/// Why the credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read {what} from {path}: {source}")]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the GitHub App ID in {path} is not a number")]
    AppIdNotANumber { path: PathBuf },
    #[error(
        "set --github-app-id-file and --github-private-key-file (GitHub App), or --github-token-file"
    )]
    Missing,
}

impl GitHubFlags {
    /// The authentication the flags name, read from their files (trimmed).
    pub fn auth(&self) -> Result<Auth, CredentialError> {
        match (
            &self.github_token_file,
            &self.github_app_id_file,
            &self.github_private_key_file,
        ) {
            (Some(token), _, _) => Ok(Auth::Token(read_secret("the GitHub token", token)?)),
            (None, Some(id), Some(key)) => {
                let app_id = read_secret("the GitHub App ID", id)?
                    .parse::<u64>()
                    .map_err(|_| CredentialError::AppIdNotANumber { path: id.clone() })?;
                Ok(Auth::App {
                    app_id,
                    private_key_pem: read_secret("the GitHub App private key", key)?,
                })
            }
            _ => Err(CredentialError::Missing),
        }
    }
}

/// A mounted secret file, trimmed of the newline editors and `echo` add.
pub fn read_secret(what: &'static str, path: &Path) -> Result<String, CredentialError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| CredentialError::Unreadable {
            what,
            path: path.into(),
            source,
        })
}
