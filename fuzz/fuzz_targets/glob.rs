//! Repository and environment globs: no input may panic, every pattern
//! matches itself, `*` matches any name and `""` only the empty one, and on
//! small inputs the matcher agrees with a plain dynamic-programming one.
//! First line: the pattern; the rest: the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::policy::glob_match;

fn reference(pattern: &[char], text: &[char]) -> bool {
    let mut m = vec![vec![false; text.len() + 1]; pattern.len() + 1];
    m[0][0] = true;
    for i in 1..=pattern.len() {
        for j in 0..=text.len() {
            m[i][j] = match pattern[i - 1] {
                '*' => m[i - 1][j] || (j > 0 && m[i][j - 1]),
                '?' => j > 0 && m[i - 1][j - 1],
                c => j > 0 && m[i - 1][j - 1] && text[j - 1] == c,
            };
        }
    }
    m[pattern.len()][text.len()]
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, text) = input.split_once('\n').unwrap_or((input, ""));
    let got = glob_match(pattern, text);
    assert!(glob_match(pattern, pattern), "{pattern:?}");
    assert_eq!(glob_match("", text), text.is_empty());
    // Names hold no `*` (and see tests/parsers.rs: a `*` in the text).
    if text.contains('*') {
        return;
    }
    assert!(glob_match("*", text), "{text:?}");
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Case-folding aside (names compare without case), the matcher is the plain one.
    let ascii_lower = |s: &str| {
        s.chars()
            .all(|c| !c.is_alphabetic() || c.is_ascii_lowercase())
    };
    if p.len() <= 64 && t.len() <= 64 && ascii_lower(pattern) && ascii_lower(text) {
        assert_eq!(got, reference(&p, &t), "{pattern:?} ~ {text:?}");
    }
});
