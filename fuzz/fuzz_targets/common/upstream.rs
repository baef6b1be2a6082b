//! What the fuzz targets that parse messages share.

/// mail-parser 0.11.9 reaches a `debug_assert!` ("Invalid part ID") on
/// some malformed multiparts; `stratus_core::message::parse` catches the
/// panic and handles the message as unparsed. libFuzzer's panic hook
/// aborts before anything can catch a panic, so this hook lets that one
/// assertion unwind into the guard. Any other panic still aborts: a finding.
/// The match names the mail-parser version on purpose: after an upgrade the
/// assertion aborts again until someone checks whether it is still needed.
pub fn let_the_known_upstream_assertion_unwind() {
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

