//! Training the classifier from raw messages, and measuring the whole
//! verdict by k-fold cross-validation. No I/O: the caller reads the files
//! (`stratus spam train` and `stratus spam evaluate`).

use crate::bayes::Model;
use crate::{Action, Analysis, AuthFacts, Classifier, Context, Policy, Rules, score};

/// Tokens seen fewer times than this in the whole training set are left
/// out of a trained model.
pub const PRUNE_BELOW: u32 = 1;

/// Splits an mbox file into its messages (the `From ` separator lines
/// are not part of them; `>From ` quoting is undone).
pub fn split_mbox(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            if let Some(m) = current.take() {
                out.push(m);
            }
            current = Some(Vec::new());
            continue;
        }
        let message = current.get_or_insert_with(Vec::new);
        let unquoted = match line.iter().position(|&b| b != b'>') {
            Some(p) if p > 0 && line[p..].starts_with(b"From ") => &line[1..],
            _ => line,
        };
        message.extend_from_slice(unquoted);
    }
    out.extend(current.filter(|m| !m.is_empty()));
    out
}

/// Whether `bytes` look like an mbox file rather than one message.
pub fn is_mbox(bytes: &[u8]) -> bool {
    bytes.starts_with(b"From ")
}

/// A model trained on `ham` and `spam` (the order of each list does not
/// matter: counting is commutative, so the same messages give the same
/// model byte for byte).
pub fn train<'a>(
    ham: impl IntoIterator<Item = &'a [u8]>,
    spam: impl IntoIterator<Item = &'a [u8]>,
) -> Model {
    let mut messages: Vec<(Vec<u32>, bool)> = Vec::new();
    for raw in ham {
        messages.push((Analysis::new(raw).tokens, false));
    }
    for raw in spam {
        messages.push((Analysis::new(raw).tokens, true));
    }
    fit(messages.iter().map(|(t, s)| (t.as_slice(), *s)))
}

/// How far (in summed log-likelihood ratio) on its own side a training
/// message must be judged, unseen, for one counting to be enough.
pub const RETRAIN_MARGIN: f64 = 20.0;

/// Counts every message once, then once more each message the counts
/// would misjudge or judge narrowly had they not seen it (train on
/// error, decided for all messages against the first counts, so the
/// order still does not matter). Mail unlike the rest of its kind, such
/// as spam relayed by a mailing list whose other mail is ham, is what a
/// single count underweights; the cross-validated recall gain is in
/// BENCHMARKS.md.
pub fn fit<'a>(messages: impl Iterator<Item = (&'a [u32], bool)> + Clone) -> Model {
    let mut model = Model::default();
    for (tokens, spam) in messages.clone() {
        model.learn(tokens, spam, 1);
    }
    let again: Vec<(&[u32], bool)> = messages
        .filter(|&(tokens, spam)| {
            let llr = model.log_likelihood_ratio_without(tokens, spam);
            if spam {
                llr < RETRAIN_MARGIN
            } else {
                llr > -RETRAIN_MARGIN
            }
        })
        .collect();
    for (tokens, spam) in again {
        model.learn(tokens, spam, 1);
    }
    model.prune(PRUNE_BELOW);
    model
}

/// How a verdict did on held-out mail.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    /// Spam called spam, ham called spam, ham called ham, spam called ham.
    pub true_positives: usize,
    pub false_positives: usize,
    pub true_negatives: usize,
    pub false_negatives: usize,
    /// Names of the ham messages called spam, and of the spam missed
    /// (for whoever tunes the rules).
    pub false_positive_names: Vec<String>,
    pub false_negative_names: Vec<String>,
    /// Every message's kind (spam: true) and score, to choose thresholds.
    pub scores: Vec<(bool, f64)>,
}

