//! Domains, users and their mailboxes, written once over the [`Index`] port so
//! that both backends behave the same.
//!
//! Item layout (partition key | sort key):
//! - `domain` | `<domain>`: a hosted domain.
//! - `user#<domain>` | `<local part, lower-cased>`: an account.
//! - `mbox#<account key>` | `<mailbox name>`: a mailbox and its counters.
//! - `uidvalidity` | `next`: the last UIDVALIDITY handed out.
//! - `alias#<domain>` | `<local part, lower-cased>`: an alias and its targets.
//! - `ident#<account key>` | `<address, account key>`: an address an admin
//!   granted a user to send as.
//! - `trash` | `<mailbox id>`: a deleted mailbox whose messages, tombstones
//!   and change rows the sweeper ([`crate::sweep`]) still has to remove.
//! - `annot#<account key>` | `<mailbox id>|<entry, lower-cased>`: an IMAP
//!   METADATA entry (RFC 5464) of a mailbox, or of the server for the
//!   user when the id is empty; the value is the bytes as set.
//! - `recent#<mailbox id>` | `first`: the first UID of the mailbox that no
//!   IMAP session has claimed as `\Recent` yet.
//! - `urlkey#<account key>` | `<mailbox id>`: the mailbox's access key for
//!   URLAUTH (RFC 4467), 32 random bytes in hex.
//! - `spam#<domain>` | `@` or `<local part>`: spam settings ([`crate::spam`]).
//! - `revoked` | `<ms>#<nonce>`: sessions that must end
//!   ([`crate::credentials`]).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::address::{Address, Domain};
use crate::credentials::{
    AdminGrant, AppPassword, MAX_APP_PASSWORDS, Revocation, now_ms, revocation_row,
};
use crate::ids::random_hex;
use crate::mailbox::{MailboxName, SpecialUse, default_mailboxes};
use crate::ports::{Condition, Index, IndexExt, Item, Key, Outcome, SkRange, StoreError, Write};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("domain {0} is not hosted here; add it first with `stratus domain add {0}`")]
    UnknownDomain(Domain),
    #[error("domain {0} already exists")]
    DomainExists(Domain),
    #[error("domain {domain} still has {users} user(s); delete them first")]
    DomainNotEmpty { domain: Domain, users: usize },
    #[error("user {0} already exists")]
    UserExists(Address),
    #[error("no such user: {0}")]
    UnknownUser(Address),
    #[error("{0} is already a user; an alias cannot take its address")]
    AliasIsUser(Address),
    #[error("alias {0} already exists")]
    AliasExists(Address),
    #[error("no such alias: {0}")]
    UnknownAlias(Address),
    #[error("an alias needs at least one target")]
    NoTargets,
    #[error("target {0} does not exist: no user or alias has that address here")]
    UnknownTarget(Address),
    #[error("alias {alias} would lead back to itself through {target}")]
    AliasLoop { alias: Address, target: Address },
    #[error("{user} may already send as {identity}")]
    IdentityExists { user: Address, identity: Address },
    #[error("{user} has no identity {identity}")]
    UnknownIdentity { user: Address, identity: Address },
    #[error("mailbox {0} already exists")]
    MailboxExists(MailboxName),
    #[error("no such mailbox: {0}")]
    UnknownMailbox(MailboxName),
    #[error(transparent)]
    InvalidMailbox(#[from] crate::mailbox::MailboxNameError),
    #[error("too many mailboxes below this one to rename them at once")]
    TooManyMailboxes,
    #[error("at most {} subscriptions", MAX_SUBSCRIPTIONS)]
    TooManySubscriptions,
    #[error("a mailbox may have at most {} keywords", MAX_KEYWORDS)]
    TooManyKeywords,
    #[error("at most {} metadata entries per mailbox", MAX_ANNOTATIONS)]
    TooManyAnnotations,
    #[error("at most {} entries in an allow or block list", crate::spam::MAX_LIST)]
    TooManyListEntries,
    #[error("{0}")]
    InvalidSetting(String),
    #[error("{0} is already a user or an alias here")]
    AddressTaken(Address),
    #[error("list {0} already exists")]
    ListExists(Address),
    #[error("domain {0} still has lists; delete them first")]
    DomainHasLists(Domain),
    #[error("no such list: {0}")]
    UnknownList(Address),
    #[error("a list cannot be a member of a list: {0}")]
    ListInList(Address),
    #[error("list {0} holds no message {1}")]
    UnknownHeld(Address, String),
    #[error("domain {domain} still has {aliases} alias(es); delete them first")]
    DomainHasAliases { domain: Domain, aliases: usize },
    /// The account's credentials changed since what was to change them
    /// was made (an invitation).
    #[error("the credentials of {0} changed since; this no longer applies")]
    Superseded(Address),
    /// A DKIM key change that cannot be made as asked (or that another
    /// change overtook).
    #[error("{0}")]
    DkimKeys(String),
    #[error("{user} already has an app password named {name:?}")]
    AppPasswordExists { user: Address, name: String },
    #[error("{user} has no app password named {name:?}")]
    UnknownAppPassword { user: Address, name: String },
    #[error("at most {} app passwords per user", MAX_APP_PASSWORDS)]
    TooManyAppPasswords,
    #[error("stored record {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type AccountResult<T> = Result<T, AccountError>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRecord {
    pub name: Domain,
    pub created: i64,
    /// Where mail to an address nobody has here goes (a user or alias of
    /// ours), after users, aliases and plus-addressing found nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_all: Option<Address>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub address: Address,
    /// Argon2id PHC string; never the password.
    pub password_hash: String,
    /// Storage quota in bytes; `None` is unlimited.
    #[serde(default)]
    pub quota: Option<u64>,
    pub created: i64,
    /// Where the user's mail is forwarded, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<Forward>,
    /// A disabled account signs in nowhere (no protocol, no app password,
    /// not the web); its mail is still accepted and filed, so nothing is
    /// lost while it is suspended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// What the user may administer through `/admin` and the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminGrant>,
    /// The user's app passwords (one per device).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_passwords: Vec<AppPassword>,
    /// The credential generation: a new password and disabling move it
    /// on, and every session (web, IMAP, POP3, ManageSieve, submission)
    /// signed in under an earlier one ends. It starts at the time of
    /// creation (Unix ms), so an address deleted and made again starts
    /// above every session of the account before.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
}

/// A user's forwarding (`stratus user forward`): forwards to other
/// addresses leave with an SRS envelope sender (see [`crate::srs`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    pub targets: Vec<Address>,
    /// Whether the user keeps a copy too.
    pub keep: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxRecord {
    pub name: MailboxName,
    /// Stable id that survives renames; message entries hang off it.
    pub id: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    #[serde(default)]
    pub special_use: Option<SpecialUse>,
    pub subscribed: bool,
    pub messages: u32,
    pub unseen: u32,
    pub size: u64,
    /// Tombstones and change rows at or below this MODSEQ may have been
    /// pruned by the sweeper: a client asking what changed since an older
    /// MODSEQ gets a full resync instead (RFC 7162 §3.2.5.2 lets a server
    /// report every UID it does not hold as vanished).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pruned_modseq: u64,
    /// Where `\Recent` starts for a mailbox no session has claimed
    /// messages of yet (claims are kept in a row of their own, see
    /// [`crate::mailstore::Mailstore::claim_recent`]): 1 for a mailbox
    /// created since Stratus keeps it; `None` (an older mailbox): nothing
    /// below UIDNEXT is recent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_recent_uid: Option<u32>,
    /// The keywords the mailbox's messages use, for the limit of
    /// [`MAX_KEYWORDS`]: every write that brings a new one adds it, and a
    /// SELECT that finds some no longer used settles the list to what is.
    /// `None`: not known yet (a mailbox from before Stratus kept them;
    /// its first SELECT fills it in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keywords: Option<Vec<String>>,
}

