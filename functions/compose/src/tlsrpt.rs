//! TLS reports (RFC 8460 §5.3): the day's JSON report about one recipient
//! domain, gzipped, as a `multipart/report; report-type="tlsrpt"` to the
//! addresses the domain's `_smtp._tls` record names.

use std::io::Write;

use stratus_core::ids::QueueId;

/// One report message.
#[derive(Debug)]
pub struct TlsReport<'a> {
    /// Who reports: our host name (the submitter, §5.3).
    pub submitter: &'a str,
    /// The From address (at a domain whose keys sign it, §5.3 asks for
    /// DKIM).
    pub from: &'a str,
    /// The `mailto:` addresses, without the scheme.
    pub to: &'a [String],
    /// The recipient domain the report is about.
    pub policy_domain: &'a str,
    pub report_id: &'a str,
    /// The reported period, Unix seconds.
    pub start: i64,
    pub end: i64,
    /// The report (§4.4), as JSON.
    pub json: &'a [u8],
    /// The message's own queue id.
    pub id: &'a QueueId,
}

/// `json` gzipped, as reports travel (`application/tlsrpt+gzip`).
pub fn gzip(json: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(json);
    gz.finish().unwrap_or_default()
}

/// The report message's bytes.
pub fn tls_report(r: &TlsReport<'_>) -> Vec<u8> {
    let encoded = stratus_core::base64::encode(&gzip(r.json));
    let mut attachment = String::with_capacity(encoded.len() + encoded.len() / 76 * 2 + 2);
    for line in encoded.as_bytes().chunks(76) {
        attachment.push_str(std::str::from_utf8(line).unwrap_or_default());
        attachment.push_str("\r\n");
    }
    let filename = format!(
        "{}!{}!{}!{}!{}.json.gz",
        r.submitter, r.policy_domain, r.start, r.end, r.id
    );
    let boundary = format!("{}/{}", r.id, r.submitter);
    let to =
        r.to.iter()
            .map(|a| format!("<{a}>"))
            .collect::<Vec<_>>()
            .join(", ");
    format!(
        "From: TLS Reporting <{from}>\r\n\
         To: {to}\r\n\
         Subject: Report Domain: {domain} Submitter: {submitter} Report-ID: <{report_id}>\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}@{submitter}>\r\n\
         TLS-Report-Domain: {domain}\r\n\
         TLS-Report-Submitter: {submitter}\r\n\
         Auto-Submitted: auto-generated\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"{boundary}\"\r\n\
         \r\n\
         This is an aggregate TLS report (RFC 8460).\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         The TLS sessions {submitter} had with the mail servers of {domain}\r\n\
         between {from_date} and {to_date}; the attachment has the details.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: application/tlsrpt+gzip\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"{filename}\"\r\n\
         \r\n\
         {attachment}\
         \r\n\
         --{boundary}--\r\n",
        from = r.from,
        domain = r.policy_domain,
        submitter = r.submitter,
        report_id = r.report_id,
        date = stratus_core::time::rfc5322_date(stratus_core::mailstore::now()),
        id = r.id,
        from_date = stratus_core::time::rfc5322_date(r.start),
        to_date = stratus_core::time::rfc5322_date(r.end),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_report_is_a_gzipped_attachment_with_the_rfc_headers() {
        let id = QueueId::generate();
        let json = br#"{"report-id":"r1","policies":[]}"#;
        let to = vec!["tls@example.org".to_string(), "b@example.net".to_string()];
        let message = tls_report(&TlsReport {
            submitter: "mx.example.com",
            from: "tlsrpt-noreply@example.com",
            to: &to,
            policy_domain: "example.org",
            report_id: "r1",
            start: 1_796_515_200,
            end: 1_796_601_599,
            json,
            id: &id,
        });
        let text = String::from_utf8(message).unwrap();
        for header in [
            "Subject: Report Domain: example.org Submitter: mx.example.com Report-ID: <r1>\r\n",
            "TLS-Report-Domain: example.org\r\n",
            "TLS-Report-Submitter: mx.example.com\r\n",
            "To: <tls@example.org>, <b@example.net>\r\n",
            "Content-Type: multipart/report; report-type=\"tlsrpt\"",
            "Content-Type: application/tlsrpt+gzip\r\n",
        ] {
            assert!(text.contains(header), "{header}\n{text}");
        }
        let name =
            format!("filename=\"mx.example.com!example.org!1796515200!1796601599!{id}.json.gz\"");
        assert!(text.contains(&name), "{text}");
        assert!(text.lines().all(|l| l.len() <= 998));
        // The attachment reads back to the JSON.
        let body = text
            .split("Content-Disposition: attachment")
            .nth(1)
            .unwrap()
            .split("\r\n\r\n")
            .nth(1)
            .unwrap()
            .split("\r\n--")
            .next()
            .unwrap()
            .replace("\r\n", "");
        let gz = stratus_core::base64::decode(&body).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, json);
    }
}
