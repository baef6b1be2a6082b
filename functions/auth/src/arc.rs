//! ARC sealing (RFC 8617) of mail we forward: the forwarding address's
//! domain adds an `ARC-Authentication-Results`, `ARC-Message-Signature`
//! and `ARC-Seal` set, so a receiver whose SPF check fails on our address
//! can still see what the message's authentication was when it reached us.
//!
//! mail-auth seals; it takes the results as its own typed outputs, which
//! cannot travel through the queues, so the message is checked again here
//! against what its arrival was (client address, HELO name, envelope
//! sender). Keys are cached by the resolver, and the check runs once per
//! forward, moments after the gateway ran it.

use std::net::IpAddr;

use mail_auth::arc::ArcSealer;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::{AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult};
use stratus_core::address::Address;

use crate::authenticator::Authenticator;
use crate::dkim::{DkimKey, SIGNED_HEADERS};
use crate::guard::guarded;
use crate::results::AuthResult;

/// How a forwarded message reached us.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub ip: IpAddr,
    pub helo: &'a str,
    /// The envelope sender as it arrived (`None`: the null sender).
    pub mail_from: Option<&'a Address>,
}

/// Who seals: the domain of the forwarding address and one of its keys.
#[derive(Debug, Clone, Copy)]
pub struct Sealer<'a> {
    pub key: &'a DkimKey,
    pub domain: &'a str,
    pub selector: &'a str,
    /// The authserv-id of the ARC-Authentication-Results (our host name).
    pub hostname: &'a str,
}

/// Why a message was not sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSealed {
    /// Nothing passed (SPF, DKIM, ARC): there is no valid result to vouch
    /// for.
    #[error("no authentication method passed")]
    NothingPassed,
    /// The chain it arrived with fails: no further set is added.
    #[error("the ARC chain it arrived with has failed")]
    ChainFailed,
    /// A lookup timed out or mail-auth failed.
    #[error("{0}")]
    Error(String),
}

impl Authenticator {
    /// The ARC set (three header fields, CRLF-terminated) that seals
    /// `sending` (the message as it leaves: lines refitted, perhaps 7-bit)
    /// as `sealer` forwards it, when the message arrived with a valid
    /// authentication result: SPF, a DKIM signature or an ARC chain that
    /// passes. The results are those of `arrived` (the message as stored)
    /// and its `arrival`, checked again now.
    pub async fn arc_seal(
        &self,
        arrived: &[u8],
        sending: &[u8],
        arrival: Arrival<'_>,
        sealer: Sealer<'_>,
    ) -> Result<String, NotSealed> {
        let failed = |what: &str| NotSealed::Error(format!("{what} did not finish"));
        let parse = |raw| {
            std::panic::catch_unwind(|| AuthenticatedMessage::parse(raw))
                .ok()
                .flatten()
                .ok_or_else(|| NotSealed::Error("the message could not be parsed".into()))
        };
        let message = parse(arrived)?;
        let outgoing = parse(sending)?;
        let spf = self
            .check_mail_from(arrival.ip, arrival.helo, arrival.mail_from, sealer.hostname)
            .await;
        let (dkim, arc) = tokio::join!(
            guarded(self.deadline, self.inner.verify_dkim(&message)),
            guarded(self.deadline, self.inner.verify_arc(&message)),
        );
        let dkim = dkim.map_err(|_| failed("DKIM"))?;
        let arc = arc.map_err(|_| failed("ARC"))?;
        match arc.result() {
            DkimResult::Pass | DkimResult::None => {}
            // A lookup that failed for now must not end the chain for good
            // (mail-auth would seal it with cv=fail).
            DkimResult::TempError(e) => {
                return Err(NotSealed::Error(format!(
                    "the ARC chain could not be checked: {e}"
                )));
            }
            _ => return Err(NotSealed::ChainFailed),
        }
        let spf_output = spf.to_mail_auth();
        let params = DmarcParameters::new(&message, &dkim, &spf.domain, &spf_output);
        let dmarc = guarded(self.deadline, self.inner.verify_dmarc(params))
            .await
            .map_err(|_| failed("DMARC"))?;

        let passed = spf.result == AuthResult::Pass
            || dkim.iter().any(|d| *d.result() == DkimResult::Pass)
            || *arc.result() == DkimResult::Pass
            || *dmarc.dkim_result() == DmarcResult::Pass
            || *dmarc.spf_result() == DmarcResult::Pass;
        if !passed {
            return Err(NotSealed::NothingPassed);
        }

        let header_from = message
            .from
            .first()
            .and_then(|f| f.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        let results = AuthenticationResults::new(sealer.hostname);
        let results = match arrival.mail_from {
            Some(sender) => results.with_spf_mailfrom_result(
                &spf_output,
                arrival.ip,
                &sender.to_string(),
                arrival.helo,
            ),
            None => results.with_spf_ehlo_result(&spf_output, arrival.ip, arrival.helo),
        };
        let results = results
            .with_dkim_results(&dkim, &header_from)
            .with_dmarc_result(&dmarc)
            .with_arc_result(&arc, arrival.ip);
        let key = sealer.key.signing_key().map_err(NotSealed::Error)?;
        // The message's own DKIM signatures are signed too, as RFC 8617
        // §4.1.2 suggests, so the set vouches for what they covered.
        let headers = SIGNED_HEADERS.iter().copied().chain(["DKIM-Signature"]);
        let set = ArcSealer::from_key(key)
            .domain(sealer.domain)
            .selector(sealer.selector)
            .headers(headers)
            .seal(&outgoing, &results, &arc)
            .map_err(|e| NotSealed::Error(e.to_string()))?;
        use mail_auth::common::headers::HeaderWriter;
        Ok(set.to_header())
    }
}
