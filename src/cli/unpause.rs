//! `tollgate unpause`: resume a ReleasePause for the failure it holds now —
//! its current (sha, reason), and for a freeze window the open occurrence —
//! then wait until the operator acknowledges it.
//!
//! The resume is made durable first: the recovery is written to
//! `status.recovery` (as the operator would record it, with the pause's
//! resourceVersion as precondition), then `spec.resume`. Only a recorded
//! recovery releases gates, so a writer that drops `spec.resume` a moment later
//! cannot make this resume lost, nor half-happened.

use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::args::{namespace_or_default, parse_duration, timestamp};
use super::error::{Call, CliError, is_conflict};
use super::identity::whoami;
use crate::api::{PauseState, ReleasePause, Resume};
use crate::policy::recovery::accepted_resume;
use crate::policy::window::current_and_next;

/// Flags of `tollgate unpause`.
#[derive(clap::Args, Debug, Clone)]
pub struct UnpauseArgs {
    /// The ReleasePause's name.
    pub name: String,
    /// Namespace of the pause; default: the kubeconfig context's.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Record the resume and return without waiting for the operator.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the operator's acknowledgement.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// How often the pause is read while waiting for the acknowledgement.
const POLL: Duration = Duration::from_millis(250);
/// Recording the recovery is retried this often when the pause changes under it.
const ATTEMPTS: u32 = 3;

/// The resume written to `spec.resume`.
#[derive(Debug, Clone, PartialEq)]
struct Wanted {
    sha: Option<String>,
    reason: String,
    window: Option<Timestamp>,
}

/// Writes `spec.resume` for the pause's current failure and, unless `--no-wait`,
/// waits until `status.state` is `Resumed` for exactly that failure.
pub async fn unpause(
    client: &Client,
    args: &UnpauseArgs,
    now: Timestamp,
) -> Result<String, CliError> {
    let namespace = namespace_or_default(client, args.namespace.as_deref());
    let api: Api<ReleasePause> = Api::namespaced(client.clone(), &namespace);
    let call = |verb| Call {
        verb,
        kind: "ReleasePause",
        resource: "releasepauses.tollgate.dev",
        namespace: Some(&namespace),
        name: Some(&args.name),
    };
    let id = format!("{namespace}/{}", args.name);
    let mut who: Option<String> = None;
    let mut attempts = 0;
    let (wanted, by, unrecorded) = loop {
        attempts += 1;
        let pause = api
            .get(&args.name)
            .await
            .map_err(|e| call("get").error(e))?;
        let wanted = match wanted_now(&pause, &id, now)? {
            Ok(wanted) => wanted,
            Err(nothing_to_lift) => return Ok(nothing_to_lift),
        };
        // Asked once, and only when there is something to resume.
        let by = match &who {
            Some(by) => by,
            None => who.insert(whoami(client).await?),
        };
        match record(&api, &pause, &wanted, by, now).await {
            Ok(()) => break (wanted, by.clone(), false),
            Err(e) if is_conflict(&e) && attempts < ATTEMPTS => continue,
            Err(e) if is_conflict(&e) => {
                return Err(CliError::Conflict {
                    kind: "ReleasePause",
                    namespace,
                    name: args.name.clone(),
                    attempts,
                });
            }
            // Without the right to write its status, the resume still works:
            // the operator records it when it sees spec.resume, and only then
            // releases gates; a writer dropping spec.resume before that undoes it.
            Err(kube::Error::Api(status)) if status.code == 403 => {
                break (wanted, by.clone(), true);
            }
            Err(e) => return Err(status_call(&namespace, &args.name).error(e)),
        }
    };
    // Explicit nulls clear a window or sha left over from an older resume.
    let patch = json!({"spec": {"resume": {
        "sha": wanted.sha,
        "reason": wanted.reason,
        "window": wanted.window,
        "by": by,
    }}});
    let written = api
        .patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| call("patch").error(e))?;
    let what = describe(&wanted);
    if args.no_wait {
        let note = if unrecorded {
            " (you may not write its status: the operator records it once it sees spec.resume)"
        } else {
            ""
        };
        return Ok(format!(
            "ReleasePause {id}: resume of {what} recorded by {by}{note}; not waiting for the operator.\n"
        ));
    }
    let generation = written.metadata.generation.unwrap_or(0);
    let waited = tokio::time::timeout(args.timeout, async {
        loop {
            let current = api
                .get(&args.name)
                .await
                .map_err(|e| call("get").error(e))?;
            if let Some(done) = acknowledged(&current, &wanted, generation) {
                return Ok::<_, CliError>(done);
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    match waited {
        Ok(Ok(Acknowledged::Resumed)) => Ok(format!(
            "ReleasePause {id}: resumed {what} by {by}; the operator acknowledged it and held gates are released.\n"
        )),
        Ok(Ok(Acknowledged::Inactive(message))) => Ok(format!(
            "ReleasePause {id}: resume of {what} recorded by {by}; the pause is Inactive ({message}).\n"
        )),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(CliError::NotAcknowledged {
            namespace,
            name: args.name.clone(),
            waited: format!("{:?}", args.timeout),
        }),
    }
}

/// What to resume now: the pause's current failure, and for a freeze window
/// the occurrence open now. `Err` carries the answer when there is nothing to
/// lift (outside the window).
fn wanted_now(
    pause: &ReleasePause,
    id: &str,
    now: Timestamp,
) -> Result<Result<Wanted, String>, CliError> {
    // A freeze window is lifted one occurrence at a time: the one open now.
    let window = match &pause.spec.schedule {
        None => None,
        Some(schedule) => {
            let times = current_and_next(schedule, now).map_err(|e| {
                CliError::Usage(format!(
                    "ReleasePause {id} has a schedule the operator cannot use: {e}"
                ))
            })?;
            match times.current {
                Some((start, _)) => Some(start),
                None => {
                    let next = times
                        .next_start
                        .map(|t| format!("; the next one opens at {}", timestamp(t)))
                        .unwrap_or_default();
                    return Ok(Err(format!(
                        "ReleasePause {id} is outside its freeze window: nothing to lift now{next}.\n"
                    )));
                }
            }
        }
    };
    Ok(Ok(Wanted {
        sha: pause.spec.sha.clone(),
        reason: pause.spec.reason.clone(),
        window,
    }))
}

/// Writes the recovery of `wanted` to the pause's status, exactly as the
/// operator records an accepted resume, unless it is recorded already.
/// Precondition: the resourceVersion `wanted` was read from, so a pause that
/// changed meanwhile (a new failure) is read again rather than resumed.
async fn record(
    api: &Api<ReleasePause>,
    pause: &ReleasePause,
    wanted: &Wanted,
    by: &str,
    now: Timestamp,
) -> Result<(), kube::Error> {
    let mut resumed = pause.clone();
    resumed.spec.resume = Some(Resume {
        sha: wanted.sha.clone(),
        reason: wanted.reason.clone(),
        window: wanted.window,
        by: Some(by.to_string()),
    });
    let Some(recovery) = accepted_resume(&resumed, now) else {
        return Ok(());
    };
    let patch = json!({
        "metadata": {"resourceVersion": pause.resource_version()},
        "status": {"recovery": recovery},
    });
    api.patch_status(
        &pause.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}

fn status_call<'a>(namespace: &'a str, name: &'a str) -> Call<'a> {
    Call {
        verb: "patch",
        kind: "ReleasePause",
        resource: "releasepauses.tollgate.dev/status",
        namespace: Some(namespace),
        name: Some(name),
    }
}

enum Acknowledged {
    Resumed,
    Inactive(String),
}

/// The operator has seen the resume: it observed the generation we wrote and
/// says Resumed for exactly our (sha, reason, window) — or the pause has ended.
fn acknowledged(pause: &ReleasePause, wanted: &Wanted, generation: i64) -> Option<Acknowledged> {
    let status = pause.status.as_ref()?;
    if status.observed_generation.is_some_and(|g| g < generation) {
        return None;
    }
    match status.state? {
        PauseState::Resumed => {
            let r = status.recovery.as_ref()?;
            let same = r.sha == wanted.sha
                && r.reason == wanted.reason
                && (wanted.window.is_none() || r.window == wanted.window);
            same.then_some(Acknowledged::Resumed)
        }
        PauseState::Inactive if status.observed_generation.is_some() => {
            Some(Acknowledged::Inactive(
                status
                    .message
                    .clone()
                    .unwrap_or_else(|| "not holding".into()),
            ))
        }
        _ => None,
    }
}

fn describe(w: &Wanted) -> String {
    let mut s = w.reason.clone();
    if let Some(sha) = &w.sha {
        s.push_str(&format!(" at {}", &sha[..sha.len().min(7)]));
    }
    if let Some(start) = w.window {
        s.push_str(&format!(" (the window opened {})", timestamp(start)));
    }
    s
}
