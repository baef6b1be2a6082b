//! Mailbox names and special-use roles (RFC 6154).
//!
//! Names are UTF-8 with `/` as the hierarchy delimiter. IMAP4rev1's modified
//! UTF-7 is a wire encoding and is converted at the protocol edge; the index
//! only ever holds UTF-8. `INBOX` is case-insensitive (RFC 9051 §5.1) and is
//! stored in upper case.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub const DELIMITER: char = '/';
const MAX_NAME_BYTES: usize = 512;
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mailbox name `{name}` is invalid: {reason}")]
pub struct MailboxNameError {
    pub name: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MailboxName(String);

impl MailboxName {
    pub fn parse(input: &str) -> Result<Self, MailboxNameError> {
        let err = |reason| MailboxNameError {
            name: input.into(),
            reason,
        };
        if input.is_empty() {
            return Err(err("it is empty"));
        }
        if input.len() > MAX_NAME_BYTES {
            return Err(err("longer than 512 bytes"));
        }
        if input.starts_with(DELIMITER) || input.ends_with(DELIMITER) {
            return Err(err("it may not start or end with `/`"));
        }
        let mut parts = Vec::new();
        for part in input.split(DELIMITER) {
            if part.is_empty() {
                return Err(err("it has an empty level (`//`)"));
            }
            if part.chars().any(|c| c.is_control() || c == '*' || c == '%') {
                return Err(err("control characters, `*` and `%` are not allowed"));
            }
            if part.trim() != part {
                return Err(err("a level may not start or end with white space"));
            }
            parts.push(part);
        }
        if parts.len() > MAX_DEPTH {
            return Err(err("more than 32 levels"));
        }
        if parts[0].eq_ignore_ascii_case("INBOX") {
            parts[0] = "INBOX";
        }
        Ok(MailboxName(parts.join("/")))
    }

    /// Whether a mailbox may be created (or renamed) to this name: not with
    /// `.` or `..` as a level, which clients and tools that map names to
    /// paths (exports, Maildir) would read as "here" and "the parent".
    /// Names stored before this rule stay readable.
    pub fn check_new(&self) -> Result<(), MailboxNameError> {
        if self.0.split(DELIMITER).any(|l| l == "." || l == "..") {
            return Err(MailboxNameError {
                name: self.0.clone(),
                reason: "`.` and `..` cannot be levels of a name",
            });
        }
        Ok(())
    }

    pub fn inbox() -> Self {
        MailboxName("INBOX".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_inbox(&self) -> bool {
        self.0 == "INBOX"
    }

    /// The parent mailbox, if this one is nested.
    pub fn parent(&self) -> Option<MailboxName> {
        self.0
            .rsplit_once(DELIMITER)
            .map(|(p, _)| MailboxName(p.to_string()))
    }
}

impl fmt::Display for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for MailboxName {
    type Err = MailboxNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MailboxName::parse(s)
    }
}

impl TryFrom<String> for MailboxName {
    type Error = MailboxNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        MailboxName::parse(&s)
    }
}

impl From<MailboxName> for String {
    fn from(m: MailboxName) -> String {
        m.0
    }
}

/// Special-use roles (RFC 6154) that Stratus gives the default mailboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpecialUse {
    All,
    Archive,
    Drafts,
    Flagged,
    Junk,
    Sent,
    Trash,
}

impl SpecialUse {
    /// The IMAP attribute, e.g. `\Sent`.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::All => "\\All",
            SpecialUse::Archive => "\\Archive",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Flagged => "\\Flagged",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Trash => "\\Trash",
        }
    }

    /// The role an IMAP attribute names (case-insensitive), if any.
    pub fn from_attribute(attribute: &str) -> Option<SpecialUse> {
        [
            SpecialUse::All,
            SpecialUse::Archive,
            SpecialUse::Drafts,
            SpecialUse::Flagged,
            SpecialUse::Junk,
            SpecialUse::Sent,
            SpecialUse::Trash,
        ]
        .into_iter()
        .find(|r| r.attribute().eq_ignore_ascii_case(attribute))
    }
}

/// The mailboxes every new user starts with.
pub fn default_mailboxes() -> [(MailboxName, Option<SpecialUse>); 6] {
    let n = |s: &str| MailboxName(s.to_string());
    [
        (MailboxName::inbox(), None),
        (n("Sent"), Some(SpecialUse::Sent)),
        (n("Drafts"), Some(SpecialUse::Drafts)),
        (n("Junk"), Some(SpecialUse::Junk)),
        (n("Trash"), Some(SpecialUse::Trash)),
        (n("Archive"), Some(SpecialUse::Archive)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(MailboxName::parse("inbox").unwrap().as_str(), "INBOX");
        assert_eq!(
            MailboxName::parse("Inbox/Sub").unwrap().as_str(),
            "INBOX/Sub"
        );
        assert_eq!(
            MailboxName::parse("Projekte/Übersicht").unwrap().as_str(),
            "Projekte/Übersicht"
        );
        assert_eq!(
            MailboxName::parse("a/b/c")
                .unwrap()
                .parent()
                .unwrap()
                .as_str(),
            "a/b"
        );
        assert!(MailboxName::parse("INBOXES").unwrap().as_str() == "INBOXES");
        for (bad, why) in [
            ("", "empty"),
            ("/a", "start or end"),
            ("a/", "start or end"),
            ("a//b", "empty level"),
            ("a*", "`*`"),
            ("a%b", "`%`"),
            ("a\u{7}b", "control"),
            (" a", "white space"),
        ] {
            let e = MailboxName::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(MailboxName::parse(&["x"; 33].join("/")).is_err());
        assert!(MailboxName::parse(&"x".repeat(513)).is_err());
    }
}
