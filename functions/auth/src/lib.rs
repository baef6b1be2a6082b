//! Message authentication, for the SMTP gateway and the functions alike:
//! SPF (RFC 7208) at MAIL FROM, and DKIM (RFC 6376), ARC (RFC 8617) and
//! DMARC (RFC 7489) at the end of the data, before the final reply; and
//! the DKIM keys the send stage signs with ([`dkim`]). The checks are
//! mail-auth's; DNS goes through hickory. This crate adds what its callers
//! need around them: one resolver configuration (`STRATUS_DNS_RESOLVER`),
//! deadlines, panic isolation, and results rendered as the value of an
//! Authentication-Results header (RFC 8601).
//!
//! # API
//!
//! ```no_run
//! # async fn example(raw: &[u8], from: Option<&stratus_core::address::Address>) -> Result<(), stratus_auth::Error> {
//! use stratus_auth::Authenticator;
//! # let ip = "192.0.2.1".parse().unwrap();
//! // `None`: /etc/resolv.conf. `Some(addr)`: every lookup goes to that one
//! // server (what `STRATUS_DNS_RESOLVER=IP:PORT` configures).
//! let auth = Authenticator::new(None)?;
//! // At MAIL FROM (`None` is the null reverse-path: SPF then checks the HELO name).
//! let spf = auth.check_mail_from(ip, "mx.sender.example", from, "mx.stratus.example").await;
//! // At the end of DATA/BDAT, with the message as received.
//! let outcome = auth
//!     .check_message(raw, ip, "mx.sender.example", from, &spf, "mx.stratus.example")
//!     .await;
//! // "spf=pass smtp.mailfrom=sender.example; dkim=pass header.d=sender.example
//! //  header.s=sel; dmarc=pass header.from=sender.example; arc=none"
//! let _auth_results: String = outcome.results;
//! // Some(policy) when DMARC failed: Reject → 550 5.7.1 (if configured),
//! // Quarantine → Junk.
//! let _policy = outcome.dmarc_failure;
//! # Ok(()) }
//! ```
//!
//! - [`Authenticator::new`] builds the resolver: a few seconds per query, two
//!   attempts, a small cache (hickory's), no `/etc/hosts`. Without a usable
//!   `/etc/resolv.conf` it falls back to public resolvers (Cloudflare, then
//!   Google) and logs a warning. Build it once and share it (`&self` methods,
//!   `Send + Sync`); the checks run on Tokio.
//! - [`Authenticator::check_mail_from`] returns an [`SpfResult`]: the result
//!   (`pass`, `fail`, `softfail`, `neutral`, `none`, `temperror`,
//!   `permerror`), which identity was checked and the domain. The gateway
//!   keeps it for the end of the data.
//! - [`Authenticator::check_message`] returns an [`AuthOutcome`]:
//!   [`AuthOutcome::results`] (RFC 8601 resinfo list without the authserv-id:
//!   the filter prepends its host name), [`AuthOutcome::dmarc_failure`] (the
//!   policy that applies when DMARC failed, with `sp=`/`np=` for
//!   subdomains and `t=y` already taken into account), and the per-method
//!   results for callers that branch on them.
//!
//! Nothing here panics on bad input or bad DNS: unparsable messages, broken
//! signatures, unreachable or silent resolvers give `none`, `neutral`,
//! `permerror` or `temperror`. Every check runs under a deadline
//! ([`Authenticator::with_deadline`]) and a panic inside mail-auth is caught
//! and reported as `permerror`, so one message never takes a session down.
//! DMARC never reports `fail` when SPF or DKIM could not be evaluated for a
//! temporary reason: that is `temperror`, so a DNS hiccup cannot turn into a
//! `p=reject` refusal.
//!
//! # Layout
//!
//! - `authenticator`: the resolver configuration and the checks.
//! - `arc`: ARC sealing (RFC 8617) of the mail we forward.
//! - `results`: mail-auth's outputs mapped to RFC 8601 results and rendered.
//! - `guard`: deadlines and panic isolation around mail-auth's futures.
//! - `fixture` (feature `fixture`, for tests): a loopback DNS server whose
//!   records tests set (`fixture::DnsFixture`), and DKIM test keys that
//!   sign messages and publish their keys (`fixture::DkimTestKey`,
//!   `fixture::sign_dkim`). Other crates' tests enable it with
//!   `stratus-auth = { workspace = true, features = ["fixture"] }` under
//!   `[dev-dependencies]`.
//!
//! # Known limits (mail-auth 0.12.1)
//!
//! mail-auth 0.12.1 implements DMARC as RFC 9989 (DMARCbis) does: the
//! policy record is found by a DNS tree walk (no public-suffix list), `t=y`
//! lowers the policy one level, and `pct=` is ignored (RFC 9989 removed it),
//! so a failing message from a `p=reject; pct=10` domain is reported as
//! `Reject`.

pub mod arc;
mod authenticator;
mod guard;
mod results;

pub mod dkim;
#[cfg(feature = "fixture")]
pub mod fixture;

pub use authenticator::{Authenticator, DEFAULT_DEADLINE, Error, dns_resolver};
pub use mail_auth::MessageAuthenticator;
pub use results::{AuthOutcome, AuthResult, SpfIdentity, SpfResult};
pub use stratus_core::job::DmarcPolicy;

#[cfg(test)]
mod tests;
