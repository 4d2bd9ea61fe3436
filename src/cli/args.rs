//! Small readers of command-line values shared by the subcommands: the
//! namespace to act in, durations and timestamps as people type and read them.

use std::time::Duration;

use jiff::Timestamp;
use kube::Client;

/// The namespace flag, or the kubeconfig context's namespace.
pub(crate) fn namespace_or_default(client: &Client, flag: Option<&str>) -> String {
    flag.unwrap_or_else(|| client.default_namespace())
        .to_string()
}

/// Go-style durations (`30s`, `4h`, `1h30m`) for flags.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::api::parse_duration(s).map_err(|e| e.to_string())
}

/// A timestamp to the second, in UTC: `2026-11-23T07:00:00Z`.
pub(crate) fn timestamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
