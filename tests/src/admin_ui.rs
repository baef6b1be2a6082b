//! The admin pages in a real browser: Debian's chromium, driven by
//! Playwright (`playwright-core` from npm; `tests/browser/admin.mjs`),
//! walks a new admin through signing in, adding a domain (with its DNS
//! check), a user and an alias; then that user logs in over IMAP and
//! receives mail sent to the alias.
//!
//! The test command installs chromium and the npm package. Run alone
//! without them, the test says so and passes, unless
//! `STRATUS_TEST_REQUIRE_BROWSER=1` (as in the test command).

use std::path::PathBuf;
use std::process::Command;

use crate::cli::{Env, stop, wait_for_listeners};
use crate::smtp::{Look, python};

pub(crate) fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Why the browser test cannot run here, if it cannot.
pub(crate) fn missing() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        return Some(format!("no chromium at {chromium}"));
    }
    if !browser_dir().join("node_modules/playwright-core").exists() {
        return Some("no playwright-core in tests/browser/node_modules (npm ci there)".into());
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no node".into());
    }
    None
}

pub async fn a_new_admin_walks_through_the_admin_pages(env: &mut Env, _look: Look) {
    if let Some(why) = missing() {
        assert!(
            std::env::var("STRATUS_TEST_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "the browser test cannot run: {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    env.ok(&["domain", "add", "example.com"], b"");
    env.ok(
        &["user", "add", "admin@example.com", "--password-stdin"],
        b"admin passphrase 1\n",
    );
    env.ok(&["user", "role", "admin@example.com", "admin"], b"");
    // What the new domain's owner has published so far: the MX, and an
    // SPF record that is not ours.
    env.dns.add_mx("shop.example", 10, "mx.test.example");
    env.dns
        .add_txt("shop.example", "v=spf1 include:elsewhere.example -all");

    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    let https = listeners["https"].as_str().unwrap().to_string();
    let shots = env.dir.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(browser_dir().join("admin.mjs"))
        .args([
            &format!("https://{https}"),
            "admin@example.com",
            "admin passphrase 1",
            shots.to_str().unwrap(),
        ])
        .output()
        .expect("node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    // Kept for a person to look at, when asked for.
    if let Ok(dir) = std::env::var("STRATUS_TEST_SHOTS") {
        for shot in ["dns.png", "audit.png", "phone-dark.png", "failure.png"] {
            let _ = std::fs::copy(shots.join(shot), PathBuf::from(&dir).join(shot));
        }
    }
    assert!(out.status.success(), "the browser walk failed:\n{text}");
    assert!(text.contains("dns: MX MX ✔ published"), "{text}");
    assert!(text.contains("dns: SPF TXT ✘ not published"), "{text}");
    assert!(text.contains("ok: no console errors"), "{text}");

    // The app password made in the browser logs in over IMAP.
    let app = text
        .lines()
        .find_map(|l| l.strip_prefix("app password: "))
        .expect("an app password");
    let imap = listeners["imap"].as_str().unwrap();
    let out = python(
        "import imaplib,sys\nh,p=sys.argv[1].rsplit(':',1)\nM=imaplib.IMAP4(h,int(p))\nprint(M.login('admin@example.com',sys.argv[2])[0])",
        &[imap, app],
    );
    assert_eq!(out.trim(), "OK", "{out}");

    // Eve, invited in the browser, logs in with the password she chose.
    let out = python(
        "import imaplib,sys\nh,p=sys.argv[1].rsplit(':',1)\nM=imaplib.IMAP4(h,int(p))\nprint(M.login('eve@shop.example','eve passphrase 1')[0])",
        &[imap],
    );
    assert_eq!(out.trim(), "OK", "{out}");

    // The user the admin made logs in over IMAP, and mail to the alias
    // reaches them.
    let smtp = listeners["smtp"].as_str().unwrap();
    python(
        "import smtplib,sys\nh,p=sys.argv[1].rsplit(':',1)\nwith smtplib.SMTP(h,int(p)) as s: s.sendmail('x@remote.example',['sales@shop.example'],'Subject: for sales\\r\\n\\r\\nhello\\r\\n')",
        &[smtp],
    );
    crate::eventually(
        std::time::Duration::from_secs(30),
        "mail to the alias in max's INBOX",
        || async {
            let out = python(
                "import imaplib,sys\nh,p=sys.argv[1].rsplit(':',1)\nM=imaplib.IMAP4(h,int(p))\nprint(M.login('max@shop.example','max passphrase 1')[0])\nprint(M.select('INBOX')[1][0].decode())",
                &[imap],
            );
            (out.trim_end().ends_with("OK\n1") || out.contains("OK\n1")).then_some(())
        },
    )
    .await;
    stop(child);
}
