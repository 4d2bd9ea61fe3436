//! `tollgate pause`: create a ReleasePause that holds releases for a scope.

use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};

use super::args::{namespace_or_default, parse_duration, timestamp};
use super::error::{Call, CliError};
use crate::api::{PauseScope, ReleasePause, ReleasePauseSpec};

/// Flags of `tollgate pause`.
#[derive(clap::Args, Debug, Clone)]
pub struct PauseArgs {
    /// Repository to hold, as `owner/name` or a glob such as `acme/*` (repeatable).
    #[arg(long, short = 'r', required = true)]
    pub repository: Vec<String>,
    /// Environment to hold (repeatable); none means every environment.
    #[arg(long, short = 'e')]
    pub environment: Vec<String>,
    /// Why, as a machine word such as `ci-failed`, `incident` or `freeze`.
    #[arg(long, value_parser = parse_reason_word)]
    pub reason: String,
    /// The failing commit (40 lowercase hex characters), when the pause is about one.
    #[arg(long, value_parser = parse_sha)]
    pub sha: Option<String>,
    /// For people: what happened and what to do.
    #[arg(long)]
    pub message: Option<String>,
    /// End the pause by itself after this long (`30m`, `4h`), so it cannot be forgotten.
    #[arg(long = "for", value_parser = parse_duration, value_name = "DURATION")]
    pub for_duration: Option<Duration>,
    /// Namespace of the ReleasePause; default: the kubeconfig context's.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Name of the ReleasePause; default: derived from the first repository and the reason.
    #[arg(long)]
    pub name: Option<String>,
}

/// Creates the ReleasePause and says what it holds.
pub async fn pause(client: &Client, args: &PauseArgs, now: Timestamp) -> Result<String, CliError> {
    let namespace = namespace_or_default(client, args.namespace.as_deref());
    let name = match &args.name {
        Some(n) => n.clone(),
        None => derived_name(&args.repository[0], &args.reason),
    };
    let expires_at =
        match args.for_duration {
            None => None,
            Some(d) => Some(now.checked_add(d).map_err(|e| {
                CliError::Usage(format!("--for {d:?} is too far in the future: {e}"))
            })?),
        };
    let pause = ReleasePause {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: ReleasePauseSpec {
            scope: PauseScope {
                repositories: args.repository.clone(),
                environments: args.environment.clone(),
            },
            reason: args.reason.clone(),
            sha: args.sha.clone(),
            message: args.message.clone(),
            schedule: None,
            resume: None,
            expires_at,
        },
        status: None,
    };
    let api: Api<ReleasePause> = Api::namespaced(client.clone(), &namespace);
    let created = api
        .create(&PostParams::default(), &pause)
        .await
        .map_err(|e| {
            Call {
                verb: "create",
                kind: "ReleasePause",
                resource: "releasepauses.tollgate.dev",
                namespace: Some(&namespace),
                name: Some(&name),
            }
            .error(e)
        })?;
    let envs = if args.environment.is_empty() {
        "every environment".to_string()
    } else {
        args.environment.join(", ")
    };
    let mut out = format!(
        "ReleasePause {namespace}/{} created: holds {} ({envs}) for {}",
        created.name_any(),
        args.repository.join(", "),
        args.reason
    );
    if let Some(sha) = &args.sha {
        out.push_str(&format!(" at {}", &sha[..7]));
    }
    match expires_at {
        Some(t) => out.push_str(&format!(" until {}", timestamp(t))),
        None => out.push_str(" until resumed"),
    }
    out.push_str(&format!(
        ".\nLift it with: tollgate unpause {} -n {namespace}\n",
        created.name_any()
    ));
    Ok(out)
}

/// `acme/web` + `ci-failed` → `acme-web-ci-failed`: a valid object name, at most 63 characters.
pub fn derived_name(repository: &str, reason: &str) -> String {
    let mut name = String::new();
    for c in format!("{repository}-{reason}").chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    name.truncate(63);
    let name = name.trim_end_matches('-').to_string();
    if name.is_empty() {
        "pause".to_string()
    } else {
        name
    }
}

fn parse_reason_word(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err("the reason is a machine word: lowercase letters, digits and dashes, e.g. ci-failed (put the words for people in --message)".into())
    }
}

fn parse_sha(s: &str) -> Result<String, String> {
    if s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(s.to_string())
    } else {
        Err("the full commit sha: 40 lowercase hex characters".into())
    }
}
