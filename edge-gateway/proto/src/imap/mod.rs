//! IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) on the wire.

pub mod command;
pub mod framing;
pub mod parse;
pub mod pattern;
pub mod url;
pub mod wire;

pub use parse::parse;
