//! The `stratus` command line: argument parsing, the `serve` lifecycle,
//! dispatch to the admin commands, and the error contract shared by all of
//! them — errors print as one `stratus: <message>` line on stderr, exit code
//! 2 for usage and configuration errors, 1 for refused or failed operations.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::info;
use tracing::level_filters::LevelFilter;

use crate::admin::{self, AliasCommand, DomainCommand, UserCommand};
use crate::logging;
use crate::password_input::{self, PasswordInputError};
use crate::server::{self, LISTENERS_FILE, Server};
use stratus_runtime::Stores;
use stratus_runtime::config::{Backend, Config, ConfigError, Flags};

/// How long `serve` waits for open connections after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The command was used the wrong way (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[derive(Debug, Parser)]
#[command(
    name = "stratus",
    version,
    about = "Stratus mail service: SMTP, IMAP, POP3 and HTTP over object storage"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: every enabled listener, until SIGINT or SIGTERM
    Serve(Box<ServeArgs>),
    /// Manage hosted domains
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Manage user accounts
    #[command(subcommand)]
    User(UserCommand),
    /// Manage aliases (several targets each; nested aliases are followed)
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Delete message bodies nothing refers to any more (after the grace
    /// period, STRATUS_SWEEP_GRACE) and the rows of deleted mailboxes, once
    Sweep,
    /// TLS reports (RFC 8460) about outbound TLS, per recipient domain
    #[command(subcommand)]
    Tlsrpt(TlsrptCommand),
    /// Spam filtering: train and measure the classifier, list the rules,
    /// set thresholds and allow/block lists
    #[command(subcommand)]
    Spam(crate::spam::SpamCommand),
    /// Keys for the admin API (/api/v1): create, list, revoke
    #[command(subcommand)]
    Apikey(admin::ApiKeyCommand),
    /// Messages the filter held back: list, show, release, delete
    #[command(subcommand)]
    Quarantine(admin::QuarantineCommand),
    /// Print the admin API's OpenAPI 3.1 document (also served at
    /// /api/v1/openapi.json)
    Openapi,
    /// The newest changes made through the API, the admin pages and this
    /// command line: when, who, from where, what
    Audit {
        /// How many, newest first
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// The outbound queue (messages waiting for another attempt): list,
    /// show, retry now, delete, bounce
    #[command(subcommand)]
    Queue(admin::QueueCommand),
    /// Users' Sieve scripts: put, list, activate, get, del
    #[command(subcommand)]
    Sieve(crate::sieve::SieveCommand),
    /// Away replies for users who do not write Sieve: set, show, off
    #[command(subcommand)]
    Vacation(crate::sieve::VacationCommand),
    /// Distribution lists: add, subscribe, unsubscribe, members, held posts
    #[command(name = "list", subcommand)]
    Lists(crate::lists::ListCommand),
}

#[derive(Debug, Subcommand)]
pub enum TlsrptCommand {
    /// Show the counted TLS sessions per day, recipient domain and policy
    Show {
        /// Only this day (YYYY-MM-DD, UTC)
        #[arg(long)]
        day: Option<String>,
    },
    /// Send the reports now: every finished day not reported yet (what
    /// `serve` does once an hour), or one day's counts so far with --day
    Send {
        /// Report this day (YYYY-MM-DD, UTC; today's counts so far too),
        /// again if it was reported; nothing is marked or deleted
        #[arg(long)]
        day: Option<String>,
    },
}

/// Settings every command takes (they choose and reach the stores). Each
/// also comes from the config file and its `STRATUS_*` variable.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// TOML config file [env: STRATUS_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory, created if missing [env: STRATUS_DATA_DIR] [default: ./data]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Storage backend: local or aws [env: STRATUS_BACKEND] [default: local]
    #[arg(long, global = true, value_name = "BACKEND")]
    pub backend: Option<String>,
    /// Log format: human or json [env: STRATUS_LOG_FORMAT] [default: human]
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Receives before a job is dead-lettered [env: STRATUS_MAX_RECEIVES] [default: 5]
    #[arg(long, global = true, value_name = "N")]
    pub max_receives: Option<String>,
    /// One endpoint URL for S3, DynamoDB and SQS (emulators) [env: STRATUS_AWS_ENDPOINT]
    #[arg(long, global = true, value_name = "URL", help_heading = "AWS backend")]
    pub aws_endpoint: Option<String>,
    /// DynamoDB endpoint URL when it differs from --aws-endpoint [env: STRATUS_DYNAMODB_ENDPOINT]
    #[arg(long, global = true, value_name = "URL", help_heading = "AWS backend")]
    pub dynamodb_endpoint: Option<String>,
    /// [env: AWS_REGION] [default: us-east-1]
    #[arg(
        long,
        global = true,
        value_name = "REGION",
        help_heading = "AWS backend"
    )]
    pub aws_region: Option<String>,
    /// Bucket for message bodies [env: STRATUS_S3_BUCKET]
    #[arg(
        long,
        global = true,
        value_name = "BUCKET",
        help_heading = "AWS backend"
    )]
    pub s3_bucket: Option<String>,
    /// Bucket for the archive [env: STRATUS_ARCHIVE_BUCKET]
    #[arg(
        long,
        global = true,
        value_name = "BUCKET",
        help_heading = "AWS backend"
    )]
    pub archive_bucket: Option<String>,
    /// Index table [env: STRATUS_DYNAMODB_TABLE]
    #[arg(
        long,
        global = true,
        value_name = "TABLE",
        help_heading = "AWS backend"
    )]
    pub dynamodb_table: Option<String>,
    /// Queue name prefix [env: STRATUS_QUEUE_PREFIX] [default: stratus-]
    #[arg(
        long,
        global = true,
        value_name = "PREFIX",
        help_heading = "AWS backend"
    )]
    pub queue_prefix: Option<String>,
}

