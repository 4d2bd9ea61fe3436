//! The App's webhook deliveries, for recovering webhooks lost while the
//! operator was down (GitHub never redelivers on its own).

use http::Method;
use jiff::Timestamp;

use super::client::GitHub;
use super::error::GitHubError;
use super::response::message_of;

/// A safety bound on the pages one sweep reads (100 deliveries each): the
/// sweep ends at the horizon, and this only stops a listing that never
/// reaches it (a cursor that loops, dates GitHub does not send). Reaching it
/// is logged.
const MAX_PAGES: usize = 1000;

/// One webhook delivery as GitHub lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookDelivery {
    pub id: i64,
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    pub status_code: i64,
    pub delivered_at: Option<Timestamp>,
    pub redelivery: bool,
}

impl HookDelivery {
    /// GitHub did not get a 2xx from us.
    pub fn failed(&self) -> bool {
        !(200..300).contains(&self.status_code)
    }

    /// Our receiver read the delivery and refused it as invalid (400: a
    /// malformed payload or a refused callback URL; 413: too large):
    /// delivering it again gets the same answer.
    pub fn refused_as_invalid(&self) -> bool {
        matches!(self.status_code, 400 | 413)
    }
}

/// What one listing of failed deliveries found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedDeliveries {
    /// Failed `deployment_protection_rule` deliveries since the horizon,
    /// newest first, without those our receiver refused as invalid.
    pub deliveries: Vec<HookDelivery>,
    /// Pages read.
    pub pages: usize,
    /// The safety bound ended the listing before the horizon.
    pub truncated: bool,
}

/// The `cursor` of the `rel="next"` link in a `Link` header, if any. GitHub's
/// cursors are URL-safe tokens; anything else (empty, or with characters that
/// would change the next request's URL) ends the listing instead of being
/// sent back.
pub fn next_cursor(link: Option<&http::HeaderValue>) -> Option<String> {
    let link = link?.to_str().ok()?;
    link.split(',')
        .find(|p| p.contains("rel=\"next\""))
        .and_then(|p| {
            let url = p
                .split(';')
                .next()?
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>');
            url.split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("cursor=").map(str::to_string))
        })
        .filter(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~%+=".contains(&b))
        })
}

impl GitHub {
    /// Failed `deployment_protection_rule` deliveries since `since`, newest
    /// first. GitHub filters to failures (`status=failure`: answers 400 to
    /// 599) and lists newest first, so the listing ends at the first delivery
    /// older than `since` (GitHub keeps deliveries for 3 days, and redelivers
    /// none older), not after a number of pages.
    pub async fn failed_deliveries(
        &self,
        since: Timestamp,
    ) -> Result<FailedDeliveries, GitHubError> {
        let op = "listing the App's webhook deliveries".to_string();
        let crab = self.app_client(&op)?;
        let mut out = FailedDeliveries::default();
        let mut cursor: Option<String> = None;
        'pages: loop {
            if out.pages == MAX_PAGES {
                out.truncated = true;
                tracing::warn!(pages = MAX_PAGES, since = %since, "the App's failed webhook deliveries did not reach the 72-hour horizon within the sweep's page bound; older lost requests are not recovered this sweep");
                break;
            }
            let path = match &cursor {
                Some(c) => format!("/app/hook/deliveries?per_page=100&status=failure&cursor={c}"),
                None => "/app/hook/deliveries?per_page=100&status=failure".to_string(),
            };
            let (v, headers) = self.get_json(&crab, &path, &op).await?;
            out.pages += 1;
            for d in v.as_array().cloned().unwrap_or_default() {
                let delivered_at = d
                    .get("delivered_at")
                    .and_then(|t| t.as_str())
                    .and_then(|t| t.parse::<Timestamp>().ok());
                if delivered_at.is_some_and(|t| t < since) {
                    break 'pages;
                }
                let delivery = HookDelivery {
                    id: d.get("id").and_then(|i| i.as_i64()).unwrap_or(0),
                    guid: d
                        .get("guid")
                        .and_then(|g| g.as_str())
                        .unwrap_or("")
                        .to_string(),
                    event: d
                        .get("event")
                        .and_then(|g| g.as_str())
                        .unwrap_or("")
                        .to_string(),
                    action: d.get("action").and_then(|g| g.as_str()).map(str::to_string),
                    status_code: d.get("status_code").and_then(|s| s.as_i64()).unwrap_or(0),
                    delivered_at,
                    redelivery: d
                        .get("redelivery")
                        .and_then(|r| r.as_bool())
                        .unwrap_or(false),
                };
                if delivery.event == "deployment_protection_rule"
                    && delivery.failed()
                    && !delivery.refused_as_invalid()
                {
                    out.deliveries.push(delivery);
                }
            }
            cursor = next_cursor(headers.get("link"));
            if cursor.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// The payload GitHub sent in a delivery.
    pub async fn delivery_payload(&self, id: i64) -> Result<serde_json::Value, GitHubError> {
        let op = format!("reading webhook delivery {id}");
        let crab = self.app_client(&op)?;
        let (v, _) = self
            .get_json(&crab, &format!("/app/hook/deliveries/{id}"), &op)
            .await?;
        v.pointer("/request/payload")
            .cloned()
            .ok_or(GitHubError::Decode {
                op,
                why: "the delivery has no request payload".into(),
            })
    }

    /// Asks GitHub to deliver a webhook again.
    pub async fn redeliver(&self, id: i64) -> Result<(), GitHubError> {
        let op = format!("redelivering webhook delivery {id}");
        let crab = self.app_client(&op)?;
        let _permit = self.limiter().acquire(&format!("redelivery#{id}")).await;
        let a = self
            .send(
                &crab,
                Method::POST,
                &format!("/app/hook/deliveries/{id}/attempts"),
                Some(&serde_json::json!({})),
                &op,
            )
            .await?;
        if (200..300).contains(&a.status) {
            Ok(())
        } else {
            Err(GitHubError::Status {
                op,
                status: a.status,
                message: message_of(&a.body),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_cursor_is_read_from_the_link_header() {
        let h: http::HeaderValue =
            r#"<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_123>; rel="next""#.parse().expect("header");
        assert_eq!(next_cursor(Some(&h)).as_deref(), Some("v1_123"));
        assert_eq!(next_cursor(None), None);
    }

    #[test]
    fn a_cursor_that_would_change_the_next_url_ends_the_listing() {
        for link in [
            r#"<https://api.github.com/app/hook/deliveries?cursor=>; rel="next""#,
            r#"<https://api.github.com/app/hook/deliveries?cursor=a b>; rel="next""#,
            r#"<https://api.github.com/app/hook/deliveries?cursor=a#x>; rel="next""#,
            r#"<https://api.github.com/app/hook/deliveries?cursor=a/../../x>; rel="next""#,
        ] {
            let h: http::HeaderValue = link.parse().expect("header");
            assert_eq!(next_cursor(Some(&h)), None, "{link}");
        }
    }
}
