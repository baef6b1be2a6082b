//! The recipient's active Sieve script, run in the route stage after the
//! spam verdict (the script sees `X-Spam-Status` and may file Junk
//! itself): it turns one local recipient into the mailboxes their copy is
//! filed to. Without an active script, or when the script fails, the
//! copy goes where the verdict sends it.
//!
//! A `vacation` action becomes an auto-reply (RFC 3834) from the null
//! sender, routed like any message we make (DKIM-signed when it leaves),
//! when RFC 5230's rules allow one to this sender and none went to them
//! within the period: the row `vacation#<account key>` | `<handle hash>#
//! <sender>` holds until when, so every gateway and function knows.
//!
//! A `redirect` is a forward (SRS, `Delivered-To`; see [`crate::route`]),
//! at most [`Limits::max_redirects`] per message (a script asking for
//! more fails, and keeps), counted against the user's hourly sending
//! allowance, and never of mail judged spam or of mail
//! already forwarded by this user (a loop); a redirect not sent keeps the
//! message instead, so nothing is lost.
//!
//! `reject` and `ereject` refuse the message at SMTP time when it is for
//! the user alone (the gateway runs the script before its final reply:
//! [`rejects`]). After acceptance (more recipients), they send a
//! rejection (an MDN, RFC 5429) only to a sender known to be real: a
//! local one, or one whose mail passed DMARC. A forged sender would get
//! backscatter, so for anyone else, and for mail judged spam, the message
//! is kept instead.

use std::collections::HashSet;

use bytes::Bytes;
use stratus_core::accounts::Accounts;
use stratus_core::job::{Accepted, Filed, Job, Verdict};
use stratus_core::ports::{Condition, IndexExt, Key, Outcome};
use stratus_core::sieve::{Owner, ScriptError, Scripts};
use stratus_core::{Address, MailboxName};
use stratus_sieve::{Action, Host, Input, Limits};

use crate::{HandlerError, Ports, Settings};

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
    /// The administrators' scripts (`include :global`).
    globals: Vec<(String, String)>,
}

