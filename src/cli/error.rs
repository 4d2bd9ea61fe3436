//! What can go wrong in an operator command, each said so a person can act on it.

use kube::core::Status;

/// An operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "no Kubernetes cluster to talk to: {0}; set KUBECONFIG or select a context with `kubectl config use-context`"
    )]
    NoCluster(String),

    #[error(
        "cannot reach the Kubernetes API server while trying to {doing}: {message}; check that the cluster in your kubeconfig is up"
    )]
    Unreachable { doing: String, message: String },

    #[error("no {kind} {namespace}/{name}: list them with `tollgate status -n {namespace}`")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },

    #[error(
        "the cluster does not serve {resource}: install Tollgate's CRDs first (`kubectl apply -f crds/`)"
    )]
    CrdMissing { resource: String },

    #[error(
        "forbidden: you may not {verb} {resource}{scope}; ask a cluster admin for an RBAC role that grants `{verb}` on `{resource}` (the API server said: {message})"
    )]
    Forbidden {
        verb: &'static str,
        resource: String,
        scope: String,
        message: String,
    },

    #[error(
        "{kind} {namespace}/{name} already exists: pick another name with --name, or resume it with `tollgate unpause {name} -n {namespace}`"
    )]
    AlreadyExists {
        kind: &'static str,
        namespace: String,
        name: String,
    },

    #[error(
        "DeploymentGate {namespace}/{name} is already decided ({verdict} by {decided_by}: {reason}); a decision is final and cannot be overridden"
    )]
    AlreadyDecided {
        namespace: String,
        name: String,
        verdict: String,
        decided_by: String,
        reason: String,
    },

    #[error(
        "DeploymentGate {namespace}/{name} is refused by tenancy ({why}); the operator never answers for it, so an override would change nothing — gate the run from a namespace allowed to, or ask the operator's admin for a tenancy rule"
    )]
    RefusedByTenancy {
        namespace: String,
        name: String,
        why: String,
    },

    #[error(
        "{kind} {namespace}/{name} changed while it was being updated, {attempts} times in a row; try again"
    )]
    Conflict {
        kind: &'static str,
        namespace: String,
        name: String,
        attempts: u32,
    },

    #[error("the API server refused to {doing}: {message}")]
    Invalid { doing: String, message: String },

    #[error("cannot tell who you are: the SelfSubjectReview failed: {0}")]
    Identity(String),

    #[error(
        "the operator has not acknowledged the resume of ReleasePause {namespace}/{name} within {waited}; spec.resume is recorded and takes effect once the operator runs (check `kubectl -n {namespace} get rp {name}` and the operator's logs), or pass --no-wait"
    )]
    NotAcknowledged {
        namespace: String,
        name: String,
        waited: String,
    },

    #[error("{0}")]
    Usage(String),

    #[error("Kubernetes API error while trying to {doing}: {message}")]
    Api { doing: String, message: String },
}

/// One API call, described well enough to explain its failure.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// The RBAC verb: get, list, create, patch.
    pub verb: &'static str,
    /// The kind, e.g. `DeploymentGate`.
    pub kind: &'static str,
    /// The resource with its group, e.g. `deploymentgates.tollgate.dev`.
    pub resource: &'static str,
    /// The namespace, or `None` for all namespaces or cluster-scoped calls.
    pub namespace: Option<&'a str>,
    /// The object's name, for calls on one object.
    pub name: Option<&'a str>,
}

impl Call<'_> {
    fn doing(&self) -> String {
        let mut s = format!("{} {}", self.verb, self.resource);
        if let Some(name) = self.name {
            s.push_str(&format!(" {name}"));
        }
        s.push_str(&self.scope());
        s
    }

    fn scope(&self) -> String {
        match self.namespace {
            Some(ns) => format!(" in namespace {ns}"),
            None => " in all namespaces".to_string(),
        }
    }

    /// Turns a client error from this call into a sentence a person can act on.
    pub fn error(&self, err: kube::Error) -> CliError {
        match err {
            kube::Error::Api(status) => self.api_error(&status),
            kube::Error::HyperError(e) => CliError::Unreachable {
                doing: self.doing(),
                message: e.to_string(),
            },
            kube::Error::Service(e) => CliError::Unreachable {
                doing: self.doing(),
                message: e.to_string(),
            },
            other => CliError::Api {
                doing: self.doing(),
                message: other.to_string(),
            },
        }
    }

    fn api_error(&self, status: &Status) -> CliError {
        let namespace = self.namespace.unwrap_or_default().to_string();
        match status.code {
            404 if self.name.is_some() && !is_missing_resource(status) => CliError::NotFound {
                kind: self.kind,
                namespace,
                name: self.name.unwrap_or_default().to_string(),
            },
            404 => CliError::CrdMissing {
                resource: self.resource.to_string(),
            },
            403 => CliError::Forbidden {
                verb: self.verb,
                resource: self.resource.to_string(),
                scope: self.scope(),
                message: status.message.clone(),
            },
            409 if self.verb == "create" => CliError::AlreadyExists {
                kind: self.kind,
                namespace,
                name: self.name.unwrap_or_default().to_string(),
            },
            400 | 409 | 422 => CliError::Invalid {
                doing: self.doing(),
                message: status.message.clone(),
            },
            _ => CliError::Api {
                doing: self.doing(),
                message: format!("{} ({})", status.message, status.code),
            },
        }
    }
}

/// A 404 for the resource type itself (CRD not installed) rather than one object.
fn is_missing_resource(status: &Status) -> bool {
    let named = status.details.as_ref().is_some_and(|d| !d.name.is_empty());
    !named
        && status
            .message
            .contains("could not find the requested resource")
}

/// True for a 409 Conflict (a stale resourceVersion).
pub fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409)
}
