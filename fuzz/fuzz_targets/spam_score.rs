//! Spam scoring: any bytes as a message get a verdict, with a finite
//! score and each symbol at most once, within the analysis bounds; the
//! attachment policy opens any archive without panicking or unbounded
//! work.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stratus_filter::{Analysis, Classifier, Context, Model, Policy, Rules, score};

#[path = "common/upstream.rs"]
mod upstream;

fn setup() -> &'static (Rules, Model) {
    static SETUP: OnceLock<(Rules, Model)> = OnceLock::new();
    SETUP.get_or_init(|| (Rules::shipped(), stratus_filter::shipped_model()))
}

fuzz_target!(|data: &[u8]| {
    upstream::let_the_known_upstream_assertion_unwind();
    let (rules, model) = setup();
    let a = Analysis::new(data);
    assert!(a.text.len() <= stratus_filter::analysis::MAX_TEXT + 1024);
    assert!(a.tokens.len() <= stratus_filter::tokens::MAX_TOKENS);
    let ctx = Context::default();
    let classifier = Classifier {
        global: model,
        user: None,
    };
    let v = score(&a, &ctx, rules, classifier, &Policy::from_rules(rules));
    assert!(v.score.is_finite());
    let mut names: Vec<&str> = v.hits.iter().map(|h| h.name.as_str()).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "a symbol fired twice: {:?}", v.hits);
    let headers = v.headers();
    assert!(headers.lines().all(|l| l.len() <= 998));
});
