//! What the person watching the workflow run is told while a gate waits, and
//! within GitHub's limits for it: a status report is at most 1024 characters,
//! and GitHub keeps at most 10 per deployment. Pure: no I/O.

use crate::api::{Blocker, Reports};

/// GitHub keeps at most this many status reports per deployment.
pub const MAX_REPORTS: u32 = 10;
/// The longest text GitHub takes in a status report.
pub const MAX_REPORT_CHARS: usize = 1024;

/// One line naming everything that holds the gate, e.g.
/// "held by ReleasePause web/ci-failed until resumed; waiting for check ci/test".
pub fn describe_blockers(blockers: &[Blocker]) -> String {
    if blockers.is_empty() {
        return "nothing holds the gate".to_string();
    }
    blockers.iter().map(phrase).collect::<Vec<_>>().join("; ")
}

fn phrase(b: &Blocker) -> String {
    if b.message.is_empty() {
        format!("{:?} {}", b.kind, b.name)
    } else {
        b.message.clone()
    }
}

/// [`describe_blockers`] in at most `max` characters: as many blockers as fit,
/// in order, then what was cut ("… and 12 more"). A single phrase longer than
/// the room is cut itself.
pub fn fit_blockers(blockers: &[Blocker], max: usize) -> String {
    let full = describe_blockers(blockers);
    if full.chars().count() <= max {
        return full;
    }
    let phrases: Vec<String> = blockers.iter().map(phrase).collect();
    let mut kept = 0;
    let mut len = 0;
    for (i, p) in phrases.iter().enumerate() {
        let more = phrases.len() - i - 1;
        let tail = if more > 0 {
            format!("; … and {more} more").chars().count()
        } else {
            0
        };
        let sep = if i == 0 { 0 } else { 2 };
        let next = len + sep + p.chars().count();
        if next + tail > max {
            break;
        }
        len = next;
        kept = i + 1;
    }
    if kept == 0 {
        let tail = format!(" … and {} more", phrases.len() - 1);
        let room = max.saturating_sub(tail.chars().count());
        let first: String = phrases[0].chars().take(room).collect();
        return format!("{first}{tail}").chars().take(max).collect();
    }
    format!(
        "{}; … and {} more",
        phrases[..kept].join("; "),
        phrases.len() - kept
    )
}

/// The report to post now, if any: only when what holds the gate changed
/// since the last report, and while GitHub keeps more (10 per deployment; a
/// gate's first deployment has had every report its later ones had, so the
/// gate's count is the binding one). The last report GitHub keeps says it is
/// the last and where the gate's state can be followed from then on.
/// `gate` names it (`namespace/name`). `text` is what holds the gate, and is
/// what [`Reports::last`] records.
pub fn next_report(reports: &Reports, blockers: &[Blocker], gate: &str) -> Option<Report> {
    let text = fit_blockers(blockers, MAX_REPORT_CHARS);
    if reports.count >= MAX_REPORTS || reports.last.as_deref() == Some(text.as_str()) {
        return None;
    }
    let body = if reports.count + 1 == MAX_REPORTS {
        let (namespace, name) = gate.split_once('/').unwrap_or(("", gate));
        let note = format!(
            " — last status report GitHub keeps for this deployment; follow it with `kubectl -n {namespace} get dg {name}`"
        );
        let room = MAX_REPORT_CHARS.saturating_sub(note.chars().count());
        format!("{}{note}", fit_blockers(blockers, room))
    } else {
        text.clone()
    };
    Some(Report { text, body })
}

/// A status report to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What holds the gate (kept in [`Reports::last`] to spot the next change).
    pub text: String,
    /// What is posted: `text`, and on the last report GitHub keeps, a note saying so.
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BlockerKind;

    fn blockers(n: usize) -> Vec<Blocker> {
        (0..n)
            .map(|i| Blocker {
                kind: if i % 2 == 0 {
                    BlockerKind::Pause
                } else {
                    BlockerKind::Check
                },
                name: format!("web/pause-{i}"),
                until: None,
                message: format!(
                    "held by ReleasePause web/pause-number-{i} (ci-failed) until resumed"
                ),
            })
            .collect()
    }

    #[test]
    fn a_long_report_keeps_whole_phrases_and_says_how_many_were_cut() {
        let text = fit_blockers(&blockers(40), MAX_REPORT_CHARS);
        assert!(text.chars().count() <= MAX_REPORT_CHARS, "{}", text.len());
        let kept = text.matches("held by ReleasePause").count();
        assert!(kept > 5, "{text}");
        assert!(
            text.ends_with(&format!("; … and {} more", 40 - kept)),
            "{text}"
        );
        // Short enough: unchanged.
        assert_eq!(
            fit_blockers(&blockers(2), MAX_REPORT_CHARS),
            describe_blockers(&blockers(2))
        );
    }

    #[test]
    fn one_phrase_longer_than_the_room_is_cut_itself() {
        let mut b = blockers(3);
        b[0].message = "x".repeat(3000);
        let text = fit_blockers(&b, 100);
        assert_eq!(text.chars().count(), 100);
        assert!(text.ends_with(" … and 2 more"), "{text}");
    }

    #[test]
    fn reports_stop_at_ten_and_the_tenth_says_it_is_the_last() {
        let b = blockers(1);
        let mut r = Reports::default();
        for n in 0..MAX_REPORTS {
            let mut changed = b.clone();
            changed[0].message = format!("held by pause {n}");
            let next = next_report(&r, &changed, "web/gate-1").expect("a change is reported");
            assert_eq!(next.text, format!("held by pause {n}"));
            if n + 1 == MAX_REPORTS {
                assert!(
                    next.body.contains("last status report")
                        && next.body.contains("kubectl -n web get dg gate-1"),
                    "{}",
                    next.body
                );
            } else {
                assert_eq!(next.body, next.text);
            }
            // Unchanged: nothing to report.
            r = Reports {
                count: n + 1,
                last: Some(next.text.clone()),
            };
            assert_eq!(next_report(&r, &changed, "web/gate-1"), None);
        }
        assert_eq!(next_report(&r, &blockers(2), "web/gate-1"), None);
        let last = next_report(
            &Reports {
                count: 9,
                last: None,
            },
            &blockers(40),
            "web/gate-1",
        )
        .expect("report");
        assert!(last.body.chars().count() <= MAX_REPORT_CHARS);
    }
}
