//! DANE for SMTP (RFC 7672, with RFC 7671's updates): MX hosts whose TLSA
//! records (`_25._tcp.<host>`) are DNSSEC-secure are authenticated by them
//! rather than by the web PKI.
//!
//! Only DANE-TA(2) and DANE-EE(3) are usable for SMTP (RFC 7672 §3.1.3),
//! with selectors Cert(0) and SPKI(1) and matching types Full(0),
//! SHA2-256(1) and SHA2-512(2); any other record, or a digest of the wrong
//! length, is unusable and ignored.
//!
//! - DANE-EE: the server's own certificate or public key matches; neither
//!   its names nor its dates are checked (RFC 7672 §3.1.1).
//! - DANE-TA: a certificate of the chain the server sent (or, for a `2 0 0`
//!   record, the certificate in the record) matches, and the server's
//!   certificate chains to it, is in date and names the MX host (§3.1.2,
//!   §3.2.2). A `2 1 0` record (a bare public key) cannot anchor a chain
//!   without the certificate it came from and is only usable when the server
//!   sends that certificate, as RFC 7671 §5.2.2 asks servers to.

use std::sync::Arc;

use mail_auth::hickory_resolver::proto::rr::RData;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

const DANE_TA: u8 = 2;
const DANE_EE: u8 = 3;

/// One usable TLSA record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// The record, when it is usable for SMTP.
    pub fn usable(rdata: &RData) -> Option<Tlsa> {
        let RData::TLSA(t) = rdata else { return None };
        let tlsa = Tlsa {
            usage: t.cert_usage.into(),
            selector: t.selector.into(),
            matching: t.matching.into(),
            data: t.cert_data.clone(),
        };
        let length_ok = match tlsa.matching {
            0 => !tlsa.data.is_empty(),
            1 => tlsa.data.len() == 32,
            2 => tlsa.data.len() == 64,
            _ => false,
        };
        (matches!(tlsa.usage, DANE_TA | DANE_EE) && tlsa.selector <= 1 && length_ok).then_some(tlsa)
    }

    /// Whether `cert` is what this record describes.
    fn matches(&self, cert: &CertificateDer<'_>) -> bool {
        let selected: Vec<u8> = match self.selector {
            0 => cert.as_ref().to_vec(),
            _ => match webpki::anchor_from_trusted_cert(cert) {
                Ok(anchor) => webpki::spki_for_anchor(&anchor).as_ref().to_vec(),
                Err(_) => return false,
            },
        };
        match self.matching {
            0 => selected == self.data,
            1 => ring::digest::digest(&ring::digest::SHA256, &selected).as_ref() == self.data,
            2 => ring::digest::digest(&ring::digest::SHA512, &selected).as_ref() == self.data,
            _ => false,
        }
    }
}

/// A TLSA record as a zone file writes it (`3 1 1 ab12...`).
pub fn presentation(rdata: &RData) -> Option<String> {
    let RData::TLSA(t) = rdata else { return None };
    let hex: String = t.cert_data.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!(
        "{} {} {} {hex}",
        u8::from(t.cert_usage),
        u8::from(t.selector),
        u8::from(t.matching)
    ))
}

