//! The POP3 command parser on arbitrary bytes: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratus_gateway::pop3::command;

fuzz_target!(|data: &[u8]| {
    let _ = command::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = command::sasl_plain(text);
    }
});