impl Host for Known {
    fn mailbox_exists(&self, name: &str) -> bool {
        self.mailboxes.contains(name) || name.eq_ignore_ascii_case("INBOX")
    }
    fn script(&self, global: bool, name: &str) -> Option<String> {
        // `:global` reads only the administrators' scripts, `:personal`
        // only the user's own.
        let space = if global { &self.globals } else { &self.scripts };
        space
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

/// What the script decided for one recipient.
#[derive(Debug, Default)]
pub struct Decision {
    pub filings: Vec<Filing>,
    /// The vacation reply to send, if any.
    pub reply: Option<Job>,
    /// Where to redirect the message.
    pub redirects: Vec<Address>,
}

/// A user's active script, parsed, and what it may ask of its host.
struct Loaded {
    name: String,
    script: stratus_sieve::Script,
    known: Known,
}

/// `user`'s active script, ready to run; `None` without one, or when it
/// cannot be read or parsed (logged: the message is then filed as
/// without a script, never lost).
async fn load(
    index: &std::sync::Arc<dyn stratus_core::Index>,
    blobs: &std::sync::Arc<dyn stratus_core::BlobStore>,
    user: &Address,
    queue_id: &str,
) -> Result<Option<Loaded>, HandlerError> {
    let scripts = Scripts::new(index.clone(), blobs.clone());
    let active = match scripts.active(user).await {
        Ok(a) => a,
        // A script whose text is gone or unreadable (replaced while we
        // read it, or broken): filed as without one, rather than failing
        // the whole message for good.
        Err(ScriptError::Account(stratus_core::accounts::AccountError::Corrupt {
            key,
            reason,
        })) => {
            tracing::warn!(queue_id, recipient = %user, %key, %reason, "cannot read the active sieve script; filed as without it");
            None
        }
        Err(e) => return Err(store_error(e)),
    };
    let Some((name, text)) = active else {
        return Ok(None);
    };
    let script = match stratus_sieve::parse(&text, &Limits::default()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(queue_id, recipient = %user, script = %name, error = %e, "sieve script does not parse; filed as without it");
            return Ok(None);
        }
    };
    let accounts = Accounts::new(index.clone());
    let mut known = Known {
        mailboxes: accounts
            .mailboxes(user)
            .await?
            .into_iter()
            .map(|m| m.name.to_string())
            .collect(),
        scripts: Vec::new(),
        globals: Vec::new(),
    };
    if script.requires("include") {
        for info in scripts.list(user).await.map_err(store_error)? {
            let text = scripts.get(user, &info.name).await.map_err(store_error)?;
            known.scripts.push((info.name, text));
        }
        for info in scripts.list(Owner::Global).await.map_err(store_error)? {
            let text = scripts
                .get(Owner::Global, &info.name)
                .await
                .map_err(store_error)?;
            known.globals.push((info.name, text));
        }
    }
    Ok(Some(Loaded {
        name,
        script,
        known,
    }))
}

/// Runs `loaded` on the message `raw` sent from `envelope_from` to
/// `envelope_to`: CPU work (bounded by the limits), off the async
/// threads. The outcome, and what went in.
async fn execute(
    loaded: Loaded,
    raw: Vec<u8>,
    envelope_from: String,
    envelope_to: String,
) -> Result<(stratus_sieve::Outcome, Known, Vec<u8>, String), HandlerError> {
    let now = stratus_core::mailstore::now();
    tokio::task::spawn_blocking(move || {
        let input = Input {
            raw: &raw,
            envelope_from: &envelope_from,
            envelope_to: &envelope_to,
            now,
        };
        let outcome = stratus_sieve::run(&loaded.script, &input, &loaded.known, &Limits::default());
        (outcome, loaded.known, raw, envelope_from)
    })
    .await
    .map_err(|e| HandlerError::Retryable(format!("sieve run: {e}")))
}

/// The reason `user`'s active script rejects a message with (`reject`
/// or `ereject`), run by the gateway before its final reply to a message
/// for `user` alone (reached as `rcpt`), so the sender's own server tells
/// the sender: no rejection mail, no backscatter. `raw` is the message
/// as the script would see it after acceptance. Anything else the script
/// does waits for the route stage, after acceptance.
pub async fn rejects(
    index: &std::sync::Arc<dyn stratus_core::Index>,
    blobs: &std::sync::Arc<dyn stratus_core::BlobStore>,
    user: &Address,
    rcpt: &Address,
    envelope_from: Option<&Address>,
    raw: Vec<u8>,
) -> Result<SmtpSieve, HandlerError> {
    let Some(loaded) = load(index, blobs, user, "").await? else {
        return Ok(SmtpSieve::NoScript);
    };
    let from = envelope_from.map(ToString::to_string).unwrap_or_default();
    let (outcome, ..) = execute(loaded, raw, from, rcpt.to_string()).await?;
    Ok(outcome
        .actions
        .into_iter()
        .find_map(|a| match a {
            Action::Reject { reason, .. } => Some(SmtpSieve::Rejects(reason)),
            _ => None,
        })
        .unwrap_or(SmtpSieve::Passes))
}

/// What a user's script says of a message before it is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpSieve {
    /// The user has no active script (or none that can be read).
    NoScript,
    /// The script does not reject it.
    Passes,
    /// The script rejects it, with this reason.
    Rejects(String),
}

