//! What the fuzz target checks (fuzz/fuzz_targets/sieve_script.rs), here
//! so that the tests replay its corpus on stable with the same checks.

use crate::{Action, Host, Input, Limits, parse, run};

struct FuzzHost;

impl Host for FuzzHost {
    fn mailbox_exists(&self, name: &str) -> bool {
        name == "INBOX" || name == "Junk"
    }
    /// Every name is a script that includes itself.
    fn script(&self, _global: bool, name: &str) -> Option<String> {
        Some(format!("require \"include\";\ninclude \"{name}\";"))
    }
}

/// Parses the bytes before the first NUL as a script and, if it parses,
/// runs it on the bytes after as a message. Panics if a bound does not
/// hold: a run that fails keeps the message, and no run exceeds its caps.
pub fn exercise(data: &[u8]) {
    let (script, message) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(script) = std::str::from_utf8(script) else {
        return;
    };
    let limits = Limits {
        max_steps: 20_000,
        ..Limits::default()
    };
    let Ok(parsed) = parse(script, &limits) else {
        return;
    };
    let input = Input {
        raw: message,
        envelope_from: "sender@example.org",
        envelope_to: "user+box@example.com",
        now: 1_796_637_600,
    };
    let out = run(&parsed, &input, &FuzzHost, &limits);
    if out.error.is_some() {
        assert_eq!(out.actions, vec![Action::Keep { flags: Vec::new() }]);
    }
    assert!(out.actions.len() <= limits.max_actions + 1);
    let redirects = out
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Redirect { .. }))
        .count();
    assert!(redirects <= limits.max_redirects);
}
