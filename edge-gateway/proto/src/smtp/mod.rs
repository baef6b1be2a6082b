//! SMTP on the wire, beside what `smtp-proto` parses: message bytes and
//! replies.

pub mod data;
pub mod reply;
