//! The statistical classifier: naive Bayes over message tokens, with
//! Robinson's per-token probability estimates (a prior that keeps rare
//! tokens near 0.5) and the log-likelihood ratios of the strongest tokens
//! summed and squashed to a probability. The global model learns twice
//! the training mail it would misjudge unseen ([`crate::train::fit`]).
//!
//! Why naive Bayes and not logistic regression over hashed features: it
//! learns one message at a time by adding counts (a user's Junk moves
//! train it at once, with no refit), a user's model is the global counts
//! plus their own, and training is deterministic by construction. Why the
//! summed ratios and not Fisher's chi-square combining (SpamBayes): on
//! the training corpus, cross-validated, chi-square left one spam in
//! twelve in its "unsure" middle; the sum separates better at the same
//! false-positive rate (BENCHMARKS.md).
//!
//! A model is a sorted table of (token hash, spam count, ham count) and the
//! number of spam and ham messages it learnt from. Its file form is a
//! small header and one variable-length record per token (see
//! [`Model::to_bytes`]).

use std::cmp::Ordering;

/// Robinson's strength of the prior (s) and the prior itself (x).
const PRIOR_STRENGTH: f64 = 0.45;
const PRIOR: f64 = 0.5;
/// Tokens whose probability is closer to 0.5 than this say nothing.
const MIN_STRENGTH: f64 = 0.1;
/// At most this many of the strongest tokens decide. With more, the
/// dozens of mildly hammy tokens a mailing list's header adds to all its
/// mail (spam it relays too) outvote the body's strong ones; with fewer,
/// a handful of tokens decide alone (BENCHMARKS.md).
const MAX_CLUES: usize = 45;
/// Below this many messages of either kind, the classifier abstains.
pub const MIN_TRAINED: u32 = 50;

const MAGIC: &[u8; 8] = b"STRBAYE2";

/// Token counts: a global model, or one user's own learning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub spam_messages: u32,
    pub ham_messages: u32,
    /// (hash, spam count, ham count), sorted by hash, each hash once.
    entries: Vec<(u32, u32, u32)>,
}

