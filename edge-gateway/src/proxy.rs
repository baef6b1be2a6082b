//! Clients behind a proxy. `STRATUS_TRUSTED_PROXIES` names the proxies
//! whose word on the client is believed; nobody else's is:
//!
//! - on HTTP, the client is the nearest address in `X-Forwarded-For`
//!   that is not itself a trusted proxy, and `X-Forwarded-Proto: https`
//!   from the proxy says the client spoke TLS to it;
//! - with `STRATUS_PROXY_PROTOCOL=true`, every connection from a trusted
//!   proxy, on every listener, must begin with a PROXY protocol header
//!   (HAProxy's v1 text or v2 binary form), which names the client; a
//!   connection that does not is closed. `LOCAL` and `UNKNOWN` headers
//!   (the proxy's own health checks) keep the proxy as the client.
//!
//! So the per-address limits, the failed-login throttle, SPF and the
//! loopback-only routes see the real client. Without the setting a proxy
//! is a client like any other (and one on this machine looks like
//! loopback: configure it). The template's load balancer keeps the
//! client's address itself and needs none of this.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt};

/// A proxy sends its header at once; one that does not within this is
/// not speaking the PROXY protocol.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest PROXY v1 line (RFC-like spec: 107 bytes with CRLF).
const V1_MAX: usize = 107;
/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Most address and TLV bytes a v2 header may carry here: addresses
/// (216 for UNIX sockets) and a few TLVs.
const V2_MAX_PAYLOAD: usize = 1024;

/// The trusted proxies, and whether they speak the PROXY protocol.
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    pub trusted: Vec<ipnet::IpNet>,
    pub protocol: bool,
}

impl Proxies {
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Whether a connection from `peer` must begin with a PROXY header.
    pub fn expects_header(&self, peer: IpAddr) -> bool {
        self.protocol && self.trusts(peer)
    }

    /// The client of an HTTP request that came from `peer`, and whether
    /// it spoke TLS (`tls`: to us), as the trusted proxies say.
    pub fn http_client(
        &self,
        peer: SocketAddr,
        tls: bool,
        headers: &HeaderMap,
    ) -> (SocketAddr, bool) {
        if !self.trusts(peer.ip()) {
            return (peer, tls);
        }
        // Each proxy appends the address it got the request from: from
        // the right, the first one that is not ours is the client.
        let fields: Vec<Option<&str>> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.to_str().ok())
            .collect();
        let mut client = peer;
        if fields.iter().any(Option::is_none) {
            // A field nobody can read hides who the client is: not this
            // machine, nor anyone the limits would take it for.
            return (SocketAddr::new(UNKNOWN, 0), proto_tls(headers, tls));
        }
        let hops: Vec<&str> = fields
            .into_iter()
            .flatten()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                // What a client wrote of itself is never this machine.
                Some(ip) if !ip.is_loopback() && !ip.is_unspecified() => {
                    client = SocketAddr::new(ip, 0);
                    if !self.trusts(ip) {
                        break;
                    }
                }
                // A hop nobody can read: the client is unknown (and what
                // is left of the list is not to be believed either).
                _ => {
                    client = SocketAddr::new(UNKNOWN, 0);
                    break;
                }
            }
        }
        (client, proto_tls(headers, tls))
    }
}

/// The address of a client a trusted proxy could not name: counted as
/// one, never local.
const UNKNOWN: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// Whether the client spoke TLS, by the nearest proxy's word on the
/// scheme (the last `X-Forwarded-Proto` value), else `tls`.
fn proto_tls(headers: &HeaderMap, tls: bool) -> bool {
    let proto = headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .next_back();
    match proto {
        Some(p) => p.eq_ignore_ascii_case("https"),
        None => tls,
    }
}

