//! Failed-login throttling, shared by every protocol that takes passwords:
//! IMAP LOGIN/AUTHENTICATE, POP3 and submission AUTH use the same
//! [`LoginThrottle`] ([`crate::shared::Shared::throttle`]), so an attacker
//! cannot spread guesses over protocols.
//!
//! Three counters of recent failures: per (account, client IP), per client
//! IP, and per account. A failed login answers only after a delay that
//! grows with them (doubling from [`ThrottlePolicy::base_delay`] up to
//! [`ThrottlePolicy::max_delay`]). An (account, IP) pair or a client IP with
//! too many failures in the window is locked out: refused before its
//! password is even checked. The per-account counter only ever adds delay,
//! so an attacker spreading guesses over many addresses slows down without
//! locking the real user out. A success clears the (account, IP) counter.
//! Counters fade after [`ThrottlePolicy::window`] without failures.
//!
//! The counters live in each gateway's memory, so a check costs no store
//! round trip; [`share`] makes them count across gateways: every
//! [`crate::sessions::POLL`] it publishes the failures (and the messages
//! submitted, for [`SendRate`]) this gateway saw, as one row of the index
//! journal `tallies`, and counts those the others published. N gateways
//! behind a load balancer thus give an attacker the limits of one, give
//! or take what happens within one poll.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stratus_core::credentials::{
    journal_key, journal_since, now_ms, prune_journal, revocations_from,
};
use stratus_core::ports::{Condition, Index, StoreResult, Write};
use tokio::sync::watch;
use tracing::warn;

/// How hard failures are punished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Delay after the first failure; doubles with each further one.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// How long a counter remembers failures after the last one.
    pub window: Duration,
    /// Failures from one IP (any account) after which logins from it are
    /// refused without checking the password, until the window passes.
    pub max_failures_per_ip: u32,
    /// The same for one account from one IP.
    pub max_failures_per_pair: u32,
    /// Most counters kept; beyond it, expired ones are dropped, then all.
    pub max_entries: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            window: Duration::from_secs(15 * 60),
            max_failures_per_ip: 100,
            max_failures_per_pair: 10,
            max_entries: 100_000,
        }
    }
}

/// Whether a login attempt may be checked at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Too many failures from this IP: answer as a failure (after `delay`)
    /// without checking the password.
    Blocked {
        delay: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    failures: u32,
    last: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CounterKey {
    Ip(IpAddr),
    AccountIp(String, IpAddr),
    Account(String),
}

/// The failure counters of this process.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    counters: Mutex<HashMap<CounterKey, Counter>>,
    /// Failures seen here and not yet published for the other gateways.
    outbox: Mutex<HashMap<(IpAddr, String), u32>>,
}

/// The journal of failed logins and submissions the gateways share.
const TALLIES_PK: &str = "tallies";
/// Most (address, account) pairs one gateway publishes per poll, each
/// with its count; failures past them are published by address alone, so
/// a flood of junk accounts cannot keep an address's failures from
/// counting everywhere.
const MAX_SHARED: usize = 500;
/// Most entries of any kind one row holds: bounds the rows an attack
/// from many addresses makes (past it, failures count where they happen).
const MAX_SHARED_ENTRIES: usize = 5000;
/// Longest account name shared, in bytes (an attacker types what it
/// likes; the real ones are shorter).
const MAX_SHARED_ACCOUNT: usize = 256;

