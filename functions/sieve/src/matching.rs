//! Comparators (RFC 4790 section 9), match types (RFC 5228 section 2.7,
//! draft-ietf-sieve-regex) and relational tests (RFC 5231).
//!
//! Everything here runs on script keys and message values that may be
//! hostile, so every operation is bounded: `:matches` is at worst
//! proportional to value length times key length (no exponential
//! backtracking), and `:regex` uses the `regex` crate (linear time) with
//! size limits on every compiled pattern.

use std::cmp::Ordering;

use regex::{Regex, RegexBuilder};

/// A comparator named by `:comparator` (RFC 4790 section 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    /// `i;octet`: byte for byte.
    Octet,
    /// `i;ascii-casemap`: ASCII letters compared without case.
    AsciiCasemap,
    /// `i;ascii-numeric`: leading decimal digits compared as numbers.
    AsciiNumeric,
}

impl Comparator {
    /// "i;octet", "i;ascii-casemap", "i;ascii-numeric" -> Some(..), else None.
    ///
    /// Collation names are matched exactly, as RFC 4790 registers them in
    /// lower case and Sieve passes them through unchanged.
    pub fn from_name(name: &str) -> Option<Comparator> {
        match name {
            "i;octet" => Some(Comparator::Octet),
            "i;ascii-casemap" => Some(Comparator::AsciiCasemap),
            "i;ascii-numeric" => Some(Comparator::AsciiNumeric),
            _ => None,
        }
    }

    /// The registered name, for error messages.
    pub fn name(self) -> &'static str {
        match self {
            Comparator::Octet => "i;octet",
            Comparator::AsciiCasemap => "i;ascii-casemap",
            Comparator::AsciiNumeric => "i;ascii-numeric",
        }
    }
}

/// A relational operator of `:value` and `:count` (RFC 5231 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Relation {
    /// "gt", "ge", "lt", "le", "eq", "ne" (ASCII case-insensitive, as ABNF
    /// quoted strings are).
    pub fn from_name(name: &str) -> Option<Relation> {
        const NAMES: [(&str, Relation); 6] = [
            ("gt", Relation::Gt),
            ("ge", Relation::Ge),
            ("lt", Relation::Lt),
            ("le", Relation::Le),
            ("eq", Relation::Eq),
            ("ne", Relation::Ne),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, r)| r)
    }

    /// Whether `left <relation> right` holds, given how left compares to
    /// right. The message value is the left side (RFC 5231 section 4.1).
    pub fn holds(self, ordering: Ordering) -> bool {
        match self {
            Relation::Gt => ordering == Ordering::Greater,
            Relation::Ge => ordering != Ordering::Less,
            Relation::Lt => ordering == Ordering::Less,
            Relation::Le => ordering != Ordering::Greater,
            Relation::Eq => ordering == Ordering::Equal,
            Relation::Ne => ordering != Ordering::Equal,
        }
    }
}

/// A match type: the RFC 5228 three, `:regex`, and the RFC 5231 two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchType {
    Is,
    Contains,
    Matches,
    Regex,
    Value(Relation),
    Count(Relation),
}

impl MatchType {
    /// The tag as written in a script, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            MatchType::Is => ":is",
            MatchType::Contains => ":contains",
            MatchType::Matches => ":matches",
            MatchType::Regex => ":regex",
            MatchType::Value(_) => ":value",
            MatchType::Count(_) => ":count",
        }
    }
}

/// Why a match could not be carried out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MatchError {
    #[error("invalid regular expression: {0}")]
    BadRegex(String),
    #[error("comparator {comparator} cannot be used with {match_type}")]
    Unsupported {
        comparator: &'static str,
        match_type: &'static str,
    },
}