/// An `X-Forwarded-For` entry: an address, maybe with a port, maybe in
/// brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// Reads the PROXY header a trusted proxy begins its connection with,
/// exactly (not a byte of what follows): the client it names, or `None`
/// for a `LOCAL` or `UNKNOWN` header (the proxy itself). An error for
/// anything else.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Option<SocketAddr>> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    let mut head = vec![0u8; 6];
    stream.read_exact(&mut head).await?;
    if head == b"PROXY " {
        // v1: one line, up to CRLF.
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n") {
            if head.len() >= V1_MAX {
                return Err(invalid("a PROXY v1 line longer than 107 bytes".into()));
            }
            stream.read_exact(&mut byte).await?;
            head.push(byte[0]);
        }
        let header = ppp::v1::Header::try_from(head.as_slice())
            .map_err(|e| invalid(format!("a bad PROXY v1 header: {e}")))?;
        return Ok(match header.addresses {
            ppp::v1::Addresses::Tcp4(a) => {
                Some(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            ppp::v1::Addresses::Tcp6(a) => {
                Some(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            ppp::v1::Addresses::Unknown => None,
        });
    }
    if head[..] != V2_SIGNATURE[..6] {
        return Err(invalid("no PROXY header from a trusted proxy".into()));
    }
    head.resize(16, 0);
    stream.read_exact(&mut head[6..]).await?;
    if head[..12] != V2_SIGNATURE[..] {
        return Err(invalid("no PROXY header from a trusted proxy".into()));
    }
    let length = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if length > V2_MAX_PAYLOAD {
        return Err(invalid(format!("a PROXY v2 header of {length} bytes")));
    }
    head.resize(16 + length, 0);
    stream.read_exact(&mut head[16..]).await?;
    let header = ppp::v2::Header::try_from(head.as_slice())
        .map_err(|e| invalid(format!("a bad PROXY v2 header: {e}")))?;
    if header.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        ppp::v2::Addresses::IPv4(a) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        ppp::v2::Addresses::IPv6(a) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn proxies(trusted: &[&str]) -> Proxies {
        Proxies {
            trusted: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            protocol: true,
        }
    }

    /// The header read from `bytes`, and what was left after it.
    async fn read(bytes: &[u8]) -> (io::Result<Option<SocketAddr>>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(4096);
        client.write_all(bytes).await.unwrap();
        drop(client);
        let header = read_header(&mut server).await;
        let mut rest = Vec::new();
        let _ = server.read_to_end(&mut rest).await;
        (header, rest)
    }

    #[tokio::test]
    async fn proxy_headers_name_the_client_and_nothing_after_them_is_lost() {
        let (h, rest) = read(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 25\r\nEHLO x\r\n").await;
        assert_eq!(h.unwrap(), Some("203.0.113.7:51234".parse().unwrap()));
        assert_eq!(rest, b"EHLO x\r\n");
        let (h, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 993\r\n").await;
        assert_eq!(h.unwrap(), Some("[2001:db8::7]:4000".parse().unwrap()));
        let (h, rest) = read(b"PROXY UNKNOWN\r\n\x16\x03\x01").await;
        assert_eq!((h.unwrap(), rest.as_slice()), (None, &b"\x16\x03\x01"[..]));

        let v2 = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (
                "198.51.100.9:40000".parse::<SocketAddr>().unwrap(),
                "10.0.0.1:993".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        let (h, rest) = read(&[v2.as_slice(), b"\x16\x03\x01TLS"].concat()).await;
        assert_eq!(h.unwrap(), Some("198.51.100.9:40000".parse().unwrap()));
        assert_eq!(
            rest, b"\x16\x03\x01TLS",
            "the TLS hello after the header is intact"
        );
        let local = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .unwrap();
        assert_eq!(read(&local).await.0.unwrap(), None);
    }

    #[tokio::test]
    async fn anything_but_a_proxy_header_is_refused() {
        for bad in [
            &b"EHLO client.example\r\n"[..],
            b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 1 2",
            &[b"PROXY ".as_slice(), &[b'x'; 200]].concat(),
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\x01",
            b"\x16\x03\x01\x02\x00\x01",
            b"",
        ] {
            assert!(
                read(bad).await.0.is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let p = proxies(&["10.0.0.0/8", "127.0.0.1/32"]);
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            "198.51.100.1, 203.0.113.5".parse().unwrap(),
        );
        h.append("x-forwarded-for", "10.1.2.3".parse().unwrap());
        h.append("x-forwarded-proto", "https".parse().unwrap());
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        // The spoofable left part (198.51.100.1) is not taken: the first
        // address from the right that is not a proxy of ours is.
        let (client, tls) = p.http_client(proxy, false, &h);
        assert_eq!(
            (client.ip(), tls),
            ("203.0.113.5".parse::<IpAddr>().unwrap(), true)
        );
        // The same headers from anyone else change nothing.
        let stranger: SocketAddr = "192.0.2.8:4444".parse().unwrap();
        assert_eq!(p.http_client(stranger, false, &h), (stranger, false));
        // No header: the proxy is the client.
        assert_eq!(
            p.http_client(proxy, false, &HeaderMap::new()),
            (proxy, false)
        );
        // A hop nobody can read, one naming this machine, or a field that
        // is not text: the client is unknown, never local, and never the
        // proxy (which is on this machine here).
        let unknown: IpAddr = "0.0.0.0".parse().unwrap();
        for field in [
            &b"203.0.113.5, junk, 10.9.9.9"[..],
            b"127.0.0.1",
            b"203.0.113.5, ::1",
            b"0.0.0.0",
            b"203.0.113.\xff5",
        ] {
            let mut g = HeaderMap::new();
            g.append(
                "x-forwarded-for",
                axum::http::HeaderValue::from_bytes(field).unwrap(),
            );
            g.append("x-forwarded-for", "10.1.1.1".parse().unwrap());
            let (client, _) = p.http_client(proxy, false, &g);
            assert_eq!(client.ip(), unknown, "{}", String::from_utf8_lossy(field));
            assert!(!client.ip().is_loopback());
        }
        // Ports and brackets are forgiven.
        let mut b = HeaderMap::new();
        b.append("x-forwarded-for", "[2001:db8::5]:443".parse().unwrap());
        assert_eq!(
            p.http_client(proxy, false, &b).0.ip(),
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
        let mut c = HeaderMap::new();
        c.append("x-forwarded-for", "[2001:db8::6]".parse().unwrap());
        c.append("x-forwarded-proto", "http".parse().unwrap());
        assert_eq!(
            p.http_client(proxy, true, &c),
            (SocketAddr::new("2001:db8::6".parse().unwrap(), 0), false)
        );
    }
}
