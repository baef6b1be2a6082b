//! The listeners of `stratus serve`: bind every enabled role, accept
//! connections under a per-listener semaphore and a per-client-address
//! limit, hand each one to [`session::handle`], and shut down gracefully.
//!
//! Lifecycle: [`Server::bind`] (every socket listening, or an error naming
//! the setting) → [`Server::start`] (accept loops running; now write
//! `listeners.json`) → [`Running::shutdown`] (stop accepting, wait a bounded
//! time for open connections).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info_span, warn};

use crate::session::{self, Context};
use crate::shared::Shared;
use crate::smtp::auth::MailAuth;
use crate::throttle::SendRate;
use crate::tls;
use crate::{imap, pop3, smtp};
use stratus_core::metrics::{RoleLabel, metrics};
use stratus_runtime::Stores;
use stratus_runtime::config::Config;
use stratus_runtime::role::Role;

/// The file in the data directory that lists the bound addresses.
pub const LISTENERS_FILE: &str = "listeners.json";

/// Every listener bound and listening, not yet accepting.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<(Role, TcpListener, SocketAddr)>,
    ctx: Arc<Context>,
    proxies: Arc<crate::proxy::Proxies>,
    stop: watch::Sender<bool>,
    max_connections: usize,
    max_per_ip: usize,
}

/// Accept loops running.
#[derive(Debug)]
pub struct Running {
    addresses: Vec<(Role, SocketAddr)>,
    loops: Vec<JoinHandle<()>>,
    slots: Vec<(Role, Arc<Semaphore>)>,
    stop: watch::Sender<bool>,
    max_connections: usize,
}

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

impl Server {
    /// Binds every listener the configuration enables.
    pub async fn bind(config: &Config, stores: Stores) -> anyhow::Result<Server> {
        let mut listeners = Vec::new();
        for listen in &config.listeners {
            let listener = TcpListener::bind(listen.addr).await.with_context(|| {
                format!(
                    "cannot listen for {} on {} (from {})",
                    listen.role, listen.addr, listen.setting
                )
            })?;
            let local = listener
                .local_addr()
                .context("bound socket has no local address")?;
            listeners.push((listen.role, listener, local));
        }
        let tls = tls::server_config(&config.tls, &config.data_dir, &config.hostname)
            .context("cannot set up TLS")?;
        let auth = stratus_auth::Authenticator::new(config.dns_resolver)
            .context("cannot set up the DNS resolver for SPF, DKIM and DMARC")?;
        let spam = stratus_runtime::root::spam_engine(config)?;
        let (stop, stop_rx) = watch::channel(false);
        let proxies = crate::proxy::Proxies {
            trusted: config.trusted_proxies.clone(),
            protocol: config.proxy_protocol,
        };
        let shared = Shared {
            hostname: config.hostname.clone(),
            stores,
            shutdown: stop_rx,
            tls: Some(tls),
            throttle: Arc::default(),
            sessions: Arc::default(),
        };
        let smtp = Arc::new(smtp::Context {
            shared: shared.clone(),
            limits: config.smtp.clone(),
            dnsbl: spam.as_ref().and_then(|engine| {
                smtp::dnsbl::Blocklists::new(engine.rules.blocklists.clone(), auth.clone())
            }),
            auth: Arc::new(MailAuth::new(auth)),
            send_rate: Arc::new(SendRate::new(config.submission_max_per_hour)),
            spam,
            clamd: config.clamd.clone(),
            sieve_idle: Arc::default(),
        });
        let ctx = Arc::new(Context {
            smtp: smtp.clone(),
            imap: Arc::new(imap::Context {
                shared: shared.clone(),
                settings: config.imap.clone(),
                append_limit: config.smtp.max_message_size,
                views: Arc::default(),
                user_ip: Arc::default(),
            }),
            pop3: Arc::new(pop3::Context {
                shared: shared.clone(),
                settings: config.pop3.clone(),
            }),
            managesieve: Arc::new(crate::managesieve::Context {
                shared: shared.clone(),
            }),
            http: Arc::new(crate::http::Context {
                metrics: crate::http::MetricsAccess {
                    allow: config.metrics_allow.clone(),
                    token: config.metrics_token.clone(),
                },
                service: Some(crate::service::Service::new(&shared.stores, config)),
                proxies: proxies.clone(),
                https_url: config
                    .listen(Role::Https)
                    .map(|_| config.public_url.clone()),
                submission: Some(smtp),
                ..crate::http::Context::new(shared)
            }),
        });
        Ok(Server {
            listeners,
            ctx,
            proxies: Arc::new(proxies),
            stop,
            max_connections: config.max_connections.max(1),
            max_per_ip: config.max_connections_per_ip.max(1),
        })
    }

