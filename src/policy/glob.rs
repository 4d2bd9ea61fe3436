//! Glob patterns for repositories and environments: `*` matches any run of
//! characters (including `/`), `?` one character; everything else is literal.

/// True when `text` matches `pattern`. Case-sensitive except that GitHub's
/// owner and repository names are case-insensitive, which callers handle by
/// lowering both sides.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with backtracking to the last `*`: linear in practice,
    // no recursion, no allocation beyond the char vectors.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        // A `*` in the pattern is always the wildcard, even against a `*` in the text.
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_owners_repositories_and_everything() {
        assert!(glob_match("acme/*", "acme/web"));
        assert!(glob_match("*", "acme/web"));
        assert!(glob_match("acme/web", "acme/web"));
        assert!(glob_match("acme/we?", "acme/web"));
        assert!(glob_match("*/web", "acme/web"));
        assert!(glob_match("acme/*-api", "acme/billing-api"));
        assert!(!glob_match("acme/*", "other/web"));
        assert!(!glob_match("acme/web", "acme/web2"));
        assert!(!glob_match("acme/?", "acme/web"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
        assert!(glob_match("*", "* "));
        assert!(glob_match("a*", "a*b"));
    }
}
