//! Metric analysis verdicts: from an analysis's readings (facts the caller read
//! from Prometheus) and `now`, what it says about the gate. Pure: no I/O.
//!
//! A reading passes when its one value lies within `min`/`max`. The analysis
//! passes once every reading has passed for `for`; one reading that does not
//! pass (failing, inconclusive or unreadable) starts that time again.
//! `failureLimit` failing readings in a row fail it, which rejects the gate.
//! A query with no result, NaN or several series is inconclusive: it neither
//! passes nor fails, and the gate waits (at its deadline `onDeadline` applies).
//! Prometheus unreachable or answering an error is no reading at all: never
//! a pass, read again with backoff.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use crate::api::{Analysis, AnalysisResult, AnalysisStatus, MIN_ANALYSIS_INTERVAL, parse_duration};

/// The longest wait between readings of a query Prometheus could not answer.
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(300);
/// The first wait after an unanswered reading.
const FIRST_ERROR_BACKOFF: Duration = Duration::from_secs(5);

/// What one read of an analysis's query gave: the facts handed to the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// Exactly one series (or a scalar) with this value (possibly NaN).
    Value(f64),
    /// The query returned no series.
    NoResult,
    /// The query returned this many series; an analysis needs exactly one.
    SeveralSeries(usize),
    /// Prometheus could not be read, or answered an error (in words).
    Error(String),
}

/// An analysis's timings, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub hold_for: Duration,
    pub interval: Duration,
}

/// Checks one analysis as the schema does, plus what only the operator knows:
/// `lifetime` is how long the gate may wait (creation to deadline). The error
/// names the field: `{field}.for`, `{field}.interval`, `{field}.min`.
pub fn check(a: &Analysis, field: &str, lifetime: Duration) -> Result<Timing, String> {
    let hold_for = parse_duration(&a.hold_for).map_err(|e| format!("{field}.for: {e}"))?;
    let interval = parse_duration(&a.interval).map_err(|e| format!("{field}.interval: {e}"))?;
    if a.min.is_none() && a.max.is_none() {
        return Err(format!(
            "{field}.min or {field}.max: set at least one bound, or the analysis can never fail"
        ));
    }
    if a.min.is_some_and(f64::is_nan) || a.max.is_some_and(f64::is_nan) {
        return Err(format!("{field}.min/max: must be numbers, not NaN"));
    }
    if let (Some(lo), Some(hi)) = (a.min, a.max)
        && lo > hi
    {
        return Err(format!(
            "{field}.min {lo} is greater than {field}.max {hi}: no reading could pass"
        ));
    }
    if interval < MIN_ANALYSIS_INTERVAL {
        return Err(format!(
            "{field}.interval {} is under 10s: read Prometheus at most every 10 seconds",
            a.interval
        ));
    }
    if hold_for > lifetime {
        return Err(format!(
            "{field}.for {} is longer than the gate may wait ({}): the analysis could never pass before the deadline; shorten it or give the gate a longer timeout",
            a.hold_for,
            go_duration(lifetime)
        ));
    }
    Ok(Timing { hold_for, interval })
}

/// Checks every analysis of a list (`field`: `spec.analysis` of a gate,
/// `policies[0].analysis` of the configuration); the first problem, naming
/// its field.
pub fn check_all(analyses: &[Analysis], field: &str, lifetime: Duration) -> Result<(), String> {
    for (i, a) in analyses.iter().enumerate() {
        if analyses[..i].iter().any(|b| b.name == a.name) {
            return Err(format!(
                "{field}[{i}].name {:?} is used twice: names must be unique",
                a.name
            ));
        }
        check(a, &format!("{field}[{i}]"), lifetime)?;
    }
    Ok(())
}

fn timing(a: &Analysis) -> Timing {
    // Unparseable durations never get here in the operator (the schema and
    // `check` refuse them); the fallbacks are the strictest reading.
    Timing {
        hold_for: parse_duration(&a.hold_for).unwrap_or(Duration::MAX),
        interval: parse_duration(&a.interval)
            .unwrap_or(Duration::from_secs(60))
            .max(MIN_ANALYSIS_INTERVAL),
    }
}