/// Settings only `serve` uses. An empty listen address turns that listener
/// off; port 0 picks a free port.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// SMTP (MX) [env: STRATUS_SMTP_LISTEN] [default: 127.0.0.1:2525]
    #[arg(long, value_name = "IP:PORT")]
    pub smtp_listen: Option<String>,
    /// Submission, STARTTLS [env: STRATUS_SUBMISSION_LISTEN] [default: 127.0.0.1:2587]
    #[arg(long, value_name = "IP:PORT")]
    pub submission_listen: Option<String>,
    /// Submission, implicit TLS [env: STRATUS_SUBMISSIONS_LISTEN] [default: 127.0.0.1:2465]
    #[arg(long, value_name = "IP:PORT")]
    pub submissions_listen: Option<String>,
    /// IMAP [env: STRATUS_IMAP_LISTEN] [default: 127.0.0.1:1143]
    #[arg(long, value_name = "IP:PORT")]
    pub imap_listen: Option<String>,
    /// IMAP, implicit TLS [env: STRATUS_IMAPS_LISTEN] [default: 127.0.0.1:1993]
    #[arg(long, value_name = "IP:PORT")]
    pub imaps_listen: Option<String>,
    /// POP3 [env: STRATUS_POP3_LISTEN] [default: 127.0.0.1:1110]
    #[arg(long, value_name = "IP:PORT")]
    pub pop3_listen: Option<String>,
    /// POP3, implicit TLS [env: STRATUS_POP3S_LISTEN] [default: 127.0.0.1:1995]
    #[arg(long, value_name = "IP:PORT")]
    pub pop3s_listen: Option<String>,
    /// ManageSieve [env: STRATUS_MANAGESIEVE_LISTEN] [default: 127.0.0.1:4190]
    #[arg(long, value_name = "IP:PORT")]
    pub managesieve_listen: Option<String>,
    /// Webmail, admin API, health [env: STRATUS_HTTP_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "IP:PORT")]
    pub http_listen: Option<String>,
    /// Our host name in greetings [env: STRATUS_HOSTNAME] [default: the machine's]
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// DNS server for all lookups [env: STRATUS_DNS_RESOLVER] [default: the system's]
    #[arg(long, value_name = "IP:PORT")]
    pub dns_resolver: Option<String>,
    /// Port of remote MX hosts [env: STRATUS_OUTBOUND_SMTP_PORT] [default: 25]
    #[arg(long, value_name = "PORT")]
    pub outbound_smtp_port: Option<String>,
    /// TLS certificate chain, PEM [env: STRATUS_TLS_CERT] [default: self-signed, in DATA_DIR/tls]
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub tls_cert: Option<String>,
    /// TLS private key, PEM [env: STRATUS_TLS_KEY]
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub tls_key: Option<String>,
    /// More certificates chosen by SNI: one subdirectory each with
    /// fullchain.pem and privkey.pem (certbot's live/) [env: STRATUS_TLS_CERT_DIR]
    #[arg(long, value_name = "DIR", help_heading = "TLS")]
    pub tls_cert_dir: Option<String>,
    /// Largest message accepted, e.g. 50M [env: STRATUS_MAX_MESSAGE_SIZE] [default: 50M]
    #[arg(long, value_name = "SIZE", help_heading = "Limits")]
    pub max_message_size: Option<String>,
    /// Recipients per message [env: STRATUS_SMTP_MAX_RECIPIENTS] [default: 100]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub smtp_max_recipients: Option<String>,
    /// Most Received headers a message may carry [env: STRATUS_SMTP_MAX_HOPS] [default: 100]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub smtp_max_hops: Option<String>,
    /// Client errors before an SMTP session is closed [env: STRATUS_SMTP_MAX_ERRORS] [default: 10]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub smtp_max_errors: Option<String>,
    /// Seconds an SMTP client may stay silent [env: STRATUS_SMTP_IDLE_TIMEOUT] [default: 300]
    #[arg(long, value_name = "SECONDS", help_heading = "Limits")]
    pub smtp_idle_timeout: Option<String>,
    /// Concurrent connections per client address and listener [env: STRATUS_MAX_CONNECTIONS_PER_IP] [default: 500]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_connections_per_ip: Option<String>,
    /// Logged-in IMAP sessions per user and client address [env: STRATUS_MAX_CONNECTIONS_PER_USER_IP] [default: 10]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_connections_per_user_ip: Option<String>,
    /// Allow POP3 passwords without TLS from non-loopback clients [env: STRATUS_POP3_ALLOW_PLAINTEXT] [default: false]
    #[arg(long, value_name = "BOOL", help_heading = "Limits")]
    pub pop3_allow_plaintext: Option<String>,
    /// Seconds a POP3 client may stay silent [env: STRATUS_POP3_IDLE_TIMEOUT] [default: 600]
    #[arg(long, value_name = "SECONDS", help_heading = "Limits")]
    pub pop3_idle_timeout: Option<String>,
}

