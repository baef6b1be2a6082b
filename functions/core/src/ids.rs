//! Identifiers: the internal queue id, RFC 5322 message ids, blob keys.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("queue id `{0}` is not 26 Crockford base32 characters")]
    QueueId(String),
    #[error("message id `{0}` is not of the form <left@right> (RFC 5322 §3.6.4)")]
    MessageId(String),
    #[error("blob key `{0}` is invalid: {1}")]
    BlobKey(String, &'static str),
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The id Stratus gives a message when it accepts it. It keys idempotency in
/// every stage (never the Message-ID header, which senders reuse or omit) and
/// appears in the SMTP 250 reply. 48 bits of milliseconds then 80 random bits,
/// in Crockford base32, so ids sort by acceptance time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QueueId(String);

impl QueueId {
    pub fn generate() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Self::generate_at(millis as u64)
    }

    /// A new id as if made at `millis` (Unix milliseconds): for messages
    /// imported with their own time, and tests of what age decides.
    pub fn generate_at(millis: u64) -> Self {
        let millis = u128::from(millis);
        let mut random = [0u8; 10];
        fill_random(&mut random);
        let mut value: u128 = (millis & 0xFFFF_FFFF_FFFF) << 80;
        for (i, b) in random.iter().enumerate() {
            value |= (*b as u128) << (8 * (9 - i));
        }
        let mut out = [0u8; 26];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 5 * (25 - i);
            *slot = CROCKFORD[((value >> shift) & 0x1F) as usize];
        }
        QueueId(String::from_utf8_lossy(&out).into_owned())
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        let upper = s.to_ascii_uppercase();
        if upper.len() == 26
            && upper.bytes().all(|b| CROCKFORD.contains(&b))
            && upper.as_bytes()[0] <= b'7'
        {
            Ok(QueueId(upper))
        } else {
            Err(IdError::QueueId(s.into()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the id was made (Unix seconds): its first 48 bits.
    pub fn unix_seconds(&self) -> i64 {
        let millis = self.0.bytes().take(10).fold(0u64, |acc, b| {
            let digit = CROCKFORD.iter().position(|c| *c == b).unwrap_or(0) as u64;
            (acc << 5) | digit
        });
        (millis / 1000) as i64
    }

    /// The id of a message made from this one (a DSN about it), named by
    /// `tag`: the same time, and 80 bits that depend only on this id and
    /// `tag`, so making it again gives the same id and keeps idempotency.
    pub fn derived(&self, tag: &str) -> QueueId {
        // Two FNV-1a hashes with different offsets. Not a defence against
        // anyone choosing ids, which nobody outside can.
        let bytes = || self.0.bytes().chain([b'|']).chain(tag.bytes());
        let fnv = |offset: u64| fnv1a(bytes(), offset);
        let bits = (u128::from(fnv(FNV_OFFSET)) << 64) | u128::from(fnv(0x6c62_272e_07bb_0142));
        let mut out = self.0.as_bytes()[..10].to_vec();
        for i in 0..16 {
            out.push(CROCKFORD[((bits >> (5 * i)) & 0x1F) as usize]);
        }
        QueueId(String::from_utf8_lossy(&out).into_owned())
    }
}

/// The standard FNV-1a offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The 64-bit FNV-1a hash of `bytes`, from `offset` (usually
/// [`FNV_OFFSET`]): stable across builds and processes, unlike std's
/// hasher, for ids that must come out the same every time.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>, offset: u64) -> u64 {
    bytes.into_iter().fold(offset, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Fills `buf` from the operating system's random source.
pub fn fill_random(buf: &mut [u8]) {
    // Without an OS random source nothing about accounts or ids is safe; this
    // cannot fail on the platforms Stratus runs on.
    getrandom::fill(buf).expect("the operating system's random source is unavailable");
}

/// A random token of `n` bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    fill_random(&mut buf);
    to_hex(&buf)
}

/// `bytes` as lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `data` as lower-case hex: how stored tokens (API keys,
/// web sessions) are kept without the token itself.
pub fn sha256_hex(data: &[u8]) -> String {
    to_hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// Whether `given` is `secret` (a token, a key), compared by their SHA-256
/// digests in constant time: how long it takes tells nothing of either,
/// their lengths included.
pub fn secrets_match(secret: &[u8], given: &[u8]) -> bool {
    let digest = |b: &[u8]| ring::digest::digest(&ring::digest::SHA256, b);
    let (a, b) = (digest(secret), digest(given));
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for QueueId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        QueueId::parse(&s)
    }
}

impl From<QueueId> for String {
    fn from(q: QueueId) -> String {
        q.0
    }
}

/// An RFC 5322 `msg-id`, stored without its angle brackets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageId(String);

impl MessageId {
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let s = input.trim();
        let inner = s
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(s);
        let valid = inner.len() <= 995
            && inner.split_once('@').is_some_and(|(l, r)| {
                !l.is_empty()
                    && !r.is_empty()
                    && !r.contains('@')
                    && inner
                        .chars()
                        .all(|c| !c.is_whitespace() && !c.is_control() && c != '<' && c != '>')
            });
        if valid {
            Ok(MessageId(inner.to_string()))
        } else {
            Err(IdError::MessageId(input.into()))
        }
    }

    /// A fresh id for messages that arrive without one.
    pub fn generate(host: &str) -> Self {
        MessageId(format!(
            "{}.{}@{}",
            QueueId::generate(),
            random_hex(4),
            host
        ))
    }

    /// The id without angle brackets.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.0)
    }
}

impl TryFrom<String> for MessageId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        MessageId::parse(&s)
    }
}

