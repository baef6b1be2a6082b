//! What a user signs in with besides the account password, what a user may
//! administer, and how every gateway learns that sessions must end.
//!
//! - **App passwords** (one per device, named, revocable): generated here,
//!   never chosen, 20 characters of lower-case base32 shown in groups of
//!   four (`abcd-efgh-ijkl-mnop-qrst`). The first four characters are the
//!   password's id, kept (and logged) in the clear so that a login checks
//!   one Argon2id hash, not one per device; the other sixteen (80 random
//!   bits) are the secret, and the whole password is kept only as an
//!   Argon2id hash. A new account password deletes them all. They serve IMAP, POP3, SMTP submission, ManageSieve,
//!   JMAP and DAV, never the web sign-in.
//! - **Admin grants**: a user may be an `admin` (everything) or a
//!   `domain_admin` of some domains, the same two roles an API key has.
//! - **Revocations** (`revoked` | `<ms, 16 hex>#<nonce>`): written in the
//!   same transaction as the change that ends sessions (a new password, a
//!   disabled or deleted account, a deleted app password). A revocation
//!   names the user's new credential generation: every session signed in
//!   under an earlier one ends, whatever the clocks say (a login that read
//!   the record just before the change holds the old generation). Each
//!   gateway reads the recent rows every few seconds and closes the
//!   sessions they name; rows are pruned after [`REVOCATION_KEPT`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::address::{Address, Domain};
use crate::ids::random_hex;
use crate::ports::{Condition, Index, Item, Key, SkRange, StoreResult, Write};

/// The roles of the admin API and `/admin`, for users and API keys alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// Everything, on every domain.
    Admin,
    /// Only what is in its domains.
    DomainAdmin,
}

/// What a user may administer (`stratus user role`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminGrant {
    pub role: AdminRole,
    /// A domain admin's domains (none for an admin).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<Domain>,
}

/// An app password as stored on its user: never the password itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPassword {
    /// The password's first four characters.
    pub id: String,
    /// The device or program it is for, as the user named it.
    pub name: String,
    /// Argon2id PHC string of the whole password (without separators).
    pub hash: String,
    /// Unix seconds.
    pub created: i64,
}

/// At most this many app passwords per user.
pub const MAX_APP_PASSWORDS: usize = 20;
/// An app password's name: at most this many characters.
pub const MAX_APP_PASSWORD_NAME: usize = 64;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const APP_PASSWORD_LEN: usize = 20;
const ID_LEN: usize = 4;

/// A new app password: its id and the password as shown to the user
/// (groups of four joined by `-`; [`app_password_id`] takes it with or
/// without them).
pub fn new_app_password() -> (String, String) {
    let mut bytes = [0u8; APP_PASSWORD_LEN];
    crate::ids::fill_random(&mut bytes);
    let plain: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(b & 31)] as char)
        .collect();
    let shown = plain
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("-");
    (plain[..ID_LEN].to_string(), shown)
}

/// The password as it is hashed: separators (`-`, spaces) dropped and
/// lower-cased, so that `ABCD EFGH …` from a phone's keyboard works.
pub fn normalise_app_password(candidate: &str) -> Option<String> {
    let plain: String = candidate
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (plain.len() == APP_PASSWORD_LEN && plain.bytes().all(|b| ALPHABET.contains(&b)))
        .then_some(plain)
}

/// The id of the app password `candidate` would be, if it has the shape
/// of one.
pub fn app_password_id(candidate: &str) -> Option<String> {
    normalise_app_password(candidate).map(|p| p[..ID_LEN].to_string())
}

/// Checks an app password's name: printable, 1 to
/// [`MAX_APP_PASSWORD_NAME`] characters.
pub fn check_app_password_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > MAX_APP_PASSWORD_NAME || name.trim() != name {
        return Err(format!(
            "an app password's name has 1 to {MAX_APP_PASSWORD_NAME} characters, without spaces at either end"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("an app password's name cannot hold control characters".into());
    }
    Ok(())
}

/// Sessions of `address` signed in under a credential generation below
/// `below` end; only those signed in with app password `app_password`
/// when it is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub address: Address,
    pub below: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_password: Option<String>,
}

const REVOKED_PK: &str = "revoked";

