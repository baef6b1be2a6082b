//! Delivery status notifications (RFC 3464): a `multipart/report` to the
//! envelope sender, from the mailer daemon, saying which recipients failed
//! or are still being retried, and why.

use stratus_core::ids::QueueId;
use stratus_core::job::{Accepted, Recipient, Ret};

/// What a DSN reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Given up on (RFC 3464 `Action: failed`).
    Failed,
    /// Still being retried until this time (`Action: delayed`).
    Delayed { until: i64 },
}

/// The DSN about `recipients` (each with the reason, as the remote server
/// or we put it) of `message`, whose bytes are `original`: the whole of it
/// for a failure unless the sender asked for headers only (`RET=HDRS`), the
/// header alone for a delay. `id` is the DSN's own queue id.
pub fn dsn(
    message: &Accepted,
    recipients: &[&(Recipient, String)],
    report: Report,
    original: &[u8],
    hostname: &str,
    id: &QueueId,
) -> Vec<u8> {
    let boundary = format!("{id}/{hostname}");
    let date = stratus_core::time::rfc5322_date(stratus_core::mailstore::now());
    let sender = message
        .envelope
        .mail_from
        .as_ref()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut human = String::new();
    for (r, why) in recipients {
        human.push_str(&format!("<{}>: {why}\r\n", r.address));
    }
    let (subject, summary, action, retry_until) = match report {
        Report::Failed => (
            "Undelivered Mail Returned to Sender",
            "Your message could not be delivered to these recipients:".to_string(),
            "failed",
            String::new(),
        ),
        Report::Delayed { until } => {
            let until = stratus_core::time::rfc5322_date(until);
            (
                "Delayed Mail (still being retried)",
                format!(
                    "Your message has not been delivered to these recipients yet.\r\n\
                     Delivery will be retried until {until}; you need not send it again:"
                ),
                "delayed",
                format!("Will-Retry-Until: {until}\r\n"),
            )
        }
    };
    let mut per_recipient = String::new();
    for (r, why) in recipients {
        per_recipient.push_str("\r\n");
        if let Some(orcpt) = &r.orcpt {
            per_recipient.push_str(&format!("Original-Recipient: {orcpt}\r\n"));
        }
        let status = status_of(why, report);
        per_recipient.push_str(&format!(
            "Final-Recipient: rfc822;{}\r\nAction: {action}\r\nStatus: {status}\r\nDiagnostic-Code: smtp;{}\r\n{retry_until}",
            r.address,
            why.replace(['\r', '\n'], " ")
        ));
    }
    // A warning returns only the headers: the message is still on its way.
    // So does any report on REQUIRETLS mail, whatever RET says (RFC 8689
    // §5): its body must not travel less protected than it did.
    let headers_only = message.envelope.ret == Some(Ret::Hdrs)
        || matches!(report, Report::Delayed { .. })
        || message.envelope.requiretls;
    let returned: &[u8] = if headers_only {
        crate::header_of(original)
    } else {
        original
    };
    let mut out = format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n\
         To: <{sender}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}@{hostname}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\
         \r\n\
         This is a delivery status notification (RFC 3464).\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         {summary}\r\n\
         \r\n\
         {human}\
         \r\n\
         --{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns;{hostname}\r\n{envid}\
         Arrival-Date: {arrival}\r\n\
         {per_recipient}\
         \r\n\
         --{boundary}\r\n\
         Content-Type: {kind}\r\n\
         \r\n",
        envid = message
            .envelope
            .envid
            .as_ref()
            .map(|e| format!("Original-Envelope-Id: {e}\r\n"))
            .unwrap_or_default(),
        arrival = stratus_core::time::rfc5322_date(message.received_at),
        kind = if headers_only {
            "text/rfc822-headers"
        } else {
            "message/rfc822"
        },
    )
    .into_bytes();
    crate::close_report(&mut out, returned, &boundary);
    out
}

/// The enhanced status code in a reason (`5.1.1` in `550 5.1.1 ...`), or
/// a generic one; a failure's class is 5, a delay's 4.
pub fn status_of(why: &str, report: Report) -> String {
    let class = match report {
        Report::Failed => "5",
        Report::Delayed { .. } => "4",
    };
    why.split_whitespace()
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "4" | "5")
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        // A temporary code that ran out of time is reported as failed.
        .map(|s| format!("{class}{}", &s[1..]))
        .unwrap_or_else(|| format!("{class}.0.0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_come_from_the_reason() {
        let failed = Report::Failed;
        assert_eq!(status_of("550 5.1.1 no such user", failed), "5.1.1");
        assert_eq!(
            status_of("451 4.4.1 no answer; gave up after 3 attempts", failed),
            "5.4.1"
        );
        assert_eq!(status_of("connection refused", failed), "5.0.0");
        let delayed = Report::Delayed { until: 0 };
        assert_eq!(status_of("451 4.4.1 no answer", delayed), "4.4.1");
        assert_eq!(status_of("connection refused", delayed), "4.0.0");
    }
}