/// A TLS client for one MX host that accepts only what its TLSA records
/// allow.
pub fn connector(records: Vec<Tlsa>) -> Result<TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(DaneVerifier {
        records,
        provider: provider.clone(),
        signatures: crate::Opportunistic(provider.clone()),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

#[derive(Debug)]
struct DaneVerifier {
    records: Vec<Tlsa>,
    provider: Arc<CryptoProvider>,
    /// The handshake signatures are checked as for any TLS.
    signatures: crate::Opportunistic,
}

impl DaneVerifier {
    /// Whether the chain leads to a certificate a DANE-TA record names, and
    /// the why not of the last attempt.
    fn trust_anchor_ok(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<bool, Error> {
        let mut last = None;
        for record in self.records.iter().filter(|r| r.usage == DANE_TA) {
            let from_record = CertificateDer::from(record.data.as_slice());
            let anchors = intermediates
                .iter()
                .filter(|c| record.matches(c))
                .chain((record.selector == 0 && record.matching == 0).then_some(&from_record));
            for anchor in anchors {
                let Ok(anchor) = webpki::anchor_from_trusted_cert(anchor) else {
                    continue;
                };
                let roots = RootCertStore {
                    roots: vec![anchor.to_owned()],
                };
                let verifier = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    self.provider.clone(),
                )
                .build()
                .map_err(|e| Error::General(e.to_string()))?;
                match verifier.verify_server_cert(end_entity, intermediates, server_name, &[], now)
                {
                    Ok(_) => return Ok(true),
                    Err(e) => last = Some(e),
                }
            }
        }
        match last {
            Some(e) => Err(e),
            None => Ok(false),
        }
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let ee = self
            .records
            .iter()
            .any(|r| r.usage == DANE_EE && r.matches(end_entity));
        if ee || self.trust_anchor_ok(end_entity, intermediates, server_name, now)? {
            return Ok(ServerCertVerified::assertion());
        }
        Err(Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(NoMatch)),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.signatures.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.signatures.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_verify_schemes()
    }
}

/// No TLSA record matches the certificate chain. (Debug is what rustls
/// shows of it.)
struct NoMatch;

impl std::fmt::Debug for NoMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for NoMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no TLSA record matches the certificate chain")
    }
}