/// A fingerprint of what a history was read for: name, query and bounds.
/// A history whose fingerprint differs from the spec's starts again.
pub fn fingerprint(a: &Analysis) -> String {
    let mut h = Sha256::new();
    h.update(a.name.as_bytes());
    h.update([0]);
    h.update(a.query.as_bytes());
    h.update([0]);
    h.update(format!("{:?}/{:?}", a.min, a.max).as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// The history of `a` in `statuses`, if it was read for the same query and bounds.
pub fn history<'a>(a: &Analysis, statuses: &'a [AnalysisStatus]) -> Option<&'a AnalysisStatus> {
    let fp = fingerprint(a);
    statuses
        .iter()
        .find(|s| s.name == a.name && s.spec_hash == fp)
}

/// When `a` is to be read next: at once without a history, else one
/// interval after the last reading (after an unanswered one, a backoff that
/// doubles from 5 s, never longer than the interval nor 5 minutes).
pub fn next_reading(a: &Analysis, status: Option<&AnalysisStatus>) -> Option<Timestamp> {
    let s = status?;
    let at = s.read_at?;
    let t = timing(a);
    let wait = if s.result == AnalysisResult::Error {
        let shift = s.consecutive_errors.saturating_sub(1).min(16);
        FIRST_ERROR_BACKOFF
            .saturating_mul(1 << shift)
            .min(MAX_ERROR_BACKOFF)
            .min(t.interval)
    } else {
        t.interval
    };
    Some(later(at, wait))
}

/// Whether `a` is due for a reading at `now`.
pub fn due(a: &Analysis, status: Option<&AnalysisStatus>, now: Timestamp) -> bool {
    next_reading(a, status).is_none_or(|at| at <= now)
}

fn later(at: Timestamp, by: Duration) -> Timestamp {
    SignedDuration::try_from(by)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// The history after one more reading of `a` at `at`.
pub fn record(
    a: &Analysis,
    prev: Option<&AnalysisStatus>,
    reading: &Reading,
    at: Timestamp,
) -> AnalysisStatus {
    let t = timing(a);
    let mut s = prev.cloned().unwrap_or_else(|| AnalysisStatus {
        name: a.name.clone(),
        result: AnalysisResult::Pending,
        last_value: None,
        read_at: None,
        passing_since: None,
        consecutive_failures: 0,
        consecutive_errors: 0,
        message: String::new(),
        spec_hash: fingerprint(a),
    });
    s.read_at = Some(at);
    match reading {
        Reading::Error(why) => {
            s.consecutive_errors = s.consecutive_errors.saturating_add(1);
            s.passing_since = None;
            s.result = AnalysisResult::Error;
            s.message = format!("cannot read Prometheus: {why}");
            return s;
        }
        _ => s.consecutive_errors = 0,
    }
    let why = match reading {
        Reading::NoResult => Some("the query returned no result".to_string()),
        Reading::SeveralSeries(n) => Some(format!(
            "the query returned {n} series; it must return exactly one"
        )),
        Reading::Value(v) if v.is_nan() => Some("the query returned NaN".to_string()),
        _ => None,
    };
    if let Some(why) = why {
        // Inconclusive: no evidence either way. The hold starts again; the
        // failures in a row are neither counted nor forgiven.
        s.passing_since = None;
        s.result = AnalysisResult::Inconclusive;
        s.message = why;
        return s;
    }
    let Reading::Value(v) = *reading else {
        unreachable!("every other reading returned above")
    };
    s.last_value = Some(v);
    match bounds_text(a, v) {
        Ok(text) => {
            let since = *s.passing_since.get_or_insert(at);
            s.consecutive_failures = 0;
            let held = at.duration_since(since).unsigned_abs();
            if held >= t.hold_for {
                s.result = AnalysisResult::Passed;
                s.message = format!("{text} for {}", go_duration(t.hold_for));
            } else {
                s.result = AnalysisResult::Passing;
                s.message = format!(
                    "{text} for {} of {}",
                    go_duration(held),
                    go_duration(t.hold_for)
                );
            }
        }
        Err(text) => {
            s.passing_since = None;
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            s.result = if s.consecutive_failures >= a.failure_limit.max(1) {
                AnalysisResult::Failed
            } else {
                AnalysisResult::Failing
            };
            s.message = format!(
                "{text} ({} of {} failures in a row)",
                s.consecutive_failures,
                a.failure_limit.max(1)
            );
        }
    }
    s
}

/// `Ok("0.004 ≤ 0.01")` when `v` is within bounds, else `Err("0.05 > 0.01")`.
fn bounds_text(a: &Analysis, v: f64) -> Result<String, String> {
    let mut ok = Vec::new();
    if let Some(lo) = a.min {
        if v < lo {
            return Err(format!("{v} < {lo}"));
        }
        ok.push(format!("≥ {lo}"));
    }
    if let Some(hi) = a.max {
        if v > hi {
            return Err(format!("{v} > {hi}"));
        }
        ok.push(format!("≤ {hi}"));
    }
    Ok(format!("{v} {}", ok.join(" and ")))
}

/// The histories of a gate's analyses, in spec order: one per analysis, read
/// for its current query and bounds (none for one not read yet). Histories
/// of analyses no longer in the spec end here.
pub fn current(analyses: &[Analysis], statuses: &[AnalysisStatus]) -> Vec<AnalysisStatus> {
    analyses
        .iter()
        .filter_map(|a| history(a, statuses).cloned())
        .collect()
}

/// What one analysis says about the gate now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    /// Passed: the text explains, e.g. `staging-errors 0.004 ≤ 0.01 for 10m0s`.
    Passed(String),
    /// Failed `failureLimit` readings in a row: reject.
    Failed(String),
    /// Holds the gate; the text says why, `next` is the next reading.
    Holding {
        message: String,
        next: Option<Timestamp>,
    },
}

