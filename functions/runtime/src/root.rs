//! The composition root: the backend named in the [`Config`] is turned
//! into the ports, once, and everything else sees only `Arc<dyn
//! BlobStore>`, `Arc<dyn Index>` and `Arc<dyn Queue>`; the stages' settings
//! (the outbound transport among them) are built here too, the same way
//! for `stratus serve` and for a Lambda function.

use std::sync::Arc;

use stratus_pipeline::spam::SpamEngine;

use stratus_core::accounts::Accounts;
use stratus_core::mailstore::Mailstore;
#[cfg(feature = "embedded")]
use stratus_core::ports::InProcessFeed;
use stratus_core::ports::{ChangeFeed, PollingFeed};
use stratus_core::{BlobStore, Index, Queue, StoreError};
use stratus_pipeline::Settings;
use stratus_store_aws::AwsStores;
#[cfg(feature = "embedded")]
use stratus_store_local::LocalStores;

use crate::config::{Backend, Config};

/// The three ports, whichever backend implements them.
#[derive(Debug, Clone)]
pub struct Stores {
    pub blobs: Arc<dyn BlobStore>,
    /// The compliance journal.
    pub archive: Arc<dyn BlobStore>,
    pub index: Arc<dyn Index>,
    pub queue: Arc<dyn Queue>,
    /// "Mailbox X changed", for IMAP IDLE: pushed in-process on the
    /// embedded backend; on AWS, pushed for changes made here and polled
    /// for the rest.
    pub changes: Arc<dyn ChangeFeed>,
}

impl Stores {
    /// Opens the backend the configuration names: the data directory
    /// (created if missing; its parent must exist) or the AWS resources.
    pub async fn open(config: &Config) -> Result<Stores, StoreError> {
        match &config.backend {
            #[cfg(not(feature = "embedded"))]
            Backend::Local => Err(StoreError::permanent(
                "open stores",
                "this build has no embedded backend (stratus-runtime without its `embedded` feature): set STRATUS_BACKEND=aws",
            )),
            #[cfg(feature = "embedded")]
            Backend::Local => {
                let dir = config.data_dir.clone();
                let max_receives = config.max_receives;
                // Opening creates directories and SQLite schemas: blocking work.
                let local =
                    tokio::task::spawn_blocking(move || LocalStores::open(&dir, max_receives))
                        .await
                        .map_err(|e| StoreError::permanent("open local stores", e))??;
                Ok(Stores::from_local(local))
            }
            Backend::Aws(settings) => {
                let aws = AwsStores::connect(settings).await?;
                let (blobs, archive, index) = crate::measured::measured(
                    "aws",
                    Arc::new(aws.blobs),
                    Arc::new(aws.archive),
                    Arc::new(aws.index),
                );
                Ok(Stores {
                    blobs,
                    archive,
                    index,
                    queue: Arc::new(aws.queue),
                    changes: Arc::new(PollingFeed::new(config.imap.poll_interval)),
                })
            }
        }
    }

    /// The embedded adapters, with the in-process change feed.
    #[cfg(feature = "embedded")]
    pub fn from_local(local: LocalStores) -> Stores {
        let (blobs, archive, index) = crate::measured::measured(
            "local",
            Arc::new(local.blobs),
            Arc::new(local.archive),
            Arc::new(local.index),
        );
        Stores {
            blobs,
            archive,
            index,
            queue: Arc::new(local.queue),
            changes: Arc::new(InProcessFeed::default()),
        }
    }

    /// The ports the pipeline stages use.
    pub fn ports(&self) -> stratus_pipeline::Ports {
        stratus_pipeline::Ports {
            blobs: self.blobs.clone(),
            archive: self.archive.clone(),
            index: self.index.clone(),
            changes: self.changes.clone(),
        }
    }

    /// Message entries in mailboxes over these stores.
    pub fn mailstore(&self) -> Mailstore {
        Mailstore::new(self.index.clone(), self.blobs.clone(), self.changes.clone())
    }

    /// Domains, users and mailboxes over this index.
    pub fn accounts(&self) -> Accounts {
        Accounts::new(self.index.clone())
    }
}

/// Why the stages' settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("cannot set up outbound delivery: {0}")]
    Transport(String),
    #[error("spam rules: {0}")]
    SpamRules(String),
}

