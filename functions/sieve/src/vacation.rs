//! Whether a vacation reply may be sent to a message's sender (RFC 5230
//! section 4.5 and 4.6, RFC 3834 section 2): never to the null sender, to
//! mailing-list and other automated senders, to mail another machine
//! made, or to mail that was not addressed to the user. Sending, and
//! remembering whom we answered, is the caller's.

/// The default period between two replies to one sender (RFC 5230: 7
/// days), and the bounds a script's `:days` or `:seconds` is held to.
pub const DEFAULT_PERIOD: u64 = 7 * 86_400;
pub const MIN_PERIOD: u64 = 60;
pub const MAX_PERIOD: u64 = 60 * 86_400;

/// The period a script asked for, within the bounds.
pub fn period(asked: Option<u64>) -> u64 {
    asked
        .unwrap_or(DEFAULT_PERIOD)
        .clamp(MIN_PERIOD, MAX_PERIOD)
}

/// Why no reply goes to the sender of `raw` (from `envelope_from`, empty
/// for the null sender), sent to the user whose addresses are
/// `addresses`; `None` when one may.
pub fn reason_not_to_reply(
    raw: &[u8],
    envelope_from: &str,
    addresses: &[String],
) -> Option<&'static str> {
    if envelope_from.is_empty() {
        return Some("the null sender");
    }
    let local = envelope_from
        .rsplit_once('@')
        .map_or(envelope_from, |(l, _)| l)
        .to_ascii_lowercase();
    if local == "mailer-daemon"
        || local == "listserv"
        || local == "majordomo"
        || local.starts_with("owner-")
        || local.ends_with("-request")
    {
        return Some("an automated sender");
    }
    if addresses
        .iter()
        .any(|a| a.eq_ignore_ascii_case(envelope_from))
    {
        return Some("the user's own message");
    }
    let Some(message) = stratus_core::message::parse_headers(raw) else {
        return Some("a message whose header cannot be read");
    };
    let mut addressed = false;
    for (name, value) in message.headers_raw() {
        let name = name.to_ascii_lowercase();
        if let Some(why) = machine_field(&name, value) {
            return Some(why);
        }
        match name.as_str() {
            "to" | "cc" | "bcc" | "resent-to" | "resent-cc" | "resent-bcc" if !addressed => {
                addressed = crate::interp::field_addresses(value)
                    .iter()
                    .any(|a| addresses.iter().any(|u| u.eq_ignore_ascii_case(a)));
            }
            _ => {}
        }
    }
    if !addressed {
        return Some("mail not addressed to the user");
    }
    None
}

/// Why a header field says its message was sent by a machine (RFC 3834
/// §2): `Auto-Submitted` other than `no`, bulk or list `Precedence`, or
/// a list's fields (RFC 2369, 2919). `name` is in lower case.
fn machine_field(name: &str, value: &str) -> Option<&'static str> {
    let text = || {
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    match name {
        "auto-submitted" if text() != "no" => Some("mail a machine sent"),
        "precedence" if matches!(text().as_str(), "bulk" | "list" | "junk") => {
            Some("bulk or list mail")
        }
        "list-id" | "list-help" | "list-subscribe" | "list-unsubscribe" | "list-post"
        | "list-owner" | "list-archive" => Some("list mail"),
        _ => None,
    }
}

/// Why `raw` is mail a machine sent (see [`machine_field`]), which gets
/// no automatic answer and is not posted to a list unapproved.
pub fn automated(raw: &[u8]) -> Option<&'static str> {
    let message = stratus_core::message::parse_headers(raw)?;
    message
        .headers_raw()
        .find_map(|(name, value)| machine_field(&name.to_ascii_lowercase(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(extra: &str, to: &str, from: &str) -> Option<&'static str> {
        let raw = format!("From: {from}\r\nTo: {to}\r\nSubject: hi\r\n{extra}\r\nbody\r\n");
        reason_not_to_reply(
            raw.as_bytes(),
            from,
            &["alice@example.com".into(), "a.smith@example.com".into()],
        )
    }

    #[test]
    fn replies_only_to_people_who_wrote_to_the_user() {
        assert_eq!(
            why("", "Alice <alice@example.com>", "bob@example.net"),
            None
        );
        assert_eq!(
            why("", "x@y.example, A.Smith@Example.com", "bob@example.net"),
            None
        );
        assert_eq!(
            why(
                "Auto-Submitted: no\r\n",
                "alice@example.com",
                "bob@example.net"
            ),
            None
        );
        for (extra, to, from, says) in [
            ("", "alice@example.com", "", "the null sender"),
            (
                "",
                "alice@example.com",
                "MAILER-DAEMON@example.net",
                "an automated sender",
            ),
            (
                "",
                "alice@example.com",
                "owner-list@example.net",
                "an automated sender",
            ),
            (
                "",
                "alice@example.com",
                "list-request@example.net",
                "an automated sender",
            ),
            (
                "",
                "alice@example.com",
                "alice@example.com",
                "the user's own message",
            ),
            (
                "Auto-Submitted: auto-replied\r\n",
                "alice@example.com",
                "bob@example.net",
                "mail a machine sent",
            ),
            (
                "Precedence: bulk\r\n",
                "alice@example.com",
                "bob@example.net",
                "bulk or list mail",
            ),
            (
                "List-Id: <team.example.net>\r\n",
                "alice@example.com",
                "bob@example.net",
                "list mail",
            ),
            (
                "",
                "team@example.com",
                "bob@example.net",
                "mail not addressed to the user",
            ),
        ] {
            assert_eq!(why(extra, to, from), Some(says), "{extra} {to} {from}");
        }
    }

    #[test]
    fn periods_are_bounded() {
        assert_eq!(period(None), 7 * 86_400);
        assert_eq!(period(Some(0)), 60);
        assert_eq!(period(Some(u64::MAX)), 60 * 86_400);
        assert_eq!(period(Some(86_400)), 86_400);
    }
}