/// What `a` says, given its history (read for its current spec).
pub fn assess(a: &Analysis, status: Option<&AnalysisStatus>) -> Assessment {
    let name = &a.name;
    let Some(s) = status.filter(|s| s.read_at.is_some()) else {
        return Assessment::Holding {
            message: format!("analysis {name} not read yet"),
            next: None,
        };
    };
    let next = next_reading(a, Some(s));
    match s.result {
        AnalysisResult::Passed => Assessment::Passed(format!("{name} {}", s.message)),
        AnalysisResult::Failed => {
            Assessment::Failed(format!("analysis {name} failed: {}", s.message))
        }
        AnalysisResult::Passing | AnalysisResult::Pending => Assessment::Holding {
            message: format!("analysis {name} passing: {}", s.message),
            next,
        },
        AnalysisResult::Failing => Assessment::Holding {
            message: format!("analysis {name} failing: {}", s.message),
            next,
        },
        AnalysisResult::Inconclusive => Assessment::Holding {
            message: format!("analysis {name} inconclusive: {}", s.message),
            next,
        },
        AnalysisResult::Error => Assessment::Holding {
            message: format!("analysis {name} unreadable: {}; retrying", s.message),
            next,
        },
    }
}

/// `2/3 passing` (passed analyses of all), or `None` for a gate without analysis.
pub fn summary(analyses: &[Analysis], statuses: &[AnalysisStatus]) -> Option<String> {
    if analyses.is_empty() {
        return None;
    }
    let passed = analyses
        .iter()
        .filter(|a| history(a, statuses).is_some_and(|s| s.result == AnalysisResult::Passed))
        .count();
    Some(format!("{passed}/{} passing", analyses.len()))
}

/// A duration as Go prints it: `10m0s`, `1h30m0s`, `3s`, `0s`, `1.5s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let (h, m, s, frac) = (
        ms / 3_600_000,
        (ms / 60_000) % 60,
        (ms / 1000) % 60,
        ms % 1000,
    );
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:03}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::from_secs(600)), "10m0s");
        assert_eq!(go_duration(Duration::from_secs(3)), "3s");
        assert_eq!(go_duration(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }
}