impl LoginThrottle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        LoginThrottle {
            policy,
            counters: Mutex::new(HashMap::new()),
            outbox: Mutex::default(),
        }
    }

    /// Call before checking a password for `account` from `ip`.
    pub fn check(&self, ip: IpAddr, account: &str) -> Gate {
        let now = Instant::now();
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let per_ip = self.live(&counters, &CounterKey::Ip(ip), now);
        let pair = self.live(
            &counters,
            &CounterKey::AccountIp(account.to_ascii_lowercase(), ip),
            now,
        );
        if per_ip >= self.policy.max_failures_per_ip || pair >= self.policy.max_failures_per_pair {
            Gate::Blocked {
                delay: self.policy.max_delay,
            }
        } else {
            Gate::Open
        }
    }

    /// Records a failed login for `account` (as the client typed it) from
    /// `ip`, and returns how long to wait before answering.
    pub fn failed(&self, ip: IpAddr, account: &str) -> Duration {
        {
            let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
            let pair = (ip, account.to_ascii_lowercase());
            let key = if outbox.contains_key(&pair)
                || (outbox.len() < MAX_SHARED && account.len() <= MAX_SHARED_ACCOUNT)
            {
                Some(pair)
            } else if outbox.len() < MAX_SHARED_ENTRIES || outbox.contains_key(&(ip, String::new()))
            {
                Some((ip, String::new()))
            } else {
                None
            };
            if let Some(key) = key {
                *outbox.entry(key).or_default() += 1;
            }
        }
        let (pair, per_ip, per_account) = self.count(ip, Some(account));
        // Many accounts behind one NAT share an IP, and one account's
        // guesses may come from many IPs: those counters weigh less.
        self.delay(pair.max(per_ip.div_ceil(4)).max(per_account.div_ceil(2)))
    }

    /// Counts `n` failures another gateway saw from `ip` for `account`
    /// (empty: for accounts it did not name).
    pub fn absorb(&self, ip: IpAddr, account: &str, n: u32) {
        let account = (!account.is_empty()).then_some(account);
        for _ in 0..n.min(1000) {
            self.count(ip, account);
        }
    }

    /// Adds a failure to the counters (the address's only, without an
    /// account); their counts now.
    fn count(&self, ip: IpAddr, account: Option<&str>) -> (u32, u32, u32) {
        let now = Instant::now();
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if counters.len() + 3 > self.policy.max_entries {
            let window = self.policy.window;
            counters.retain(|_, c| now.duration_since(c.last) < window);
            if counters.len() + 3 > self.policy.max_entries {
                counters.clear();
            }
        }
        let mut bump = |key: CounterKey| {
            let failures = self.live(&counters, &key, now) + 1;
            counters.insert(
                key,
                Counter {
                    failures,
                    last: now,
                },
            );
            failures
        };
        let per_ip = bump(CounterKey::Ip(ip));
        let Some(account) = account else {
            return (0, per_ip, 0);
        };
        let pair = bump(CounterKey::AccountIp(account.to_ascii_lowercase(), ip));
        let per_account = bump(CounterKey::Account(account.to_ascii_lowercase()));
        (pair, per_ip, per_account)
    }

    fn take_outbox(&self) -> Vec<(IpAddr, String, u32)> {
        let taken = std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|e| e.into_inner()));
        taken.into_iter().map(|((ip, a), n)| (ip, a, n)).collect()
    }

    /// Puts back what could not be published, to go with the next row.
    fn put_back(&self, failures: Vec<(IpAddr, String, u32)>) {
        let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        for (ip, account, n) in failures {
            *outbox.entry((ip, account)).or_default() += n;
        }
    }

    /// Records a successful login: the account's failures from this IP are
    /// forgiven (the per-IP counter stays, it still fades with time).
    pub fn succeeded(&self, ip: IpAddr, account: &str) {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        counters.remove(&CounterKey::AccountIp(account.to_ascii_lowercase(), ip));
    }

    fn live(&self, counters: &HashMap<CounterKey, Counter>, key: &CounterKey, now: Instant) -> u32 {
        counters
            .get(key)
            .filter(|c| now.duration_since(c.last) < self.policy.window)
            .map_or(0, |c| c.failures)
    }

    fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.policy
            .base_delay
            .saturating_mul(1 << doublings)
            .min(self.policy.max_delay)
    }
}

/// What one gateway saw in one poll.
#[derive(Debug, Serialize, Deserialize)]
struct Tallies {
    /// The gateway that saw them.
    gateway: String,
    /// Failed logins: the client, the account as typed (empty: not
    /// named), how many.
    #[serde(default)]
    failures: Vec<(IpAddr, String, u32)>,
    /// Messages submitted: the account, how many.
    #[serde(default)]
    sent: Vec<(String, u32)>,
}

/// Rows are read again from this long before the last read, so that a
/// row written with a clock a little behind is not missed; rows seen
/// already are skipped by their key.
const REREAD: Duration = Duration::from_secs(30);

/// One gateway's side of the sharing: who it is, where it read last, and
/// the rows it has counted.
#[derive(Debug)]
pub struct FailureShare {
    gateway: String,
    /// How many rows this gateway wrote: two in one millisecond must not
    /// share a key (the second would replace the first).
    written: u64,
    read_at: i64,
    seen: HashMap<String, i64>,
}

impl Default for FailureShare {
    fn default() -> Self {
        FailureShare {
            gateway: stratus_core::ids::random_hex(8),
            written: 0,
            read_at: now_ms(),
            seen: HashMap::new(),
        }
    }
}

