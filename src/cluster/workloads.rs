//! Health of the workloads a gate requires, read from the API server.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::{Api, Client};

use crate::api::{WorkloadKind, WorkloadRef};
use crate::policy::{HealthResults, WorkloadHealth};

/// The key the engine uses for a workload: `Kind/namespace/name`.
pub fn workload_key(w: &WorkloadRef, gate_namespace: &str) -> String {
    format!(
        "{:?}/{}/{}",
        w.kind,
        w.namespace.as_deref().unwrap_or(gate_namespace),
        w.name
    )
}

/// Reads every required workload. A workload that cannot be read is unhealthy,
/// with the reason, so a broken read holds the gate instead of approving it.
pub async fn read(
    client: &Client,
    required: &[WorkloadRef],
    gate_namespace: &str,
) -> HealthResults {
    let mut out = HealthResults::new();
    for w in required {
        let ns = w.namespace.as_deref().unwrap_or(gate_namespace);
        let health = match w.kind {
            WorkloadKind::Deployment => match Api::<Deployment>::namespaced(client.clone(), ns)
                .get_opt(&w.name)
                .await
            {
                Ok(Some(d)) => deployment_health(&d),
                Ok(None) => WorkloadHealth::Unhealthy("not found".into()),
                Err(e) => WorkloadHealth::Unhealthy(format!("cannot be read: {e}")),
            },
            WorkloadKind::StatefulSet => match Api::<StatefulSet>::namespaced(client.clone(), ns)
                .get_opt(&w.name)
                .await
            {
                Ok(Some(s)) => statefulset_health(&s),
                Ok(None) => WorkloadHealth::Unhealthy("not found".into()),
                Err(e) => WorkloadHealth::Unhealthy(format!("cannot be read: {e}")),
            },
            WorkloadKind::DaemonSet => match Api::<DaemonSet>::namespaced(client.clone(), ns)
                .get_opt(&w.name)
                .await
            {
                Ok(Some(d)) => daemonset_health(&d),
                Ok(None) => WorkloadHealth::Unhealthy("not found".into()),
                Err(e) => WorkloadHealth::Unhealthy(format!("cannot be read: {e}")),
            },
        };
        out.insert(workload_key(w, gate_namespace), health);
    }
    out
}

fn rolled_out(generation: Option<i64>, observed: Option<i64>) -> bool {
    matches!((generation, observed), (Some(g), Some(o)) if o >= g)
}

/// Healthy when the latest spec is observed and every replica is updated and available.
pub fn deployment_health(d: &Deployment) -> WorkloadHealth {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = d.status.as_ref() else {
        return WorkloadHealth::Unhealthy("no status yet".into());
    };
    if !rolled_out(d.metadata.generation, st.observed_generation) {
        return WorkloadHealth::Unhealthy("the latest change is not observed yet".into());
    }
    let updated = st.updated_replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    let total = st.replicas.unwrap_or(0);
    if updated >= want && available >= want && total <= want {
        WorkloadHealth::Healthy
    } else {
        WorkloadHealth::Unhealthy(format!(
            "{updated}/{want} replicas updated, {available}/{want} available"
        ))
    }
}

/// Healthy when the latest spec is observed and every replica is updated and ready.
pub fn statefulset_health(s: &StatefulSet) -> WorkloadHealth {
    let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = s.status.as_ref() else {
        return WorkloadHealth::Unhealthy("no status yet".into());
    };
    if !rolled_out(s.metadata.generation, st.observed_generation) {
        return WorkloadHealth::Unhealthy("the latest change is not observed yet".into());
    }
    let updated = st.updated_replicas.unwrap_or(0);
    let ready = st.ready_replicas.unwrap_or(0);
    if updated >= want && ready >= want {
        WorkloadHealth::Healthy
    } else {
        WorkloadHealth::Unhealthy(format!(
            "{updated}/{want} replicas updated, {ready}/{want} ready"
        ))
    }
}

/// Healthy when every scheduled pod runs the latest template and is available.
pub fn daemonset_health(d: &DaemonSet) -> WorkloadHealth {
    let Some(st) = d.status.as_ref() else {
        return WorkloadHealth::Unhealthy("no status yet".into());
    };
    if !rolled_out(d.metadata.generation, st.observed_generation) {
        return WorkloadHealth::Unhealthy("the latest change is not observed yet".into());
    }
    let want = st.desired_number_scheduled;
    let updated = st.updated_number_scheduled.unwrap_or(0);
    let available = st.number_available.unwrap_or(0);
    if updated >= want && available >= want {
        WorkloadHealth::Healthy
    } else {
        WorkloadHealth::Unhealthy(format!(
            "{updated}/{want} pods updated, {available}/{want} available"
        ))
    }
}