/// Whether `flag` is a keyword (not a `\`-system flag).
pub fn is_keyword(flag: &str) -> bool {
    !flag.starts_with('\\')
}

impl MailboxRecord {
    /// The keywords of `flags` the mailbox does not use yet.
    pub fn new_keywords<'a>(&self, flags: &'a [String]) -> Vec<&'a String> {
        let known = self.keywords.as_deref().unwrap_or_default();
        let mut new: Vec<&String> = Vec::new();
        for f in flags.iter().filter(|f| is_keyword(f)) {
            if !known
                .iter()
                .chain(new.iter().copied())
                .any(|k| k.eq_ignore_ascii_case(f))
            {
                new.push(f);
            }
        }
        new
    }

    /// Takes in the keywords of `flags`; refused when the mailbox would
    /// pass [`MAX_KEYWORDS`]. A mailbox whose keywords are not known yet
    /// takes anything.
    pub fn add_keywords(&mut self, flags: &[String]) -> Result<(), AccountError> {
        if self.keywords.is_none() {
            return Ok(());
        }
        let new: Vec<String> = self.new_keywords(flags).into_iter().cloned().collect();
        let list = self.keywords.get_or_insert_with(Vec::new);
        if list.len() + new.len() > MAX_KEYWORDS {
            return Err(AccountError::TooManyKeywords);
        }
        list.extend(new);
        Ok(())
    }

    /// The first UID that is still `\Recent` when no claim was made yet.
    pub fn first_recent(&self) -> u32 {
        self.first_recent_uid.unwrap_or(self.uidnext)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A DKIM signing key of a hosted domain, under
/// `dkim#<domain>|<selector>`. The private key is PKCS#8 DER in base64;
/// it never leaves the index except to sign.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimKeyRecord {
    pub selector: String,
    /// `ed25519` or `rsa`.
    pub algorithm: String,
    pub private_pkcs8: String,
    pub created: i64,
    /// Keys stored before rotation existed are active.
    #[serde(default)]
    pub state: DkimKeyState,
    /// When it stopped signing (a retired key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<i64>,
}

/// Where a DKIM key is in its life. Selectors (RFC 6376 §3.1) let a
/// domain publish its next keys before signing with them, and keep the
/// old ones published while mail signed with them may still be verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DkimKeyState {
    /// Signs outgoing mail (and seals forwards with ARC).
    #[default]
    Active,
    /// Made by a rotation: to be published, then to sign instead of the
    /// active keys.
    Next,
    /// Signed before the last rotation finished; still published.
    Retired,
}

impl DkimKeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            DkimKeyState::Active => "active",
            DkimKeyState::Next => "next",
            DkimKeyState::Retired => "retired",
        }
    }
}

impl std::fmt::Debug for DkimKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimKeyRecord")
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// An alias: mail to `alias` goes to every target (local users, other
/// aliases, or remote addresses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub alias: Address,
    pub targets: Vec<Address>,
}

/// An address other than their own that a user may send as, granted by
/// an admin (`stratus user identity add`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRecord {
    pub user: Address,
    pub identity: Address,
    pub created: i64,
}

/// What a recipient address means here, as RCPT needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientCheck {
    /// A local user (after plus-address stripping), with room for the message.
    User(Address),
    /// An alias hosted here.
    Alias(Address),
    /// The domain is hosted here but nobody has this address.
    UnknownUser,
    /// The domain is not hosted here.
    NotLocal,
    /// A local user whose quota the message would exceed.
    OverQuota(Address),
    /// Nobody has this address, and the domain's catch-all takes it: the
    /// catch-all's target.
    CatchAll(Address),
    /// An SRS address of ours that verifies: where mail to it goes back
    /// to (a bounce of mail we forwarded).
    Srs(Address),
    /// An SRS address of ours that is forged, malformed or expired: why.
    BadSrs(String),
    /// One of a distribution list's addresses.
    List(Address, crate::lists::Role),
}

/// Where an address leads after alias expansion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// Local users, each once, in the order first reached.
    pub users: Vec<Address>,
    /// Addresses at domains not hosted here.
    pub remote: Vec<Address>,
    /// Local addresses that lead nowhere (no user, no alias).
    pub unknown: Vec<Address>,
    /// Aliases reached a second time (a loop, or a second path to them) or
    /// too deep; each is expanded at most once.
    pub loops: Vec<Address>,
    /// Distribution lists reached, each once, and what for.
    pub lists: Vec<(Address, crate::lists::Role)>,
}

impl Expansion {
    /// Whether the address leads to nobody at all.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.remote.is_empty() && self.lists.is_empty()
    }
}

/// How deep nested aliases may go before expansion stops.
pub const MAX_ALIAS_DEPTH: usize = 10;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(item: &Item) -> AccountResult<T> {
    serde_json::from_slice(&item.value).map_err(|e| AccountError::Corrupt {
        key: item.key.to_string(),
        reason: e.to_string(),
    })
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialise")
}

fn domain_key(domain: &Domain) -> Key {
    Key::new("domain", domain.as_str())
}

fn user_key(address: &Address) -> Key {
    Key::new(
        format!("user#{}", address.domain()),
        address.local_part().to_lowercase(),
    )
}

fn alias_key(address: &Address) -> Key {
    Key::new(
        format!("alias#{}", address.domain()),
        address.local_part().to_lowercase(),
    )
}

/// `user+tag@domain` → `user@domain`; `None` when there is no tag.
pub fn strip_plus(address: &Address) -> Option<Address> {
    let local = address.local_part();
    let (base, _) = local.split_once('+')?;
    if base.is_empty() || local.starts_with('"') {
        return None;
    }
    Address::parse(&format!("{base}@{}", address.domain())).ok()
}

fn identity_pk(user: &Address) -> String {
    format!("ident#{}", user.account_key())
}

fn identity_key(user: &Address, identity: &Address) -> Key {
    Key::new(identity_pk(user), identity.account_key())
}

/// The record that tells the sweeper a mailbox was deleted.
pub fn trash_key(mailbox_id: &str) -> Key {
    Key::new("trash", mailbox_id)
}

fn mailbox_pk(address: &Address) -> String {
    format!("mbox#{}", address.account_key())
}

/// A user's subscriptions: one row per mailbox name, whether or not that
/// mailbox exists (RFC 9051 §6.3.7).
fn subscription_pk(address: &Address) -> String {
    format!("sub#{}", address.account_key())
}

fn annotation_pk(address: &Address) -> String {
    format!("annot#{}", address.account_key())
}

fn url_key_pk(address: &Address) -> String {
    format!("urlkey#{}", address.account_key())
}