#[derive(Debug, thiserror::Error)]
#[error("not a classifier model: {0}")]
pub struct ModelError(&'static str);

impl Model {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The counts of `token`.
    pub fn get(&self, token: u32) -> (u32, u32) {
        match self.entries.binary_search_by_key(&token, |e| e.0) {
            Ok(i) => (self.entries[i].1, self.entries[i].2),
            Err(_) => (0, 0),
        }
    }

    /// Adds (`by` = 1) or removes (`by` = -1) one message's `tokens`
    /// (sorted, each once) as spam or ham.
    pub fn learn(&mut self, tokens: &[u32], spam: bool, by: i32) {
        let total = if spam {
            &mut self.spam_messages
        } else {
            &mut self.ham_messages
        };
        *total = total.saturating_add_signed(by);
        let mut merged = Vec::with_capacity(self.entries.len() + tokens.len());
        let (mut i, mut j) = (0, 0);
        let bump = |e: (u32, u32, u32)| {
            let (h, s, n) = e;
            if spam {
                (h, s.saturating_add_signed(by), n)
            } else {
                (h, s, n.saturating_add_signed(by))
            }
        };
        while i < self.entries.len() || j < tokens.len() {
            let order = match (self.entries.get(i), tokens.get(j)) {
                (Some(e), Some(t)) => e.0.cmp(t),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match order {
                Ordering::Less => {
                    merged.push(self.entries[i]);
                    i += 1;
                }
                Ordering::Equal => {
                    merged.push(bump(self.entries[i]));
                    i += 1;
                    j += 1;
                }
                Ordering::Greater => {
                    if by > 0 {
                        merged.push(bump((tokens[j], 0, 0)));
                    }
                    j += 1;
                }
            }
        }
        merged.retain(|e| e.1 > 0 || e.2 > 0);
        self.entries = merged;
    }

    /// Drops tokens seen fewer than `min` times in all: most tokens are
    /// seen once, and one sighting says little.
    pub fn prune(&mut self, min: u32) {
        self.entries.retain(|e| e.1.saturating_add(e.2) >= min);
    }

    /// The file form: the magic, the spam and ham message counts and the
    /// number of records (u32 little-endian each), then per record the
    /// hash's distance from the previous one, the spam count and the ham
    /// count, each an unsigned LEB128 number: about four bytes a token.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.entries.len() * 5);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.spam_messages.to_le_bytes());
        out.extend_from_slice(&self.ham_messages.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        let mut previous = 0u32;
        for &(h, s, n) in &self.entries {
            for v in [h - previous, s, n] {
                leb128(&mut out, v);
            }
            previous = h;
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or(ModelError("bad magic"))?;
        let word = |i: usize| -> Result<u32, ModelError> {
            rest.get(i * 4..i * 4 + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")))
                .ok_or(ModelError("truncated"))
        };
        let (spam_messages, ham_messages, n) = (word(0)?, word(1)?, word(2)? as usize);
        let mut data = &rest[12..];
        // Each record takes at least three bytes.
        if n > data.len() / 3 {
            return Err(ModelError("truncated"));
        }
        let mut entries = Vec::with_capacity(n);
        let mut previous = 0u32;
        for k in 0..n {
            let delta = read_leb128(&mut data)?;
            let h = previous
                .checked_add(delta)
                .ok_or(ModelError("records out of order"))?;
            if k > 0 && delta == 0 {
                return Err(ModelError("records out of order"));
            }
            entries.push((h, read_leb128(&mut data)?, read_leb128(&mut data)?));
            previous = h;
        }
        if !data.is_empty() {
            return Err(ModelError("wrong length"));
        }
        Ok(Model {
            spam_messages,
            ham_messages,
            entries,
        })
    }
}

fn leb128(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_leb128(data: &mut &[u8]) -> Result<u32, ModelError> {
    let mut v: u64 = 0;
    for shift in (0..35).step_by(7) {
        let (&b, rest) = data.split_first().ok_or(ModelError("truncated"))?;
        *data = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return u32::try_from(v).map_err(|_| ModelError("number too large"));
        }
    }
    Err(ModelError("number too long"))
}

/// A global model with one user's own counts on top.
#[derive(Debug, Clone, Copy)]
pub struct Classifier<'a> {
    pub global: &'a Model,
    pub user: Option<&'a Model>,
}

impl Classifier<'_> {
    fn totals(&self) -> (u32, u32) {
        let (s, h) = (self.global.spam_messages, self.global.ham_messages);
        match self.user {
            Some(u) => (
                s.saturating_add(u.spam_messages),
                h.saturating_add(u.ham_messages),
            ),
            None => (s, h),
        }
    }

    fn counts(&self, token: u32) -> (u32, u32) {
        let (s, h) = self.global.get(token);
        match self.user {
            Some(u) => {
                let (us, uh) = u.get(token);
                (s.saturating_add(us), h.saturating_add(uh))
            }
            None => (s, h),
        }
    }

    /// The probability that a message with `tokens` is spam, from 0 to 1;
    /// `None` while the model has learnt too little to say.
    pub fn spam_probability(&self, tokens: &[u32]) -> Option<f64> {
        let (nspam, nham) = self.totals();
        if nspam < MIN_TRAINED || nham < MIN_TRAINED {
            return None;
        }
        let llr = log_likelihood_ratio(tokens, (nspam, nham), |t| self.counts(t));
        Some(1.0 / (1.0 + (-llr).exp()))
    }
}

impl Model {
    /// The summed log-likelihood ratio of `tokens`, a message this model
    /// learnt as `spam` (or ham), as if it had not learnt that message:
    /// how its own kind of mail, unseen, would be judged.
    pub fn log_likelihood_ratio_without(&self, tokens: &[u32], spam: bool) -> f64 {
        let (s, h) = (u32::from(spam), u32::from(!spam));
        let totals = (
            self.spam_messages.saturating_sub(s),
            self.ham_messages.saturating_sub(h),
        );
        log_likelihood_ratio(tokens, totals, |t| {
            let (ts, th) = self.get(t);
            (ts.saturating_sub(s), th.saturating_sub(h))
        })
    }
}

/// The sum of the log-likelihood ratios of the strongest clues among
/// `tokens`, given the message totals and each token's counts.
fn log_likelihood_ratio(
    tokens: &[u32],
    (nspam, nham): (u32, u32),
    counts: impl Fn(u32) -> (u32, u32),
) -> f64 {
    let (nspam, nham) = (f64::from(nspam.max(1)), f64::from(nham.max(1)));
    let mut clues: Vec<(f64, u32, f64)> = tokens
        .iter()
        .filter_map(|&t| {
            let (s, h) = counts(t);
            if s == 0 && h == 0 {
                return None;
            }
            let spam_ratio = (f64::from(s) / nspam).min(1.0);
            let ham_ratio = (f64::from(h) / nham).min(1.0);
            let p = spam_ratio / (spam_ratio + ham_ratio);
            let n = f64::from(s) + f64::from(h);
            let p = (PRIOR_STRENGTH * PRIOR + n * p) / (PRIOR_STRENGTH + n);
            let strength = (p - 0.5).abs();
            (strength >= MIN_STRENGTH).then_some((strength, t, p))
        })
        .collect();
    // Strongest first; the hash breaks ties so the result never depends
    // on the order tokens were found in.
    clues.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    clues.truncate(MAX_CLUES);
    // Fewer clues than there is room for: the sum is scaled by their
    // share, so a message the model knows little of (a two-line note, a
    // bare attachment) is judged with as little certainty.
    let filled = clues.len() as f64 / MAX_CLUES as f64;
    filled * clues.iter().map(|c| (c.2 / (1.0 - c.2)).ln()).sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPAMMY: [u32; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    const HAMMY: [u32; 10] = [11, 12, 13, 14, 15, 16, 17, 18, 19, 20];

    fn with(tokens: &[u32], extra: u32) -> Vec<u32> {
        let mut t = tokens.to_vec();
        t.push(extra);
        t.sort_unstable();
        t
    }

    fn trained() -> Model {
        let mut m = Model::default();
        for i in 0..60u32 {
            m.learn(&with(&SPAMMY, 100 + i), true, 1);
            m.learn(&with(&HAMMY, 1000 + i), false, 1);
        }
        m
    }

    #[test]
    fn separates_what_it_learnt() {
        let m = trained();
        let c = Classifier {
            global: &m,
            user: None,
        };
        assert!(c.spam_probability(&SPAMMY).unwrap() > 0.99);
        assert!(c.spam_probability(&HAMMY).unwrap() < 0.01);
        let mixed = [1, 2, 3, 4, 5, 11, 12, 13, 14, 15];
        let unsure = c.spam_probability(&mixed).unwrap();
        assert!((0.3..0.7).contains(&unsure), "{unsure}");
        assert_eq!(c.spam_probability(&[999_999]), Some(0.5));
    }

    #[test]
    fn few_clues_give_little_certainty() {
        let m = trained();
        let c = Classifier {
            global: &m,
            user: None,
        };
        let two = c.spam_probability(&SPAMMY[..2]).unwrap();
        let ten = c.spam_probability(&SPAMMY).unwrap();
        assert!((0.6..0.95).contains(&two), "{two}");
        assert!(ten > 0.9999, "{ten}");
    }

    #[test]
    fn abstains_untrained_and_user_counts_add() {
        let mut small = Model::default();
        small.learn(&[1], true, 1);
        let c = Classifier {
            global: &small,
            user: None,
        };
        assert_eq!(c.spam_probability(&[1]), None);
        let global = trained();
        // The user says what is ham to everyone else is spam to them.
        let mut user = Model::default();
        for _ in 0..200 {
            user.learn(&HAMMY, true, 1);
        }
        let alone = Classifier {
            global: &global,
            user: None,
        };
        let with_user = Classifier {
            global: &global,
            user: Some(&user),
        };
        let before = alone.spam_probability(&HAMMY).unwrap();
        let after = with_user.spam_probability(&HAMMY).unwrap();
        assert!(before < 0.01 && after > before + 0.3, "{before} {after}");
    }

    #[test]
    fn unlearning_restores_and_files_round_trip() {
        let mut m = trained();
        let before = m.clone();
        m.learn(&[1, 5, 7, 5000], false, 1);
        m.learn(&[1, 5, 7, 5000], false, -1);
        assert_eq!(m, before);
        let bytes = m.to_bytes();
        assert_eq!(Model::from_bytes(&bytes).unwrap(), m);
        assert!(Model::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(Model::from_bytes(b"STRBAYE2").is_err());
        assert!(Model::from_bytes(b"STRBAYE2\0\0\0\0\0\0\0\0\xff\xff\xff\xff").is_err());
        assert!(Model::from_bytes(b"nonsense").is_err());
    }
}