    /// The address each role is bound to (port 0 resolved), in role order.
    pub fn addresses(&self) -> Vec<(Role, SocketAddr)> {
        self.listeners
            .iter()
            .map(|(role, _, addr)| (*role, *addr))
            .collect()
    }

    /// Starts accepting on every listener.
    /// The spam engine the SMTP listeners use, for the stages to share.
    pub fn spam_engine(&self) -> Option<Arc<stratus_pipeline::spam::SpamEngine>> {
        self.ctx.smtp.spam.clone()
    }

    pub fn start(self) -> Running {
        let addresses = self.addresses();
        let mut loops = Vec::new();
        let mut slots = Vec::new();
        for (role, listener, addr) in self.listeners {
            let sem = Arc::new(Semaphore::new(self.max_connections));
            slots.push((role, sem.clone()));
            let per_ip = Arc::default();
            let span = info_span!("listener", role = role.name(), %addr);
            loops.push(tokio::spawn(
                accept_loop(
                    role,
                    listener,
                    Limits {
                        slots: sem,
                        per_ip,
                        max_per_ip: self.max_per_ip,
                        proxies: self.proxies.clone(),
                    },
                    self.ctx.clone(),
                    self.stop.subscribe(),
                )
                .instrument(span),
            ));
        }
        // Revoked credentials end this gateway's sessions.
        let shared = &self.ctx.imap.shared;
        loops.push(tokio::spawn(crate::sessions::follow(
            shared.sessions.clone(),
            shared.stores.index.clone(),
            self.stop.subscribe(),
            crate::sessions::POLL,
        )));
        // Failed logins and submissions count on every gateway.
        loops.push(tokio::spawn(crate::throttle::share(
            shared.throttle.clone(),
            self.ctx.smtp.send_rate.clone(),
            shared.stores.index.clone(),
            self.stop.subscribe(),
            crate::sessions::POLL,
        )));
        // Expired web sessions and invitations go now and then.
        if let Some(service) = self.ctx.http.service.clone() {
            let mut stop = self.stop.subscribe();
            loops.push(tokio::spawn(async move {
                let mut ticks = crate::shared::ticks(Duration::from_secs(600));
                while crate::shared::next_tick(&mut ticks, &mut stop).await {
                    if let Err(e) = service.prune_web_sessions().await {
                        warn!(error = %e, "cannot prune expired web sessions");
                    }
                    if let Err(e) = service.prune_invitations().await {
                        warn!(error = %e, "cannot prune expired invitations");
                    }
                }
            }));
        }
        Running {
            addresses,
            loops,
            slots,
            stop: self.stop,
            max_connections: self.max_connections,
        }
    }
}

impl Running {
    pub fn addresses(&self) -> &[(Role, SocketAddr)] {
        &self.addresses
    }

    /// Stops accepting, tells sessions to finish, and waits up to `grace`
    /// for open connections to close. Returns how many were still open.
    pub async fn shutdown(self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        let _ = self.stop.send(true);
        for accept in self.loops {
            let _ = accept.await;
        }
        let mut open = 0;
        for (role, sem) in &self.slots {
            // Every connection holds one permit: all permits back means all closed.
            let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
            if tokio::time::timeout_at(deadline, sem.acquire_many(all))
                .await
                .is_err()
            {
                let still = self.max_connections - sem.available_permits();
                warn!(
                    role = role.name(),
                    connections = still,
                    "connections still open after the grace period; closing them"
                );
                open += still;
            }
        }
        open
    }
}

/// Resolves once shutdown is signalled (or the server is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The borrow `wait_for` returns is not `Send`; drop it here.
    let _ = stop.wait_for(|s| *s).await;
}

/// The connection limits of one listener.
#[derive(Debug)]
struct Limits {
    slots: Arc<Semaphore>,
    /// Concurrent connections per client address on this listener.
    per_ip: Arc<crate::slots::Slots<IpAddr>>,
    max_per_ip: usize,
    /// Proxies whose PROXY headers name the client.
    proxies: Arc<crate::proxy::Proxies>,
}

