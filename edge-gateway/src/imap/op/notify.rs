//! NOTIFY (RFC 5465): what changes in which mailboxes the session is told
//! of unasked, between commands as well as in IDLE. The selected mailbox
//! reports as after any command (EXISTS, EXPUNGE or not for
//! `selected-delayed`, FETCH of flags, and MessageNew's fetch attributes
//! for new messages); the others by `* STATUS` when messages come, go or
//! (with FlagChange) change flags, by `* LIST` when they are created,
//! renamed or deleted (MailboxName) and when their subscription changes
//! (SubscriptionChange). Changes are looked for at the poll interval with
//! one read of the user's mailbox records, however many are watched.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io;
use std::time::Instant;

use stratus_core::accounts::MailboxRecord;
use stratus_core::mailbox::MailboxName;
use stratus_proto::imap::command::{
    Fetch, FetchAtt, NotifyEvent, NotifyFilter, NotifyGroup, NotifySet, SeqNum, SequenceSet,
};
use stratus_proto::imap::wire::Lossy;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

use crate::conn::{Conn, Fill, Flow};
use crate::imap::session::*;

/// The events Stratus reports (BADEVENT lists them).
const SUPPORTED: &str = "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange";

/// A NOTIFY SET in force, and what the session last saw.
#[derive(Debug)]
pub(in crate::imap) struct Notify {
    groups: Vec<Group>,
    /// The watched mailboxes by id, as last seen.
    seen: HashMap<String, MailboxRecord>,
    subscribed: BTreeSet<MailboxName>,
}

#[derive(Debug)]
struct Group {
    filter: Filter,
    events: Vec<NotifyEvent>,
    fetch: Vec<stratus_proto::imap::command::FetchAtt>,
}

#[derive(Debug)]
enum Filter {
    Selected { delayed: bool },
    Inboxes,
    Personal,
    Subscribed,
    Subtree(Vec<MailboxName>),
    Mailboxes(Vec<MailboxName>),
}

impl Filter {
    fn matches(&self, name: &MailboxName, subscribed: &BTreeSet<MailboxName>) -> bool {
        match self {
            Filter::Selected { .. } => false,
            Filter::Inboxes => name.is_inbox(),
            Filter::Personal => true,
            Filter::Subscribed => subscribed.contains(name),
            Filter::Subtree(roots) => roots.iter().any(|r| {
                name == r
                    || name
                        .as_str()
                        .strip_prefix(r.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }),
            Filter::Mailboxes(names) => names.contains(name),
        }
    }
}

impl Notify {
    /// The events the first group that matches mailbox `name` (not the
    /// selected one) asks for.
    fn events_for(&self, name: &MailboxName) -> &[NotifyEvent] {
        self.groups
            .iter()
            .find(|g| g.filter.matches(name, &self.subscribed))
            .map_or(&[], |g| &g.events[..])
    }

    fn selected_group(&self) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| matches!(g.filter, Filter::Selected { .. }))
    }

    fn wants(&self, event: NotifyEvent) -> bool {
        self.groups.iter().any(|g| g.events.contains(&event))
    }
}

