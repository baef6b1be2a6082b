//! Results as RFC 8601 names them, mapped from mail-auth's outputs, and the
//! Authentication-Results value built from them.

use std::fmt::{self, Write as _};

use mail_auth::dkim::DkimError;
use mail_auth::{DkimOutput, DkimResult, DmarcOutput, DmarcResult, DnsError};
use stratus_core::job::DmarcPolicy;

/// The result of one method (RFC 8601 §2.7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AuthResult {
    #[default]
    None,
    Pass,
    Fail,
    SoftFail,
    Neutral,
    Policy,
    TempError,
    PermError,
}

impl AuthResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::None => "none",
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::SoftFail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::Policy => "policy",
            AuthResult::TempError => "temperror",
            AuthResult::PermError => "permerror",
        }
    }
}

impl fmt::Display for AuthResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which identity SPF checked (RFC 7208 §2.3, §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpfIdentity {
    /// The MAIL FROM domain.
    MailFrom,
    /// The HELO/EHLO name, for the null reverse-path `<>`.
    Helo,
}

/// What SPF said at MAIL FROM; kept by the session for the end of the data,
/// where DMARC needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfResult {
    pub result: AuthResult,
    pub identity: SpfIdentity,
    /// The domain checked: the MAIL FROM domain, or the HELO name.
    pub domain: String,
}

impl SpfResult {
    /// The `spf=` resinfo: `spf=pass smtp.mailfrom=example.org`.
    pub fn resinfo(&self) -> String {
        let ptype = match self.identity {
            SpfIdentity::MailFrom => "smtp.mailfrom",
            SpfIdentity::Helo => "smtp.helo",
        };
        let mut out = format!("spf={}", self.result);
        if !self.domain.is_empty() {
            let _ = write!(out, " {ptype}={}", pvalue(&self.domain));
        }
        out
    }

    pub(crate) fn to_mail_auth(&self) -> mail_auth::SpfOutput {
        let result = match self.result {
            AuthResult::Pass => mail_auth::SpfResult::Pass,
            AuthResult::Fail => mail_auth::SpfResult::Fail,
            AuthResult::SoftFail => mail_auth::SpfResult::SoftFail,
            AuthResult::Neutral => mail_auth::SpfResult::Neutral,
            AuthResult::TempError => mail_auth::SpfResult::TempError,
            AuthResult::PermError => mail_auth::SpfResult::PermError,
            AuthResult::None | AuthResult::Policy => mail_auth::SpfResult::None,
        };
        mail_auth::SpfOutput::new(self.domain.clone()).with_result(result)
    }
}

pub(crate) fn spf_result(result: mail_auth::SpfResult) -> AuthResult {
    match result {
        mail_auth::SpfResult::Pass => AuthResult::Pass,
        mail_auth::SpfResult::Fail => AuthResult::Fail,
        mail_auth::SpfResult::SoftFail => AuthResult::SoftFail,
        mail_auth::SpfResult::Neutral => AuthResult::Neutral,
        mail_auth::SpfResult::TempError => AuthResult::TempError,
        mail_auth::SpfResult::PermError => AuthResult::PermError,
        mail_auth::SpfResult::None => AuthResult::None,
    }
}

/// What DKIM, DMARC and ARC said about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOutcome {
    /// The value of an Authentication-Results header without the
    /// authserv-id: `spf=pass smtp.mailfrom=example.org; dkim=pass
    /// header.d=example.org header.s=sel; dmarc=pass
    /// header.from=example.org; arc=none`. One line: values taken from the
    /// message are quoted unless they are MIME tokens, and control
    /// characters in them are replaced, so it can go into a header as is.
    pub results: String,
    /// `Some(policy)` when DMARC failed: the policy that applies to the
    /// RFC5322.From domain (`sp=`/`np=` for subdomains, `t=y` lowering it).
    pub dmarc_failure: Option<DmarcPolicy>,
    /// The policy the RFC5322.From domain publishes, pass or fail, when
    /// it has a DMARC record.
    pub author_policy: Option<DmarcPolicy>,
    /// The best DKIM result: `pass` if any signature passed, otherwise the
    /// first signature's result, `none` without signatures.
    pub dkim: AuthResult,
    pub dmarc: AuthResult,
    pub arc: AuthResult,
    /// The RFC5322.From domain DMARC evaluated, when there was one.
    pub header_from: Option<String>,
}

