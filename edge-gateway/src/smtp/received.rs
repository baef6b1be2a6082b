//! The `Received:` trace field we prepend to every accepted message
//! (RFC 5321 §4.4, RFC 5322 §3.6.7), and RFC 5322 dates.

use std::net::IpAddr;

use stratus_core::address::Address;
use stratus_core::ids::QueueId;

use crate::tls::TlsInfo;

/// What the `Received:` line says about one message.
#[derive(Debug)]
pub struct Trace<'a> {
    /// The name the client gave in EHLO/HELO.
    pub helo: &'a str,
    /// The client's verified reverse DNS name, when known.
    pub rdns: Option<&'a str>,
    pub ip: IpAddr,
    /// Our host name.
    pub hostname: &'a str,
    /// The `with` protocol of RFC 3848 / RFC 6531: `ESMTPS`, `UTF8SMTP`, ...
    pub protocol: &'a str,
    pub queue_id: &'a QueueId,
    pub tls: Option<&'a TlsInfo>,
    /// Named only when the message has exactly one recipient, so a copy
    /// does not reveal its other (e.g. Bcc) recipients.
    pub single_recipient: Option<&'a Address>,
    /// Unix seconds.
    pub time: i64,
}

/// The `with` keyword (RFC 3848, RFC 6531 §3.7.3) for a session.
pub fn protocol(extended: bool, tls: bool, smtputf8: bool, authenticated: bool) -> String {
    let mut p = String::from(match (smtputf8, extended) {
        (true, _) => "UTF8SMTP",
        (false, true) => "ESMTP",
        (false, false) => "SMTP",
    });
    if smtputf8 || extended {
        if tls {
            p.push('S');
        }
        if authenticated {
            p.push('A');
        }
    }
    p
}

impl Trace<'_> {
    /// The whole field, folded over several lines, ending in CRLF.
    pub fn header(&self) -> String {
        let ip = match self.ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => format!("IPv6:{v6}"),
            },
        };
        let mut h = format!(
            "Received: from {} ({} [{ip}])\r\n",
            clean(self.helo),
            self.rdns.map_or_else(|| "unknown".to_string(), clean)
        );
        if let Some(tls) = self.tls {
            h.push_str(&format!(
                "\t(version={} cipher={})\r\n",
                clean(&tls.version),
                clean(&tls.cipher)
            ));
        }
        h.push_str(&format!(
            "\tby {} (Stratus) with {} id {}",
            self.hostname, self.protocol, self.queue_id
        ));
        if let Some(rcpt) = self.single_recipient {
            h.push_str(&format!("\r\n\tfor <{rcpt}>"));
        }
        h.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(self.time)));
        h
    }
}

/// A client-chosen name made safe for a header comment: printable ASCII
/// without the characters that would end the comment or the field.
fn clean(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(255)
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '(' | ')' | '\\' | ';' | '"') {
                c
            } else {
                '?'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "unknown".into()
    } else {
        cleaned
    }
}

pub use stratus_core::time::rfc5322_date;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
        assert_eq!(rfc5322_date(-1), "Wed, 31 Dec 1969 23:59:59 +0000");
    }

    #[test]
    fn protocols_follow_rfc3848_and_rfc6531() {
        assert_eq!(protocol(false, false, false, false), "SMTP");
        assert_eq!(protocol(true, false, false, false), "ESMTP");
        assert_eq!(protocol(true, true, false, false), "ESMTPS");
        assert_eq!(protocol(true, true, false, true), "ESMTPSA");
        assert_eq!(protocol(true, true, true, false), "UTF8SMTPS");
    }

    #[test]
    fn the_received_line_names_client_server_id_and_tls() {
        let id = QueueId::generate();
        let rcpt = Address::parse("alice@example.test").unwrap();
        let tls = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
        };
        let t = Trace {
            helo: "client.example",
            rdns: None,
            ip: "192.0.2.7".parse().unwrap(),
            hostname: "mx.test.example",
            protocol: "ESMTPS",
            queue_id: &id,
            tls: Some(&tls),
            single_recipient: Some(&rcpt),
            time: 1_700_000_000,
        };
        assert_eq!(
            t.header(),
            format!(
                "Received: from client.example (unknown [192.0.2.7])\r\n\
                 \t(version=TLSv1.3 cipher=TLS13_AES_256_GCM_SHA384)\r\n\
                 \tby mx.test.example (Stratus) with ESMTPS id {id}\r\n\
                 \tfor <alice@example.test>;\r\n\
                 \tTue, 14 Nov 2023 22:13:20 +0000\r\n"
            )
        );
        let t = Trace {
            helo: "evil) (x;\u{7f}é",
            rdns: Some("host.example"),
            ip: "2001:db8::1".parse().unwrap(),
            tls: None,
            single_recipient: None,
            protocol: "SMTP",
            ..t
        };
        let h = t.header();
        assert!(
            h.starts_with("Received: from evil???x??? (host.example [IPv6:2001:db8::1])\r\n\tby "),
            "{h}"
        );
        assert!(!h.contains("for <"));
    }
}