/// Where `message` (this recipient's copy, with their verdict's header
/// lines, judged `verdict`) is filed for `user`, who was reached as
/// `rcpt`, and the vacation reply their script asks for; `default` is the
/// verdict's mailbox. `body` is read once per message, when a script
/// first needs it.
#[allow(clippy::too_many_arguments)]
pub async fn decide(
    ports: &Ports,
    settings: &Settings,
    message: &Accepted,
    verdict: Verdict,
    user: &Address,
    rcpt: &Address,
    default: MailboxName,
    body: &mut Option<Bytes>,
) -> Result<Decision, HandlerError> {
    let plain = Decision {
        filings: vec![Filing {
            mailbox: default.clone(),
            filed: Filed::default(),
        }],
        reply: None,
        redirects: Vec::new(),
    };
    let Some(loaded) = load(&ports.index, &ports.blobs, user, message.queue_id.as_str()).await?
    else {
        return Ok(plain);
    };
    // A disabled account's script is paused: no redirects, no vacation
    // replies in its name; its mail is filed as if it had none.
    let accounts = stratus_core::accounts::Accounts::new(ports.index.clone());
    if accounts.user(user).await?.is_none_or(|u| u.disabled) {
        return Ok(plain);
    }
    let name = loaded.name.clone();
    let body = crate::route::stored(message, ports, body).await?;
    let mut raw = Vec::with_capacity(message.headers.len() + body.len());
    raw.extend_from_slice(message.headers.as_bytes());
    raw.extend_from_slice(&body);
    let envelope_from = message
        .envelope
        .mail_from
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let (outcome, known, raw, envelope_from) =
        execute(loaded, raw, envelope_from, rcpt.to_string()).await?;
    if let Some(error) = &outcome.error {
        tracing::warn!(queue_id = %message.queue_id, recipient = %user, script = %name, %error, "sieve script failed; the message is kept");
    }
    let to = Reply {
        message,
        verdict,
        user,
        rcpt,
        raw: &raw,
        envelope_from: &envelope_from,
    };
    let mut reply = None;
    let mut rejected = false;
    // A script that rejects has no vacation (the interpreter refuses both).
    for action in &outcome.actions {
        match action {
            Action::Vacation(v) => reply = vacation(ports, settings, &to, v).await?,
            Action::Reject { reason, .. } => {
                reply = reject(ports, settings, &to, reason).await?;
                rejected = reply.is_some();
            }
            _ => {}
        }
    }
    let (redirects, mut kept) = redirects(
        ports,
        settings,
        &to_redirect(&outcome.actions),
        message,
        verdict,
        user,
        &raw,
    )
    .await?;
    let mut filings = to_filings(&outcome.actions, &default, &known, message, user);
    // A rejection not sent keeps the message.
    kept |= !rejected
        && outcome
            .actions
            .iter()
            .any(|a| matches!(a, Action::Reject { .. }));
    if kept && !filings.iter().any(|f| f.mailbox == default) {
        filings.push(Filing {
            mailbox: default,
            filed: Filed::default(),
        });
    }
    Ok(Decision {
        filings,
        reply,
        redirects,
    })
}

fn to_redirect(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Redirect { address } => Some(address.as_str()),
            _ => None,
        })
        .collect()
}

/// The redirects of `wanted` that are sent, and whether any is not (the
/// message is then kept).
async fn redirects(
    ports: &Ports,
    settings: &Settings,
    wanted: &[&str],
    message: &Accepted,
    verdict: Verdict,
    user: &Address,
    raw: &[u8],
) -> Result<(Vec<Address>, bool), HandlerError> {
    if wanted.is_empty() {
        return Ok((Vec::new(), false));
    }
    let own = user.account_key();
    let why_not = if verdict != Verdict::Deliver {
        Some("judged spam")
    } else if message.hosted_dmarc_failure.is_some() {
        Some("the From domain is hosted here and the message failed DMARC")
    } else if stratus_core::message::delivered_to_includes(raw, user) {
        Some("a forwarding loop: this user forwarded it before")
    } else {
        None
    };
    if let Some(why) = why_not {
        tracing::warn!(queue_id = %message.queue_id, recipient = %user, why, "sieve redirect not sent; the message is kept");
        return Ok((Vec::new(), true));
    }
    let mut out: Vec<Address> = Vec::new();
    let mut kept = false;
    for address in wanted {
        let target = match Address::parse(address) {
            Ok(t) if t.account_key() != own => t,
            // To the user themselves: that is a keep.
            _ => {
                kept = true;
                continue;
            }
        };
        if out.iter().any(|a| a.account_key() == target.account_key()) {
            continue;
        }
        if !take_allowance(ports, user, settings.max_per_hour).await? {
            tracing::warn!(queue_id = %message.queue_id, recipient = %user, "sending allowance used up: sieve redirect not sent; the message is kept");
            kept = true;
            break;
        }
        out.push(target);
    }
    Ok((out, kept))
}

