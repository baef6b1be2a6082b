//! E-mail addresses and domains.
//!
//! Domains are kept in their ASCII (A-label) form, lower-cased, so that
//! `Example.COM`, `example.com` and an IDN written in Unicode or punycode all
//! compare equal. Local parts follow RFC 5321 `Local-part` with the RFC 6531
//! extension: UTF-8 is allowed wherever `atext` is. They compare exactly, as
//! RFC 5321 §2.4 demands; account lookups use [`Address::account_key`], which
//! folds case the way users expect (`Alice@` and `alice@` are one mailbox).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an address or domain was refused. The message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address `{0}` has no `@` between a local part and a domain")]
    MissingAt(String),
    #[error("local part of `{0}` is longer than 64 octets")]
    LocalTooLong(String),
    #[error("address `{0}` is longer than 254 octets")]
    AddressTooLong(String),
    #[error("local part `{0}` is not a valid dot-atom or quoted string")]
    InvalidLocal(String),
    #[error("domain `{0}` is invalid: {1}")]
    InvalidDomain(String, &'static str),
}

/// A domain name in canonical ASCII form (lower-case A-labels).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);

impl Domain {
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        if trimmed.is_empty() {
            return Err(AddressError::InvalidDomain(input.into(), "it is empty"));
        }
        if trimmed.starts_with('[') {
            return Err(AddressError::InvalidDomain(
                input.into(),
                "address literals are not mail domains",
            ));
        }
        let ascii = idna::domain_to_ascii_strict(trimmed)
            .map_err(|_| AddressError::InvalidDomain(input.into(), "not a valid host name"))?;
        if ascii.len() > 253 {
            return Err(AddressError::InvalidDomain(
                input.into(),
                "longer than 253 octets",
            ));
        }
        for label in ascii.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(AddressError::InvalidDomain(
                    input.into(),
                    "each label must be 1 to 63 octets",
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(AddressError::InvalidDomain(
                    input.into(),
                    "a label may not start or end with `-`",
                ));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(AddressError::InvalidDomain(
                    input.into(),
                    "only letters, digits and `-` are allowed",
                ));
            }
        }
        if ascii
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(AddressError::InvalidDomain(
                input.into(),
                "the last label may not be all digits",
            ));
        }
        Ok(Domain(ascii))
    }

    /// The canonical ASCII form (what DNS and the index use).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Unicode form, for display.
    pub fn to_unicode(&self) -> String {
        let (s, _) = idna::domain_to_unicode(&self.0);
        s
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Domain {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Domain::parse(s)
    }
}

impl TryFrom<String> for Domain {
    type Error = AddressError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Domain::parse(&s)
    }
}

impl From<Domain> for String {
    fn from(d: Domain) -> String {
        d.0
    }
}

/// A validated mailbox address `local@domain`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Address {
    local: String,
    domain: Domain,
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (!c.is_ascii() && !c.is_control())
}

fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// Parses a quoted string (with its quotes) and returns its unescaped content.
fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next()?;
                if next.is_control() && next != '\t' {
                    return None;
                }
                out.push(next);
            }
            '"' => return None,
            c if c.is_control() => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

