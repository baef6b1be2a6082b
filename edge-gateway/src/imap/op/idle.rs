//! What other sessions changed, told to this one (EXISTS, FETCH FLAGS,
//! EXPUNGE or VANISHED) after each command and during IDLE (RFC 2177).

use std::fmt::Write as _;
use std::io;
use std::time::Instant;

use stratus_core::ports::Subscription;
use stratus_proto::imap::wire::Lossy;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

use crate::conn::{Conn, Fill};
use crate::imap::selected::{compact, flag_list};
use crate::imap::session::*;

impl Session<'_> {
    /// Reports what other sessions changed: EXISTS, FETCH of changed
    /// flags, and (where allowed) EXPUNGE. `force` ignores the poll
    /// interval. With the mailbox's `signal` (IDLE), changes committed in
    /// this process are taken from it when they are all there is, and the
    /// index is read at least once per poll interval all the same (for
    /// what the signal cannot tell, such as a rename).
    pub(in crate::imap) async fn report_changes<S>(
        &mut self,
        conn: &mut Conn<S>,
        expunges: bool,
        force: bool,
        signal: Option<&Subscription>,
    ) {
        let poll = self.settings().poll_interval;
        if !force && self.last_sync.elapsed() < poll / 2 && !expunges {
            return;
        }
        let store = self.store();
        let account = self.account.clone().expect("authenticated");
        let condstore = self.enabled.condstore;
        let read_lately = self.last_sync.elapsed() < poll;
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        let signalled = signal
            .filter(|_| expunges && read_lately)
            .and_then(|signal| signal.since(selected.modseq))
            .and_then(|changes| selected.apply_signalled(&changes));
        let changes = match signalled {
            Some(changes) => changes,
            None => match selected.sync(&store, &account, expunges).await {
                Ok(c) => {
                    self.last_sync = Instant::now();
                    c
                }
                Err(e) => {
                    warn!(error = %e, "IMAP: cannot look for mailbox changes");
                    return;
                }
            },
        };
        let qresync = self.enabled.qresync;
        let rev1 = !self.enabled.rev2;
        if rev1
            && changes.exists.is_some()
            && let Err(e) = selected
                .take_recent(&store, &self.ctx.views, &account, None)
                .await
        {
            warn!(error = %e, "IMAP: cannot settle \\Recent");
        }
        let out = conn.out();
        report_expunged(out, &changes.expunged, qresync);
        if selected.new_keywords(&changes.flags) {
            flags_responses(out, selected);
        }
        if let Some(n) = changes.exists {
            let _ = write!(Lossy(out), "* {n} EXISTS\r\n");
            if rev1 {
                let _ = write!(Lossy(out), "* {} RECENT\r\n", selected.recent_count());
            }
        }
        for &i in &changes.flags {
            let m = &selected.msgs[i];
            let _ = write!(Lossy(out), "* {} FETCH (UID {} FLAGS ", i + 1, m.uid);
            flag_list(out, &m.flags, selected.is_recent(m.uid));
            if condstore {
                let _ = write!(Lossy(out), " MODSEQ ({})", m.modseq);
            }
            out.extend_from_slice(b")\r\n");
        }
        if !self.live.is_empty() {
            self.update_live(conn).await;
        }
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        if selected.vanished {
            // Renamed elsewhere: the mailbox keeps its id, so follow it.
            let id = selected.id.clone();
            let renamed = match self.ctx.shared.stores.accounts().mailboxes(&account).await {
                Ok(all) => all.into_iter().find(|m| m.id == id).map(|m| m.name),
                Err(_) => return,
            };
            let selected = self.selected.as_mut().expect("selected");
            match renamed {
                Some(name) => {
                    selected.name = name;
                    selected.vanished = false;
                }
                None => {
                    self.selected = None;
                    self.closing = true;
                    conn.line("* BYE the selected mailbox was deleted by another session");
                }
            }
        }
    }

    /// How long the session may stay quiet still, counting from
    /// `started`; `None`, with the autologout BYE queued, when that time
    /// is up.
    pub(in crate::imap) fn idle_left<S>(
        &self,
        conn: &mut Conn<S>,
        started: Instant,
    ) -> Option<std::time::Duration> {
        let left = self
            .settings()
            .idle_timeout
            .saturating_sub(started.elapsed());
        if left.is_zero() {
            conn.line("* BYE autologout: idle for too long");
            return None;
        }
        Some(left)
    }

    pub(in crate::imap) async fn idle<S>(
        &mut self,
        conn: &mut Conn<S>,
        tag: &str,
    ) -> io::Result<Reply>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        conn.line("+ idling");
        let started = Instant::now();
        let poll = self.settings().poll_interval;
        // Changes the feed pushes (all of them on the embedded backend,
        // those made in this process on AWS) wake the session at once; the
        // poll finds the others (Lambda stages, other gateways) and what no
        // change carries (a rename).
        let signal = self
            .selected
            .as_ref()
            .map(|s| self.ctx.shared.stores.changes.subscribe(&s.id));
        loop {
            // Listening before looking, so a change in between is not missed.
            let woken = signal.as_ref().map(|n| n.notified());
            let mut woken = std::pin::pin!(woken);
            if let Some(n) = woken.as_mut().as_pin_mut() {
                n.enable();
            }
            if self.selected.is_some() {
                self.report_changes(conn, true, true, signal.as_deref())
                    .await;
            }
            // NOTIFY's other mailboxes too.
            self.notify_changes(conn).await?;
            let Some(idle_left) = self.idle_left(conn, started) else {
                conn.flush().await?;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "IMAP IDLE timed out",
                ));
            };
            // A line may already be waiting in the buffer.
            if let Some(i) = conn.buffered().iter().position(|&b| b == b'\n') {
                let line = conn.buffered()[..=i].to_vec();
                conn.consume(i + 1);
                let text = String::from_utf8_lossy(&line);
                return Ok(if text.trim().eq_ignore_ascii_case("DONE") {
                    let _ = tag;
                    Ok("IDLE terminated".into())
                } else {
                    Err(bad("expected DONE to end IDLE"))
                });
            }
            if conn.buffered().len() > 1024 {
                return Ok(Err(bad("expected DONE to end IDLE")));
            }
            let wake = async {
                match woken.as_mut().as_pin_mut() {
                    Some(n) => n.await,
                    None => std::future::pending().await,
                }
            };
            // The feed may ask for the index to be read sooner (on AWS,
            // where changes made elsewhere are not pushed).
            let feed_poll = signal.as_ref().and_then(|s| s.poll_interval());
            let wait = feed_poll.map_or(poll, |p| p.min(poll)).min(idle_left);
            match conn
                .fill_or_wake(wait, Some(&mut self.shutdown), wake)
                .await?
            {
                Fill::Data | Fill::Idle => {}
                Fill::Eof => return Err(io::ErrorKind::UnexpectedEof.into()),
                Fill::Shutdown => {
                    conn.line(self.goodbye());
                    conn.flush().await?;
                    return Err(io::Error::other("shutdown during IDLE"));
                }
            }
        }
    }
}

/// Tells the client about expunged messages: `* n EXPUNGE` for each, or
/// one `* VANISHED` with their UIDs once QRESYNC is enabled.
pub(in crate::imap) fn report_expunged(out: &mut Vec<u8>, gone: &[(u32, u32)], qresync: bool) {
    if gone.is_empty() {
        return;
    }
    if qresync {
        let mut uids: Vec<u32> = gone.iter().map(|&(_, u)| u).collect();
        uids.sort_unstable();
        let _ = write!(Lossy(out), "* VANISHED {}\r\n", compact(&uids));
    } else {
        for (seq, _) in gone {
            let _ = write!(Lossy(out), "* {seq} EXPUNGE\r\n");
        }
    }
}
