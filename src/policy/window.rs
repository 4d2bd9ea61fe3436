//! Freeze windows: a five-field cron expression in an IANA time zone opens a
//! window at each occurrence; it lasts `duration` of elapsed time. Overlapping
//! windows (a duration longer than the period) merge into one.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};

use crate::api::{Schedule, parse_duration};

/// How far ahead overlapping occurrences are merged before giving up on finding
/// the window's end (a schedule that is, in effect, always on).
const MAX_MERGED_OCCURRENCES: usize = 2_000;

/// A schedule that cannot be used; names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "spec.schedule.cron {cron:?} is not a five-field cron expression (minute hour day-of-month month day-of-week): {why}"
    )]
    Cron { cron: String, why: String },
    #[error(
        "spec.schedule.timeZone {zone:?} is not an IANA time zone name; use one like Europe/Berlin or UTC"
    )]
    TimeZone { zone: String },
    #[error("spec.schedule.duration: {0}")]
    Duration(String),
    #[error("spec.schedule.duration must be positive")]
    ZeroDuration,
}

/// The window around `now`, and the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowTimes {
    /// The open window containing `now`, as [start, end): `end` is `None` when
    /// overlapping occurrences never leave a gap (always on).
    pub current: Option<(Timestamp, Option<Timestamp>)>,
    /// The next instant a window opens after `now` (after the current one ends).
    pub next_start: Option<Timestamp>,
}

/// A parsed schedule.
pub struct Window {
    cron: Cron,
    zone: TimeZone,
    duration: SignedDuration,
}

impl Window {
    /// Parses and checks a schedule.
    pub fn parse(schedule: &Schedule) -> Result<Window, ScheduleError> {
        let fields = schedule.cron.split_whitespace().count();
        if fields != 5 {
            return Err(ScheduleError::Cron {
                cron: schedule.cron.clone(),
                why: format!("it has {fields} fields"),
            });
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(schedule.cron.trim())
            .map_err(|e| ScheduleError::Cron {
                cron: schedule.cron.clone(),
                why: e.to_string(),
            })?;
        let zone = TimeZone::get(&schedule.time_zone).map_err(|_| ScheduleError::TimeZone {
            zone: schedule.time_zone.clone(),
        })?;
        let d = parse_duration(&schedule.duration)
            .map_err(|e| ScheduleError::Duration(e.to_string()))?;
        if d.is_zero() {
            return Err(ScheduleError::ZeroDuration);
        }
        let duration =
            SignedDuration::try_from(d).map_err(|e| ScheduleError::Duration(e.to_string()))?;
        Ok(Window {
            cron,
            zone,
            duration,
        })
    }

    fn zoned(&self, t: Timestamp) -> Zoned {
        t.to_zoned(self.zone.clone())
    }

    /// The first occurrence strictly after `t`. On a fall-back day the repeated
    /// wall-clock time fires once (the first time); a start inside a
    /// spring-forward gap fires at the first instant after the gap.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let mut from = self.zoned(t);
        for _ in 0..4 {
            let z = self.cron.find_next_occurrence(&from, false).ok()?;
            if self.is_second_half_of_fold(&z) {
                from = z;
                continue;
            }
            return Some(z.timestamp());
        }
        None
    }

    /// The latest occurrence at or before `t`, with the same fold rule.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let mut from = self.zoned(t);
        let mut inclusive = true;
        for _ in 0..4 {
            let z = self.cron.find_previous_occurrence(&from, inclusive).ok()?;
            if self.is_second_half_of_fold(&z) {
                from = z;
                inclusive = false;
                continue;
            }
            return Some(z.timestamp());
        }
        None
    }

    /// True when the same wall-clock time occurred earlier (the clock went back).
    fn is_second_half_of_fold(&self, z: &Zoned) -> bool {
        let earlier = self.zone.to_ambiguous_zoned(z.datetime());
        match earlier.earlier() {
            Ok(first) => first.timestamp() < z.timestamp(),
            Err(_) => false,
        }
    }

    /// The window state at `now`.
    pub fn at(&self, now: Timestamp) -> WindowTimes {
        let Some(last) = self.latest_at_or_before(now) else {
            return WindowTimes {
                current: None,
                next_start: self.next_after(now),
            };
        };
        // Walk back over overlapping earlier occurrences is unnecessary: the
        // latest start's window ends last. Merge forward to find the union's end.
        // A window that ends past the end of the calendar never ends.
        let Ok(mut end) = last.checked_add(self.duration) else {
            return WindowTimes {
                current: Some((self.merged_start(last), None)),
                next_start: None,
            };
        };
        if end <= now {
            return WindowTimes {
                current: None,
                next_start: self.next_after(now),
            };
        }
        let start = self.merged_start(last);
        let mut cursor = last;
        for _ in 0..MAX_MERGED_OCCURRENCES {
            match self.next_after(cursor) {
                Some(next) if next < end => {
                    let Ok(next_end) = next.checked_add(self.duration) else {
                        return WindowTimes {
                            current: Some((start, None)),
                            next_start: None,
                        };
                    };
                    end = end.max(next_end);
                    cursor = next;
                }
                Some(next) => {
                    return WindowTimes {
                        current: Some((start, Some(end))),
                        next_start: Some(next),
                    };
                }
                None => {
                    return WindowTimes {
                        current: Some((start, Some(end))),
                        next_start: None,
                    };
                }
            }
        }
        WindowTimes {
            current: Some((start, None)),
            next_start: None,
        }
    }

    /// The start of the occurrence that opened the merged window containing `last`.
    fn merged_start(&self, last: Timestamp) -> Timestamp {
        let mut start = last;
        for _ in 0..MAX_MERGED_OCCURRENCES {
            let Ok(before) = start.checked_sub(SignedDuration::from_secs(1)) else {
                break;
            };
            match self.latest_at_or_before(before) {
                // An end past the calendar's is later than any start.
                Some(prev)
                    if prev
                        .checked_add(self.duration)
                        .ok()
                        .is_none_or(|end| end > start) =>
                {
                    start = prev
                }
                _ => break,
            }
        }
        start
    }

    /// Formats an instant in the schedule's zone, for people.
    pub fn local(&self, t: Timestamp) -> String {
        format!(
            "{} {}",
            self.zoned(t).strftime("%Y-%m-%d %H:%M"),
            self.zone.iana_name().unwrap_or("UTC")
        )
    }
}

/// The window around `now` and the next one, for a schedule.
pub fn current_and_next(schedule: &Schedule, now: Timestamp) -> Result<WindowTimes, ScheduleError> {
    Ok(Window::parse(schedule)?.at(now))
}