/// How many `dkim=` entries the header value lists at most.
const MAX_DKIM_RESINFOS: usize = 10;

/// One DKIM signature's result, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DkimVerdict {
    pub result: AuthResult,
    pub reason: Option<&'static str>,
    pub domain: Option<String>,
    pub selector: Option<String>,
}

impl DkimVerdict {
    pub fn from_output(output: &DkimOutput<'_>) -> Self {
        let (result, reason) = dkim_result(output.result());
        DkimVerdict {
            result,
            reason,
            domain: output.signature().map(|s| s.d.clone()),
            selector: output.signature().map(|s| s.s.clone()),
        }
    }

    pub fn without_signature(result: AuthResult, reason: &'static str) -> Self {
        DkimVerdict {
            result,
            reason: Some(reason),
            domain: None,
            selector: None,
        }
    }
}

/// RFC 6376 §6.1 and RFC 8601 §2.7.1: a signature that does not verify —
/// including a body hash that does not match — is `fail`; mail-auth reports
/// the body hash case as neutral, which would hide a modified message.
pub(crate) fn dkim_result(result: &DkimResult) -> (AuthResult, Option<&'static str>) {
    match result {
        DkimResult::Pass => (AuthResult::Pass, None),
        DkimResult::None => (AuthResult::None, None),
        DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            (AuthResult::Fail, Some("body hash did not verify"))
        }
        DkimResult::Neutral(err) => (AuthResult::Neutral, Some(reason(err))),
        DkimResult::Fail(err) => (AuthResult::Fail, Some(reason(err))),
        DkimResult::PermError(err) => (AuthResult::PermError, Some(reason(err))),
        DkimResult::TempError(err) => (AuthResult::TempError, Some(reason(err))),
    }
}

/// RFC 8617 §2.2.3 names only `none`, `pass` and `fail` for ARC; a DNS
/// failure stays `temperror` so it is not mistaken for a broken chain.
pub(crate) fn arc_result(result: &DkimResult) -> (AuthResult, Option<&'static str>) {
    match result {
        DkimResult::Pass => (AuthResult::Pass, None),
        DkimResult::None => (AuthResult::None, None),
        DkimResult::TempError(err) => (AuthResult::TempError, Some(reason(err))),
        DkimResult::Neutral(err) | DkimResult::Fail(err) | DkimResult::PermError(err) => {
            (AuthResult::Fail, Some(reason(err)))
        }
    }
}

/// DMARC's verdict on a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DmarcVerdict {
    pub result: AuthResult,
    pub reason: Option<&'static str>,
    pub header_from: Option<String>,
    /// The policy that applies, when a record was found.
    pub policy: Option<DmarcPolicy>,
}

impl DmarcVerdict {
    /// `dkim_unsure`: a DKIM signature could not be checked (a DNS
    /// temperror, a timeout); `spf_unsure`: the same for SPF. Either turns
    /// a would-be `fail` into `temperror`: DMARC's verdict rests on those
    /// results (RFC 7489 §6.6.2), and a guess must not reject mail.
    pub fn from_output(output: &DmarcOutput, spf_unsure: bool, dkim_unsure: bool) -> Self {
        let header_from = (!output.domain().is_empty()).then(|| output.domain().to_string());
        let (spf, dkim) = (output.spf_result(), output.dkim_result());
        let policy = output.dmarc_record().map(|_| policy(output.policy()));
        let (result, reason) = if *spf == DmarcResult::Pass || *dkim == DmarcResult::Pass {
            (AuthResult::Pass, None)
        } else if let Some(err) = [spf, dkim].into_iter().find_map(|r| match r {
            DmarcResult::TempError(err) => Some(err),
            _ => None,
        }) {
            (AuthResult::TempError, Some(reason(err)))
        } else if let Some(err) = [spf, dkim].into_iter().find_map(|r| match r {
            DmarcResult::PermError(err) => Some(err),
            _ => None,
        }) {
            (AuthResult::PermError, Some(reason(err)))
        } else if policy.is_none() {
            (AuthResult::None, None)
        } else if spf_unsure || dkim_unsure {
            (
                AuthResult::TempError,
                Some("spf or dkim could not be checked"),
            )
        } else {
            (AuthResult::Fail, None)
        };
        DmarcVerdict {
            result,
            reason,
            header_from,
            policy,
        }
    }

