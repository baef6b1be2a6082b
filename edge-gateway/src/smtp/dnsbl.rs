//! DNS blocklists: the connecting address is looked up once per
//! connection (started when the client connects, so the answer is
//! usually in by the end of the first message), and the hosts of a
//! message's links at the end of its data, all within a deadline. A
//! lookup that fails or is late adds nothing; a list that refuses our
//! resolver (127.255.255.x) is logged, not counted. The zones are the
//! rules file's `[[dnsbl]]` entries; the names and answers are
//! `stratus_filter::dnsbl`'s.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use stratus_filter::analysis::Url;
use stratus_filter::dnsbl::{Answer, domain_queries, ip_query, read_answer};
use stratus_filter::rules::{Blocklist, BlocklistKind};
use tracing::{debug, warn};

/// How long all the lookups of one check may take.
pub const DEADLINE: Duration = Duration::from_millis(1500);

/// The blocklists and the resolver that asks them.
#[derive(Debug, Clone)]
pub struct Blocklists {
    zones: Arc<Vec<Blocklist>>,
    resolver: stratus_auth::Authenticator,
}

impl Blocklists {
    /// `None` when the rules name no zone.
    pub fn new(zones: Vec<Blocklist>, resolver: stratus_auth::Authenticator) -> Option<Self> {
        (!zones.is_empty()).then(|| Blocklists {
            zones: Arc::new(zones),
            resolver,
        })
    }

    /// The symbols of the IP lists that list `ip`.
    pub async fn check_ip(&self, ip: IpAddr) -> Vec<String> {
        let asks: Vec<(&Blocklist, String)> = self
            .zones
            .iter()
            .filter(|z| z.kind == BlocklistKind::Ip)
            .map(|z| (z, ip_query(ip.to_canonical(), &z.zone)))
            .collect();
        self.ask(asks).await
    }

    /// The symbols of the domain lists that list a host of `urls`.
    pub async fn check_links(&self, urls: &[Url]) -> Vec<String> {
        let mut asks = Vec::new();
        for zone in self
            .zones
            .iter()
            .filter(|z| z.kind == BlocklistKind::Domain)
        {
            for name in domain_queries(urls, &zone.zone) {
                asks.push((zone, name));
            }
        }
        self.ask(asks).await
    }

    /// Asks every name at once; the symbols of the zones that list one.
    async fn ask(&self, asks: Vec<(&Blocklist, String)>) -> Vec<String> {
        let mut set = tokio::task::JoinSet::new();
        for (zone, name) in asks {
            let (resolver, symbol, zone) =
                (self.resolver.clone(), zone.name.clone(), zone.zone.clone());
            set.spawn(async move {
                let addresses = match resolver.blocklist_lookup(&name, DEADLINE).await {
                    Ok(addresses) => addresses,
                    Err(e) => {
                        debug!(%name, error = %e, "blocklist lookup failed; it counts for nothing");
                        return None;
                    }
                };
                match read_answer(&addresses) {
                    Answer::Listed => Some(symbol),
                    Answer::NotListed => None,
                    Answer::Refused => {
                        warn!(%zone, %name, "the blocklist refused our resolver (127.255.255.x or a non-list answer); use a resolver of your own for it");
                        None
                    }
                }
            });
        }
        let mut listed = Vec::new();
        while let Some(done) = set.join_next().await {
            if let Ok(Some(symbol)) = done {
                listed.push(symbol);
            }
        }
        listed.sort();
        listed.dedup();
        listed
    }
}
