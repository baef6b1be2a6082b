//! The SMTP wire layer on arbitrary bytes: a command line through
//! smtp-proto's parser (as the session calls it) and the addresses it
//! yields through stratus-core's, then the rest as DATA through the
//! DotReader, whole and in two pieces. It must never panic; both feeds
//! must agree on the message, the end and what was consumed; nothing
//! after the end marker may be taken; and a message with a bare CR or LF
//! must come out empty (SMTP smuggling, CVE-2023-51764).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_proto::Request;
use stratus_core::Address;

use stratus_proto::smtp::data;

fn dot_read(input: &[&[u8]]) -> (Vec<u8>, bool, usize, bool) {
    let mut reader = data::DotReader::new(1 << 16);
    let mut out = Vec::new();
    let mut consumed = 0;
    for piece in input {
        let (n, end) = reader.feed(piece, &mut out);
        assert!(n <= piece.len());
        consumed += n;
        if end {
            return (out, true, consumed, reader.saw_bare_line_ending());
        }
        assert_eq!(n, piece.len(), "everything is taken before the end");
    }
    (out, false, consumed, reader.saw_bare_line_ending())
}

fuzz_target!(|input: &[u8]| {
    let line_end = input.iter().position(|&b| b == b'\n').map_or(input.len(), |i| i + 1);
    let (line, rest) = input.split_at(line_end);
    if std::str::from_utf8(line).is_ok()
        && let Ok(request) = Request::parse(&mut line.iter())
    {
        match request {
            Request::Mail { from } => {
                let _ = Address::parse(&from.address);
            }
            Request::Rcpt { to } => {
                let _ = Address::parse(&to.address);
            }
            _ => {}
        }
    }
    let _ = data::count_received(rest);

    let split = rest.first().map_or(0, |&b| b as usize % (rest.len() + 1));
    let whole = dot_read(&[rest]);
    let pieces = dot_read(&[&rest[..split], &rest[split..]]);
    assert_eq!(whole, pieces);
    let (message, end, consumed, bare) = whole;
    if end {
        assert!(rest[..consumed].ends_with(b"\r\n.\r\n") || &rest[..consumed] == b".\r\n");
    }
    if bare {
        assert!(message.is_empty());
    }
});
