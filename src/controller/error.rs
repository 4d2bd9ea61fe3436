//! What can go wrong in a reconcile, and how the controller reacts to it.

use std::time::Duration;

/// A reconcile that did not finish. Each variant knows whether retrying helps.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request; transient unless it says otherwise.
    #[error("Kubernetes API request for {object} failed: {source}")]
    Kube {
        object: String,
        #[source]
        source: kube::Error,
    },
    /// Someone else wrote the object since it was read; re-read and try again.
    #[error("{object} changed while it was being updated (resourceVersion conflict); re-reading")]
    Conflict { object: String },
}

impl From<crate::cluster::status::WriteError> for Error {
    fn from(e: crate::cluster::status::WriteError) -> Self {
        Error::kube(e.object, e.source)
    }
}

impl Error {
    /// Wraps a kube error, telling conflicts apart.
    pub fn kube(object: impl Into<String>, source: kube::Error) -> Self {
        let object = object.into();
        match &source {
            kube::Error::Api(status) if status.code == 409 => Error::Conflict { object },
            _ => Error::Kube { object, source },
        }
    }

    /// The object is gone from the API server (a 404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Kube { source: kube::Error::Api(status), .. } if status.code == 404)
    }

    /// A short word for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Conflict { .. } => "conflict",
        }
    }

    /// The delay before the first retry; later retries back off from here.
    pub fn base_delay(&self) -> Duration {
        match self {
            Error::Conflict { .. } => Duration::from_millis(50),
            Error::Kube { .. } => Duration::from_millis(500),
        }
    }
}