impl Cli {
    /// The settings given on the command line.
    pub fn flags(&self) -> Flags {
        let g = &self.global;
        let mut flags = Flags::default();
        flags.config = g.config.clone();
        flags
            .set_opt("data_dir", g.data_dir.as_ref())
            .set_opt("backend", g.backend.as_ref())
            .set_opt("log_format", g.log_format.as_ref())
            .set_opt("max_receives", g.max_receives.as_ref())
            .set_opt("aws_endpoint", g.aws_endpoint.as_ref())
            .set_opt("dynamodb_endpoint", g.dynamodb_endpoint.as_ref())
            .set_opt("aws_region", g.aws_region.as_ref())
            .set_opt("s3_bucket", g.s3_bucket.as_ref())
            .set_opt("archive_bucket", g.archive_bucket.as_ref())
            .set_opt("dynamodb_table", g.dynamodb_table.as_ref())
            .set_opt("queue_prefix", g.queue_prefix.as_ref());
        if let Command::Serve(s) = &self.command {
            flags
                .set_opt("smtp_listen", s.smtp_listen.as_ref())
                .set_opt("submission_listen", s.submission_listen.as_ref())
                .set_opt("submissions_listen", s.submissions_listen.as_ref())
                .set_opt("imap_listen", s.imap_listen.as_ref())
                .set_opt("imaps_listen", s.imaps_listen.as_ref())
                .set_opt("pop3_listen", s.pop3_listen.as_ref())
                .set_opt("pop3s_listen", s.pop3s_listen.as_ref())
                .set_opt("managesieve_listen", s.managesieve_listen.as_ref())
                .set_opt("http_listen", s.http_listen.as_ref())
                .set_opt("hostname", s.hostname.as_ref())
                .set_opt("dns_resolver", s.dns_resolver.as_ref())
                .set_opt("outbound_smtp_port", s.outbound_smtp_port.as_ref())
                .set_opt("tls_cert", s.tls_cert.as_ref())
                .set_opt("tls_key", s.tls_key.as_ref())
                .set_opt("tls_cert_dir", s.tls_cert_dir.as_ref())
                .set_opt("max_message_size", s.max_message_size.as_ref())
                .set_opt("smtp_max_recipients", s.smtp_max_recipients.as_ref())
                .set_opt("smtp_max_hops", s.smtp_max_hops.as_ref())
                .set_opt("smtp_max_errors", s.smtp_max_errors.as_ref())
                .set_opt("smtp_idle_timeout", s.smtp_idle_timeout.as_ref())
                .set_opt("max_connections_per_ip", s.max_connections_per_ip.as_ref())
                .set_opt(
                    "max_connections_per_user_ip",
                    s.max_connections_per_user_ip.as_ref(),
                )
                .set_opt("pop3_allow_plaintext", s.pop3_allow_plaintext.as_ref())
                .set_opt("pop3_idle_timeout", s.pop3_idle_timeout.as_ref());
        }
        flags
    }
}

