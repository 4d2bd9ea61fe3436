//! Auto-pause: a `workflow_run` that completed with conclusion `failure` on a
//! watched branch becomes (or updates) a ReleasePause `{reason: ci-failed, sha}`,
//! so a red main holds production by itself. A later success does not resume:
//! a person resumes, and the engine's recovery rule applies (a new failing sha
//! pauses again; restating the resumed sha changes nothing).

use std::collections::BTreeMap;

use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use super::mapping::{LABEL_REPOSITORY, pause_name, repository_label};
use super::payload::{FieldError, WorkflowRunEvent};
use crate::api::{LABEL_MADE_BY, MADE_BY_INTAKE, PauseScope, ReleasePause, ReleasePauseSpec};
use crate::config::{AutoPauseRule, OperatorConfig};
use crate::policy::glob_match;

/// The `reason` of every pause written here.
pub const REASON: &str = "ci-failed";

/// The rules a failed, completed run falls under; empty for any other run.
pub fn matching_rules<'a>(
    rules: &'a [AutoPauseRule],
    event: &WorkflowRunEvent,
) -> Vec<&'a AutoPauseRule> {
    let run = &event.workflow_run;
    if event.action != "completed" || run.conclusion.as_deref() != Some("failure") {
        return Vec::new();
    }
    let Some(branch) = run.head_branch.as_deref() else {
        return Vec::new();
    };
    let repo = event.repository.full_name.to_ascii_lowercase();
    rules
        .iter()
        .filter(|r| glob_match(&r.repository.to_ascii_lowercase(), &repo))
        .filter(|r| r.branch == branch)
        .filter(|r| {
            r.workflows.is_empty()
                || run
                    .name
                    .as_deref()
                    .is_some_and(|n| r.workflows.iter().any(|w| w == n))
        })
        .collect()
}

/// The ReleasePause a rule asks for after `event`'s failed run.
pub fn pause_for_failed_run(
    config: &OperatorConfig,
    rule: &AutoPauseRule,
    event: &WorkflowRunEvent,
) -> Result<ReleasePause, FieldError> {
    let run = &event.workflow_run;
    let sha = run.head_sha.to_ascii_lowercase();
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FieldError {
            field: "workflow_run.head_sha",
            why: format!("must be 40 hex digits, got {:?}", run.head_sha),
        });
    }
    let repository = event.repository.full_name.clone();
    let branch = run.head_branch.clone().unwrap_or_default();
    let workflow = run.name.as_deref().unwrap_or("a workflow");
    let mut message = format!(
        "{workflow} failed on {repository}@{branch} at {}: {}",
        &sha[..7],
        run.html_url
            .clone()
            .unwrap_or_else(|| format!("run {}", run.id))
    );
    message.truncate(1024);
    Ok(ReleasePause {
        metadata: ObjectMeta {
            name: Some(pause_name(&repository, &branch)),
            namespace: Some(
                rule.namespace
                    .clone()
                    .unwrap_or_else(|| config.defaults.namespace.clone()),
            ),
            labels: Some(BTreeMap::from([
                (LABEL_REPOSITORY.to_string(), repository_label(&repository)),
                // Intake's own: retention deletes it once resumed or expired.
                (LABEL_MADE_BY.to_string(), MADE_BY_INTAKE.to_string()),
            ])),
            ..ObjectMeta::default()
        },
        spec: ReleasePauseSpec {
            scope: PauseScope {
                repositories: vec![repository],
                environments: rule.environments.clone(),
            },
            reason: REASON.to_string(),
            sha: Some(sha),
            message: Some(message),
            schedule: None,
            resume: None,
            expires_at: None,
        },
        status: None,
    })
}

/// What writing a pause did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
}