/// Takes one message from `user`'s hourly allowance for redirects: as
/// many as submission allows, but counted apart, in the index (row
/// `rate#<account key>` | `redirect`: the hour and the count in it), so
/// every function counts the same. A route job run again counts again.
async fn take_allowance(
    ports: &Ports,
    user: &Address,
    per_hour: u32,
) -> Result<bool, HandlerError> {
    let key = Key::new(format!("rate#{}", user.account_key()), "redirect");
    let hour = stratus_core::mailstore::now() / 3600;
    loop {
        let (count, condition) = match ports.index.get(&key).await? {
            Some(item) => {
                let text = String::from_utf8_lossy(&item.value).into_owned();
                let mut fields = text.split(' ').map(|f| f.parse::<i64>().unwrap_or(0));
                let (at, count) = (fields.next().unwrap_or(0), fields.next().unwrap_or(0));
                let count = if at == hour { count } else { 0 };
                (count, Condition::Version(item.version))
            }
            None => (0, Condition::Absent),
        };
        if count >= i64::from(per_hour) {
            return Ok(false);
        }
        let value = format!("{hour} {}", count + 1).into_bytes();
        if ports.index.put(key.clone(), value, condition).await? == Outcome::Applied {
            return Ok(true);
        }
    }
}

/// The message a vacation reply would answer.
struct Reply<'a> {
    message: &'a Accepted,
    verdict: Verdict,
    user: &'a Address,
    rcpt: &'a Address,
    raw: &'a [u8],
    envelope_from: &'a str,
}

/// The auto-reply `v` asks for, unless RFC 5230 says not to send one, or
/// one went to this sender within the period.
async fn vacation(
    ports: &Ports,
    settings: &Settings,
    to: &Reply<'_>,
    v: &stratus_sieve::VacationAction,
) -> Result<Option<Job>, HandlerError> {
    let (message, user) = (to.message, to.user);
    let accounts = Accounts::new(ports.index.clone());
    let mut addresses = vec![user.to_string(), to.rcpt.to_string()];
    addresses.extend(v.addresses.iter().cloned());
    addresses.extend(
        accounts
            .identities(user)
            .await?
            .into_iter()
            .map(|i| i.identity.to_string()),
    );
    let skip = if to.verdict != Verdict::Deliver {
        Some("mail judged spam")
    } else {
        stratus_sieve::vacation::reason_not_to_reply(to.raw, to.envelope_from, &addresses)
    };
    if let Some(why) = skip {
        tracing::info!(queue_id = %message.queue_id, recipient = %user, why, "no vacation reply");
        return Ok(None);
    }
    let Some(sender) = message.envelope.mail_from.clone() else {
        return Ok(None);
    };
    // From the address the script names, if the user may send as it.
    let from = match v
        .from
        .as_deref()
        .map(stratus_sieve::parser::strip_display_name)
        .map(Address::parse)
    {
        Some(Ok(a)) if accounts.may_send_as(user, &a).await? => a,
        Some(_) => {
            tracing::warn!(queue_id = %message.queue_id, recipient = %user, "vacation :from is not an address the user may send as; replying as the user");
            user.clone()
        }
        None => user.clone(),
    };
    // Once per sender per period, across gateways: the row is written
    // only if it is absent or expired, by whoever gets there first.
    let now = stratus_core::mailstore::now();
    let period = stratus_sieve::vacation::period(v.period) as i64;
    let key = Key::new(
        format!("vacation#{}", user.account_key()),
        format!(
            "{}#{}",
            short_hash(&v.handle),
            sender.to_string().to_lowercase()
        ),
    );
    // The row says until when, and which message the reply answered: a
    // route job run again for that message (after a failure elsewhere)
    // makes the same reply again, under the same id, so it is not lost.
    let condition = match ports.index.get(&key).await? {
        Some(item) => {
            let value = String::from_utf8_lossy(&item.value).into_owned();
            let mut fields = value.split(' ');
            let until: i64 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let answered = fields.next().unwrap_or("");
            if until > now && answered != message.queue_id.as_str() {
                tracing::info!(queue_id = %message.queue_id, recipient = %user, "vacation reply already sent to this sender in the period");
                return Ok(None);
            }
            (until <= now).then_some(Condition::Version(item.version))
        }
        None => Some(Condition::Absent),
    };
    if let Some(condition) = condition {
        let row = format!("{} {}", now + period, message.queue_id).into_bytes();
        if ports.index.put(key, row, condition).await? == Outcome::Conflict {
            return Ok(None);
        }
    }
    let parsed = stratus_core::message::envelope(to.raw);
    let text = if v.mime {
        mime_text(&v.reason)
    } else {
        v.reason.clone()
    };
    let id = message
        .queue_id
        .derived(&format!("vacation|{}", user.account_key()));
    let body = stratus_compose::reply::auto_reply(&stratus_compose::reply::AutoReply {
        from: &from,
        to: &sender,
        original_subject: parsed.subject.as_deref(),
        subject: v.subject.as_deref(),
        original_message_id: bare_id(&parsed),
        text: &text,
        hostname: &settings.hostname,
        id: &id,
        date: now,
    });
    let job = answer(ports, message, id, body, sender, &from).await?;
    tracing::info!(queue_id = %message.queue_id, recipient = %user, "vacation reply");
    Ok(Some(job))
}

