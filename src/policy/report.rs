//! What the person watching the workflow run is told while a gate waits.

use crate::api::Blocker;

/// One line naming everything that holds the gate, e.g.
/// "held by ReleasePause web/ci-failed until resumed; waiting for check ci/test".
pub fn describe_blockers(blockers: &[Blocker]) -> String {
    if blockers.is_empty() {
        return "nothing holds the gate".to_string();
    }
    let parts: Vec<String> = blockers
        .iter()
        .map(|b| {
            if b.message.is_empty() {
                format!("{:?} {}", b.kind, b.name)
            } else {
                b.message.clone()
            }
        })
        .collect();
    parts.join("; ")
}
