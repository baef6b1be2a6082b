//! POP3 against `stratus serve` with real clients: fetchmail in keep and
//! delete modes, IMAP and POP3 on one INBOX, and the maildrop lock across
//! two gateways.

use std::process::Command;

use crate::cli::{Env, stop, wait_for_listeners};
use crate::imap::seed;
use crate::smtp::{Look, add_users, python};

/// Runs fetchmail once against `pop3` with `mode` (`keep` or
/// `nokeep fetchall`), appending what it fetches to `out`.
fn fetchmail(env: &Env, pop3: &str, mode: &str, out: &std::path::Path) {
    let (host, port) = pop3.rsplit_once(':').unwrap();
    let home = env.dir.path();
    let rc = home.join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set no bouncemail\npoll {host} port {port} protocol pop3 uidl\n  user \"alice@example.com\" there with password \"alice password\" is \"root\" here\n  sslproto ''\n  {mode}\n  mda \"/bin/sh -c 'cat >> {}'\"\n",
            out.display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // As root, fetchmail keeps its lock in /var/run whatever FETCHMAILHOME
    // says, so tests running side by side need a lock file of their own.
    let run = Command::new("fetchmail")
        .args(["--nosyslog", "-N", "--pidfile"])
        .arg(home.join("fetchmail.pid"))
        .arg("-f")
        .arg(&rc)
        .env("HOME", home)
        .env("FETCHMAILHOME", home)
        .output()
        .expect("fetchmail (Debian package) is installed");
    // 0: mail fetched; 1: no mail.
    let code = run.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "fetchmail exited {code}:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

fn subjects(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("Subject: "))
        .map(str::to_string)
        .collect()
}

/// fetchmail keeps mail on the server and fetches only what is new next
/// time (UIDL), then in delete mode fetches everything and empties the
/// maildrop.
pub async fn fetchmail_keep_then_delete(env: &Env, look: Look) {
    add_users(env);
    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    let pop3 = listeners["pop3"].as_str().unwrap().to_string();
    seed(&look, "alice@example.com", 3, "first").await;
    let out = env.dir.path().join("fetched.mbox");
    fetchmail(env, &pop3, "keep", &out);
    assert_eq!(subjects(&out), ["first 0", "first 1", "first 2"]);
    assert_eq!(look.inbox("alice@example.com").await.len(), 3, "kept");

    seed(&look, "alice@example.com", 1, "second").await;
    fetchmail(env, &pop3, "keep", &out);
    assert_eq!(
        subjects(&out),
        ["first 0", "first 1", "first 2", "second 0"],
        "only the new message the second time"
    );

    let all = env.dir.path().join("all.mbox");
    fetchmail(env, &pop3, "nokeep fetchall", &all);
    assert_eq!(subjects(&all).len(), 4);
    assert!(
        look.inbox("alice@example.com").await.is_empty(),
        "deleted at QUIT"
    );
    stop(child);
}

const MIXED: &str = r#"
import imaplib, poplib, smtplib, sys
imap_addr, pop_addr, smtp_addr = sys.argv[1:4]
ih, ip = imap_addr.rsplit(":", 1); ph, pp = pop_addr.rsplit(":", 1); sh, sp = smtp_addr.rsplit(":", 1)
M = imaplib.IMAP4(ih, int(ip)); M.login("alice@example.com", "alice password")
typ, data = M.select("INBOX"); print("imap exists", data[0].decode())
M.store("3", "+FLAGS", r"(\Flagged)")
P = poplib.POP3(ph, int(pp)); P.user("alice@example.com"); P.pass_("alice password")
print("pop stat", P.stat()[0])
uidl_before = [u.decode().split()[1] for u in P.uidl()[1]]
with smtplib.SMTP(sh, int(sp)) as s:
    s.sendmail("x@remote.example", ["alice@example.com"], "Subject: during pop\r\n\r\nnew\r\n")
import time
for _ in range(100):
    M.noop()
    if any(b"4" == x for x in M.untagged_responses.get("EXISTS", [])):
        break
    time.sleep(0.1)
print("imap sees new mail", M.untagged_responses.pop("EXISTS", None))
print("pop stat still", P.stat()[0])
P.dele(1); P.dele(2)
print("pop quit", P.quit().decode())
M.noop()
print("imap expunges", M.untagged_responses.pop("EXPUNGE", None))
typ, data = M.search(None, "ALL"); print("imap left", data[0].decode())
P = poplib.POP3(ph, int(pp)); P.user("alice@example.com"); P.pass_("alice password")
uidl_after = [u.decode().split()[1] for u in P.uidl()[1]]
print("uidl stable", uidl_after[0] == uidl_before[2], len(uidl_after))
P.quit(); M.logout()
"#;

/// IMAP and POP3 on the same INBOX: POP3 sees a snapshot, its deletions
/// reach IMAP sessions as expunges, UIDLs stay.
pub async fn imap_and_pop3_share_the_inbox(env: &Env, look: Look) {
    add_users(env);
    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    seed(&look, "alice@example.com", 3, "mixed").await;
    let out = python(
        MIXED,
        &[
            listeners["imap"].as_str().unwrap(),
            listeners["pop3"].as_str().unwrap(),
            listeners["smtp"].as_str().unwrap(),
        ],
    );
    for want in [
        "imap exists 3",
        "pop stat 3",
        "imap sees new mail [b'3', b'4']",
        "pop stat still 3",
        "pop quit +OK",
        "imap expunges [b'1', b'1']",
        "imap left 1 2",
        "uidl stable True 2",
    ] {
        assert!(out.contains(want), "`{want}` missing:\n{out}");
    }
    let left = look.inbox("alice@example.com").await;
    assert_eq!(left.len(), 2);
    assert_eq!(left[0].uid, 3, "{left:?}");
    assert!(
        left[0].flags.iter().any(|f| f == "\\Flagged"),
        "the IMAP flag stayed on the message POP3 kept"
    );
    stop(child);
}

const LOCK: &str = r#"
import poplib, sys
a_host, a_port = sys.argv[1].rsplit(":", 1)
b_host, b_port = sys.argv[2].rsplit(":", 1)
A = poplib.POP3(a_host, int(a_port)); A.user("alice@example.com"); A.pass_("alice password")
B = poplib.POP3(b_host, int(b_port)); B.user("alice@example.com")
try:
    B.pass_("alice password"); print("second gateway got in")
except poplib.error_proto as e:
    print("second gateway:", e.args[0].decode())
B.quit()
A.quit()
C = poplib.POP3(b_host, int(b_port)); C.user("alice@example.com"); print("after release:", C.pass_("alice password").decode()); C.quit()
"#;

/// A maildrop locked through one gateway is `[IN-USE]` through another on
/// the same backend, and free again once the first session ends.
pub async fn pop3_lock_holds_across_gateways(first: &Env, second: &Env) {
    add_users(first);
    let mut a = first.serve(&[]);
    let la = wait_for_listeners(&first.data_dir(), &mut a).await;
    let mut b = second.serve(&[]);
    let lb = wait_for_listeners(&second.data_dir(), &mut b).await;
    let out = python(
        LOCK,
        &[la["pop3"].as_str().unwrap(), lb["pop3"].as_str().unwrap()],
    );
    assert!(out.contains("second gateway: -ERR [IN-USE]"), "{out}");
    assert!(out.contains("after release: +OK"), "{out}");
    stop(b);
    stop(a);
}
