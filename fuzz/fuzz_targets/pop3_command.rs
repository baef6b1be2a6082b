//! The POP3 wire layer on arbitrary bytes: the command parser and SASL
//! PLAIN must answer (a command or a reason), never panic; the
//! dot-stuffer fed in two pieces must give what it gives in one, and its
//! output must never hold a line that ends the answer early.
#![no_main]

use libfuzzer_sys::fuzz_target;

use stratus_proto::pop3 as command;

fuzz_target!(|data: &[u8]| {
    if let Err(invalid) = command::parse(data) {
        assert!(!invalid.0.is_empty());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = command::sasl_plain(text);
    }
    let split = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let mut whole = Vec::new();
    let mut stuffer = command::DotStuffer::default();
    stuffer.push(data, &mut whole);
    stuffer.finish(&mut whole);
    let mut pieces = Vec::new();
    stuffer.push(&data[..split], &mut pieces);
    stuffer.push(&data[split..], &mut pieces);
    stuffer.finish(&mut pieces);
    assert_eq!(whole, pieces);
    // Only the last line is a lone dot.
    let body = &whole[..whole.len() - 3];
    assert!(!body.windows(5).any(|w| w == b"\r\n.\r\n"));
    assert!(!body.starts_with(b".\r\n"));
});