async fn accept_loop(
    role: Role,
    listener: TcpListener,
    limits: Limits,
    ctx: Arc<Context>,
    mut stop: watch::Receiver<bool>,
) {
    let Limits {
        slots,
        per_ip,
        max_per_ip,
        proxies,
    } = limits;
    loop {
        // Take a slot before accepting: at the limit, new clients wait in
        // the kernel's backlog instead of costing us a task each.
        let permit = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        let span = info_span!("session", id, role = role.name(), %peer);
        let (per_ip, proxies) = (per_ip.clone(), proxies.clone());
        tokio::spawn(
            async move {
                let _permit = permit;
                let mut stream = stream;
                let peer = if proxies.expects_header(peer.ip()) {
                    let header = tokio::time::timeout(
                        crate::proxy::HEADER_TIMEOUT,
                        crate::proxy::read_header(&mut stream),
                    )
                    .await;
                    match header {
                        Ok(Ok(Some(client))) => {
                            debug!(%client, "the proxy names the client");
                            client
                        }
                        Ok(Ok(None)) => peer,
                        Ok(Err(e)) => {
                            warn!(error = %e, "a trusted proxy sent no usable PROXY header; closed");
                            return;
                        }
                        Err(_) => {
                            warn!("a trusted proxy sent no PROXY header in time; closed");
                            return;
                        }
                    }
                } else {
                    peer
                };
                let ip_slot = per_ip.acquire(peer.ip(), max_per_ip);
                let Some(_ip_slot) = ip_slot else {
                    debug!("too many connections from this address; refused");
                    let _ = session::refuse_busy(role, stream, &ctx).await;
                    return;
                };
                debug!("connection opened");
                let _open = OpenSession::count(role);
                match session::handle(role, stream, peer, &ctx).await {
                    Ok(()) => debug!("connection closed"),
                    Err(e) => debug!(error = %e, "connection ended with an error"),
                }
            }
            .instrument(span),
        );
    }
    debug!("stopped accepting");
}

/// Counts a session in `stratus_sessions_total` and, while it lives, in
/// `stratus_sessions_open` (a guard, so a panicking session is uncounted
/// too).
struct OpenSession(RoleLabel);

impl OpenSession {
    fn count(role: Role) -> OpenSession {
        let label = RoleLabel { role: role.name() };
        let m = metrics();
        m.sessions.get_or_create(&label).inc();
        m.sessions_open.get_or_create(&label).inc();
        OpenSession(label)
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        metrics().sessions_open.get_or_create(&self.0).dec();
    }
}

/// The JSON object of `listeners.json`: role name → `ip:port`.
pub fn listeners_json(addresses: &[(Role, SocketAddr)]) -> String {
    let map: BTreeMap<&str, String> = addresses
        .iter()
        .map(|(role, addr)| (role.name(), addr.to_string()))
        .collect();
    let mut json = serde_json::to_string_pretty(&map).expect("a map of strings serialises");
    json.push('\n');
    json
}

