//! Message ingestion: the metadata IMAP serves is computed for any bytes,
//! stays within its bounds, and its offsets stay inside the message; the
//! archive's header-only parse gives the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratus_core::message::{PartMeta, analyze, envelope};

fn check(part: &PartMeta, len: u64) {
    assert!(part.header_start <= part.body_start, "{part:?}");
    assert!(part.body_start <= part.end && part.end <= len, "{part:?}");
    for child in &part.parts {
        check(child, len);
    }
    if let Some(inner) = &part.message {
        check(&inner.1, len);
    }
}

fuzz_target!(|data: &[u8]| {
    let meta = analyze(data);
    check(&meta.structure, data.len() as u64);
    assert_eq!(envelope(data), meta.envelope);
});