impl Session<'_> {
    pub(in crate::imap) async fn notify<S>(
        &mut self,
        conn: &mut Conn<S>,
        set: Option<NotifySet>,
    ) -> Reply {
        let Some(set) = set else {
            self.notify = None;
            return Ok("NOTIFY completed".into());
        };
        let unsupported = set.groups.iter().flat_map(|g| &g.events).any(|e| {
            matches!(
                e,
                NotifyEvent::AnnotationChange
                    | NotifyEvent::MailboxMetadataChange
                    | NotifyEvent::ServerMetadataChange
            )
        });
        if unsupported {
            return Err(no(format!("[BADEVENT ({SUPPORTED})] unsupported event")));
        }
        let marks_seen = set
            .groups
            .iter()
            .flat_map(|g| &g.fetch)
            .any(|a| matches!(a, FetchAtt::Rfc822 | FetchAtt::Rfc822Text));
        if marks_seen {
            return Err(bad(
                "MessageNew cannot fetch RFC822 or RFC822.TEXT (they set \\Seen); use BODY.PEEK[]",
            ));
        }
        let mut groups = Vec::with_capacity(set.groups.len());
        for NotifyGroup {
            filter,
            events,
            fetch,
        } in set.groups
        {
            let names = |raw: &[Vec<u8>]| -> Result<Vec<MailboxName>, Refusal> {
                raw.iter().map(|r| self.mailbox_name(r)).collect()
            };
            let filter = match filter {
                NotifyFilter::Selected => Filter::Selected { delayed: false },
                NotifyFilter::SelectedDelayed => Filter::Selected { delayed: true },
                NotifyFilter::Inboxes => Filter::Inboxes,
                NotifyFilter::Personal => Filter::Personal,
                NotifyFilter::Subscribed => Filter::Subscribed,
                NotifyFilter::Subtree(raw) => Filter::Subtree(names(&raw)?),
                NotifyFilter::Mailboxes(raw) => Filter::Mailboxes(names(&raw)?),
            };
            groups.push(Group {
                filter,
                events,
                fetch,
            });
        }
        let mut notify = Notify {
            groups,
            seen: HashMap::new(),
            subscribed: BTreeSet::new(),
        };
        let (mailboxes, subscribed) = self.notify_look(&notify).await?;
        notify.subscribed = subscribed;
        if set.status {
            let selected = self.selected.as_ref().map(|s| s.id.clone());
            for m in &mailboxes {
                let events = notify.events_for(&m.name);
                if Some(&m.id) != selected.as_ref() && events.contains(&NotifyEvent::MessageNew) {
                    self.notify_status(conn, m);
                }
            }
        }
        notify.seen = mailboxes.into_iter().map(|m| (m.id.clone(), m)).collect();
        self.notify = Some(notify);
        Ok("NOTIFY completed".into())
    }

    /// The user's mailboxes now, and the subscriptions when a group needs
    /// them.
    async fn notify_look(
        &self,
        notify: &Notify,
    ) -> Result<(Vec<MailboxRecord>, BTreeSet<MailboxName>), Refusal> {
        let accounts = self.ctx.shared.stores.accounts();
        let mailboxes = accounts
            .mailboxes(self.account())
            .await
            .map_err(Refusal::from)?;
        let needs_subscriptions = notify.wants(NotifyEvent::SubscriptionChange)
            || notify
                .groups
                .iter()
                .any(|g| matches!(g.filter, Filter::Subscribed));
        let mut subscribed = BTreeSet::new();
        if needs_subscriptions {
            subscribed = accounts
                .subscriptions(self.account(), &mailboxes)
                .await
                .map_err(Refusal::from)?;
        }
        Ok((mailboxes, subscribed))
    }

    fn notify_status<S>(&self, conn: &mut Conn<S>, m: &MailboxRecord) {
        let mut out = b"* STATUS ".to_vec();
        self.write_mailbox(&mut out, m.name.as_str());
        let _ = write!(
            Lossy(&mut out),
            " (MESSAGES {} UIDNEXT {} UIDVALIDITY {} UNSEEN {}",
            m.messages,
            m.uidnext,
            m.uidvalidity,
            m.unseen
        );
        if self.enabled.condstore {
            let _ = write!(Lossy(&mut out), " HIGHESTMODSEQ {}", m.highest_modseq);
        }
        out.extend_from_slice(b")\r\n");
        conn.out().extend_from_slice(&out);
    }

    fn notify_list<S>(
        &self,
        conn: &mut Conn<S>,
        attributes: &str,
        name: &MailboxName,
        old: Option<&MailboxName>,
    ) {
        let mut out = format!("* LIST ({attributes}) \"/\" ").into_bytes();
        self.write_mailbox(&mut out, name.as_str());
        if let Some(old) = old {
            out.extend_from_slice(b" (\"OLDNAME\" (");
            self.write_mailbox(&mut out, old.as_str());
            out.extend_from_slice(b"))");
        }
        out.extend_from_slice(b"\r\n");
        conn.out().extend_from_slice(&out);
    }

    /// Reports what changed since the last look, as the NOTIFY in force
    /// asks; nothing when none is.
    pub(in crate::imap) async fn notify_changes<S>(&mut self, conn: &mut Conn<S>) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(mut notify) = self.notify.take() else {
            return Ok(());
        };
        // The selected mailbox, as after a command.
        if let Some(group) = notify.selected_group()
            && !group.events.is_empty()
            && self.selected.is_some()
        {
            let delayed = matches!(group.filter, Filter::Selected { delayed: true });
            let before = self.selected.as_ref().map_or(0, |s| s.uidnext);
            self.report_changes(conn, !delayed, true, None).await;
            let after = self.selected.as_ref().map_or(0, |s| s.uidnext);
            if !group.fetch.is_empty() && after > before {
                let fetch = Fetch {
                    uid: true,
                    set: SequenceSet::Ranges(vec![(
                        SeqNum::Value(before),
                        SeqNum::Value(after - 1),
                    )]),
                    // PEEK whatever was asked: a notification must not
                    // mark new mail \Seen.
                    atts: group.fetch.iter().cloned().map(peek).collect(),
                    changed_since: None,
                    vanished: false,
                    partial: None,
                };
                // Its tagged reply is for no command: dropped.
                let _ = self.fetch(conn, fetch).await?;
            }
        }
        match self.notify_look(&notify).await {
            Ok((mailboxes, subscribed)) => {
                self.notify_others(conn, &mut notify, mailboxes, subscribed)
            }
            Err(_) => warn!("IMAP: cannot look for changes to notify"),
        }
        self.notify = Some(notify);
        Ok(())
    }

    fn notify_others<S>(
        &self,
        conn: &mut Conn<S>,
        notify: &mut Notify,
        mailboxes: Vec<MailboxRecord>,
        subscribed: BTreeSet<MailboxName>,
    ) {
        let selected = self.selected.as_ref().map(|s| s.id.clone());
        let before_subscribed = std::mem::replace(&mut notify.subscribed, subscribed);
        let mut now: HashMap<String, MailboxRecord> = HashMap::with_capacity(mailboxes.len());
        for m in mailboxes {
            let events = notify.events_for(&m.name);
            let messages = events.contains(&NotifyEvent::MessageNew);
            let names = events.contains(&NotifyEvent::MailboxName);
            match notify.seen.get(&m.id) {
                None => {
                    if names {
                        self.notify_list(conn, "", &m.name, None);
                    }
                }
                Some(old) => {
                    if names && old.name != m.name {
                        self.notify_list(conn, "", &m.name, Some(&old.name));
                    }
                    let flags = events.contains(&NotifyEvent::FlagChange)
                        && (old.unseen != m.unseen || old.highest_modseq != m.highest_modseq);
                    let arrived_or_gone = old.messages != m.messages || old.uidnext != m.uidnext;
                    if messages && Some(&m.id) != selected.as_ref() && (arrived_or_gone || flags) {
                        self.notify_status(conn, &m);
                    }
                }
            }
            now.insert(m.id.clone(), m);
        }
        for (id, old) in &notify.seen {
            if !now.contains_key(id)
                && notify
                    .events_for(&old.name)
                    .contains(&NotifyEvent::MailboxName)
            {
                self.notify_list(conn, "\\NonExistent", &old.name, None);
            }
        }
        if notify.wants(NotifyEvent::SubscriptionChange) {
            for name in notify.subscribed.difference(&before_subscribed) {
                if notify
                    .events_for(name)
                    .contains(&NotifyEvent::SubscriptionChange)
                {
                    self.notify_list(conn, "\\Subscribed", name, None);
                }
            }
            for name in before_subscribed.difference(&notify.subscribed) {
                if notify
                    .events_for(name)
                    .contains(&NotifyEvent::SubscriptionChange)
                {
                    self.notify_list(conn, "", name, None);
                }
            }
        }
        notify.seen = now;
    }

    /// Waits for the next command while a NOTIFY is in force, reporting
    /// changes at the poll interval. `Some` when the session must end.
    pub(in crate::imap) async fn wait_notifying<S>(
        &mut self,
        conn: &mut Conn<S>,
    ) -> io::Result<Option<Flow>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let started = Instant::now();
        loop {
            if self.notify.is_none() || !conn.buffered().is_empty() {
                return Ok(None);
            }
            let Some(idle_left) = self.idle_left(conn, started) else {
                return Ok(Some(Flow::Close));
            };
            let wait = self.settings().poll_interval.min(idle_left);
            match conn
                .fill_or_wake(wait, Some(&mut self.shutdown), std::future::pending())
                .await?
            {
                Fill::Data => return Ok(None),
                Fill::Idle => self.notify_changes(conn).await?,
                Fill::Eof => return Ok(Some(Flow::Close)),
                Fill::Shutdown => {
                    conn.line(self.goodbye());
                    return Ok(Some(Flow::Close));
                }
            }
        }
    }
}

fn peek(att: FetchAtt) -> FetchAtt {
    match att {
        FetchAtt::Section {
            section, partial, ..
        } => FetchAtt::Section {
            peek: true,
            section,
            partial,
        },
        FetchAtt::Binary { part, partial, .. } => FetchAtt::Binary {
            peek: true,
            part,
            partial,
        },
        other => other,
    }
}
