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

mod protocols;
#[cfg(test)]
mod tests;
mod values;

pub use protocols::{
    ClamdAddress, ClamdSettings, ClamdUnavailable, ImapSettings, Pop3Settings, SmtpLimits, TlsFiles,
};
pub use values::valid_hostname;
use values::*;

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
    setting(
        "managesieve_listen",
        "STRATUS_MANAGESIEVE_LISTEN",
        "127.0.0.1:4190",
    ),
    setting("http_listen", "STRATUS_HTTP_LISTEN", "127.0.0.1:8080"),
    setting("https_listen", "STRATUS_HTTPS_LISTEN", "127.0.0.1:8443"),
    Setting {
        key: "hostname",
        env: "STRATUS_HOSTNAME",
        default: DefaultValue::HostName,
    },
    setting("dns_resolver", "STRATUS_DNS_RESOLVER", ""),
    setting("outbound_smtp_port", "STRATUS_OUTBOUND_SMTP_PORT", "25"),
    setting("mta_sts_port", "STRATUS_MTA_STS_PORT", "443"),
    setting("tls_extra_ca", "STRATUS_TLS_EXTRA_CA", ""),
    setting("outbound_addresses", "STRATUS_OUTBOUND_ADDRESSES", ""),
    setting("log_format", "STRATUS_LOG_FORMAT", "human"),
    setting("max_receives", "STRATUS_MAX_RECEIVES", "5"),
    setting("run_stages", "STRATUS_RUN_STAGES", "true"),
    setting("spam_filter", "STRATUS_SPAM_FILTER", "true"),
    setting("spam_rules", "STRATUS_SPAM_RULES", ""),
    setting("quarantine_days", "STRATUS_QUARANTINE_DAYS", "30"),
    setting("metrics_allow", "STRATUS_METRICS_ALLOW", "127.0.0.0/8,::1"),
    setting("metrics_token", "STRATUS_METRICS_TOKEN", ""),
    setting("trusted_proxies", "STRATUS_TRUSTED_PROXIES", ""),
    setting("public_url", "STRATUS_PUBLIC_URL", ""),
    setting("proxy_protocol", "STRATUS_PROXY_PROTOCOL", "false"),
    setting("clamd", "STRATUS_CLAMD", ""),
    setting("clamd_timeout", "STRATUS_CLAMD_TIMEOUT", "30"),
    setting("clamd_scan", "STRATUS_CLAMD_SCAN", "attachments"),
    setting("clamd_unavailable", "STRATUS_CLAMD_UNAVAILABLE", "tempfail"),
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
    setting("tls_cert_dir", "STRATUS_TLS_CERT_DIR", ""),
    setting("max_message_size", "STRATUS_MAX_MESSAGE_SIZE", "50M"),
    setting("smtp_max_recipients", "STRATUS_SMTP_MAX_RECIPIENTS", "100"),
    setting("smtp_max_hops", "STRATUS_SMTP_MAX_HOPS", "100"),
    setting("smtp_max_errors", "STRATUS_SMTP_MAX_ERRORS", "10"),
    setting("smtp_idle_timeout", "STRATUS_SMTP_IDLE_TIMEOUT", "300"),
    setting(
        "max_connections_per_ip",
        "STRATUS_MAX_CONNECTIONS_PER_IP",
        "500",
    ),
    setting(
        "max_connections_per_user_ip",
        "STRATUS_MAX_CONNECTIONS_PER_USER_IP",
        "10",
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
    setting("password_min_length", "STRATUS_PASSWORD_MIN_LENGTH", "10"),
    setting("sweep_interval", "STRATUS_SWEEP_INTERVAL", "1h"),
    setting("sweep_grace", "STRATUS_SWEEP_GRACE", "1h"),
    setting("changes_retention", "STRATUS_CHANGES_RETENTION", "30d"),
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

/// A setting that must not be shown: `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
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
    /// The port MTA-STS policies are fetched from (443; tests use another).
    pub mta_sts_port: u16,
    /// PEM certificates trusted besides the web PKI roots, for MTA-STS
    /// policy hosts and MX certificates.
    pub tls_extra_ca: Option<PathBuf>,
    /// The addresses outbound SMTP leaves from when they are not the MX's
    /// (a NAT gateway's): `stratus domain dns` puts them in SPF records.
    pub outbound_addresses: Vec<IpAddr>,
    pub log_format: LogFormat,
    pub max_receives: u32,
    /// Run the pipeline stages (filter, route, deliver, archive) in this
    /// process. Off when Lambda functions consume the queues instead.
    pub run_stages: bool,
    /// Score mail from outside for spam (the gateway before its final
    /// reply, the filter stage after).
    pub spam_filter: bool,
    /// A rules file to use instead of the shipped one.
    pub spam_rules: Option<PathBuf>,
    /// Virus scanning before the final reply (`None`: off).
    pub clamd: Option<ClamdSettings>,
    /// Who may read `/metrics` without the token: these address ranges.
    pub metrics_allow: Vec<ipnet::IpNet>,
    /// A bearer token that opens `/metrics` from anywhere (`None`: none).
    pub metrics_token: Option<Secret>,
    /// Proxies in front of the gateway whose word on the client is
    /// believed: their `X-Forwarded-For` and `X-Forwarded-Proto`, and
    /// (with `proxy_protocol`) their PROXY headers.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Connections from a trusted proxy begin with a PROXY protocol
    /// header (v1 or v2), on every listener.
    pub proxy_protocol: bool,
    /// Where people reach the HTTPS listener (for links in invitations):
    /// `https://<hostname>` unless set.
    pub public_url: String,
    /// Days a quarantined message is kept.
    pub quarantine_days: u32,
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
    /// The fewest characters a new password may have.
    pub password_min_length: usize,
    /// How often `serve` runs the sweeper (`None`: never).
    pub sweep_interval: Option<Duration>,
    /// How long the sweeper leaves what lost its last reference alone.
    pub sweep_grace: Duration,
    /// How long tombstones and change rows stay for resynchronising
    /// clients before the sweeper prunes them.
    pub changes_retention: Duration,
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
        let port_of = |key: &str| {
            let port = get(key);
            match port.value.trim().parse::<u16>() {
                Ok(p) if p > 0 => Ok(p),
                _ => Err(port.invalid("expected a port number from 1 to 65535")),
            }
        };
        let outbound_smtp_port = port_of("outbound_smtp_port")?;
        let mta_sts_port = port_of("mta_sts_port")?;
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
        let spam_filter = parse_bool(get("spam_filter"))?;
        let clamd = parse_clamd(&get)?;
        let metrics_allow = parse_nets(get("metrics_allow"))?;
        let trusted_proxies = parse_nets(get("trusted_proxies"))?;
        let proxy_protocol = parse_bool(get("proxy_protocol"))?;
        let public_url = get("public_url");
        let public_url = match public_url.value.trim().trim_end_matches('/') {
            "" => format!("https://{hostname}"),
            url if url.starts_with("https://")
                && url.len() > 8
                && !url.contains(char::is_whitespace)
                && !url.contains(['#', '?']) =>
            {
                url.to_string()
            }
            _ => {
                return Err(public_url.invalid(
                    "expected an https:// URL without a query or fragment, e.g. https://mail.example.com",
                ));
            }
        };
        if proxy_protocol && trusted_proxies.is_empty() {
            return Err(get("proxy_protocol").invalid(
                "the PROXY protocol needs STRATUS_TRUSTED_PROXIES: the addresses that send it",
            ));
        }
        let token = get("metrics_token");
        let metrics_token = match token.value.trim() {
            "" => None,
            t if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) => {
                // Not `token.invalid`, which would show the value.
                return Err(ConfigError::Invalid {
                    setting: "metrics_token (STRATUS_METRICS_TOKEN; the value is not shown)".into(),
                    reason: "expected at least 16 printable characters, no spaces".into(),
                });
            }
            t => Some(Secret(t.to_string())),
        };
        let quarantine_days = parse_count(get("quarantine_days"), 1, 3650)? as u32;
        let pop3 = Pop3Settings {
            idle_timeout: parse_seconds(get("pop3_idle_timeout"))?,
            allow_plaintext: parse_bool(get("pop3_allow_plaintext"))?,
            ..Pop3Settings::default()
        };
        let imap = ImapSettings {
            idle_timeout: parse_seconds(get("imap_idle_timeout"))?,
            allow_plaintext: parse_bool(get("imap_allow_plaintext"))?,
            poll_interval: parse_millis(get("imap_poll_interval"))?,
            max_per_user_ip: parse_count(get("max_connections_per_user_ip"), 1, 100_000)?,
            ..ImapSettings::default()
        };
        let tls = TlsFiles {
            cert: optional_path(get("tls_cert")),
            key: optional_path(get("tls_key")),
            dir: optional_path(get("tls_cert_dir")),
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
            mta_sts_port,
            tls_extra_ca: optional_path(get("tls_extra_ca")),
            outbound_addresses,
            log_format,
            max_receives,
            run_stages,
            spam_filter,
            spam_rules: optional_path(get("spam_rules")),
            clamd,
            metrics_allow,
            metrics_token,
            trusted_proxies,
            proxy_protocol,
            public_url,
            quarantine_days,
            stage_visibility: parse_seconds(get("stage_visibility"))?,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip,
            smtp,
            pop3,
            imap,
            submission_max_per_hour: parse_count(get("submission_max_per_hour"), 1, 1_000_000)?
                as u32,
            password_min_length: parse_count(get("password_min_length"), 1, 1024)?,
            sweep_interval: match stratus_core::time::is_off(&get("sweep_interval").value) {
                true => None,
                false => Some(parse_duration(
                    get("sweep_interval"),
                    Duration::from_secs(1),
                    (Duration::from_secs(1), Duration::from_secs(30 * 86_400)),
                    "expected a time from 1s to 30d (e.g. 1h), or off",
                )?),
            },
            sweep_grace: parse_duration(
                get("sweep_grace"),
                Duration::from_secs(1),
                (Duration::from_secs(1), Duration::from_secs(3650 * 86_400)),
                "expected a time from 1s up (e.g. 1h, 10m, 30s)",
            )?,
            changes_retention: parse_duration(
                get("changes_retention"),
                Duration::from_secs(86_400),
                (Duration::from_secs(1), Duration::from_secs(3650 * 86_400)),
                "expected a time from 1s up (e.g. 30d, 12h)",
            )?,
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

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        })
    }
}
