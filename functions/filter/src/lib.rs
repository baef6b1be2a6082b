//! Spam and virus verdicts as a pure function: [`score`] takes what was
//! read from a message ([`Analysis`]), what is known of its delivery
//! ([`Context`]: the envelope sender, the authentication results, the DNS
//! blocklist answers already looked up), the rules and the classifier, and
//! one recipient's [`Policy`], and returns a [`Verdict`]: the score, the
//! named symbols that made it, and an [`Action`]. It does no I/O, so the
//! gateway (before its final reply to DATA) and the filter stage (on
//! Lambda or embedded) decide alike, and tests and the fuzz target call it
//! directly.
//!
//! - [`analysis`]: text, links, attachments and tokens, bounded.
//! - [`rules`]: the data file of weights, pattern rules and thresholds.
//! - [`bayes`]: the classifier (naive Bayes).
//! - [`dnsbl`]: DNS blocklist names and answers.
//! - [`attachments`]: the attachment policy, archives included.
//! - [`train`]: training and cross-validation over raw messages.

pub mod analysis;
pub mod attachments;
pub mod bayes;
pub mod dnsbl;
mod html;
pub mod rules;
pub mod tokens;
pub mod train;

use std::fmt::Write as _;

pub use analysis::Analysis;
pub use bayes::{Classifier, Model};
pub use rules::Rules;

/// The model the project ships, trained from the public training corpus
/// by `functions/filter/data/train.sh` (see BENCHMARKS.md).
pub const SHIPPED_MODEL: &[u8] = include_bytes!("../data/bayes.model");

/// [`SHIPPED_MODEL`], read.
pub fn shipped_model() -> Model {
    Model::from_bytes(SHIPPED_MODEL).expect("the shipped model reads (a unit test checks)")
}

/// What happens to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Deliver,
    Junk,
    Quarantine,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deliver => "deliver",
            Action::Junk => "junk",
            Action::Quarantine => "quarantine",
            Action::Reject => "reject",
        }
    }
}

/// One check that fired, and its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub name: String,
    pub score: f64,
}

/// The verdict for one recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub score: f64,
    /// Every symbol that fired, strongest first.
    pub hits: Vec<Hit>,
    pub action: Action,
    /// The junk threshold that applied (for the header).
    pub required: f64,
    /// The classifier's spam probability, when it had learnt enough.
    pub bayes: Option<f64>,
    /// A symbol that sends the message to quarantine fired (whatever the
    /// action: a message also scored for refusal that gets past the
    /// gateway is still held, not filed to Junk).
    pub quarantine: bool,
}

impl Verdict {
    pub fn is_spam(&self) -> bool {
        self.action != Action::Deliver
    }

    /// `X-Spam-Status`: `Yes, score=12.3 required=5.0 tests=A(1.0),B(2.0)`.
    pub fn status_header(&self) -> String {
        let mut out = format!(
            "{}, score={:.1} required={:.1} tests=",
            if self.score >= self.required {
                "Yes"
            } else {
                "No"
            },
            self.score,
            self.required
        );
        for (i, h) in self.hits.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}({:.2})", h.name, h.score);
        }
        if self.hits.is_empty() {
            out.push_str("none");
        }
        out
    }

    /// The header lines the filter adds (CRLF-terminated).
    pub fn headers(&self) -> String {
        let status = fold(&format!("X-Spam-Status: {}", self.status_header()));
        format!(
            "{status}\r\nX-Spam-Score: {:.1}\r\nX-Spam-Action: {}\r\n",
            self.score,
            self.action.as_str()
        )
    }

    /// The strongest reasons, for a refusal: `GTUBE, BAYES_99`.
    pub fn reasons(&self, n: usize) -> String {
        let named: Vec<&str> = self
            .hits
            .iter()
            .filter(|h| h.score > 0.0)
            .take(n)
            .map(|h| h.name.as_str())
            .collect();
        named.join(", ")
    }
}

/// Folds a header line at commas so no line passes 78 characters.
fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 16);
    let mut width = 0;
    for piece in line.split_inclusive(',') {
        if width + piece.len() > 76 && width > 0 {
            out.push_str("\r\n\t");
            width = 1;
        }
        out.push_str(piece);
        width += piece.len();
    }
    out
}

/// Header fields of these names that arrive from outside are removed
/// before a message is stored: only ours may say what the filter said.
pub const OUR_HEADERS: &[&str] = &[
    "x-spam-status",
    "x-spam-score",
    "x-spam-action",
    "x-spam-flag",
    "x-spam-level",
    "x-virus-status",
    "x-virus-scanned",
];