/// Whether a comparator supports a match type. `i;ascii-numeric` has no
/// substring operation (RFC 4790 section 9.1.1), so it supports only
/// `:is`, `:value` and `:count`; the others support everything. The
/// parser calls this to refuse scripts.
pub fn supported(comparator: Comparator, match_type: &MatchType) -> Result<(), MatchError> {
    let substring = matches!(
        match_type,
        MatchType::Contains | MatchType::Matches | MatchType::Regex
    );
    if comparator == Comparator::AsciiNumeric && substring {
        return Err(MatchError::Unsupported {
            comparator: comparator.name(),
            match_type: match_type.name(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------
// Comparators
// ---------------------------------------------------------------------

/// How `left` orders against `right` under a comparator.
///
/// i;ascii-casemap maps a-z to A-Z before comparing octets (RFC 4790
/// section 9.2), so "_" sorts after "a", not before it.
fn compare(comparator: Comparator, left: &str, right: &str) -> Ordering {
    match comparator {
        Comparator::Octet => left.as_bytes().cmp(right.as_bytes()),
        Comparator::AsciiCasemap => left
            .bytes()
            .map(|b| b.to_ascii_uppercase())
            .cmp(right.bytes().map(|b| b.to_ascii_uppercase())),
        Comparator::AsciiNumeric => compare_numeric(left, right),
    }
}

/// The number an i;ascii-numeric string stands for: its leading digits
/// without leading zeros ("" for zero), or None for positive infinity
/// (a string that does not begin with a digit, RFC 4790 section 9.1.1).
fn numeric_value(s: &str) -> Option<&str> {
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    Some(s[..digits].trim_start_matches('0'))
}

/// i;ascii-numeric ordering on numbers of any length: longer digit runs
/// are larger, equal lengths compare digit by digit. Infinity equals
/// infinity and exceeds every number.
fn compare_numeric(left: &str, right: &str) -> Ordering {
    match (numeric_value(left), numeric_value(right)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
    }
}

/// Whether two characters are equal under the comparator (:matches).
fn chars_equal(comparator: Comparator, a: char, b: char) -> bool {
    match comparator {
        Comparator::AsciiCasemap => a.eq_ignore_ascii_case(&b),
        _ => a == b,
    }
}

/// `:contains`: substring search; the empty key is in every value.
fn contains(comparator: Comparator, value: &str, key: &str) -> bool {
    match comparator {
        Comparator::AsciiCasemap => value
            .to_ascii_uppercase()
            .contains(&key.to_ascii_uppercase()),
        _ => value.contains(key),
    }
}

// ---------------------------------------------------------------------
// :matches
// ---------------------------------------------------------------------

/// One element of a `:matches` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Glob {
    /// `*`: zero or more characters.
    Star,
    /// `?`: exactly one character.
    One,
    /// Any other character, or one escaped with `\`.
    Literal(char),
}

/// Splits a `:matches` key into wildcards and literals. A backslash makes
/// the next character literal; a trailing lone backslash stands for itself.
fn parse_glob(key: &str) -> Vec<Glob> {
    let mut out = Vec::with_capacity(key.len());
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' => Glob::Star,
            '?' => Glob::One,
            '\\' => Glob::Literal(chars.next().unwrap_or('\\')),
            other => Glob::Literal(other),
        });
    }
    out
}

/// Matches `text` against a whole `:matches` pattern, returning for each
/// pattern element the index in `text` where it starts.
///
/// RFC 5229 section 3.2: wildcards match as little as possible. Scanning
/// left to right and, on a mismatch, growing only the most recent `*` by
/// one character gives exactly that: an earlier `*` is never grown once a
/// later one is reached, because the later one can absorb anything the
/// earlier one could. Each mismatch restarts at most one segment back, so
/// the cost is at most text length times pattern length. What follows the
/// last `*` has a fixed length and must end the text, so it is checked
/// once in place rather than searched for.
fn glob_match(comparator: Comparator, pattern: &[Glob], text: &[char]) -> Option<Vec<usize>> {
    let last_star = pattern.iter().rposition(|g| *g == Glob::Star);
    let mut starts = vec![0; pattern.len()];
    let (mut p, mut t) = (0, 0);
    // The latest `*` seen, and the text index where what follows it starts.
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(Glob::Star) if Some(p) == last_star => {
                starts[p] = t;
                return match_tail(comparator, pattern, p + 1, text, t, starts);
            }
            Some(Glob::Star) => {
                starts[p] = t;
                resume = Some((p, t));
                p += 1;
                continue;
            }
            Some(Glob::One) => true,
            Some(&Glob::Literal(c)) => text.get(t).is_some_and(|&x| chars_equal(comparator, c, x)),
            None => false,
        };
        if step {
            starts[p] = t;
            p += 1;
            t += 1;
            continue;
        }
        let (star, after) = resume?;
        resume = Some((star, after + 1));
        p = star + 1;
        t = after + 1;
    }
    // Text used up: whatever remains of the pattern must be stars.
    while let Some(Glob::Star) = pattern.get(p) {
        starts[p] = t;
        p += 1;
    }
    (p == pattern.len()).then_some(starts)
}

