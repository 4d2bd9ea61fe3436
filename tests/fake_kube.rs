//! The fake Kubernetes API behaves like a real one where the controllers rely on it.

mod support;

use std::time::Duration;

use futures::StreamExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::kube::FakeKube;
use tollgate::api::DeploymentGate;

const GATES: &str = "tollgate.dev/v1alpha1/deploymentgates";

fn gate(name: &str) -> DeploymentGate {
    serde_json::from_value(json!({
        "apiVersion": "tollgate.dev/v1alpha1", "kind": "DeploymentGate",
        "metadata": {"name": name, "labels": {"team": "web"}},
        "spec": {"repository": "acme/web", "environment": "production", "sha": "9fceb02d0ae598e95dc970b74767f19372d61af8", "runId": 1},
    }))
    .expect("gate")
}

#[tokio::test]
async fn watcher_lists_then_sees_added_modified_and_deleted() {
    let kube = FakeKube::start().await;
    let api: Api<DeploymentGate> = Api::namespaced(kube.client(), "default");
    api.create(&PostParams::default(), &gate("a"))
        .await
        .expect("create");
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    let mut step = 0;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(10), events.next()).await {
        let e = e.expect("watch event");
        match &e {
            watcher::Event::Init => seen.push("init".to_string()),
            watcher::Event::InitApply(g) => seen.push(format!("initapply {}", g.name_any())),
            watcher::Event::InitDone => {
                seen.push("initdone".into());
                api.create(&PostParams::default(), &gate("b"))
                    .await
                    .expect("create");
            }
            watcher::Event::Apply(g) => {
                seen.push(format!("apply {}", g.name_any()));
                step += 1;
                if step == 1 {
                    api.patch(
                        "b",
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"environment": "staging"}})),
                    )
                    .await
                    .expect("patch");
                } else {
                    api.delete("b", &DeleteParams::default())
                        .await
                        .expect("delete");
                }
            }
            watcher::Event::Delete(g) => {
                seen.push(format!("delete {}", g.name_any()));
                break;
            }
        }
    }
    assert_eq!(
        seen,
        [
            "init",
            "initapply a",
            "initdone",
            "apply b",
            "apply b",
            "delete b"
        ]
    );
}

#[tokio::test]
async fn generation_moves_only_with_spec_and_status_is_a_subresource() {
    let kube = FakeKube::start().await;
    let api: Api<DeploymentGate> = Api::namespaced(kube.client(), "default");
    let created = api
        .create(&PostParams::default(), &gate("a"))
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    let labelled = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect("label");
    assert_eq!(labelled.metadata.generation, Some(1));
    let status = api
        .patch_status(
            "a",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"phase": "Waiting"}, "spec": {"environment": "ignored"}}),
            ),
        )
        .await
        .expect("status");
    assert_eq!(status.metadata.generation, Some(1));
    assert_eq!(
        status.spec.environment, "production",
        "a status write never changes spec"
    );
    let spec = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"environment": "staging"}, "status": {"phase": "Approved"}}),
            ),
        )
        .await
        .expect("spec");
    assert_eq!(spec.metadata.generation, Some(2));
    assert_eq!(
        spec.status
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .as_deref(),
        Some("Waiting"),
        "a spec write never changes status"
    );
}

#[tokio::test]
async fn stale_resource_version_conflicts_and_no_op_writes_keep_the_version() {
    let kube = FakeKube::start().await;
    let api: Api<DeploymentGate> = Api::namespaced(kube.client(), "default");
    let created = api
        .create(&PostParams::default(), &gate("a"))
        .await
        .expect("create");
    let rv = created.resource_version().expect("rv");
    api.patch_status(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Waiting"}})),
    )
    .await
    .expect("write");
    let stale = json!({"metadata": {"resourceVersion": rv}, "status": {"phase": "Approved"}});
    let err = api
        .patch_status("a", &PatchParams::default(), &Patch::Merge(stale))
        .await
        .expect_err("stale");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err}"
    );
    let before = api.get("a").await.expect("get").resource_version();
    let same = api
        .patch_status(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Waiting"}})),
        )
        .await
        .expect("no-op");
    assert_eq!(same.resource_version(), before);
    assert!(!kube.writes().last().expect("logged").changed);
    let dup = api
        .create(&PostParams::default(), &gate("a"))
        .await
        .expect_err("duplicate");
    assert!(
        matches!(dup, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{dup}"
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let kube = FakeKube::start().await;
    let api: Api<DeploymentGate> = Api::namespaced(kube.client(), "default");
    let mut g = gate("a");
    g.metadata.finalizers = Some(vec!["tollgate.dev/answer".into()]);
    api.create(&PostParams::default(), &g)
        .await
        .expect("create");
    api.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    let terminating = api.get("a").await.expect("still there");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    let add = json!({"metadata": {"finalizers": ["tollgate.dev/answer", "other/x"]}});
    assert!(
        api.patch("a", &PatchParams::default(), &Patch::Merge(add))
            .await
            .is_err(),
        "no new finalizers while deleting"
    );
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": []}})),
    )
    .await
    .expect("release");
    assert!(api.get_opt("a").await.expect("get").is_none());
    assert!(kube.get(GATES, "default", "a").is_none());
}

#[tokio::test]
async fn label_selectors_filter_lists() {
    let kube = FakeKube::start().await;
    let api: Api<DeploymentGate> = Api::namespaced(kube.client(), "default");
    api.create(&PostParams::default(), &gate("a"))
        .await
        .expect("create");
    let mut other = gate("b");
    other.metadata.labels = Some([("team".to_string(), "billing".to_string())].into());
    api.create(&PostParams::default(), &other)
        .await
        .expect("create");
    let web = api
        .list(&ListParams::default().labels("team=web"))
        .await
        .expect("list");
    assert_eq!(
        web.items.iter().map(|g| g.name_any()).collect::<Vec<_>>(),
        ["a"]
    );
    let not_web = api
        .list(&ListParams::default().labels("team!=web"))
        .await
        .expect("list");
    assert_eq!(
        not_web
            .items
            .iter()
            .map(|g| g.name_any())
            .collect::<Vec<_>>(),
        ["b"]
    );
    let all = Api::<DeploymentGate>::all(kube.client())
        .list(&ListParams::default())
        .await
        .expect("list");
    assert_eq!(all.items.len(), 2);
}

#[tokio::test]
async fn applied_objects_stream_works_for_reflectors() {
    let kube = FakeKube::start().await;
    let api: Api<DeploymentGate> = Api::namespaced(kube.client(), "default");
    api.create(&PostParams::default(), &gate("a"))
        .await
        .expect("create");
    let (reader, writer) = kube::runtime::reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .reflect(writer)
        .applied_objects()
        .boxed();
    tokio::spawn(stream.for_each(|_| async {}));
    tokio::time::timeout(Duration::from_secs(10), reader.wait_until_ready())
        .await
        .expect("ready")
        .expect("writer");
    assert_eq!(reader.state().len(), 1);
}
