//! LIST and LSUB patterns (RFC 9051 §6.3.9): the `*` and `%` wildcards,
//! and INBOX's case-insensitivity.

/// A pattern with a leading `inbox` level written as INBOX, which is
/// case-insensitive (RFC 9051 §5.1).
pub fn canonical_inbox(pattern: &str) -> String {
    if pattern.len() >= 5
        && pattern[..5].eq_ignore_ascii_case("INBOX")
        && (pattern.len() == 5 || pattern.as_bytes()[5] == b'/')
    {
        format!("INBOX{}", &pattern[5..])
    } else {
        pattern.to_string()
    }
}

/// LIST wildcards: `*` matches anything, `%` anything but `/`.
pub fn matches_pattern(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('%') => {
                let stop = n.iter().position(|&c| c == '/').unwrap_or(n.len());
                (0..=stop).any(|i| go(&p[1..], &n[i..]))
            }
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    if p.len() > 1024 || p.iter().filter(|&&c| c == '*' || c == '%').count() > 16 {
        return false;
    }
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_patterns() {
        assert!(matches_pattern("*", "a/b/c"));
        assert!(matches_pattern("%", "INBOX"));
        assert!(!matches_pattern("%", "a/b"));
        assert!(matches_pattern("a/%", "a/b"));
        assert!(matches_pattern("a*", "a/b"));
        assert!(!matches_pattern("../other", "other"));
        assert!(matches_pattern("%/%", "a/b"));
        assert_eq!(canonical_inbox("inbox/x"), "INBOX/x");
        assert_eq!(canonical_inbox("inboxes"), "inboxes");
    }
}