/// METADATA entries one mailbox (or the server, for one user) may have.
pub const MAX_ANNOTATIONS: usize = 100;
/// The largest METADATA value, in octets.
pub const MAX_ANNOTATION_SIZE: usize = 16 * 1024;

/// Subscriptions one user may hold.
pub const MAX_SUBSCRIPTIONS: usize = 1000;

/// Distinct keywords a mailbox may have: each is in every FLAGS response,
/// so a client must not be able to grow them without end.
pub const MAX_KEYWORDS: usize = 256;

/// The write that subscribes `address` to `name`.
fn subscription_row(address: &Address, name: &MailboxName) -> Write {
    Write::Put {
        key: Key::new(subscription_pk(address), name.as_str()),
        value: Vec::new(),
        condition: Condition::Any,
    }
}

/// Accounts over any index adapter.
#[derive(Debug, Clone)]
pub struct Accounts {
    pub(crate) index: Arc<dyn Index>,
}

const PAGE: usize = 1000;

impl Accounts {
    pub fn new(index: Arc<dyn Index>) -> Self {
        Accounts { index }
    }

    /// One record, decoded; `None` if absent.
    pub(crate) async fn record<T: for<'de> Deserialize<'de>>(
        &self,
        key: &Key,
    ) -> AccountResult<Option<T>> {
        self.index.get(key).await?.map(|i| decode(&i)).transpose()
    }

