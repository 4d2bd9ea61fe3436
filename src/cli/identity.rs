//! Who is calling: the user name the API server authenticates this client as.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, PostParams};
use kube::{Client, core::ObjectMeta};

use super::error::CliError;

/// The caller's Kubernetes user name, from a SelfSubjectReview
/// (`POST authentication.k8s.io/v1 selfsubjectreviews`) — the same name the
/// API server puts in `request.userInfo.username`, so an admission policy can
/// check that `override.by` is not forged.
pub async fn whoami(client: &Client) -> Result<String, CliError> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = SelfSubjectReview {
        metadata: ObjectMeta::default(),
        status: None,
    };
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| CliError::Identity(e.to_string()))?;
    answer
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| CliError::Identity("the API server returned no user name".into()))
}
