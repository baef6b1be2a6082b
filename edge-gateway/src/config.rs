//! Typed configuration: the one place where settings are read.
//!
//! Every setting has a config-file key, an environment variable and a flag,
//! derived from one table ([`SETTINGS`]). Sources apply in increasing
//! priority: built-in defaults, the TOML config file (`--config FILE` or
//! `STRATUS_CONFIG`), `STRATUS_*` environment variables, command-line flags.
//! Every source yields text; the winning text of each setting is then parsed
//! once, so a bad value is reported the same way wherever it came from, with
//! the setting's name and its source.
//!
//! The environment is passed in as a function ([`Env`]) so tests never touch
//! the process environment.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use stratus_store_aws::AwsSettings;

use crate::role::Role;
use crate::size::parse_size;

/// Reads one environment variable; `None` when unset.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment. A value that is not UTF-8 is passed on lossily,
/// so it fails validation with a visible replacement character instead of
/// being silently ignored.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// Default bound on concurrent connections per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;

/// The limits of an SMTP session, in one place: the server enforces them,
/// the session announces `max_message_size` in EHLO, and tests shrink them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpLimits {
    /// Largest message accepted, in bytes as received (after dot-unstuffing,
    /// before our `Received:` line): announced as `SIZE`, checked at MAIL
    /// and while the message streams in.
    pub max_message_size: u64,
    /// Recipients accepted per message; the rest get 452 4.5.3.
    pub max_recipients: usize,
    /// Most `Received:` headers a message may carry (RFC 5321 §6.3 loop
    /// detection); more are refused with 554 5.4.6.
    pub max_hops: usize,
    /// Client errors (unknown or malformed commands, refused recipients)
    /// before the session is closed with 421 4.7.0.
    pub max_errors: u32,
    /// How long the server waits for the client to send anything.
    pub idle_timeout: Duration,
    /// Longest command line, CRLF included (RFC 5321 §4.5.3.1.4 asks for
    /// at least 512; extensions need more).
    pub max_line: usize,
    /// Whether a DMARC failure under `p=reject` is refused (550 5.7.1) or
    /// accepted and left to the filter.
    pub reject_dmarc_failures: bool,
}

impl Default for SmtpLimits {
    fn default() -> Self {
        SmtpLimits {
            max_message_size: 50 << 20,
            max_recipients: 100,
            max_hops: 100,
            max_errors: 10,
            idle_timeout: Duration::from_secs(300),
            max_line: 4096,
            reject_dmarc_failures: true,
        }
    }
}

/// The settings of IMAP sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapSettings {
    /// The autologout timer (RFC 9051 §5.4: at least 30 minutes).
    pub idle_timeout: Duration,
    /// Accept LOGIN and AUTHENTICATE PLAIN without TLS from any client,
    /// not only from loopback.
    pub allow_plaintext: bool,
    /// How often a session looks for changes other sessions and
    /// processes made (during IDLE, and at most this often otherwise).
    pub poll_interval: Duration,
    /// Malformed or refused commands in a row before the session is
    /// told BYE.
    pub max_errors: u32,
    /// Longest command line, CRLF included (literals are counted apart).
    pub max_line: usize,
    /// Largest command with its literals, APPEND aside (APPEND takes up
    /// to the message size limit, APPENDLIMIT).
    pub max_command: usize,
}

impl Default for ImapSettings {
    fn default() -> Self {
        ImapSettings {
            idle_timeout: Duration::from_secs(30 * 60),
            allow_plaintext: false,
            poll_interval: Duration::from_millis(500),
            max_errors: 20,
            max_line: 64 * 1024,
            max_command: 1024 * 1024,
        }
    }
}

/// The settings of POP3 sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pop3Settings {
    /// How long the server waits for the client (RFC 1939 §3: at least
    /// ten minutes).
    pub idle_timeout: Duration,
    /// Accept USER/PASS and AUTH PLAIN without TLS from any client, not
    /// only from loopback.
    pub allow_plaintext: bool,
    /// Client errors before the session is closed.
    pub max_errors: u32,
    /// Longest command line, CRLF included (RFC 2449 allows 255 octets;
    /// SASL responses need more).
    pub max_line: usize,
    /// The maildrop lease: how long it lasts without renewal, and how
    /// often a live session renews it.
    pub lease_ttl: Duration,
    pub lease_renew: Duration,
}

impl Default for Pop3Settings {
    fn default() -> Self {
        Pop3Settings {
            idle_timeout: Duration::from_secs(600),
            allow_plaintext: false,
            max_errors: 10,
            max_line: 1024,
            lease_ttl: Duration::from_secs(60),
            lease_renew: Duration::from_secs(20),
        }
    }
}

/// The certificate the TLS listeners present, as PEM files. Both absent:
/// a self-signed certificate is generated into the data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// How a setting is defaulted.
#[derive(Debug, Clone, Copy)]
enum DefaultValue {
    Value(&'static str),
    /// The machine's host name, looked up only when nothing else set it.
    HostName,
}

/// One setting: its config-file key and environment variable. The flag is
/// `--` followed by the key with `_` turned into `-`.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub key: &'static str,
    pub env: &'static str,
    default: DefaultValue,
}

const fn setting(key: &'static str, env: &'static str, default: &'static str) -> Setting {
    Setting {
        key,
        env,
        default: DefaultValue::Value(default),
    }
}

