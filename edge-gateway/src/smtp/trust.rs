//! Who may send as whom, and what the server vouches for.
//!
//! Submission accepts a message only when the envelope sender and every
//! author (`From:`, `Sender:`) belong to the authenticated user (their
//! address, a plus-tag of it, an alias that leads to them, or an identity
//! an admin granted); the send stage then signs it with the DKIM keys of its
//! From domain, and only such mail (and mail Stratus writes) is signed.
//!
//! On the MX, mail that claims a hosted domain as its author and fails
//! DMARC is marked so the route stage never forwards it elsewhere; when
//! every recipient would only forward it, it is refused here, so the
//! sending server learns why instead of the message vanishing.

use stratus_core::accounts::{AccountError, Accounts, Expansion};
use stratus_core::authors::authors;
use stratus_core::job::Recipient;
use stratus_core::{Address, Domain};
use stratus_proto::smtp::reply::Reply;
use tracing::warn;

fn unavailable(e: &AccountError) -> Reply {
    warn!(error = %e, "cannot check a sender");
    Reply::new(451, "4.3.0", "temporary failure, try again later")
}

fn not_yours(address: &str) -> Reply {
    Reply::new(
        550,
        "5.7.1",
        format!("<{address}>: you may not send as this address"),
    )
}

/// MAIL FROM on submission: `raw` (the reverse-path as given) must be an
/// address `user` may send as. The null sender is for bounces, which users
/// do not send.
pub async fn check_envelope_sender(
    accounts: &Accounts,
    user: &Address,
    raw: &str,
) -> Result<(), Reply> {
    let Ok(sender) = Address::parse(raw) else {
        return Err(not_yours(raw));
    };
    match accounts.may_send_as(user, &sender).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(not_yours(raw)),
        Err(e) => Err(unavailable(&e)),
    }
}

/// The end of a submitted message: every author must be an address `user`
/// may send as. Returns the domain whose DKIM keys sign the message: the
/// first From address's, or the envelope sender's when there is no From.
pub async fn check_authors(
    accounts: &Accounts,
    user: &Address,
    mail_from: Option<&Address>,
    message: &[u8],
) -> Result<Option<Domain>, Reply> {
    let authors = authors(message).map_err(|e| Reply::new(550, "5.7.1", e.to_string()))?;
    for author in authors.all() {
        match accounts.may_send_as(user, author).await {
            Ok(true) => {}
            Ok(false) => return Err(not_yours(&author.to_string())),
            Err(e) => return Err(unavailable(&e)),
        }
    }
    Ok(authors
        .from
        .first()
        .or(mail_from)
        .map(|a| a.domain().clone()))
}

/// The hosted domain among the authors of a message that failed DMARC, if
/// any: such a message is forged, or was altered on the way (a list that
/// rewrote it), and is not ours to pass on.
pub async fn hosted_author(accounts: &Accounts, message: &[u8]) -> Result<Option<Domain>, Reply> {
    // Authors that cannot be read are not a hosted domain's either.
    let Ok(authors) = authors(message) else {
        return Ok(None);
    };
    for author in &authors.from {
        match accounts.domain(author.domain()).await {
            Ok(Some(_)) => return Ok(Some(author.domain().clone())),
            Ok(None) => {}
            Err(e) => return Err(unavailable(&e)),
        }
    }
    Ok(None)
}

/// Whether `recipients` lead to no local user at all (only to addresses
/// elsewhere, through aliases): a message that may not be forwarded would
/// reach nobody.
pub async fn reaches_no_local_user(
    accounts: &Accounts,
    recipients: &[Recipient],
) -> Result<bool, Reply> {
    for rcpt in recipients {
        let Expansion { users, .. } = accounts
            .expand(&rcpt.address)
            .await
            .map_err(|e| unavailable(&e))?;
        if !users.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}
