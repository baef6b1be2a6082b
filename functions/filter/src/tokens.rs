//! The classifier's tokens: words of the text and the subject, words and
//! addresses of chosen header fields, the names of all header fields,
//! MIME types and charsets, HTML element names, link hosts and path words.
//! Each token is kept once per message, as a 32-bit hash: the model stores
//! hashes only, so it carries no readable text of the mail it learnt from.
//!
//! Dates, times and message ages make no tokens: a classifier that learnt
//! "old mail is ham" would misjudge the same mail replayed later.

use crate::analysis::{Url, host_suffixes};

/// At most this many distinct tokens per message.
pub const MAX_TOKENS: usize = 20_000;

/// Header fields whose values make no tokens: dates (see above), fields
/// every message gets on its way to any mailbox, and the verdict fields
/// the gateway removes from mail that arrives.
const SKIPPED_HEADERS: &[&str] = &[
    "date",
    "x-original-date",
    "resent-date",
    "delivery-date",
    "x-originalarrivaltime",
    "delivered-to",
    "x-spam-status",
    "x-spam-score",
    "x-spam-action",
    "x-spam-flag",
    "x-spam-level",
    "x-spam-checker-version",
    "x-virus-status",
    "x-virus-scanned",
    "content-length",
    "lines",
    "status",
    "x-status",
    "x-keywords",
    "x-uid",
];

/// At most this many words are taken from one header field.
const MAX_HEADER_WORDS: usize = 50;

#[derive(Debug, Default)]
pub struct Tokens {
    /// Hashes as found; sorted and made unique at the end (cheaper than a
    /// set for the few thousand tokens of a message).
    found: Vec<u32>,
}

/// Tokens found (with repeats) before a message's reading stops.
const MAX_FOUND: usize = 4 * MAX_TOKENS;

impl Tokens {
    pub fn add(&mut self, token: &str) {
        self.add_parts(&[token]);
    }

    /// Adds the token made of `parts` one after the other, without
    /// building it: the hash of the parts is the hash of the whole.
    pub fn add_parts(&mut self, parts: &[&str]) {
        if self.found.len() < MAX_FOUND {
            self.found.push(hash_parts(parts));
        }
    }

    /// The words of `text`, each with `prefix`, and each pair of words
    /// that follow one another.
    pub fn text(&mut self, text: &str, prefix: &str) {
        let mut previous: Option<String> = None;
        for raw in text.split_whitespace() {
            if self.found.len() >= MAX_FOUND {
                return;
            }
            if raw.chars().any(is_cjk) {
                self.cjk(raw, prefix);
                previous = None;
                continue;
            }
            let Some(word) = word(raw) else { continue };
            self.add_parts(&[prefix, &word]);
            if let Some(p) = &previous {
                self.add_parts(&[prefix, p, " ", &word]);
            }
            previous = Some(word);
        }
    }

    /// Character pairs of the CJK runs in `raw` (at most 64 per run).
    fn cjk(&mut self, raw: &str, prefix: &str) {
        let mut previous: Option<char> = None;
        let mut pairs = 0;
        let mut buf = [0u8; 8];
        for c in raw.chars() {
            if !is_cjk(c) {
                previous = None;
                continue;
            }
            if let Some(p) = previous
                && pairs < 64
            {
                let mut n = p.encode_utf8(&mut buf).len();
                n += c.encode_utf8(&mut buf[n..]).len();
                let pair = std::str::from_utf8(&buf[..n]).expect("two characters");
                self.add_parts(&[prefix, "cjk:", pair]);
                pairs += 1;
            }
            previous = Some(c);
        }
    }

    /// What `text` is made of: the share of its characters outside ASCII
    /// (in tenths), and whether some could not be decoded.
    pub fn shape(&mut self, text: &str) {
        let (mut total, mut wide, mut undecoded) = (0usize, 0usize, 0usize);
        for c in text.chars().filter(|c| !c.is_whitespace()) {
            total += 1;
            if !c.is_ascii() {
                wide += 1;
            }
            if c == char::REPLACEMENT_CHARACTER {
                undecoded += 1;
            }
        }
        if total == 0 {
            self.add("shape:empty");
            return;
        }
        let tenths = (wide * 10 / total).to_string();
        self.add_parts(&["shape:wide:", &tenths]);
        if undecoded >= 3 {
            self.add("shape:undecoded");
        }
    }