impl FailureShare {
    /// Publishes the failures and submissions seen here since the last
    /// call, and counts those the other gateways published since; how
    /// many that was.
    pub async fn exchange(
        &mut self,
        throttle: &LoginThrottle,
        send_rate: &SendRate,
        index: &dyn Index,
    ) -> StoreResult<usize> {
        let failures = throttle.take_outbox();
        let sent = send_rate.take_outbox();
        if !failures.is_empty() || !sent.is_empty() {
            let row = Tallies {
                gateway: self.gateway.clone(),
                failures,
                sent,
            };
            self.written += 1;
            let write = Write::Put {
                key: journal_key(TALLIES_PK, &format!("{}#{:x}", self.gateway, self.written)),
                value: serde_json::to_vec(&row).expect("failures serialise"),
                condition: Condition::Any,
            };
            if let Err(e) = index.transact(vec![write]).await {
                // Not lost: they go with the next row.
                throttle.put_back(row.failures);
                send_rate.put_back(row.sent);
                return Err(e);
            }
        }
        let now = now_ms();
        let reread = REREAD.as_millis() as i64;
        let rows =
            journal_since(index, TALLIES_PK, &revocations_from(self.read_at - reread)).await?;
        self.read_at = now;
        // Rows are read again only back to `read_at - reread`: older ones
        // can be forgotten, however long since the last read.
        self.seen.retain(|_, written| *written >= now - 2 * reread);
        let mut absorbed = 0;
        for row in rows {
            let written = row
                .key
                .sk
                .get(..16)
                .and_then(|t| i64::from_str_radix(t, 16).ok())
                .unwrap_or(now);
            if self.seen.insert(row.key.sk.clone(), written).is_some() {
                continue;
            }
            let Ok(theirs) = serde_json::from_slice::<Tallies>(&row.value) else {
                continue;
            };
            if theirs.gateway == self.gateway {
                continue;
            }
            for (ip, account, n) in theirs.failures.iter().take(MAX_SHARED_ENTRIES) {
                throttle.absorb(*ip, account, *n);
                absorbed += *n as usize;
            }
            for (account, n) in theirs.sent.iter().take(MAX_SHARED_ENTRIES) {
                send_rate.absorb(account, *n);
                absorbed += *n as usize;
            }
        }
        Ok(absorbed)
    }
}

/// Shares `throttle`'s failures and `send_rate`'s submissions with the
/// other gateways every `every` until `shutdown`; now and then deletes
/// rows older than the throttle's window (and an hour, the send rate's).
pub async fn share(
    throttle: Arc<LoginThrottle>,
    send_rate: Arc<SendRate>,
    index: Arc<dyn Index>,
    mut shutdown: watch::Receiver<bool>,
    every: Duration,
) {
    let mut share = FailureShare::default();
    let mut pruned_at = 0;
    let window = throttle
        .policy
        .window
        .max(Duration::from_secs(3600))
        .as_millis() as i64;
    let mut ticks = crate::shared::ticks(every);
    while crate::shared::next_tick(&mut ticks, &mut shutdown).await {
        if let Err(e) = share.exchange(&throttle, &send_rate, index.as_ref()).await {
            warn!(error = %e, "cannot share the failed logins and submissions with the other gateways");
        }
        let now = now_ms();
        if now - pruned_at > window / 6 {
            pruned_at = now;
            if let Err(e) = prune_journal(index.as_ref(), TALLIES_PK, now - window).await {
                warn!(error = %e, "cannot prune the shared tallies");
            }
        }
    }
}

/// Per-user sending limits for submission: a token bucket per account
/// that holds `per_hour` messages and refills evenly over the hour, so a
/// burst up to the limit goes through and a steady flood is cut to the
/// rate. Like the login counters, it lives in this process.
#[derive(Debug)]
pub struct SendRate {
    per_hour: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    /// Messages allowed here and not yet published for the other
    /// gateways, by account.
    outbox: Mutex<HashMap<String, u32>>,
}

impl Default for SendRate {
    fn default() -> Self {
        SendRate::new(500)
    }
}

impl SendRate {
    pub fn new(per_hour: u32) -> SendRate {
        SendRate {
            per_hour: per_hour.max(1),
            buckets: Mutex::new(HashMap::new()),
            outbox: Mutex::default(),
        }
    }

    /// Takes one message from `account`'s allowance; `false` when empty.
    pub fn allow(&self, account: &str) -> bool {
        let allowed = self.take(account);
        if allowed {
            let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
            if outbox.len() < MAX_SHARED_ENTRIES || outbox.contains_key(account) {
                *outbox.entry(account.to_string()).or_default() += 1;
            }
        }
        allowed
    }

