//! Lost-webhook recovery. GitHub never redelivers on its own and keeps failed
//! deliveries for 3 days: the sweeper lists the App's failed
//! `deployment_protection_rule` deliveries, and asks GitHub to redeliver each
//! one whose gate does not exist, so a request lost while the operator was down
//! (or answered 503) still becomes a gate.

use std::collections::HashSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::Api;

use super::Intake;
use super::mapping;
use super::payload::DeploymentProtectionRuleEvent;
use crate::api::DeploymentGate;
use crate::github::{GitHubError, HookDelivery};

/// GitHub keeps failed deliveries this long.
const LOOKBACK: SignedDuration = SignedDuration::from_hours(72);

/// What one sweep did, by delivery id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Pages of failed deliveries read (the listing ends at the 72-hour horizon).
    pub pages: usize,
    /// Failed `deployment_protection_rule` deliveries GitHub listed (one per
    /// delivery GUID: repeated failed attempts of one request count once).
    pub examined: Vec<i64>,
    /// Deliveries without a gate that GitHub was asked to redeliver.
    pub redelivered: Vec<i64>,
    /// Deliveries whose gate exists already: nothing to recover.
    pub already_gated: Vec<i64>,
    /// Deliveries that cannot become a gate (not `requested`, unreadable
    /// payload, refused callback URL), with the reason.
    pub skipped: Vec<(i64, String)>,
    /// Deliveries that could not be checked or redelivered now; the next sweep
    /// tries again.
    pub errors: Vec<(i64, String)>,
}

/// A sweep that could not start.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("cannot list the GitHub App's failed webhook deliveries: {0}")]
    List(#[source] GitHubError),
}

enum Outcome {
    Redelivered,
    AlreadyGated,
    Skipped(String),
}

impl Intake {
    /// One sweep: every failed `deployment_protection_rule` delivery of the last
    /// 3 days whose gate does not exist is redelivered by GitHub — except
    /// those our receiver refused as invalid (400, 413), which a redelivery
    /// would only replay.
    pub async fn sweep_once(&self) -> Result<SweepReport, SweepError> {
        let since = Timestamp::now() - LOOKBACK;
        let listed = self
            .inner
            .github
            .failed_deliveries(since)
            .await
            .map_err(SweepError::List)?;
        let mut report = SweepReport {
            pages: listed.pages,
            ..SweepReport::default()
        };
        let mut seen = HashSet::new();
        for d in listed.deliveries {
            let key = if d.guid.is_empty() {
                d.id.to_string()
            } else {
                d.guid.clone()
            };
            if !seen.insert(key) {
                continue;
            }
            report.examined.push(d.id);
            match self.recover(&d).await {
                Ok(Outcome::Redelivered) => {
                    self.inner.metrics.recovered_deliveries.inc();
                    tracing::info!(delivery = d.id, guid = %d.guid, "asked GitHub to redeliver a lost deployment_protection_rule webhook");
                    report.redelivered.push(d.id);
                }
                Ok(Outcome::AlreadyGated) => report.already_gated.push(d.id),
                Ok(Outcome::Skipped(why)) => {
                    tracing::info!(delivery = d.id, guid = %d.guid, reason = %why, "not recovering a failed delivery");
                    report.skipped.push((d.id, why));
                }
                Err(why) => {
                    tracing::warn!(delivery = d.id, guid = %d.guid, error = %why, "cannot recover a failed delivery now; the next sweep tries again");
                    report.errors.push((d.id, why));
                }
            }
        }
        Ok(report)
    }

    /// Runs `sweep_once` now and every `period` after, until the task is
    /// aborted. Run it on the leader only. Needs GitHub App authentication:
    /// with a plain token the sweeper logs why and does not start.
    pub fn spawn_sweeper(self, period: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            if !self.inner.github.is_app() {
                tracing::warn!(
                    "the lost-webhook sweeper needs GitHub App authentication; it is off with a plain token"
                );
                return;
            }
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match self.sweep_once().await {
                    Ok(r) => tracing::debug!(
                        examined = r.examined.len(),
                        redelivered = r.redelivered.len(),
                        errors = r.errors.len(),
                        "swept failed webhook deliveries"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "lost-webhook sweep failed; retrying next period")
                    }
                }
            }
        })
    }

    async fn recover(&self, d: &HookDelivery) -> Result<Outcome, String> {
        if d.action.as_deref().is_some_and(|a| a != "requested") {
            return Ok(Outcome::Skipped(format!(
                "action {:?} is not requested",
                d.action
            )));
        }
        let github = &self.inner.github;
        let payload = github
            .delivery_payload(d.id)
            .await
            .map_err(|e| e.to_string())?;
        let event: DeploymentProtectionRuleEvent = match serde_json::from_value(payload) {
            Ok(e) => e,
            Err(e) => return Ok(Outcome::Skipped(format!("unreadable payload: {e}"))),
        };
        if event.action != "requested" {
            return Ok(Outcome::Skipped(format!(
                "action {:?} is not requested",
                event.action
            )));
        }
        let run_id = match github
            .callback_run_id(&event.deployment_callback_url, &event.repository.full_name)
        {
            Ok(id) => id,
            Err(e) => return Ok(Outcome::Skipped(e.to_string())),
        };
        let key = mapping::gate_key(
            &self.inner.config,
            &event.repository.full_name,
            &event.environment,
            run_id,
        );
        let request = mapping::GateRequest {
            repository: event.repository.full_name.clone(),
            environment: event.environment.clone(),
            sha: event.commit().unwrap_or_default(),
            git_ref: None,
            run_id,
            installation_id: None,
            deployment_id: event.deployment.as_ref().map(|d| d.id),
            requested_at: d.delivered_at.unwrap_or_else(jiff::Timestamp::now),
            delivery: (!d.guid.is_empty()).then(|| d.guid.clone()),
        };
        // The request is gated when a gate intake wrote for it exists, whatever
        // name it got, or an undecided one of its run shares its answer.
        let api: Api<DeploymentGate> = Api::namespaced(self.inner.client.clone(), &key.namespace);
        let selector = format!(
            "{}={run_id},{}={}",
            mapping::LABEL_RUN_ID,
            crate::api::LABEL_MADE_BY,
            crate::api::MADE_BY_INTAKE
        );
        let same_run = tokio::time::timeout(
            self.inner.write_timeout,
            api.list(&kube::api::ListParams::default().labels(&selector)),
        )
        .await
        .map_err(|_| {
            format!(
                "the API server did not list the gates of run {run_id} in {} in time",
                key.namespace
            )
        })?
        .map_err(|e| {
            format!(
                "cannot list the gates of run {run_id} in {}: {e}",
                key.namespace
            )
        })?;
        let gated = same_run.items.iter().any(|g| {
            mapping::same_request(g, &request)
                || matches!(
                    mapping::merge(g, &request),
                    mapping::Merge::Unchanged | mapping::Merge::AddsInformation(_)
                )
        });
        if gated {
            return Ok(Outcome::AlreadyGated);
        }
        github.redeliver(d.id).await.map_err(|e| e.to_string())?;
        Ok(Outcome::Redelivered)
    }
}
