//! Stratus's protocols as bytes in, values out: parsers and writers that
//! never touch a socket, so that sessions (in `stratus-gateway`) do the
//! I/O and the fuzz targets (in `fuzz/`) drive these functions directly.
//!
//! Layout:
//! - [`imap`]: commands as values ([`imap::command`]), the parser
//!   ([`imap::parse`]), the reader's framing helpers ([`imap::framing`]),
//!   LIST patterns ([`imap::pattern`]) and the writers of IMAP data
//!   ([`imap::wire`]: strings, modified UTF-7, ENVELOPE, BODYSTRUCTURE).
//! - [`pop3`]: commands, the dot-stuffer of RETR/TOP and TOP's line filter.
//! - [`smtp`]: commands are parsed by `smtp-proto`; here are the DATA and
//!   BDAT readers ([`smtp::data`], the defence against SMTP smuggling) and
//!   replies with enhanced status codes ([`smtp::reply`]).
//! - [`managesieve`]: ManageSieve commands (literals included) and the
//!   strings and responses the server writes.
//! - [`sasl`]: PLAIN and the base64 of SASL exchanges, for every protocol
//!   that authenticates.
//!
//! Sieve scripts themselves are parsed by `stratus-sieve`.
//!
//! The only dependency is `stratus-core`, for the domain types (addresses,
//! message metadata) these formats carry.

pub mod imap;
pub mod managesieve;
pub mod pop3;
pub mod sasl;
pub mod smtp;

#[cfg(test)]
mod corpora;
