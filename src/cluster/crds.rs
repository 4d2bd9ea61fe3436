//! Start-up's first question to the API server: are both CRDs served, and are
//! they the ones this binary was built with? Without them every watch fails
//! with a 404 that says nothing to a new user; with an older schema the API
//! server prunes status fields the operator writes.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};

use super::Server;
use crate::api::{ANNOTATION_SCHEMA, GROUP, crds};

/// What to run when the CRDs are missing or stale, in every message that says so.
pub const APPLY_CRDS: &str = "tollgate crd | kubectl apply --server-side --force-conflicts -f -";

/// How far the CRDs could be checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    /// Both are served and carry this binary's schema fingerprint.
    Current,
    /// Both are served; their version could not be read (no permission to get
    /// CustomResourceDefinitions, as under namespaced RBAC).
    ServedUnverified,
}

/// Why the CRDs are not usable.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error(
        "the {kind} CRD ({name}) is not installed on {server}: run `{APPLY_CRDS}` (or `kubectl apply --server-side -f crds/tollgate.dev_crds.yaml`), then start Tollgate again"
    )]
    Missing {
        kind: String,
        name: String,
        server: Server,
    },
    #[error(
        "the {name} CRD on {server} is not this Tollgate's (schema {found}, this binary has {expected}): run `{APPLY_CRDS}` with this version's binary, then start Tollgate again"
    )]
    Stale {
        name: String,
        server: Server,
        found: String,
        expected: String,
    },
    #[error("cannot reach the Kubernetes API server at {server}: {reason}")]
    Unreachable { server: Server, reason: String },
    #[error(
        "the Kubernetes API server at {server} refused to tell which resources it serves: {reason}"
    )]
    Refused { server: Server, reason: String },
}

impl CrdError {
    /// Whether trying again later may succeed without anyone acting (the
    /// server is down or overloaded); a missing or stale CRD needs a person.
    pub fn retryable(&self) -> bool {
        matches!(self, CrdError::Unreachable { .. })
    }
}

/// Checks that the API server behind `client` serves both CRDs at this
/// binary's version.
pub async fn check_crds(client: &Client, server: &Server) -> Result<Installed, CrdError> {
    let wanted = crds();
    let version = wanted
        .first()
        .and_then(|c| c.spec.versions.first())
        .map(|v| v.name.clone())
        .unwrap_or_default();
    let served = match client
        .list_api_group_resources(&format!("{GROUP}/{version}"))
        .await
    {
        Ok(list) => list.resources,
        Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
        Err(e) => return Err(failure(e, server)),
    };
    for crd in &wanted {
        if !served.iter().any(|r| r.name == crd.spec.names.plural) {
            return Err(CrdError::Missing {
                kind: crd.spec.names.kind.clone(),
                name: crd.metadata.name.clone().unwrap_or_default(),
                server: server.clone(),
            });
        }
    }
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in &wanted {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let installed = match api.get(&name).await {
            Ok(installed) => installed,
            Err(kube::Error::Api(s)) if s.code == 403 => return Ok(Installed::ServedUnverified),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return Err(CrdError::Missing {
                    kind: crd.spec.names.kind.clone(),
                    name,
                    server: server.clone(),
                });
            }
            Err(e) => return Err(failure(e, server)),
        };
        let fingerprint = |c: &CustomResourceDefinition| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_SCHEMA))
                .cloned()
        };
        let expected = fingerprint(crd).unwrap_or_default();
        let found = fingerprint(&installed);
        if found.as_deref() != Some(expected.as_str()) {
            return Err(CrdError::Stale {
                name,
                server: server.clone(),
                found: found.unwrap_or_else(|| "none".into()),
                expected,
            });
        }
    }
    Ok(Installed::Current)
}

/// An API error answer (other than 404/403 above) means the server is up but
/// refuses; anything else (connect, TLS, timeout, 5xx) may pass by itself.
fn failure(e: kube::Error, server: &Server) -> CrdError {
    let reason = describe(&e);
    match e {
        kube::Error::Api(s) if s.code < 500 => CrdError::Refused {
            server: server.clone(),
            reason,
        },
        _ => CrdError::Unreachable {
            server: server.clone(),
            reason,
        },
    }
}

/// An error with its causes, "client error (Connect): tcp connect error:
/// Connection refused", since the outermost alone names no cause.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