/// `raw` without the header fields of [`OUR_HEADERS`] (the body stays as
/// it is); `None` when there were none.
pub fn strip_our_headers(raw: &[u8]) -> Option<Vec<u8>> {
    let end = header_end(raw);
    let mut out = Vec::new();
    let mut removed = false;
    let mut i = 0;
    let mut skipping = false;
    while i < end {
        let line_end = raw[i..end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(end, |p| i + p + 1);
        let line = &raw[i..line_end];
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            skipping = line
                .iter()
                .position(|&b| b == b':')
                .map(|c| &line[..c])
                .is_some_and(|name| {
                    OUR_HEADERS
                        .iter()
                        .any(|h| h.as_bytes().eq_ignore_ascii_case(name.trim_ascii_end()))
                });
        }
        if skipping {
            removed = true;
        } else {
            out.extend_from_slice(line);
        }
        i = line_end;
    }
    if !removed {
        return None;
    }
    out.extend_from_slice(&raw[end..]);
    Some(out)
}

/// Where the header ends (the start of the blank line, or the end).
fn header_end(raw: &[u8]) -> usize {
    let mut i = 0;
    while i < raw.len() {
        if raw[i..].starts_with(b"\r\n") || raw[i] == b'\n' {
            return i;
        }
        match raw[i..].iter().position(|&b| b == b'\n') {
            Some(p) => i += p + 1,
            None => return raw.len(),
        }
    }
    raw.len()
}

/// Authentication results as the gateway recorded them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthFacts {
    pub spf: String,
    /// The result of each DKIM signature, with its `d=` domain.
    pub dkim: Vec<(String, Option<String>)>,
    pub dmarc: String,
    /// The policy of a failed DMARC check (`none`, `quarantine`, `reject`).
    pub dmarc_policy: Option<stratus_core::job::DmarcPolicy>,
    /// The From domain DMARC judged.
    pub dmarc_from: Option<String>,
    /// The domain SPF judged (`smtp.mailfrom`).
    pub spf_mailfrom: Option<String>,
}

/// The resinfo parts of an Authentication-Results value: split at `;`
/// outside quoted strings and comments, with quoted strings and comments
/// blanked out.
fn split_results(results: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut depth, mut escaped) = (false, 0usize, false);
    for c in results.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => escaped = true,
            '"' if depth == 0 => {
                quoted = !quoted;
                current.push('"');
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            ';' if !quoted && depth == 0 => parts.push(std::mem::take(&mut current)),
            _ if quoted || depth > 0 => {}
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
}

impl AuthFacts {
    /// Reads an Authentication-Results value as the gateway writes it
    /// (`spf=pass smtp.mailfrom=…; dkim=pass header.d=…; dmarc=…`).
    /// Quoted strings and comments are skipped over, so a value the client
    /// chose (a HELO name, say) cannot pose as a result of its own.
    pub fn from_results(
        results: &str,
        dmarc_policy: Option<stratus_core::job::DmarcPolicy>,
    ) -> Self {
        let mut facts = AuthFacts {
            dmarc_policy,
            ..AuthFacts::default()
        };
        for resinfo in split_results(results) {
            let mut words = resinfo.split_ascii_whitespace();
            let Some((method, result)) = words.next().and_then(|w| w.split_once('=')) else {
                continue;
            };
            let result = result.to_ascii_lowercase();
            let property = |words: std::str::SplitAsciiWhitespace<'_>, name: &str| {
                words
                    .filter_map(|w| w.strip_prefix(name))
                    .next()
                    .map(|d| d.trim_matches('"').to_ascii_lowercase())
            };
            match method.to_ascii_lowercase().as_str() {
                "spf" => {
                    facts.spf = result;
                    facts.spf_mailfrom = property(words, "smtp.mailfrom=");
                }
                "dmarc" => {
                    facts.dmarc = result;
                    facts.dmarc_from = property(words, "header.from=");
                }
                "dkim" => facts.dkim.push((result, property(words, "header.d="))),
                _ => {}
            }
        }
        facts
    }

    /// Whether the envelope sender's `domain` vouched for this message:
    /// SPF passed for it, or DMARC passed for a From at that very domain.
    /// (A DMARC pass for another From says nothing of the envelope
    /// sender.)
    pub fn vouches_for_sender(&self, domain: &str) -> bool {
        let domain = domain.to_ascii_lowercase();
        (self.spf == "pass" && self.spf_mailfrom.as_deref() == Some(domain.as_str()))
            || (self.dmarc == "pass" && self.dmarc_from.as_deref() == Some(domain.as_str()))
    }

    /// Whether `domain` is vouched for: DMARC passed for it, or a DKIM
    /// signature of it (or a parent) verified, or SPF passed for it.
    fn vouches_for(&self, domain: &str, mail_from_domain: Option<&str>) -> bool {
        let under = |d: &str| domain == d || domain.ends_with(&format!(".{d}"));
        self.dkim
            .iter()
            .any(|(r, d)| r == "pass" && d.as_deref().is_some_and(under))
            || (self.spf == "pass" && mail_from_domain.is_some_and(under))
            || (self.dmarc == "pass" && self.dmarc_from.as_deref() == Some(domain))
    }
}

