//! Drives the `stratus` binary as a user would: commands with arguments,
//! passwords on stdin, `serve` as a child process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use stratus_store_aws::AwsSettings;
use tempfile::TempDir;

/// The `stratus` binary next to this test binary (`target/debug/stratus`),
/// or `STRATUS_BIN`.
pub fn stratus_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("STRATUS_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("stratus");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (tests/run.sh does)",
        bin.display()
    );
    bin
}

/// A user's environment: a scratch directory, a data directory in it, and
/// the settings of one backend. Nothing leaks in from the caller's
/// environment.
#[derive(Debug)]
pub struct Env {
    pub dir: TempDir,
    pub vars: Vec<(String, String)>,
    /// Every DNS lookup of the server goes here; no test touches the internet.
    pub dns: stratus_auth::fixture::DnsFixture,
    /// `serve` processes started here: killed when the environment goes,
    /// so a failing test leaves no server behind.
    pub servers: std::sync::Mutex<Vec<u32>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        let pids = self.servers.lock().map(|p| p.clone()).unwrap_or_default();
        for pid in pids {
            // Already gone (stopped by the test) is fine.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Env {
    pub fn local() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let dns = stratus_auth::fixture::DnsFixture::start();
        let vars = vec![
            ("STRATUS_DATA_DIR".into(), data.display().to_string()),
            ("STRATUS_DNS_RESOLVER".into(), dns.addr().to_string()),
            ("STRATUS_HOSTNAME".into(), "mx.test.example".into()),
            // A job a killed server held comes back after this (seconds).
            ("STRATUS_STAGE_VISIBILITY".into(), "3".into()),
        ];
        Env {
            vars,
            dir,
            dns,
            servers: std::sync::Mutex::default(),
        }
    }