/// Every setting. An empty default means "off" or "not set".
pub const SETTINGS: &[Setting] = &[
    setting("data_dir", "STRATUS_DATA_DIR", "./data"),
    setting("backend", "STRATUS_BACKEND", "local"),
    setting("smtp_listen", "STRATUS_SMTP_LISTEN", "127.0.0.1:2525"),
    setting(
        "submission_listen",
        "STRATUS_SUBMISSION_LISTEN",
        "127.0.0.1:2587",
    ),
    setting(
        "submissions_listen",
        "STRATUS_SUBMISSIONS_LISTEN",
        "127.0.0.1:2465",
    ),
    setting("imap_listen", "STRATUS_IMAP_LISTEN", "127.0.0.1:1143"),
    setting("imaps_listen", "STRATUS_IMAPS_LISTEN", "127.0.0.1:1993"),
    setting("pop3_listen", "STRATUS_POP3_LISTEN", "127.0.0.1:1110"),
    setting("pop3s_listen", "STRATUS_POP3S_LISTEN", "127.0.0.1:1995"),
    setting("http_listen", "STRATUS_HTTP_LISTEN", "127.0.0.1:8080"),
    Setting {
        key: "hostname",
        env: "STRATUS_HOSTNAME",
        default: DefaultValue::HostName,
    },
    setting("dns_resolver", "STRATUS_DNS_RESOLVER", ""),
    setting("outbound_smtp_port", "STRATUS_OUTBOUND_SMTP_PORT", "25"),
    setting("outbound_addresses", "STRATUS_OUTBOUND_ADDRESSES", ""),
    setting("log_format", "STRATUS_LOG_FORMAT", "human"),
    setting("max_receives", "STRATUS_MAX_RECEIVES", "5"),
    setting("run_stages", "STRATUS_RUN_STAGES", "true"),
    setting("stage_visibility", "STRATUS_STAGE_VISIBILITY", "60"),
    setting("aws_endpoint", "STRATUS_AWS_ENDPOINT", ""),
    setting("dynamodb_endpoint", "STRATUS_DYNAMODB_ENDPOINT", ""),
    setting("aws_region", "AWS_REGION", "us-east-1"),
    setting("s3_bucket", "STRATUS_S3_BUCKET", ""),
    setting("archive_bucket", "STRATUS_ARCHIVE_BUCKET", ""),
    setting("dynamodb_table", "STRATUS_DYNAMODB_TABLE", ""),
    setting("queue_prefix", "STRATUS_QUEUE_PREFIX", "stratus-"),
    setting("tls_cert", "STRATUS_TLS_CERT", ""),
    setting("tls_key", "STRATUS_TLS_KEY", ""),
    setting("max_message_size", "STRATUS_MAX_MESSAGE_SIZE", "50M"),
    setting("smtp_max_recipients", "STRATUS_SMTP_MAX_RECIPIENTS", "100"),
    setting("smtp_max_hops", "STRATUS_SMTP_MAX_HOPS", "100"),
    setting("smtp_max_errors", "STRATUS_SMTP_MAX_ERRORS", "10"),
    setting("smtp_idle_timeout", "STRATUS_SMTP_IDLE_TIMEOUT", "300"),
    setting(
        "max_connections_per_ip",
        "STRATUS_MAX_CONNECTIONS_PER_IP",
        "20",
    ),
    setting(
        "pop3_allow_plaintext",
        "STRATUS_POP3_ALLOW_PLAINTEXT",
        "false",
    ),
    setting("pop3_idle_timeout", "STRATUS_POP3_IDLE_TIMEOUT", "600"),
    setting(
        "imap_allow_plaintext",
        "STRATUS_IMAP_ALLOW_PLAINTEXT",
        "false",
    ),
    setting("imap_idle_timeout", "STRATUS_IMAP_IDLE_TIMEOUT", "30m"),
    setting("imap_poll_interval", "STRATUS_IMAP_POLL_INTERVAL", "500ms"),
    setting("send_lifetime", "STRATUS_SEND_LIFETIME", "5d"),
    setting("send_first_retry", "STRATUS_SEND_FIRST_RETRY", "60"),
    setting("send_delay_warning", "STRATUS_SEND_DELAY_WARNING", "4h"),
    setting(
        "submission_max_per_hour",
        "STRATUS_SUBMISSION_MAX_PER_HOUR",
        "500",
    ),
];

/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "STRATUS_CONFIG";

fn lookup(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// The command-line flag of a setting key.
pub fn flag_name(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag,
}

/// A setting's winning text and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    pub key: &'static str,
    pub value: String,
    pub origin: Origin,
}

