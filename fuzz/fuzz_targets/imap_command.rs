//! The IMAP command parser on arbitrary bytes: it must answer (a command
//! or a reason), never panic, whatever a client sends; modified UTF-7
//! decodes and encodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

use stratus_proto::imap::{self, wire};

fuzz_target!(|data: &[u8]| {
    if let Err(invalid) = imap::parse(data) {
        assert!(!invalid.reason.is_empty());
    }
    if let Some(name) = wire::utf7_decode(data) {
        assert_eq!(
            wire::utf7_decode(wire::utf7_encode(&name).as_bytes()),
            Some(name.clone())
        );
        let mut out = Vec::new();
        wire::mailbox(&mut out, &name, false);
        wire::string(&mut out, data, false);
    }
});
