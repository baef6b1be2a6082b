//! `stratus spam ...`: train the classifier, measure it, list the rules,
//! score one message, and set thresholds and allow/block lists.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use stratus_filter::train::{self, Named};
use stratus_filter::{Analysis, Classifier, Model, Policy, Rules};

use crate::cli::UsageError;

/// `stratus spam ...`
#[derive(Debug, Clone, PartialEq, clap::Subcommand)]
pub enum SpamCommand {
    /// Train the classifier from raw messages (directories of files, one
    /// message each, or mbox files); deterministic for the same input
    Train {
        /// Ham: a directory or an mbox file (repeatable)
        #[arg(long, required = true, value_name = "DIR|MBOX")]
        ham: Vec<PathBuf>,
        /// Spam: a directory or an mbox file (repeatable)
        #[arg(long, required = true, value_name = "DIR|MBOX")]
        spam: Vec<PathBuf>,
        /// Write the model to this file; without it, the model goes to
        /// the blob store, where the gateway and the filter stage (on every
        /// backend) pick it up within five minutes
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Cross-validate the whole verdict (rules and classifier) on raw
    /// messages: precision, recall, false-positive rate, scoring rate
    Evaluate {
        #[arg(long, required = true, value_name = "DIR|MBOX")]
        ham: Vec<PathBuf>,
        #[arg(long, required = true, value_name = "DIR|MBOX")]
        spam: Vec<PathBuf>,
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Also list the messages it got wrong
        #[arg(long)]
        verbose: bool,
    },
    /// Check the rules file (STRATUS_SPAM_RULES, or the shipped one) and
    /// list every symbol with its weight
    Rules,
    /// Show the thresholds and lists of a domain or a user
    Show {
        /// A domain (all its users) or an address (one user)
        target: String,
    },
    /// Set the thresholds of a domain or a user (a user's replace the
    /// domain's; unset ones follow the rules file)
    Threshold {
        target: String,
        /// At or above: filed to Junk
        #[arg(long, value_name = "SCORE", allow_negative_numbers = true)]
        junk: Option<f64>,
        /// At or above: refused before the final reply to DATA
        #[arg(long, value_name = "SCORE", allow_negative_numbers = true)]
        reject: Option<f64>,
        /// Go back to the default thresholds
        #[arg(long, conflicts_with_all = ["junk", "reject"])]
        default: bool,
    },
    /// Allow senders (addresses, or domains with their subdomains): their
    /// mail is not junk once SPF, DKIM or DMARC vouches for it
    Allow(ListArgs),
    /// Block senders: their mail is refused or filed to Junk
    Block(ListArgs),
    /// Score one message from a file as the filter would (no DNS, no
    /// authentication results) and print the verdict
    Check {
        file: PathBuf,
        /// Use this model instead of the shipped one
        #[arg(long, value_name = "FILE")]
        model: Option<PathBuf>,
    },
}

/// `stratus spam allow|block TARGET ENTRY... [--remove]`
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct ListArgs {
    /// A domain (all its users) or an address (one user)
    pub(crate) target: String,
    /// Addresses, or domains with their subdomains
    #[arg(required = true)]
    pub(crate) entries: Vec<String>,
    /// Take the entries off the list instead
    #[arg(long)]
    pub(crate) remove: bool,
}

/// The rules in force: `STRATUS_SPAM_RULES` (or `spam_rules` in the
/// config file) or the shipped file.
pub fn rules(config: &stratus_runtime::config::Config) -> anyhow::Result<Rules> {
    stratus_runtime::root::spam_rules(config).map_err(|e| UsageError(e.to_string()).into())
}

/// Runs `stratus spam ...`; only the commands that read or change the
/// stores open them.
pub async fn run(
    command: &SpamCommand,
    config: &stratus_runtime::config::Config,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    use crate::service::{SpamList, Threshold};
    match command {
        SpamCommand::Show { target } => {
            settings(config, target, out, async |service, scope| {
                service.spam_settings(scope).await
            })
            .await?;
        }
        SpamCommand::Threshold {
            target,
            junk,
            reject,
            default,
        } => {
            if junk.is_none() && reject.is_none() && !default {
                return Err(UsageError("give --junk, --reject or --default".into()).into());
            }
            let pick = |v: Option<f64>| match (v, default) {
                (_, true) => Threshold::Default,
                (Some(v), _) => Threshold::Set(v),
                (None, _) => Threshold::Keep,
            };
            let (junk, reject) = (pick(*junk), pick(*reject));
            settings(config, target, out, async |service, scope| {
                service.set_spam_thresholds(scope, junk, reject).await
            })
            .await?;
        }
        SpamCommand::Allow(args) | SpamCommand::Block(args) => {
            let list = match command {
                SpamCommand::Allow(_) => SpamList::Allow,
                _ => SpamList::Block,
            };
            settings(config, &args.target, out, async |service, scope| {
                service
                    .change_spam_list(scope, list, &args.entries, args.remove)
                    .await
            })
            .await?;
        }
        SpamCommand::Train {
            ham,
            spam,
            out: file,
        } => {
            let (bytes, summary) = trained(ham, spam)?;
            match file {
                Some(file) => {
                    std::fs::write(file, &bytes)
                        .with_context(|| format!("cannot write {}", file.display()))?;
                    writeln!(out, "{summary}, written to {}", file.display())?;
                }
                None => {
                    let stores = stratus_runtime::Stores::open(config)
                        .await
                        .context("cannot open the stores")?;
                    let key = stratus_core::ids::BlobKey::parse(stratus_pipeline::spam::MODEL_KEY)
                        .expect("a valid key");
                    stores.blobs.put(&key, bytes.into()).await?;
                    writeln!(
                        out,
                        "{summary}, stored as {key}: the gateway and the filter stage use it within five minutes"
                    )?;
                }
            }
        }
        SpamCommand::Evaluate {
            ham,
            spam,
            folds,
            verbose,
        } => {
            let rules = rules(config)?;
            let ham = read_all(ham)?;
            let spam = read_all(spam)?;
            let h: Vec<Named<'_>> = ham.iter().map(|(n, r)| Named { name: n, raw: r }).collect();
            let s: Vec<Named<'_>> = spam
                .iter()
                .map(|(n, r)| Named { name: n, raw: r })
                .collect();
            let now = stratus_core::mailstore::now();
            let eval = train::cross_validate(&h, &s, *folds, &rules, now);
            writeln!(
                out,
                "{folds}-fold cross-validation on {} ham and {} spam:",
                ham.len(),
                spam.len()
            )?;
            writeln!(
                out,
                "  spam caught {} of {}, ham called spam {} of {}",
                eval.true_positives,
                eval.true_positives + eval.false_negatives,
                eval.false_positives,
                eval.false_positives + eval.true_negatives
            )?;
            writeln!(
                out,
                "  precision {:.2} %, recall {:.2} %, false-positive rate {:.2} %",
                eval.precision() * 100.0,
                eval.recall() * 100.0,
                eval.false_positive_rate() * 100.0
            )?;
            // The scoring rate: every message read and scored once with a
            // model trained on all of them, on this one thread.
            let model = train::train(
                ham.iter().map(|(_, m)| m.as_slice()),
                spam.iter().map(|(_, m)| m.as_slice()),
            );
            let policy = Policy::from_rules(&rules);
            let started = Instant::now();
            let mut bytes = 0usize;
            for (_, raw) in ham.iter().chain(spam.iter()) {
                bytes += raw.len();
                let a = Analysis::new(raw);
                let ctx = train::replay_context(&a, now);
                let classifier = Classifier {
                    global: &model,
                    user: None,
                };
                std::hint::black_box(stratus_filter::score(&a, &ctx, &rules, classifier, &policy));
            }
            let secs = started.elapsed().as_secs_f64();
            let n = ham.len() + spam.len();
            writeln!(
                out,
                "  scoring: {n} messages ({:.1} MiB) in {secs:.2} s on one core: {:.0} messages/s",
                bytes as f64 / 1048576.0,
                n as f64 / secs
            )?;
            if *verbose {
                let spam_total = eval.true_positives + eval.false_negatives;
                for t in [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0] {
                    let (fp, fneg) = eval.at_threshold(t);
                    let tp = spam_total - fneg;
                    writeln!(
                        out,
                        "  junk threshold {t:.1}: ham called spam {fp}, spam missed {fneg}, precision {:.2} %, recall {:.2} %",
                        100.0 * tp as f64 / (tp + fp).max(1) as f64,
                        100.0 * tp as f64 / spam_total.max(1) as f64
                    )?;
                }
                for name in &eval.false_positive_names {
                    writeln!(out, "  ham called spam: {name}")?;
                }
                for name in &eval.false_negative_names {
                    writeln!(out, "  spam missed: {name}")?;
                }
            }
        }
        SpamCommand::Rules => {
            let rules = rules(config)?;
            writeln!(
                out,
                "thresholds: junk {:.1}, reject {:.1}",
                rules.thresholds.junk, rules.thresholds.reject
            )?;
            for (name, weight, describe) in rules.describe() {
                let q = if rules.quarantines(&name) {
                    " [quarantine]"
                } else {
                    ""
                };
                writeln!(out, "{name:<28} {weight:>8.2}  {describe}{q}")?;
            }
        }
        SpamCommand::Check { file, model } => {
            let rules = rules(config)?;
            let raw =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let model = match model {
                Some(path) => {
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    Model::from_bytes(&bytes)
                        .map_err(|e| UsageError(format!("{}: {e}", path.display())))?
                }
                None => stratus_filter::shipped_model(),
            };
            let a = Analysis::new(&raw);
            let ctx = stratus_filter::Context {
                mail_from: a.from.as_ref().map(|f| f.0.clone()),
                now: stratus_core::mailstore::now(),
                ..Default::default()
            };
            let classifier = Classifier {
                global: &model,
                user: None,
            };
            let v =
                stratus_filter::score(&a, &ctx, &rules, classifier, &Policy::from_rules(&rules));
            writeln!(out, "action: {}", v.action.as_str())?;
            writeln!(out, "X-Spam-Status: {}", v.status_header())?;
        }
    }
    Ok(())
}

/// Runs one settings operation on the domain or user `target` names and
/// prints the settings it leaves.
async fn settings(
    config: &stratus_runtime::config::Config,
    target: &str,
    out: &mut dyn Write,
    operation: impl AsyncFnOnce(
        &crate::service::Service,
        &stratus_core::spam::Scope,
    ) -> crate::service::ServiceResult<crate::service::SpamInfo>,
) -> anyhow::Result<()> {
    use crate::admin::refused;
    let scope = crate::service::spam_scope(target).map_err(refused)?;
    let service = crate::service::Service::open(config)
        .await
        .map_err(refused)?;
    let info = operation(&service, &scope).await.map_err(refused)?;
    let rules = rules(config)?;
    let threshold = |v: Option<f64>, default: f64| match v {
        Some(v) => format!("{v}"),
        None => format!("default ({default})"),
    };
    let list = |l: &[String]| {
        if l.is_empty() {
            "-".into()
        } else {
            l.join(", ")
        }
    };
    writeln!(out, "{}", info.target)?;
    writeln!(
        out,
        "  junk at:   {}",
        threshold(info.junk, rules.thresholds.junk)
    )?;
    writeln!(
        out,
        "  reject at: {}",
        threshold(info.reject, rules.thresholds.reject)
    )?;
    writeln!(out, "  allow:     {}", list(&info.allow))?;
    writeln!(out, "  block:     {}", list(&info.block))?;
    Ok(())
}

/// A model trained on the messages under `ham` and `spam`, as bytes, and
/// a line that says what went in.
fn trained(ham: &[PathBuf], spam: &[PathBuf]) -> anyhow::Result<(Vec<u8>, String)> {
    let ham = read_all(ham)?;
    let spam = read_all(spam)?;
    let model = train::train(
        ham.iter().map(|(_, m)| m.as_slice()),
        spam.iter().map(|(_, m)| m.as_slice()),
    );
    let bytes = model.to_bytes();
    let summary = format!(
        "trained on {} ham and {} spam: {} tokens, {} bytes",
        ham.len(),
        spam.len(),
        model.len(),
        bytes.len()
    );
    Ok((bytes, summary))
}

/// Every message under `paths` (directories are read one level deep,
/// files that start with `From ` are mbox files), sorted by name.
fn read_all(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for path in paths {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut files = Vec::new();
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))?
            {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    files.push(entry.path());
                }
            }
            files.sort();
        } else {
            files.push(path.clone());
        }
        for file in files {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let name = file.display().to_string();
            if train::is_mbox(&bytes) {
                for (i, m) in train::split_mbox(&bytes).into_iter().enumerate() {
                    out.push((format!("{name}#{i}"), m));
                }
            } else {
                out.push((name, bytes));
            }
        }
    }
    if out.is_empty() {
        return Err(UsageError(format!(
            "no messages in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into());
    }
    Ok(out)
}