impl Raw {
    /// Names the setting as the operator wrote it, for error messages.
    pub fn describe(&self) -> String {
        match &self.origin {
            Origin::Default => format!("{} (built-in default {:?})", self.key, self.value),
            Origin::File(path) => format!(
                "{} = {:?} (config file {})",
                self.key,
                self.value,
                path.display()
            ),
            Origin::Env(name) => format!("{name}={:?} (environment)", self.value),
            Origin::Flag => format!("{} {:?} (command line)", flag_name(self.key), self.value),
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            setting: self.describe(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {setting}: {reason}")]
    Invalid { setting: String, reason: String },
    #[error("backend aws needs {what}: set {env}, `{key}` in the config file, or {flag} ({backend})", flag = flag_name(key))]
    MissingForAws {
        what: &'static str,
        key: &'static str,
        env: &'static str,
        backend: String,
    },
    #[error("cannot read config file {path} ({from}): {reason}")]
    ReadFile {
        path: PathBuf,
        from: &'static str,
        reason: String,
    },
    #[error("config file {path} is not valid TOML: {reason}")]
    ParseFile { path: PathBuf, reason: String },
    #[error("config file {path}: unknown setting `{key}` (known: {known})", known = SETTINGS.iter().map(|s| s.key).collect::<Vec<_>>().join(", "))]
    UnknownKey { path: PathBuf, key: String },
    #[error("config file {path}: `{key}` must be a string or a number")]
    BadType { path: PathBuf, key: String },
}

/// Settings given as command-line flags, by setting key, plus `--config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub config: Option<PathBuf>,
    values: BTreeMap<&'static str, String>,
}

impl Flags {
    /// Sets a flag value. Panics on a key missing from [`SETTINGS`]: that is
    /// a programming error, caught by the tests.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        let setting = lookup(key).unwrap_or_else(|| panic!("no setting named {key}"));
        self.values.insert(setting.key, value.into());
        self
    }

    /// Sets the flag if given.
    pub fn set_opt(&mut self, key: &str, value: Option<&String>) -> &mut Self {
        if let Some(v) = value {
            self.set(key, v.clone());
        }
        self
    }
}

/// Which storage adapters to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Files and SQLite in the data directory.
    Local,
    /// S3, DynamoDB and SQS (or API-compatible engines).
    Aws(AwsSettings),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Aws(_) => "aws",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// One enabled listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub role: Role,
    pub addr: SocketAddr,
    /// Where the address came from, for a bind error.
    pub setting: String,
}

/// The whole typed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub data_dir: PathBuf,
    pub backend: Backend,
    /// Enabled listeners, in [`Role::ALL`] order; a role set to an empty
    /// value is absent.
    pub listeners: Vec<Listen>,
    pub hostname: String,
    /// `None`: the system resolver.
    pub dns_resolver: Option<SocketAddr>,
    pub outbound_smtp_port: u16,
    /// The addresses outbound SMTP leaves from when they are not the MX's
    /// (a NAT gateway's): `stratus domain dns` puts them in SPF records.
    pub outbound_addresses: Vec<IpAddr>,
    pub log_format: LogFormat,
    pub max_receives: u32,
    /// Run the pipeline stages (filter, route, deliver, archive) in this
    /// process. Off when Lambda functions consume the queues instead.
    pub run_stages: bool,
    /// How long a stage job stays hidden while the in-process runner works
    /// on it; after a crash the job comes back when this ends.
    pub stage_visibility: Duration,
    pub max_connections: usize,
    /// Concurrent connections one client address may hold on one listener.
    pub max_connections_per_ip: usize,
    pub smtp: SmtpLimits,
    pub pop3: Pop3Settings,
    pub imap: ImapSettings,
    /// Messages one user may submit per hour.
    pub submission_max_per_hour: u32,
    /// How long outbound mail is retried before it bounces.
    pub send_lifetime: Duration,
    /// The delay before the first retry of outbound mail.
    pub send_first_retry: Duration,
    /// How old a message still being retried is when its sender is told
    /// (a "delayed" DSN); `None`: never.
    pub send_delay_warning: Option<Duration>,
    pub tls: TlsFiles,
    /// The config file read, if any.
    pub config_file: Option<PathBuf>,
}

