//! DNS lookups that say whether the answer is DNSSEC-secure: the AD bit of
//! a validating resolver (RFC 4035 §3.2.3, asked for as RFC 6840 §5.7
//! allows, by setting AD in the query).
//!
//! DANE (RFC 7672) rests on this bit, so the MX, address and TLSA lookups
//! of the send stage go through here. Stratus does not validate DNSSEC
//! itself: it trusts the resolver in `STRATUS_DNS_RESOLVER` (or the first
//! ones of `/etc/resolv.conf`), which must therefore be a validating
//! resolver the path to which cannot be tampered with: one on this machine
//! (unbound, systemd-resolved with DNSSEC on) or the VPC's (Route 53
//! Resolver with DNSSEC validation). A resolver that does not validate
//! never sets AD, and DANE then never applies: delivery is as without it.
//!
//! Why not hickory-resolver, which the rest of Stratus uses: its stub does
//! not ask for the AD bit unless it validates itself, and its lookups do not
//! report the header of the answer. The wire format is hickory-proto's;
//! only the exchange (UDP, TCP when truncated, as RFC 7766 asks) is ours.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use mail_auth::hickory_resolver::proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Per server and attempt.
const TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPTS: usize = 2;
/// At most this many servers of `/etc/resolv.conf` are asked.
const MAX_SERVERS: usize = 3;
/// RFC 9715's advice for the EDNS UDP payload size.
const EDNS_PAYLOAD: u16 = 1232;

/// The answer to one question.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// The records of the type asked for (after any CNAME the resolver
    /// followed).
    pub records: Vec<RData>,
    /// The resolver validated the answer (or the denial of existence).
    pub secure: bool,
    /// The name does not exist.
    pub nxdomain: bool,
}

/// A stub resolver that reports the AD bit. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct SecureDns {
    servers: Vec<SocketAddr>,
}

impl SecureDns {
    /// Asks `resolver`, or the servers of `/etc/resolv.conf` when `None`.
    pub fn new(resolver: Option<SocketAddr>) -> Result<SecureDns, String> {
        let servers = match resolver {
            Some(addr) => vec![addr],
            None => {
                let (config, _) = mail_auth::hickory_resolver::system_conf::read_system_conf()
                    .map_err(|e| format!("cannot read /etc/resolv.conf: {e}"))?;
                let mut servers: Vec<SocketAddr> = Vec::new();
                for server in config.name_servers() {
                    let addr = SocketAddr::new(server.ip, 53);
                    if !servers.contains(&addr) {
                        servers.push(addr);
                    }
                }
                servers.truncate(MAX_SERVERS);
                servers
            }
        };
        if servers.is_empty() {
            return Err("no DNS resolver is configured".into());
        }
        Ok(SecureDns { servers })
    }

