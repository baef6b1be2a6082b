//! The seam where message authentication plugs in: SPF at MAIL FROM, DKIM,
//! DMARC and ARC at the end of the data, before the final reply.
//!
//! A [`MessageAuth`] (one per server, in [`crate::smtp::Context::auth`])
//! starts one [`Verification`] per mail transaction; the session calls it at
//! MAIL FROM and once the message is complete, and acts on what it says.
//! The verification object keeps whatever it learnt at MAIL FROM (the SPF
//! result DMARC needs) until the end of the data. [`MailAuth`], which
//! `stratus serve` uses, runs the `stratus-auth` crate's `Authenticator`
//! (`check_mail_from` in [`Verification::mail_from`], `check_message` in
//! [`Verification::message`]); [`Unverified`] checks nothing and reports
//! `none` everywhere, for tests that are not about authentication.
//!
//! What the session does with the answers:
//! - `Some(reply)` from [`Verification::mail_from`] refuses MAIL FROM.
//! - [`MessageVerdict::refuse`] refuses the message outright (e.g. a 451 on
//!   a DNS failure, where an implementation prefers a retry to a guess).
//! - A DMARC failure under `p=reject` ([`MessageVerdict::dmarc_failure`])
//!   is refused with 550 5.7.1 when
//!   [`stratus_runtime::config::SmtpLimits::reject_dmarc_failures`] is set; any other
//!   failure policy travels with the job
//!   ([`stratus_core::job::Accepted::dmarc_failure`]) for the filter to file
//!   the message to Junk.
//! - [`MessageVerdict::results`] becomes the job's `auth_results`.

use std::fmt;
use std::net::IpAddr;

use async_trait::async_trait;
use stratus_core::address::Address;
use stratus_core::job::DmarcPolicy;

use stratus_proto::smtp::reply::Reply;

/// Who is talking to us, and who we are.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub ip: IpAddr,
    /// The EHLO/HELO name.
    pub helo: &'a str,
    /// Our host name (SPF's `%{r}`).
    pub hostname: &'a str,
}

/// What DKIM, DMARC and ARC (and SPF, carried over) said about a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageVerdict {
    /// The value of an Authentication-Results field without its authserv-id
    /// (the filter adds that): `spf=pass smtp.mailfrom=example.org; dkim=...`.
    pub results: String,
    /// `Some(policy)` when DMARC failed: the policy that applies.
    pub dmarc_failure: Option<DmarcPolicy>,
    /// The policy the From domain publishes, pass or fail.
    pub author_policy: Option<DmarcPolicy>,
    /// Refuse the message with this reply, whatever else is true.
    pub refuse: Option<Reply>,
}

/// Starts the checks of one mail transaction.
pub trait MessageAuth: Send + Sync + fmt::Debug {
    fn start(&self) -> Box<dyn Verification>;
}

/// The checks of one mail transaction.
#[async_trait]
pub trait Verification: Send + Sync + fmt::Debug {
    /// At MAIL FROM (`None`: the null reverse-path). `Some` refuses the
    /// sender with that reply.
    async fn mail_from(&mut self, client: Client<'_>, mail_from: Option<&Address>)
    -> Option<Reply>;

    /// At the end of DATA/BDAT, with the message as received (without our
    /// `Received:` field).
    async fn message(
        &mut self,
        client: Client<'_>,
        mail_from: Option<&Address>,
        message: &[u8],
    ) -> MessageVerdict;
}

/// Checks nothing: every result is `none`. Stands in until mail-auth is
/// wired in.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unverified;

impl MessageAuth for Unverified {
    fn start(&self) -> Box<dyn Verification> {
        Box::new(Unverified)
    }
}

#[async_trait]
impl Verification for Unverified {
    async fn mail_from(&mut self, _: Client<'_>, _: Option<&Address>) -> Option<Reply> {
        None
    }