impl std::error::Error for NoMatch {}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::hickory_resolver::proto::rr::rdata::TLSA;
    use rcgen::{
        BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PublicKeyData, date_time_ymd,
    };

    fn sha256(data: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, data)
            .as_ref()
            .to_vec()
    }

    fn sha512(data: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA512, data)
            .as_ref()
            .to_vec()
    }

    fn record(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> Tlsa {
        Tlsa::usable(&RData::TLSA(TLSA::new(
            usage.into(),
            selector.into(),
            matching.into(),
            data,
        )))
        .expect("a usable record")
    }

    fn verify(
        records: Vec<Tlsa>,
        ee: &CertificateDer<'_>,
        chain: &[CertificateDer<'_>],
        name: &str,
    ) -> Result<ServerCertVerified, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = DaneVerifier {
            records,
            provider: provider.clone(),
            signatures: crate::Opportunistic(provider),
        };
        let name = ServerName::try_from(name.to_string()).unwrap();
        verifier.verify_server_cert(ee, chain, &name, &[], UnixTime::now())
    }

    #[test]
    fn only_dane_usages_with_known_selectors_and_right_lengths_are_usable() {
        let rdata = |u: u8, s: u8, m: u8, len: usize| {
            RData::TLSA(TLSA::new(u.into(), s.into(), m.into(), vec![7; len]))
        };
        assert!(Tlsa::usable(&rdata(3, 1, 1, 32)).is_some());
        assert!(Tlsa::usable(&rdata(2, 0, 2, 64)).is_some());
        assert!(Tlsa::usable(&rdata(3, 0, 0, 300)).is_some());
        for (u, s, m, len, why) in [
            (0, 1, 1, 32, "PKIX-TA is not for SMTP"),
            (1, 1, 1, 32, "PKIX-EE is not for SMTP"),
            (4, 1, 1, 32, "unknown usage"),
            (3, 2, 1, 32, "unknown selector"),
            (3, 1, 3, 32, "unknown matching type"),
            (3, 1, 1, 31, "a SHA-256 digest is 32 octets"),
            (3, 1, 2, 32, "a SHA-512 digest is 64 octets"),
            (3, 1, 0, 0, "nothing to match"),
        ] {
            assert!(Tlsa::usable(&rdata(u, s, m, len)).is_none(), "{why}");
        }
        let txt = RData::TXT(mail_auth::hickory_resolver::proto::rr::rdata::TXT::new(
            vec!["x".into()],
        ));
        assert!(Tlsa::usable(&txt).is_none());
    }

    /// DANE-EE: the key or the certificate matches, by every matching
    /// type; the certificate's names and dates do not matter.
    #[test]
    fn dane_ee_matches_the_server_key_whatever_its_names_and_dates() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["elsewhere.example".to_string()]).unwrap();
        params.not_before = date_time_ymd(2001, 1, 1);
        params.not_after = date_time_ymd(2002, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().clone();
        let spki = key.subject_public_key_info();
        for r in [
            record(3, 1, 1, sha256(&spki)),
            record(3, 1, 2, sha512(&spki)),
            record(3, 1, 0, spki.clone()),
            record(3, 0, 1, sha256(&der)),
            record(3, 0, 0, der.to_vec()),
        ] {
            let shown = format!("{r:?}");
            verify(vec![r], &der, &[], "mx.example").unwrap_or_else(|e| panic!("{shown}: {e}"));
        }
        let other = KeyPair::generate().unwrap();
        let wrong = record(3, 1, 1, sha256(&other.subject_public_key_info()));
        let e = verify(vec![wrong.clone()], &der, &[], "mx.example").unwrap_err();
        assert!(e.to_string().contains("no TLSA record matches"), "{e}");
        // One matching record among others is enough.
        verify(
            vec![wrong, record(3, 1, 1, sha256(&spki))],
            &der,
            &[],
            "mx.example",
        )
        .unwrap();
    }

    /// A CA, and a leaf it signed for `name` (expired when `expired`).
    fn chain(
        name: &str,
        expired: bool,
    ) -> (CertificateDer<'static>, CertificateDer<'static>, Vec<u8>) {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_spki = ca_key.subject_public_key_info();
        let ca_cert = ca.self_signed(&ca_key).unwrap().der().clone();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(vec![name.to_string()]).unwrap();
        if expired {
            leaf.not_before = date_time_ymd(2001, 1, 1);
            leaf.not_after = date_time_ymd(2002, 1, 1);
        }
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap().der().clone();
        (ca_cert, leaf, ca_spki)
    }

    /// DANE-TA: the chain leads to the named anchor, and the leaf is in
    /// date and names the MX host.
    #[test]
    fn dane_ta_needs_the_anchor_the_name_and_the_dates() {
        let (ca, leaf, ca_spki) = chain("mx.example", false);
        let by_cert = record(2, 0, 1, sha256(&ca));
        let by_key = record(2, 1, 1, sha256(&ca_spki));
        let chain_sent = [ca.clone()];
        verify(vec![by_cert.clone()], &leaf, &chain_sent, "mx.example").unwrap();
        verify(vec![by_key.clone()], &leaf, &chain_sent, "MX.Example").unwrap();
        assert!(verify(vec![by_cert.clone()], &leaf, &chain_sent, "other.example").is_err());
        // The anchor must be sent, unless the record carries it whole.
        assert!(verify(vec![by_cert.clone()], &leaf, &[], "mx.example").is_err());
        verify(vec![record(2, 0, 0, ca.to_vec())], &leaf, &[], "mx.example").unwrap();
        // A DANE-TA record for the leaf's own key does not make it an EE
        // match, and another CA's record does not anchor this chain.
        let (other_ca, _, _) = chain("mx.example", false);
        assert!(
            verify(
                vec![record(2, 0, 1, sha256(&other_ca))],
                &leaf,
                &chain_sent,
                "mx.example"
            )
            .is_err()
        );
        let (ca, expired, _) = chain("mx.example", true);
        let e = verify(
            vec![record(2, 0, 1, sha256(&ca))],
            &expired,
            &[ca],
            "mx.example",
        )
        .unwrap_err();
        assert!(e.to_string().to_lowercase().contains("expired"), "{e}");
    }
}
