//! DNS blocklists without I/O: the names to look up, and what the answers
//! mean. The gateway asks its resolver and hands the listings to
//! [`crate::score`] as symbols.
//!
//! An answer in 127.0.0.0/8 lists the name, except 127.255.255.0/24, which
//! public lists use to refuse a resolver (Spamhaus: .252 a typo in the
//! query, .254 a public resolver, .255 too many queries): that, any
//! answer outside 127.0.0.0/8 (a resolver that rewrites NXDOMAIN), and any
//! failure are errors, which add nothing.

use std::net::{IpAddr, Ipv4Addr};

use crate::analysis::{Url, distinct_hosts};

/// At most this many link hosts are looked up per message.
pub const MAX_HOSTS: usize = 20;

/// What one lookup said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Listed,
    NotListed,
    /// The list refused us, or the answer makes no sense: nothing.
    Refused,
}

/// Reads the A records answered for a blocklist name.
pub fn read_answer(addresses: &[Ipv4Addr]) -> Answer {
    if addresses.is_empty() {
        return Answer::NotListed;
    }
    let refusal = |a: &Ipv4Addr| {
        let o = a.octets();
        o[0] != 127 || (o[1] == 255 && o[2] == 255)
    };
    if addresses.iter().any(refusal) {
        Answer::Refused
    } else {
        Answer::Listed
    }
}

/// The name that asks `zone` about `ip`: reversed octets for IPv4,
/// reversed nibbles for IPv6.
pub fn ip_query(ip: IpAddr, zone: &str) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{zone}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(64 + zone.len());
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name.push_str(zone);
            name
        }
    }
}

/// The names that ask `zone` about the links' hosts: the host's last two,
/// three and four labels (`x.a.b.example.com` asks about `example.com`,
/// `b.example.com` and `a.b.example.com`: lists name registered domains,
/// and a random subdomain in front must not hide one), IP-address hosts
/// left out, at most [`MAX_HOSTS`] hosts.
pub fn domain_queries(urls: &[Url], zone: &str) -> Vec<String> {
    let mut names = Vec::new();
    for host in distinct_hosts(urls)
        .into_iter()
        .filter(|h| !h.starts_with('[') && h.parse::<IpAddr>().is_err())
        .take(MAX_HOSTS)
    {
        let host = host.trim_end_matches('.');
        let labels: Vec<&str> = host.split('.').collect();
        if labels.len() < 2 || labels.iter().any(|l| l.is_empty() || l.len() > 63) {
            continue;
        }
        for keep in 2..=labels.len().min(4) {
            let name = format!("{}.{zone}", labels[labels.len() - keep..].join("."));
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_answers() {
        assert_eq!(
            ip_query("192.0.2.99".parse().unwrap(), "zen.example"),
            "99.2.0.192.zen.example"
        );
        assert_eq!(
            ip_query("2001:db8::1".parse().unwrap(), "bl.example"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example"
        );
        assert_eq!(read_answer(&[]), Answer::NotListed);
        assert_eq!(read_answer(&["127.0.0.2".parse().unwrap()]), Answer::Listed);
        for refusal in [
            "127.255.255.254",
            "127.255.255.252",
            "127.255.255.255",
            "198.51.100.7",
        ] {
            assert_eq!(
                read_answer(&[refusal.parse().unwrap()]),
                Answer::Refused,
                "{refusal}"
            );
        }
    }

    #[test]
    fn link_hosts_and_their_parents() {
        let mut urls = Vec::new();
        crate::analysis::find_urls(
            "see http://x.a.b.spam.example/x and https://spam.example/ and http://192.0.2.1/ and http://nodot/",
            &mut urls,
        );
        assert_eq!(
            domain_queries(&urls, "dbl.example"),
            [
                "spam.example.dbl.example",
                "b.spam.example.dbl.example",
                "a.b.spam.example.dbl.example"
            ]
        );
    }
}
