//! Sieve rejections (RFC 5429 §2.1.1): a message disposition
//! notification (RFC 8098) from the recipient to the sender, saying the
//! message was deleted unread and why, with the original's header.

use stratus_core::address::Address;
use stratus_core::ids::QueueId;

/// What a rejection says and to whom.
#[derive(Debug, Clone)]
pub struct Rejection<'a> {
    /// The recipient whose script rejected the message.
    pub from: &'a Address,
    /// The original message's sender.
    pub to: &'a Address,
    /// The script's reason.
    pub reason: &'a str,
    /// The original message, whose header is returned.
    pub original: &'a [u8],
    /// The original `Message-ID:` (without angle brackets), if any.
    pub original_message_id: Option<&'a str>,
    /// Our host name: the reporting user agent, and the MDN's own
    /// `Message-ID:`.
    pub hostname: &'a str,
    pub id: &'a QueueId,
    /// Unix seconds.
    pub date: i64,
}

/// The bytes of a rejection.
pub fn rejection(r: &Rejection<'_>) -> Vec<u8> {
    let boundary = format!("{}/{}", r.id, r.hostname);
    let date = stratus_core::time::rfc5322_date(r.date);
    // A reason from a script: one line per line, no stray CR or NUL.
    let reason: String = r
        .reason
        .replace("\r\n", "\n")
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect::<String>()
        .replace('\n', "\r\n");
    let original_id = r
        .original_message_id
        .map(|m| format!("Original-Message-ID: <{m}>\r\n"))
        .unwrap_or_default();
    let in_reply_to = r
        .original_message_id
        .map(|m| format!("In-Reply-To: <{m}>\r\nReferences: <{m}>\r\n"))
        .unwrap_or_default();
    let mut out = format!(
        "From: <{from}>\r\n\
         To: <{to}>\r\n\
         Subject: Message rejected\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}@{host}>\r\n\
         {in_reply_to}\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=disposition-notification; boundary=\"{boundary}\"\r\n\
         \r\n\
         This is a message disposition notification (RFC 8098).\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Your message to <{from}> was rejected by the recipient's filter:\r\n\
         \r\n\
         {reason}\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: message/disposition-notification\r\n\
         \r\n\
         Reporting-UA: {host}; Stratus\r\n\
         Final-Recipient: rfc822;{from}\r\n\
         {original_id}\
         Disposition: automatic-action/MDN-sent-automatically; deleted\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n",
        from = r.from,
        to = r.to,
        id = r.id,
        host = r.hostname,
    )
    .into_bytes();
    crate::close_report(&mut out, crate::header_of(r.original), &boundary);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_is_an_mdn_with_the_reason_and_the_header() {
        let alice = Address::parse("alice@example.com").unwrap();
        let bob = Address::parse("bob@remote.example").unwrap();
        let id = QueueId::parse("01JZ8XW4ZC7T1V0V5J3C9N8Q2R").unwrap();
        let original = b"From: bob@remote.example\r\nSubject: offer\r\n\r\nsecret body\r\n";
        let bytes = rejection(&Rejection {
            from: &alice,
            to: &bob,
            reason: "No offers, thanks.\nInjected: x\r\n\x00",
            original,
            original_message_id: Some("abc@remote.example"),
            hostname: "mx.example.com",
            id: &id,
            date: 1_751_356_800,
        });
        let text = String::from_utf8(bytes.clone()).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap();
        assert!(head.contains("To: <bob@remote.example>"), "{head}");
        assert!(head.contains("Auto-Submitted: auto-replied"), "{head}");
        assert!(
            head.contains("report-type=disposition-notification"),
            "{head}"
        );
        assert!(!head.contains("Injected"), "the reason stays in the body");
        assert!(text.contains("No offers, thanks.\r\nInjected: x\r\n"));
        assert!(text.contains("Disposition: automatic-action/MDN-sent-automatically; deleted"));
        assert!(text.contains("Original-Message-ID: <abc@remote.example>"));
        assert!(text.contains("Subject: offer"), "the header is returned");
        assert!(!text.contains("secret body"), "the body is not");
        assert!(!text.contains('\0'));
        let parsed = stratus_core::message::parse(&bytes).unwrap();
        assert_eq!(parsed.parts.len(), 4, "three parts under the report");
    }
}
