//! Which API server the operator talks to, named the way its user knows it:
//! the URL and the kubeconfig context, or "in-cluster".

use std::fmt;

/// The API server of a client, for log lines and errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    url: String,
    origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    Kubeconfig { context: Option<String> },
    InCluster,
}

impl Server {
    /// A server reached through a kubeconfig, under `context` (the current
    /// context when `None` was given on the command line).
    pub fn from_kubeconfig(url: impl Into<String>, context: Option<String>) -> Server {
        Server {
            url: url.into(),
            origin: Origin::Kubeconfig { context },
        }
    }

    /// The server of the pod's own cluster, reached with its service account.
    pub fn in_cluster(url: impl Into<String>) -> Server {
        Server {
            url: url.into(),
            origin: Origin::InCluster,
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Kubeconfig {
                context: Some(context),
            } => write!(f, "{} (kubeconfig context \"{context}\")", self.url),
            Origin::Kubeconfig { context: None } => write!(f, "{} (kubeconfig)", self.url),
            Origin::InCluster => write!(f, "{} (in-cluster service account)", self.url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_named_by_its_url_and_where_its_address_came_from() {
        assert_eq!(
            Server::from_kubeconfig("https://127.0.0.1:6443", Some("kind-dev".into())).to_string(),
            "https://127.0.0.1:6443 (kubeconfig context \"kind-dev\")"
        );
        assert_eq!(
            Server::in_cluster("https://10.96.0.1").to_string(),
            "https://10.96.0.1 (in-cluster service account)"
        );
    }
}