/// Parses the command line, runs the command, prints any error and returns
/// the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version also come here, with exit code 0.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stratus: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// 2 for usage and configuration errors, 1 for everything else.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    let usage = error.chain().any(|cause| {
        cause.is::<ConfigError>()
            || cause.is::<UsageError>()
            || cause
                .downcast_ref::<PasswordInputError>()
                .is_some_and(PasswordInputError::is_usage)
    });
    if usage { 2 } else { 1 }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(&cli.flags())?;
    let audited = crate::cli_audit::entry(&cli.command);
    let result = run_command(cli.command, &config);
    if let (Ok(()), Some(entry)) = (&result, audited) {
        audit(&config, &entry);
    }
    result
}

/// Writes a change made on the command line to the audit log; a failure
/// is reported, but the change is made and the command worked.
fn audit(config: &Config, entry: &crate::cli_audit::Entry) {
    let written = admin_runtime().and_then(|rt| {
        rt.block_on(async {
            let service = crate::service::Service::open(config).await?;
            service
                .audit(
                    &crate::cli_audit::who(),
                    None,
                    entry.action,
                    &entry.target,
                    entry.domain().as_ref(),
                )
                .await?;
            anyhow::Ok(())
        })
    });
    if let Err(e) = written {
        eprintln!("warning: done, but the audit log could not be written: {e:#}");
    }
}

fn run_command(command: Command, config: &Config) -> anyhow::Result<()> {
    let config = config.clone();
    match command {
        Command::Serve(_) => {
            logging::init(config.log_format, LevelFilter::INFO);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the runtime")?;
            let result = runtime.block_on(serve(config));
            // Connections cut off after the grace period must not hold the exit.
            runtime.shutdown_timeout(Duration::from_secs(1));
            result
        }
        Command::Domain(command) => {
            logging::init(config.log_format, LevelFilter::WARN);
            admin_runtime()?.block_on(admin::domain(&command, &config, &mut io::stdout().lock()))
        }
        Command::Alias(command) => {
            logging::init(config.log_format, LevelFilter::WARN);
            admin_runtime()?.block_on(admin::alias(&command, &config, &mut io::stdout().lock()))
        }
        Command::Lists(command) => {
            logging::init(config.log_format, LevelFilter::WARN);
            admin_runtime()?.block_on(crate::lists::list(
                &command,
                &config,
                &mut io::stdout().lock(),
            ))
        }
        Command::Sweep => {
            logging::init(config.log_format, LevelFilter::WARN);
            admin_runtime()?.block_on(admin::sweep(&config, &mut io::stdout().lock()))
        }
        Command::Tlsrpt(command) => {
            logging::init(config.log_format, LevelFilter::WARN);
            admin_runtime()?.block_on(admin::tlsrpt(&command, &config, &mut io::stdout().lock()))
        }
        Command::Apikey(command) => {
            logging::init(config.log_format, LevelFilter::WARN);
            admin_runtime()?.block_on(admin::apikey(&command, &config, &mut io::stdout().lock()))
        }
        Command::Queue(command) => {
            logging::init(config.log_format, LevelFilter::WARN);
            admin_runtime()?.block_on(admin::queue(&command, &config, &mut io::stdout().lock()))
        }
        Command::Audit { limit } => {
            logging::init(config.log_format, LevelFilter::WARN);
            admin_runtime()?.block_on(admin::audit_log(limit, &config, &mut io::stdout().lock()))
        }
        Command::Openapi => {
            use std::io::Write as _;
            writeln!(io::stdout().lock(), "{}", crate::http::openapi::document())?;
            Ok(())
        }
        Command::Quarantine(command) => {
            logging::init(config.log_format, LevelFilter::WARN);
            admin_runtime()?.block_on(admin::quarantine(
                &command,
                &config,
                &mut io::stdout().lock(),
            ))
        }
        Command::Vacation(command) => {
            logging::init(config.log_format, LevelFilter::WARN);
            admin_runtime()?.block_on(crate::sieve::vacation(
                &command,
                &config,
                &mut io::stdout().lock(),
            ))
        }
        Command::Sieve(command) => {
            logging::init(config.log_format, LevelFilter::WARN);
            admin_runtime()?.block_on(crate::sieve::run(
                &command,
                &config,
                &mut io::stdout().lock(),
            ))
        }
        Command::Spam(command) => {
            logging::init(config.log_format, LevelFilter::WARN);
            admin_runtime()?.block_on(crate::spam::run(
                &command,
                &config,
                &mut io::stdout().lock(),
            ))
        }
        Command::User(command) => {
            logging::init(config.log_format, LevelFilter::WARN);
            let mut password =
                |account: &str, from_stdin: bool| password_input::new_password(account, from_stdin);
            admin_runtime()?.block_on(admin::user(
                &command,
                &config,
                &mut io::stdout().lock(),
                &mut password,
            ))
        }
    }
}