    pub fn aws(settings: &AwsSettings) -> Self {
        let mut env = Env::local();
        let mut set = |k: &str, v: &str| env.vars.push((k.into(), v.into()));
        set("STRATUS_BACKEND", "aws");
        set(
            "STRATUS_AWS_ENDPOINT",
            settings.endpoint.as_deref().unwrap_or_default(),
        );
        if let Some(ddb) = &settings.dynamodb_endpoint {
            set("STRATUS_DYNAMODB_ENDPOINT", ddb);
        }
        set("AWS_REGION", &settings.region);
        set("STRATUS_S3_BUCKET", &settings.bucket);
        set("STRATUS_ARCHIVE_BUCKET", &settings.archive_bucket);
        set("STRATUS_DYNAMODB_TABLE", &settings.table);
        set("STRATUS_QUEUE_PREFIX", &settings.queue_prefix);
        set(
            "AWS_ACCESS_KEY_ID",
            &std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".into()),
        );
        set(
            "AWS_SECRET_ACCESS_KEY",
            &std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".into()),
        );
        env
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.into(), value.into()));
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(stratus_bin());
        for (k, _) in std::env::vars() {
            if k.starts_with("STRATUS_") || k.starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(args)
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path());
        cmd
    }

    /// Runs `stratus ARGS` with `stdin` as its standard input.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stratus");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("write stdin");
        let run: Run = child.wait_with_output().expect("wait for stratus").into();
        assert!(
            !run.stderr.contains("panicked"),
            "stratus {args:?} panicked:\n{}",
            run.stderr
        );
        run
    }

    /// Runs `stratus args` and checks that it fails with `code` (1: a
    /// refusal, 2: bad input) and says `why` on stderr.
    pub fn refuses(&self, args: &[&str], code: i32, why: &str) {
        let run = self.run(args, b"");
        assert_eq!(run.code, code, "stratus {args:?}: {}", run.stderr);
        assert!(run.stderr.contains(why), "stratus {args:?}: {}", run.stderr);
    }

    /// Runs a command that must succeed.
    pub fn ok(&self, args: &[&str], stdin: &[u8]) -> String {
        let run = self.run(args, stdin);
        assert_eq!(
            run.code, 0,
            "stratus {args:?} failed:\n{}{}",
            run.stdout, run.stderr
        );
        run.stdout
    }

    /// Starts `stratus serve` with every listener on a free port.
    pub fn serve(&self, extra: &[&str]) -> Child {
        let mut cmd = self.command(&[&["serve"], extra].concat());
        for var in [
            "STRATUS_SMTP_LISTEN",
            "STRATUS_SUBMISSION_LISTEN",
            "STRATUS_SUBMISSIONS_LISTEN",
            "STRATUS_IMAP_LISTEN",
            "STRATUS_IMAPS_LISTEN",
            "STRATUS_POP3_LISTEN",
            "STRATUS_POP3S_LISTEN",
            "STRATUS_MANAGESIEVE_LISTEN",
            "STRATUS_HTTP_LISTEN",
            "STRATUS_HTTPS_LISTEN",
        ] {
            if !self.vars.iter().any(|(k, _)| k == var) {
                cmd.env(var, "127.0.0.1:0");
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stratus serve");
        if let Ok(mut servers) = self.servers.lock() {
            servers.push(child.id());
        }
        child
    }
}

/// Stops a `serve` child with SIGTERM and checks it exits cleanly.
pub fn stop(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// Waits (bounded) for `listeners.json` and returns it.
pub async fn wait_for_listeners(data_dir: &Path, child: &mut Child) -> serde_json::Value {
    crate::eventually(Duration::from_secs(60), "listeners.json", || {
        let exited = child.try_wait().expect("child status");
        assert!(exited.is_none(), "stratus serve exited early: {exited:?}");
        let file = data_dir.join("listeners.json");
        async move {
            std::fs::read(&file)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
        }
    })
    .await
}

/// The admin commands of the operator contract, on whichever backend `env`
/// names; `index` reads what they stored.
pub async fn admin_round_trip(env: &Env, index: std::sync::Arc<dyn stratus_core::Index>) {
    use stratus_core::accounts::Accounts;
    use stratus_core::{Address, password};

    let accounts = Accounts::new(index);
    let refused = env.run(
        &["user", "add", "alice@example.com", "--password-stdin"],
        b"pw\n",
    );
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("example.com is not hosted here"),
        "{}",
        refused.stderr
    );

    assert!(
        env.ok(&["domain", "add", "Example.COM"], b"")
            .contains("example.com")
    );
    let dup = env.run(&["domain", "add", "example.com"], b"");
    assert_eq!(dup.code, 1);
    assert!(dup.stderr.contains("already exists"), "{}", dup.stderr);
    let bad = env.run(&["domain", "add", "exa mple.com"], b"");
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("exa mple.com") && bad.stderr.contains("invalid"),
        "{}",
        bad.stderr
    );
    env.ok(&["domain", "add", "bücher.example"], b"");
    let domains = env.ok(&["domain", "list"], b"");
    assert!(
        domains.contains("example.com") && domains.contains("bücher.example"),
        "{domains}"
    );

    // One line, without its terminator; spaces inside are the password's own.
    env.ok(
        &[
            "user",
            "add",
            "alice@example.com",
            "--password-stdin",
            "--quota",
            "2G",
        ],
        b" two words \r\nignored\n",
    );
    env.ok(
        &["user", "add", "jörg@bücher.example", "--password-stdin"],
        b"p\xc3\xa4ssw\xc3\xb6rter\n",
    );
    // Too short, and too common: refused as bad input, nothing stored.
    for (password, why) in [
        (&b"nine char\n"[..], "shorter than 10 characters"),
        (&b"Password123\n"[..], "most common"),
    ] {
        let weak = env.run(
            &["user", "add", "weak@example.com", "--password-stdin"],
            password,
        );
        assert_eq!(weak.code, 2, "{weak:?}");
        assert!(weak.stderr.contains(why), "{}", weak.stderr);
    }
    assert!(
        accounts
            .user(&Address::parse("weak@example.com").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let bad = env.run(
        &["user", "add", "not-an-address", "--password-stdin"],
        b"pw\n",
    );
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("not-an-address"), "{}", bad.stderr);
    let dup = env.run(
        &["user", "add", "ALICE@example.com", "--password-stdin"],
        b"pw\n",
    );
    assert_eq!(dup.code, 1, "{dup:?}");

    let alice = Address::parse("alice@example.com").unwrap();
    let record = accounts.user(&alice).await.unwrap().expect("alice stored");
    assert!(
        record.password_hash.starts_with("$argon2id$"),
        "stored as Argon2id"
    );
    assert!(password::verify(&record.password_hash, " two words "));
    assert!(!password::verify(&record.password_hash, " two words \r"));
    assert_eq!(record.quota, Some(2 << 30));
    let jorg = accounts
        .user(&Address::parse("jörg@bücher.example").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(password::verify(&jorg.password_hash, "pässwörter"));
    let mut boxes: Vec<String> = accounts
        .mailboxes(&alice)
        .await
        .unwrap()
        .iter()
        .map(|m| m.name.to_string())
        .collect();
    boxes.sort();
    assert_eq!(
        boxes,
        ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]
    );

    let users = env.ok(&["user", "list"], b"");
    assert!(
        users.contains("alice@example.com") && users.contains("jörg@"),
        "{users}"
    );
    assert!(!users.contains("argon2"), "no hashes in listings");

    env.ok(
        &["user", "passwd", "alice@example.com", "--password-stdin"],
        b"new secret\n",
    );
    let record = accounts.user(&alice).await.unwrap().unwrap();
    assert!(password::verify(&record.password_hash, "new secret"));
    assert_eq!(record.quota, Some(2 << 30), "passwd keeps the quota");

    // One sweep on demand: nothing is unreferenced yet.
    let swept = env.ok(&["sweep"], b"");
    assert!(
        swept.starts_with(
            "swept: 0 message entries reference stored bodies; 0 message blobs seen\n"
        ),
        "{swept}"
    );
    assert!(swept.contains("0 deleted (0 B freed)"), "{swept}");

    // Quotas change and go; usage shows in the listing.
    assert_eq!(
        env.ok(&["user", "quota", "alice@example.com", "500M"], b""),
        "quota of alice@example.com is 500 MiB (used 0 B)\n"
    );
    assert!(
        env.ok(&["user", "list", "example.com"], b"")
            .contains("quota 500 MiB  used 0 B")
    );
    env.ok(&["user", "quota", "alice@example.com", "none"], b"");
    assert_eq!(accounts.user(&alice).await.unwrap().unwrap().quota, None);
    assert_eq!(
        env.run(&["user", "quota", "alice@example.com", "lots"], b"")
            .code,
        2
    );
    assert_eq!(
        env.run(&["user", "quota", "nobody@example.com", "1G"], b"")
            .code,
        1
    );

    // Identities: granted, listed, refused twice, taken back.
    env.ok(
        &[
            "user",
            "identity",
            "add",
            "alice@example.com",
            "ceo@Example.com",
        ],
        b"",
    );
    let again = env.run(
        &[
            "user",
            "identity",
            "add",
            "alice@example.com",
            "ceo@example.com",
        ],
        b"",
    );
    assert_eq!(again.code, 1, "{again:?}");
    assert_eq!(
        env.ok(&["user", "identity", "list", "alice@example.com"], b""),
        "ceo@example.com\n"
    );
    let ceo = Address::parse("ceo@example.com").unwrap();
    assert!(accounts.may_send_as(&alice, &ceo).await.unwrap());
    env.ok(
        &[
            "user",
            "identity",
            "del",
            "alice@example.com",
            "ceo@example.com",
        ],
        b"",
    );
    assert!(!accounts.may_send_as(&alice, &ceo).await.unwrap());
    assert_eq!(
        env.run(
            &[
                "user",
                "identity",
                "add",
                "nobody@example.com",
                "ceo@example.com"
            ],
            b""
        )
        .code,
        1
    );

    let busy = env.run(&["domain", "del", "example.com"], b"");
    assert_eq!(busy.code, 1);
    assert!(busy.stderr.contains("still has 1 user"), "{}", busy.stderr);
    env.ok(&["user", "del", "alice@example.com"], b"");
    assert!(accounts.user(&alice).await.unwrap().is_none());
    assert!(accounts.mailboxes(&alice).await.unwrap().is_empty());
    env.ok(&["domain", "del", "example.com"], b"");
    assert!(!env.ok(&["domain", "list"], b"").contains("example.com"));

    // What the command line changed is in the audit log, by the shell's
    // user; what failed or only read is not.
    let log = env.ok(&["audit", "--limit", "1000"], b"");
    let actions: Vec<&str> = log.lines().filter_map(|l| l.split("  ").nth(3)).collect();
    for action in [
        "domain.add",
        "user.add",
        "user.identity.add",
        "user.identity.delete",
        "user.delete",
        "domain.delete",
    ] {
        assert!(actions.contains(&action), "{action} not audited:\n{log}");
    }
    assert!(log.lines().all(|l| l.contains("  cli:")), "{log}");
    assert_eq!(
        actions.iter().filter(|a| **a == "domain.add").count(),
        2,
        "example.com and bücher.example; not the refused ones:\n{log}"
    );
    assert!(
        !actions.contains(&"domain.list") && !log.contains("domain.dns"),
        "{log}"
    );
    assert_eq!(
        log.lines().next().map(|l| l.contains("domain.delete")),
        Some(true),
        "newest first:\n{log}"
    );
}

/// The whole response (head and body) to `GET path` from `addr`.
async fn http_get(addr: &str, path: &str) -> String {
    http_call(addr, "GET", path, "", "").await
}

/// The whole response to `method path` with `headers` (CRLF-terminated
/// lines) and a JSON `body`.
pub async fn http_call(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut http = tokio::net::TcpStream::connect(addr).await.unwrap();
    let length = match body {
        "" => String::new(),
        b => format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ),
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}{length}\r\n{body}"
    );
    http.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), http.read_to_end(&mut reply))
        .await
        .expect("the HTTP service answers")
        .unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

