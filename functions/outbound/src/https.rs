//! The little HTTPS the send stage needs, over our own verified TLS
//! (web PKI roots and `STRATUS_TLS_EXTRA_CA`) and hyper's HTTP/1.1 client
//! connection: fetching MTA-STS policies, and posting TLS reports to the
//! `https:` addresses domains publish (RFC 8460 §3).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// How long one report POST may take, connection included.
pub const POST_TIMEOUT: Duration = Duration::from_secs(60);

/// A TLS connection to `host` at `addr`, its certificate verified by
/// `tls`, ready for requests; the task driving it, to abort when done.
pub(crate) async fn open(
    tls: &TlsConnector,
    host: &str,
    addr: SocketAddr,
) -> Result<(SendRequest<Full<Bytes>>, JoinHandle<()>), String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{host} ({addr}): {e}"))?;
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| format!("{host}: TLS: {e}"))?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("{host}: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((sender, driver))
}

/// The host, port and path of an `https://` URL.
fn split_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("{url}: not an https: URL"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    if authority.contains('@') {
        return Err(format!("{url}: user information is not allowed"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url}: unclosed IPv6 address"))?;
        let port = after.strip_prefix(':').unwrap_or("443");
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), port),
            None => (authority.to_string(), "443"),
        }
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{url}: `{port}` is not a port"))?;
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok((host, port, path))
}

/// POSTs `gzipped` (a TLS report) to `url`; `Ok` on a 2xx answer.
pub async fn post_report(
    url: &str,
    gzipped: Vec<u8>,
    dns: &crate::dns::SecureDns,
    tls: &TlsConnector,
) -> Result<(), String> {
    let (host, port, path) = split_url(url)?;
    let ips = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => dns.addresses(&host).await?.0,
    };
    let body = Bytes::from(gzipped);
    let mut last = format!("{host} has no address");
    for ip in ips {
        let attempt = async {
            let (mut sender, driver) = open(tls, &host, SocketAddr::new(ip, port)).await?;
            let request = hyper::Request::post(path.as_str())
                .header(hyper::header::HOST, &host)
                .header(hyper::header::CONTENT_TYPE, "application/tlsrpt+gzip")
                .header(hyper::header::USER_AGENT, "Stratus TLS reporting")
                .body(Full::new(body.clone()))
                .map_err(|e| e.to_string())?;
            let answer = sender.send_request(request).await;
            driver.abort();
            let status = answer.map_err(|e| format!("{host}: {e}"))?.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("{host} answered {status}"))
            }
        };
        match tokio::time::timeout(POST_TIMEOUT, attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("{host}: no answer within {}s", POST_TIMEOUT.as_secs()),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        let split = |u: &str| split_url(u);
        assert_eq!(
            split("https://r.example/tls").unwrap(),
            ("r.example".into(), 443, "/tls".into())
        );
        assert_eq!(
            split("https://r.example:8443").unwrap(),
            ("r.example".into(), 8443, "/".into())
        );
        assert_eq!(
            split("https://[2001:db8::1]:444/a?b").unwrap(),
            ("2001:db8::1".into(), 444, "/a?b".into())
        );
        assert_eq!(
            split("https://r.example?x=1").unwrap(),
            ("r.example".into(), 443, "/?x=1".into())
        );
        for bad in [
            "http://r.example/",
            "https://",
            "https://r.example:port/",
            "https://r.example:99999/",
            "https://u:p@r.example/",
            "https://[2001:db8::1/",
        ] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }
}