/// The rejection of `to.message`, if its sender gets one (see the module
/// doc).
async fn reject(
    ports: &Ports,
    settings: &Settings,
    to: &Reply<'_>,
    reason: &str,
) -> Result<Option<Job>, HandlerError> {
    let (message, user) = (to.message, to.user);
    let Some(sender) = message.envelope.mail_from.clone() else {
        tracing::info!(queue_id = %message.queue_id, recipient = %user, "sieve reject of mail from the null sender: kept instead");
        return Ok(None);
    };
    let why_not = if to.verdict != Verdict::Deliver {
        Some("the mail is judged spam")
    } else if !crate::lists::real_sender(message) {
        Some("the sender may be forged (neither SPF nor DMARC vouch for it)")
    } else {
        stratus_sieve::vacation::automated(message_text(message, to.raw))
    };
    if let Some(why) = why_not {
        tracing::info!(queue_id = %message.queue_id, recipient = %user, %sender, why,
            "sieve reject not sent; kept instead");
        return Ok(None);
    }
    let parsed = stratus_core::message::envelope(to.raw);
    let id = message
        .queue_id
        .derived(&format!("reject|{}", user.account_key()));
    let body = stratus_compose::mdn::rejection(&stratus_compose::mdn::Rejection {
        from: user,
        to: &sender,
        reason,
        original: message_text(message, to.raw),
        original_message_id: bare_id(&parsed),
        hostname: &settings.hostname,
        id: &id,
        date: stratus_core::mailstore::now(),
    });
    let job = answer(ports, message, id, body, sender, user).await?;
    tracing::info!(queue_id = %message.queue_id, recipient = %user, "sieve reject");
    Ok(Some(job))
}

/// The original's `Message-ID` without angle brackets.
fn bare_id(parsed: &stratus_core::message::EnvelopeMeta) -> Option<&str> {
    parsed
        .message_id
        .as_deref()
        .map(|m| m.trim().trim_start_matches('<').trim_end_matches('>'))
}

/// `body`, stored under `id`, on its way from the null sender to
/// `sender`, written by `from` (whose domain's keys sign it).
async fn answer(
    ports: &Ports,
    message: &Accepted,
    id: stratus_core::QueueId,
    body: Vec<u8>,
    sender: Address,
    from: &Address,
) -> Result<Job, HandlerError> {
    let accepted = crate::bounce::store_made(
        ports,
        id,
        body,
        &[sender],
        message.envelope.smtputf8,
        Some(from.domain().clone()),
    )
    .await?;
    Ok(Job::Route {
        message: accepted,
        verdict: Verdict::Deliver,
    })
}

/// The message as its sender wrote it: `raw` without the header lines
/// the stages put in front (our verdicts are not the sender's to read).
fn message_text<'a>(message: &Accepted, raw: &'a [u8]) -> &'a [u8] {
    raw.get(message.headers.len()..).unwrap_or(raw)
}

/// The text of a `:mime` reason (a MIME entity: header fields, a blank
/// line, the body): its first text part.
fn mime_text(entity: &str) -> String {
    stratus_core::message::parse(entity.as_bytes())
        .and_then(|m| m.body_text(0).map(|t| t.into_owned()))
        .unwrap_or_else(|| entity.to_string())
}

/// A short stable hash of a vacation handle, for a row's key.
fn short_hash(handle: &str) -> String {
    use stratus_core::ids::{FNV_OFFSET, fnv1a};
    format!("{:016x}", fnv1a(handle.bytes(), FNV_OFFSET))
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
            // Sent by the route stage (see `redirects`), answered in
            // `decide` (`reject`, `vacation`); the message is filed as the
            // rest says.
            Action::Redirect { .. } | Action::Reject { .. } | Action::Vacation(_) => {}
        }
    }
    if out.is_empty() {
        tracing::info!(queue_id = %message.queue_id, recipient = %user, "discarded by the recipient's sieve script");
    }
    out
}