    pub fn header(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        self.add_parts(&["hdr:", &name]);
        if SKIPPED_HEADERS.contains(&name.as_str()) || name.starts_with("x-spam-") {
            return;
        }
        // Received fields: only the hosts and addresses, not the dates.
        let value = match name.as_str() {
            "received" => value.split(';').next().unwrap_or(""),
            _ => value,
        };
        let prefix = [name.as_str(), ":"];
        for word in value
            .split(|c: char| {
                c.is_whitespace() || matches!(c, '<' | '>' | '"' | '(' | ')' | ',' | ';')
            })
            .filter(|w| !w.is_empty())
            .take(MAX_HEADER_WORDS)
        {
            let word = word.to_lowercase();
            if let Some((_, domain)) = word.rsplit_once('@') {
                self.add_parts(&[prefix[0], prefix[1], "@", domain]);
                for suffix in host_suffixes(domain) {
                    self.add_parts(&[prefix[0], prefix[1], "domain:", suffix]);
                }
            } else if word.len() <= 40 {
                self.add_parts(&[prefix[0], prefix[1], &word]);
            }
        }
    }

    pub fn url(&mut self, url: &Url) {
        self.add_parts(&["url:", &url.host]);
        for suffix in host_suffixes(&url.host) {
            self.add_parts(&["url:", suffix]);
        }
        if url.is_ip() {
            self.add("url:ip");
        }
        for piece in url
            .path
            .split(|c: char| !c.is_alphanumeric())
            .filter(|p| p.len() > 2 && p.len() < 20)
            .take(20)
        {
            self.add_parts(&["urlp:", &piece.to_lowercase()]);
        }
    }

    /// The hashes, sorted, each once.
    pub fn finish(mut self) -> Vec<u32> {
        self.found.sort_unstable();
        self.found.dedup();
        self.found.truncate(MAX_TOKENS);
        self.found
    }
}

/// The words of `text`: lower-cased, 3 to 20 characters, punctuation off
/// their ends; a longer run is summarised by its first character and
/// length, as binary junk or a long URL fragment would be.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split_whitespace().filter_map(word)
}

fn word(raw: &str) -> Option<String> {
    let w = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '$' && c != '%' && c != '!');
    let chars = w.chars().count();
    if chars < 3 {
        return None;
    }
    if chars > 20 {
        let first = w.chars().next()?;
        return Some(format!("skip:{} {}", first.to_lowercase(), chars / 10 * 10));
    }
    Some(w.to_lowercase())
}

/// Chinese and Japanese are written without spaces between words, and
/// Korean often is: their runs become tokens of two characters each.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30ff     // Hiragana, Katakana
        | 0x3400..=0x4dbf   // CJK extension A
        | 0x4e00..=0x9fff   // CJK unified ideographs
        | 0xac00..=0xd7af   // Hangul syllables
        | 0xf900..=0xfaff) // CJK compatibility ideographs
}

/// FNV-1a (64 bits, folded to 32): stable across builds and machines, so a
/// model trained once scores the same everywhere.
pub fn hash(token: &str) -> u32 {
    hash_parts(&[token])
}

/// [`hash`] of the parts put together.
pub fn hash_parts(parts: &[&str]) -> u32 {
    use stratus_core::ids::{FNV_OFFSET, fnv1a};
    let h = fnv1a(parts.iter().flat_map(|p| p.bytes()), FNV_OFFSET);
    (h ^ (h >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_normalised_and_bounded() {
        let w: Vec<String> =
            words("Hello, WORLD!! a an $100 supercalifragilisticexpialidocious").collect();
        assert_eq!(w, ["hello", "world!!", "$100", "skip:s 30"]);
    }

    #[test]
    fn cjk_runs_become_pairs() {
        let mut t = Tokens::default();
        t.text("野蛮女友 hello", "");
        let got = t.finish();
        let mut want: Vec<u32> = ["cjk:野蛮", "cjk:蛮女", "cjk:女友", "hello"]
            .iter()
            .map(|s| hash(s))
            .collect();
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn shape_says_how_much_is_not_ascii() {
        let mut t = Tokens::default();
        t.shape("abcd \u{fffd}\u{fffd}\u{fffd}éééééé");
        let mut want = vec![hash("shape:wide:6"), hash("shape:undecoded")];
        want.sort_unstable();
        assert_eq!(t.finish(), want);
        let mut t = Tokens::default();
        t.shape("plain text");
        assert_eq!(t.finish(), vec![hash("shape:wide:0")]);
    }

    #[test]
    fn hash_is_stable() {
        // A model file depends on these values never changing.
        assert_eq!(hash(""), 0xcbf29ce4 ^ 0x84222325);
        assert_ne!(hash("viagra"), hash("Viagra"));
        assert_eq!(
            hash_parts(&["url:", "example", ".org"]),
            hash("url:example.org")
        );
    }
}
