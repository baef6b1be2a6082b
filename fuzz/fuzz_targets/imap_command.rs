//! The IMAP command parser on arbitrary bytes: it must answer (a command
//! or a reason), never panic, whatever a client sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratus_gateway::imap::{command, literal_at_end, matches_pattern, wire};

fuzz_target!(|data: &[u8]| {
    if let Err(invalid) = command::parse(data) {
        assert!(!invalid.reason.is_empty());
    }
    let _ = literal_at_end(data);
    if let Some(name) = wire::utf7_decode(data) {
        assert_eq!(wire::utf7_decode(wire::utf7_encode(&name).as_bytes()), Some(name.clone()));
        let _ = matches_pattern(&name, "INBOX/a/b");
    }
});