    /// Counts `n` messages another gateway allowed.
    pub fn absorb(&self, account: &str, n: u32) {
        for _ in 0..n.min(100_000) {
            self.take(account);
        }
    }

    fn take_outbox(&self) -> Vec<(String, u32)> {
        std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .collect()
    }

    fn put_back(&self, sent: Vec<(String, u32)>) {
        let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        for (account, n) in sent {
            *outbox.entry(account).or_default() += n;
        }
    }

    fn take(&self, account: &str) -> bool {
        let now = Instant::now();
        let full = f64::from(self.per_hour);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * full / 3600.0 < full
            });
        }
        let (tokens, at) = buckets.entry(account.to_string()).or_insert((full, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * full / 3600.0).min(full);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ThrottlePolicy {
        ThrottlePolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            window: Duration::from_secs(60),
            max_failures_per_ip: 6,
            max_failures_per_pair: 4,
            max_entries: 1000,
        }
    }

    #[test]
    fn delays_grow_and_a_success_resets_the_pair() {
        let t = LoginThrottle::new(policy());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert_eq!(t.failed(ip, "alice@x"), Duration::from_millis(100));
        assert_eq!(t.failed(ip, "Alice@X"), Duration::from_millis(200));
        assert_eq!(t.failed(ip, "alice@x"), Duration::from_millis(400));
        // Another IP starts lower, but the account's failures still count
        // (4 weigh 2).
        assert_eq!(t.failed(other, "alice@x"), Duration::from_millis(200));
        t.succeeded(ip, "alice@x");
        assert_eq!(t.check(ip, "alice@x"), Gate::Open);
        for _ in 0..10 {
            assert!(t.failed(other, "dave@x") <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn pairs_and_addresses_are_locked_out_accounts_never() {
        let t = LoginThrottle::new(policy());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let blocked = Gate::Blocked {
            delay: Duration::from_millis(1000),
        };
        for _ in 0..4 {
            assert_eq!(t.check(ip, "alice@x"), Gate::Open);
            t.failed(ip, "alice@x");
        }
        // Four failures for alice from this IP: that pair is locked out ...
        assert_eq!(t.check(ip, "ALICE@x"), blocked);
        // ... but not alice from elsewhere, however many guesses came in
        // for her from other addresses.
        for i in 0..20u8 {
            t.failed(IpAddr::from([198, 51, 100, i]), "alice@x");
        }
        assert_eq!(
            t.check("203.0.113.1".parse().unwrap(), "alice@x"),
            Gate::Open
        );
        // Six failures from one IP, whatever the accounts: the IP is out.
        t.failed(ip, "bob@x");
        assert_eq!(t.check(ip, "carol@x"), Gate::Open);
        t.failed(ip, "carol@x");
        assert_eq!(t.check(ip, "erin@x"), blocked);
    }

    #[test]
    fn sending_is_limited_per_account() {
        let rate = SendRate::new(3);
        assert!((0..3).all(|_| rate.allow("alice@x")));
        assert!(!rate.allow("alice@x"), "the fourth in an hour waits");
        assert!(rate.allow("bob@x"), "others are not affected");
    }

    #[test]
    fn counters_are_bounded() {
        let t = LoginThrottle::new(ThrottlePolicy {
            max_entries: 10,
            ..policy()
        });
        for i in 0..100u8 {
            t.failed(IpAddr::from([10, 0, 0, i]), "a@x");
            assert!(t.counters.lock().unwrap().len() <= 10);
        }
    }

    #[tokio::test]
    async fn failures_on_one_gateway_count_on_the_others() {
        let dir = crate::testutil::TempDir::new("throttle-share");
        let stores = stratus_store_local::LocalStores::open(&dir.path().join("data"), 5).unwrap();
        let index: Arc<dyn Index> = Arc::new(stores.index);
        let (a, b) = (LoginThrottle::new(policy()), LoginThrottle::new(policy()));
        let (mut share_a, mut share_b) = (FailureShare::default(), FailureShare::default());
        let rate = SendRate::default();
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        // Two guesses at A, one at B: nobody is locked out yet anywhere.
        a.failed(ip, "alice@x");
        a.failed(ip, "Alice@X");
        b.failed(ip, "alice@x");
        assert_eq!(
            share_a.exchange(&a, &rate, index.as_ref()).await.unwrap(),
            0
        );
        assert_eq!(
            share_b.exchange(&b, &rate, index.as_ref()).await.unwrap(),
            2
        );
        assert_eq!(
            share_a.exchange(&a, &rate, index.as_ref()).await.unwrap(),
            1
        );
        // Each now counts three; the fourth, at either, locks the pair
        // out at both.
        assert_eq!(a.check(ip, "alice@x"), Gate::Open);
        b.failed(ip, "alice@x");
        assert_eq!(
            b.check(ip, "alice@x"),
            Gate::Blocked {
                delay: Duration::from_millis(1000)
            }
        );
        share_b.exchange(&b, &rate, index.as_ref()).await.unwrap();
        share_a.exchange(&a, &rate, index.as_ref()).await.unwrap();
        assert_eq!(
            a.check(ip, "alice@x"),
            Gate::Blocked {
                delay: Duration::from_millis(1000)
            }
        );
        // Read again, nothing counts twice.
        assert_eq!(
            share_a.exchange(&a, &rate, index.as_ref()).await.unwrap(),
            0
        );
        assert_eq!(
            share_b.exchange(&b, &rate, index.as_ref()).await.unwrap(),
            0
        );
        // Another address is untouched; rows go once the window has passed.
        assert_eq!(
            a.check("203.0.113.6".parse().unwrap(), "alice@x"),
            Gate::Open
        );
        let pruned = prune_journal(index.as_ref(), TALLIES_PK, now_ms() + 1)
            .await
            .unwrap();
        assert_eq!(pruned, 3, "one row per gateway per poll that saw failures");
    }

    #[tokio::test]
    async fn a_flood_of_failures_shares_a_bounded_row() {
        let dir = crate::testutil::TempDir::new("throttle-flood");
        let stores = stratus_store_local::LocalStores::open(&dir.path().join("data"), 5).unwrap();
        let index: Arc<dyn Index> = Arc::new(stores.index);
        let (a, b) = (LoginThrottle::new(policy()), LoginThrottle::new(policy()));
        let (mut share_a, mut share_b) = (FailureShare::default(), FailureShare::default());
        let rate = SendRate::default();
        let long = "x".repeat(10_000);
        for i in 0..2000u32 {
            a.failed(IpAddr::from(i.to_be_bytes()), "a@x");
        }
        a.failed("192.0.2.1".parse().unwrap(), &long);
        share_a.exchange(&a, &rate, index.as_ref()).await.unwrap();
        // Every failure counts at B, the pairs past the first 500 (and the
        // long name) by their address alone.
        assert_eq!(
            share_b.exchange(&b, &rate, index.as_ref()).await.unwrap(),
            2001
        );
        let row = journal_since(index.as_ref(), TALLIES_PK, "").await.unwrap();
        assert!(row[0].value.len() < 200_000, "{} bytes", row[0].value.len());
        // Junk accounts do not hide a guesser: its address is blocked at B.
        let guesser: IpAddr = "198.51.100.77".parse().unwrap();
        for i in 0..policy().max_failures_per_ip {
            a.failed(guesser, &format!("junk{i}@x"));
        }
        share_a.exchange(&a, &rate, index.as_ref()).await.unwrap();
        share_b.exchange(&b, &rate, index.as_ref()).await.unwrap();
        assert!(matches!(b.check(guesser, "alice@x"), Gate::Blocked { .. }));
    }

    #[tokio::test]
    async fn messages_submitted_on_one_gateway_count_on_the_others() {
        let dir = crate::testutil::TempDir::new("sendrate-share");
        let stores = stratus_store_local::LocalStores::open(&dir.path().join("data"), 5).unwrap();
        let index: Arc<dyn Index> = Arc::new(stores.index);
        let throttle = LoginThrottle::new(policy());
        let (a, b) = (SendRate::new(5), SendRate::new(5));
        let (mut share_a, mut share_b) = (FailureShare::default(), FailureShare::default());
        for _ in 0..3 {
            assert!(a.allow("alice@x"));
        }
        share_a
            .exchange(&throttle, &a, index.as_ref())
            .await
            .unwrap();
        assert_eq!(
            share_b
                .exchange(&throttle, &b, index.as_ref())
                .await
                .unwrap(),
            3
        );
        // Five an hour in all: B has two left, not five.
        assert!(b.allow("alice@x") && b.allow("alice@x"));
        assert!(
            !b.allow("alice@x"),
            "the allowance is spent across gateways"
        );
        assert!(b.allow("bob@x"), "others keep theirs");
    }
}