impl Evaluation {
    pub fn precision(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    pub fn recall(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }

    /// (false positives, false negatives) had the junk threshold been
    /// `threshold`.
    pub fn at_threshold(&self, threshold: f64) -> (usize, usize) {
        let fp = self
            .scores
            .iter()
            .filter(|(spam, s)| !spam && *s >= threshold)
            .count();
        let fneg = self
            .scores
            .iter()
            .filter(|(spam, s)| *spam && *s < threshold)
            .count();
        (fp, fneg)
    }

    /// Of the ham, the share called spam.
    pub fn false_positive_rate(&self) -> f64 {
        ratio(
            self.false_positives,
            self.false_positives + self.true_negatives,
        )
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// One message to evaluate with: its name and bytes.
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    pub name: &'a str,
    pub raw: &'a [u8],
}

/// The context a message replayed from a corpus gets: the envelope sender
/// is its From, and with a resolver that knows no names, SPF finds no
/// record and DKIM signatures find no key.
pub fn replay_context(a: &Analysis, now: i64) -> Context {
    let mut auth = AuthFacts {
        spf: "none".into(),
        dmarc: "none".into(),
        ..AuthFacts::default()
    };
    if a.header("dkim-signature").next().is_some() {
        auth.dkim.push(("permerror".into(), None));
    }
    Context {
        mail_from: a.from.as_ref().map(|f| f.0.clone()),
        auth,
        listed: Vec::new(),
        now,
    }
}

/// `folds`-fold cross-validation of the whole verdict (rules and
/// classifier) with the default thresholds: each message is scored by a
/// model trained on the other folds. Folds are chosen from the content, so
/// the result is the same on every run.
pub fn cross_validate(
    ham: &[Named<'_>],
    spam: &[Named<'_>],
    folds: usize,
    rules: &Rules,
    now: i64,
) -> Evaluation {
    let folds = folds.max(2);
    let read = |list: &[Named<'_>], is_spam: bool| -> Vec<(usize, bool, String, Analysis)> {
        list.iter()
            .map(|n| {
                let fold = (crate::tokens::hash(&String::from_utf8_lossy(n.raw)) as usize) % folds;
                (fold, is_spam, n.name.to_string(), Analysis::new(n.raw))
            })
            .collect()
    };
    let mut all = read(ham, false);
    all.extend(read(spam, true));
    let policy = Policy::from_rules(rules);
    let mut eval = Evaluation::default();
    for k in 0..folds {
        let model = fit(all
            .iter()
            .filter(|(fold, ..)| *fold != k)
            .map(|(_, is_spam, _, a)| (a.tokens.as_slice(), *is_spam)));
        let classifier = Classifier {
            global: &model,
            user: None,
        };
        for (fold, is_spam, name, a) in &all {
            if *fold != k {
                continue;
            }
            let ctx = replay_context(a, now);
            let v = score(a, &ctx, rules, classifier, &policy);
            eval.scores.push((*is_spam, v.score));
            let called_spam = v.action != Action::Deliver;
            match (is_spam, called_spam) {
                (true, true) => eval.true_positives += 1,
                (false, true) => {
                    eval.false_positives += 1;
                    eval.false_positive_names.push(name.clone());
                }
                (false, false) => eval.true_negatives += 1,
                (true, false) => {
                    eval.false_negatives += 1;
                    eval.false_negative_names.push(name.clone());
                }
            }
        }
    }
    eval
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_is_split_and_unquoted() {
        let mbox = b"From a@x Mon Jan 1 00:00:00 2024\nSubject: one\n\n>From here\n\nFrom b@y Tue Jan 2 00:00:00 2024\nSubject: two\n\nbody\n";
        let m = split_mbox(mbox);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], b"Subject: one\n\nFrom here\n\n");
        assert_eq!(m[1], b"Subject: two\n\nbody\n");
        assert!(is_mbox(mbox));
    }

    #[test]
    fn training_does_not_depend_on_order() {
        let ham: Vec<Vec<u8>> = (0..5)
            .map(|i| format!("Subject: lunch {i}\n\nmeeting notes agenda {i}\n").into_bytes())
            .collect();
        let spam: Vec<Vec<u8>> = (0..5)
            .map(|i| format!("Subject: offer {i}\n\ncheap pills winner {i}\n").into_bytes())
            .collect();
        let a = train(
            ham.iter().map(|v| v.as_slice()),
            spam.iter().map(|v| v.as_slice()),
        );
        let b = train(
            ham.iter().rev().map(|v| v.as_slice()),
            spam.iter().rev().map(|v| v.as_slice()),
        );
        assert_eq!(a.to_bytes(), b.to_bytes());
        // So few messages judge one another narrowly: each is learnt twice.
        assert_eq!((a.spam_messages, a.ham_messages), (10, 10));
        assert!(!a.is_empty());
    }

    #[test]
    fn only_mail_unlike_its_kind_is_learnt_twice() {
        // Enough distinct words of each kind to fill every clue.
        let ham_words: Vec<String> = (0..60).map(|i| format!("meeting{i}")).collect();
        let spam_words: Vec<String> = (0..60).map(|i| format!("casino{i}")).collect();
        let message = |words: &[String], i: usize| -> Vec<u32> {
            let raw = format!("Subject: note {i}\n\n{} unique{i}\n", words.join(" "));
            Analysis::new(raw.as_bytes()).tokens
        };
        let mut messages: Vec<(Vec<u32>, bool)> = Vec::new();
        for i in 0..200 {
            messages.push((message(&ham_words, i), false));
            messages.push((message(&spam_words, 1000 + i), true));
        }
        // Spam written in the words of ham, as a list relays it.
        messages.push((message(&ham_words, 5000), true));
        let model = fit(messages.iter().map(|(t, s)| (t.as_slice(), *s)));
        assert_eq!(model.ham_messages, 200);
        assert_eq!(model.spam_messages, 202);
    }
}
