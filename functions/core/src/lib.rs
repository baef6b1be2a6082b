//! Stratus core: the domain types every stage shares, the jobs that flow
//! between stages, and the ports (storage, transport, change feed,
//! scanner). Nothing here does I/O of its own.
//!
//! Layout:
//! - [`address`]: validated e-mail addresses and domains (SMTPUTF8, IDN).
//! - [`mailbox`]: validated mailbox names and special-use roles.
//! - [`ids`]: the internal queue id that keys idempotency, RFC 5322 message ids,
//!   blob keys.
//! - [`job`]: the envelope and the jobs carried by the stage queues.
//! - [`ports`]: the port traits (blob store, index, queue, transport,
//!   change feed, scanner) and their `Retryable`/`Permanent` errors. No
//!   cloud SDK type appears here; adapters live in `store-local`,
//!   `store-aws` and `outbound`.
//! - [`mailstore`]: message entries in mailboxes over the index port
//!   (UIDs, MODSEQs, flags, expunges, leases).
//! - [`message`]: what IMAP needs of a message (envelope, structure),
//!   computed once at delivery.
//! - [`authors`]: the From and Sender addresses of a message, which
//!   submission checks and DKIM signs for.
//! - [`archive`]: the compliance archive's entry type and key layout.
//! - [`accounts`]: domains, users and mailboxes, written once over the index port.
//! - [`lists`]: distribution lists, their members and held posts.
//! - [`password`]: Argon2id hashing of user passwords.
//! - [`credentials`]: app passwords, admin grants, and the revocations
//!   that end sessions on every gateway.
//! - [`outqueue`]: the outbound queue's entries (waiting retries), which
//!   administrators list, retry, delete and bounce.
//! - [`quarantine`]: messages the filter held back, until released,
//!   deleted or expired.
//! - [`spam`]: spam thresholds and allow/block lists of domains and users.
//! - [`srs`]: the Sender Rewriting Scheme for forwarded mail.
//! - [`sweep`]: the sweeper that deletes what nothing references any more.
//!
//! The contract suites that every adapter must pass live in the end-to-end
//! test crate (`tests/`), which runs them against each adapter.

pub mod accounts;
pub mod address;
pub mod archive;
pub mod authors;
pub mod base64;
pub mod credentials;
pub mod ids;
pub mod job;
pub mod lists;
pub mod mailbox;
pub mod mailstore;
pub mod message;
pub mod metrics;
pub mod outqueue;
pub mod password;
pub mod ports;
pub mod quarantine;
pub mod sieve;
pub mod spam;
pub mod srs;
pub mod sweep;
pub mod time;
pub mod tlsrpt;

pub use address::{Address, AddressError, Domain};
pub use ids::{BlobKey, MessageId, QueueId};
pub use mailbox::{MailboxName, SpecialUse};
pub use ports::{BlobStore, Index, Queue, StoreError, StoreResult};