/// Python's HTTPS client (no certificate check: the certificate is
/// self-signed) GETs argv[2] from argv[1]; prints the status and the body.
const HTTPS_GET: &str = r#"
import http.client, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)
c.request("GET", sys.argv[2])
r = c.getresponse()
print(r.status, r.read().decode(), end="")
"#;

/// `serve` binds every listener, writes `listeners.json`, answers honestly
/// that the protocols not there yet are not, lets admin commands run beside it,
/// and stops cleanly on SIGTERM.
pub async fn serve_lifecycle(env: &Env) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    let roles = [
        "smtp",
        "submission",
        "submissions",
        "imap",
        "imaps",
        "pop3",
        "pop3s",
        "http",
        "https",
    ];
    for role in roles {
        let addr = listeners[role]
            .as_str()
            .unwrap_or_else(|| panic!("{role} missing from {listeners}"));
        assert!(!addr.ends_with(":0"), "{role} bound to a real port: {addr}");
    }
    let (mut smtp, hello) = crate::smtp::RawSmtp::connect(listeners["smtp"].as_str().unwrap())
        .await
        .unwrap();
    assert!(hello.starts_with("220 "), "{hello}");
    assert!(smtp.cmd("QUIT").await.unwrap().starts_with("221"));
    let (mut submission, hello) =
        crate::smtp::RawSmtp::connect(listeners["submission"].as_str().unwrap())
            .await
            .unwrap();
    assert!(hello.starts_with("220 "), "{hello}");
    assert!(submission.cmd("QUIT").await.unwrap().starts_with("221"));
    let mut imap = tokio::net::TcpStream::connect(listeners["imap"].as_str().unwrap())
        .await
        .unwrap();
    imap.write_all(b"a LOGOUT\r\n").await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), imap.read_to_end(&mut reply))
        .await
        .expect("IMAP replies")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with("* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
            && reply.ends_with("a OK LOGOUT completed\r\n"),
        "{reply}"
    );
    let mut pop3 = tokio::net::TcpStream::connect(listeners["pop3"].as_str().unwrap())
        .await
        .unwrap();
    pop3.write_all(b"QUIT\r\n").await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), pop3.read_to_end(&mut reply))
        .await
        .expect("POP3 replies")
        .unwrap();
    assert!(
        reply.starts_with(b"+OK "),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    let mut http = tokio::net::TcpStream::connect(listeners["http"].as_str().unwrap())
        .await
        .unwrap();
    http.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    http.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with("\r\n\r\nok\n"),
        "{reply}"
    );
    // HTTPS, with the certificate the mail listeners use: the stores are
    // reachable.
    let said = crate::smtp::python(
        HTTPS_GET,
        &[listeners["https"].as_str().unwrap(), "/readyz"],
    );
    assert_eq!(said, "200 ready\n", "{said}");

    // Admin commands work while serve runs on the same data.
    env.ok(&["domain", "add", "live.example"], b"");
    env.ok(
        &["user", "add", "carol@live.example", "--password-stdin"],
        b"carol password\n",
    );
    assert!(
        env.ok(&["user", "list", "live.example"], b"")
            .contains("carol@live.example")
    );

    // What happened shows in /metrics (from loopback, no token needed):
    // sessions, the message, its delivery, the stages and the stores.
    let (mut smtp, _) = crate::smtp::RawSmtp::connect(listeners["smtp"].as_str().unwrap())
        .await
        .unwrap();
    smtp.cmd("EHLO client.example").await.unwrap();
    let r = smtp
        .transaction(
            "someone@outside.example",
            &["carol@live.example"],
            b"From: someone@outside.example\r\nTo: carol@live.example\r\nSubject: counted\r\n\r\nHello.\r\n",
        )
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    smtp.cmd("QUIT").await.unwrap();
    let http = listeners["http"].as_str().unwrap().to_string();
    let metrics = crate::eventually(Duration::from_secs(60), "the delivery in /metrics", || {
        let http = http.clone();
        async move {
            let text = http_get(&http, "/metrics").await;
            text.contains("stratus_deliveries_total{result=\"delivered\"} 1")
                .then_some(text)
        }
    })
    .await;
    let backend = if env
        .vars
        .iter()
        .any(|(k, v)| k == "STRATUS_BACKEND" && v == "aws")
    {
        "aws"
    } else {
        "local"
    };
    for want in [
        "content-type: application/openmetrics-text".to_string(),
        "stratus_smtp_messages_total{role=\"mx\",result=\"accepted\",reason=\"none\"} 1".into(),
        "stratus_sessions_total{role=\"smtp\"} 2".into(),
        "stratus_stage_jobs_total{stage=\"deliver\",result=\"ok\"} 1".into(),
        "stratus_stage_duration_seconds_count{stage=\"inbound\"} 1".into(),
        "stratus_queue_depth{stage=\"send\",state=\"visible\"} 0".into(),
        format!(
            "stratus_store_operation_duration_seconds_count{{backend=\"{backend}\",store=\"blob\",op=\"put\"}}"
        ),
        "# EOF".into(),
    ] {
        assert!(metrics.contains(&want), "{want} in {metrics}");
    }

    // The admin API, with a key made on the command line: a domain added
    // over HTTP is there for the command line too, and audited.
    let key = env.ok(&["apikey", "create", "--role", "admin"], b"");
    let key = key.trim();
    assert!(key.starts_with("stratus_"), "{key}");
    let auth = format!("Authorization: Bearer {key}\r\n");
    let made = http_call(
        &http,
        "POST",
        "/api/v1/domains",
        &auth,
        r#"{"name": "api.example"}"#,
    )
    .await;
    assert!(made.starts_with("HTTP/1.1 201"), "{made}");
    assert!(env.ok(&["domain", "list"], b"").contains("api.example"));
    let listed = http_call(&http, "GET", "/api/v1/domains?limit=1", &auth, "").await;
    assert!(
        listed.starts_with("HTTP/1.1 200") && listed.contains(r#""next":""#),
        "{listed}"
    );
    let audit = http_call(&http, "GET", "/api/v1/audit", &auth, "").await;
    assert!(
        audit.contains(r#""action":"domain.add""#) && audit.contains(r#""from":"127.0.0.1""#),
        "{audit}"
    );
    // The API describes itself, without a key.
    let doc = http_call(&http, "GET", "/api/v1/openapi.json", "", "").await;
    assert!(
        doc.starts_with("HTTP/1.1 200") && doc.contains("\"openapi\": \"3.1.0\""),
        "{}",
        &doc[..doc.len().min(400)]
    );
    assert_eq!(
        doc.split("\r\n\r\n").nth(1).map(str::trim),
        Some(env.ok(&["openapi"], b"").trim()),
        "the served document is the one `stratus openapi` prints"
    );
    let id = key.split('_').nth(1).unwrap();
    assert!(env.ok(&["apikey", "revoke", id], b"").contains("revoked"));
    let refused = http_call(&http, "GET", "/api/v1/domains", &auth, "").await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "serve exited with {:?}:\n{stderr}",
        output.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !env.data_dir().join("listeners.json").exists(),
        "listeners.json removed at shutdown"
    );
}