fn quote(content: &str) -> String {
    let mut out = String::with_capacity(content.len() + 2);
    out.push('"');
    for c in content.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

impl Address {
    /// Parses `local@domain`, with or without surrounding angle brackets.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let s = input.trim();
        let s = s
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(s);
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        let at = s
            .rfind('@')
            .ok_or_else(|| AddressError::MissingAt(input.into()))?;
        let (raw_local, raw_domain) = (&s[..at], &s[at + 1..]);
        if raw_local.is_empty() || raw_domain.is_empty() {
            return Err(AddressError::MissingAt(input.into()));
        }
        let local = if raw_local.starts_with('"') {
            let content =
                unquote(raw_local).ok_or_else(|| AddressError::InvalidLocal(raw_local.into()))?;
            // A quoted string whose content is a plain dot-atom is the same
            // address as the unquoted form (RFC 5321 §4.1.2); keep one spelling.
            if is_dot_atom(&content) {
                content
            } else {
                quote(&content)
            }
        } else if is_dot_atom(raw_local) {
            raw_local.to_string()
        } else {
            return Err(AddressError::InvalidLocal(raw_local.into()));
        };
        if local.len() > 64 {
            return Err(AddressError::LocalTooLong(input.into()));
        }
        let domain = Domain::parse(raw_domain)?;
        if local.len() + 1 + domain.as_str().len() > 254 {
            return Err(AddressError::AddressTooLong(input.into()));
        }
        Ok(Address { local, domain })
    }

    pub fn local_part(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// True when the local part needs SMTPUTF8 (RFC 6531) to travel.
    pub fn needs_smtputf8(&self) -> bool {
        !self.local.is_ascii()
    }

    /// The key under which an account is found: the local part folded to
    /// lower case, and the canonical domain. Mail servers match users
    /// case-insensitively in practice; RFC 5321 leaves that choice to the host.
    pub fn account_key(&self) -> String {
        format!("{}@{}", self.local.to_lowercase(), self.domain)
    }

    /// [`Self::account_key`] in hex: a blob key segment for the account's
    /// own objects (spam model, Sieve scripts).
    pub fn account_key_hex(&self) -> String {
        self.account_key()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

impl TryFrom<String> for Address {
    type Error = AddressError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Address::parse(&s)
    }
}

impl From<Address> for String {
    fn from(a: Address) -> String {
        a.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_addresses_parse_to_canonical_form() {
        let cases = [
            ("alice@example.com", "alice@example.com"),
            ("<alice@Example.COM>", "alice@example.com"),
            ("Alice.B+tag@example.com.", "Alice.B+tag@example.com"),
            ("\"alice\"@example.com", "alice@example.com"),
            ("\"john doe\"@example.com", "\"john doe\"@example.com"),
            ("\"a\\\"b\"@example.com", "\"a\\\"b\"@example.com"),
            ("用户@例子.广告", "用户@xn--fsqu00a.xn--4rr70v"),
            ("jörg@bücher.example", "jörg@xn--bcher-kva.example"),
            ("user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
            ("postmaster@localhost", "postmaster@localhost"),
        ];
        for (input, want) in cases {
            let a = Address::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(a.to_string(), want, "input {input}");
        }
    }

    #[test]
    fn invalid_addresses_are_refused_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("alice", "no `@`"),
            ("@example.com", "no `@`"),
            ("alice@", "no `@`"),
            ("al ice@example.com", "not a valid dot-atom"),
            ("alice..b@example.com", "not a valid dot-atom"),
            (".alice@example.com", "not a valid dot-atom"),
            ("alice@exa_mple.com", "invalid"),
            ("alice@-example.com", "invalid"),
            ("alice@example..com", "invalid"),
            ("alice@[127.0.0.1]", "address literals"),
            ("alice@1.2.3.4", "all digits"),
            ("\"unterminated@example.com", "not a valid dot-atom"),
        ];
        for (input, reason) in cases {
            let err = Address::parse(input).expect_err(input).to_string();
            assert!(
                err.contains(reason),
                "{input}: `{err}` should mention `{reason}`"
            );
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(matches!(
            Address::parse(&long_local),
            Err(AddressError::LocalTooLong(_))
        ));
        let long_domain = format!("a@{}.com", vec!["b".repeat(60); 5].join("."));
        assert!(Address::parse(&long_domain).is_err());
    }

    #[test]
    fn domain_compares_case_insensitively_local_part_exactly() {
        let a = Address::parse("Alice@EXAMPLE.com").unwrap();
        let b = Address::parse("Alice@example.COM").unwrap();
        let c = Address::parse("alice@example.com").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.account_key(), c.account_key());
        assert_eq!(
            Domain::parse("BÜCHER.example").unwrap(),
            Domain::parse("xn--bcher-kva.example").unwrap()
        );
        assert_eq!(
            Domain::parse("xn--bcher-kva.example").unwrap().to_unicode(),
            "bücher.example"
        );
    }

    #[test]
    fn smtputf8_is_detected_from_the_local_part() {
        assert!(Address::parse("jörg@example.com").unwrap().needs_smtputf8());
        assert!(
            !Address::parse("joerg@bücher.example")
                .unwrap()
                .needs_smtputf8()
        );
    }

    #[test]
    fn serde_round_trip_validates() {
        let a = Address::parse("jörg@Bücher.example").unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Address>(&json).unwrap(), a);
        assert!(serde_json::from_str::<Address>("\"not an address\"").is_err());
    }
}
