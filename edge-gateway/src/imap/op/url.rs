//! IMAP URLs (RFC 5092) read for a session: the parts CATENATE (RFC 4469)
//! joins into a new message, and URLAUTH (RFC 4467, with RFC 5524's
//! BINARY and BODYPARTSTRUCTURE): GENURLAUTH signs a URL to one of the
//! user's messages with the mailbox's access key, URLFETCH reads a signed
//! URL for whoever its access identifier names, RESETKEY revokes.
//!
//! A URL without URLAUTH is only ever read from the session user's own
//! mailboxes; one that names another user, a mailbox, UIDVALIDITY,
//! message or part that is not there names nothing. The host is not
//! checked: whatever it says, the data can only come from this server.

use std::fmt::Write as _;
use std::io;

use stratus_core::address::Address;
use stratus_core::mailbox::MailboxName;
use stratus_core::mailstore::MessageEntry;
use stratus_core::message::MessageMeta;
use stratus_proto::imap::command::{CatPart, UrlFetchArg};
use stratus_proto::imap::url::{ImapUrl, parse_url};
use stratus_proto::imap::wire::{self, Lossy};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::Conn;
use crate::imap::fetch::{Renderer, find_part, text_literal};
use crate::imap::session::*;

/// The one URLAUTH mechanism: HMAC-SHA256 of the URL under the mailbox's
/// access key.
const MECHANISM: &str = "INTERNAL";

