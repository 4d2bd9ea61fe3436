//! Secrets kept out of messages: every text from GitHub or about a request
//! goes through [`scrub`] before it reaches a log line, an Event or a status.

/// What stands in a message for a removed secret.
const REDACTED: &str = "<redacted>";

/// GitHub's token prefixes: installation (`ghs_`), user-to-server (`ghu_`),
/// OAuth (`gho_`), classic and fine-grained personal (`ghp_`, `github_pat_`)
/// and refresh (`ghr_`) tokens.
const TOKEN_PREFIXES: [&str; 6] = ["github_pat_", "ghs_", "ghu_", "gho_", "ghp_", "ghr_"];

/// A token glued to the word before it (say, after a URL-encoded `=`) still
/// counts when it is at least this long; GitHub's tokens are 36 characters
/// and more, and short lookalikes inside words (`highs_core`) are left alone.
const GLUED_TOKEN_MIN: usize = 20;

/// Removes anything that looks like a secret from a message (for logs,
/// Events and status): GitHub tokens by their prefixes, JWTs (the App's own
/// `eyJ…` tokens: base64url segments joined by dots) and old-style `v1.`
/// installation tokens, wherever they appear. The rest of the message is
/// kept as it was.
pub(crate) fn scrub(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        match secret_at(b, i) {
            // Secrets start and end at ASCII bytes, so both are char boundaries.
            Some(end) => {
                out.push_str(&s[copied..i]);
                out.push_str(REDACTED);
                i = end;
                copied = end;
            }
            None => i += 1,
        }
    }
    out.push_str(&s[copied..]);
    out
}

/// Where a secret that starts at byte `i` ends, if one starts there.
fn secret_at(b: &[u8], i: usize) -> Option<usize> {
    let token_byte = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    let base64url = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-';
    let run =
        |from: usize, f: &dyn Fn(&u8) -> bool| from + b[from..].iter().take_while(|c| f(c)).count();
    let at_boundary = i == 0 || !b[i - 1].is_ascii_alphanumeric();
    let rest = &b[i..];
    for prefix in TOKEN_PREFIXES {
        if rest.starts_with(prefix.as_bytes()) {
            let body = i + prefix.len();
            let end = run(body, &token_byte);
            let n = end - body;
            if n >= 1 && (at_boundary || n >= GLUED_TOKEN_MIN) {
                return Some(end);
            }
        }
    }
    // A JWT: a header (`eyJ` is base64url for `{"`), a dot, a payload and,
    // usually, a dot and a signature. Two segments are enough to remove it,
    // so a JWT cut short by a length limit goes too.
    if rest.starts_with(b"eyJ") {
        let header = run(i, &base64url);
        if header - i >= 10 && b.get(header) == Some(&b'.') {
            let payload = run(header + 1, &base64url);
            if payload > header + 1 {
                return Some(if b.get(payload) == Some(&b'.') {
                    run(payload + 1, &base64url)
                } else {
                    payload
                });
            }
        }
    }
    // Old installation tokens: `v1.` and 40 hex digits.
    if at_boundary && rest.starts_with(b"v1.") {
        let end = run(i + 3, &|c: &u8| c.is_ascii_hexdigit());
        if end - (i + 3) >= GLUED_TOKEN_MIN {
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::scrub;

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpYXQiOjE3MDAwMDAwMDAsImlzcyI6IjQyNDIifQ.c2lnbmF0dXJlLWJ5dGVzLWhlcmU_-x";

    #[test]
    fn github_tokens_are_removed_wherever_they_stand() {
        for token in [
            "ghs_16C7e42F292c6912E7710c838347Ae178B4a",
            "ghu_16C7e42F292c6912E7710c838347Ae178B4a",
            "gho_16C7e42F292c6912E7710c838347Ae178B4a",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        ] {
            for (message, want) in [
                (token.to_string(), "<redacted>".to_string()),
                (format!("Bearer {token}"), "Bearer <redacted>".to_string()),
                (
                    format!("token={token}&x=1"),
                    "token=<redacted>&x=1".to_string(),
                ),
                (
                    format!("{{\"token\":\"{token}\"}}"),
                    "{\"token\":\"<redacted>\"}".to_string(),
                ),
                (format!("auth%3D{token}."), "auth%3D<redacted>.".to_string()),
                (
                    format!("(oops: {token})\nnext line"),
                    "(oops: <redacted>)\nnext line".to_string(),
                ),
            ] {
                assert_eq!(scrub(&message), want, "{message}");
            }
        }
    }

    #[test]
    fn short_tokens_count_at_a_word_boundary_and_lookalikes_inside_words_stay() {
        assert_eq!(
            scrub("upstream saw Authorization: Bearer ghs_fake1 (oops)"),
            "upstream saw Authorization: Bearer <redacted> (oops)"
        );
        assert_eq!(scrub("highs_core and gho_"), "highs_core and gho_");
    }

    #[test]
    fn jwts_are_removed_whole_and_when_cut_short() {
        assert_eq!(scrub(&format!("Bearer {JWT}")), "Bearer <redacted>");
        assert_eq!(scrub(&format!("jwt={JWT}; next")), "jwt=<redacted>; next");
        let cut = &JWT[..60];
        assert_eq!(scrub(&format!("body: {cut}")), "body: <redacted>");
        // base64 of a JSON object alone, with no dot after it, is no JWT.
        assert_eq!(scrub("eyJhbGciOiJSUzI1NiJ9"), "eyJhbGciOiJSUzI1NiJ9");
        assert_eq!(scrub("keyJ.x"), "keyJ.x");
    }

    #[test]
    fn old_installation_tokens_go_and_version_numbers_stay() {
        assert_eq!(
            scrub("token v1.1f699f1069f60aaa1f699f1069f60aaa1f699f10 ok"),
            "token <redacted> ok"
        );
        assert_eq!(scrub("api v1.2.3 answered"), "api v1.2.3 answered");
    }

    #[test]
    fn the_rest_of_the_message_is_kept_byte_for_byte() {
        let m = "Résumé:  two  spaces,\ttab — ünïcode ghs_abcdef and more";
        assert_eq!(
            scrub(m),
            "Résumé:  two  spaces,\ttab — ünïcode <redacted> and more"
        );
        assert_eq!(scrub(""), "");
    }
}