    async fn message(
        &mut self,
        _: Client<'_>,
        mail_from: Option<&Address>,
        _: &[u8],
    ) -> MessageVerdict {
        let mut results = String::from("spf=none");
        if let Some(from) = mail_from {
            results.push_str(&format!(" smtp.mailfrom={}", from.domain()));
        }
        results.push_str("; dkim=none; arc=none; dmarc=none");
        MessageVerdict {
            results,
            ..MessageVerdict::default()
        }
    }
}

/// The real checks: SPF, DKIM, DMARC and ARC with mail-auth, DNS through
/// hickory (`STRATUS_DNS_RESOLVER`), from the `stratus-auth` crate.
#[derive(Debug, Clone)]
pub struct MailAuth {
    auth: stratus_auth::Authenticator,
}

impl MailAuth {
    pub fn new(auth: stratus_auth::Authenticator) -> Self {
        MailAuth { auth }
    }
}

impl MessageAuth for MailAuth {
    fn start(&self) -> Box<dyn Verification> {
        Box::new(MailAuthVerification {
            auth: self.auth.clone(),
            spf: None,
        })
    }
}

#[derive(Debug)]
struct MailAuthVerification {
    auth: stratus_auth::Authenticator,
    /// The SPF result of MAIL FROM, which DMARC needs at the end.
    spf: Option<stratus_auth::SpfResult>,
}

#[async_trait]
impl Verification for MailAuthVerification {
    async fn mail_from(
        &mut self,
        client: Client<'_>,
        mail_from: Option<&Address>,
    ) -> Option<Reply> {
        let spf = self
            .auth
            .check_mail_from(client.ip, client.helo, mail_from, client.hostname)
            .await;
        tracing::debug!(spf = %spf.resinfo(), "SPF checked");
        self.spf = Some(spf);
        // An SPF failure alone refuses nothing: DMARC decides with DKIM.
        None
    }

    async fn message(
        &mut self,
        client: Client<'_>,
        mail_from: Option<&Address>,
        message: &[u8],
    ) -> MessageVerdict {
        let spf = match self.spf.take() {
            Some(spf) => spf,
            None => {
                self.auth
                    .check_mail_from(client.ip, client.helo, mail_from, client.hostname)
                    .await
            }
        };
        let outcome = self
            .auth
            .check_message(
                message,
                client.ip,
                client.helo,
                mail_from,
                &spf,
                client.hostname,
            )
            .await;
        MessageVerdict {
            results: outcome.results,
            dmarc_failure: outcome.dmarc_failure,
            author_policy: outcome.author_policy,
            refuse: None,
        }
    }
}

/// What the session should answer, given the verdict: `Some` refuses.
pub fn refusal(verdict: &MessageVerdict, reject_dmarc_failures: bool) -> Option<Reply> {
    if let Some(reply) = &verdict.refuse {
        return Some(reply.clone());
    }
    if reject_dmarc_failures && verdict.dmarc_failure == Some(DmarcPolicy::Reject) {
        return Some(Reply::new(
            550,
            "5.7.1",
            "message rejected by the sender domain's DMARC policy",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client<'static> {
        Client {
            ip: "192.0.2.1".parse().unwrap(),
            helo: "c.example",
            hostname: "mx.example",
        }
    }

    #[tokio::test]
    async fn unverified_reports_none() {
        let from = Address::parse("bounce@sender.example").unwrap();
        let mut v = Unverified.start();
        assert_eq!(v.mail_from(client(), Some(&from)).await, None);
        let verdict = v
            .message(client(), Some(&from), b"Subject: x\r\n\r\n")
            .await;
        assert_eq!(
            verdict.results,
            "spf=none smtp.mailfrom=sender.example; dkim=none; arc=none; dmarc=none"
        );
        assert_eq!(verdict.dmarc_failure, None);
        assert_eq!(refusal(&verdict, true), None);
        let bounce = Unverified.start().message(client(), None, b"").await;
        assert_eq!(bounce.results, "spf=none; dkim=none; arc=none; dmarc=none");
    }

    #[test]
    fn only_a_dmarc_reject_failure_is_refused_and_only_when_configured() {
        let reject = MessageVerdict {
            dmarc_failure: Some(DmarcPolicy::Reject),
            ..MessageVerdict::default()
        };
        assert_eq!(refusal(&reject, true).unwrap().code, 550);
        assert_eq!(refusal(&reject, false), None);
        let quarantine = MessageVerdict {
            dmarc_failure: Some(DmarcPolicy::Quarantine),
            ..MessageVerdict::default()
        };
        assert_eq!(refusal(&quarantine, true), None);
        let temp = MessageVerdict {
            refuse: Some(Reply::new(451, "4.7.5", "DNS failure")),
            ..MessageVerdict::default()
        };
        assert_eq!(refusal(&temp, false).unwrap().code, 451);
    }
}
