//! The roles a listener can play. A role names the protocol spoken on a
//! socket and whether TLS starts at connect; the configuration, the
//! listeners file and the logs all use [`Role::name`].

use std::fmt;

/// One kind of listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// SMTP for other MTAs (MX, port 25).
    Smtp,
    /// Message submission with STARTTLS (port 587).
    Submission,
    /// Message submission over implicit TLS (port 465).
    Submissions,
    /// IMAP with STARTTLS (port 143).
    Imap,
    /// IMAP over implicit TLS (port 993).
    Imaps,
    /// POP3 with STLS (port 110).
    Pop3,
    /// POP3 over implicit TLS (port 995).
    Pop3s,
    /// ManageSieve with STARTTLS (port 4190).
    ManageSieve,
    /// Webmail, admin API, health and metrics, in plain HTTP.
    Http,
    /// The same over implicit TLS (443 behind the load balancer).
    Https,
}

/// The protocol family of a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Smtp,
    Imap,
    Pop3,
    ManageSieve,
    Http,
}

impl Role {
    pub const ALL: [Role; 10] = [
        Role::Smtp,
        Role::Submission,
        Role::Submissions,
        Role::Imap,
        Role::Imaps,
        Role::Pop3,
        Role::Pop3s,
        Role::ManageSieve,
        Role::Http,
        Role::Https,
    ];

    /// The name used in `listeners.json`, logs and setting names.
    pub fn name(self) -> &'static str {
        match self {
            Role::Smtp => "smtp",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
            Role::Imap => "imap",
            Role::Imaps => "imaps",
            Role::Pop3 => "pop3",
            Role::Pop3s => "pop3s",
            Role::ManageSieve => "managesieve",
            Role::Http => "http",
            Role::Https => "https",
        }
    }

    /// The configuration key of the listen address (`smtp_listen`, ...).
    pub fn setting_key(self) -> &'static str {
        match self {
            Role::Smtp => "smtp_listen",
            Role::Submission => "submission_listen",
            Role::Submissions => "submissions_listen",
            Role::Imap => "imap_listen",
            Role::Imaps => "imaps_listen",
            Role::Pop3 => "pop3_listen",
            Role::Pop3s => "pop3s_listen",
            Role::ManageSieve => "managesieve_listen",
            Role::Http => "http_listen",
            Role::Https => "https_listen",
        }
    }

    pub fn protocol(self) -> Protocol {
        match self {
            Role::Smtp | Role::Submission | Role::Submissions => Protocol::Smtp,
            Role::Imap | Role::Imaps => Protocol::Imap,
            Role::Pop3 | Role::Pop3s => Protocol::Pop3,
            Role::ManageSieve => Protocol::ManageSieve,
            Role::Http | Role::Https => Protocol::Http,
        }
    }

    /// True when the connection starts with a TLS handshake (no STARTTLS).
    pub fn implicit_tls(self) -> bool {
        matches!(
            self,
            Role::Submissions | Role::Imaps | Role::Pop3s | Role::Https
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
