//! Parsers of settings' text into typed values. Each error names the
//! setting and where its value came from ([`Raw::invalid`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use stratus_store_aws::AwsSettings;

use super::{ConfigError, Origin, Raw, lookup};

pub(super) fn non_empty(raw: &Raw) -> Result<String, ConfigError> {
    if raw.value.trim().is_empty() {
        Err(raw.invalid("must not be empty"))
    } else {
        Ok(raw.value.clone())
    }
}

pub(super) fn parse_bool(raw: &Raw) -> Result<bool, ConfigError> {
    match raw.value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(raw.invalid("expected `true` or `false`")),
    }
}

/// Addresses and ranges (`127.0.0.0/8`, `::1`) separated by commas.
pub(super) fn parse_nets(raw: &Raw) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    raw.value
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse::<ipnet::IpNet>()
                .or_else(|_| a.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| raw.invalid("expected addresses or ranges (127.0.0.0/8) separated by commas"))
}

pub(super) fn optional_path(raw: &Raw) -> Option<PathBuf> {
    let v = raw.value.trim();
    (!v.is_empty()).then(|| PathBuf::from(v))
}

/// A whole number from `min` to `max`.
pub(super) fn parse_count(raw: &Raw, min: usize, max: usize) -> Result<usize, ConfigError> {
    match raw.value.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(raw.invalid(format!("expected a whole number from {min} to {max}"))),
    }
}

/// A duration: a number with a unit (`ms`, `s`, `m`, `h`, `d`), or a bare
/// number of `bare` units, from `min` to `max`; `expected` says so when
/// it is not.
pub(super) fn parse_duration(
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
pub(super) fn parse_seconds(raw: &Raw) -> Result<Duration, ConfigError> {
    let bounds = (Duration::from_secs(1), Duration::from_secs(86_400));
    parse_duration(
        raw,
        Duration::from_secs(1),
        bounds,
        "expected seconds from 1 to 86400, e.g. 300, 300s or 5m",
    )
}

/// A long duration (`5d`, `12h`, bare seconds), from 10 s to 30 days.
pub(super) fn parse_lifetime(raw: &Raw) -> Result<Duration, ConfigError> {
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
pub(super) fn parse_millis(raw: &Raw) -> Result<Duration, ConfigError> {
    let bounds = (Duration::from_millis(10), Duration::from_secs(600));
    parse_duration(
        raw,
        Duration::from_millis(1),
        bounds,
        "expected an interval from 10ms to 600s, e.g. 500ms or 2s",
    )
}

pub(super) fn parse_listen(raw: &Raw) -> Result<Option<SocketAddr>, ConfigError> {
    let v = raw.value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| {
        raw.invalid("expected IP:PORT (e.g. 127.0.0.1:2525 or [::]:25; port 0 picks a free port), or an empty value to turn the listener off")
    })
}

pub(super) fn parse_resolver(raw: &Raw) -> Result<Option<SocketAddr>, ConfigError> {
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

pub(super) fn parse_hostname(raw: &Raw) -> Result<String, ConfigError> {
    let v = raw.value.trim();
    if valid_hostname(v) {
        Ok(v.to_ascii_lowercase())
    } else {
        Err(raw
            .invalid("expected a host name of letters, digits, `-` and `.` (at most 253 octets)"))
    }
}

pub(super) fn parse_endpoint(raw: &Raw) -> Result<Option<String>, ConfigError> {
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

pub(super) fn aws_settings(
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

/// `STRATUS_CLAMD` and its companions: `None` when the address is empty.
pub(super) fn parse_clamd<'a>(
    get: &impl Fn(&str) -> &'a Raw,
) -> Result<Option<super::ClamdSettings>, ConfigError> {
    use super::{ClamdAddress, ClamdSettings, ClamdUnavailable};
    let raw = get("clamd");
    let value = raw.value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let address = match value.strip_prefix("unix:") {
        Some(path) if path.starts_with('/') => ClamdAddress::Unix(PathBuf::from(path)),
        Some(_) => return Err(raw.invalid("a unix socket needs an absolute path: unix:/path")),
        None => match value.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                ClamdAddress::Tcp(value.to_string())
            }
            _ => return Err(raw.invalid("expected unix:/path or host:port")),
        },
    };
    let timeout_raw = get("clamd_timeout");
    let bounds = (Duration::from_secs(1), Duration::from_secs(600));
    let timeout = parse_duration(
        timeout_raw,
        Duration::from_secs(1),
        bounds,
        "expected seconds from 1 to 600, e.g. 30 or 30s",
    )?;
    let scan = get("clamd_scan");
    let scan_all = match scan.value.trim().to_ascii_lowercase().as_str() {
        "attachments" => false,
        "all" => true,
        _ => return Err(scan.invalid("expected `attachments` or `all`")),
    };
    let unavailable_raw = get("clamd_unavailable");
    let unavailable = match unavailable_raw.value.trim().to_ascii_lowercase().as_str() {
        "tempfail" => ClamdUnavailable::Tempfail,
        "accept" => ClamdUnavailable::Accept,
        _ => return Err(unavailable_raw.invalid("expected `tempfail` or `accept`")),
    };
    Ok(Some(ClamdSettings {
        address,
        timeout,
        scan_all,
        unavailable,
    }))
}