/// Writes `listeners.json` into `dir` atomically: readers see the old file,
/// no file, or the whole new one, never a part.
pub fn write_listeners_file(dir: &Path, addresses: &[(Role, SocketAddr)]) -> io::Result<PathBuf> {
    let path = dir.join(LISTENERS_FILE);
    let tmp = dir.join(format!(".{LISTENERS_FILE}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(listeners_json(addresses).as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename itself durable.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(path)
}

/// Reads `listeners.json` from `dir`: role name → address.
pub fn read_listeners_file(dir: &Path) -> io::Result<BTreeMap<String, SocketAddr>> {
    let text = std::fs::read_to_string(dir.join(LISTENERS_FILE))?;
    serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::testutil::TempDir;
    use stratus_runtime::config::Flags;

    /// A temporary directory and the data directory inside it.
    fn temp_dir(name: &str) -> (TempDir, PathBuf) {
        let tmp = TempDir::new(name);
        let data = tmp.path().join("data");
        (tmp, data)
    }

    fn config_on_port_zero(dir: &Path) -> Config {
        let mut flags = Flags::default();
        flags
            .set("data_dir", dir.to_str().unwrap())
            .set("hostname", "mx.test.example");
        for role in Role::ALL {
            flags.set(role.setting_key(), "127.0.0.1:0");
        }
        flags.set("imaps_listen", "");
        Config::from_sources(&flags, &|_| None).unwrap()
    }

    #[test]
    fn the_listeners_file_round_trips_and_is_replaced_whole() {
        let (_tmp, dir) = temp_dir("file");
        std::fs::create_dir_all(&dir).unwrap();
        let addrs = [
            (Role::Smtp, "127.0.0.1:2525".parse().unwrap()),
            (Role::Http, "[::1]:8080".parse().unwrap()),
        ];
        write_listeners_file(&dir, &addrs).unwrap();
        let read = read_listeners_file(&dir).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read["smtp"], addrs[0].1);
        assert_eq!(read["http"], addrs[1].1);
        let text = std::fs::read_to_string(dir.join(LISTENERS_FILE)).unwrap();
        assert!(text.contains("\"http\": \"[::1]:8080\""), "{text}");

        write_listeners_file(&dir, &addrs[..1]).unwrap();
        assert_eq!(read_listeners_file(&dir).unwrap().len(), 1);
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [LISTENERS_FILE], "no temporary file left behind");
    }

    #[tokio::test]
    async fn serves_every_enabled_role_and_shuts_down() {
        let (_tmp, dir) = temp_dir("serve");
        let config = config_on_port_zero(&dir);
        let stores = Stores::open(&config).await.unwrap();
        let server = Server::bind(&config, stores).await.unwrap();
        let running = server.start();
        let addrs: BTreeMap<Role, SocketAddr> = running.addresses().iter().copied().collect();
        assert_eq!(addrs.len(), Role::ALL.len() - 1, "imaps is off");
        assert!(!addrs.contains_key(&Role::Imaps));
        assert!(addrs.values().all(|a| a.port() != 0));

        let mut smtp = TcpStream::connect(addrs[&Role::Smtp]).await.unwrap();
        smtp.write_all(b"QUIT\r\n").await.unwrap();
        let mut line = String::new();
        smtp.read_to_string(&mut line).await.unwrap();
        assert_eq!(
            line,
            "220 mx.test.example ESMTP Stratus\r\n221 2.0.0 mx.test.example closing connection\r\n"
        );
        drop(smtp);

        // One connection still open at shutdown (a TLS handshake that never
        // starts): it is waited for, then counted. An idle HTTP connection
        // is closed by the shutdown and is not.
        let _idle = TcpStream::connect(addrs[&Role::Submissions]).await.unwrap();
        let _kept_alive = TcpStream::connect(addrs[&Role::Http]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let still_open = running.shutdown(Duration::from_millis(200)).await;
        assert_eq!(still_open, 1);
        assert!(
            TcpStream::connect(addrs[&Role::Smtp]).await.is_err(),
            "no longer accepting"
        );
    }

    #[tokio::test]
    async fn one_address_may_hold_only_so_many_connections() {
        let (_tmp, dir) = temp_dir("per-ip");
        let mut flags = Flags::default();
        flags
            .set("data_dir", dir.to_str().unwrap())
            .set("hostname", "mx.test.example")
            .set("max_connections_per_ip", "2");
        for role in Role::ALL {
            flags.set(role.setting_key(), "");
        }
        flags.set("smtp_listen", "127.0.0.1:0");
        let config = Config::from_sources(&flags, &|_| None).unwrap();
        let stores = Stores::open(&config).await.unwrap();
        let running = Server::bind(&config, stores).await.unwrap().start();
        let addr = running.addresses()[0].1;

        async fn greeting(s: &mut TcpStream) -> String {
            let mut buf = vec![0u8; 512];
            let n = s.read(&mut buf).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        }
        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert!(greeting(&mut first).await.starts_with("220 "));
        assert!(greeting(&mut second).await.starts_with("220 "));
        let mut third = TcpStream::connect(addr).await.unwrap();
        let mut refused = String::new();
        third.read_to_string(&mut refused).await.unwrap();
        assert_eq!(
            refused,
            "421 4.7.0 mx.test.example too many connections from your address\r\n"
        );

        // A closed connection frees its slot.
        first.write_all(b"QUIT\r\n").await.unwrap();
        let mut bye = String::new();
        first.read_to_string(&mut bye).await.unwrap();
        drop(first);
        let mut again = None;
        for _ in 0..50 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            if greeting(&mut s).await.starts_with("220 ") {
                again = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(again.is_some(), "the slot came back");
        drop((second, again));
        running.shutdown(Duration::from_secs(2)).await;
    }

    #[tokio::test]
    async fn a_taken_port_is_reported_with_its_setting() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (_tmp, dir) = temp_dir("taken");
        let mut flags = Flags::default();
        flags.set("data_dir", dir.to_str().unwrap());
        for role in Role::ALL {
            flags.set(role.setting_key(), "");
        }
        flags.set("pop3_listen", taken.local_addr().unwrap().to_string());
        let config = Config::from_sources(&flags, &|_| None).unwrap();
        let stores = Stores::open(&config).await.unwrap();
        let err = format!("{:#}", Server::bind(&config, stores).await.unwrap_err());
        assert!(
            err.starts_with("cannot listen for pop3 on 127.0.0.1:"),
            "{err}"
        );
        assert!(err.contains("--pop3-listen"), "{err}");
    }
}