fn admin_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// SIGINT and SIGTERM, registered before anything slow starts so that a
/// signal during start-up is not lost.
struct ShutdownSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// `stratus serve`: open the stores, bind every listener, publish
/// `listeners.json`, serve until a signal, then shut down gracefully.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let mut signals = ShutdownSignals::install()?;
    let stores = Stores::open(&config)
        .await
        .context("cannot open the stores")?;
    if let Backend::Aws(_) = config.backend {
        // listeners.json still lives in the data directory.
        stratus_store_local::prepare_data_dir(&config.data_dir)?;
    }
    // Bound first (and started below): the stages share its spam engine.
    let server = Server::bind(&config, stores.clone()).await?;
    let (stop_stages, stages_stopped) = tokio::sync::watch::channel(false);
    let stage_tasks = if config.run_stages {
        let mut settings = stratus_runtime::stage_settings(&config, &stores)?;
        settings.spam = server.spam_engine();
        stratus_pipeline::runner::spawn_all(
            stores.queue.clone(),
            stores.ports(),
            settings,
            stages_stopped,
        )
    } else {
        Vec::new()
    };
    if config.run_stages
        && let Some(interval) = config.sweep_interval
    {
        tokio::spawn(sweep_every(
            interval,
            stratus_runtime::root::sweep_settings(&config),
            stores.clone(),
            stop_stages.subscribe(),
        ));
    }
    if config.run_stages {
        tokio::spawn(tls_reports_every(
            TLS_REPORT_CHECK,
            config.clone(),
            stores.clone(),
            stop_stages.subscribe(),
        ));
    }
    let running = server.start();
    for (role, addr) in running.addresses() {
        info!(role = role.name(), %addr, "listening");
    }
    if running.addresses().is_empty() {
        tracing::warn!("every listener is turned off; serving nothing");
    }
    let file =
        server::write_listeners_file(&config.data_dir, running.addresses()).with_context(|| {
            format!(
                "cannot write {LISTENERS_FILE} in {}",
                config.data_dir.display()
            )
        })?;
    info!(
        backend = config.backend.name(),
        hostname = %config.hostname,
        listeners = %file.display(),
        roles = running.addresses().len(),
        "ready"
    );

    let signal = signals.recv().await;
    info!(signal, "shutting down: no longer accepting connections");
    let cut_off = running.shutdown(SHUTDOWN_GRACE).await;
    // Stages finish the job in hand; an unfinished one returns to its queue.
    let _ = stop_stages.send(true);
    // One grace period for all of them, not one each.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    for task in stage_tasks {
        let _ = tokio::time::timeout_at(deadline, task).await;
    }
    match std::fs::remove_file(&file) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(error = %e, file = %file.display(), "cannot remove the listeners file")
        }
    }
    info!(cut_off, "stopped");
    Ok(())
}

/// How often `serve` looks for finished days to send TLS reports about.
const TLS_REPORT_CHECK: Duration = Duration::from_secs(3600);

/// Sends the TLS reports that are due every `interval` (the first time a
/// minute after start) until `stop` says so.
async fn tls_reports_every(
    interval: Duration,
    config: Config,
    stores: Stores,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut wait = Duration::from_secs(60).min(interval);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        wait = interval;
        let now = stratus_core::mailstore::now();
        let which = stratus_pipeline::tlsrpt::Which::Due;
        match stratus_runtime::root::send_tls_reports(&config, &stores, which, now).await {
            Ok(run) if run.sent.is_empty() => {}
            Ok(run) => info!(reports = run.sent.len(), "TLS reports queued"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot send TLS reports; the next run tries again")
            }
        }
    }
}