impl Config {
    /// Builds the configuration from flags and the process environment.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        Config::from_sources(flags, &process_env)
    }

    /// Builds the configuration from defaults, the config file, `env` and
    /// `flags`, in that order of priority.
    pub fn from_sources(flags: &Flags, env: Env<'_>) -> Result<Config, ConfigError> {
        let config_file = config_path(flags, env);
        let raw = resolve(flags, env, config_file.as_ref())?;
        let get = |key: &str| {
            raw.get(key)
                .unwrap_or_else(|| panic!("setting {key} resolved"))
        };
        let config_file = config_file.map(|(path, _)| path);

        let data_dir = non_empty(get("data_dir"))?.into();
        let backend_raw = get("backend");
        let backend = match backend_raw.value.trim().to_ascii_lowercase().as_str() {
            "local" => Backend::Local,
            "aws" => Backend::Aws(aws_settings(&raw, backend_raw)?),
            _ => return Err(backend_raw.invalid("expected `local` or `aws`")),
        };
        let mut listeners = Vec::new();
        for role in Role::ALL {
            let r = get(role.setting_key());
            if let Some(addr) = parse_listen(r)? {
                listeners.push(Listen {
                    role,
                    addr,
                    setting: r.describe(),
                });
            }
        }
        let hostname = parse_hostname(get("hostname"))?;
        let dns_resolver = parse_resolver(get("dns_resolver"))?;
        let port = get("outbound_smtp_port");
        let outbound_smtp_port = match port.value.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(port.invalid("expected a port number from 1 to 65535")),
        };
        let addresses = get("outbound_addresses");
        let outbound_addresses = addresses
            .value
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| a.parse::<IpAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| addresses.invalid("expected IP addresses separated by commas"))?;
        let format = get("log_format");
        let log_format = match format.value.trim().to_ascii_lowercase().as_str() {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            _ => return Err(format.invalid("expected `human` or `json`")),
        };
        let receives = get("max_receives");
        let max_receives = match receives.value.trim().parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(receives.invalid("expected a whole number from 1 to 1000")),
        };
        let run_stages = parse_bool(get("run_stages"))?;
        let pop3 = Pop3Settings {
            idle_timeout: parse_seconds(get("pop3_idle_timeout"))?,
            allow_plaintext: parse_bool(get("pop3_allow_plaintext"))?,
            ..Pop3Settings::default()
        };
        let imap = ImapSettings {
            idle_timeout: parse_seconds(get("imap_idle_timeout"))?,
            allow_plaintext: parse_bool(get("imap_allow_plaintext"))?,
            poll_interval: parse_millis(get("imap_poll_interval"))?,
            ..ImapSettings::default()
        };
        let tls = TlsFiles {
            cert: optional_path(get("tls_cert")),
            key: optional_path(get("tls_key")),
        };
        match (&tls.cert, &tls.key) {
            (Some(_), None) => {
                return Err(get("tls_cert").invalid(
                    "a certificate needs its private key too: set STRATUS_TLS_KEY (tls_key, --tls-key)",
                ));
            }
            (None, Some(_)) => {
                return Err(get("tls_key").invalid(
                    "a private key needs its certificate too: set STRATUS_TLS_CERT (tls_cert, --tls-cert)",
                ));
            }
            _ => {}
        }
        let size = get("max_message_size");
        let max_message_size = match parse_size(&size.value) {
            Ok(n) if n >= 1024 => n,
            Ok(_) => return Err(size.invalid("must be at least 1K")),
            Err(e) => return Err(size.invalid(e.to_string())),
        };
        let smtp = SmtpLimits {
            max_message_size,
            max_recipients: parse_count(get("smtp_max_recipients"), 1, 100_000)?,
            max_hops: parse_count(get("smtp_max_hops"), 1, 1000)?,
            max_errors: parse_count(get("smtp_max_errors"), 1, 1000)? as u32,
            idle_timeout: parse_seconds(get("smtp_idle_timeout"))?,
            ..SmtpLimits::default()
        };
        let max_connections_per_ip = parse_count(get("max_connections_per_ip"), 1, 1_000_000)?;
        Ok(Config {
            data_dir,
            backend,
            listeners,
            hostname,
            dns_resolver,
            outbound_smtp_port,
            outbound_addresses,
            log_format,
            max_receives,
            run_stages,
            stage_visibility: parse_seconds(get("stage_visibility"))?,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip,
            smtp,
            pop3,
            imap,
            submission_max_per_hour: parse_count(get("submission_max_per_hour"), 1, 1_000_000)?
                as u32,
            send_lifetime: parse_lifetime(get("send_lifetime"))?,
            send_first_retry: parse_seconds(get("send_first_retry"))?,
            send_delay_warning: match stratus_core::time::is_off(&get("send_delay_warning").value) {
                true => None,
                false => Some(parse_duration(
                    get("send_delay_warning"),
                    Duration::from_secs(1),
                    (Duration::from_secs(1), Duration::from_secs(30 * 86_400)),
                    "expected a time from 1s to 30d (e.g. 4h), or off",
                )?),
            },
            tls,
            config_file,
        })
    }

    /// The listen address of a role, if enabled.
    pub fn listen(&self, role: Role) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.role == role)
            .map(|l| l.addr)
    }
}

/// The config file to read, and which source named it.
fn config_path(flags: &Flags, env: Env<'_>) -> Option<(PathBuf, &'static str)> {
    match (&flags.config, env(CONFIG_ENV)) {
        (Some(path), _) => Some((path.clone(), "--config")),
        (None, Some(path)) if !path.is_empty() => Some((PathBuf::from(path), CONFIG_ENV)),
        _ => None,
    }
}

/// Picks the winning text of every setting.
fn resolve(
    flags: &Flags,
    env: Env<'_>,
    config_file: Option<&(PathBuf, &'static str)>,
) -> Result<BTreeMap<&'static str, Raw>, ConfigError> {
    let file = match config_file {
        Some((path, from)) => read_file(path, from)?,
        None => BTreeMap::new(),
    };

    let mut out = BTreeMap::new();
    for s in SETTINGS {
        let raw = if let Some(v) = flags.values.get(s.key) {
            Raw {
                key: s.key,
                value: v.clone(),
                origin: Origin::Flag,
            }
        } else if let Some(v) = env(s.env) {
            Raw {
                key: s.key,
                value: v,
                origin: Origin::Env(s.env),
            }
        } else if let Some(v) = file.get(s.key) {
            let path = config_file.map(|(p, _)| p.clone()).unwrap_or_default();
            Raw {
                key: s.key,
                value: v.clone(),
                origin: Origin::File(path),
            }
        } else {
            let value = match s.default {
                DefaultValue::Value(v) => v.to_string(),
                DefaultValue::HostName => crate::hostname::machine_hostname(),
            };
            Raw {
                key: s.key,
                value,
                origin: Origin::Default,
            }
        };
        out.insert(s.key, raw);
    }
    Ok(out)
}

/// Reads a flat TOML table of settings. Unknown keys are errors: a typo
/// should not silently leave a default in place.
fn read_file(
    path: &Path,
    from: &'static str,
) -> Result<BTreeMap<&'static str, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::ReadFile {
        path: path.to_path_buf(),
        from,
        reason: e.to_string(),
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
        path: path.to_path_buf(),
        reason: e.to_string().trim_end().to_string(),
    })?;
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let setting = lookup(&key).ok_or_else(|| ConfigError::UnknownKey {
            path: path.to_path_buf(),
            key: key.clone(),
        })?;
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            _ => {
                return Err(ConfigError::BadType {
                    path: path.to_path_buf(),
                    key,
                });
            }
        };
        out.insert(setting.key, text);
    }
    Ok(out)
}

fn non_empty(raw: &Raw) -> Result<String, ConfigError> {
    if raw.value.trim().is_empty() {
        Err(raw.invalid("must not be empty"))
    } else {
        Ok(raw.value.clone())
    }
}

fn parse_bool(raw: &Raw) -> Result<bool, ConfigError> {
    match raw.value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(raw.invalid("expected `true` or `false`")),
    }
}

