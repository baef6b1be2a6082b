//! The rules data file: the weight of every built-in check, the pattern
//! rules operators write, the thresholds, the lists (URL shorteners,
//! blocked attachment extensions) and the DNS blocklists. The project
//! ships `data/rules.toml`; `STRATUS_SPAM_RULES` names a copy to use
//! instead, so weights change without a rebuild.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;

/// The rules file the project ships.
pub const SHIPPED: &str = include_str!("../data/rules.toml");

/// Most characters a pattern rule looks at in the body.
const MAX_RULE_TEXT: usize = 64 * 1024;

/// Every check the code makes; the data file gives each its weight.
pub const BUILTIN: &[(&str, &str)] = &[
    ("GTUBE", "the GTUBE test string"),
    ("SPF_PASS", "SPF passed"),
    ("SPF_FAIL", "SPF failed"),
    ("SPF_SOFTFAIL", "SPF soft-failed"),
    ("SPF_NEUTRAL", "SPF neutral"),
    (
        "SPF_ERROR",
        "SPF could not be checked (DNS error or broken record)",
    ),
    ("DKIM_VALID", "a DKIM signature verified"),
    ("DKIM_INVALID", "a DKIM signature failed"),
    (
        "DKIM_ERROR",
        "a DKIM signature could not be checked (DNS error or broken key)",
    ),
    ("DMARC_PASS", "DMARC passed"),
    (
        "DMARC_POLICY_REJECT",
        "DMARC failed; the domain asks for rejection",
    ),
    (
        "DMARC_POLICY_QUARANTINE",
        "DMARC failed; the domain asks for quarantine",
    ),
    (
        "DMARC_POLICY_NONE",
        "DMARC failed; the domain publishes p=none",
    ),
    ("MISSING_DATE", "no Date field"),
    ("INVALID_DATE", "a Date field that does not parse"),
    ("DATE_IN_FUTURE", "dated more than a day after it arrived"),
    ("MISSING_MID", "no Message-ID field"),
    ("INVALID_MSGID", "a Message-ID without a domain part"),
    ("MISSING_FROM", "no From address"),
    ("MISSING_SUBJECT", "no Subject field"),
    ("MISSING_TO", "no To or Cc field"),
    (
        "FROM_REPLYTO_DIFF",
        "Reply-To is at another domain than From",
    ),
    (
        "FROM_NAME_ADDRESS",
        "the From display name holds another address",
    ),
    ("HTML_ONLY", "HTML without a text alternative"),
    ("IMAGE_ONLY", "images with next to no text"),
    ("EMPTY_BODY", "no text at all"),
    (
        "MIXED_SCRIPT",
        "words mixing Latin with look-alike letters of other scripts",
    ),
    ("ZERO_WIDTH", "invisible characters inside the text"),
    ("MIME_BAD_ENCODING", "a part whose encoding does not decode"),
    ("MIME_UNPARSED", "not parseable as MIME"),
    ("MIME_MANY_PARTS", "more parts than are looked at"),
    ("URL_SHORTENER", "a link through a URL shortener"),
    ("URL_IP", "a link to a bare IP address"),
    (
        "URL_USERINFO",
        "a link with a user name before the host (http://bank@evil)",
    ),
    ("BAYES_00", "classifier: spam probability below 1%"),
    ("BAYES_05", "classifier: 1 to 5%"),
    ("BAYES_20", "classifier: 5 to 20%"),
    ("BAYES_40", "classifier: 20 to 40%"),
    ("BAYES_50", "classifier: 40 to 60%"),
    ("BAYES_60", "classifier: 60 to 80%"),
    ("BAYES_80", "classifier: 80 to 95%"),
    ("BAYES_95", "classifier: 95 to 99%"),
    ("BAYES_99", "classifier: 99 to 99.9%"),
    ("BAYES_999", "classifier: above 99.9%"),
    (
        "USER_ALLOWLIST",
        "an authenticated sender on the recipient's allow list",
    ),
    ("USER_BLOCKLIST", "a sender on the recipient's block list"),
];

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("rules file: {0}")]
    Syntax(String),
    #[error("rules file: unknown symbol {0} (a built-in check's name, or a [[rule]])")]
    UnknownSymbol(String),
    #[error("rules file: rule {name}: {reason}")]
    BadRule { name: String, reason: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    thresholds: Thresholds,
    #[serde(default)]
    lists: Lists,
    symbols: BTreeMap<String, f64>,
    #[serde(default)]
    quarantine: Vec<String>,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleFile>,
    #[serde(default, rename = "dnsbl")]
    dnsbls: Vec<Blocklist>,
}

