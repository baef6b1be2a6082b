//! The Sender Rewriting Scheme for forwarded mail: a forward leaves with
//! an envelope sender under the forwarding address's domain, so the next
//! hop's SPF check is of our domain, not the original sender's; a bounce
//! to that address comes back here and is returned to the original
//! sender. Only we decode our addresses, so the hash is ours to choose.
//!
//! Forms (the local part; the domain is the forwarder's):
//! - `SRS0=HHHHHHHH=TT=domain=local`: a first forward of
//!   `local@domain`. `HHHHHHHH` is a keyed hash (HMAC-SHA256, 40 bits in
//!   base32) of the rest, `TT` the day it was made (base32, modulo 1024),
//!   so an address stops working after the configured number of days.
//! - `SRS1=HHHHHHHH=host==HHHH=TT=domain=local`: a forward of mail that
//!   another forwarder (`host`) had already rewritten to SRS0; a bounce
//!   goes back to that forwarder's SRS0 address. An SRS1 address is
//!   rewritten again by keeping the first forwarder.
//! - `SRS0=HHHHHHHH=TT==ID`: the standard form would not fit the 64
//!   octets of a local part, so the original address is kept in the index
//!   (row `srs` | `ID`, `ID` derived from the address) and named by `ID`.
//!
//! The secrets and the lifetime live in the index (row `config` | `srs`),
//! made on first use, so every gateway and function shares them; the first
//! secret signs and every listed one verifies, so a secret can be rotated
//! without breaking the bounces of mail already forwarded.

use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::address::{Address, Domain};
use crate::ports::{Condition, Index, IndexExt, Key, Outcome, StoreError, StoreResult};

/// How long an SRS address is honoured, unless configured otherwise.
pub const DEFAULT_MAX_AGE_DAYS: u32 = 21;
/// The base32 characters of the hash (40 bits).
const HASH_CHARS: usize = 8;
/// The characters of a stored original's id (80 bits).
const ID_CHARS: usize = 16;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Timestamps count days modulo this.
const DAYS_WRAP: i64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum SrsError {
    #[error("not an SRS address")]
    NotSrs,
    #[error("malformed SRS address")]
    Malformed,
    #[error("SRS address with a hash that does not verify")]
    Forged,
    #[error("SRS address older than {0} days")]
    Expired(u32),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `config` | `srs` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SrsConfig {
    /// Base64 secrets; the first signs.
    secrets: Vec<String>,
    max_age_days: u32,
}

fn config_key() -> Key {
    Key::new("config", "srs")
}

fn stored_key(id: &str) -> Key {
    Key::new("srs", id.to_ascii_uppercase())
}

/// SRS with the secrets in the index.
pub struct Srs {
    keys: Vec<hmac::Key>,
    max_age_days: u32,
}

impl std::fmt::Debug for Srs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("Srs")
            .field("secrets", &self.keys.len())
            .field("max_age_days", &self.max_age_days)
            .finish()
    }
}

/// Whether `local` is an SRS local part (`SRS0` or `SRS1` and a
/// separator, in any case).
pub fn is_srs(local: &str) -> bool {
    tag(local).is_some()
}

/// `0` or `1`, and the rest after the tag's separator.
fn tag(local: &str) -> Option<(u8, &str)> {
    let head = local.get(..5)?;
    let kind = match head.get(..4)? {
        t if t.eq_ignore_ascii_case("SRS0") => 0,
        t if t.eq_ignore_ascii_case("SRS1") => 1,
        _ => return None,
    };
    matches!(head.as_bytes()[4], b'=' | b'+' | b'-').then(|| (kind, &local[5..]))
}