/// How long revocation rows are kept: long enough for every gateway to
/// have read them many times over.
pub const REVOCATION_KEPT: Duration = Duration::from_secs(3600);

/// The write that publishes `revocation`.
pub fn revocation_row(revocation: &Revocation) -> Write {
    Write::Put {
        key: journal_key(REVOKED_PK, &random_hex(4)),
        value: serde_json::to_vec(revocation).expect("revocations serialise"),
        condition: Condition::Any,
    }
}

/// Where a reader starts that wants the rows of a journal from `ms` on.
pub fn revocations_from(ms: i64) -> String {
    format!("{:016x}", ms.max(0))
}

/// The key of a new row of the journal `pk`: its sort key begins with
/// the time (Unix ms, so rows sort by it), then `suffix` (a writer's id).
pub fn journal_key(pk: &str, suffix: &str) -> Key {
    Key::new(pk, format!("{:016x}#{suffix}", now_ms().max(0)))
}

/// Every row of the journal `pk` from the sort key `from` on
/// ([`revocations_from`]), a page at a time.
pub async fn journal_since(index: &dyn Index, pk: &str, from: &str) -> StoreResult<Vec<Item>> {
    const PAGE: usize = 1000;
    let mut out: Vec<Item> = Vec::new();
    let mut from = from.to_string();
    loop {
        let items = index
            .query(pk, SkRange::From(from.clone()), PAGE, false)
            .await?;
        let full = items.len() == PAGE;
        let last = items.last().map(|i| i.key.sk.clone());
        // The range is inclusive: a page after the first starts with the
        // row the one before ended with.
        for item in items {
            if out.last().is_none_or(|l| l.key.sk != item.key.sk) {
                out.push(item);
            }
        }
        match last {
            Some(last) if full => from = last,
            _ => return Ok(out),
        }
    }
}

/// Every revocation published from the row `from` on (a sort key, or
/// [`revocations_from`]). Unreadable rows are skipped.
pub async fn revocations_since(index: &dyn Index, from: &str) -> StoreResult<Vec<Revocation>> {
    Ok(journal_since(index, REVOKED_PK, from)
        .await?
        .iter()
        .filter_map(|item| serde_json::from_slice(&item.value).ok())
        .collect())
}

/// Deletes every row of the journal `pk` written before `before` (Unix
/// ms); how many went.
pub async fn prune_journal(index: &dyn Index, pk: &str, before: i64) -> StoreResult<usize> {
    let mut n = 0;
    loop {
        let items = index
            .query(
                pk,
                SkRange::Between(String::new(), revocations_from(before)),
                100,
                false,
            )
            .await?;
        if items.is_empty() {
            return Ok(n);
        }
        n += items.len();
        let writes: Vec<Write> = items
            .into_iter()
            .map(|i| Write::Delete {
                key: i.key,
                condition: Condition::Any,
            })
            .collect();
        let _ = index.transact(writes).await?;
    }
}

/// Deletes every revocation row published before `before` (Unix ms);
/// how many went.
pub async fn prune_revocations(index: &dyn Index, before: i64) -> StoreResult<usize> {
    prune_journal(index, REVOKED_PK, before).await
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_passwords_are_twenty_base32_characters_in_groups() {
        let (id, shown) = new_app_password();
        assert_eq!(shown.len(), 24, "{shown}");
        assert_eq!(shown.matches('-').count(), 4);
        assert_eq!(app_password_id(&shown).as_deref(), Some(id.as_str()));
        let typed = shown.replace('-', " ").to_uppercase();
        assert_eq!(normalise_app_password(&typed), Some(shown.replace('-', "")));
        let (_, other) = new_app_password();
        assert_ne!(shown, other);
    }

    #[test]
    fn other_shapes_are_not_app_passwords() {
        for s in [
            "",
            "correct horse battery staple",
            "abcd-efgh-ijkl-mnop-qrs",
            "abcd-efgh-ijkl-mnop-qrs1",
            "abcd-efgh-ijkl-mnop-qrstu",
        ] {
            assert_eq!(app_password_id(s), None, "{s}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_app_password_name("Phone").is_ok());
        assert!(check_app_password_name("").is_err());
        assert!(check_app_password_name(" x").is_err());
        assert!(check_app_password_name("a\u{7}b").is_err());
        assert!(check_app_password_name(&"x".repeat(65)).is_err());
    }
}
