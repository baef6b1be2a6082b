//! The recipient's active Sieve script, run in the route stage after the
//! spam verdict (the script sees `X-Spam-Status` and may file Junk
//! itself): it turns one local recipient into the mailboxes their copy is
//! filed to. Without an active script, or when the script fails, the
//! copy goes where the verdict sends it.
//!
//! Not performed yet (the copy is kept instead, so nothing is lost):
//! redirect (needs SRS), reject and ereject, and vacation replies.

use std::collections::HashSet;

use bytes::Bytes;
use stratus_core::accounts::Accounts;
use stratus_core::job::{Accepted, Filed};
use stratus_core::sieve::{ScriptError, Scripts};
use stratus_core::{Address, MailboxName};
use stratus_sieve::{Action, Host, Input, Limits};

use crate::{HandlerError, Ports};

/// One mailbox a copy is filed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filing {
    pub mailbox: MailboxName,
    pub filed: Filed,
}

/// What the interpreter may ask: the recipient's mailboxes and scripts,
/// read before it runs.
struct Known {
    mailboxes: HashSet<String>,
    scripts: Vec<(String, String)>,
}

impl Host for Known {
    fn mailbox_exists(&self, name: &str) -> bool {
        self.mailboxes.contains(name) || name.eq_ignore_ascii_case("INBOX")
    }
    fn script(&self, global: bool, name: &str) -> Option<String> {
        // There is no administrators' namespace yet.
        if global {
            return None;
        }
        self.scripts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    }
}

fn store_error(e: ScriptError) -> HandlerError {
    match e {
        ScriptError::Account(a) => a.into(),
        other => HandlerError::Retryable(other.to_string()),
    }
}

/// Where `message` (this recipient's copy, with their verdict's header
/// lines) is filed for `user`, who was reached as `rcpt`; `default` is the
/// verdict's mailbox. `body` is read once per message, when a script
/// first needs it.
pub async fn filings(
    ports: &Ports,
    message: &Accepted,
    user: &Address,
    rcpt: &Address,
    default: MailboxName,
    body: &mut Option<Bytes>,
) -> Result<Vec<Filing>, HandlerError> {
    let plain = vec![Filing {
        mailbox: default.clone(),
        filed: Filed::default(),
    }];
    let scripts = Scripts::new(ports.index.clone(), ports.blobs.clone());
    let Some((name, text)) = scripts.active(user).await.map_err(store_error)? else {
        return Ok(plain);
    };
    let limits = Limits::default();
    let script = match stratus_sieve::parse(&text, &limits) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(queue_id = %message.queue_id, recipient = %user, script = %name, error = %e, "sieve script does not parse; filed as without it");
            return Ok(plain);
        }
    };
    if body.is_none() {
        let bytes = ports
            .blobs
            .get(&message.body, None)
            .await?
            .ok_or_else(|| HandlerError::Retryable(format!("body {} missing", message.body)))?;
        *body = Some(bytes);
    }
    let body = body.as_ref().expect("read above");
    let accounts = Accounts::new(ports.index.clone());
    let mut known = Known {
        mailboxes: accounts
            .mailboxes(user)
            .await?
            .into_iter()
            .map(|m| m.name.to_string())
            .collect(),
        scripts: Vec::new(),
    };
    if script.requires("include") {
        for info in scripts.list(user).await.map_err(store_error)? {
            let text = scripts.get(user, &info.name).await.map_err(store_error)?;
            known.scripts.push((info.name, text));
        }
    }
    let mut raw = Vec::with_capacity(message.headers.len() + body.len());
    raw.extend_from_slice(message.headers.as_bytes());
    raw.extend_from_slice(body);
    let envelope_from = message
        .envelope
        .mail_from
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let envelope_to = rcpt.to_string();
    let now = stratus_core::mailstore::now();
    // Parsing the message and running the script is CPU work (bounded by
    // the limits): off the async threads.
    let (outcome, known) = tokio::task::spawn_blocking(move || {
        let input = Input {
            raw: &raw,
            envelope_from: &envelope_from,
            envelope_to: &envelope_to,
            now,
        };
        (stratus_sieve::run(&script, &input, &known, &limits), known)
    })
    .await
    .map_err(|e| HandlerError::Retryable(format!("sieve run: {e}")))?;
    if let Some(error) = &outcome.error {
        tracing::warn!(queue_id = %message.queue_id, recipient = %user, script = %name, %error, "sieve script failed; the message is kept");
    }
    Ok(to_filings(
        &outcome.actions,
        &default,
        &known,
        message,
        user,
    ))
}

/// The interpreter's actions as filings. An action this server does not
/// perform yet keeps the copy where the verdict sends it.
fn to_filings(
    actions: &[Action],
    default: &MailboxName,
    known: &Known,
    message: &Accepted,
    user: &Address,
) -> Vec<Filing> {
    let mut out: Vec<Filing> = Vec::new();
    let mut add = |mailbox: MailboxName, flags: &[String], create: bool| match out
        .iter_mut()
        .find(|f| f.mailbox == mailbox)
    {
        Some(f) => {
            for flag in flags {
                if !f.filed.flags.iter().any(|x| x.eq_ignore_ascii_case(flag)) {
                    f.filed.flags.push(flag.clone());
                }
            }
            f.filed.create |= create;
        }
        None => out.push(Filing {
            mailbox,
            filed: Filed {
                flags: flags.to_vec(),
                create,
            },
        }),
    };
    let mut unperformed = false;
    for action in actions {
        match action {
            Action::Keep { flags } => add(default.clone(), flags, false),
            Action::FileInto {
                mailbox,
                flags,
                create,
            } => match MailboxName::parse(mailbox) {
                Ok(name) if *create || known.mailbox_exists(name.as_str()) => {
                    add(name, flags, *create)
                }
                // A mailbox that does not exist: INBOX.
                Ok(_) => {
                    tracing::info!(queue_id = %message.queue_id, recipient = %user, %mailbox, "sieve fileinto a mailbox that does not exist; filed to INBOX");
                    add(MailboxName::inbox(), flags, false)
                }
                Err(e) => {
                    tracing::info!(queue_id = %message.queue_id, recipient = %user, %mailbox, error = %e, "sieve fileinto an invalid mailbox name; filed to INBOX");
                    add(MailboxName::inbox(), flags, false)
                }
            },
            Action::Redirect { .. } | Action::Reject { .. } => {
                tracing::warn!(queue_id = %message.queue_id, recipient = %user, action = ?action, "sieve action not performed yet; the message is kept");
                unperformed = true;
            }
            Action::Vacation(_) => {
                tracing::info!(queue_id = %message.queue_id, recipient = %user, "sieve vacation replies are not sent yet");
            }
        }
    }
    if unperformed {
        add(default.clone(), &[], false);
    }
    if out.is_empty() {
        tracing::info!(queue_id = %message.queue_id, recipient = %user, "discarded by the recipient's sieve script");
    }
    out
}
