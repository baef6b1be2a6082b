//! The settings each protocol's sessions are built from: SMTP limits,
//! IMAP and POP3 session settings, and the TLS certificate files.

use std::path::PathBuf;
use std::time::Duration;

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
    /// Logged-in sessions one user may hold from one client address (on
    /// this gateway, IMAP and IMAPS together); Dovecot's default too.
    pub max_per_user_ip: usize,
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
            max_per_user_ip: 10,
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
    /// More certificates, chosen by the name a client asks for (SNI): one
    /// subdirectory each, with `fullchain.pem` (or `cert.pem`) and
    /// `privkey.pem` (or `key.pem`), as certbot's `live/` directory has.
    pub dir: Option<PathBuf>,
}

/// Virus scanning with clamd (`STRATUS_CLAMD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClamdSettings {
    pub address: ClamdAddress,
    /// How long a scan may take before clamd counts as not answering.
    pub timeout: Duration,
    /// Scan every message, not only those with attachments.
    pub scan_all: bool,
    pub unavailable: ClamdUnavailable,
}

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddress {
    /// `unix:/run/clamav/clamd.ctl`
    Unix(PathBuf),
    /// `host:port`
    Tcp(String),
}

/// What happens to a message when clamd does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClamdUnavailable {
    /// `451 4.7.1`: the sender tries again later.
    Tempfail,
    /// Accepted, marked `X-Virus-Status: unchecked`.
    Accept,
}