/// What is known about the delivery, besides the message itself.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The envelope sender (`None`: the null reverse-path).
    pub mail_from: Option<String>,
    pub auth: AuthFacts,
    /// Symbols of the DNS blocklists that listed the client or a link.
    pub listed: Vec<String>,
    /// When the message arrived (Unix seconds).
    pub now: i64,
}

/// One recipient's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub junk: f64,
    pub reject: f64,
    /// Addresses (`user@domain`) and domains (`domain`, subdomains too)
    /// whose mail is never junk once authenticated.
    pub allow: Vec<String>,
    /// Senders whose mail is always junk.
    pub block: Vec<String>,
}

impl Policy {
    pub fn from_rules(rules: &Rules) -> Policy {
        Policy {
            junk: rules.thresholds.junk,
            reject: rules.thresholds.reject,
            allow: Vec::new(),
            block: Vec::new(),
        }
    }
}

/// Whether `sender` (an address) matches list entry `entry`.
fn listed(entry: &str, sender: &str) -> bool {
    let entry = entry.trim().to_ascii_lowercase();
    let sender = sender.to_ascii_lowercase();
    if entry.contains('@') {
        return entry == sender;
    }
    let domain = sender.rsplit_once('@').map_or("", |(_, d)| d);
    domain == entry || domain.ends_with(&format!(".{entry}"))
}

/// The verdict for one recipient.
pub fn score(
    a: &Analysis,
    ctx: &Context,
    rules: &Rules,
    classifier: Classifier<'_>,
    policy: &Policy,
) -> Verdict {
    let mut fired: Vec<(String, f64)> = Vec::new();
    let mut builtin = |name: &str| fired.push((name.to_string(), rules.weight(name)));
    for name in checks(a, ctx, rules) {
        builtin(name);
    }
    let bayes = classifier.spam_probability(&a.tokens);
    if let Some(p) = bayes {
        builtin(bayes_symbol(p));
    }
    for name in attachments::check(&a.attachments, &rules.lists) {
        builtin(name);
    }
    let senders: Vec<&str> = ctx
        .mail_from
        .as_deref()
        .into_iter()
        .chain(a.from.as_ref().map(|f| f.0.as_str()))
        .collect();
    let mail_from_domain = ctx
        .mail_from
        .as_deref()
        .and_then(|m| m.rsplit_once('@'))
        .map(|(_, d)| d);
    if senders
        .iter()
        .any(|s| policy.block.iter().any(|e| listed(e, s)))
    {
        builtin("USER_BLOCKLIST");
    } else if let Some((from, _)) = &a.from
        && policy.allow.iter().any(|e| listed(e, from))
        && from
            .rsplit_once('@')
            .is_some_and(|(_, d)| ctx.auth.vouches_for(d, mail_from_domain))
    {
        builtin("USER_ALLOWLIST");
    }
    for (name, score) in rules.matches(a) {
        fired.push((name.to_string(), score));
    }
    for name in &ctx.listed {
        let score = rules
            .blocklists
            .iter()
            .find(|b| &b.name == name)
            .map_or(0.0, |b| b.score);
        fired.push((name.clone(), score));
    }
    fired.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()).then(x.0.cmp(&y.0)));
    let total: f64 = fired.iter().map(|(_, s)| s).sum();
    let total = (total * 100.0).round() / 100.0;
    let quarantined = fired.iter().any(|(n, _)| rules.quarantines(n));
    let action = if total >= policy.reject {
        Action::Reject
    } else if quarantined {
        Action::Quarantine
    } else if total >= policy.junk {
        Action::Junk
    } else {
        Action::Deliver
    };
    Verdict {
        score: total,
        hits: fired
            .into_iter()
            .map(|(name, score)| Hit { name, score })
            .collect(),
        action,
        required: policy.junk,
        bayes,
        quarantine: quarantined,
    }
}

fn bayes_symbol(p: f64) -> &'static str {
    match p {
        p if p < 0.01 => "BAYES_00",
        p if p < 0.05 => "BAYES_05",
        p if p < 0.20 => "BAYES_20",
        p if p < 0.40 => "BAYES_40",
        p if p < 0.60 => "BAYES_50",
        p if p < 0.80 => "BAYES_60",
        p if p < 0.95 => "BAYES_80",
        p if p < 0.99 => "BAYES_95",
        p if p < 0.999 => "BAYES_99",
        _ => "BAYES_999",
    }
}