/// Runs the sweeper every `interval` until `stop` says so.
async fn sweep_every(
    interval: Duration,
    settings: stratus_core::sweep::SweepSettings,
    stores: Stores,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let now = stratus_core::mailstore::now();
        match stratus_core::sweep::sweep(&stores.index, &stores.blobs, settings, now).await {
            Ok(r) => info!(
                entries = r.entries,
                blobs = r.blobs,
                marked = r.blobs_marked,
                deleted = r.blobs_deleted,
                bytes_freed = r.bytes_freed,
                mailboxes = r.mailboxes_reclaimed,
                rows = r.rows_deleted,
                "swept"
            ),
            Err(e) => tracing::warn!(error = %e, "sweep failed; the next one tries again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use stratus_runtime::role::Role;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("stratus").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn operator_contract_shapes_parse() {
        for args in [
            &["serve"][..],
            &[
                "serve",
                "--config",
                "/etc/stratus.toml",
                "--data-dir",
                "/var/lib/stratus",
            ],
            &["serve", "--backend", "aws"],
            &[
                "serve",
                "--smtp-listen",
                "",
                "--http-listen",
                "0.0.0.0:0",
                "--log-format",
                "json",
            ],
            &["domain", "add", "example.com"],
            &["domain", "list"],
            &["domain", "del", "example.com"],
            &[
                "user",
                "add",
                "alice@example.com",
                "--password-stdin",
                "--quota",
                "1G",
            ],
            &["user", "list"],
            &["user", "list", "example.com"],
            &["user", "del", "alice@example.com"],
            &["user", "passwd", "alice@example.com", "--password-stdin"],
            &["--data-dir", "d", "user", "list"],
            &["user", "list", "--data-dir", "d"],
        ] {
            assert!(
                parse(args).is_ok(),
                "{args:?}: {}",
                parse(args).unwrap_err()
            );
        }
    }

    #[test]
    fn flags_reach_the_configuration() {
        let cli = parse(&[
            "serve",
            "--data-dir",
            "/d",
            "--backend",
            "local",
            "--smtp-listen",
            "",
            "--imap-listen",
            "127.0.0.1:0",
            "--max-message-size",
            "10M",
            "--smtp-idle-timeout",
            "30",
            "--max-connections-per-ip",
            "3",
        ])
        .unwrap();
        let config = Config::from_sources(&cli.flags(), &|_| None).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/d"));
        assert_eq!(config.smtp.max_message_size, 10 << 20);
        assert_eq!(config.smtp.idle_timeout, Duration::from_secs(30));
        assert_eq!(config.max_connections_per_ip, 3);
        assert_eq!(config.listen(Role::Smtp), None);
        assert_eq!(
            config.listen(Role::Imap),
            Some("127.0.0.1:0".parse().unwrap())
        );

        let cli = parse(&[
            "user",
            "add",
            "a@b.example",
            "--quota",
            "500M",
            "--data-dir",
            "/x",
        ])
        .unwrap();
        let Command::User(UserCommand::Add {
            quota,
            password_stdin,
            ..
        }) = &cli.command
        else {
            panic!("user add")
        };
        assert_eq!((*quota, *password_stdin), (Some(500 << 20), false));
        assert_eq!(
            Config::from_sources(&cli.flags(), &|_| None)
                .unwrap()
                .data_dir,
            PathBuf::from("/x")
        );
    }

    #[test]
    fn usage_errors_exit_with_2() {
        let err = parse(&["user", "add", "a@b.example", "--quota", "lots"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("not a size"), "{err}");
        assert_eq!(
            parse(&["domain", "list", "extra"]).unwrap_err().exit_code(),
            2
        );
        assert_eq!(parse(&["domain", "add"]).unwrap_err().exit_code(), 2);

        let config_error = anyhow::Error::new(ConfigError::Invalid {
            setting: "x".into(),
            reason: "y".into(),
        });
        assert_eq!(exit_code(&config_error), 2);
        assert_eq!(
            exit_code(&anyhow::Error::new(UsageError("bad".into())).context("while parsing")),
            2
        );
        assert_eq!(
            exit_code(&anyhow::Error::new(PasswordInputError::NotATerminal)),
            2
        );
        assert_eq!(
            exit_code(&anyhow::Error::new(PasswordInputError::Mismatch)),
            1
        );
        assert_eq!(
            exit_code(&anyhow::anyhow!("domain example.com already exists")),
            1
        );
    }
}
