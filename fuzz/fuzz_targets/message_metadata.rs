//! Message ingestion: the metadata IMAP serves is computed for any bytes,
//! stays within its bounds, and its offsets stay inside the message; the
//! archive's header-only parse takes any bytes too. (Both take the envelope
//! from the same header-only parse, so comparing them here, as this target
//! did until 2026-12-04, would prove nothing; it found the case that made
//! them one.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratus_core::message::{analyze, envelope};

/// mail-parser 0.11.9 reaches a `debug_assert!` ("Invalid part ID") on
/// some malformed multiparts; `stratus_core::message::parse` catches the
/// panic and handles the message as unparsed. libFuzzer's panic hook
/// aborts before anything can catch a panic, so this hook lets that one
/// assertion unwind into the guard. Any other panic still aborts: a finding.
/// The match names the mail-parser version on purpose: after an upgrade the
/// assertion aborts again until someone checks whether it is still needed.
fn let_the_known_upstream_assertion_unwind() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_mail_parser = info
                .location()
                .is_some_and(|l| l.file().contains("/mail-parser-0.11.9/"));
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str));
            let known = message.is_some_and(|m| m.contains("Invalid part ID"));
            if !(in_mail_parser && known) {
                abort(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    let_the_known_upstream_assertion_unwind();
    let meta = analyze(data);
    let misplaced = meta.structure.misplaced(data.len() as u64);
    assert!(misplaced.is_none(), "{misplaced:?}");
    let _ = envelope(data);
});