impl From<MessageId> for String {
    fn from(m: MessageId) -> String {
        m.to_string()
    }
}

/// The key of an object in the blob store: `/`-separated segments of
/// `[A-Za-z0-9._=-]`, no empty, `.` or `..` segment, at most 512 bytes. The
/// same key is a valid S3 key and a safe relative path on disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlobKey(String);

impl BlobKey {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() || s.len() > 512 {
            return Err(IdError::BlobKey(s.into(), "must be 1 to 512 bytes"));
        }
        for seg in s.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." {
                return Err(IdError::BlobKey(s.into(), "empty, `.` or `..` segment"));
            }
            if seg.starts_with(".tmp") {
                return Err(IdError::BlobKey(
                    s.into(),
                    "segments starting with `.tmp` are reserved",
                ));
            }
            if !seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._=-".contains(&b))
            {
                return Err(IdError::BlobKey(
                    s.into(),
                    "only letters, digits and `._=-` are allowed",
                ));
            }
        }
        Ok(BlobKey(s.to_string()))
    }

    /// Where the body of an accepted message lives.
    pub fn for_message(id: &QueueId) -> Self {
        BlobKey(format!("msg/{}/{}", &id.as_str()[..6], id.as_str()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for BlobKey {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        BlobKey::parse(&s)
    }
}

impl From<BlobKey> for String {
    fn from(k: BlobKey) -> String {
        k.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_is_the_digest_in_small_letters() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(to_hex(&[0, 0xab]), "00ab");
    }
    use std::collections::HashSet;

    #[test]
    fn derived_ids_are_stable_distinct_and_valid() {
        let id = QueueId::parse("01M8H176YXYGEJJBDG2B3JFWQE").unwrap();
        let a = id.derived("failed|example.org|0");
        assert_eq!(a, id.derived("failed|example.org|0"), "stable");
        assert_eq!(QueueId::parse(a.as_str()).unwrap(), a);
        assert_eq!(&a.as_str()[..10], &id.as_str()[..10], "same time");
        let others: HashSet<QueueId> = [
            id.clone(),
            a.clone(),
            id.derived("failed|example.org|1"),
            id.derived("failed|example.net|0"),
            id.derived("delayed|example.org"),
            QueueId::parse("01M8H176YXYGEJJBDG2B3JFWQF")
                .unwrap()
                .derived("failed|example.org|0"),
        ]
        .into_iter()
        .collect();
        assert_eq!(others.len(), 6);
    }

    #[test]
    fn queue_ids_are_unique_sortable_and_parse_back() {
        let ids: Vec<QueueId> = (0..1000).map(|_| QueueId::generate()).collect();
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1000);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            (ids[0].unix_seconds() - now).abs() <= 1,
            "the id's own time"
        );
        assert_eq!(
            QueueId::parse("01M8H176YXYGEJJBDG2B3JFWQE")
                .unwrap()
                .unix_seconds(),
            1_795_868_040
        );
        for id in &ids {
            assert_eq!(&QueueId::parse(id.as_str()).unwrap(), id);
            assert_eq!(&QueueId::parse(&id.as_str().to_lowercase()).unwrap(), id);
        }
        let first = QueueId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(QueueId::generate() > first);
        assert!(QueueId::parse("short").is_err());
        assert!(
            QueueId::parse("UUUUUUUUUUUUUUUUUUUUUUUUUU").is_err(),
            "U is not Crockford"
        );
    }

    #[test]
    fn message_ids() {
        assert_eq!(MessageId::parse("<a.b@c>").unwrap().as_str(), "a.b@c");
        assert_eq!(MessageId::parse("a.b@c").unwrap().to_string(), "<a.b@c>");
        for bad in ["", "<>", "<nohost>", "<a@b@c>", "<a b@c>", "<@c>"] {
            assert!(MessageId::parse(bad).is_err(), "{bad}");
        }
        assert!(
            MessageId::generate("mx.example.com")
                .as_str()
                .ends_with("@mx.example.com")
        );
    }

    #[test]
    fn blob_keys_are_safe_paths() {
        assert!(BlobKey::parse("msg/01ABC/01ABCDEF").is_ok());
        for bad in [
            "", "/abs", "a//b", "a/../b", "..", "a/./b", "a b", "a\\b", "x/.tmp-1", "é",
        ] {
            assert!(BlobKey::parse(bad).is_err(), "{bad}");
        }
        let id = QueueId::generate();
        assert!(BlobKey::for_message(&id).as_str().ends_with(id.as_str()));
    }
}
