//! SMTP on the wire, beside what `smtp-proto` parses: message bytes,
//! replies, and the SIZE parameter read exactly.

pub mod data;
pub mod mail;
pub mod reply;
