//! Auto-replies (RFC 3834): what a vacation responder sends back to the
//! sender of a message, marked so that other responders and list managers
//! leave it alone, and threaded under the message it answers.

use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;
use stratus_core::address::Address;
use stratus_core::ids::QueueId;

/// What an auto-reply says and to whom.
#[derive(Debug, Clone)]
pub struct AutoReply<'a> {
    /// The user who is away: the reply's `From:`.
    pub from: &'a Address,
    /// The original message's sender: the reply's `To:`.
    pub to: &'a Address,
    /// The original `Subject:`, if any; the reply's is `Auto: ` and it
    /// (RFC 3834 §3.1.5), unless `subject` below is set.
    pub original_subject: Option<&'a str>,
    /// A subject of the user's own choosing (Sieve vacation `:subject`).
    pub subject: Option<&'a str>,
    /// The original `Message-ID:` (without angle brackets), for
    /// `In-Reply-To:` and `References:`.
    pub original_message_id: Option<&'a str>,
    /// The reply's text.
    pub text: &'a str,
    /// Our host name, for the reply's own `Message-ID:`.
    pub hostname: &'a str,
    /// The reply's queue id.
    pub id: &'a QueueId,
    /// When it is written, as Unix seconds.
    pub date: i64,
}

/// A subject from mail or a script, fit for a header field: control
/// characters (a decoded CR LF would start a field of the sender's
/// choosing) become spaces.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// The bytes of an auto-reply.
pub fn auto_reply(reply: &AutoReply<'_>) -> Vec<u8> {
    let subject = match (reply.subject, reply.original_subject) {
        (Some(own), _) => clean(own),
        (None, Some(original)) => format!("Auto: {}", clean(original)),
        (None, None) => "Auto: (no subject)".to_string(),
    };
    let mut message = MessageBuilder::new()
        .from(reply.from.to_string())
        .to(reply.to.to_string())
        .subject(subject)
        .date(reply.date)
        .message_id(format!("{}@{}", reply.id, reply.hostname))
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .text_body(reply.text);
    if let Some(id) = reply.original_message_id {
        message = message.in_reply_to(id).references(id);
    }
    // Writing to memory cannot fail.
    message.write_to_vec().unwrap_or_default()
}

/// A notice from a machine to people (a list's owners told of a held
/// post): plain text, `Auto-Submitted: auto-generated`.
pub fn notice(
    from: &Address,
    to: &[Address],
    subject: &str,
    text: &str,
    hostname: &str,
    id: &QueueId,
    date: i64,
) -> Vec<u8> {
    MessageBuilder::new()
        .from(from.to_string())
        .to(to.iter().map(ToString::to_string).collect::<Vec<_>>())
        .subject(clean(subject))
        .date(date)
        .message_id(format!("{id}@{hostname}"))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .text_body(text)
        .write_to_vec()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(bytes: &[u8]) -> String {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        text.split("\r\n\r\n").next().unwrap().to_string()
    }

    #[test]
    fn an_auto_reply_is_marked_threaded_and_addressed() {
        let alice = Address::parse("alice@example.com").unwrap();
        let bob = Address::parse("bob@remote.example").unwrap();
        let id = QueueId::parse("01JZ8XW4ZC7T1V0V5J3C9N8Q2R").unwrap();
        let bytes = auto_reply(&AutoReply {
            from: &alice,
            to: &bob,
            original_subject: Some("Lunch on Friday?"),
            subject: None,
            original_message_id: Some("abc@remote.example"),
            text: "I am away until Monday.\n",
            hostname: "mx.example.com",
            id: &id,
            date: 1_751_356_800,
        });
        let head = headers(&bytes);
        for want in [
            "From: <alice@example.com>",
            "To: <bob@remote.example>",
            "Subject: Auto: Lunch on Friday?",
            "Auto-Submitted: auto-replied",
            "In-Reply-To: <abc@remote.example>",
            "References: <abc@remote.example>",
            "Message-ID: <01JZ8XW4ZC7T1V0V5J3C9N8Q2R@mx.example.com>",
        ] {
            assert!(head.lines().any(|l| l == want), "{want} in\n{head}");
        }
        let parsed = stratus_core::message::envelope(&bytes);
        assert_eq!(parsed.subject.as_deref(), Some("Auto: Lunch on Friday?"));
        assert!(String::from_utf8_lossy(&bytes).contains("I am away until Monday."));
    }

    #[test]
    fn a_subject_cannot_start_header_fields() {
        let alice = Address::parse("alice@example.com").unwrap();
        let bob = Address::parse("bob@remote.example").unwrap();
        let id = QueueId::generate();
        let bytes = auto_reply(&AutoReply {
            from: &alice,
            to: &bob,
            // As mail-parser decodes =?us-ascii?Q?x=0D=0AReply-To:_evil@x?=
            original_subject: Some("x\r\nReply-To: evil@x\r\n\r\n"),
            subject: None,
            original_message_id: None,
            text: "away",
            hostname: "mx.example.com",
            id: &id,
            date: 0,
        });
        let head = headers(&bytes);
        assert!(!head.lines().any(|l| l.starts_with("Reply-To")), "{head}");
        assert!(
            head.lines().any(|l| l == "Auto-Submitted: auto-replied"),
            "{head}"
        );
    }

    #[test]
    fn a_subject_of_ones_own_and_non_ascii_text_survive() {
        let alice = Address::parse("alice@example.com").unwrap();
        let bob = Address::parse("bob@remote.example").unwrap();
        let id = QueueId::generate();
        let bytes = auto_reply(&AutoReply {
            from: &alice,
            to: &bob,
            original_subject: None,
            subject: Some("Abwesend – zurück am Montag"),
            original_message_id: None,
            text: "Grüße",
            hostname: "mx.example.com",
            id: &id,
            date: 0,
        });
        let head = headers(&bytes);
        assert!(!head.contains("In-Reply-To"), "{head}");
        // Encoded as RFC 2047 words in the header, decoded back the same.
        assert!(head.is_ascii(), "{head}");
        let parsed = stratus_core::message::envelope(&bytes);
        assert_eq!(
            parsed.subject.as_deref(),
            Some("Abwesend – zurück am Montag")
        );
    }
}
