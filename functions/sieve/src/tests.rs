//! Scripts as users write them, run on messages as they arrive.

use super::*;

struct TestHost {
    mailboxes: Vec<&'static str>,
    scripts: Vec<(bool, &'static str, String)>,
}

impl Host for TestHost {
    fn mailbox_exists(&self, name: &str) -> bool {
        self.mailboxes.contains(&name)
    }
    fn script(&self, global: bool, name: &str) -> Option<String> {
        self.scripts
            .iter()
            .find(|(g, n, _)| *g == global && *n == name)
            .map(|(_, _, s)| s.clone())
    }
}

fn host() -> TestHost {
    TestHost {
        mailboxes: vec!["INBOX", "Junk", "Lists"],
        scripts: Vec::new(),
    }
}

const MESSAGE: &str = "Return-Path: <alice@example.org>\r\n\
From: \"Alice Example\" <alice@example.org>\r\n\
To: bob+lists@example.com, carol@example.net\r\n\
Cc: =?utf-8?q?J=C3=B6rg?= <joerg@example.de>\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from the list\r\n\
Date: Mon, 7 Dec 2026 10:30:00 -0500\r\n\
List-Id: <team.example.org>\r\n\
X-Spam-Status: Yes, score=8.1\r\n\
Received: from a.example by b.example; Mon, 7 Dec 2026 15:30:01 +0000\r\n\
Received: from c.example by a.example; Mon, 7 Dec 2026 15:30:00 +0000\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=b\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
The quarterly report is attached. Budget: 1200\r\n\
--b\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>The <b>quarterly</b> report</p>\r\n\
--b--\r\n";

fn run_on(script: &str, message: &str) -> Outcome {
    let limits = Limits::default();
    let script = parse(script, &limits).unwrap_or_else(|e| panic!("{e}"));
    let input = Input {
        raw: message.as_bytes(),
        envelope_from: "alice@example.org",
        envelope_to: "bob+lists@example.com",
        now: 1_796_637_600, // 2026-12-07 10:00:00 UTC
    };
    run(&script, &input, &host(), &limits)
}

fn actions(script: &str) -> Vec<Action> {
    let out = run_on(script, MESSAGE);
    assert_eq!(out.error, None);
    out.actions
}

fn keep() -> Action {
    Action::Keep { flags: Vec::new() }
}

fn fileinto(mailbox: &str) -> Action {
    Action::FileInto {
        mailbox: mailbox.into(),
        flags: Vec::new(),
        create: false,
    }
}

#[test]
fn an_empty_script_keeps() {
    assert_eq!(actions(""), vec![keep()]);
    assert_eq!(actions("# nothing\n"), vec![keep()]);
}

#[test]
fn fileinto_cancels_the_implicit_keep_and_copy_does_not() {
    let s =
        "require \"fileinto\";\nif header :contains \"List-Id\" \"team\" { fileinto \"Lists\"; }";
    assert_eq!(actions(s), vec![fileinto("Lists")]);
    let s = "require [\"fileinto\", \"copy\"];\nfileinto :copy \"Lists\";";
    assert_eq!(actions(s), vec![fileinto("Lists"), keep()]);
    // Filed twice into one mailbox: once.
    let s = "require \"fileinto\";\nfileinto \"Lists\"; fileinto \"Lists\"; keep; keep;";
    assert_eq!(actions(s), vec![fileinto("Lists"), keep()]);
}

#[test]
fn fileinto_inbox_is_not_keep() {
    // Keep files where the message would have gone without a script (the
    // caller's choice, Junk for spam); fileinto "INBOX" files to INBOX.
    let s = "require \"fileinto\";\nfileinto \"INBOX\"; fileinto \"inbox\"; keep;";
    assert_eq!(actions(s), vec![fileinto("INBOX"), keep()]);
}

#[test]
fn a_date_that_cannot_be_shown_is_no_value() {
    let message = MESSAGE.replace(
        "Date: Mon, 7 Dec 2026 10:30:00 -0500",
        "Date: Fri, 31 Dec 9999 23:59:00 -0100",
    );
    let out = run_on(
        "require [\"date\", \"fileinto\"];\nif date \"date\" \"year\" \"10000\" { discard; }\nfileinto \"Lists\";",
        &message,
    );
    assert_eq!(out.error, None);
    assert_eq!(out.actions, vec![fileinto("Lists")]);
}

#[test]
fn expensive_comparisons_cost_what_they_read() {
    // One :matches of a long key against a large body is many steps,
    // not one: refused before it runs, and the message is kept.
    let body = "a".repeat(2_000_000);
    let message = format!("Subject: big\r\n\r\n{body}\r\n");
    let key = format!("*{}b*", "a".repeat(60_000));
    let script = format!("require \"body\";\nif body :raw :matches \"{key}\" {{ discard; }}");
    let started = std::time::Instant::now();
    let out = run_on(&script, &message);
    assert!(out.error.unwrap().contains("steps"));
    assert_eq!(out.actions, vec![keep()]);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn header_values_are_decoded_and_tests_combine() {
    let s = "require \"fileinto\";
if allof (header :is \"subject\" \"Grüße from the list\",
          not exists \"X-Nothing\",
          anyof (false, header :matches \"X-Spam-Status\" \"Yes,*\")) {
    fileinto \"Junk\";
} elsif true { discard; }";
    assert_eq!(actions(s), vec![fileinto("Junk")]);
    let s = "if header :contains \"subject\" \"nothing like this\" { discard; } else { stop; }";
    assert_eq!(actions(s), vec![keep()]);
}

#[test]
fn address_and_envelope_parts() {
    let s = "require [\"fileinto\", \"subaddress\", \"envelope\"];
if address :domain :is \"from\" \"EXAMPLE.ORG\" { fileinto \"Lists\"; }";
    assert_eq!(actions(s), vec![fileinto("Lists")]);
    let s = "require [\"fileinto\", \"subaddress\", \"envelope\"];
if envelope :detail \"to\" \"lists\" { fileinto \"Lists\"; }";
    assert_eq!(actions(s), vec![fileinto("Lists")]);
    // No +detail: :detail matches nothing at all.
    let s = "require [\"subaddress\"];
if address :detail :matches \"cc\" \"*\" { discard; }";
    assert_eq!(actions(s), vec![keep()]);
    let s = "require [\"subaddress\"];
if address :user :is \"to\" \"bob\" { discard; }";
    assert_eq!(actions(s), Vec::<Action>::new());
    let s = "if address :localpart :is [\"to\", \"cc\"] \"joerg\" { discard; }";
    assert_eq!(actions(s), Vec::<Action>::new());
}

#[test]
fn size_and_body() {
    assert_eq!(actions("if size :over 10K { discard; }"), vec![keep()]);
    assert_eq!(actions("if size :under 10K { discard; }"), vec![]);
    let s = "require \"body\";\nif body :text :contains \"QUARTERLY REPORT\" { discard; }";
    assert_eq!(actions(s), vec![]);
    let s = "require \"body\";\nif body :content \"text/html\" :contains \"<b>\" { discard; }";
    assert_eq!(actions(s), vec![]);
    let s = "require \"body\";\nif body :raw :contains \"--b--\" { discard; }";
    assert_eq!(actions(s), vec![]);
    let s = "require \"body\";\nif body :content \"image\" :contains \"\" { discard; }";
    assert_eq!(actions(s), vec![keep()]);
}

#[test]
fn variables_and_match_variables() {
    let s = "require [\"variables\", \"fileinto\", \"mailbox\"];
if header :matches \"List-Id\" \"<*.example.org>\" {
    set :upperfirst \"list\" \"${1}\";
    fileinto :create \"Lists/${list}\";
}";
    assert_eq!(
        actions(s),
        vec![Action::FileInto {
            mailbox: "Lists/Team".into(),
            flags: vec![],
            create: true
        }]
    );
    let s = "require [\"variables\", \"relational\", \"comparator-i;ascii-numeric\"];
set \"n\" \"12\";
if string :value \"gt\" :comparator \"i;ascii-numeric\" \"${n}\" \"9\" { discard; }";
    assert_eq!(actions(s), vec![]);
    let s = "require [\"relational\", \"comparator-i;ascii-numeric\"];
if header :count \"ge\" :comparator \"i;ascii-numeric\" \"received\" \"2\" { discard; }";
    assert_eq!(actions(s), vec![]);
}

#[test]
fn regex_captures() {
    let s = "require [\"regex\", \"variables\", \"fileinto\"];
if header :regex \"subject\" \"^(.*) from the (list|group)$\" { fileinto \"${2}\"; }";
    assert_eq!(actions(s), vec![fileinto("list")]);
}

#[test]
fn index_and_dates() {
    let s = "require [\"date\", \"index\"];
if date :index 1 :last \"received\" \"hour\" \"15\" { discard; }";
    assert_eq!(actions(s), vec![]);
    let s = "require [\"date\", \"relational\"];
if date :originalzone \"date\" \"zone\" \"-0500\" { discard; }";
    assert_eq!(actions(s), vec![]);
    let s = "require [\"date\"];
if date :zone \"+0100\" \"date\" \"date\" \"2026-12-07\" { discard; }";
    assert_eq!(actions(s), vec![]);
    let s = "require [\"date\", \"relational\"];
if currentdate :value \"ge\" \"date\" \"2026-12-01\" { discard; }";
    assert_eq!(actions(s), vec![]);
}

#[test]
fn flags_follow_keep_and_fileinto() {
    let s = "require [\"imap4flags\", \"fileinto\"];
addflag \"\\\\Seen $Work\";
addflag \"\\\\seen\";
fileinto \"Lists\";
removeflag \"$Work\";
fileinto :flags \"\\\\Flagged\" \"Junk\";";
    assert_eq!(
        actions(s),
        vec![
            Action::FileInto {
                mailbox: "Lists".into(),
                flags: vec!["\\Seen".into(), "$Work".into()],
                create: false
            },
            Action::FileInto {
                mailbox: "Junk".into(),
                flags: vec!["\\Flagged".into()],
                create: false
            },
        ]
    );
    let s = "require [\"imap4flags\"];
setflag \"\\\\Answered\";
if hasflag :is \"\\\\answered\" { keep; }";
    assert_eq!(
        actions(s),
        vec![Action::Keep {
            flags: vec!["\\Answered".into()]
        }]
    );
}

#[test]
fn redirect_reject_and_vacation() {
    let s = "redirect \"carol@example.net\"; redirect \"carol@example.net\";";
    assert_eq!(
        actions(s),
        vec![Action::Redirect {
            address: "carol@example.net".into()
        }]
    );
    let s = "require \"reject\";\nreject \"Not here.\";";
    assert_eq!(
        actions(s),
        vec![Action::Reject {
            reason: "Not here.".into(),
            extended: false
        }]
    );
    let s = "require [\"vacation\", \"vacation-seconds\"];
vacation :seconds 60 :subject \"Away\" :addresses [\"bob@example.com\"] text:
I am away.
..
.
;";
    let a = actions(s);
    let [Action::Vacation(v), Action::Keep { .. }] = a.as_slice() else {
        panic!("{a:?}")
    };
    assert_eq!(v.period, Some(60));
    assert_eq!(v.subject.as_deref(), Some("Away"));
    assert_eq!(v.reason, "I am away.\r\n.\r\n");
    assert_eq!(v.handle.len(), 16);
    // Reject with a keep is an error: the message is kept, not lost.
    let out = run_on("require \"reject\";\nkeep;\nreject \"no\";", MESSAGE);
    assert!(out.error.is_some());
    assert_eq!(out.actions, vec![keep()]);
}

#[test]
fn include_shares_only_globals_and_stops() {
    let mut h = host();
    h.scripts.push((
        false,
        "lists",
        "require [\"include\", \"variables\", \"fileinto\"];\nglobal \"box\";\nfileinto \"${box}\";\nreturn;\ndiscard;".into(),
    ));
    h.scripts.push((true, "stopper", "stop;".into()));
    let limits = Limits::default();
    let script = parse(
        "require [\"include\", \"variables\"];
global \"box\";
set \"box\" \"Lists\";
include :personal \"lists\";
include :once \"lists\";
include :once \"lists\";
include :optional \"missing\";
include :global \"stopper\";
discard;",
        &limits,
    )
    .unwrap();
    let input = Input {
        raw: MESSAGE.as_bytes(),
        envelope_from: "",
        envelope_to: "bob@example.com",
        now: 0,
    };
    let out = run(&script, &input, &h, &limits);
    assert_eq!(out.error, None);
    assert_eq!(out.actions, vec![fileinto("Lists")]);
    // A script that includes itself ends at the depth limit, and keeps.
    h.scripts
        .push((false, "me", "require \"include\";\ninclude \"me\";".into()));
    let script = parse("require \"include\";\ninclude \"me\";", &limits).unwrap();
    let out = run(&script, &input, &h, &limits);
    assert!(out.error.unwrap().contains("deep"));
    assert_eq!(out.actions, vec![keep()]);
}

#[test]
fn errors_say_where_and_why() {
    let limits = Limits::default();
    let cases = [
        ("fileinto \"x\";", 1, "require \"fileinto\""),
        ("keep;\nrequire \"fileinto\";", 2, "before any other"),
        ("require \"nonsense\";", 1, "unsupported extension"),
        ("if true {\n  keep;\n", 1, "not closed"),
        ("keep\nstop;", 2, "is a ; missing"),
        ("frobnicate;", 1, "unknown command"),
        ("if header :is \"a\" { keep; }", 1, "needs a key list"),
        (
            "if header :is :contains \"a\" \"b\" { keep; }",
            1,
            "cannot be used together",
        ),
        ("\n\nelse { keep; }", 3, "without an if"),
        (
            "require \"regex\";\nif header :regex \"a\" \"(\" { keep; }",
            2,
            "regular expression",
        ),
        ("if size 10 { keep; }", 1, ":over or :under"),
        ("redirect \"not an address\";", 1, "invalid address"),
        (
            "require \"date\";\nif date \"date\" \"fortnight\" \"1\" { keep; }",
            2,
            "unknown date part",
        ),
        (
            "require \"variables\";\nset :lower :upper \"a\" \"b\";",
            2,
            "same precedence",
        ),
        (
            "if header :comparator \"i;ascii-numeric\" \"a\" \"1\" { keep; }",
            1,
            "comparator-i;ascii-numeric",
        ),
    ];
    for (script, line, says) in cases {
        let e = parse(script, &limits).expect_err(script);
        assert_eq!(e.line, line, "{script}: {e}");
        assert!(e.to_string().contains(says), "{script}: {e}");
    }
}

#[test]
fn hostile_scripts_are_bounded() {
    let limits = Limits::default();
    // 10,000 nested ifs: refused at the nesting limit, not a stack overflow.
    let deep = "if true {".repeat(10_000) + &"}".repeat(10_000);
    let e = parse(&deep, &limits).unwrap_err();
    assert!(e.message.contains("nested"), "{e}");
    let deep = "if ".to_string() + &"not ".repeat(10_000) + "true { keep; }";
    assert!(parse(&deep, &limits).is_err());
    // Too big.
    let big = "#".repeat(limits.max_script_size + 1);
    assert!(parse(&big, &limits).unwrap_err().message.contains("bytes"));
    // Too much work at run time: the message is kept.
    let keys: Vec<String> = (0..900).map(|i| format!("\"k{i}\"")).collect();
    let test = format!(
        "header :contains [\"subject\",\"to\",\"from\",\"cc\"] [{}]",
        keys.join(",")
    );
    let script = format!("if anyof ({}) {{ discard; }}", vec![test; 5].join(","));
    let tight = Limits {
        max_steps: 10_000,
        ..Limits::default()
    };
    let parsed = parse(&script, &tight).unwrap();
    let input = Input {
        raw: MESSAGE.as_bytes(),
        envelope_from: "",
        envelope_to: "bob@example.com",
        now: 0,
    };
    let out = run(&parsed, &input, &host(), &tight);
    assert!(out.error.unwrap().contains("steps"));
    assert_eq!(out.actions, vec![keep()]);
    // Redirects are capped.
    let many: String = (0..10)
        .map(|i| format!("redirect \"r{i}@example.net\";"))
        .collect();
    let out = run_on(&many, MESSAGE);
    assert!(out.error.unwrap().contains("redirects"));
}

#[test]
fn broken_mail_still_runs() {
    let out = run_on(
        "if header :contains \"subject\" \"x\" { discard; }",
        "\u{0}\u{1}garbage without headers",
    );
    assert_eq!(out.error, None);
    assert_eq!(out.actions, vec![keep()]);
}

/// The fuzz target's corpus (fuzz/corpus/sieve_script), replayed on stable
/// with the target's checks.
#[test]
fn fuzz_corpus_replays() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/sieve_script");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        crate::fuzz::exercise(&std::fs::read(entry.unwrap().path()).unwrap());
        replayed += 1;
    }
    assert!(replayed >= 10, "{replayed} inputs in {}", dir.display());
}