    /// The records of `rtype` at `name`; an error when no server gave an
    /// answer that can be used (a timeout, SERVFAIL: for DNSSEC, answers
    /// that failed validation), which callers must not take as "no
    /// records".
    pub async fn query(&self, name: &str, rtype: RecordType) -> Result<Answer, String> {
        let fqdn = if name.ends_with('.') {
            name.to_string()
        } else {
            format!("{name}.")
        };
        let name = Name::from_ascii(&fqdn).map_err(|e| format!("{name}: not a name: {e}"))?;
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            for server in &self.servers {
                match ask(*server, &name, rtype).await {
                    Ok(answer) => return Ok(answer),
                    Err(e) => last = e,
                }
            }
        }
        Err(format!("{fqdn} {rtype}: {last}"))
    }

    /// The TXT records at `name`, each one's strings joined; none when the
    /// name or the records do not exist.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, String> {
        let answer = self.query(name, RecordType::TXT).await?;
        Ok(answer
            .records
            .iter()
            .filter_map(|r| match r {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }

    /// The addresses of `host`, IPv4 first; `secure` only when every
    /// lookup that answered was.
    pub async fn addresses(&self, host: &str) -> Result<(Vec<IpAddr>, bool), String> {
        let (v4, v6) = tokio::join!(
            self.query(host, RecordType::A),
            self.query(host, RecordType::AAAA)
        );
        let v4 = v4?;
        let mut ips: Vec<IpAddr> = v4
            .records
            .iter()
            .filter_map(|r| match r {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect();
        let mut secure = v4.secure;
        match v6 {
            Ok(v6) => {
                secure &= v6.secure;
                ips.extend(v6.records.iter().filter_map(|r| match r {
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                }));
            }
            // IPv4 is enough to go on with.
            Err(e) if !ips.is_empty() => tracing::debug!(%host, error = %e, "no IPv6 answer"),
            Err(e) => return Err(e),
        }
        if ips.is_empty() {
            return Err(format!("{host} has no address"));
        }
        Ok((ips, secure))
    }
}

async fn ask(server: SocketAddr, name: &Name, rtype: RecordType) -> Result<Answer, String> {
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.metadata.authentic_data = true;
    query.add_query(Query::query(name.clone(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    query.set_edns(edns);
    let wire = query.to_vec().map_err(|e| e.to_string())?;
    let id = query.metadata.id;

    let mut response = tokio::time::timeout(TIMEOUT, over_udp(server, &wire, id))
        .await
        .map_err(|_| format!("{server}: no answer"))??;
    if response.metadata.truncation {
        response = tokio::time::timeout(TIMEOUT, over_tcp(server, &wire))
            .await
            .map_err(|_| format!("{server}: no answer over TCP"))??;
    }
    if response.metadata.id != id
        || response.metadata.message_type != MessageType::Response
        || response.queries.len() != 1
        || response.queries[0].query_type() != rtype
        || response.queries[0].name() != name
    {
        return Err(format!("{server}: the answer is not to the question"));
    }
    let code = response.metadata.response_code;
    let secure = response.metadata.authentic_data;
    match code {
        ResponseCode::NoError => Ok(Answer {
            records: response
                .answers
                .into_iter()
                .filter(|r| r.record_type() == rtype)
                .map(|r| r.data)
                .collect(),
            secure,
            nxdomain: false,
        }),
        ResponseCode::NXDomain => Ok(Answer {
            records: Vec::new(),
            secure,
            nxdomain: true,
        }),
        other => Err(format!("{server} answered {other}")),
    }
}

async fn over_udp(server: SocketAddr, wire: &[u8], id: u16) -> Result<Message, String> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    socket
        .connect(server)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    socket
        .send(wire)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| format!("{server}: {e}"))?;
        // A late answer to an earlier question, or a forgery: wait on.
        if let Ok(message) = Message::from_vec(&buf[..n])
            && message.metadata.id == id
        {
            return Ok(message);
        }
    }
}

async fn over_tcp(server: SocketAddr, wire: &[u8]) -> Result<Message, String> {
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    let len = u16::try_from(wire.len()).map_err(|_| "query too long".to_string())?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(wire);
    stream
        .write_all(&framed)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    Message::from_vec(&buf).map_err(|e| format!("{server}: unreadable answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_auth::fixture::DnsFixture;

    #[tokio::test]
    async fn answers_carry_the_ad_bit_of_the_validating_resolver() {
        let dns = DnsFixture::start();
        dns.add_a("signed.example", Ipv4Addr::new(192, 0, 2, 1));
        dns.add_aaaa("signed.example", Ipv6Addr::LOCALHOST);
        dns.set_secure("signed.example");
        dns.add_a("plain.example", Ipv4Addr::new(192, 0, 2, 2));
        dns.add_tlsa("_25._tcp.signed.example", 3, 1, 1, &[9; 32]);
        dns.set_secure("_25._tcp.signed.example");
        dns.add_a("bogus.example", Ipv4Addr::new(192, 0, 2, 3));
        dns.set_bogus("bogus.example");
        let stub = SecureDns::new(Some(dns.addr())).unwrap();

        let (ips, secure) = stub.addresses("signed.example").await.unwrap();
        assert_eq!(
            ips,
            [
                IpAddr::from([192, 0, 2, 1]),
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            ]
        );
        assert!(secure);
        let (ips, secure) = stub.addresses("plain.example").await.unwrap();
        assert_eq!(ips, [IpAddr::from([192, 0, 2, 2])]);
        assert!(!secure, "no AD bit: not secure");
        let tlsa = stub
            .query("_25._tcp.signed.example", RecordType::TLSA)
            .await
            .unwrap();
        assert!(tlsa.secure);
        assert!(matches!(&tlsa.records[..], [RData::TLSA(t)] if t.cert_data == [9; 32]));
        let none = stub
            .query("_25._tcp.plain.example", RecordType::TLSA)
            .await
            .unwrap();
        assert!(none.records.is_empty() && none.nxdomain && !none.secure);
        let e = stub
            .query("bogus.example", RecordType::A)
            .await
            .unwrap_err();
        assert!(
            e.contains("SERVFAIL") || e.contains("Server Failure"),
            "{e}"
        );
        assert!(
            stub.addresses("missing.example").await.is_err(),
            "no address is an error"
        );
    }

    #[tokio::test]
    async fn long_answers_come_over_tcp() {
        let dns = DnsFixture::start();
        for i in 0..120u8 {
            dns.add_a("many.example", Ipv4Addr::new(198, 51, 100, i));
        }
        let stub = SecureDns::new(Some(dns.addr())).unwrap();
        let answer = stub.query("many.example", RecordType::A).await.unwrap();
        assert_eq!(answer.records.len(), 120);
        assert!(dns.queries().len() >= 2, "asked again over TCP");
    }
}
