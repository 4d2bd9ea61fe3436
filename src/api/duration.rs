//! Go-style durations (`90s`, `30m`, `4h`, `1h30m`) as used by `spec.timeout`
//! and `spec.schedule.duration`; the same syntax the API server's CEL
//! `duration()` accepts, so schema and operator agree.

use std::time::Duration;

/// GitHub fails a waiting job after 30 days; Tollgate answers within 29.
pub const MAX_GATE_LIFETIME: Duration = Duration::from_secs(29 * 24 * 3600);

/// A duration string that is not of the form `<number><unit>...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {why}; write it like 90s, 30m, 4h or 1h30m")]
pub struct DurationError {
    input: String,
    why: &'static str,
}

/// Parses a Go-style duration with units `ms`, `s`, `m` and `h`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |why| DurationError {
        input: input.to_string(),
        why,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    let mut total_ms: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(err("each part must start with a number"));
        }
        let n: u128 = rest[..digits]
            .parse()
            .map_err(|_| err("the number is too large"))?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return Err(err("each number needs a unit: ms, s, m or h"));
        };
        rest = &rest[len..];
        total_ms = total_ms
            .checked_add(
                n.checked_mul(unit_ms)
                    .ok_or_else(|| err("it is too large"))?,
            )
            .ok_or_else(|| err("it is too large"))?;
    }
    let ms = u64::try_from(total_ms).map_err(|_| err("it is too large"))?;
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_go_durations() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("696h"), Ok(MAX_GATE_LIFETIME));
    }

    #[test]
    fn refuses_days_and_missing_units_with_a_hint() {
        for bad in ["", "2d", "10", "h", "-5m", "1.5h"] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.to_string().contains("write it like"), "{e}");
        }
    }
}