/// Matches the pattern after its last `*` (elements `from..`, all one
/// character wide) against the end of `text`, which must not begin before
/// `earliest`. Growing an earlier `*` cannot help: the tail must be the
/// last characters of the text whatever happens before it.
fn match_tail(
    comparator: Comparator,
    pattern: &[Glob],
    from: usize,
    text: &[char],
    earliest: usize,
    mut starts: Vec<usize>,
) -> Option<Vec<usize>> {
    let tail = pattern.get(from..)?;
    let begin = text.len().checked_sub(tail.len())?;
    if begin < earliest {
        return None;
    }
    for (i, element) in tail.iter().enumerate() {
        let at = begin + i;
        if let (Glob::Literal(c), Some(&x)) = (element, text.get(at))
            && !chars_equal(comparator, *c, x)
        {
            return None;
        }
        starts[from + i] = at;
    }
    Some(starts)
}

/// The match variables of a successful `:matches`: the whole value, then
/// what each wildcard matched, in order.
fn glob_captures(pattern: &[Glob], text: &[char], starts: &[usize]) -> Vec<String> {
    let mut out = Vec::with_capacity(pattern.len() + 1);
    out.push(text.iter().collect());
    for (i, element) in pattern.iter().enumerate() {
        let start = starts.get(i).copied().unwrap_or(text.len());
        let end = match element {
            Glob::Star => starts.get(i + 1).copied().unwrap_or(text.len()),
            Glob::One => start + 1,
            Glob::Literal(_) => continue,
        };
        out.push(text.get(start..end).unwrap_or_default().iter().collect());
    }
    out
}

/// `:matches`, filling `captures` on success.
fn matches(
    comparator: Comparator,
    value: &str,
    key: &str,
    captures: Option<&mut Vec<String>>,
) -> bool {
    let pattern = parse_glob(key);
    let text: Vec<char> = value.chars().collect();
    let Some(starts) = glob_match(comparator, &pattern, &text) else {
        return false;
    };
    if let Some(captures) = captures {
        *captures = glob_captures(&pattern, &text, &starts);
    }
    true
}

// ---------------------------------------------------------------------
// :regex
// ---------------------------------------------------------------------

/// Most compiled patterns kept at once.
const REGEX_CACHE: usize = 64;
/// Compiled program size limit per pattern, so a hostile key cannot take
/// much memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Lazy DFA cache limit per pattern.
const REGEX_DFA_LIMIT: usize = 1 << 20;
/// Longest error text kept from the regex crate (its messages quote the
/// whole pattern).
const REGEX_ERROR_LEN: usize = 200;

/// Compiled-regex cache so a script that tests the same key against many
/// headers compiles it once. Bounded: at most 64 patterns, oldest dropped
/// first, each limited in size.
#[derive(Debug, Default)]
pub struct Regexes {
    entries: Vec<(String, bool, Regex)>,
}

