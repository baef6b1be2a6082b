//! Virus scanning with clamd before the final reply: the message is
//! streamed with INSTREAM (clamav-client) to `STRATUS_CLAMD`. A virus
//! found refuses the message (`554 5.7.1` naming the signature) and nothing
//! is stored. A clamd that does not answer in time either defers the
//! message (`451 4.7.1`, the default) or lets it through marked
//! `X-Virus-Status: unchecked`, by setting; it is never marked clean.

use clamav_client::tokio::{Socket, Tcp};
use stratus_proto::smtp::reply::Reply;
use stratus_runtime::config::{ClamdAddress, ClamdSettings, ClamdUnavailable};
use tracing::{info, warn};

/// What the scan said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    Clean,
    /// The signature's name.
    Found(String),
    /// clamd could not be asked, or did not answer in time.
    Unchecked(String),
}

/// clamd's INSTREAM chunk size.
const CHUNK: usize = 64 * 1024;

/// Streams `message` to clamd and reads its answer, within the timeout.
pub async fn scan(settings: &ClamdSettings, message: &[u8]) -> Scan {
    let asked = async {
        match &settings.address {
            ClamdAddress::Unix(path) => {
                let socket = Socket {
                    socket_path: path.as_path(),
                };
                clamav_client::tokio::scan_buffer(message, socket, Some(CHUNK)).await
            }
            ClamdAddress::Tcp(addr) => {
                let tcp = Tcp {
                    host_address: addr.as_str(),
                };
                clamav_client::tokio::scan_buffer(message, tcp, Some(CHUNK)).await
            }
        }
    };
    match tokio::time::timeout(settings.timeout, asked).await {
        Ok(Ok(response)) => read_answer(&response),
        Ok(Err(e)) => Scan::Unchecked(format!("clamd: {e}")),
        Err(_) => Scan::Unchecked(format!(
            "clamd did not answer within {}s",
            settings.timeout.as_secs()
        )),
    }
}

/// Reads clamd's answer to INSTREAM: `stream: OK`, `stream: <name> FOUND`
/// or `... ERROR` (a size limit, say), NUL-terminated.
pub fn read_answer(response: &[u8]) -> Scan {
    let text = String::from_utf8_lossy(response);
    let text = text.trim_end_matches(['\0', '\n', '\r']).trim();
    let text = text.strip_prefix("stream:").unwrap_or(text).trim();
    if text == "OK" {
        return Scan::Clean;
    }
    if let Some(name) = text.strip_suffix("FOUND") {
        let name: String = name
            .trim()
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(100)
            .collect();
        return Scan::Found(name);
    }
    let said: String = text.chars().take(100).collect();
    Scan::Unchecked(format!("clamd said {said:?}"))
}

/// The reply that refuses, or the header line that marks, a message after
/// `scan`.
pub fn verdict(settings: &ClamdSettings, scan: &Scan) -> (Option<Reply>, Option<String>) {
    match scan {
        Scan::Clean => (None, Some("X-Virus-Status: clean (ClamAV)\r\n".into())),
        Scan::Found(name) => {
            info!(signature = %name, "refused a message with a virus");
            let reply = Reply::new(
                554,
                "5.7.1",
                format!("message refused: virus found ({name})"),
            );
            (Some(reply), None)
        }
        Scan::Unchecked(why) => {
            warn!(reason = %why, "virus scan failed");
            match settings.unavailable {
                ClamdUnavailable::Tempfail => (
                    Some(Reply::new(
                        451,
                        "4.7.1",
                        "the virus scanner is not answering, try again later",
                    )),
                    None,
                ),
                ClamdUnavailable::Accept => (
                    None,
                    Some("X-Virus-Status: unchecked (the scanner did not answer)\r\n".into()),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read() {
        assert_eq!(read_answer(b"stream: OK\0"), Scan::Clean);
        assert_eq!(
            read_answer(b"stream: Eicar-Test-Signature FOUND\0"),
            Scan::Found("Eicar-Test-Signature".into())
        );
        assert!(matches!(
            read_answer(b"INSTREAM size limit exceeded. ERROR\0"),
            Scan::Unchecked(_)
        ));
        assert!(matches!(read_answer(b""), Scan::Unchecked(_)));
        // A hostile name cannot put a line break into our reply.
        assert_eq!(
            read_answer(b"stream: evil\r\n250 ok FOUND\0"),
            Scan::Found("evil250ok".into())
        );
    }

    #[tokio::test]
    async fn a_clamd_that_is_not_there_is_unchecked() {
        let dir = crate::testutil::TempDir::new("clamd");
        let settings = ClamdSettings {
            address: ClamdAddress::Unix(dir.path().join("none.sock")),
            timeout: std::time::Duration::from_secs(2),
            scan_all: true,
            unavailable: ClamdUnavailable::Tempfail,
        };
        let scan = scan(&settings, b"Subject: x\r\n\r\nx\r\n").await;
        assert!(matches!(scan, Scan::Unchecked(_)), "{scan:?}");
        let (reply, mark) = verdict(&settings, &scan);
        assert!(reply.unwrap().to_string().starts_with("451 4.7.1"));
        assert_eq!(mark, None);
        let accept = ClamdSettings {
            unavailable: ClamdUnavailable::Accept,
            ..settings
        };
        let (reply, mark) = verdict(&accept, &scan);
        assert!(reply.is_none());
        assert!(mark.unwrap().starts_with("X-Virus-Status: unchecked"));
    }
}