/// The default thresholds (domains and users may set their own).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// At or above: filed to Junk.
    pub junk: f64,
    /// At or above: refused at the end of DATA.
    pub reject: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lists {
    #[serde(default)]
    pub url_shorteners: Vec<String>,
    #[serde(default)]
    pub blocked_extensions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    /// `subject`, `body`, `url`, `from-name` or `header:<Field>`.
    on: String,
    pattern: String,
    score: f64,
    #[serde(default)]
    describe: String,
}

/// A DNS blocklist zone.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blocklist {
    /// The symbol (`RBL_…` for `ip`, `URIBL_…` for `domain`).
    pub name: String,
    pub zone: String,
    /// `ip` (the connecting address) or `domain` (link hosts).
    pub kind: BlocklistKind,
    pub score: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlocklistKind {
    Ip,
    Domain,
}

#[derive(Debug, Clone)]
pub(crate) enum Target {
    Subject,
    Body,
    Url,
    FromName,
    Header(String),
}

#[derive(Debug, Clone)]
pub(crate) struct PatternRule {
    pub name: String,
    pub target: Target,
    pub pattern: Regex,
    pub score: f64,
    pub describe: String,
}

/// Parsed rules, ready to score with.
#[derive(Debug, Clone)]
pub struct Rules {
    pub thresholds: Thresholds,
    pub lists: Lists,
    weights: BTreeMap<String, f64>,
    quarantine: Vec<String>,
    pub(crate) patterns: Vec<PatternRule>,
    pub blocklists: Vec<Blocklist>,
}