impl Regexes {
    /// The compiled form of `key`, from the cache or freshly built.
    fn get(&mut self, key: &str, case_insensitive: bool) -> Result<Regex, MatchError> {
        let cached = self
            .entries
            .iter()
            .find(|(k, ci, _)| *ci == case_insensitive && k == key);
        if let Some((_, _, regex)) = cached {
            return Ok(regex.clone());
        }
        let regex = compile(key, case_insensitive)?;
        if self.entries.len() >= REGEX_CACHE {
            self.entries.remove(0);
        }
        self.entries
            .push((key.to_owned(), case_insensitive, regex.clone()));
        Ok(regex)
    }
}

/// Compiles a `:regex` key with the size limits. `.` also matches a
/// newline, as in POSIX regcomp without REG_NEWLINE.
fn compile(key: &str, case_insensitive: bool) -> Result<Regex, MatchError> {
    RegexBuilder::new(key)
        .case_insensitive(case_insensitive)
        .dot_matches_new_line(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_LIMIT)
        .build()
        .map_err(|e| MatchError::BadRegex(describe(&e)))
}

/// A short description of a regex error: the crate's own "error: ..."
/// line when there is one, cut to a bounded length.
fn describe(error: &regex::Error) -> String {
    let text = match error {
        regex::Error::CompiledTooBig(_) => return "pattern too large".to_owned(),
        other => other.to_string(),
    };
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("error:"))
        .unwrap_or(&text)
        .trim();
    truncate(line, REGEX_ERROR_LEN).to_owned()
}

/// The longest prefix of `s` of at most `max` bytes ending on a character
/// boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Checks a constant `:regex` key at parse time, compiling it with the
/// same limits the interpreter uses (both with and without case folding,
/// as either may be used at run time).
pub fn check_regex(key: &str) -> Result<(), MatchError> {
    compile(key, false)?;
    compile(key, true)?;
    Ok(())
}

/// `:regex`: an unanchored search; on success `captures` gets the whole
/// match, then each group (empty when it did not take part).
fn regex_match(
    comparator: Comparator,
    value: &str,
    key: &str,
    regexes: &mut Regexes,
    captures: Option<&mut Vec<String>>,
) -> Result<bool, MatchError> {
    let regex = regexes.get(key, comparator == Comparator::AsciiCasemap)?;
    let Some(out) = captures else {
        return Ok(regex.is_match(value));
    };
    let Some(found) = regex.captures(value) else {
        return Ok(false);
    };
    *out = found
        .iter()
        .map(|g| g.map_or_else(String::new, |m| m.as_str().to_owned()))
        .collect();
    Ok(true)
}

// ---------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------

/// One value against one key for `:is`, `:contains`, `:matches`, `:regex`
/// and `:value`.
///
/// When `captures` is Some and the match succeeds for `:matches` or
/// `:regex`, it is filled with the match variables: index 0 the whole
/// value (`:matches`) or whole match (`:regex`), then one entry per
/// wildcard (`*` and `?`, in order) for `:matches`, or per capture group
/// for `:regex` (unmatched groups empty). On failure, and for the other
/// match types, it is left untouched. `:count` is not a per-value test and
/// gives Ok(false). Never panics.
pub fn test(
    match_type: &MatchType,
    comparator: Comparator,
    value: &str,
    key: &str,
    regexes: &mut Regexes,
    captures: Option<&mut Vec<String>>,
) -> Result<bool, MatchError> {
    supported(comparator, match_type)?;
    Ok(match match_type {
        MatchType::Is => compare(comparator, value, key) == Ordering::Equal,
        MatchType::Contains => contains(comparator, value, key),
        MatchType::Matches => matches(comparator, value, key, captures),
        MatchType::Regex => return regex_match(comparator, value, key, regexes, captures),
        MatchType::Value(relation) => relation.holds(compare(comparator, value, key)),
        MatchType::Count(_) => false,
    })
}

