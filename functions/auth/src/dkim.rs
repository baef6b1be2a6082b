//! DKIM signing keys for the domains Stratus hosts: generated at
//! `stratus domain add` (Ed25519, RFC 8463, and RSA-2048 for verifiers
//! that do not know Ed25519), published as TXT records, and used by the
//! send stage to sign outgoing mail with mail-auth.

use mail_auth::common::crypto::{DkimKey as SigningKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;

/// Header fields signed (those the message has).
pub const SIGNED_HEADERS: [&str; 11] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Ed25519,
    Rsa,
}

impl Algorithm {
    /// The `k=` tag.
    pub fn tag(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Rsa => "rsa",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Algorithm> {
        match tag {
            "ed25519" => Some(Algorithm::Ed25519),
            "rsa" => Some(Algorithm::Rsa),
            _ => None,
        }
    }
}

/// A DKIM key: its private half as PKCS#8 DER, and what goes into `p=`
/// (the raw key for Ed25519, a SubjectPublicKeyInfo for RSA).
#[derive(Clone)]
pub struct DkimKey {
    pub algorithm: Algorithm,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

impl std::fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("DkimKey")
            .field("algorithm", &self.algorithm)
            .field("public", &base64(&self.public))
            .finish()
    }
}

impl DkimKey {
    /// A fresh key of the given kind.
    pub fn generate(algorithm: Algorithm) -> Result<DkimKey, String> {
        let pkcs8 = match algorithm {
            Algorithm::Ed25519 => Ed25519Key::generate_pkcs8().map_err(|e| e.to_string())?,
            Algorithm::Rsa => {
                use rsa::pkcs8::EncodePrivateKey;
                let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                    .map_err(|e| e.to_string())?;
                key.to_pkcs8_der()
                    .map_err(|e| e.to_string())?
                    .as_bytes()
                    .to_vec()
            }
        };
        DkimKey::from_pkcs8(algorithm, pkcs8)
    }

    /// A stored key.
    pub fn from_pkcs8(algorithm: Algorithm, pkcs8: Vec<u8>) -> Result<DkimKey, String> {
        let public = match algorithm {
            Algorithm::Ed25519 => Ed25519Key::from_pkcs8_der(&pkcs8)
                .map_err(|e| e.to_string())?
                .public_key(),
            Algorithm::Rsa => rsa_spki(
                &RsaKey::<Sha256>::from_key_der(pkcs8_der(&pkcs8))
                    .map_err(|e| e.to_string())?
                    .public_key(),
            ),
        };
        Ok(DkimKey {
            algorithm,
            pkcs8,
            public,
        })
    }

    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The TXT record to publish at `<selector>._domainkey.<domain>`.
    pub fn dns_record(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm.tag(),
            base64(&self.public)
        )
    }

    pub(crate) fn signing_key(&self) -> Result<SigningKey, String> {
        Ok(match self.algorithm {
            Algorithm::Ed25519 => Ed25519Key::from_pkcs8_der(&self.pkcs8)
                .map_err(|e| e.to_string())?
                .into(),
            Algorithm::Rsa => RsaKey::<Sha256>::from_key_der(pkcs8_der(&self.pkcs8))
                .map_err(|e| e.to_string())?
                .into(),
        })
    }

    /// A `DKIM-Signature:` header field (relaxed/relaxed) for `raw`.
    pub fn sign(&self, raw: &[u8], domain: &str, selector: &str) -> Result<String, String> {
        let signature = DkimSigner::from_key(self.signing_key()?)
            .domain(domain)
            .selector(selector)
            .headers(SIGNED_HEADERS)
            .sign(raw)
            .map_err(|e| e.to_string())?;
        Ok(signature.to_header())
    }
}

fn pkcs8_der(pkcs8: &[u8]) -> rustls_pki_types::PrivateKeyDer<'static> {
    rustls_pki_types::PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(
        pkcs8.to_vec(),
    ))
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo, the form DKIM
/// records carry (and other verifiers expect).
pub(crate) fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption, NULL }
    const ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0x00];
    bit_string.extend_from_slice(pkcs1);
    let mut body = ALGORITHM.to_vec();
    der(&mut body, 0x03, &bit_string);
    let mut out = Vec::new();
    der(&mut out, 0x30, &body);
    out
}

pub(crate) fn der(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
}

pub use stratus_core::base64::encode as base64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_and_sign() {
        for algorithm in [Algorithm::Ed25519, Algorithm::Rsa] {
            let key = DkimKey::generate(algorithm).unwrap();
            let again = DkimKey::from_pkcs8(algorithm, key.pkcs8().to_vec()).unwrap();
            assert_eq!(again.dns_record(), key.dns_record());
            assert!(
                key.dns_record()
                    .starts_with(&format!("v=DKIM1; k={}; p=", algorithm.tag()))
            );
            let header = key
                .sign(
                    b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n",
                    "example.com",
                    "s1",
                )
                .unwrap();
            assert!(header.starts_with("DKIM-Signature: v=1; a="), "{header}");
            assert!(header.contains("d=example.com") && header.contains("s=s1"));
            assert!(
                !format!("{key:?}").contains(&base64(key.pkcs8())),
                "no secret in Debug"
            );
        }
    }
}
