//! Status and metadata writes with optimistic concurrency.
//!
//! Every write carries the resourceVersion it was computed from, so a stale
//! cache or a second writer gets 409 and re-reads instead of overwriting a
//! newer status. Status is sent as a JSON merge patch computed against the
//! status it replaces, so removed fields are really removed.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// A status or metadata write the API server did not take (a 409 among
/// them: the object changed since it was read).
#[derive(Debug, thiserror::Error)]
#[error("Kubernetes API request for {object} failed: {source}")]
pub struct WriteError {
    /// `namespace/name` of the object written.
    pub object: String,
    #[source]
    pub source: kube::Error,
}

/// The field manager of every Tollgate write.
pub const MANAGER: &str = "tollgate";

/// A JSON merge patch (RFC 7386) that turns `old` into `new`: changed and new
/// members as in `new`, removed members as null. Arrays are replaced whole.
pub fn merge_diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) => {
                        if let Some(d) = merge_diff(ov, nv) {
                            patch.insert(k.clone(), d);
                        }
                    }
                    None => {
                        patch.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        (o, n) if o == n => None,
        (_, n) => Some(n.clone()),
    }
}

/// `namespace/name` of an object, for messages.
pub fn key_of<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// Writes `new` as the status of `obj`, precondition: `obj`'s resourceVersion.
/// Returns `None` when nothing would change (no request is made).
pub async fn write_status<K, S>(
    api: &Api<K>,
    obj: &K,
    old: Option<&S>,
    new: &S,
) -> Result<Option<K>, WriteError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let to_value = |s: &S| serde_json::to_value(s).unwrap_or(Value::Null);
    let old_v = old.map(to_value).unwrap_or_else(|| json!({}));
    let new_v = to_value(new);
    let Some(diff) = merge_diff(&old_v, &new_v) else {
        return Ok(None);
    };
    let patch = json!({
        "metadata": { "resourceVersion": obj.resource_version() },
        "status": diff,
    });
    let name = obj.name_any();
    // Boxed, as every API call of the reconcilers: a reconcile waiting elsewhere
    // (for GitHub's pacing, say) then does not carry room for the request.
    Box::pin(api.patch_status(&name, &params(), &Patch::Merge(&patch)))
        .await
        .map(Some)
        .map_err(|source| WriteError {
            object: key_of(obj),
            source,
        })
}

/// Sets the finalizers of `obj` to `finalizers`, precondition: its resourceVersion.
pub async fn write_finalizers<K>(
    api: &Api<K>,
    obj: &K,
    finalizers: Vec<String>,
) -> Result<K, WriteError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({
        "metadata": { "resourceVersion": obj.resource_version(), "finalizers": finalizers },
    });
    Box::pin(api.patch(&obj.name_any(), &params(), &Patch::Merge(&patch)))
        .await
        .map_err(|source| WriteError {
            object: key_of(obj),
            source,
        })
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..PatchParams::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_diff_nulls_removed_members_and_skips_equal_ones() {
        let old = json!({"phase": "Waiting", "blockers": [{"kind": "Pause"}], "delivery": {"state": "Pending", "lastError": "x"}});
        let new = json!({"phase": "Approved", "delivery": {"state": "Delivered"}});
        assert_eq!(
            merge_diff(&old, &new),
            Some(
                json!({"phase": "Approved", "blockers": null, "delivery": {"state": "Delivered", "lastError": null}})
            )
        );
        assert_eq!(merge_diff(&new, &new), None);
    }
}