/// The built-in checks of the message and its delivery that fire.
fn checks(a: &Analysis, ctx: &Context, rules: &Rules) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut when = |cond: bool, name: &'static str| {
        if cond {
            out.push(name);
        }
    };
    when(a.gtube, "GTUBE");
    let auth = &ctx.auth;
    when(auth.spf == "pass", "SPF_PASS");
    when(auth.spf == "fail", "SPF_FAIL");
    when(auth.spf == "softfail", "SPF_SOFTFAIL");
    when(auth.spf == "neutral", "SPF_NEUTRAL");
    when(
        matches!(auth.spf.as_str(), "temperror" | "permerror"),
        "SPF_ERROR",
    );
    when(auth.dkim.iter().any(|(r, _)| r == "pass"), "DKIM_VALID");
    when(auth.dkim.iter().any(|(r, _)| r == "fail"), "DKIM_INVALID");
    when(
        auth.dkim
            .iter()
            .any(|(r, _)| r == "temperror" || r == "permerror"),
        "DKIM_ERROR",
    );
    when(auth.dmarc == "pass", "DMARC_PASS");
    use stratus_core::job::DmarcPolicy as P;
    when(auth.dmarc_policy == Some(P::Reject), "DMARC_POLICY_REJECT");
    when(
        auth.dmarc_policy == Some(P::Quarantine),
        "DMARC_POLICY_QUARANTINE",
    );
    when(auth.dmarc_policy == Some(P::None), "DMARC_POLICY_NONE");

    when(!a.has_date, "MISSING_DATE");
    when(a.has_date && a.date.is_none(), "INVALID_DATE");
    when(
        a.date.is_some_and(|d| d > ctx.now + 86_400),
        "DATE_IN_FUTURE",
    );
    when(!a.has_message_id, "MISSING_MID");
    when(
        a.has_message_id && !a.message_id.as_deref().is_some_and(|m| m.contains('@')),
        "INVALID_MSGID",
    );
    when(
        a.from.as_ref().is_none_or(|f| f.0.is_empty()),
        "MISSING_FROM",
    );
    when(
        !a.headers.iter().any(|(n, _)| n == "subject"),
        "MISSING_SUBJECT",
    );
    when(!a.has_to, "MISSING_TO");
    let from_domain = a
        .from
        .as_ref()
        .and_then(|f| f.0.rsplit_once('@'))
        .map(|(_, d)| d);
    let reply_domain = a
        .reply_to
        .as_deref()
        .and_then(|r| r.rsplit_once('@'))
        .map(|(_, d)| d);
    when(
        matches!((from_domain, reply_domain), (Some(f), Some(r)) if f != r),
        "FROM_REPLYTO_DIFF",
    );
    when(
        a.from.as_ref().is_some_and(|(addr, name)| {
            name.contains('@')
                && name
                    .split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '(' | ')'))
                    .any(|w| w.contains('@') && !w.eq_ignore_ascii_case(addr))
        }),
        "FROM_NAME_ADDRESS",
    );
    let words = a.text.split_whitespace().take(10).count();
    when(a.html_parts > 0 && a.plain_parts == 0, "HTML_ONLY");
    when(
        a.images > 0 && a.text.trim().chars().count() < 200,
        "IMAGE_ONLY",
    );
    when(
        words == 0 && a.attachments.is_empty() && !a.unparsed,
        "EMPTY_BODY",
    );
    when(mixed_script_words(&a.text) >= 3, "MIXED_SCRIPT");
    when(
        a.text.chars().any(|c| {
            matches!(
                c,
                '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
            )
        }),
        "ZERO_WIDTH",
    );
    when(a.encoding_problem, "MIME_BAD_ENCODING");
    when(a.unparsed, "MIME_UNPARSED");
    when(a.too_many_parts, "MIME_MANY_PARTS");
    let shortener = |host: &str| {
        rules.lists.url_shorteners.iter().any(|s| {
            host == s
                || host
                    .strip_suffix(s.as_str())
                    .is_some_and(|p| p.ends_with('.'))
        })
    };
    when(a.urls.iter().any(|u| shortener(&u.host)), "URL_SHORTENER");
    when(a.urls.iter().any(|u| u.is_ip()), "URL_IP");
    when(a.urls.iter().any(|u| u.userinfo), "URL_USERINFO");
    out
}

/// Words that mix Latin letters with Greek or Cyrillic ones (U+0370 to
/// U+04FF) (`pаypal`
/// with a Cyrillic а): look-alikes used to dodge word filters.
fn mixed_script_words(text: &str) -> usize {
    text.split_whitespace()
        .take(5000)
        .filter(|w| {
            let latin = w.chars().any(|c| c.is_ascii_alphabetic());
            let other = w.chars().any(|c| matches!(c as u32, 0x0370..=0x04FF));
            latin && other
        })
        .count()
}

#[cfg(test)]
mod tests;