impl Session<'_> {
    fn url_renderer(&self) -> Renderer<'_> {
        Renderer {
            blobs: self.ctx.shared.stores.blobs.as_ref(),
            utf8: true,
            recent: &[],
        }
    }

    /// The mailbox `url` names in `account`'s mailboxes.
    async fn url_mailbox(
        &self,
        account: &Address,
        url: &ImapUrl,
    ) -> Result<Option<stratus_core::accounts::MailboxRecord>, Refusal> {
        let name = match &url.mailbox {
            Some(m) => match MailboxName::parse(m) {
                Ok(n) => n,
                Err(_) => return Ok(None),
            },
            None => match &self.selected {
                Some(s) if account == self.account() => s.name.clone(),
                _ => return Ok(None),
            },
        };
        let found = self
            .store()
            .mailbox(account, &name)
            .await
            .map_err(Refusal::from)?;
        Ok(found
            .map(|(record, _)| record)
            .filter(|r| url.uidvalidity.is_none_or(|v| v == r.uidvalidity)))
    }

    /// The message `url` names in `account`'s mailboxes, with its
    /// metadata.
    async fn url_entry(
        &self,
        account: &Address,
        url: &ImapUrl,
    ) -> Result<Option<(MessageEntry, MessageMeta)>, Refusal> {
        let Some(record) = self.url_mailbox(account, url).await? else {
            return Ok(None);
        };
        let store = self.store();
        let entries = store
            .entries_by_id(&record.id, url.uid, url.uid)
            .await
            .map_err(Refusal::from)?;
        let Some(entry) = entries.into_iter().find(|e| e.uid == url.uid) else {
            return Ok(None);
        };
        let meta = store.meta(&entry).await.map_err(Refusal::from)?;
        Ok(Some((entry, meta)))
    }

    /// The bytes `url` names in `entry`: the message, or its section,
    /// with PARTIAL applied.
    async fn url_bytes(
        &self,
        url: &ImapUrl,
        entry: &MessageEntry,
        meta: &MessageMeta,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        let renderer = self.url_renderer();
        let data = match &url.section {
            Some(section) => renderer.section(entry, meta, section, None).await,
            None => renderer.read(entry, 0, entry.size).await.map(Some),
        };
        let unavailable = |_| no("[UNAVAILABLE] the message cannot be read now");
        let Some(mut data) = data.map_err(unavailable)? else {
            return Ok(None);
        };
        if let Some((offset, length)) = url.partial {
            let start = (offset as usize).min(data.len());
            let end = length.map_or(data.len(), |l| {
                start.saturating_add(l as usize).min(data.len())
            });
            data = data[start..end].to_vec();
        }
        Ok(Some(data))
    }

    /// The message CATENATE puts together from `parts` (RFC 4469 §5):
    /// texts as sent, URLs for what they name in this user's mailboxes.
    ///
    /// `budget` is what the whole command may still take (APPENDLIMIT in
    /// all): URLs may name much more than the command carried.
    pub(in crate::imap) async fn catenate(
        &self,
        parts: &[CatPart],
        budget: u64,
    ) -> Result<Vec<u8>, Refusal> {
        let limit = budget;
        let mut message = Vec::new();
        for part in parts {
            match part {
                CatPart::Text(text) => message.extend_from_slice(text),
                CatPart::Url(text) => {
                    let bad_url = || {
                        no(format!(
                            "[BADURL {}] the URL names nothing here",
                            echo(text)
                        ))
                    };
                    let url = parse_url(text).map_err(|_| bad_url())?;
                    let data = match &url.urlauth {
                        // Someone's authorized URL: read as URLFETCH would.
                        Some(_) => self.fetch_authorized(&url).await?.map(|(_, d)| d),
                        None => {
                            let own = match &url.user {
                                None => true,
                                Some(u) => Address::parse(u).is_ok_and(|a| a == *self.account()),
                            };
                            match own {
                                true => match self.url_entry(self.account(), &url).await? {
                                    Some((e, m)) => self.url_bytes(&url, &e, &m).await?,
                                    None => None,
                                },
                                false => None,
                            }
                        }
                    };
                    message.extend_from_slice(&data.ok_or_else(bad_url)?);
                }
            }
            if message.len() as u64 > limit {
                return Err(no("[TOOBIG] the messages are over APPENDLIMIT"));
            }
        }
        Ok(message)
    }

    /// The token for `signed` (a URL up to its access identifier) under
    /// `key`.
    fn token(key: &[u8], signed: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        let tag = ring::hmac::sign(&key, signed.as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// GENURLAUTH: each URL, which must name a message of one of this
    /// user's mailboxes and end in `;URLAUTH=<access>`, signed.
    pub(in crate::imap) async fn gen_url_auth<S>(
        &mut self,
        conn: &mut Conn<S>,
        urls: &[(String, String)],
    ) -> Reply {
        let accounts = self.ctx.shared.stores.accounts();
        let mut line = b"* GENURLAUTH".to_vec();
        for (text, mechanism) in urls {
            if !mechanism.eq_ignore_ascii_case(MECHANISM) {
                return Err(no(format!(
                    "[BADURL {}] the only mechanism is {MECHANISM}",
                    echo(text)
                )));
            }
            let bad_url = || {
                no(format!(
                    "[BADURL {}] not a URL of yours to authorize",
                    echo(text)
                ))
            };
            let url = parse_url(text).map_err(|_| bad_url())?;
            let auth = url.urlauth.as_ref().ok_or_else(bad_url)?;
            let own = url
                .user
                .as_deref()
                .is_some_and(|u| Address::parse(u).is_ok_and(|a| a == *self.account()));
            if !own || auth.token.is_some() {
                return Err(bad_url());
            }
            let record = self
                .url_mailbox(self.account(), &url)
                .await?
                .ok_or_else(bad_url)?;
            let key = accounts
                .url_key(self.account(), &record.id, true)
                .await
                .map_err(Refusal::from)?
                .ok_or_else(bad_url)?;
            let signed = format!(
                "{}:internal:{}",
                auth.signed,
                Self::token(&key, &auth.signed)
            );
            line.push(b' ');
            wire::string(&mut line, signed.as_bytes(), false);
        }
        line.extend_from_slice(b"\r\n");
        conn.out().extend_from_slice(&line);
        Ok("GENURLAUTH completed".into())
    }

    /// RESETKEY: new access keys for one mailbox or all, so that every
    /// URL authorized before stops working.
    pub(in crate::imap) async fn reset_key(
        &mut self,
        mailbox: Option<&[u8]>,
        mechanisms: &[String],
    ) -> Reply {
        if let Some(m) = mechanisms
            .iter()
            .find(|m| !m.eq_ignore_ascii_case(MECHANISM))
        {
            return Err(no(format!(
                "unknown mechanism {m}; the only one is {MECHANISM}"
            )));
        }
        let accounts = self.ctx.shared.stores.accounts();
        let id = match mailbox {
            None => None,
            Some(raw) => Some(self.existing_mailbox(raw).await?.id),
        };
        accounts
            .reset_url_keys(self.account(), id.as_deref())
            .await
            .map_err(Refusal::from)?;
        Ok(format!("[URLMECH {MECHANISM}] RESETKEY completed"))
    }

    /// What an authorized URL names, if this session may read it: a valid
    /// token under its mailbox's current key, not expired, and an access
    /// identifier that admits this user (`authuser` and `anonymous`: any
    /// session; `user+name` and `submit+name`: that user).
    async fn fetch_authorized(
        &self,
        url: &ImapUrl,
    ) -> Result<Option<((MessageEntry, MessageMeta), Vec<u8>)>, Refusal> {
        let Some(auth) = &url.urlauth else {
            return Ok(None);
        };
        let (Some(mechanism), Some(token)) = (&auth.mechanism, &auth.token) else {
            return Ok(None);
        };
        if mechanism != MECHANISM
            || url
                .expire
                .is_some_and(|e| e <= stratus_core::mailstore::now())
        {
            return Ok(None);
        }
        let access = auth.access.to_ascii_lowercase();
        let admitted = access == "authuser"
            || access == "anonymous"
            || auth
                .named_user()
                .and_then(|u| Address::parse(&u).ok())
                .is_some_and(|u| u == *self.account());
        let Some(owner) = url.user.as_deref().and_then(|u| Address::parse(u).ok()) else {
            return Ok(None);
        };
        if !admitted {
            return Ok(None);
        }
        let Some(record) = self.url_mailbox(&owner, url).await? else {
            return Ok(None);
        };
        let key = self
            .ctx
            .shared
            .stores
            .accounts()
            .url_key(&owner, &record.id, false)
            .await
            .map_err(Refusal::from)?;
        let Some(key) = key else {
            return Ok(None);
        };
        let Some(tag) = hex(token) else {
            return Ok(None);
        };
        let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
        if ring::hmac::verify(&hmac, auth.signed.as_bytes(), &tag).is_err() {
            return Ok(None);
        }
        let Some((entry, meta)) = self.url_entry(&owner, url).await? else {
            return Ok(None);
        };
        let Some(data) = self.url_bytes(url, &entry, &meta).await? else {
            return Ok(None);
        };
        Ok(Some(((entry, meta), data)))
    }

    /// URLFETCH: what each authorized URL names, or NIL; with RFC 5524's
    /// parameters, its BODY, its BINARY (decoded content) and its
    /// BODYPARTSTRUCTURE.
    pub(in crate::imap) async fn url_fetch<S>(
        &mut self,
        conn: &mut Conn<S>,
        args: &[UrlFetchArg],
    ) -> io::Result<Reply>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        for arg in args {
            let found = match parse_url(&arg.url) {
                Ok(url) => match self.fetch_authorized(&url).await {
                    Ok(f) => f.map(|f| (url, f)),
                    Err(refusal) => return Ok(Err(refusal)),
                },
                Err(_) => None,
            };
            let mut out = b"* URLFETCH ".to_vec();
            wire::string(&mut out, arg.url.as_bytes(), false);
            out.push(b' ');
            match (&arg.params, found) {
                (_, None) => out.extend_from_slice(b"NIL"),
                (None, Some((_, (_, data)))) => text_literal(&mut out, data),
                (Some(params), Some((url, ((entry, meta), data)))) => {
                    out.push(b'(');
                    let part_path = url.section.as_ref().map_or(&[][..], |s| &s.part[..]);
                    let whole_part = url.section.as_ref().is_none_or(|s| s.text.is_none());
                    for (i, param) in params.iter().enumerate() {
                        if i > 0 {
                            out.push(b' ');
                        }
                        match param.as_str() {
                            "BODY" => {
                                out.extend_from_slice(b"BODY ");
                                text_literal(&mut out, data.clone());
                            }
                            "BINARY" => {
                                out.extend_from_slice(b"BINARY ");
                                let decoded = if whole_part && url.partial.is_none() {
                                    self.url_renderer()
                                        .binary(&entry, &meta, part_path)
                                        .await
                                        .ok()
                                        .flatten()
                                } else {
                                    None
                                };
                                match decoded {
                                    Some(d) if d.contains(&0) => {
                                        let _ = write!(Lossy(&mut out), "~{{{}}}\r\n", d.len());
                                        out.extend_from_slice(&d);
                                    }
                                    Some(d) => wire::literal(&mut out, &d),
                                    None => out.extend_from_slice(b"NIL"),
                                }
                            }
                            "BODYPARTSTRUCTURE" => {
                                out.extend_from_slice(b"BODYPARTSTRUCTURE ");
                                match find_part(&meta.structure, part_path).filter(|_| whole_part) {
                                    Some(part) => wire::body_structure(
                                        &mut out,
                                        part,
                                        true,
                                        self.enabled.utf8,
                                    ),
                                    None => out.extend_from_slice(b"NIL"),
                                }
                            }
                            other => {
                                return Ok(Err(bad(format!(
                                    "unknown URLFETCH parameter {}",
                                    echo(other)
                                ))));
                            }
                        }
                    }
                    out.push(b')');
                }
            }
            out.extend_from_slice(b"\r\n");
            conn.out().extend_from_slice(&out);
            // Up to 100 whole messages: out one at a time.
            if conn.queued() >= MAX_QUEUED {
                conn.flush().await?;
            }
        }
        Ok(Ok("URLFETCH completed".into()))
    }
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