fn base32(bytes: &[u8], chars: usize) -> String {
    let mut out = String::with_capacity(chars);
    let (mut acc, mut bits) = (0u64, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 && out.len() < chars {
            bits -= 5;
            out.push(BASE32[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
        if out.len() == chars {
            break;
        }
    }
    out
}

fn day_stamp(now: i64) -> String {
    let day = now.div_euclid(86_400).rem_euclid(DAYS_WRAP) as usize;
    let mut s = String::with_capacity(2);
    s.push(BASE32[day >> 5] as char);
    s.push(BASE32[day & 31] as char);
    s
}

fn stamp_day(tt: &str) -> Option<i64> {
    let digit = |c: u8| {
        BASE32
            .iter()
            .position(|&b| b == c.to_ascii_uppercase())
            .map(|p| p as i64)
    };
    match tt.as_bytes() {
        [a, b] => Some(digit(*a)? * 32 + digit(*b)?),
        _ => None,
    }
}

impl Srs {
    /// SRS with these secrets (the first signs), honouring addresses for
    /// `max_age_days`.
    pub fn new(secrets: &[Vec<u8>], max_age_days: u32) -> Srs {
        Srs {
            keys: secrets
                .iter()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s))
                .collect(),
            max_age_days: max_age_days.max(1),
        }
    }

    /// The shared SRS configuration, made (with a random secret) if there
    /// is none yet.
    pub async fn load(index: &dyn Index) -> StoreResult<Srs> {
        loop {
            if let Some(item) = index.get(&config_key()).await? {
                let config: SrsConfig = serde_json::from_slice(&item.value)
                    .map_err(|e| StoreError::permanent("srs config", e))?;
                let secrets: Vec<Vec<u8>> = config
                    .secrets
                    .iter()
                    .filter_map(|s| crate::base64::decode(s))
                    .collect();
                if secrets.is_empty() {
                    return Err(StoreError::permanent("srs config", "no secret"));
                }
                return Ok(Srs::new(&secrets, config.max_age_days));
            }
            let config = SrsConfig {
                secrets: vec![crate::base64::encode(&random_secret())],
                max_age_days: DEFAULT_MAX_AGE_DAYS,
            };
            let value = serde_json::to_vec(&config).expect("serialises");
            // Whoever writes first wins; the others read theirs.
            let _ = index.put(config_key(), value, Condition::Absent).await?;
        }
    }

    /// Sets how many days SRS addresses are honoured.
    pub async fn set_max_age(index: &dyn Index, days: u32) -> StoreResult<()> {
        Self::update(index, |c| c.max_age_days = days.max(1)).await
    }

    /// Puts a new secret first (it signs from now on) and keeps the one
    /// before it for verifying, so bounces of mail forwarded before still
    /// come back.
    pub async fn rotate(index: &dyn Index) -> StoreResult<()> {
        Self::update(index, |c| {
            c.secrets.insert(0, crate::base64::encode(&random_secret()));
            c.secrets.truncate(2);
        })
        .await
    }

    async fn update(index: &dyn Index, change: impl Fn(&mut SrsConfig)) -> StoreResult<()> {
        Self::load(index).await?;
        loop {
            let item = index
                .get(&config_key())
                .await?
                .ok_or_else(|| StoreError::retryable("srs config", "vanished"))?;
            let mut config: SrsConfig = serde_json::from_slice(&item.value)
                .map_err(|e| StoreError::permanent("srs config", e))?;
            change(&mut config);
            let value = serde_json::to_vec(&config).expect("serialises");
            if index
                .put(config_key(), value, Condition::Version(item.version))
                .await?
                == Outcome::Applied
            {
                return Ok(());
            }
        }
    }

    pub fn max_age_days(&self) -> u32 {
        self.max_age_days
    }

    pub fn secrets(&self) -> usize {
        self.keys.len()
    }

    fn hash_with(key: &hmac::Key, parts: &[&str], chars: usize) -> String {
        let mut ctx = hmac::Context::with_key(key);
        for part in parts {
            ctx.update(part.to_lowercase().as_bytes());
            ctx.update(&[0]);
        }
        base32(ctx.sign().as_ref(), chars)
    }

    fn hash(&self, parts: &[&str]) -> String {
        Self::hash_with(&self.keys[0], parts, HASH_CHARS)
    }

    fn verifies(&self, hash: &str, parts: &[&str]) -> bool {
        hash.len() == HASH_CHARS
            && self
                .keys
                .iter()
                .any(|k| Self::hash_with(k, parts, HASH_CHARS).eq_ignore_ascii_case(hash))
    }

    fn fresh(&self, tt: &str, now: i64) -> Result<(), SrsError> {
        let day = stamp_day(tt).ok_or(SrsError::Malformed)?;
        let today = now.div_euclid(86_400).rem_euclid(DAYS_WRAP);
        let age = (today - day).rem_euclid(DAYS_WRAP);
        // A day ahead: another host's clock, just past midnight.
        if age > i64::from(self.max_age_days) && age != DAYS_WRAP - 1 {
            return Err(SrsError::Expired(self.max_age_days));
        }
        Ok(())
    }

    /// The local part of `sender` forwarded by a host of `forwarder`, in
    /// the standard form, if that fits; `None` when it does not.
    fn rewrite(&self, sender: &Address, now: i64) -> Option<String> {
        let local = sender.local_part();
        let host = sender.domain().as_str();
        let out = match tag(local) {
            // Someone else's SRS0: point back at that forwarder.
            Some((0, _)) => {
                let opaque = &local[4..];
                format!("SRS1={}={host}={opaque}", self.hash(&["1", host, opaque]))
            }
            // An SRS1: keep its first forwarder.
            Some((_, rest)) => {
                let mut fields = rest.splitn(3, '=');
                let (_, first, opaque) = (fields.next()?, fields.next()?, fields.next()?);
                // `opaque` starts with the SRS0 address's own separator.
                if first.is_empty() {
                    return None;
                }
                format!("SRS1={}={first}={opaque}", self.hash(&["1", first, opaque]))
            }
            None => {
                let tt = day_stamp(now);
                format!(
                    "SRS0={}={tt}={host}={local}",
                    self.hash(&["0", &tt, host, local])
                )
            }
        };
        (out.len() <= 64).then_some(out)
    }

    /// The SRS address `sender` is forwarded with by a host of
    /// `forwarder`; a sender too long for the standard form is kept in the
    /// index and named by an id.
    pub async fn forward(
        &self,
        index: &dyn Index,
        sender: &Address,
        forwarder: &Domain,
        now: i64,
    ) -> StoreResult<Option<Address>> {
        let local = match self.rewrite(sender, now) {
            Some(local) => local,
            None => {
                let original = sender.to_string();
                // Each form hashes under its own first part ("0", "1",
                // "id"), so no one form's hash is another's.
                let id = Self::hash_with(&self.keys[0], &["id", &original], ID_CHARS);
                // The same sender always gets the same id: a retried
                // forward writes the same row (`Any` always applies).
                let _ = index
                    .put(stored_key(&id), original.into_bytes(), Condition::Any)
                    .await?;
                let tt = day_stamp(now);
                format!("SRS0={}={tt}=={id}", self.hash(&["0", &tt, "", &id]))
            }
        };
        Ok(Address::parse(&format!("{local}@{forwarder}")).ok())
    }

    /// Where mail to the SRS address `address` (one of ours) goes back to:
    /// the original sender, or for SRS1 the first forwarder's SRS0
    /// address. Forged and expired addresses are errors.
    pub async fn reverse(
        &self,
        index: &dyn Index,
        address: &Address,
        now: i64,
    ) -> Result<Address, SrsError> {
        let local = address.local_part();
        let (kind, rest) = tag(local).ok_or(SrsError::NotSrs)?;
        if kind == 1 {
            let mut fields = rest.splitn(3, '=');
            let (hash, host, opaque) = match (fields.next(), fields.next(), fields.next()) {
                (Some(h), Some(host), Some(o)) if !host.is_empty() => (h, host, o),
                _ => return Err(SrsError::Malformed),
            };
            if !self.verifies(hash, &["1", host, opaque]) {
                return Err(SrsError::Forged);
            }
            return Address::parse(&format!("SRS0{opaque}@{host}"))
                .map_err(|_| SrsError::Malformed);
        }
        let mut fields = rest.splitn(4, '=');
        let (hash, tt, domain, user) =
            match (fields.next(), fields.next(), fields.next(), fields.next()) {
                (Some(h), Some(t), Some(d), Some(u)) if !u.is_empty() => (h, t, d, u),
                _ => return Err(SrsError::Malformed),
            };
        if !self.verifies(hash, &["0", tt, domain, user]) {
            return Err(SrsError::Forged);
        }
        self.fresh(tt, now)?;
        if domain.is_empty() {
            let item = index
                .get(&stored_key(user))
                .await?
                .ok_or(SrsError::Forged)?;
            return Address::parse(&String::from_utf8_lossy(&item.value))
                .map_err(|_| SrsError::Malformed);
        }
        Address::parse(&format!("{user}@{domain}")).map_err(|_| SrsError::Malformed)
    }
}

fn random_secret() -> [u8; 32] {
    let mut secret = [0u8; 32];
    crate::ids::fill_random(&mut secret);
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn srs() -> Srs {
        Srs::new(&[b"a secret".to_vec()], 21)
    }

    fn index() -> std::sync::Arc<dyn Index> {
        std::sync::Arc::new(crate::ports::MemoryIndex::default())
    }

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[tokio::test]
    async fn a_forward_comes_back_to_the_sender_until_it_expires() {
        let (srs, index) = (srs(), index());
        let ours = Domain::parse("example.com").unwrap();
        let now = 1_800_000_000;
        let sender = addr("Alice.Smith@outside.example");
        let srs0 = srs
            .forward(index.as_ref(), &sender, &ours, now)
            .await
            .unwrap()
            .unwrap();
        let local = srs0.local_part();
        assert!(local.starts_with("SRS0="), "{srs0}");
        assert!(local.ends_with("=outside.example=Alice.Smith"), "{srs0}");
        assert_eq!(srs0.domain(), &ours);
        let back = srs.reverse(index.as_ref(), &srs0, now + 20 * DAY).await;
        assert_eq!(back.unwrap(), sender);
        // Made by a host whose clock is a day ahead.
        let back = srs.reverse(index.as_ref(), &srs0, now - DAY).await;
        assert_eq!(back.unwrap(), sender);
        // Another MTA may fold the case of the local part.
        let folded = addr(&srs0.to_string().to_lowercase());
        assert_eq!(
            srs.reverse(index.as_ref(), &folded, now).await.unwrap(),
            addr("alice.smith@outside.example")
        );
        assert!(matches!(
            srs.reverse(index.as_ref(), &srs0, now + 22 * DAY).await,
            Err(SrsError::Expired(21))
        ));
    }

    #[tokio::test]
    async fn forged_and_malformed_addresses_are_refused() {
        // Not SRS, whatever bytes the local part starts with.
        for local in ["abcé", "SRSé", "é", "SRS0"] {
            assert!(!is_srs(local), "{local}");
        }
        let (srs, index) = (srs(), index());
        let now = 1_800_000_000;
        let good = srs
            .forward(
                index.as_ref(),
                &addr("bob@outside.example"),
                &Domain::parse("example.com").unwrap(),
                now,
            )
            .await
            .unwrap()
            .unwrap()
            .to_string();
        // Pointing it at someone else breaks the hash.
        let retargeted = good.replace("=bob@", "=mallory@");
        assert!(matches!(
            srs.reverse(index.as_ref(), &addr(&retargeted), now).await,
            Err(SrsError::Forged)
        ));
        // Another secret's addresses do not verify.
        let other = Srs::new(&[b"another".to_vec()], 21);
        assert!(matches!(
            other.reverse(index.as_ref(), &addr(&good), now).await,
            Err(SrsError::Forged)
        ));
        for bad in [
            "SRS0=x@example.com",
            "SRS0=AAAAAAAA=ZZ@example.com",
            "SRS1=AAAAAAAA@example.com",
            "SRS1=AAAAAAAA==x@example.com",
        ] {
            assert!(
                matches!(
                    srs.reverse(index.as_ref(), &addr(bad), now).await,
                    Err(SrsError::Malformed | SrsError::Forged)
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            srs.reverse(index.as_ref(), &addr("bob@example.com"), now)
                .await,
            Err(SrsError::NotSrs)
        ));
    }

    #[tokio::test]
    async fn a_second_forward_points_back_at_the_first_forwarder() {
        let index = index();
        let first = Srs::new(&[b"first hop".to_vec()], 21);
        let second = srs();
        let now = 1_800_000_000;
        let sender = addr("carol@origin.example");
        let hop1 = first
            .forward(
                index.as_ref(),
                &sender,
                &Domain::parse("hop1.example").unwrap(),
                now,
            )
            .await
            .unwrap()
            .unwrap();
        let hop2 = second
            .forward(
                index.as_ref(),
                &hop1,
                &Domain::parse("example.com").unwrap(),
                now,
            )
            .await
            .unwrap()
            .unwrap();
        assert!(hop2.local_part().starts_with("SRS1="), "{hop2}");
        assert!(hop2.local_part().contains("=hop1.example=="), "{hop2}");
        // A third hop keeps the first forwarder.
        let hop3 = first
            .forward(
                index.as_ref(),
                &hop2,
                &Domain::parse("hop3.example").unwrap(),
                now,
            )
            .await
            .unwrap()
            .unwrap();
        assert!(hop3.local_part().contains("=hop1.example=="), "{hop3}");
        // Bounces unwind: hop3 → hop1's SRS0 → carol.
        let back = first.reverse(index.as_ref(), &hop3, now).await.unwrap();
        assert_eq!(back, hop1);
        let back = second.reverse(index.as_ref(), &hop2, now).await.unwrap();
        assert_eq!(back, hop1);
        assert_eq!(
            first.reverse(index.as_ref(), &back, now).await.unwrap(),
            sender
        );
    }

    #[tokio::test]
    async fn a_long_sender_is_kept_in_the_index() {
        let (srs, index) = (srs(), index());
        let now = 1_800_000_000;
        let sender =
            addr("bounces+1234567890-abcdef-alice=example.org@em1234.mail.sending-service.example");
        let ours = Domain::parse("example.com").unwrap();
        let fwd = srs
            .forward(index.as_ref(), &sender, &ours, now)
            .await
            .unwrap()
            .unwrap();
        assert!(fwd.local_part().len() <= 64, "{fwd}");
        assert!(fwd.local_part().contains("=="), "{fwd}");
        assert_eq!(
            srs.reverse(index.as_ref(), &fwd, now).await.unwrap(),
            sender
        );
        // The same sender, the same address.
        let again = srs
            .forward(index.as_ref(), &sender, &ours, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again, fwd);
    }

    #[tokio::test]
    async fn secrets_are_made_once_and_rotate_without_breaking_old_addresses() {
        let index = index();
        let a = Srs::load(index.as_ref()).await.unwrap();
        let b = Srs::load(index.as_ref()).await.unwrap();
        let now = 1_800_000_000;
        let ours = Domain::parse("example.com").unwrap();
        let sender = addr("dave@outside.example");
        let fwd = a
            .forward(index.as_ref(), &sender, &ours, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.reverse(index.as_ref(), &fwd, now).await.unwrap(), sender);
        assert!(!format!("{a:?}").contains("secret\""));
        Srs::rotate(index.as_ref()).await.unwrap();
        let c = Srs::load(index.as_ref()).await.unwrap();
        assert_eq!(c.secrets(), 2);
        assert_eq!(c.reverse(index.as_ref(), &fwd, now).await.unwrap(), sender);
        assert_ne!(
            c.forward(index.as_ref(), &sender, &ours, now)
                .await
                .unwrap()
                .unwrap(),
            fwd,
            "the new secret signs"
        );
        Srs::set_max_age(index.as_ref(), 3).await.unwrap();
        let d = Srs::load(index.as_ref()).await.unwrap();
        assert_eq!(d.max_age_days(), 3);
        assert!(matches!(
            d.reverse(index.as_ref(), &fwd, now + 4 * DAY).await,
            Err(SrsError::Expired(3))
        ));
    }
}
