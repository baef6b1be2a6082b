//! ManageSieve end to end: sieve-connect (a real client, over STARTTLS)
//! uploads and activates a script that then files delivered mail, and raw
//! exchanges from Python cover every command, bad input and the other
//! tenant.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cli::{Env, stop, wait_for_listeners};
use crate::smtp::{Look, RawSmtp, add_users, python};

/// Raw ManageSieve over a plain loopback socket (passwords are allowed
/// from loopback), asserting each answer. argv: host:port.
const RAW: &str = r##"
import base64, socket, sys
host, port = sys.argv[1].rsplit(":", 1)

class Conn:
    def __init__(self):
        self.s = socket.create_connection((host, int(port)), timeout=20)
        self.buf = b""
    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()
    def exact(self, n):
        while len(self.buf) < n:
            self.buf += self.s.recv(65536)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data.decode()
    def response(self):
        """Lines up to the OK/NO/BYE that ends a response, and that line."""
        lines = []
        while True:
            l = self.line()
            if l.startswith(("OK", "NO", "BYE")):
                return lines, l
            if l.endswith("}") and "{" in l:
                n = int(l[l.rindex("{") + 1:-1].rstrip("+"))
                lines.append(self.exact(n))
                # The CRLF that ends the literal's line.
                assert self.line() == ""
                continue
            lines.append(l)
    def cmd(self, text):
        self.s.sendall(text.encode() + b"\r\n")
        return self.response()
    def raw(self, data):
        self.s.sendall(data)
        return self.response()