    pub fn failure(&self) -> Option<DmarcPolicy> {
        (self.result == AuthResult::Fail)
            .then_some(self.policy)
            .flatten()
    }
}

fn policy(policy: mail_auth::dmarc::Policy) -> DmarcPolicy {
    match policy {
        mail_auth::dmarc::Policy::Reject => DmarcPolicy::Reject,
        mail_auth::dmarc::Policy::Quarantine => DmarcPolicy::Quarantine,
        mail_auth::dmarc::Policy::None | mail_auth::dmarc::Policy::Unspecified => DmarcPolicy::None,
    }
}

fn policy_name(policy: DmarcPolicy) -> &'static str {
    match policy {
        DmarcPolicy::None => "p=none",
        DmarcPolicy::Quarantine => "p=quarantine",
        DmarcPolicy::Reject => "p=reject",
    }
}

/// A short, fixed comment for a mail-auth error: never text from the
/// message or the DNS, so nothing a sender controls reaches the header.
pub(crate) fn reason(err: &mail_auth::Error) -> &'static str {
    use mail_auth::Error as E;
    use mail_auth::arc::ArcError;
    use mail_auth::common::crypto::CryptoError;
    match err {
        E::ParseError => "record or signature could not be parsed",
        E::MissingParameters => "missing parameters",
        E::NoHeadersFound => "no headers found",
        E::Base64 => "base64 error",
        E::NotAligned => "not aligned",
        E::Io(_) => "i/o error",
        E::Crypto(CryptoError::FailedVerification | CryptoError::Library(_)) => {
            "signature did not verify"
        }
        E::Crypto(CryptoError::IncompatibleAlgorithms) => "key and signature algorithms differ",
        E::Dns(DnsError::Resolver(_)) => "dns error",
        E::Dns(DnsError::RecordNotFound(_)) => "no key for signature",
        E::Dns(DnsError::InvalidRecordType) => "invalid dns record",
        E::Dkim(DkimError::UnsupportedVersion) => "unsupported version",
        E::Dkim(DkimError::UnsupportedAlgorithm) => "unsupported algorithm",
        E::Dkim(DkimError::UnsupportedCanonicalization) => "unsupported canonicalization",
        E::Dkim(DkimError::UnsupportedKeyType) => "unsupported key type",
        E::Dkim(DkimError::FailedBodyHashMatch) => "body hash did not verify",
        E::Dkim(DkimError::FailedAuidMatch) => "auid does not match",
        E::Dkim(DkimError::RevokedPublicKey) => "revoked key",
        E::Dkim(DkimError::SignatureExpired) => "signature expired",
        E::Dkim(DkimError::SignatureLength) => "l= tag not accepted",
        E::Arc(ArcError::ChainTooLong) => "too many ARC sets",
        E::Arc(ArcError::InvalidInstance(_)) => "invalid ARC instance",
        E::Arc(ArcError::InvalidCV) => "invalid ARC cv",
        E::Arc(ArcError::HasHeaderTag) => "ARC seal has h= tag",
        E::Arc(ArcError::BrokenChain) => "broken ARC chain",
        E::Arc(ArcError::FailedBodyHashMatch) => "body hash did not verify",
        E::Arc(ArcError::SignatureExpired) => "signature expired",
        E::Arc(ArcError::SignatureLength) => "l= tag not accepted",
        E::Dkim2(_) => "dkim2 error",
    }
}