/// `:count`: the number of values, written in decimal, compared to the key
/// with the comparator (RFC 5231 section 4.2). With i;ascii-numeric, the
/// comparator RFC 5231 says `:count` should be used with, that is a
/// numeric comparison, and a key that does not begin with a digit is
/// infinity. With the other comparators the comparison is of the strings,
/// as the RFC specifies.
pub fn test_count(relation: Relation, comparator: Comparator, count: usize, key: &str) -> bool {
    relation.holds(compare(comparator, &count.to_string(), key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn run(match_type: MatchType, comparator: Comparator, value: &str, key: &str) -> bool {
        test(
            &match_type,
            comparator,
            value,
            key,
            &mut Regexes::default(),
            None,
        )
        .expect("supported")
    }

    fn captures(
        match_type: MatchType,
        comparator: Comparator,
        value: &str,
        key: &str,
    ) -> Option<Vec<String>> {
        let mut out = vec!["untouched".to_owned()];
        let hit = test(
            &match_type,
            comparator,
            value,
            key,
            &mut Regexes::default(),
            Some(&mut out),
        )
        .expect("supported");
        if hit {
            Some(out)
        } else {
            assert_eq!(out, ["untouched"], "captures changed on failure");
            None
        }
    }

    use Comparator::{AsciiCasemap as Casemap, AsciiNumeric as Numeric, Octet};

    #[test]
    fn comparator_names() {
        assert_eq!(Comparator::from_name("i;octet"), Some(Octet));
        assert_eq!(Comparator::from_name("i;ascii-casemap"), Some(Casemap));
        assert_eq!(Comparator::from_name("i;ascii-numeric"), Some(Numeric));
        assert_eq!(Comparator::from_name("i;unicode-casemap"), None);
        assert_eq!(Comparator::from_name(""), None);
    }

    #[test]
    fn relation_names_ignore_case() {
        assert_eq!(Relation::from_name("gt"), Some(Relation::Gt));
        assert_eq!(Relation::from_name("GE"), Some(Relation::Ge));
        assert_eq!(Relation::from_name("Lt"), Some(Relation::Lt));
        assert_eq!(Relation::from_name("le"), Some(Relation::Le));
        assert_eq!(Relation::from_name("eQ"), Some(Relation::Eq));
        assert_eq!(Relation::from_name("ne"), Some(Relation::Ne));
        assert_eq!(Relation::from_name("gte"), None);
        assert_eq!(Relation::from_name(""), None);
    }

    #[test]
    fn numeric_supports_only_whole_value_match_types() {
        for mt in [
            MatchType::Is,
            MatchType::Value(Relation::Lt),
            MatchType::Count(Relation::Eq),
        ] {
            assert_eq!(supported(Numeric, &mt), Ok(()));
        }
        for mt in [MatchType::Contains, MatchType::Matches, MatchType::Regex] {
            assert!(supported(Numeric, &mt).is_err(), "{mt:?}");
            assert_eq!(supported(Octet, &mt), Ok(()));
            assert_eq!(supported(Casemap, &mt), Ok(()));
        }
        let err = supported(Numeric, &MatchType::Contains).unwrap_err();
        assert_eq!(
            err.to_string(),
            "comparator i;ascii-numeric cannot be used with :contains"
        );
        let err = test(
            &MatchType::Matches,
            Numeric,
            "1",
            "1",
            &mut Regexes::default(),
            None,
        );
        assert!(matches!(err, Err(MatchError::Unsupported { .. })));
    }

    #[test]
    fn is_per_comparator() {
        assert!(run(MatchType::Is, Octet, "Hello", "Hello"));
        assert!(!run(MatchType::Is, Octet, "Hello", "hello"));
        assert!(run(MatchType::Is, Casemap, "Hello", "hELLO"));
        assert!(!run(MatchType::Is, Casemap, "Hello", "Hell"));
        // Non-ASCII letters are not folded by i;ascii-casemap.
        assert!(!run(MatchType::Is, Casemap, "É", "é"));
        assert!(run(MatchType::Is, Numeric, "007", "7"));
        assert!(run(MatchType::Is, Numeric, "12abc", "12"));
        assert!(!run(MatchType::Is, Numeric, "12", "13"));
        // Two non-numbers are both infinity, hence equal.
        assert!(run(MatchType::Is, Numeric, "abc", "xyz"));
        assert!(!run(MatchType::Is, Numeric, "abc", "0"));
    }

    #[test]
    fn contains_per_comparator() {
        assert!(run(MatchType::Contains, Octet, "Hello world", "o w"));
        assert!(!run(MatchType::Contains, Octet, "Hello world", "WORLD"));
        assert!(run(MatchType::Contains, Casemap, "Hello world", "WORLD"));
        assert!(run(MatchType::Contains, Octet, "anything", ""));
        assert!(run(MatchType::Contains, Casemap, "", ""));
        assert!(!run(MatchType::Contains, Octet, "", "a"));
    }

    #[test]
    fn numeric_ordering_handles_long_numbers() {
        let big = format!("1{}", "0".repeat(99));
        let bigger = format!("2{}", "0".repeat(99));
        assert_eq!(compare_numeric(&big, &bigger), Ordering::Less);
        assert_eq!(compare_numeric(&bigger, "99"), Ordering::Greater);
        assert_eq!(compare_numeric(&format!("000{big}"), &big), Ordering::Equal);
        assert_eq!(compare_numeric("0", "000"), Ordering::Equal);
        assert_eq!(compare_numeric("9", "10"), Ordering::Less);
        assert_eq!(compare_numeric("x", &big), Ordering::Greater);
        assert_eq!(compare_numeric("", "x"), Ordering::Equal);
    }

    #[test]
    fn value_relations() {
        let v = |c, value, rel, key| run(MatchType::Value(rel), c, value, key);
        assert!(v(Numeric, "10", Relation::Gt, "9"));
        assert!(!v(Octet, "10", Relation::Gt, "9"));
        assert!(v(Numeric, "3", Relation::Le, "3"));
        assert!(v(Numeric, "3", Relation::Ge, "03"));
        assert!(v(Numeric, "3", Relation::Ne, "4"));
        assert!(!v(Numeric, "3", Relation::Eq, "4"));
        assert!(v(Numeric, "none", Relation::Gt, "999999"));
        assert!(v(Casemap, "b", Relation::Gt, "A"));
        assert!(!v(Octet, "b", Relation::Lt, "A"));
        assert!(v(Octet, "B", Relation::Lt, "a"));
        assert!(v(Casemap, "abc", Relation::Eq, "ABC"));
        // i;ascii-casemap folds to upper case: "a" becomes "A" (0x41),
        // which sorts before "_" (0x5F).
        assert!(v(Casemap, "a", Relation::Lt, "_"));
        assert!(!v(Octet, "a", Relation::Lt, "_"));
    }

    #[test]
    fn count_compares_as_the_comparator_says() {
        assert!(test_count(Relation::Ge, Numeric, 3, "3"));
        assert!(!test_count(Relation::Gt, Numeric, 3, "3"));
        assert!(test_count(Relation::Gt, Numeric, 10, "9"));
        assert!(test_count(Relation::Lt, Numeric, 0, "not a number"));
        assert!(test_count(Relation::Eq, Numeric, 2, "002"));
        // Strings: "10" sorts before "9".
        assert!(test_count(Relation::Lt, Octet, 10, "9"));
        assert!(!run(MatchType::Count(Relation::Eq), Numeric, "1", "1"));
    }

    #[test]
    fn matches_wildcards() {
        assert!(run(MatchType::Matches, Octet, "hello", "h*o"));
        assert!(run(MatchType::Matches, Octet, "hello", "*"));
        assert!(run(MatchType::Matches, Octet, "", "*"));
        assert!(run(MatchType::Matches, Octet, "", ""));
        assert!(!run(MatchType::Matches, Octet, "a", ""));
        assert!(run(MatchType::Matches, Octet, "hello", "h?llo"));
        assert!(!run(MatchType::Matches, Octet, "hllo", "h?llo"));
        assert!(!run(MatchType::Matches, Octet, "hello", "h*x"));
        assert!(!run(MatchType::Matches, Octet, "hello", "ello"));
        assert!(!run(MatchType::Matches, Octet, "hello", "hell"));
        assert!(run(MatchType::Matches, Octet, "aXbXc", "*X*X*"));
        assert!(!run(MatchType::Matches, Octet, "aXb", "*X*X*"));
    }

    #[test]
    fn matches_question_mark_is_one_character_not_one_byte() {
        assert!(run(MatchType::Matches, Octet, "é", "?"));
        assert!(!run(MatchType::Matches, Octet, "é", "??"));
        assert!(run(MatchType::Matches, Octet, "日本語", "?本?"));
    }

    #[test]
    fn matches_escapes() {
        assert!(run(MatchType::Matches, Octet, "a*b", "a\\*b"));
        assert!(!run(MatchType::Matches, Octet, "axb", "a\\*b"));
        assert!(run(MatchType::Matches, Octet, "a?b", "a\\?b"));
        assert!(!run(MatchType::Matches, Octet, "axb", "a\\?b"));
        assert!(run(MatchType::Matches, Octet, "a\\b", "a\\\\b"));
        // A lone trailing backslash stands for itself.
        assert!(run(MatchType::Matches, Octet, "a\\", "a\\"));
        // An escaped ordinary character is that character.
        assert!(run(MatchType::Matches, Octet, "ab", "a\\b"));
    }

    #[test]
    fn matches_casemap() {
        assert!(run(MatchType::Matches, Casemap, "Hello", "h*O"));
        assert!(!run(MatchType::Matches, Octet, "Hello", "h*O"));
        let caps = captures(MatchType::Matches, Casemap, "FOO@Example.COM", "foo@*.com");
        assert_eq!(
            caps,
            Some(vec!["FOO@Example.COM".to_owned(), "Example".to_owned()])
        );
    }

    #[test]
    fn matches_captures_are_non_greedy_rfc5229_examples() {
        // RFC 5229 section 3.2 examples.
        let caps = captures(
            MatchType::Matches,
            Casemap,
            "[acme-users] [fwd] version 1.0 is out",
            "[*] *",
        );
        assert_eq!(
            caps,
            Some(vec![
                "[acme-users] [fwd] version 1.0 is out".to_owned(),
                "acme-users".to_owned(),
                "[fwd] version 1.0 is out".to_owned(),
            ])
        );
        let caps = captures(
            MatchType::Matches,
            Casemap,
            "coyote@ACME.Example.COM",
            "coyote@**.com",
        );
        assert_eq!(
            caps,
            Some(vec![
                "coyote@ACME.Example.COM".to_owned(),
                String::new(),
                "ACME.Example".to_owned(),
            ])
        );
    }

    #[test]
    fn matches_captures_each_wildcard_in_order() {
        let caps = captures(MatchType::Matches, Octet, "a.b.c", "*.*");
        assert_eq!(caps, Some(vec!["a.b.c".into(), "a".into(), "b.c".into()]));
        let caps = captures(MatchType::Matches, Octet, "xyz", "?*?");
        assert_eq!(
            caps,
            Some(vec!["xyz".into(), "x".into(), "y".into(), "z".into()])
        );
        let caps = captures(MatchType::Matches, Octet, "abc", "abc*");
        assert_eq!(caps, Some(vec!["abc".into(), String::new()]));
        let caps = captures(MatchType::Matches, Octet, "list <x@y>", "*<*@*>");
        assert_eq!(
            caps,
            Some(vec![
                "list <x@y>".into(),
                "list ".into(),
                "x".into(),
                "y".into()
            ])
        );
        assert_eq!(captures(MatchType::Matches, Octet, "abc", "*d*"), None);
    }

    #[test]
    fn matches_has_no_exponential_blowup() {
        let value = "a".repeat(10_000);
        let started = Instant::now();
        assert!(!run(MatchType::Matches, Octet, &value, "*a*a*a*a*b"));
        assert!(run(MatchType::Matches, Octet, &value, "*a*a*a*a*a"));
        let many = "*a".repeat(200) + "b";
        assert!(!run(MatchType::Matches, Octet, &value, &many));
        let long_tail = format!("*{}b", "a".repeat(5_000));
        assert!(!run(MatchType::Matches, Octet, &value, &long_tail));
        let long_tail = format!("x*{}", "a".repeat(5_000));
        assert!(!run(MatchType::Matches, Octet, &value, &long_tail));
        let long_tail = format!("*?{}", "a".repeat(5_000));
        assert!(run(MatchType::Matches, Octet, &value, &long_tail));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn regex_searches_unanchored() {
        assert!(run(MatchType::Regex, Octet, "hello world", "o w"));
        assert!(!run(MatchType::Regex, Octet, "hello world", "^world"));
        assert!(run(MatchType::Regex, Octet, "hello world", "world$"));
        assert!(!run(MatchType::Regex, Octet, "Hello", "hello"));
        assert!(run(MatchType::Regex, Casemap, "Hello", "hello"));
        assert!(run(MatchType::Regex, Octet, "line1\nline2", "1.l"));
    }

    #[test]
    fn regex_captures() {
        let caps = captures(
            MatchType::Regex,
            Octet,
            "Subject: [list] hi",
            "\\[([a-z]+)\\](x)?",
        );
        assert_eq!(
            caps,
            Some(vec!["[list]".into(), "list".into(), String::new()])
        );
        assert_eq!(captures(MatchType::Regex, Octet, "abc", "(d)"), None);
    }

    #[test]
    fn regex_errors_are_reported_briefly() {
        let err = check_regex("(unclosed").unwrap_err();
        let MatchError::BadRegex(text) = &err else {
            panic!("wrong error {err:?}");
        };
        assert!(!text.is_empty() && text.len() <= REGEX_ERROR_LEN, "{text}");
        assert!(err.to_string().starts_with("invalid regular expression: "));
        assert_eq!(check_regex("^[a-z]+@example\\.com$"), Ok(()));
        let long = format!("({}", "x".repeat(10_000));
        let Err(MatchError::BadRegex(text)) = check_regex(&long) else {
            panic!("accepted");
        };
        assert!(text.len() <= REGEX_ERROR_LEN);
        let runtime = test(
            &MatchType::Regex,
            Octet,
            "x",
            "[",
            &mut Regexes::default(),
            None,
        );
        assert!(matches!(runtime, Err(MatchError::BadRegex(_))));
    }

    #[test]
    fn regex_size_is_limited() {
        // Nested counted repetition compiles to far more than 1 MiB.
        assert_eq!(
            check_regex("((a{100}){100}){100}"),
            Err(MatchError::BadRegex("pattern too large".into()))
        );
    }

    #[test]
    fn regex_cache_is_bounded_and_reused() {
        let mut regexes = Regexes::default();
        for i in 0..(REGEX_CACHE + 10) {
            let key = format!("k{i}");
            let hit = test(&MatchType::Regex, Octet, "k1", &key, &mut regexes, None);
            assert_eq!(hit, Ok(i == 1), "{key}");
        }
        assert_eq!(regexes.entries.len(), REGEX_CACHE);
        // The oldest were dropped, the newest kept.
        assert!(!regexes.entries.iter().any(|(k, _, _)| k == "k0"));
        assert!(regexes.entries.iter().any(|(k, _, _)| k == "k73"));
        // Case-folded and exact compilations are kept apart.
        assert_eq!(
            test(&MatchType::Regex, Casemap, "K73", "k73", &mut regexes, None),
            Ok(true)
        );
        assert_eq!(
            test(&MatchType::Regex, Octet, "K73", "k73", &mut regexes, None),
            Ok(false)
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