fn optional_path(raw: &Raw) -> Option<PathBuf> {
    let v = raw.value.trim();
    (!v.is_empty()).then(|| PathBuf::from(v))
}

/// A whole number from `min` to `max`.
fn parse_count(raw: &Raw, min: usize, max: usize) -> Result<usize, ConfigError> {
    match raw.value.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(raw.invalid(format!("expected a whole number from {min} to {max}"))),
    }
}

/// A duration: a number with a unit (`ms`, `s`, `m`, `h`, `d`), or a bare
/// number of `bare` units, from `min` to `max`; `expected` says so when
/// it is not.
fn parse_duration(
    raw: &Raw,
    bare: Duration,
    (min, max): (Duration, Duration),
    expected: &str,
) -> Result<Duration, ConfigError> {
    match stratus_core::time::parse_duration(&raw.value, bare) {
        Some(d) if (min..=max).contains(&d) => Ok(d),
        _ => Err(raw.invalid(expected)),
    }
}

/// Seconds (bare, or with a unit) from 1 s to a day.
fn parse_seconds(raw: &Raw) -> Result<Duration, ConfigError> {
    let bounds = (Duration::from_secs(1), Duration::from_secs(86_400));
    parse_duration(
        raw,
        Duration::from_secs(1),
        bounds,
        "expected seconds from 1 to 86400, e.g. 300, 300s or 5m",
    )
}

/// A long duration (`5d`, `12h`, bare seconds), from 10 s to 30 days.
fn parse_lifetime(raw: &Raw) -> Result<Duration, ConfigError> {
    let bounds = (Duration::from_secs(10), Duration::from_secs(30 * 86_400));
    parse_duration(
        raw,
        Duration::from_secs(1),
        bounds,
        "expected a time from 10s to 30d, e.g. 5d, 12h or 90m",
    )
}

/// A short interval (`500ms`, `2s`, bare milliseconds), from 10 ms to
/// 600 s.
fn parse_millis(raw: &Raw) -> Result<Duration, ConfigError> {
    let bounds = (Duration::from_millis(10), Duration::from_secs(600));
    parse_duration(
        raw,
        Duration::from_millis(1),
        bounds,
        "expected an interval from 10ms to 600s, e.g. 500ms or 2s",
    )
}

fn parse_listen(raw: &Raw) -> Result<Option<SocketAddr>, ConfigError> {
    let v = raw.value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| {
        raw.invalid("expected IP:PORT (e.g. 127.0.0.1:2525 or [::]:25; port 0 picks a free port), or an empty value to turn the listener off")
    })
}

fn parse_resolver(raw: &Raw) -> Result<Option<SocketAddr>, ConfigError> {
    let v = raw.value.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("system") {
        return Ok(None);
    }
    if let Ok(addr) = v.parse::<SocketAddr>() {
        return Ok(Some(addr));
    }
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Ok(Some(SocketAddr::new(ip, 53)));
    }
    Err(raw.invalid(
        "expected IP:PORT of a DNS server (or an IP, port 53), or empty for the system resolver",
    ))
}

/// A host name that is safe to put in a protocol line: letters, digits,
/// `-`, `.` and `_`, at most 253 octets.
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

fn parse_hostname(raw: &Raw) -> Result<String, ConfigError> {
    let v = raw.value.trim();
    if valid_hostname(v) {
        Ok(v.to_ascii_lowercase())
    } else {
        Err(raw
            .invalid("expected a host name of letters, digits, `-` and `.` (at most 253 octets)"))
    }
}

fn parse_endpoint(raw: &Raw) -> Result<Option<String>, ConfigError> {
    match raw.value.trim() {
        "" => Ok(None),
        e if (e.starts_with("http://") || e.starts_with("https://"))
            && e.len() > "https://".len() =>
        {
            Ok(Some(e.to_string()))
        }
        _ => Err(raw.invalid("expected an http:// or https:// URL, e.g. http://127.0.0.1:5000")),
    }
}

