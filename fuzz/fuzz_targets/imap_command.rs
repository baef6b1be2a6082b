//! The IMAP command parser on arbitrary bytes: it must answer (a command
//! or a reason), never panic, whatever a client sends. The parser and the
//! wire encoders are taken by path: they depend on nothing but
//! stratus-core, so the fuzz build stays small.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../edge-gateway/src/imap/command.rs"]
#[allow(dead_code)]
mod command;
#[path = "../../edge-gateway/src/imap/wire.rs"]
#[allow(dead_code)]
mod wire;

fuzz_target!(|data: &[u8]| {
    if let Err(invalid) = command::parse(data) {
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
