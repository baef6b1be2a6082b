//! Message ingestion: the metadata IMAP serves is computed for any bytes,
//! stays within its bounds, and its offsets stay inside the message; the
//! archive's header-only parse takes any bytes too. (Both take the envelope
//! from the same header-only parse, so comparing them here, as this target
//! did until 2026-12-04, would prove nothing; it found the case that made
//! them one.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratus_core::message::{analyze, envelope};

#[path = "common/upstream.rs"]
mod upstream;
use upstream::let_the_known_upstream_assertion_unwind;

fuzz_target!(|data: &[u8]| {
    let_the_known_upstream_assertion_unwind();
    let meta = analyze(data);
    let misplaced = meta.structure.misplaced(data.len() as u64);
    assert!(misplaced.is_none(), "{misplaced:?}");
    let _ = envelope(data);
});