fn aws_settings(
    raw: &BTreeMap<&'static str, Raw>,
    backend: &Raw,
) -> Result<AwsSettings, ConfigError> {
    let get = |key: &str| &raw[key];
    let chosen_by = match &backend.origin {
        Origin::Default => "the default backend".to_string(),
        _ => format!("backend from {}", backend.describe()),
    };
    let required = |key: &'static str, what: &'static str| -> Result<String, ConfigError> {
        let r = get(key);
        let v = r.value.trim();
        if v.is_empty() {
            let env = lookup(key).map_or("", |s| s.env);
            return Err(ConfigError::MissingForAws {
                what,
                key,
                env,
                backend: chosen_by.clone(),
            });
        }
        Ok(v.to_string())
    };

    let endpoint = parse_endpoint(get("aws_endpoint"))?;
    let dynamodb_endpoint = parse_endpoint(get("dynamodb_endpoint"))?;
    let region = non_empty(get("aws_region"))?.trim().to_string();
    let prefix_raw = get("queue_prefix");
    let queue_prefix = prefix_raw.value.trim().to_string();
    // SQS queue names: letters, digits, `-` and `_`, at most 80 characters,
    // and the longest we derive is `<prefix>archive-dlq`.
    if queue_prefix.len() > 80 - "archive-dlq".len()
        || !queue_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        return Err(prefix_raw.invalid("expected at most 69 letters, digits, `-` or `_`"));
    }
    Ok(AwsSettings {
        endpoint,
        dynamodb_endpoint,
        region,
        bucket: required("s3_bucket", "an S3 bucket for message bodies")?,
        archive_bucket: required("archive_bucket", "an S3 bucket for the archive")?,
        table: required("dynamodb_table", "a DynamoDB table")?,
        queue_prefix,
    })
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::testutil::TempDir;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn load(flags: &Flags, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_sources(flags, &env_of(env))
    }

    /// A config file in a fresh temporary directory.
    fn config_file(name: &str, text: &str) -> (TempDir, PathBuf) {
        let dir = TempDir::new(name);
        let path = dir.path().join("stratus.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn defaults_match_the_operator_contract() {
        let c = load(&Flags::default(), &[]).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.backend, Backend::Local);
        let expect = [
            (Role::Smtp, "127.0.0.1:2525"),
            (Role::Submission, "127.0.0.1:2587"),
            (Role::Submissions, "127.0.0.1:2465"),
            (Role::Imap, "127.0.0.1:1143"),
            (Role::Imaps, "127.0.0.1:1993"),
            (Role::Pop3, "127.0.0.1:1110"),
            (Role::Pop3s, "127.0.0.1:1995"),
            (Role::Http, "127.0.0.1:8080"),
        ];
        assert_eq!(c.listeners.len(), 8);
        for (role, addr) in expect {
            assert_eq!(c.listen(role), Some(addr.parse().unwrap()), "{role}");
        }
        assert!(valid_hostname(&c.hostname), "{}", c.hostname);
        assert_eq!(c.dns_resolver, None);
        assert_eq!(c.outbound_smtp_port, 25);
        assert_eq!(c.log_format, LogFormat::Human);
        assert_eq!(c.max_receives, 5);
        assert_eq!(c.config_file, None);
        assert_eq!(c.smtp, SmtpLimits::default());
        assert_eq!(c.smtp.max_message_size, 50 << 20);
        assert_eq!(c.smtp.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.max_connections_per_ip, 20);
        assert_eq!(c.tls, TlsFiles::default());
        assert_eq!(c.pop3, Pop3Settings::default());
        assert_eq!(c.pop3.idle_timeout, Duration::from_secs(600));
        assert!(!c.pop3.allow_plaintext);
    }

    #[test]
    fn smtp_limits_and_tls_files_parse() {
        let env = [
            ("STRATUS_MAX_MESSAGE_SIZE", "30M"),
            ("STRATUS_SMTP_MAX_RECIPIENTS", "5"),
            ("STRATUS_SMTP_MAX_HOPS", "30"),
            ("STRATUS_SMTP_MAX_ERRORS", "3"),
            ("STRATUS_SMTP_IDLE_TIMEOUT", "2m"),
            ("STRATUS_MAX_CONNECTIONS_PER_IP", "4"),
            ("STRATUS_TLS_CERT", "/etc/stratus/cert.pem"),
            ("STRATUS_TLS_KEY", "/etc/stratus/key.pem"),
        ];
        let c = load(&Flags::default(), &env).unwrap();
        assert_eq!(c.smtp.max_message_size, 30 << 20);
        assert_eq!(c.smtp.max_recipients, 5);
        assert_eq!(c.smtp.max_hops, 30);
        assert_eq!(c.smtp.max_errors, 3);
        assert_eq!(c.smtp.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.max_connections_per_ip, 4);
        assert_eq!(
            c.tls.cert.as_deref(),
            Some(Path::new("/etc/stratus/cert.pem"))
        );
        assert_eq!(
            c.tls.key.as_deref(),
            Some(Path::new("/etc/stratus/key.pem"))
        );
        let c = load(
            &Flags::default(),
            &[
                ("STRATUS_POP3_ALLOW_PLAINTEXT", "yes"),
                ("STRATUS_POP3_IDLE_TIMEOUT", "15m"),
            ],
        )
        .unwrap();
        assert!(c.pop3.allow_plaintext);
        assert_eq!(c.pop3.idle_timeout, Duration::from_secs(900));
        assert!(
            load(
                &Flags::default(),
                &[("STRATUS_POP3_ALLOW_PLAINTEXT", "maybe")]
            )
            .is_err()
        );
        let c = load(&Flags::default(), &[("STRATUS_SMTP_IDLE_TIMEOUT", "45")]).unwrap();
        assert_eq!(c.smtp.idle_timeout, Duration::from_secs(45));

        let (_dir, path) = config_file(
            "tls",
            "tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\nmax_message_size = 1048576\n",
        );
        let flags = Flags {
            config: Some(path),
            ..Flags::default()
        };
        let c = load(&flags, &[]).unwrap();
        assert_eq!(c.tls.cert.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(c.smtp.max_message_size, 1 << 20);

        for (env, value) in [
            ("STRATUS_MAX_MESSAGE_SIZE", "lots"),
            ("STRATUS_MAX_MESSAGE_SIZE", "10"),
            ("STRATUS_SMTP_MAX_RECIPIENTS", "0"),
            ("STRATUS_SMTP_MAX_HOPS", "-1"),
            ("STRATUS_SMTP_MAX_ERRORS", "many"),
            ("STRATUS_SMTP_IDLE_TIMEOUT", "0"),
            ("STRATUS_SMTP_IDLE_TIMEOUT", "5d"),
            ("STRATUS_SMTP_IDLE_TIMEOUT", "99999999999999999999h"),
            ("STRATUS_MAX_CONNECTIONS_PER_IP", "0"),
            ("STRATUS_TLS_CERT", "/only/cert.pem"),
        ] {
            let err = load(&Flags::default(), &[(env, value)])
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("invalid "), "{env}={value}: {err}");
        }
        let err = load(&Flags::default(), &[("STRATUS_TLS_KEY", "/only/key.pem")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("STRATUS_TLS_CERT"), "{err}");
    }

    #[test]
    fn every_setting_has_a_flag_and_a_stratus_env_name() {
        for s in SETTINGS {
            assert!(
                s.env == "AWS_REGION" || s.env == format!("STRATUS_{}", s.key.to_ascii_uppercase()),
                "{}",
                s.key
            );
            assert!(flag_name(s.key).starts_with("--"));
        }
        for role in Role::ALL {
            assert!(lookup(role.setting_key()).is_some(), "{role}");
        }
    }

    #[test]
    fn precedence_is_defaults_then_file_then_env_then_flags() {
        let (_dir, path) = config_file(
            "precedence",
            r#"
            data_dir = "/from/file"
            smtp_listen = "127.0.0.1:1001"
            imap_listen = "127.0.0.1:1002"
            pop3_listen = "127.0.0.1:1003"
            outbound_smtp_port = 2525
            "#,
        );
        let env = [
            ("STRATUS_IMAP_LISTEN", "127.0.0.1:2002"),
            ("STRATUS_POP3_LISTEN", "127.0.0.1:2003"),
            ("STRATUS_MAX_RECEIVES", "7"),
        ];
        let mut flags = Flags {
            config: Some(path.clone()),
            ..Flags::default()
        };
        flags
            .set("pop3_listen", "127.0.0.1:3003")
            .set("max_receives", "9");

        let c = load(&flags, &env).unwrap();
        // default only
        assert_eq!(
            c.listen(Role::Http),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        // file beats default
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(
            c.listen(Role::Smtp),
            Some("127.0.0.1:1001".parse().unwrap())
        );
        assert_eq!(c.outbound_smtp_port, 2525, "TOML integers are accepted");
        // env beats file
        assert_eq!(
            c.listen(Role::Imap),
            Some("127.0.0.1:2002".parse().unwrap())
        );
        // flag beats env and file
        assert_eq!(
            c.listen(Role::Pop3),
            Some("127.0.0.1:3003".parse().unwrap())
        );
        assert_eq!(c.max_receives, 9);
        assert_eq!(c.config_file, Some(path));
    }

    #[test]
    fn the_config_file_can_come_from_the_environment_and_the_flag_wins() {
        let (_env_dir, from_env) = config_file("env-file", "data_dir = \"/env/file\"\n");
        let (_flag_dir, from_flag) = config_file("flag-file", "data_dir = \"/flag/file\"\n");
        let env = [(CONFIG_ENV, from_env.to_str().unwrap())];
        assert_eq!(
            load(&Flags::default(), &env).unwrap().data_dir,
            PathBuf::from("/env/file")
        );
        let flags = Flags {
            config: Some(from_flag),
            ..Flags::default()
        };
        assert_eq!(
            load(&flags, &env).unwrap().data_dir,
            PathBuf::from("/flag/file")
        );
    }

    #[test]
    fn an_empty_listen_value_turns_the_listener_off_and_port_zero_is_kept() {
        let (_dir, path) = config_file("off", "http_listen = \"\"\n");
        let flags = Flags {
            config: Some(path),
            ..Flags::default()
        };
        let env = [
            ("STRATUS_IMAPS_LISTEN", ""),
            ("STRATUS_SMTP_LISTEN", "0.0.0.0:0"),
            ("STRATUS_POP3_LISTEN", "[::1]:0"),
        ];
        let c = load(&flags, &env).unwrap();
        assert_eq!(c.listen(Role::Http), None);
        assert_eq!(c.listen(Role::Imaps), None);
        assert_eq!(c.listen(Role::Smtp), Some("0.0.0.0:0".parse().unwrap()));
        assert_eq!(c.listen(Role::Pop3), Some("[::1]:0".parse().unwrap()));
        assert_eq!(c.listeners.len(), 6);
    }

    #[test]
    fn bad_values_name_the_setting_and_its_source() {
        let err = load(&Flags::default(), &[("STRATUS_SMTP_LISTEN", "localhost")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("STRATUS_SMTP_LISTEN=\"localhost\" (environment)"),
            "{err}"
        );
        assert!(err.contains("IP:PORT"), "{err}");

        let mut flags = Flags::default();
        flags.set("backend", "s3");
        let err = load(&flags, &[]).unwrap_err().to_string();
        assert!(
            err.contains("--backend \"s3\" (command line)") && err.contains("`local` or `aws`"),
            "{err}"
        );

        let (_dir, path) = config_file("bad", "imap_listen = \"1.2.3.4\"\n");
        let flags = Flags {
            config: Some(path.clone()),
            ..Flags::default()
        };
        let err = load(&flags, &[]).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "imap_listen = \"1.2.3.4\" (config file {})",
                path.display()
            )),
            "{err}"
        );

        for (env, value) in [
            ("STRATUS_LOG_FORMAT", "xml"),
            ("STRATUS_MAX_RECEIVES", "0"),
            ("STRATUS_OUTBOUND_SMTP_PORT", "70000"),
            ("STRATUS_DNS_RESOLVER", "dns.example"),
            ("STRATUS_HOSTNAME", "mx.example\r\nRCPT"),
            ("STRATUS_DATA_DIR", ""),
        ] {
            let err = load(&Flags::default(), &[(env, value)])
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("invalid {env}=")), "{env}: {err}");
        }
    }

    #[test]
    fn the_config_file_is_checked() {
        let (_dir, path) = config_file("typo", "smtp_listn = \"127.0.0.1:25\"\n");
        let flags = Flags {
            config: Some(path),
            ..Flags::default()
        };
        assert!(
            matches!(load(&flags, &[]), Err(ConfigError::UnknownKey { key, .. }) if key == "smtp_listn")
        );

        let (_dir, path) = config_file("syntax", "smtp_listen = \n");
        let flags = Flags {
            config: Some(path),
            ..Flags::default()
        };
        assert!(matches!(
            load(&flags, &[]),
            Err(ConfigError::ParseFile { .. })
        ));

        let (_dir, path) = config_file("type", "smtp_listen = true\n");
        let flags = Flags {
            config: Some(path),
            ..Flags::default()
        };
        assert!(matches!(
            load(&flags, &[]),
            Err(ConfigError::BadType { .. })
        ));

        let env = [(CONFIG_ENV, "/nonexistent/stratus.toml")];
        let err = load(&Flags::default(), &env).unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/stratus.toml (STRATUS_CONFIG)"),
            "{err}"
        );
    }

    #[test]
    fn other_settings_parse() {
        let env = [
            ("STRATUS_DNS_RESOLVER", "127.0.0.1:5353"),
            ("STRATUS_HOSTNAME", "MX.Example.COM"),
            ("STRATUS_LOG_FORMAT", "json"),
        ];
        let c = load(&Flags::default(), &env).unwrap();
        assert_eq!(c.dns_resolver, Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(c.hostname, "mx.example.com");
        assert_eq!(c.log_format, LogFormat::Json);
        let c = load(&Flags::default(), &[("STRATUS_DNS_RESOLVER", "::1")]).unwrap();
        assert_eq!(c.dns_resolver, Some("[::1]:53".parse().unwrap()));
    }

    #[test]
    fn delay_warnings_default_to_four_hours_and_can_be_turned_off() {
        let c = load(&Flags::default(), &[]).unwrap();
        assert_eq!(c.send_delay_warning, Some(Duration::from_secs(4 * 3600)));
        let c = load(&Flags::default(), &[("STRATUS_SEND_DELAY_WARNING", "30m")]).unwrap();
        assert_eq!(c.send_delay_warning, Some(Duration::from_secs(1800)));
        let c = load(&Flags::default(), &[("STRATUS_SEND_DELAY_WARNING", "off")]).unwrap();
        assert_eq!(c.send_delay_warning, None);
        assert!(load(&Flags::default(), &[("STRATUS_SEND_DELAY_WARNING", "soon")]).is_err());
    }

    #[test]
    fn outbound_addresses_are_a_list_of_ips() {
        assert!(
            load(&Flags::default(), &[])
                .unwrap()
                .outbound_addresses
                .is_empty()
        );
        let env = [("STRATUS_OUTBOUND_ADDRESSES", " 203.0.113.7, 2001:db8::25 ")];
        let c = load(&Flags::default(), &env).unwrap();
        let want: Vec<IpAddr> = vec![
            "203.0.113.7".parse().unwrap(),
            "2001:db8::25".parse().unwrap(),
        ];
        assert_eq!(c.outbound_addresses, want);
        let err = load(
            &Flags::default(),
            &[("STRATUS_OUTBOUND_ADDRESSES", "nat.example")],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("STRATUS_OUTBOUND_ADDRESSES"), "{err}");
    }

    #[test]
    fn the_aws_backend_needs_buckets_and_a_table() {
        let err = load(&Flags::default(), &[("STRATUS_BACKEND", "aws")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("STRATUS_S3_BUCKET") && err.contains("STRATUS_BACKEND=\"aws\""),
            "{err}"
        );

        let base = [
            ("STRATUS_BACKEND", "aws"),
            ("STRATUS_S3_BUCKET", "bodies"),
            ("STRATUS_ARCHIVE_BUCKET", "journal"),
        ];
        let err = load(&Flags::default(), &base).unwrap_err().to_string();
        assert!(
            err.contains("STRATUS_DYNAMODB_TABLE") && err.contains("--dynamodb-table"),
            "{err}"
        );

        let mut env = base.to_vec();
        env.push(("STRATUS_DYNAMODB_TABLE", "index"));
        let c = load(&Flags::default(), &env).unwrap();
        let Backend::Aws(aws) = c.backend else {
            panic!("aws backend expected")
        };
        assert_eq!(
            aws,
            AwsSettings {
                endpoint: None,
                dynamodb_endpoint: None,
                region: "us-east-1".into(),
                bucket: "bodies".into(),
                archive_bucket: "journal".into(),
                table: "index".into(),
                queue_prefix: "stratus-".into(),
            }
        );

        env.extend([
            ("STRATUS_AWS_ENDPOINT", "http://127.0.0.1:5000"),
            ("STRATUS_DYNAMODB_ENDPOINT", "http://127.0.0.1:8000"),
            ("AWS_REGION", "eu-west-1"),
            ("STRATUS_QUEUE_PREFIX", "t1-"),
        ]);
        let Backend::Aws(aws) = load(&Flags::default(), &env).unwrap().backend else {
            panic!("aws backend expected")
        };
        assert_eq!(aws.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(
            aws.dynamodb_endpoint.as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(aws.region, "eu-west-1");
        assert_eq!(aws.queue_prefix, "t1-");

        let mut flags = Flags::default();
        flags.set("aws_endpoint", "localhost:5000");
        let err = load(&flags, &env).unwrap_err().to_string();
        assert!(err.contains("--aws-endpoint"), "{err}");
    }

    #[test]
    fn aws_settings_are_ignored_on_the_local_backend() {
        let c = load(&Flags::default(), &[("STRATUS_AWS_ENDPOINT", "nonsense")]).unwrap();
        assert_eq!(c.backend, Backend::Local);
    }
}