def plain(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()

def lit(text):
    data = text.encode()
    return "{%d+}\r\n" % len(data) + text

c = Conn()
caps, ok = c.response()
assert ok.startswith("OK"), ok
assert '"IMPLEMENTATION" "Stratus"' in caps, caps
assert '"SASL" "PLAIN"' in caps and '"STARTTLS"' in caps, caps
sieve = [l for l in caps if l.startswith('"SIEVE"')][0]
for ext in ["fileinto", "vacation", "imap4flags", "variables", "include", "regex"]:
    assert ext in sieve, sieve
assert '"VERSION" "1.0"' in caps, caps

# Not logged in: nothing about scripts.
_, r = c.cmd("LISTSCRIPTS")
assert r.startswith("NO") and "authenticate first" in r, r
_, r = c.cmd("FROBNICATE")
assert r.startswith("NO") and "unknown command" in r, r
_, r = c.cmd('AUTHENTICATE "PLAIN" "%s"' % plain("alice@example.com", "wrong"))
assert r.startswith("NO") and "invalid credentials" in r, r
_, r = c.cmd('AUTHENTICATE "DIGEST-MD5"')
assert r.startswith("NO") and "PLAIN" in r, r
# PLAIN after an empty challenge, answered with a literal.
c.s.sendall(b'AUTHENTICATE "PLAIN"\r\n')
assert c.line() == '""'
_, r = c.raw(lit(plain("alice@example.com", "alice password")).encode() + b"\r\n")
assert r.startswith("OK"), r
caps, r = c.cmd("CAPABILITY")
assert '"OWNER" "alice@example.com"' in caps, caps

# A script that does not parse: refused with its line.
_, r = c.raw(('PUTSCRIPT "bad" ' + lit('require "fileinto";\nfileinto;\n')).encode() + b"\r\n")
assert r.startswith("NO") and "line 2" in r, r
_, r = c.raw(("CHECKSCRIPT " + lit("keep;\nfrobnicate;\n")).encode() + b"\r\n")
assert r.startswith("NO") and "line 2: unknown command" in r, r
_, r = c.raw(("CHECKSCRIPT " + lit("keep;\n")).encode() + b"\r\n")
assert r.startswith("OK"), r
_, r = c.cmd('HAVESPACE "big" 10000000')
assert r.startswith("NO (QUOTA/MAXSIZE)"), r
_, r = c.cmd('HAVESPACE "small" 100')
assert r.startswith("OK"), r
# A literal over the limit is read, refused, and the session goes on.
big = "#" * 200000 + "\nkeep;\n"
_, r = c.raw(('PUTSCRIPT "big" ' + lit(big)).encode() + b"\r\n")
assert r.startswith("NO (QUOTA/MAXSIZE)"), r
_, r = c.cmd('NOOP "still here"')
assert r.startswith('OK (TAG "still here")'), r

script = 'require ["fileinto"];\r\nif header :contains "subject" "raw" { fileinto "Archive"; }\r\n'
_, r = c.raw(('PUTSCRIPT "raw \\"one\\"" ' + lit(script)).encode() + b"\r\n")
assert r.startswith("OK"), r
lines, r = c.cmd("LISTSCRIPTS")
assert r.startswith("OK") and '"raw \\"one\\""' in lines, lines
lines, r = c.cmd('GETSCRIPT "raw \\"one\\""')
assert r.startswith("OK") and lines == [script], lines
_, r = c.cmd('GETSCRIPT "nothing"')
assert r.startswith("NO (NONEXISTENT)"), r
_, r = c.cmd('SETACTIVE "raw \\"one\\""')
assert r.startswith("OK"), r
lines, _ = c.cmd("LISTSCRIPTS")
assert '"raw \\"one\\"" ACTIVE' in lines, lines
_, r = c.cmd('DELETESCRIPT "raw \\"one\\""')
assert r.startswith("NO (ACTIVE)"), r
_, r = c.cmd('RENAMESCRIPT "raw \\"one\\"" "raw"')
assert r.startswith("OK"), r
lines, _ = c.cmd("LISTSCRIPTS")
assert '"raw" ACTIVE' in lines, lines
_, r = c.cmd('RENAMESCRIPT "nothing" "x"')
assert r.startswith("NO (NONEXISTENT)"), r
_, r = c.cmd('SETACTIVE "nothing"')
assert r.startswith("NO (NONEXISTENT)"), r
_, r = c.cmd('PUTSCRIPT "a/b" "keep;"')
assert r.startswith("NO"), r
_, r = c.cmd("UNAUTHENTICATE")
assert r.startswith("OK"), r
_, r = c.cmd("LISTSCRIPTS")
assert r.startswith("NO"), r

# Bob, on another connection, sees none of Alice's scripts and cannot
# reach them by name.
b = Conn()
b.response()
_, r = b.cmd('AUTHENTICATE "PLAIN" "%s"' % plain("bob@example.com", "bob password"))
assert r.startswith("OK"), r
lines, r = b.cmd("LISTSCRIPTS")
assert r.startswith("OK") and lines == [], lines
_, r = b.cmd('GETSCRIPT "raw"')
assert r.startswith("NO (NONEXISTENT)"), r
_, r = b.cmd('SETACTIVE "raw"')
assert r.startswith("NO (NONEXISTENT)"), r
_, r = b.cmd('DELETESCRIPT "raw"')
assert r.startswith("NO (NONEXISTENT)"), r
_, r = b.cmd("LOGOUT")
assert r.startswith("OK"), r

_, r = c.cmd("LOGOUT")
assert r.startswith("OK"), r

# Literal after literal is not a command: the session ends, before login.
d = Conn()
d.response()
d.s.sendall(b"NOOP {3+}\r\nabc {3+}\r\nabc {3+}\r\nabc {3+}\r\nabc\r\n")
_, r = d.response()
assert r.startswith("BYE"), r
print("ALL OK")
"##;

/// The script sieve-connect uploads.
const UPLOADED: &str = r#"require ["fileinto", "mailbox"];
if header :contains "subject" "report" {
    fileinto :create "Reports";
}
"#;

fn sieve_connect(addr: &str, user: &str, password: &str, args: &[&str]) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut child = Command::new("sieve-connect")
        .args([
            "--server",
            host,
            "--port",
            port,
            "--user",
            user,
            "--authmech",
            "PLAIN",
            "--passwordfd",
            "0",
            "--notlsverify",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sieve-connect (apt-get install sieve-connect)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "sieve-connect {args:?} failed:\n{text}"
    );
    text
}

pub async fn managesieve_clients(env: &mut Env, look: Look) {
    add_users(env);
    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    let addr = listeners["managesieve"].as_str().unwrap().to_string();

    // sieve-connect: STARTTLS, AUTHENTICATE PLAIN, PUTSCRIPT, SETACTIVE.
    let file = env.data_dir().with_file_name("uploaded.sieve");
    std::fs::write(&file, UPLOADED).unwrap();
    let file = file.display().to_string();
    let (user, pw) = ("alice@example.com", "alice password");
    sieve_connect(
        &addr,
        user,
        pw,
        &["--upload", "--localsieve", &file, "--remotesieve", "mine"],
    );
    sieve_connect(&addr, user, pw, &["--activate", "--remotesieve", "mine"]);
    let listed = sieve_connect(&addr, user, pw, &["--list"]);
    assert!(listed.contains("mine"), "{listed}");
    assert_eq!(
        env.ok(&["sieve", "get", user, "mine"], b""),
        UPLOADED,
        "stored as uploaded"
    );
    assert!(env.ok(&["sieve", "list", user], b"").contains("mine"));

    // The active script files the next message.
    let smtp = listeners["smtp"].as_str().unwrap().to_string();
    let (mut c, _) = RawSmtp::connect(&smtp).await.unwrap();
    c.cmd("EHLO client.example").await.unwrap();
    let body = "From: Carol <carol@remote.example>\r\nTo: alice@example.com\r\nSubject: the weekly report\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <report.1@remote.example>\r\n\r\nThe figures of the week, as promised.\r\n";
    let r = c
        .transaction("carol@remote.example", &[user], body.as_bytes())
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    crate::eventually(Duration::from_secs(30), "the report in Reports", || async {
        let n = look
            .try_mailbox(user, "Reports")
            .await
            .map_or(0, |e| e.len());
        (n == 1).then_some(())
    })
    .await;
    c.cmd("QUIT").await.unwrap();

    // Every command, bad input and the other tenant, raw.
    let out = python(RAW, &[&addr]);
    assert!(out.contains("ALL OK"), "{out}");
    stop(child);
}
