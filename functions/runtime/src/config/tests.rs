//! Sources, precedence and the error of every kind of bad value.

use std::collections::HashMap;

use super::*;
use tempfile::TempDir;

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
    let dir = tempfile::Builder::new().prefix(name).tempdir().unwrap();
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
        (Role::ManageSieve, "127.0.0.1:4190"),
        (Role::Http, "127.0.0.1:8080"),
    ];
    assert_eq!(c.listeners.len(), Role::ALL.len());
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
    assert_eq!(c.max_connections_per_ip, 500);
    assert_eq!(c.imap.max_per_user_ip, 10);
    assert_eq!(c.tls, TlsFiles::default());
    assert_eq!(c.pop3, Pop3Settings::default());
    assert_eq!(c.pop3.idle_timeout, Duration::from_secs(600));
    assert!(!c.pop3.allow_plaintext);
    assert_eq!(c.password_min_length, 10);
    assert_eq!((c.mta_sts_port, c.tls_extra_ca.as_deref()), (443, None));
    assert_eq!(c.sweep_interval, Some(Duration::from_secs(3600)));
    assert_eq!(c.sweep_grace, Duration::from_secs(3600));
    assert_eq!(c.changes_retention, Duration::from_secs(30 * 86_400));
    let c = load(&Flags::default(), &[("STRATUS_CHANGES_RETENTION", "7")]).unwrap();
    assert_eq!(
        c.changes_retention,
        Duration::from_secs(7 * 86_400),
        "bare: days"
    );
    let c = load(
        &Flags::default(),
        &[
            ("STRATUS_SWEEP_INTERVAL", "off"),
            ("STRATUS_SWEEP_GRACE", "1s"),
        ],
    )
    .unwrap();
    assert_eq!(
        (c.sweep_interval, c.sweep_grace),
        (None, Duration::from_secs(1))
    );
    let c = load(&Flags::default(), &[("STRATUS_SWEEP_GRACE", "10m")]).unwrap();
    assert_eq!(c.sweep_grace, Duration::from_secs(600));
    for (env, bad) in [
        ("STRATUS_SWEEP_GRACE", "0"),
        ("STRATUS_SWEEP_GRACE", "500ms"),
        ("STRATUS_SWEEP_GRACE", "soon"),
        ("STRATUS_SWEEP_INTERVAL", "0s"),
    ] {
        assert!(
            load(&Flags::default(), &[(env, bad)]).is_err(),
            "{env}={bad}"
        );
    }
    let c = load(
        &Flags::default(),
        &[
            ("STRATUS_MTA_STS_PORT", "8443"),
            ("STRATUS_TLS_EXTRA_CA", "/etc/stratus/ca.pem"),
        ],
    )
    .unwrap();
    assert_eq!(c.mta_sts_port, 8443);
    assert_eq!(
        c.tls_extra_ca.as_deref(),
        Some(Path::new("/etc/stratus/ca.pem"))
    );
    for bad in ["0", "65536", "https"] {
        assert!(load(&Flags::default(), &[("STRATUS_MTA_STS_PORT", bad)]).is_err());
    }
    let c = load(&Flags::default(), &[("STRATUS_PASSWORD_MIN_LENGTH", "16")]).unwrap();
    assert_eq!(c.password_min_length, 16);
    for bad in ["0", "ten", "2000"] {
        assert!(load(&Flags::default(), &[("STRATUS_PASSWORD_MIN_LENGTH", bad)]).is_err());
    }
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
    assert_eq!(
        c.listeners.len(),
        Role::ALL.len() - 2,
        "http and imaps are off"
    );
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

#[test]
fn metrics_access_settings_parse_and_the_token_is_never_shown() {
    let c = load(&Flags::default(), &[]).unwrap();
    let defaults: Vec<String> = c.metrics_allow.iter().map(|n| n.to_string()).collect();
    assert_eq!(defaults, ["127.0.0.0/8", "::1/128"]);
    assert_eq!(c.metrics_token, None);

    let env = [
        ("STRATUS_METRICS_ALLOW", "10.40.0.0/16, 192.0.2.7"),
        ("STRATUS_METRICS_TOKEN", "s3cret-scrape-token-0123"),
    ];
    let c = load(&Flags::default(), &env).unwrap();
    let allowed: Vec<String> = c.metrics_allow.iter().map(|n| n.to_string()).collect();
    assert_eq!(allowed, ["10.40.0.0/16", "192.0.2.7/32"]);
    assert_eq!(
        c.metrics_token.as_ref().unwrap().0,
        "s3cret-scrape-token-0123"
    );
    assert!(!format!("{c:?}").contains("s3cret"), "Debug never shows it");

    let e = load(
        &Flags::default(),
        &[("STRATUS_METRICS_ALLOW", "10.0.0.0/33")],
    )
    .unwrap_err();
    assert!(e.to_string().contains("STRATUS_METRICS_ALLOW"), "{e}");
    let e = load(
        &Flags::default(),
        &[("STRATUS_METRICS_TOKEN", "short-s3cret")],
    )
    .unwrap_err();
    assert!(e.to_string().contains("at least 16"), "{e}");
    assert!(!e.to_string().contains("s3cret"), "{e}");
}
