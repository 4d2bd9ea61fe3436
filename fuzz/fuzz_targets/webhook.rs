//! Webhook intake: the signature check over the raw body, then the payload
//! parsing and field checks the receiver runs. No input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::github::webhook::{
    DeploymentProtectionRuleEvent, DeploymentStatusEvent, WorkflowRunEvent, find_gate, sign, verify,
};
use tollgate::policy::deployment::{StatusReport, Step, merge};

const SECRET: &[u8] = b"fuzz-secret";

fuzz_target!(|data: &[u8]| {
    // The first line, if any, is the X-Hub-Signature-256 header; the rest the body.
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    let _ = verify(SECRET, body, header);
    let _ = verify(b"", body, header);
    // A correct signature always verifies; a flipped one never does.
    let good = sign(SECRET, body);
    assert!(verify(SECRET, body, Some(&good)).is_ok());
    let mut bad = good.into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
    let bad = String::from_utf8(bad).expect("hex stays ASCII");
    assert!(verify(SECRET, body, Some(&bad)).is_err());

    if let Ok(ev) = serde_json::from_slice::<DeploymentProtectionRuleEvent>(body) {
        let _ = ev.check();
        let _ = ev.commit();
        let _ = ev.reference();
    }
    let _ = serde_json::from_slice::<WorkflowRunEvent>(body);

    // deployment_status: parse, match against no gates, and run the lifecycle
    // merge twice (a first report, then the same report again: a duplicate).
    if let Ok(ev) = serde_json::from_slice::<DeploymentStatusEvent>(body) {
        assert!(find_gate(&[], &ev).is_none());
        let report = StatusReport {
            deployment_id: ev.deployment.id,
            state: ev.deployment_status.state.clone(),
            url: ev.deployment_status.environment_url.clone(),
            description: ev.deployment_status.description.clone(),
        };
        let now = jiff::Timestamp::UNIX_EPOCH;
        if let Step::Advance(outcome) = merge(None, &report, now) {
            let again = merge(Some(&outcome), &report, now);
            assert!(
                matches!(again, Step::Unchanged { .. }),
                "a duplicate report moved the deployment again: {again:?}"
            );
        }
    }
});