/// The spam engine of the configuration: the rules file named by
/// `STRATUS_SPAM_RULES` or the shipped one; `None` when filtering is off.
pub fn spam_engine(config: &Config) -> Result<Option<Arc<SpamEngine>>, RootError> {
    if !config.spam_filter {
        return Ok(None);
    }
    Ok(Some(Arc::new(SpamEngine::new(spam_rules(config)?))))
}

/// The rules file named by `STRATUS_SPAM_RULES`, or the shipped one.
pub fn spam_rules(config: &Config) -> Result<stratus_filter::Rules, RootError> {
    Ok(match &config.spam_rules {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                RootError::SpamRules(format!("cannot read {}: {e}", path.display()))
            })?;
            stratus_filter::Rules::parse(&text)
                .map_err(|e| RootError::SpamRules(format!("{}: {e}", path.display())))?
        }
        None => stratus_filter::Rules::shipped(),
    })
}

/// The settings of the pipeline stages, from the configuration: host name,
/// visibility, the send stage's timing and its transport (MX lookup and
/// SMTP out, DKIM-signing with the keys in `stores`' index). Chaining is on
/// for the embedded backend; on AWS every stage is its own function.
pub fn stage_settings(config: &Config, stores: &Stores) -> Result<Settings, RootError> {
    let transport = stratus_outbound::SmtpTransport::new(
        config.dns_resolver,
        config.outbound_smtp_port,
        &config.hostname,
    )
    .map_err(|e| RootError::Transport(e.to_string()))?
    .with_dkim(stores.index.clone())
    .with_tls_reports(stores.index.clone())
    .with_mta_sts(
        config.mta_sts_port,
        config.tls_extra_ca.as_deref(),
        Some(stores.index.clone()),
    )
    .map_err(RootError::Transport)?;
    Ok(Settings {
        hostname: config.hostname.clone(),
        visibility: config.stage_visibility,
        spam: spam_engine(config)?,
        quarantine_days: config.quarantine_days,
        transport: Some(Arc::new(transport)),
        send_lifetime: config.send_lifetime,
        first_retry: config.send_first_retry,
        delay_warning: config.send_delay_warning,
        max_per_hour: config.submission_max_per_hour,
        chain: matches!(config.backend, Backend::Local),
    })
}

/// How the sweeper decides what may go: the configured grace, and the send
/// lifetime, during which queue jobs may still read a body.
pub fn sweep_settings(config: &Config) -> stratus_core::sweep::SweepSettings {
    stratus_core::sweep::SweepSettings {
        grace: config.sweep_grace,
        in_flight: config.send_lifetime,
        keep_changes: config.changes_retention,
    }
}

/// What sending TLS reports needs of the network: the send stage's
/// resolver for `_smtp._tls` records, and verified HTTPS for `https:`
/// report addresses.
struct ReportNet {
    dns: stratus_outbound::dns::SecureDns,
    tls: tokio_rustls::TlsConnector,
}

#[async_trait::async_trait]
impl stratus_pipeline::tlsrpt::ReportNet for ReportNet {
    async fn txt(&self, name: &str) -> Result<Vec<String>, String> {
        self.dns.txt(name).await
    }

    async fn post(&self, url: &str, gzipped: Vec<u8>) -> Result<(), String> {
        stratus_outbound::https::post_report(url, gzipped, &self.dns, &self.tls).await
    }
}

/// Sends the TLS reports (RFC 8460) `which` asks for, as of `now`:
/// queued for the route stage, whoever runs it (`stratus tlsrpt send`,
/// `serve` once an hour, the scheduled function on AWS).
pub async fn send_tls_reports(
    config: &Config,
    stores: &Stores,
    which: stratus_pipeline::tlsrpt::Which,
    now: i64,
) -> Result<stratus_pipeline::tlsrpt::Run, String> {
    let settings = Settings::new(config.hostname.clone());
    let net = ReportNet {
        dns: stratus_outbound::dns::SecureDns::new(config.dns_resolver)?,
        tls: stratus_outbound::verifying_tls(config.tls_extra_ca.as_deref())?,
    };
    stratus_pipeline::tlsrpt::send_reports(
        &stores.ports(),
        stores.queue.as_ref(),
        &settings,
        &net,
        which,
        now,
    )
    .await
    .map_err(|e| e.to_string())
}
