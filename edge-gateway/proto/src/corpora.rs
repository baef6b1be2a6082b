//! The fuzz targets' corpora, replayed in the everyday test command.

/// The fuzz corpora (fuzz/corpus), replayed on stable: every input gets an
/// answer, none a panic (fuzz/run.sh checks much more, on nightly).
#[test]
fn fuzz_corpora_replay_without_panics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut replayed = 0;
    for (target, run) in [
        (
            "imap_command",
            (|d: &[u8]| {
                let _ = crate::imap::parse(d);
                let _ = crate::imap::framing::literal_at_end(d);
                if let Some(n) = crate::imap::wire::utf7_decode(d) {
                    assert_eq!(
                        crate::imap::wire::utf7_decode(
                            crate::imap::wire::utf7_encode(&n).as_bytes()
                        ),
                        Some(n)
                    );
                }
            }) as fn(&[u8]),
        ),
        ("pop3_command", |d: &[u8]| {
            let _ = crate::pop3::parse(d);
            let mut out = Vec::new();
            let mut stuffer = crate::pop3::DotStuffer::default();
            stuffer.push(d, &mut out);
            stuffer.finish(&mut out);
        }),
        ("smtp_command", |d: &[u8]| {
            let _ = smtp_proto::Request::parse(&mut d.iter());
            let mut reader = crate::smtp::data::DotReader::new(1 << 16);
            let (n, _) = reader.feed(d, &mut Vec::new());
            assert!(n <= d.len());
        }),
        ("managesieve_command", |d: &[u8]| {
            let _ = crate::managesieve::parse(d);
            let _ = crate::managesieve::literal_at_end(d);
            let _ = crate::managesieve::sasl_response(d);
        }),
        ("message_metadata", |d: &[u8]| {
            // Offsets stay inside the message, as the fuzz target checks.
            let meta = stratus_core::message::analyze(d);
            let misplaced = meta.structure.misplaced(d.len() as u64);
            assert!(misplaced.is_none(), "{misplaced:?}");
            let _ = stratus_core::message::envelope(d);
        }),
    ] {
        let dir = root.join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            run(&data);
            replayed += 1;
        }
    }
    assert!(replayed >= 40, "only {replayed} corpus inputs");
}