    /// Every record of a partition, decoded, in key order.
    pub(crate) async fn records<T: for<'de> Deserialize<'de>>(
        &self,
        pk: &str,
    ) -> AccountResult<Vec<T>> {
        self.index
            .query(pk, SkRange::All, usize::MAX, false)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    pub async fn add_domain(&self, domain: &Domain) -> AccountResult<()> {
        let record = DomainRecord {
            name: domain.clone(),
            created: now(),
            catch_all: None,
        };
        let put = Write::Put {
            key: domain_key(domain),
            value: encode(&record),
            condition: Condition::Absent,
        };
        match self.index.transact(vec![put]).await? {
            Outcome::Applied => Ok(()),
            Outcome::Conflict => Err(AccountError::DomainExists(domain.clone())),
        }
    }

    /// Stores DKIM keys for a hosted domain (replacing keys of the same
    /// selector).
    pub async fn put_dkim_keys(
        &self,
        domain: &Domain,
        keys: Vec<DkimKeyRecord>,
    ) -> AccountResult<()> {
        let mut writes = vec![Write::Check {
            key: domain_key(domain),
            condition: Condition::Present,
        }];
        for key in keys {
            writes.push(Write::Put {
                key: Key::new(format!("dkim#{domain}"), key.selector.clone()),
                value: encode(&key),
                condition: Condition::Any,
            });
        }
        match self.index.transact(writes).await? {
            Outcome::Applied => Ok(()),
            Outcome::Conflict => Err(AccountError::UnknownDomain(domain.clone())),
        }
    }

    /// The DKIM keys of a domain, by selector.
    pub async fn dkim_keys(&self, domain: &Domain) -> AccountResult<Vec<DkimKeyRecord>> {
        self.records(&format!("dkim#{domain}")).await
    }

    /// Changes the DKIM keys of a hosted domain: `change` gets them all
    /// and leaves what should be. Written in one transaction, which fails
    /// (changing nothing) if another change came in between.
    pub async fn update_dkim_keys<F>(
        &self,
        domain: &Domain,
        change: F,
    ) -> AccountResult<Vec<DkimKeyRecord>>
    where
        F: FnOnce(&mut Vec<DkimKeyRecord>) -> AccountResult<()>,
    {
        let pk = format!("dkim#{domain}");
        let items = self
            .index
            .query(&pk, SkRange::All, usize::MAX, false)
            .await?;
        let before: Vec<(DkimKeyRecord, u64)> = items
            .iter()
            .map(|item| Ok((decode(item)?, item.version)))
            .collect::<AccountResult<_>>()?;
        let mut keys: Vec<DkimKeyRecord> = before.iter().map(|(k, _)| k.clone()).collect();
        change(&mut keys)?;
        let mut writes = vec![Write::Check {
            key: domain_key(domain),
            condition: Condition::Present,
        }];
        for key in &keys {
            let condition = match before.iter().find(|(k, _)| k.selector == key.selector) {
                Some((old, _)) if old == key => continue,
                Some((_, version)) => Condition::Version(*version),
                None => Condition::Absent,
            };
            writes.push(Write::Put {
                key: Key::new(pk.as_str(), key.selector.as_str()),
                value: encode(key),
                condition,
            });
        }
        for (old, version) in &before {
            if !keys.iter().any(|k| k.selector == old.selector) {
                writes.push(Write::Delete {
                    key: Key::new(pk.as_str(), old.selector.as_str()),
                    condition: Condition::Version(*version),
                });
            }
        }
        if writes.len() > 1 {
            match self.index.transact(writes).await? {
                Outcome::Applied => {}
                Outcome::Conflict if self.domain(domain).await?.is_none() => {
                    return Err(AccountError::UnknownDomain(domain.clone()));
                }
                Outcome::Conflict => {
                    return Err(AccountError::DkimKeys(format!(
                        "the DKIM keys of {domain} were changed meanwhile; try again"
                    )));
                }
            }
        }
        Ok(keys)
    }

    pub async fn domain(&self, domain: &Domain) -> AccountResult<Option<DomainRecord>> {
        self.record(&domain_key(domain)).await
    }

    pub async fn list_domains(&self) -> AccountResult<Vec<DomainRecord>> {
        self.records("domain").await
    }

    /// `domain`, or (`None`) every hosted domain.
    pub async fn domains_or_all(&self, domain: Option<&Domain>) -> AccountResult<Vec<Domain>> {
        Ok(match domain {
            Some(d) => vec![d.clone()],
            None => self
                .list_domains()
                .await?
                .into_iter()
                .map(|d| d.name)
                .collect(),
        })
    }

    /// Removes a domain that has no users left.
    pub async fn del_domain(&self, domain: &Domain) -> AccountResult<()> {
        let users = self.list_users(domain).await?.len();
        if users > 0 {
            return Err(AccountError::DomainNotEmpty {
                domain: domain.clone(),
                users,
            });
        }
        let aliases = self.list_aliases(domain).await?.len();
        if aliases > 0 {
            return Err(AccountError::DomainHasAliases {
                domain: domain.clone(),
                aliases,
            });
        }
        if !self.lists(Some(domain)).await?.is_empty() {
            return Err(AccountError::DomainHasLists(domain.clone()));
        }
        match self
            .index
            .transact(vec![Write::Delete {
                key: domain_key(domain),
                condition: Condition::Present,
            }])
            .await?
        {
            Outcome::Applied => {
                // Keys are secrets of whoever held the name: a domain
                // added again gets keys of its own, never these.
                for key in self.dkim_keys(domain).await? {
                    let _ = self
                        .index
                        .transact(vec![Write::Delete {
                            key: Key::new(format!("dkim#{domain}"), key.selector),
                            condition: Condition::Any,
                        }])
                        .await?;
                }
                self.delete_spam_settings(&crate::spam::Scope::Domain(domain.clone()))
                    .await
            }
            Outcome::Conflict => Err(AccountError::UnknownDomain(domain.clone())),
        }
    }

    /// Creates a user with the default mailboxes, all or nothing. The domain
    /// must exist.
    pub async fn add_user(
        &self,
        address: &Address,
        password_hash: String,
        quota: Option<u64>,
    ) -> AccountResult<UserRecord> {
        if self.list_role(address).await?.is_some() {
            return Err(AccountError::AddressTaken(address.clone()));
        }
        let record = UserRecord {
            address: address.clone(),
            password_hash,
            quota,
            created: now(),
            forward: None,
            disabled: false,
            admin: None,
            app_passwords: Vec::new(),
            generation: now_ms().max(1) as u64,
        };
        let mut writes = vec![
            Write::Check {
                key: domain_key(address.domain()),
                condition: Condition::Present,
            },
            Write::Put {
                key: user_key(address),
                value: encode(&record),
                condition: Condition::Absent,
            },
        ];
        for (name, special_use) in default_mailboxes() {
            let mailbox = self.new_mailbox(name, special_use).await?;
            // The default mailboxes start subscribed; others do not.
            writes.push(subscription_row(address, &mailbox.name));
            writes.push(Write::Put {
                key: Key::new(mailbox_pk(address), mailbox.name.as_str()),
                value: encode(&mailbox),
                condition: Condition::Any,
            });
        }
        match self.index.transact(writes).await? {
            Outcome::Applied => Ok(record),
            Outcome::Conflict => {
                if self.domain(address.domain()).await?.is_none() {
                    Err(AccountError::UnknownDomain(address.domain().clone()))
                } else {
                    Err(AccountError::UserExists(address.clone()))
                }
            }
        }
    }

    pub async fn user(&self, address: &Address) -> AccountResult<Option<UserRecord>> {
        self.record(&user_key(address)).await
    }

    pub async fn list_users(&self, domain: &Domain) -> AccountResult<Vec<UserRecord>> {
        let pk = format!("user#{domain}");
        self.records(&pk).await
    }

    /// Removes the account and its mailbox records.
    pub async fn del_user(&self, address: &Address) -> AccountResult<()> {
        let revoke = revocation_row(&Revocation {
            address: address.clone(),
            below: u64::MAX,
            app_password: None,
        });
        match self
            .index
            .transact(vec![
                Write::Delete {
                    key: user_key(address),
                    condition: Condition::Present,
                },
                revoke,
            ])
            .await?
        {
            Outcome::Applied => {}
            Outcome::Conflict => return Err(AccountError::UnknownUser(address.clone())),
        }
        // The account is gone, so nothing new can be filed; its mailbox
        // records (each leaving a trash record for the sweeper, which
        // removes their messages), identities and delivery markers go in
        // pages (a transaction holds at most 100 writes).
        let dedup = format!("dedup#{}", address.account_key());
        // The spam filter's rows: the lessons, and the row naming the
        // user's own model (whose blob stays under spam/user/, unread).
        let lessons = format!("spamlearned#{}", address.account_key());
        let model = format!("spamuser#{}", address.account_key());
        // Whom their vacation replies went to, and when.
        let vacation = format!("vacation#{}", address.account_key());
        for pk in [
            mailbox_pk(address),
            identity_pk(address),
            subscription_pk(address),
            annotation_pk(address),
            url_key_pk(address),
            dedup,
            lessons,
            model,
            vacation,
        ] {
            loop {
                let page = self.index.query(&pk, SkRange::All, 50, false).await?;
                if page.is_empty() {
                    break;
                }
                let mut writes = Vec::new();
                for item in page {
                    if let Ok(mailbox) = decode::<MailboxRecord>(&item)
                        && pk.starts_with("mbox#")
                    {
                        writes.push(Write::Put {
                            key: trash_key(&mailbox.id),
                            value: now().to_string().into_bytes(),
                            condition: Condition::Any,
                        });
                    }
                    writes.push(Write::Delete {
                        key: item.key,
                        condition: Condition::Any,
                    });
                }
                let _ = self.index.transact(writes).await?;
            }
        }
        self.delete_spam_settings(&crate::spam::Scope::User(address.clone()))
            .await?;
        Ok(())
    }

    /// Lets `user` send as `identity` too (an address at any domain).
    pub async fn add_identity(&self, user: &Address, identity: &Address) -> AccountResult<()> {
        let record = IdentityRecord {
            user: user.clone(),
            identity: identity.clone(),
            created: now(),
        };
        let writes = vec![
            Write::Check {
                key: user_key(user),
                condition: Condition::Present,
            },
            Write::Put {
                key: identity_key(user, identity),
                value: encode(&record),
                condition: Condition::Absent,
            },
        ];
        match self.index.transact(writes).await? {
            Outcome::Applied => Ok(()),
            Outcome::Conflict if self.user(user).await?.is_none() => {
                Err(AccountError::UnknownUser(user.clone()))
            }
            Outcome::Conflict => Err(AccountError::IdentityExists {
                user: user.clone(),
                identity: identity.clone(),
            }),
        }
    }

    pub async fn del_identity(&self, user: &Address, identity: &Address) -> AccountResult<()> {
        let delete = Write::Delete {
            key: identity_key(user, identity),
            condition: Condition::Present,
        };
        match self.index.transact(vec![delete]).await? {
            Outcome::Applied => Ok(()),
            Outcome::Conflict => Err(AccountError::UnknownIdentity {
                user: user.clone(),
                identity: identity.clone(),
            }),
        }
    }

    /// The identities granted to `user`.
    pub async fn identities(&self, user: &Address) -> AccountResult<Vec<IdentityRecord>> {
        self.records(&identity_pk(user)).await
    }

    /// Whether `user` may send as `sender` (in the envelope or in From and
    /// Sender): their own address, a plus-tag of it, an alias that leads to
    /// them, or an identity an admin granted them (or a plus-tag of one).
    pub async fn may_send_as(&self, user: &Address, sender: &Address) -> AccountResult<bool> {
        let own = user.account_key();
        for candidate in std::iter::once(sender.clone()).chain(strip_plus(sender)) {
            if candidate.account_key() == own {
                return Ok(true);
            }
            if self
                .index
                .get(&identity_key(user, &candidate))
                .await?
                .is_some()
            {
                return Ok(true);
            }
            if self.alias(&candidate).await?.is_some()
                && self
                    .expand(&candidate)
                    .await?
                    .users
                    .iter()
                    .any(|u| u.account_key() == own)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Replaces the password hash; every session signed in before ends (on
    /// every gateway), and the app passwords go too (a password changed
    /// because it leaked must not leave the intruder a way in).
    /// Returns the credential generation it wrote.
    pub async fn set_password(
        &self,
        address: &Address,
        password_hash: String,
    ) -> AccountResult<u64> {
        self.set_password_if(address, password_hash, |_| true).await
    }

    /// [`Accounts::set_password`], only while `still` holds for the
    /// account as it is when written (an invitation: its credential
    /// generation and role unchanged since); otherwise
    /// [`AccountError::Superseded`].
    pub async fn set_password_if(
        &self,
        address: &Address,
        password_hash: String,
        still: impl Fn(&UserRecord) -> bool,
    ) -> AccountResult<u64> {
        let mut written = 0;
        self.update_user(address, |u| {
            if !still(u) {
                return Err(AccountError::Superseded(address.clone()));
            }
            u.password_hash.clone_from(&password_hash);
            u.app_passwords.clear();
            u.generation += 1;
            written = u.generation;
            Ok(())
        })
        .await?;
        Ok(written)
    }

    pub async fn set_quota(&self, address: &Address, quota: Option<u64>) -> AccountResult<()> {
        self.update_user(address, |u| {
            u.quota = quota;
            Ok(())
        })
        .await
    }

    /// Disables (every session ends, no sign-in works) or enables the
    /// account; its mail keeps arriving either way.
    pub async fn set_disabled(&self, address: &Address, disabled: bool) -> AccountResult<()> {
        self.update_user(address, |u| {
            if disabled && !u.disabled {
                u.generation += 1;
            }
            u.disabled = disabled;
            Ok(())
        })
        .await
    }

    /// Sets (`None`: takes away) what the user may administer. Each of a
    /// domain admin's domains must be hosted.
    pub async fn set_admin(
        &self,
        address: &Address,
        grant: Option<AdminGrant>,
    ) -> AccountResult<()> {
        if let Some(g) = &grant {
            for d in &g.domains {
                if self.domain(d).await?.is_none() {
                    return Err(AccountError::UnknownDomain(d.clone()));
                }
            }
        }
        self.update_user(address, |u| {
            u.admin.clone_from(&grant);
            Ok(())
        })
        .await
    }

    /// Adds an app password (its id must be new to the user, its name
    /// too).
    pub async fn add_app_password(
        &self,
        address: &Address,
        password: AppPassword,
    ) -> AccountResult<()> {
        self.update_user(address, |u| {
            if u.app_passwords.iter().any(|p| p.name == password.name) {
                return Err(AccountError::AppPasswordExists {
                    user: address.clone(),
                    name: password.name.clone(),
                });
            }
            if u.app_passwords.len() >= MAX_APP_PASSWORDS {
                return Err(AccountError::TooManyAppPasswords);
            }
            if u.app_passwords.iter().any(|p| p.id == password.id) {
                return Err(AccountError::InvalidSetting(
                    "app password clash; try again".into(),
                ));
            }
            u.app_passwords.push(password.clone());
            Ok(())
        })
        .await
    }

    /// Deletes the app password `name`; the sessions signed in with it
    /// end. Returns what it was.
    pub async fn del_app_password(
        &self,
        address: &Address,
        name: &str,
    ) -> AccountResult<AppPassword> {
        let mut removed = None;
        self.update_user(address, |u| {
            let i = u
                .app_passwords
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| AccountError::UnknownAppPassword {
                    user: address.clone(),
                    name: name.to_string(),
                })?;
            removed = Some(u.app_passwords.remove(i));
            Ok(())
        })
        .await?;
        removed.ok_or_else(|| AccountError::UnknownAppPassword {
            user: address.clone(),
            name: name.to_string(),
        })
    }

    /// Forwards `address`'s mail to `forward`'s targets (`None`: stops
    /// forwarding). Each target must exist if it is hosted here, and none
    /// may be the user.
    pub async fn set_forward(
        &self,
        address: &Address,
        forward: Option<Forward>,
    ) -> AccountResult<()> {
        if let Some(f) = &forward {
            if f.targets.is_empty() {
                return Err(AccountError::NoTargets);
            }
            for target in &f.targets {
                if target.account_key() == address.account_key() {
                    return Err(AccountError::AliasLoop {
                        alias: address.clone(),
                        target: target.clone(),
                    });
                }
                if let RecipientCheck::UnknownUser
                | RecipientCheck::CatchAll(_)
                | RecipientCheck::BadSrs(_)
                | RecipientCheck::Srs(_) = self.check_recipient(target, 0).await?
                {
                    return Err(AccountError::UnknownTarget(target.clone()));
                }
            }
        }
        self.update_user(address, |u| {
            u.forward.clone_from(&forward);
            Ok(())
        })
        .await
    }

    /// Changes the user's record, retrying when it changed meanwhile. A
    /// change that ends sessions (a later generation, a deleted app
    /// password) publishes the revocation in the same transaction.
    async fn update_user(
        &self,
        address: &Address,
        mut change: impl FnMut(&mut UserRecord) -> AccountResult<()>,
    ) -> AccountResult<()> {
        let key = user_key(address);
        loop {
            let item = self
                .index
                .get(&key)
                .await?
                .ok_or_else(|| AccountError::UnknownUser(address.clone()))?;
            let before: UserRecord = decode(&item)?;
            let mut user = before.clone();
            change(&mut user)?;
            let mut writes = vec![Write::Put {
                key: key.clone(),
                value: encode(&user),
                condition: Condition::Version(item.version),
            }];
            if user.generation > before.generation {
                // Every session of an earlier generation, app passwords'
                // included.
                writes.push(revocation_row(&Revocation {
                    address: user.address.clone(),
                    below: user.generation,
                    app_password: None,
                }));
            } else {
                for gone in before
                    .app_passwords
                    .iter()
                    .filter(|p| !user.app_passwords.iter().any(|q| q.id == p.id))
                {
                    writes.push(revocation_row(&Revocation {
                        address: user.address.clone(),
                        below: u64::MAX,
                        app_password: Some(gone.id.clone()),
                    }));
                }
            }
            if self.index.transact(writes).await? == Outcome::Applied {
                return Ok(());
            }
        }
    }

    /// Bytes stored in all of a user's mailboxes.
    pub async fn usage(&self, address: &Address) -> AccountResult<u64> {
        Ok(self.mailboxes(address).await?.iter().map(|m| m.size).sum())
    }

    /// The index the accounts live in.
    pub fn index(&self) -> &dyn Index {
        self.index.as_ref()
    }

    /// What RCPT TO should make of `address` for a message of `size` bytes
    /// (0 when unknown). Exact user and alias names win over plus-addressing.
    pub async fn check_recipient(
        &self,
        address: &Address,
        size: u64,
    ) -> AccountResult<RecipientCheck> {
        Ok(self.lookup(address, size).await?.0)
    }

    /// [`Self::check_recipient`], and a user's forwarding.
    async fn lookup(
        &self,
        address: &Address,
        size: u64,
    ) -> AccountResult<(RecipientCheck, Option<Forward>)> {
        let Some(domain) = self.domain(address.domain()).await? else {
            return Ok((RecipientCheck::NotLocal, None));
        };
        let candidates = std::iter::once(address.clone()).chain(strip_plus(address));
        for candidate in candidates {
            if let Some(mut user) = self.user(&candidate).await? {
                // A disabled account's forwarding is paused: its mail is
                // kept here, and nothing leaves in its name.
                if user.disabled {
                    user.forward = None;
                }
                if let Some(quota) = user.quota
                    && self.usage(&user.address).await?.saturating_add(size) > quota
                {
                    return Ok((RecipientCheck::OverQuota(user.address), user.forward));
                }
                return Ok((RecipientCheck::User(user.address), user.forward));
            }
            if let Some(alias) = self.alias(&candidate).await? {
                return Ok((RecipientCheck::Alias(alias.alias), None));
            }
        }
        if let Some((list, role)) = self.list_role(address).await? {
            return Ok((RecipientCheck::List(list.address, role), None));
        }
        // Nobody has it: an SRS address we made, coming back?
        if crate::srs::is_srs(address.local_part()) {
            let srs = crate::srs::Srs::load(self.index.as_ref()).await?;
            return Ok((
                match srs.reverse(self.index.as_ref(), address, now()).await {
                    Ok(sender) => RecipientCheck::Srs(sender),
                    Err(crate::srs::SrsError::Store(e)) => return Err(e.into()),
                    Err(e) => RecipientCheck::BadSrs(e.to_string()),
                },
                None,
            ));
        }
        Ok((
            match domain.catch_all {
                Some(target) => RecipientCheck::CatchAll(target),
                None => RecipientCheck::UnknownUser,
            },
            None,
        ))
    }

    /// Sets (or with `None` removes) `domain`'s catch-all. The target
    /// must be a user or an alias here, so that the catch-all always
    /// leads to someone.
    pub async fn set_catch_all(
        &self,
        domain: &Domain,
        target: Option<&Address>,
    ) -> AccountResult<()> {
        if let Some(target) = target {
            match self.check_recipient(target, 0).await? {
                RecipientCheck::User(_)
                | RecipientCheck::OverQuota(_)
                | RecipientCheck::Alias(_) => {}
                _ => return Err(AccountError::UnknownTarget(target.clone())),
            }
        }
        let key = domain_key(domain);
        loop {
            let Some(item) = self.index.get(&key).await? else {
                return Err(AccountError::UnknownDomain(domain.clone()));
            };
            let mut record: DomainRecord = decode(&item)?;
            record.catch_all = target.cloned();
            let put = self
                .index
                .put(
                    key.clone(),
                    encode(&record),
                    Condition::Version(item.version),
                )
                .await?;
            if put == Outcome::Applied {
                return Ok(());
            }
        }
    }

    /// Creates an alias. Every target at a hosted domain must exist (a
    /// user, a plus-tag of one, or another alias), and no target may lead
    /// back to the alias, so that mail to it always reaches someone.
    pub async fn add_alias(&self, alias: &Address, targets: Vec<Address>) -> AccountResult<()> {
        if targets.is_empty() {
            return Err(AccountError::NoTargets);
        }
        if self.user(alias).await?.is_some() {
            return Err(AccountError::AliasIsUser(alias.clone()));
        }
        if self.list_role(alias).await?.is_some() {
            return Err(AccountError::AddressTaken(alias.clone()));
        }
        let own = alias.account_key();
        for target in &targets {
            let leads_back = || AccountError::AliasLoop {
                alias: alias.clone(),
                target: target.clone(),
            };
            if target.account_key() == own {
                return Err(leads_back());
            }
            match self.check_recipient(target, 0).await? {
                // A target must exist itself, not only be caught.
                RecipientCheck::UnknownUser | RecipientCheck::CatchAll(_) => {
                    return Err(AccountError::UnknownTarget(target.clone()));
                }
                RecipientCheck::Alias(_) => {
                    // The new alias does not exist yet, so a path back to
                    // it ends at its address as an unknown one.
                    let reached = self.expand(target).await?;
                    if reached
                        .unknown
                        .iter()
                        .chain(&reached.loops)
                        .any(|a| a.account_key() == own)
                    {
                        return Err(leads_back());
                    }
                }
                RecipientCheck::Srs(_) | RecipientCheck::BadSrs(_) => {
                    return Err(AccountError::UnknownTarget(target.clone()));
                }
                RecipientCheck::User(_)
                | RecipientCheck::OverQuota(_)
                | RecipientCheck::List(..)
                | RecipientCheck::NotLocal => {}
            }
        }
        let record = AliasRecord {
            alias: alias.clone(),
            targets,
        };
        let writes = vec![
            Write::Check {
                key: domain_key(alias.domain()),
                condition: Condition::Present,
            },
            Write::Check {
                key: user_key(alias),
                condition: Condition::Absent,
            },
            Write::Put {
                key: alias_key(alias),
                value: encode(&record),
                condition: Condition::Absent,
            },
        ];
        match self.index.transact(writes).await? {
            Outcome::Applied => Ok(()),
            Outcome::Conflict if self.domain(alias.domain()).await?.is_none() => {
                Err(AccountError::UnknownDomain(alias.domain().clone()))
            }
            Outcome::Conflict if self.user(alias).await?.is_some() => {
                Err(AccountError::AliasIsUser(alias.clone()))
            }
            Outcome::Conflict => Err(AccountError::AliasExists(alias.clone())),
        }
    }

    pub async fn alias(&self, address: &Address) -> AccountResult<Option<AliasRecord>> {
        self.record(&alias_key(address)).await
    }

    pub async fn list_aliases(&self, domain: &Domain) -> AccountResult<Vec<AliasRecord>> {
        let pk = format!("alias#{domain}");
        self.records(&pk).await
    }

    pub async fn del_alias(&self, alias: &Address) -> AccountResult<()> {
        match self
            .index
            .transact(vec![Write::Delete {
                key: alias_key(alias),
                condition: Condition::Present,
            }])
            .await?
        {
            Outcome::Applied => Ok(()),
            Outcome::Conflict => Err(AccountError::UnknownAlias(alias.clone())),
        }
    }

    /// Follows aliases (nested ones too, at most [`MAX_ALIAS_DEPTH`] deep)
    /// from `address` to the users and remote addresses it reaches. A loop
    /// is cut where it closes, so mail still reaches every user on the way.
    pub async fn expand(&self, address: &Address) -> AccountResult<Expansion> {
        let mut out = Expansion::default();
        let mut seen = std::collections::HashSet::new();
        let mut users = std::collections::HashSet::new();
        // Depth-first; every alias is expanded at most once, which ends loops.
        let mut stack: Vec<(Address, usize)> = vec![(address.clone(), 0)];
        while let Some((addr, depth)) = stack.pop() {
            let (check, forward) = self.lookup(&addr, 0).await?;
            match check {
                // A domain's catch-all is followed once per expansion; its
                // target, if nobody either, leads nowhere.
                RecipientCheck::CatchAll(target) => {
                    if seen.insert(format!("catch-all@{}", addr.domain())) {
                        stack.push((target, depth + 1));
                    } else {
                        out.unknown.push(addr);
                    }
                }
                RecipientCheck::User(user) | RecipientCheck::OverQuota(user) => {
                    // A forwarding user is followed once per expansion;
                    // reached again (forwards that lead back), or too
                    // deep, the mail is kept rather than lost.
                    let follow = forward.filter(|_| {
                        depth < MAX_ALIAS_DEPTH
                            && seen.insert(format!("forward:{}", user.account_key()))
                    });
                    let keep = follow.as_ref().is_none_or(|f| f.keep);
                    if keep && users.insert(user.account_key()) {
                        out.users.push(user);
                    }
                    for target in follow.into_iter().flat_map(|f| f.targets).rev() {
                        stack.push((target, depth + 1));
                    }
                }
                // A bounce of a forward: back to where it came from.
                RecipientCheck::Srs(sender) => stack.push((sender, depth + 1)),
                RecipientCheck::BadSrs(_) => out.unknown.push(addr),
                RecipientCheck::List(list, role) => {
                    if !out.lists.iter().any(|(l, r)| *l == list && *r == role) {
                        out.lists.push((list, role));
                    }
                }
                RecipientCheck::NotLocal => {
                    if !out.remote.contains(&addr) {
                        out.remote.push(addr);
                    }
                }
                RecipientCheck::UnknownUser => out.unknown.push(addr),
                RecipientCheck::Alias(alias) => {
                    if !seen.insert(alias.account_key()) || depth >= MAX_ALIAS_DEPTH {
                        out.loops.push(alias);
                        continue;
                    }
                    if let Some(record) = self.alias(&alias).await? {
                        for target in record.targets.into_iter().rev() {
                            stack.push((target, depth + 1));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    pub async fn mailboxes(&self, address: &Address) -> AccountResult<Vec<MailboxRecord>> {
        self.index
            .query(&mailbox_pk(address), SkRange::All, PAGE, false)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    /// Creates a mailbox for an existing user.
    pub async fn create_mailbox(
        &self,
        address: &Address,
        name: MailboxName,
    ) -> AccountResult<MailboxRecord> {
        self.create_mailbox_with(address, name, None).await
    }

    /// Creates a mailbox with a special-use role (CREATE-SPECIAL-USE).
    pub async fn create_mailbox_with(
        &self,
        address: &Address,
        name: MailboxName,
        special_use: Option<SpecialUse>,
    ) -> AccountResult<MailboxRecord> {
        name.check_new()?;
        let mailbox = self.new_mailbox(name, special_use).await?;
        let writes = vec![
            Write::Check {
                key: user_key(address),
                condition: Condition::Present,
            },
            Write::Put {
                key: Key::new(mailbox_pk(address), mailbox.name.as_str()),
                value: encode(&mailbox),
                condition: Condition::Absent,
            },
        ];
        match self.index.transact(writes).await? {
            Outcome::Applied => Ok(mailbox),
            Outcome::Conflict if self.user(address).await?.is_none() => {
                Err(AccountError::UnknownUser(address.clone()))
            }
            Outcome::Conflict => Err(AccountError::MailboxExists(mailbox.name)),
        }
    }

    /// Deletes a mailbox. Its messages hang off the mailbox's id, which no
    /// later mailbox of the same name reuses; the sweeper removes them (a
    /// trash record written in the same transaction tells it to).
    pub async fn delete_mailbox(&self, address: &Address, name: &MailboxName) -> AccountResult<()> {
        let key = Key::new(mailbox_pk(address), name.as_str());
        loop {
            let Some(item) = self.index.get(&key).await? else {
                return Err(AccountError::UnknownMailbox(name.clone()));
            };
            let mailbox: MailboxRecord = decode(&item)?;
            let mut writes = vec![
                Write::Delete {
                    key: key.clone(),
                    condition: Condition::Version(item.version),
                },
                Write::Put {
                    key: trash_key(&mailbox.id),
                    value: now().to_string().into_bytes(),
                    condition: Condition::Any,
                },
            ];
            // The subscription stays (RFC 9051 §6.3.5), an old-style one
            // (a flag of the record) as a row of its own.
            if mailbox.subscribed {
                writes.push(subscription_row(address, name));
            }
            if self.index.transact(writes).await? == Outcome::Applied {
                return Ok(());
            }
        }
    }

    /// Renames a mailbox and every mailbox below it, in one transaction;
    /// their ids (and so their messages and UIDVALIDITY) stay. Renaming
    /// INBOX moves its messages to the new name and leaves an empty INBOX
    /// with a new id (RFC 9051 §6.3.6).
    pub async fn rename_mailbox(
        &self,
        address: &Address,
        from: &MailboxName,
        to: &MailboxName,
    ) -> AccountResult<()> {
        to.check_new()?;
        let all = self.mailboxes(address).await?;
        let Some(source) = all.iter().find(|m| &m.name == from) else {
            return Err(AccountError::UnknownMailbox(from.clone()));
        };
        if all.iter().any(|m| &m.name == to) {
            return Err(AccountError::MailboxExists(to.clone()));
        }
        let pk = mailbox_pk(address);
        let mut writes = Vec::new();
        let mut moved = vec![source.clone()];
        if !from.is_inbox() {
            let prefix = format!("{from}/");
            moved.extend(
                all.iter()
                    .filter(|m| m.name.as_str().starts_with(&prefix))
                    .cloned(),
            );
        }
        for mut m in moved {
            let new_name = if &m.name == from {
                to.clone()
            } else {
                let rest = &m.name.as_str()[from.as_str().len()..];
                MailboxName::parse(&format!("{to}{rest}")).map_err(AccountError::InvalidMailbox)?
            };
            if all.iter().any(|o| o.name == new_name) {
                return Err(AccountError::MailboxExists(new_name));
            }
            let old_key = Key::new(pk.clone(), m.name.as_str());
            if m.name.is_inbox() {
                let fresh = self.new_mailbox(MailboxName::inbox(), None).await?;
                writes.push(Write::Put {
                    key: old_key,
                    value: encode(&fresh),
                    condition: Condition::Present,
                });
            } else {
                writes.push(Write::Delete {
                    key: old_key,
                    condition: Condition::Present,
                });
            }
            // Subscriptions are names and stay where they are, an old-style
            // one (a flag of the record) as a row of its own.
            if m.subscribed {
                writes.push(subscription_row(address, &m.name));
                m.subscribed = false;
            }
            m.name = new_name;
            writes.push(Write::Put {
                key: Key::new(pk.clone(), m.name.as_str()),
                value: encode(&m),
                condition: Condition::Absent,
            });
        }
        if writes.len() > crate::ports::MAX_TRANSACTION_ITEMS {
            return Err(AccountError::TooManyMailboxes);
        }
        match self.index.transact(writes).await? {
            Outcome::Applied => Ok(()),
            // Someone changed the hierarchy meanwhile: report what stands.
            Outcome::Conflict => Err(AccountError::MailboxExists(to.clone())),
        }
    }

    /// Subscribes to or unsubscribes from a mailbox name, which need not
    /// exist (RFC 9051 §6.3.7); at most [`MAX_SUBSCRIPTIONS`].
    pub async fn set_subscribed(
        &self,
        address: &Address,
        name: &MailboxName,
        subscribed: bool,
    ) -> AccountResult<()> {
        let key = Key::new(subscription_pk(address), name.as_str());
        if !subscribed {
            let _ = self.index.delete(key, Condition::Any).await?;
            return self.clear_old_subscription(address, name).await;
        }
        if self.index.get(&key).await?.is_some() {
            return Ok(());
        }
        let held = self
            .index
            .query(
                &subscription_pk(address),
                SkRange::All,
                MAX_SUBSCRIPTIONS,
                false,
            )
            .await?;
        if held.len() >= MAX_SUBSCRIPTIONS {
            return Err(AccountError::TooManySubscriptions);
        }
        let _ = self
            .index
            .transact(vec![subscription_row(address, name)])
            .await?;
        Ok(())
    }

    /// The names `address` is subscribed to, existing or not, in order:
    /// the rows, and the old-style flags of `mailboxes` (the user's
    /// mailboxes, as just read).
    pub async fn subscriptions(
        &self,
        address: &Address,
        mailboxes: &[MailboxRecord],
    ) -> AccountResult<std::collections::BTreeSet<MailboxName>> {
        let mut names: std::collections::BTreeSet<MailboxName> = mailboxes
            .iter()
            .filter(|m| m.subscribed)
            .map(|m| m.name.clone())
            .collect();
        let pk = subscription_pk(address);
        let mut range = SkRange::All;
        loop {
            let page = self.index.query(&pk, range, 500, false).await?;
            let n = page.len();
            let last = page.last().map(|i| i.key.sk.clone());
            names.extend(
                page.iter()
                    .filter_map(|i| MailboxName::parse(&i.key.sk).ok()),
            );
            match last {
                Some(last) if n == 500 => range = SkRange::From(format!("{last}\u{0}")),
                _ => break,
            }
        }
        Ok(names)
    }

    /// Subscriptions were once a flag of the mailbox record: unsubscribing
    /// clears it too.
    async fn clear_old_subscription(
        &self,
        address: &Address,
        name: &MailboxName,
    ) -> AccountResult<()> {
        let key = Key::new(mailbox_pk(address), name.as_str());
        loop {
            let Some(item) = self.index.get(&key).await? else {
                return Ok(());
            };
            let mut record: MailboxRecord = decode(&item)?;
            if !record.subscribed {
                return Ok(());
            }
            record.subscribed = false;
            let put = Write::Put {
                key: key.clone(),
                value: encode(&record),
                condition: Condition::Version(item.version),
            };
            if self.index.transact(vec![put]).await? == Outcome::Applied {
                return Ok(());
            }
        }
    }

    /// The METADATA entries (RFC 5464) of mailbox `scope` (its id; empty
    /// for the server), as (entry lower-cased, value), by entry.
    pub async fn annotations(
        &self,
        address: &Address,
        scope: &str,
    ) -> AccountResult<Vec<(String, Vec<u8>)>> {
        let prefix = format!("{scope}|");
        let items = self
            .index
            .query(
                &annotation_pk(address),
                SkRange::Prefix(prefix.clone()),
                MAX_ANNOTATIONS * 2,
                false,
            )
            .await?;
        Ok(items
            .into_iter()
            .map(|item| (item.key.sk[prefix.len()..].to_string(), item.value))
            .collect())
    }

    /// Sets (`Some`) or removes (`None`) METADATA entries of mailbox
    /// `scope` all at once; refused when values are over
    /// [`MAX_ANNOTATION_SIZE`] (checked by the caller, which names the
    /// limit) or the mailbox would have more than [`MAX_ANNOTATIONS`].
    pub async fn set_annotations(
        &self,
        address: &Address,
        scope: &str,
        changes: &[(String, Option<Vec<u8>>)],
    ) -> AccountResult<()> {
        let existing = self.annotations(address, scope).await?;
        let mut names: Vec<String> = existing.into_iter().map(|(e, _)| e).collect();
        // The last change of an entry named twice wins.
        let mut last: Vec<(String, &Option<Vec<u8>>)> = Vec::new();
        for (entry, value) in changes {
            let entry = entry.to_ascii_lowercase();
            last.retain(|(e, _)| *e != entry);
            last.push((entry, value));
        }
        let mut writes = Vec::new();
        for (entry, value) in last {
            let key = Key::new(annotation_pk(address), format!("{scope}|{entry}"));
            match value {
                Some(v) => {
                    if !names.contains(&entry) {
                        names.push(entry);
                    }
                    writes.push(Write::Put {
                        key,
                        value: v.clone(),
                        condition: Condition::Any,
                    });
                }
                None => {
                    names.retain(|n| *n != entry);
                    writes.push(Write::Delete {
                        key,
                        condition: Condition::Any,
                    });
                }
            }
        }
        if names.len() > MAX_ANNOTATIONS {
            return Err(AccountError::TooManyAnnotations);
        }
        for chunk in writes.chunks(crate::ports::MAX_TRANSACTION_ITEMS) {
            let _ = self.index.transact(chunk.to_vec()).await?;
        }
        Ok(())
    }

    /// The URLAUTH access key of `address`'s mailbox `mailbox_id`; with
    /// `create`, one is made when there is none.
    pub async fn url_key(
        &self,
        address: &Address,
        mailbox_id: &str,
        create: bool,
    ) -> AccountResult<Option<Vec<u8>>> {
        let key = Key::new(url_key_pk(address), mailbox_id);
        for _ in 0..3 {
            if let Some(item) = self.index.get(&key).await? {
                return Ok(Some(item.value));
            }
            if !create {
                return Ok(None);
            }
            let value = random_hex(32).into_bytes();
            let put = Write::Put {
                key: key.clone(),
                value: value.clone(),
                condition: Condition::Absent,
            };
            if self.index.transact(vec![put]).await? == Outcome::Applied {
                return Ok(Some(value));
            }
            // Made by another session meanwhile: read that one.
        }
        Err(StoreError::retryable("url key", "the access key stayed contended").into())
    }

    /// Forgets the URLAUTH access key of one mailbox, or of every mailbox
    /// (RESETKEY): URLs authorized with it stop working.
    pub async fn reset_url_keys(
        &self,
        address: &Address,
        mailbox_id: Option<&str>,
    ) -> AccountResult<()> {
        let pk = url_key_pk(address);
        if let Some(id) = mailbox_id {
            let delete = Write::Delete {
                key: Key::new(pk, id),
                condition: Condition::Any,
            };
            let _ = self.index.transact(vec![delete]).await?;
            return Ok(());
        }
        loop {
            let page = self.index.query(&pk, SkRange::All, 50, false).await?;
            if page.is_empty() {
                return Ok(());
            }
            crate::sweep::delete(self.index.as_ref(), page).await?;
        }
    }

    /// Removes every METADATA entry of mailbox `scope` (a deleted one).
    pub async fn delete_annotations(&self, address: &Address, scope: &str) -> AccountResult<()> {
        let changes: Vec<(String, Option<Vec<u8>>)> = self
            .annotations(address, scope)
            .await?
            .into_iter()
            .map(|(e, _)| (e, None))
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        self.set_annotations(address, scope, &changes).await
    }

    async fn new_mailbox(
        &self,
        name: MailboxName,
        special_use: Option<SpecialUse>,
    ) -> AccountResult<MailboxRecord> {
        Ok(MailboxRecord {
            name,
            id: random_hex(8),
            uidvalidity: self.next_uidvalidity().await?,
            uidnext: 1,
            highest_modseq: 1,
            special_use,
            subscribed: false,
            messages: 0,
            unseen: 0,
            size: 0,
            pruned_modseq: 0,
            first_recent_uid: Some(1),
            keywords: Some(Vec::new()),
        })
    }

    /// A UIDVALIDITY never handed out before: the current time in seconds, or
    /// one more than the last value if that is larger. Time-based values stay
    /// unique even if the index is ever restored from an older backup.
    pub async fn next_uidvalidity(&self) -> AccountResult<u32> {
        let key = Key::new("uidvalidity", "next");
        loop {
            let current = self.index.get(&key).await?;
            let last = match &current {
                Some(item) => decode::<u32>(item)?,
                None => 0,
            };
            let next = (now() as u32).max(last.wrapping_add(1)).max(1);
            let condition = current
                .as_ref()
                .map_or(Condition::Absent, |i| Condition::Version(i.version));
            let put = Write::Put {
                key: key.clone(),
                value: encode(&next),
                condition,
            };
            if self.index.transact(vec![put]).await? == Outcome::Applied {
                return Ok(next);
            }
        }
    }
}