/// Creates the pause, or merge-patches the fields this writer owns (scope,
/// reason, sha, message) into the existing one, leaving `resume`, `schedule`
/// and `expiresAt` to people.
pub async fn write(client: &Client, pause: &ReleasePause) -> Result<Written, kube::Error> {
    let namespace = pause
        .metadata
        .namespace
        .as_deref()
        .expect("pause_for_failed_run always sets the namespace");
    let name = pause
        .metadata
        .name
        .as_deref()
        .expect("pause_for_failed_run always sets the name");
    let api: Api<ReleasePause> = Api::namespaced(client.clone(), namespace);
    match api.create(&PostParams::default(), pause).await {
        Ok(_) => Ok(Written::Created),
        Err(kube::Error::Api(s)) if s.is_already_exists() => {
            let patch = serde_json::json!({
                "metadata": {"labels": pause.metadata.labels},
                "spec": {
                    "scope": pause.spec.scope,
                    "reason": pause.spec.reason,
                    "sha": pause.spec.sha,
                    "message": pause.spec.message,
                }
            });
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(Written::Updated)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, conclusion: Option<&str>, branch: &str, name: &str) -> WorkflowRunEvent {
        serde_json::from_value(serde_json::json!({
            "action": action,
            "workflow_run": {
                "id": 30433642, "name": name, "head_branch": branch,
                "head_sha": "ACB5820CED9479C074F688CC328BF03F341A511D",
                "conclusion": conclusion,
                "html_url": "https://github.com/acme/web/actions/runs/30433642"
            },
            "repository": {"full_name": "acme/web"}
        }))
        .expect("workflow_run payload")
    }

    fn config() -> OperatorConfig {
        OperatorConfig::parse(
            "autoPause:\n- repository: acme/web\n  branch: main\n  workflows: [CI]\n  environments: [production]\n  namespace: web\n- repository: acme/*\n  branch: release\n",
        )
        .expect("valid config")
    }

    #[test]
    fn only_failed_completed_runs_on_the_branch_and_workflow_match() {
        let c = config();
        assert_eq!(
            matching_rules(
                &c.auto_pause,
                &event("completed", Some("failure"), "main", "CI")
            )
            .len(),
            1
        );
        assert!(
            matching_rules(
                &c.auto_pause,
                &event("completed", Some("success"), "main", "CI")
            )
            .is_empty()
        );
        assert!(
            matching_rules(&c.auto_pause, &event("in_progress", None, "main", "CI")).is_empty()
        );
        assert!(
            matching_rules(
                &c.auto_pause,
                &event("completed", Some("failure"), "feature", "CI")
            )
            .is_empty()
        );
        assert!(
            matching_rules(
                &c.auto_pause,
                &event("completed", Some("failure"), "main", "Docs")
            )
            .is_empty()
        );
        assert_eq!(
            matching_rules(
                &c.auto_pause,
                &event("completed", Some("failure"), "release", "Docs")
            )
            .len(),
            1,
            "no workflow list: every workflow counts"
        );
    }

    #[test]
    fn pause_is_named_for_repository_and_branch_and_says_which_run_failed() {
        let c = config();
        let e = event("completed", Some("failure"), "main", "CI");
        let p = pause_for_failed_run(&c, &c.auto_pause[0], &e).expect("pause");
        assert_eq!(p.metadata.name.as_deref(), Some("ci-failed-acme-web-main"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("web"));
        assert_eq!(p.spec.reason, "ci-failed");
        assert_eq!(
            p.spec.sha.as_deref(),
            Some("acb5820ced9479c074f688cc328bf03f341a511d")
        );
        assert_eq!(p.spec.scope.repositories, vec!["acme/web"]);
        assert_eq!(p.spec.scope.environments, vec!["production"]);
        assert_eq!(
            p.spec.message.as_deref(),
            Some(
                "CI failed on acme/web@main at acb5820: https://github.com/acme/web/actions/runs/30433642"
            )
        );
        let other = pause_for_failed_run(&c, &c.auto_pause[1], &e).expect("pause");
        assert_eq!(other.metadata.namespace.as_deref(), Some("tollgate"));
    }
}
