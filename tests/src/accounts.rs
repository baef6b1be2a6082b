//! Accounts as their owners and admins meet them through `stratus serve`:
//! app passwords made on the command line log in with real clients
//! (imaplib, poplib, smtplib over STARTTLS); a deleted app password, a new
//! password and a disabled account end open sessions in the running
//! server, though the change was made by another process; a user given a
//! role signs in on the web and administers.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::cli::{Env, http_call, stop, wait_for_listeners};
use crate::smtp::{Look, add_users, python};

/// imaplib, poplib and smtplib log in with argv[4] as alice over
/// STARTTLS (IMAP argv[1], POP3 argv[2], submission argv[3]).
const CLIENTS: &str = r#"
import imaplib, poplib, smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def hp(a):
    h, p = a.rsplit(":", 1); return h, int(p)
pw = sys.argv[4]
M = imaplib.IMAP4(*hp(sys.argv[1])); M.starttls(ssl_context=ctx)
print("imap", M.login("alice@example.com", pw)[0]); M.logout()
P = poplib.POP3(*hp(sys.argv[2])); P.stls(context=ctx)
P.user("alice@example.com"); print("pop3", P.pass_(pw).decode().split()[0]); P.quit()
S = smtplib.SMTP(*hp(sys.argv[3])); S.starttls(context=ctx)
print("smtp", S.login("alice@example.com", pw)[0]); S.quit()
"#;

/// A raw IMAP session held open from this process.
struct Imap {
    lines: BufReader<TcpStream>,
}

impl Imap {
    /// Connects and logs in (plain text is allowed from loopback).
    async fn login(addr: &str, user: &str, password: &str) -> Result<Imap, String> {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut imap = Imap {
            lines: BufReader::new(stream),
        };
        let greeting = imap.line().await;
        assert!(greeting.starts_with("* OK"), "{greeting}");
        let reply = imap
            .command(&format!("a LOGIN {user} \"{password}\""))
            .await;
        if reply.starts_with("a OK") {
            Ok(imap)
        } else {
            Err(reply)
        }
    }