/// Everything one message's Authentication-Results value is made of.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    pub spf: &'a SpfResult,
    pub dkim: Vec<DkimVerdict>,
    pub dmarc: DmarcVerdict,
    pub arc: (AuthResult, Option<&'static str>),
}

impl Report<'_> {
    pub fn into_outcome(self) -> AuthOutcome {
        let mut out = self.spf.resinfo();
        if self.dkim.is_empty() {
            out.push_str("; dkim=none");
        }
        // A message can carry any number of signatures; the header need not.
        for dkim in self.dkim.iter().take(MAX_DKIM_RESINFOS) {
            let _ = write!(out, "; dkim={}", dkim.result);
            comment(&mut out, dkim.reason);
            if let Some(d) = &dkim.domain {
                let _ = write!(out, " header.d={}", pvalue(d));
            }
            if let Some(s) = &dkim.selector {
                let _ = write!(out, " header.s={}", pvalue(s));
            }
        }
        let _ = write!(out, "; dmarc={}", self.dmarc.result);
        let dmarc_reason = match (self.dmarc.result, self.dmarc.policy) {
            (AuthResult::Fail, Some(p)) => Some(policy_name(p)),
            _ => self.dmarc.reason,
        };
        comment(&mut out, dmarc_reason);
        if let Some(from) = &self.dmarc.header_from {
            let _ = write!(out, " header.from={}", pvalue(from));
        }
        let _ = write!(out, "; arc={}", self.arc.0);
        comment(&mut out, self.arc.1);

        let dkim = if self.dkim.iter().any(|d| d.result == AuthResult::Pass) {
            AuthResult::Pass
        } else {
            self.dkim.first().map_or(AuthResult::None, |d| d.result)
        };
        AuthOutcome {
            results: out,
            dmarc_failure: self.dmarc.failure(),
            author_policy: self.dmarc.policy,
            dkim,
            dmarc: self.dmarc.result,
            arc: self.arc.0,
            header_from: self.dmarc.header_from,
        }
    }
}

fn comment(out: &mut String, reason: Option<&'static str>) {
    if let Some(reason) = reason {
        let _ = write!(out, " ({reason})");
    }
}

/// An RFC 8601 `pvalue`: a MIME token as is, anything else as a quoted
/// string. Control characters (CR and LF above all: this text becomes a
/// header) are replaced, so a hostile `d=` cannot add header lines.
pub(crate) fn pvalue(value: &str) -> String {
    const TSPECIALS: &str = "()<>@,;:\\\"/[]?=";
    let is_token = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && !TSPECIALS.contains(c));
    if is_token {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvalues_are_tokens_or_safe_quoted_strings() {
        assert_eq!(pvalue("example.org"), "example.org");
        assert_eq!(pvalue("[192.0.2.1]"), "\"[192.0.2.1]\"");
        assert_eq!(pvalue("a\r\nX-Evil: 1"), "\"a??X-Evil: 1\"");
        assert_eq!(pvalue("a\"b\\"), "\"a\\\"b\\\\\"");
        assert_eq!(pvalue(""), "\"\"");
    }

    #[test]
    fn spf_resinfo_names_the_identity() {
        let spf = SpfResult {
            result: AuthResult::Pass,
            identity: SpfIdentity::MailFrom,
            domain: "example.org".into(),
        };
        assert_eq!(spf.resinfo(), "spf=pass smtp.mailfrom=example.org");
        let helo = SpfResult {
            result: AuthResult::None,
            identity: SpfIdentity::Helo,
            domain: "[192.0.2.1]".into(),
        };
        assert_eq!(helo.resinfo(), "spf=none smtp.helo=\"[192.0.2.1]\"");
    }

    #[test]
    fn a_body_hash_mismatch_is_a_fail() {
        let (result, reason) = dkim_result(&DkimResult::Neutral(mail_auth::Error::Dkim(
            DkimError::FailedBodyHashMatch,
        )));
        assert_eq!(result, AuthResult::Fail);
        assert_eq!(reason, Some("body hash did not verify"));
    }
}