impl Rules {
    /// The rules the project ships.
    pub fn shipped() -> Rules {
        Rules::parse(SHIPPED).expect("the shipped rules file parses (a unit test checks)")
    }

    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        let file: File = toml::from_str(text).map_err(|e| RulesError::Syntax(e.to_string()))?;
        let mut patterns = Vec::new();
        for r in file.rules {
            let bad = |reason: String| RulesError::BadRule {
                name: r.name.clone(),
                reason,
            };
            if !valid_name(&r.name) || BUILTIN.iter().any(|(n, _)| *n == r.name) {
                return Err(bad(
                    "names are A-Z, 0-9 and _, and not a built-in check's".into()
                ));
            }
            let target = match r.on.as_str() {
                "subject" => Target::Subject,
                "body" => Target::Body,
                "url" => Target::Url,
                "from-name" => Target::FromName,
                other => match other.strip_prefix("header:") {
                    Some(h) if !h.is_empty() => Target::Header(h.to_ascii_lowercase()),
                    _ => return Err(bad(format!("unknown target {other:?}"))),
                },
            };
            let pattern = regex::RegexBuilder::new(&r.pattern)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| bad(e.to_string()))?;
            patterns.push(PatternRule {
                name: r.name,
                target,
                pattern,
                score: r.score,
                describe: r.describe,
            });
        }
        for name in file.symbols.keys().chain(&file.quarantine) {
            if !BUILTIN.iter().any(|(n, _)| n == name)
                && !patterns.iter().any(|p| &p.name == name)
                && !is_attachment_symbol(name)
            {
                return Err(RulesError::UnknownSymbol(name.clone()));
            }
        }
        for b in &file.dnsbls {
            if !valid_name(&b.name) || b.zone.is_empty() || b.zone.starts_with('.') {
                return Err(RulesError::BadRule {
                    name: b.name.clone(),
                    reason: "a blocklist needs a symbol name and a zone".into(),
                });
            }
        }
        Ok(Rules {
            thresholds: file.thresholds,
            lists: file.lists,
            weights: file.symbols,
            quarantine: file.quarantine,
            patterns,
            blocklists: file.dnsbls,
        })
    }

    /// The weight of built-in check `name` (0 when the file gives none).
    pub fn weight(&self, name: &str) -> f64 {
        self.weights.get(name).copied().unwrap_or(0.0)
    }

    /// Whether `name` sends a message to quarantine whatever its score.
    pub fn quarantines(&self, name: &str) -> bool {
        self.quarantine.iter().any(|q| q == name)
    }

    /// The pattern rules that match, with their weights.
    pub(crate) fn matches(&self, a: &crate::Analysis) -> Vec<(&str, f64)> {
        let mut body_end = a.text.len().min(MAX_RULE_TEXT);
        while !a.text.is_char_boundary(body_end) {
            body_end -= 1;
        }
        let body = &a.text[..body_end];
        let from_name = a.from.as_ref().map_or("", |f| f.1.as_str());
        let links: Vec<String> = if self
            .patterns
            .iter()
            .any(|r| matches!(r.target, Target::Url))
        {
            a.urls
                .iter()
                .map(|u| format!("{}{}", u.host, u.path))
                .collect()
        } else {
            Vec::new()
        };
        self.patterns
            .iter()
            .filter(|r| match &r.target {
                Target::Subject => r.pattern.is_match(&a.subject),
                Target::Body => r.pattern.is_match(body),
                Target::FromName => r.pattern.is_match(from_name),
                Target::Url => links.iter().any(|l| r.pattern.is_match(l)),
                Target::Header(h) => a.header(h).any(|v| r.pattern.is_match(v)),
            })
            .map(|r| (r.name.as_str(), r.score))
            .collect()
    }

    /// A description of every symbol, for `stratus spam rules`.
    pub fn describe(&self) -> Vec<(String, f64, String)> {
        let mut out: Vec<(String, f64, String)> = BUILTIN
            .iter()
            .map(|(n, d)| (n.to_string(), self.weight(n), d.to_string()))
            .collect();
        out.extend(
            self.patterns
                .iter()
                .map(|p| (p.name.clone(), p.score, p.describe.clone())),
        );
        out.extend(
            self.blocklists
                .iter()
                .map(|b| (b.name.clone(), b.score, format!("listed in {}", b.zone))),
        );
        out
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Symbols of the attachment policy, weighted in the file like the rest.
fn is_attachment_symbol(name: &str) -> bool {
    crate::attachments::SYMBOLS.iter().any(|(n, _)| *n == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_rules_parse_and_name_every_check() {
        let rules = Rules::shipped();
        for (name, _) in BUILTIN {
            assert!(
                rules.weights.contains_key(*name),
                "{name} has no weight in data/rules.toml"
            );
        }
        assert!(rules.weight("GTUBE") >= rules.thresholds.reject);
        assert!(rules.thresholds.junk < rules.thresholds.reject);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let base = "[thresholds]\njunk = 5.0\nreject = 15.0\n[symbols]\n";
        assert!(Rules::parse(base).is_ok());
        let typo = format!("{base}GTUBEE = 1.0\n");
        assert!(matches!(Rules::parse(&typo), Err(RulesError::UnknownSymbol(s)) if s == "GTUBEE"));
        let bad_regex =
            format!("{base}[[rule]]\nname = \"X\"\non = \"body\"\npattern = \"(\"\nscore = 1.0\n");
        assert!(matches!(
            Rules::parse(&bad_regex),
            Err(RulesError::BadRule { .. })
        ));
        let bad_target = format!(
            "{base}[[rule]]\nname = \"X\"\non = \"nowhere\"\npattern = \"a\"\nscore = 1.0\n"
        );
        assert!(matches!(
            Rules::parse(&bad_target),
            Err(RulesError::BadRule { .. })
        ));
        let builtin_name = format!(
            "{base}[[rule]]\nname = \"GTUBE\"\non = \"body\"\npattern = \"a\"\nscore = 1.0\n"
        );
        assert!(Rules::parse(&builtin_name).is_err());
        assert!(matches!(
            Rules::parse("nonsense"),
            Err(RulesError::Syntax(_))
        ));
    }
}
