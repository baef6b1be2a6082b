//! The IMAP commands of the authenticated and selected states, one file
//! per verb or family of verbs, each an `impl Session` block: the session
//! ([`super::session`]) reads and dispatches, these apply.

pub(super) mod append;
pub(super) mod auth;
pub(super) mod context;
pub(super) mod copy;
pub(super) mod expunge;
pub(super) mod fetch;
pub(super) mod idle;
pub(super) mod list;
pub(super) mod mailbox;
pub(super) mod metadata;
pub(super) mod notify;
pub(super) mod search;
pub(super) mod select;
pub(super) mod status;
pub(super) mod store;
pub(super) mod url;
