//! Reading GitHub's answers: status, rate-limit headers and error messages,
//! classified without I/O so every branch is unit-tested.

use std::time::Duration;

use http::HeaderMap;

/// What an answer means for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// 2xx.
    Ok,
    /// 422: the request was already answered (by us or someone else).
    AlreadySettled,
    /// 404: the run or repository is gone.
    Gone,
    /// A secondary rate limit: pause all writes at least a minute.
    SecondaryLimit { retry_after: Option<Duration> },
    /// The primary limit or a `retry-after`: wait this long.
    RateLimited { after: Duration },
    /// 5xx and other transient failures.
    Transient { why: String },
    /// 401 after a fresh token, 403 that is not a limit, a redirect: a real refusal.
    Denied { status: u16, why: String },
    /// Any other 4xx (a 422 that is not "already reviewed", a 400, a 413…):
    /// GitHub refused the request itself as invalid. Sending it again gets
    /// the same answer, so it is recorded, never retried. `message` is GitHub's.
    Invalid { status: u16, message: String },
}

impl Class {
    /// True for a rate-limit answer (primary or secondary), on any call.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Class::SecondaryLimit { .. } | Class::RateLimited { .. }
        )
    }
}

fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// GitHub's error message from a JSON body, or the body itself, kept short,
/// with anything token-like removed.
pub fn message_of(body: &str) -> String {
    let msg = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.trim().to_string());
    let short: String = msg.chars().take(300).collect();
    super::redact::scrub(&short)
}

/// Classifies an answer. `now_epoch` is the current Unix time in seconds (for
/// `x-ratelimit-reset`).
pub fn classify(status: u16, headers: &HeaderMap, body: &str, now_epoch: i64) -> Class {
    let message = message_of(body);
    let lower = message.to_ascii_lowercase();
    match status {
        200..=299 => Class::Ok,
        422 if lower.contains("already been reviewed")
            || lower.contains("no pending")
            || lower.contains("already reviewed") =>
        {
            Class::AlreadySettled
        }
        404 => Class::Gone,
        403 | 429 => {
            let retry_after = header_u64(headers, "retry-after").map(Duration::from_secs);
            if lower.contains("secondary rate limit") {
                return Class::SecondaryLimit { retry_after };
            }
            if let Some(after) = retry_after {
                return Class::RateLimited { after };
            }
            if header_u64(headers, "x-ratelimit-remaining") == Some(0) {
                let reset = header_u64(headers, "x-ratelimit-reset").unwrap_or(0) as i64;
                let wait = (reset - now_epoch).max(1) as u64;
                return Class::RateLimited {
                    after: Duration::from_secs(wait),
                };
            }
            if status == 429 {
                return Class::SecondaryLimit { retry_after: None };
            }
            Class::Denied {
                status,
                why: message,
            }
        }
        500..=599 => Class::Transient {
            why: format!("GitHub answered {status}: {message}"),
        },
        400..=499 if status != 401 => Class::Invalid { status, message },
        _ => Class::Denied {
            status,
            why: format!("GitHub answered {status}: {message}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn a_403_with_retry_after_while_requests_remain_is_a_limit_not_a_denial() {
        let h = headers(&[("retry-after", "30"), ("x-ratelimit-remaining", "4000")]);
        assert_eq!(
            classify(403, &h, r#"{"message":"slow down"}"#, 0),
            Class::RateLimited {
                after: Duration::from_secs(30)
            }
        );
    }

    #[test]
    fn secondary_limit_is_recognised_with_and_without_retry_after() {
        let body = r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#;
        assert_eq!(
            classify(403, &HeaderMap::new(), body, 0),
            Class::SecondaryLimit { retry_after: None }
        );
        let h = headers(&[("retry-after", "90")]);
        assert_eq!(
            classify(429, &h, body, 0),
            Class::SecondaryLimit {
                retry_after: Some(Duration::from_secs(90))
            }
        );
    }

    #[test]
    fn exhausted_primary_limit_waits_until_reset() {
        let h = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1000120"),
        ]);
        assert_eq!(
            classify(
                403,
                &h,
                r#"{"message":"API rate limit exceeded"}"#,
                1_000_000
            ),
            Class::RateLimited {
                after: Duration::from_secs(120)
            }
        );
    }

    #[test]
    fn already_reviewed_and_no_pending_are_settled() {
        assert_eq!(
            classify(
                422,
                &HeaderMap::new(),
                r#"{"message":"This deployment protection rule has already been reviewed"}"#,
                0
            ),
            Class::AlreadySettled
        );
        assert_eq!(
            classify(
                422,
                &HeaderMap::new(),
                r#"{"message":"No pending deployment requests to review"}"#,
                0
            ),
            Class::AlreadySettled
        );
    }

    #[test]
    fn any_other_422_or_4xx_is_an_invalid_request_with_githubs_message() {
        assert_eq!(
            classify(
                422,
                &HeaderMap::new(),
                r#"{"message":"Validation Failed: comment is too long (maximum is 1024 characters)"}"#,
                0
            ),
            Class::Invalid {
                status: 422,
                message: "Validation Failed: comment is too long (maximum is 1024 characters)"
                    .into()
            }
        );
        assert!(matches!(
            classify(
                400,
                &HeaderMap::new(),
                r#"{"message":"Problems parsing JSON"}"#,
                0
            ),
            Class::Invalid { status: 400, .. }
        ));
        assert!(matches!(
            classify(
                401,
                &HeaderMap::new(),
                r#"{"message":"Bad credentials"}"#,
                0
            ),
            Class::Denied { status: 401, .. }
        ));
    }

    #[test]
    fn plain_403_is_a_denial_and_5xx_is_transient() {
        assert!(matches!(
            classify(
                403,
                &HeaderMap::new(),
                r#"{"message":"Resource not accessible by integration"}"#,
                0
            ),
            Class::Denied { status: 403, .. }
        ));
        assert!(matches!(
            classify(502, &HeaderMap::new(), "bad gateway", 0),
            Class::Transient { .. }
        ));
        assert_eq!(classify(404, &HeaderMap::new(), "", 0), Class::Gone);
    }
}
