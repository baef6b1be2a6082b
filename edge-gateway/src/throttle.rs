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
//! The counters live in this process: with several gateways each keeps its
//! own, which still bounds guesses per gateway (the per-IP connection limit
//! bounds parallel sessions). A shared store is future work.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
}

impl LoginThrottle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        LoginThrottle {
            policy,
            counters: Mutex::new(HashMap::new()),
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
        let pair = bump(CounterKey::AccountIp(account.to_ascii_lowercase(), ip));
        let per_ip = bump(CounterKey::Ip(ip));
        let per_account = bump(CounterKey::Account(account.to_ascii_lowercase()));
        // Many accounts behind one NAT share an IP, and one account's
        // guesses may come from many IPs: those counters weigh less.
        self.delay(pair.max(per_ip.div_ceil(4)).max(per_account.div_ceil(2)))
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

/// Per-user sending limits for submission: a token bucket per account
/// that holds `per_hour` messages and refills evenly over the hour, so a
/// burst up to the limit goes through and a steady flood is cut to the
/// rate. Like the login counters, it lives in this process.
#[derive(Debug)]
pub struct SendRate {
    per_hour: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
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
        }
    }

    /// Takes one message from `account`'s allowance; `false` when empty.
    pub fn allow(&self, account: &str) -> bool {
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
}
