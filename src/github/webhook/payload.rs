//! The webhook payloads Tollgate reads, typed after GitHub's documentation.
//! Only the fields used are declared; everything else GitHub sends is ignored.

use serde::Deserialize;

/// Just the `action` of any event, read before the full payload.
#[derive(Debug, Deserialize)]
pub struct Action {
    #[serde(default)]
    pub action: Option<String>,
}

/// `deployment_protection_rule` (action `requested`): a job waits for the App's answer.
///
/// Documented top-level fields: `action`, `environment`, `event`, `sha`, `ref`,
/// `deployment_callback_url`, `deployment` (nullable), `pull_requests`,
/// `repository`, `organization`, `installation`, `sender`.
#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentProtectionRuleEvent {
    pub action: String,
    /// The environment the job deploys to.
    pub environment: String,
    /// The event that triggered the workflow run (`push`, `workflow_dispatch`, …).
    #[serde(default)]
    pub event: Option<String>,
    /// The commit being deployed. Older payloads carry it only in `deployment.sha`.
    #[serde(default)]
    pub sha: Option<String>,
    /// The git ref, possibly short (`main`).
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
    /// The review endpoint: `{api}/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule`.
    pub deployment_callback_url: String,
    /// The deployment, when GitHub created one; may be null.
    #[serde(default)]
    pub deployment: Option<Deployment>,
    pub repository: Repository,
    /// Present when the App is installed (always, for App webhooks).
    #[serde(default)]
    pub installation: Option<Installation>,
    #[serde(default)]
    pub sender: Option<Account>,
}

/// The `deployment` object of a `deployment_protection_rule` payload.
#[derive(Debug, Clone, Deserialize)]
pub struct Deployment {
    pub id: i64,
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
    /// When GitHub created the deployment, i.e. raised the request.
    #[serde(default)]
    pub created_at: Option<jiff::Timestamp>,
}

/// The repository an event is about.
#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    /// `owner/name`.
    pub full_name: String,
}

/// The App installation that sent the event.
#[derive(Debug, Clone, Deserialize)]
pub struct Installation {
    pub id: i64,
}

/// A user or bot.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub login: String,
}

/// `workflow_run`: a workflow run was requested, is in progress or completed.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkflowRunEvent {
    pub action: String,
    pub workflow_run: WorkflowRun,
    pub repository: Repository,
}

/// The `workflow_run` object of a `workflow_run` payload.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkflowRun {
    pub id: i64,
    /// The workflow's name (`CI`).
    #[serde(default)]
    pub name: Option<String>,
    /// The branch the run ran on; null for runs on tags or forks.
    #[serde(default)]
    pub head_branch: Option<String>,
    pub head_sha: String,
    /// `success`, `failure`, `cancelled`, …; null until completed.
    #[serde(default)]
    pub conclusion: Option<String>,
    /// The run's page, for people.
    #[serde(default)]
    pub html_url: Option<String>,
}

/// A payload that parsed but cannot become a gate; the text names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}` {why}")]
pub struct FieldError {
    pub field: &'static str,
    pub why: String,
}

impl DeploymentProtectionRuleEvent {
    /// The commit being deployed: top-level `sha`, else `deployment.sha`;
    /// 40 hex digits, lowercased.
    pub fn commit(&self) -> Result<String, FieldError> {
        let sha = self
            .sha
            .as_deref()
            .or(self.deployment.as_ref().and_then(|d| d.sha.as_deref()))
            .ok_or(FieldError {
                field: "sha",
                why: "is missing (neither the top-level sha nor deployment.sha is set)".into(),
            })?;
        if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FieldError {
                field: "sha",
                why: format!("must be 40 hex digits, got {sha:?}"),
            });
        }
        Ok(sha.to_ascii_lowercase())
    }

    /// The git ref: top-level `ref`, else `deployment.ref`; `None` when neither is set.
    pub fn reference(&self) -> Option<String> {
        self.git_ref
            .as_deref()
            .or(self.deployment.as_ref().and_then(|d| d.git_ref.as_deref()))
            .filter(|r| !r.is_empty())
            .map(str::to_string)
    }

    /// Checks what the gate's schema requires of the environment and repository.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.environment.is_empty() || self.environment.len() > 255 {
            return Err(FieldError {
                field: "environment",
                why: "must be 1 to 255 characters".into(),
            });
        }
        let repo_ok = self.repository.full_name.len() <= 140
            && self
                .repository
                .full_name
                .split_once('/')
                .is_some_and(|(o, n)| {
                    let ok = |s: &str| {
                        !s.is_empty()
                            && s.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                    };
                    ok(o) && ok(n)
                });
        if !repo_ok {
            return Err(FieldError {
                field: "repository.full_name",
                why: format!("must be owner/name, got {:?}", self.repository.full_name),
            });
        }
        Ok(())
    }
}

/// A serde_json error as a client-facing sentence. serde_json names the
/// missing or mistyped field (`missing field `sha``); the position says where.
pub fn describe_json_error(event: &str, e: &serde_json::Error) -> String {
    format!("invalid {event} payload: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: serde_json::Value) -> DeploymentProtectionRuleEvent {
        serde_json::from_value(json).expect("payload parses")
    }

    #[test]
    fn sha_falls_back_to_the_deployment_and_is_lowercased() {
        let e = event(serde_json::json!({
            "action": "requested", "environment": "production",
            "deployment_callback_url": "https://api.github.com/repos/a/b/actions/runs/1/deployment_protection_rule",
            "deployment": {"id": 5, "sha": "ABCDEF0123456789ABCDEF0123456789ABCDEF01", "ref": "main"},
            "repository": {"full_name": "a/b"}
        }));
        assert_eq!(
            e.commit(),
            Ok("abcdef0123456789abcdef0123456789abcdef01".to_string())
        );
        assert_eq!(e.reference().as_deref(), Some("main"));
    }

    #[test]
    fn missing_sha_names_the_field() {
        let e = event(serde_json::json!({
            "action": "requested", "environment": "production",
            "deployment_callback_url": "x", "deployment": null,
            "repository": {"full_name": "a/b"}
        }));
        let err = e.commit().expect_err("no sha anywhere");
        assert_eq!(err.field, "sha");
        assert!(
            err.to_string().starts_with("field `sha` is missing"),
            "{err}"
        );
    }

    #[test]
    fn serde_names_a_missing_nested_field() {
        let err = serde_json::from_str::<DeploymentProtectionRuleEvent>(
            r#"{"action":"requested","environment":"p","deployment_callback_url":"x","repository":{}}"#,
        )
        .expect_err("no full_name");
        let text = describe_json_error("deployment_protection_rule", &err);
        assert!(text.contains("missing field `full_name`"), "{text}");
    }

    #[test]
    fn repository_names_outside_the_schema_are_refused() {
        let e = event(serde_json::json!({
            "action": "requested", "environment": "production",
            "deployment_callback_url": "x", "sha": "0".repeat(40),
            "repository": {"full_name": "a/b/c"}
        }));
        assert_eq!(
            e.check().expect_err("three parts").field,
            "repository.full_name"
        );
    }
}
