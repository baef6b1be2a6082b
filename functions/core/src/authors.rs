//! Who a message says wrote and sent it: the addresses of its `From:` and
//! `Sender:` fields (RFC 5322 §3.6.2). Submission holds them against the
//! authenticated user, DKIM signs for the From domain, and the MX looks
//! for hosted domains that fail DMARC in them, so all three read them the
//! same way here.

use mail_parser::{HeaderName, HeaderValue};

use crate::address::Address;

/// The author fields of a message, as addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authors {
    /// Every address of the `From:` field, in order (RFC 5322 allows
    /// several authors when `Sender:` names who sent it).
    pub from: Vec<Address>,
    /// The address of the `Sender:` field, when there is one.
    pub sender: Option<Address>,
}

impl Authors {
    /// The addresses of both fields, From first.
    pub fn all(&self) -> impl Iterator<Item = &Address> {
        self.from.iter().chain(self.sender.as_ref())
    }
}

/// Why the author fields cannot be read as addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorError {
    #[error("the message has {0} From: fields; it may have one")]
    ManyFrom(usize),
    #[error("the message has {0} Sender: fields; it may have one")]
    ManySender(usize),
    #[error("Sender: must name exactly one address")]
    SenderList,
    #[error("{field}: `{text}` is not an address")]
    NotAnAddress { field: &'static str, text: String },
    #[error("the header cannot be parsed")]
    Unparsable,
}

/// The author fields of `raw` (a message, or just its header). A message
/// without a From field has no authors (`from` is empty); one whose author
/// fields hold something that is not an address, or that repeat, is an
/// error, since nothing can be checked or signed for it.
pub fn authors(raw: &[u8]) -> Result<Authors, AuthorError> {
    let message = crate::message::parse_headers(raw).ok_or(AuthorError::Unparsable)?;
    let from_fields: Vec<&HeaderValue> = message.header_values(HeaderName::From).collect();
    if from_fields.len() > 1 {
        return Err(AuthorError::ManyFrom(from_fields.len()));
    }
    let sender_fields: Vec<&HeaderValue> = message.header_values(HeaderName::Sender).collect();
    if sender_fields.len() > 1 {
        return Err(AuthorError::ManySender(sender_fields.len()));
    }
    let from = match from_fields.first() {
        Some(value) => addresses("From", value)?,
        None => Vec::new(),
    };
    let sender = match sender_fields.first() {
        Some(value) => {
            let mut list = addresses("Sender", value)?;
            if list.len() != 1 {
                return Err(AuthorError::SenderList);
            }
            list.pop()
        }
        None => None,
    };
    Ok(Authors { from, sender })
}

fn addresses(field: &'static str, value: &HeaderValue) -> Result<Vec<Address>, AuthorError> {
    let not_an_address = |text: &str| AuthorError::NotAnAddress {
        field,
        text: text.chars().take(200).collect(),
    };
    let HeaderValue::Address(list) = value else {
        let text = match value {
            HeaderValue::Text(t) => t.to_string(),
            _ => String::new(),
        };
        return Err(not_an_address(&text));
    };
    let mut out = Vec::new();
    for addr in list.iter() {
        let Some(text) = addr.address.as_deref() else {
            return Err(not_an_address(addr.name.as_deref().unwrap_or("")));
        };
        out.push(Address::parse(text).map_err(|_| not_an_address(text))?);
    }
    if out.is_empty() {
        return Err(not_an_address(""));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[test]
    fn reads_from_and_sender_as_addresses() {
        let a = authors(
            b"From: \"bob@example.com\" <Alice@Example.com>, carol@example.org\r\n\
Sender: =?utf-8?q?J=C3=B6rg?= <j@example.net> (the secretary)\r\n\
Subject: x\r\n\r\nFrom: ignored@body.example\r\n",
        )
        .unwrap();
        assert_eq!(
            a.from,
            [addr("Alice@example.com"), addr("carol@example.org")],
            "the address, never the display name"
        );
        assert_eq!(a.sender, Some(addr("j@example.net")));
        assert_eq!(a.all().count(), 3);
        assert_eq!(
            authors(b"Subject: no author\r\n\r\nbody\r\n").unwrap(),
            Authors::default()
        );
        let group = authors(b"From: Team: a@x.example, b@y.example;\r\n\r\n").unwrap();
        assert_eq!(group.from, [addr("a@x.example"), addr("b@y.example")]);
        let idn = authors("From: jörg@bücher.example\r\n\r\n".as_bytes()).unwrap();
        assert_eq!(idn.from[0].domain().as_str(), "xn--bcher-kva.example");
    }

    #[test]
    fn what_cannot_be_checked_is_an_error() {
        for (raw, want) in [
            (
                &b"From: a@x.example\r\nFrom: b@y.example\r\n\r\n"[..],
                AuthorError::ManyFrom(2),
            ),
            (
                b"From: a@x.example\r\nSender: a@x.example\r\nsender: b@y.example\r\n\r\n",
                AuthorError::ManySender(2),
            ),
            (
                b"From: a@x.example\r\nSender: a@x.example, b@y.example\r\n\r\n",
                AuthorError::SenderList,
            ),
        ] {
            assert_eq!(authors(raw), Err(want));
        }
        for raw in [
            &b"From: Undisclosed\r\n\r\n"[..],
            b"From:\r\n\r\n",
            b"From: <>\r\n\r\n",
            b"From: a@b@c\r\n\r\n",
            b"From: a@x.example\r\nSender: nobody\r\n\r\n",
        ] {
            assert!(
                matches!(authors(raw), Err(AuthorError::NotAnAddress { .. })),
                "{:?}: {:?}",
                String::from_utf8_lossy(raw),
                authors(raw)
            );
        }
    }
}