    /// The next line; the server has 30 s to send it.
    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(30), self.lines.read_line(&mut line))
            .await
            .expect("the server sends a line")
            .unwrap();
        line.trim_end().to_string()
    }

    /// Sends a command; its tagged reply.
    async fn command(&mut self, text: &str) -> String {
        self.lines_of(text).await.pop().unwrap_or_default()
    }

    /// Sends a command; every line of its answer, the tagged reply last.
    async fn lines_of(&mut self, text: &str) -> Vec<String> {
        let tag = text.split(' ').next().unwrap().to_string();
        self.lines
            .get_mut()
            .write_all(format!("{text}\r\n").as_bytes())
            .await
            .unwrap();
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

const EXPIRED: &str = "* BYE [EXPIRED] your credentials changed; sign in again";

pub async fn app_passwords_and_revocations(env: &mut Env, _look: Look) {
    add_users(env);
    let made = env.ok(
        &[
            "user",
            "app-password",
            "add",
            "alice@example.com",
            "Thunderbird",
        ],
        b"",
    );
    let thunderbird = made.trim().to_string();
    assert_eq!(thunderbird.len(), 24, "the password alone: {made:?}");
    let listed = env.ok(&["user", "app-password", "list", "alice@example.com"], b"");
    assert!(listed.starts_with("Thunderbird  "), "{listed}");
    assert!(!listed.contains(&thunderbird[5..]), "{listed}");

    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    let at = |role: &str| listeners[role].as_str().unwrap().to_string();
    let (imap, pop3, submission) = (at("imap"), at("pop3"), at("submission"));

    // Real clients, over STARTTLS, with the app password.
    let out = python(CLIENTS, &[&imap, &pop3, &submission, &thunderbird]);
    assert!(
        out.contains("imap OK") && out.contains("pop3 +OK") && out.contains("smtp 235"),
        "{out}"
    );

    // Deleting the app password (another process) ends its session, not
    // the one signed in with the account password.
    let mut app = Imap::login(&imap, "alice@example.com", &thunderbird)
        .await
        .unwrap();
    let mut main = Imap::login(&imap, "alice@example.com", "alice password")
        .await
        .unwrap();
    let mut bob = Imap::login(&imap, "bob@example.com", "bob password")
        .await
        .unwrap();
    env.ok(
        &[
            "user",
            "app-password",
            "del",
            "alice@example.com",
            "Thunderbird",
        ],
        b"",
    );
    assert_eq!(app.line().await, EXPIRED);
    assert!(main.command("b NOOP").await.starts_with("b OK"));
    let refused = Imap::login(&imap, "alice@example.com", &thunderbird).await;
    assert!(refused.is_err_and(|r| r.contains("AUTHENTICATIONFAILED")));

    // A new password ends the sessions begun before it.
    env.ok(
        &["user", "passwd", "alice@example.com", "--password-stdin"],
        b"alice new password\n",
    );
    assert_eq!(main.line().await, EXPIRED);
    let mut fresh = Imap::login(&imap, "alice@example.com", "alice new password")
        .await
        .unwrap();

    // Disabled: sessions end, the right password is refused; mail still
    // arrives. Enabled again: it logs in.
    assert!(
        env.ok(&["user", "disable", "alice@example.com"], b"")
            .contains("disabled")
    );
    assert_eq!(fresh.line().await, EXPIRED);
    let refused = Imap::login(&imap, "alice@example.com", "alice new password").await;
    assert!(refused.is_err_and(|r| r.contains("AUTHENTICATIONFAILED")));
    python(
        "import smtplib,sys\nh,p=sys.argv[1].rsplit(':',1)\nwith smtplib.SMTP(h,int(p)) as s: s.sendmail('x@remote.example',['alice@example.com'],'Subject: while away\\r\\n\\r\\nx\\r\\n')",
        &[&at("smtp")],
    );
    env.ok(&["user", "enable", "alice@example.com"], b"");
    let mut back = Imap::login(&imap, "alice@example.com", "alice new password")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = back.lines_of("c STATUS INBOX (MESSAGES)").await;
        if status[0] == "* STATUS \"INBOX\" (MESSAGES 1)" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the mail sent while disabled never arrived: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Bob was never touched.
    assert!(bob.command("e NOOP").await.starts_with("e OK"));

    // Given a role, Alice signs in on the web and administers: her
    // session cookie works like a key, and changes need its CSRF token.
    let http = at("http");
    let body = r#"{"address": "alice@example.com", "password": "alice new password"}"#;
    let early = http_call(&http, "POST", "/api/v1/session", "", body).await;
    assert!(early.starts_with("HTTP/1.1 201"), "{early}");
    let (cookie, _) = session_of(&early);
    let refused = http_call(&http, "GET", "/api/v1/domains", &cookie, "").await;
    assert!(
        refused.starts_with("HTTP/1.1 403"),
        "no role yet: {refused}"
    );
    assert!(
        env.ok(&["user", "role", "alice@example.com", "admin"], b"")
            .contains("is an admin")
    );
    let listed = http_call(&http, "GET", "/api/v1/domains", &cookie, "").await;
    assert!(
        listed.starts_with("HTTP/1.1 200") && listed.contains(r#""name":"example.com""#),
        "{listed}"
    );
    let new_domain = r#"{"name": "web.example"}"#;
    let forged = http_call(&http, "POST", "/api/v1/domains", &cookie, new_domain).await;
    assert!(forged.starts_with("HTTP/1.1 403"), "{forged}");
    let (_, csrf) = session_of(&early);
    let with_token = format!("{cookie}X-CSRF-Token: {csrf}\r\n");
    let added = http_call(&http, "POST", "/api/v1/domains", &with_token, new_domain).await;
    assert!(added.starts_with("HTTP/1.1 201"), "{added}");
    assert!(env.ok(&["domain", "list"], b"").contains("web.example"));
    // A new password set on the command line ends the web session too.
    env.ok(
        &["user", "passwd", "alice@example.com", "--password-stdin"],
        b"alice third password\n",
    );
    let ended = http_call(&http, "GET", "/api/v1/domains", &cookie, "").await;
    assert!(ended.starts_with("HTTP/1.1 401"), "{ended}");
    stop(child);
}

/// The `Cookie:` header line and the CSRF token of a sign-in's answer.
fn session_of(answer: &str) -> (String, String) {
    let cookie = answer
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie:")
                .then(|| l[11..].trim().split(';').next().unwrap().to_string())
        })
        .expect("a session cookie");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).expect("a JSON session");
    let csrf = json["csrf_token"]
        .as_str()
        .expect("a CSRF token")
        .to_string();
    (format!("Cookie: {cookie}\r\n"), csrf)
}
