//! The ManageSieve wire layer on arbitrary bytes: the command parser, the
//! literal finder and the SASL response reader answer (a value or a
//! reason), never panic; a string written by the server reads back as
//! itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

use stratus_proto::managesieve as wire;

fuzz_target!(|data: &[u8]| {
    if let Err(invalid) = wire::parse(data) {
        assert!(!invalid.0.is_empty());
    }
    let _ = wire::literal_at_end(data);
    let _ = wire::sasl_response(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let written = format!("GETSCRIPT {}\r\n", wire::string(text));
        if let Ok(wire::Command::GetScript(back)) = wire::parse(written.as_bytes()) {
            assert_eq!(back, text);
        }
    }
});
