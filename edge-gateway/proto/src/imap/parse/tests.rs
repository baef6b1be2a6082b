//! The parser, table by table.

use stratus_core::time::{civil_day, civil_from_day};

use super::parse;
use crate::imap::command::*;

fn ok(input: &str) -> Command {
    match parse(input.as_bytes()) {
        Ok(t) => t.command,
        Err(e) => panic!("{input:?}: {}", e.reason),
    }
}

fn err(input: &str) -> Invalid {
    parse(input.as_bytes()).expect_err(input)
}

#[test]
fn simple_commands_and_tags() {
    assert_eq!(ok("a1 NOOP\r\n"), Command::Noop);
    assert_eq!(ok("a1 noop\r\n"), Command::Noop, "case-insensitive");
    assert_eq!(
        parse(b"x.y-1 CAPABILITY\r\n").unwrap().tag,
        "x.y-1".to_string()
    );
    assert_eq!(
        ok("a LOGIN \"al\\\"ice\" {3}\r\np w\r\n"),
        Command::Login {
            user: b"al\"ice".to_vec(),
            password: b"p w".to_vec()
        }
    );
    assert_eq!(
        ok("a AUTHENTICATE PLAIN AGFAYgBj\r\n"),
        Command::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some("AGFAYgBj".into())
        }
    );
    assert_eq!(
        ok("a ENABLE CONDSTORE utf8=accept\r\n"),
        Command::Enable(vec!["CONDSTORE".into(), "UTF8=ACCEPT".into()])
    );
    assert_eq!(
        ok("a ID (\"name\" \"mutt\" \"os\" NIL)\r\n"),
        Command::Id(vec![
            ("name".into(), Some("mutt".into())),
            ("os".into(), None)
        ])
    );
    assert_eq!(ok("a ID NIL\r\n"), Command::Id(vec![]));
}

#[test]
fn bad_commands_have_readable_reasons() {
    let e = err("\r\n");
    assert_eq!(e.tag, None);
    let e = err("a FROB\r\n");
    assert_eq!(e.tag.as_deref(), Some("a"));
    assert!(e.reason.contains("unknown command FROB"), "{}", e.reason);
    assert!(err("a NOOP extra\r\n").reason.contains("unexpected text"));
    assert!(err("a SELECT\r\n").reason.contains("space"));
    assert!(err("a FETCH 0 FLAGS\r\n").reason.contains("0 is not"));
    assert!(err("a FETCH 1 (FLAGS\r\n").reason.contains("expected"));
    assert!(err("a FETCH 1 BODY[1.]\r\n").reason.contains("end with"));
    assert!(err("a LOGIN {5}\r\nab").reason.contains("shorter"));
    assert!(err("a LOGIN \"x\\y\" z\r\n").reason.contains("escaped"));
    assert!(
        err("a SEARCH FOO\r\n")
            .reason
            .contains("unknown search key")
    );
    let deep = format!("a SEARCH {}ALL{}\r\n", "(".repeat(40), ")".repeat(40));
    assert!(err(&deep).reason.contains("nested too deeply"));
    let nots = format!("a SEARCH {}ALL\r\n", "NOT ".repeat(40));
    assert!(err(&nots).reason.contains("nested too deeply"));
}

#[test]
fn select_create_list_status() {
    assert_eq!(
        ok("a EXAMINE inbox (CONDSTORE)\r\n"),
        Command::Select {
            mailbox: b"inbox".to_vec(),
            read_only: true,
            condstore: true,
            qresync: None
        }
    );
    assert_eq!(
        ok("a CREATE \"Sent Items\" (USE (\\Sent))\r\n"),
        Command::Create {
            mailbox: b"Sent Items".to_vec(),
            special_use: vec!["\\Sent".into()]
        }
    );
    let Command::List(l) = ok(
        "a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"%\" \"Work/*\") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n",
    ) else {
        panic!()
    };
    assert_eq!(l.select, ["SUBSCRIBED", "RECURSIVEMATCH"]);
    assert_eq!(l.patterns, [b"%".to_vec(), b"Work/*".to_vec()]);
    assert_eq!(l.returns, ["CHILDREN"]);
    assert_eq!(
        l.status,
        Some(vec![StatusItem::Messages, StatusItem::Unseen])
    );
    assert!(l.extended);
    let Command::List(plain) = ok("a LIST \"\" *\r\n") else {
        panic!()
    };
    assert!(!plain.extended);
    assert!(
        err("a LIST (RECURSIVEMATCH) \"\" *\r\n")
            .reason
            .contains("RECURSIVEMATCH")
    );
    assert_eq!(
        ok("a STATUS x (MESSAGES SIZE HIGHESTMODSEQ)\r\n"),
        Command::Status {
            mailbox: b"x".to_vec(),
            items: vec![
                StatusItem::Messages,
                StatusItem::Size,
                StatusItem::HighestModSeq
            ]
        }
    );
}

#[test]
fn append_with_flags_date_and_literals() {
    let Command::Append { mailbox, messages } =
        ok("a APPEND Drafts (\\Draft $Label) \" 1-Jul-2025 10:00:00 +0200\" {5+}\r\nhello\r\n")
    else {
        panic!()
    };
    assert_eq!(mailbox, b"Drafts");
    let [
        AppendMessage {
            flags,
            date,
            message,
            binary,
            ..
        },
    ] = &messages[..]
    else {
        panic!("{messages:?}")
    };
    assert_eq!(*flags, ["\\Draft", "$Label"]);
    assert_eq!(
        *date,
        Some(DateTime {
            timestamp: 1_751_356_800,
            zone: 120
        })
    );
    assert_eq!(message, b"hello");
    assert!(!*binary);
    let only = |input: &str| match ok(input) {
        Command::Append { mut messages, .. } if messages.len() == 1 => messages.remove(0),
        other => panic!("{other:?}"),
    };
    let m = only("a APPEND x ~{3}\r\na\0b\r\n");
    assert_eq!((m.message.as_slice(), m.binary), (&b"a\0b"[..], true));
    assert!(err("a APPEND x {3}\r\na\0b\r\n").reason.contains("NUL"));
    let m = only("a APPEND x UTF8 (~{10}\r\nS: Grüße)\r\n");
    assert_eq!(m.message, "S: Grüße".as_bytes());
    // MULTIAPPEND: each message with its own flags and date.
    let Command::Append { messages, .. } =
        ok("a APPEND x (\\Seen) {1+}\r\n1 \"01-Jul-2025 10:00:00 +0000\" {1+}\r\n2 {1+}\r\n3\r\n")
    else {
        panic!()
    };
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0].flags, ["\\Seen"]);
    assert!(messages[1].flags.is_empty() && messages[1].date.is_some());
    assert_eq!(messages[2].message, b"3");
    assert!(err("a APPEND x {1+}\r\n1 \r\n").reason.contains("literal"));
    assert!(err("a APPEND x\r\n").reason.contains("literal"));
    // CATENATE: texts (literal or literal8) and URLs.
    let m =
        only("a APPEND x CATENATE (TEXT {2+}\r\nhi URL \"/INBOX/;UID=1\" TEXT ~{1+}\r\n\0)\r\n");
    assert_eq!(
        m.catenate,
        [
            CatPart::Text(b"hi".to_vec()),
            CatPart::Url("/INBOX/;UID=1".into()),
            CatPart::Text(b"\0".to_vec())
        ]
    );
    assert!(
        err("a APPEND x CATENATE ()\r\n")
            .reason
            .contains("expected")
    );
    assert!(
        err("a APPEND x CATENATE (BLOB {1+}\r\nx)\r\n")
            .reason
            .contains("CATENATE part")
    );
    assert!(
        err("a APPEND x \"31-Feb-2025 00:00:00 +0000\" {1}\r\nx\r\n")
            .reason
            .contains("no such date")
    );
}

#[test]
fn search_programs() {
    let Command::Search(s) = ok(
        "a UID SEARCH RETURN (MIN COUNT SAVE) CHARSET UTF-8 OR FROM \"ann\" NOT SEEN 1:5,* SINCE 1-Feb-2024 HEADER X-Spam yes LARGER 100 (UNDELETED KEYWORD $x)\r\n",
    ) else {
        panic!()
    };
    assert!(s.uid);
    assert_eq!(
        s.returns,
        Some(SearchReturn {
            min: true,
            count: true,
            save: true,
            ..Default::default()
        })
    );
    assert_eq!(s.charset.as_deref(), Some("UTF-8"));
    let SearchKey::And(keys) = s.key else {
        panic!()
    };
    assert_eq!(
        keys[0],
        SearchKey::Or(
            Box::new(SearchKey::Header("FROM".into(), "ann".into())),
            Box::new(SearchKey::Not(Box::new(SearchKey::Flag("\\Seen".into()))))
        )
    );
    assert_eq!(
        keys[1],
        SearchKey::Sequence(SequenceSet::Ranges(vec![
            (SeqNum::Value(1), SeqNum::Value(5)),
            (SeqNum::Last, SeqNum::Last)
        ]))
    );
    assert_eq!(keys[2], SearchKey::Since(civil_day(2024, 2, 1).unwrap()));
    assert_eq!(keys[3], SearchKey::Header("X-SPAM".into(), "yes".into()));
    assert_eq!(keys[4], SearchKey::Larger(100));
    let Command::Search(r) = ok("a SEARCH RETURN () $\r\n") else {
        panic!()
    };
    assert!(r.returns.unwrap().all);
    assert_eq!(r.key, SearchKey::Sequence(SequenceSet::Saved));
}

#[test]
fn fetch_items() {
    let Command::Fetch(f) = ok(
        "a UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From \"Subject\")]<0.100> BODY[1.2.MIME] BINARY.PEEK[1] BINARY.SIZE[2] RFC822.SIZE) (CHANGEDSINCE 7)\r\n",
    ) else {
        panic!()
    };
    assert!(f.uid);
    assert_eq!(f.changed_since, Some(7));
    assert_eq!(f.atts[0], FetchAtt::Uid, "UID FETCH always returns the UID");
    assert_eq!(
        f.atts[2],
        FetchAtt::Section {
            peek: true,
            section: Section {
                part: vec![],
                text: Some(SectionText::HeaderFields(vec![
                    "From".into(),
                    "Subject".into()
                ]))
            },
            partial: Some((0, 100))
        }
    );
    assert_eq!(
        f.atts[3],
        FetchAtt::Section {
            peek: false,
            section: Section {
                part: vec![1, 2],
                text: Some(SectionText::Mime)
            },
            partial: None
        }
    );
    assert_eq!(
        f.atts[4],
        FetchAtt::Binary {
            peek: true,
            part: vec![1],
            partial: None
        }
    );
    assert_eq!(f.atts[5], FetchAtt::BinarySize(vec![2]));
    let Command::Fetch(all) = ok("a FETCH 1 ALL\r\n") else {
        panic!()
    };
    assert_eq!(all.atts.len(), 4);
    assert!(
        err("a FETCH 1 BODY[MIME]\r\n")
            .reason
            .contains("unknown section")
    );
    assert!(
        err("a FETCH 1 (BODY[]<0.0>)\r\n")
            .reason
            .contains("0 is not")
    );
}

#[test]
fn store_copy_move_expunge() {
    assert_eq!(
        ok("a UID STORE 2:4 (UNCHANGEDSINCE 12) -FLAGS.SILENT (\\Seen $Work)\r\n"),
        Command::Store(Store {
            uid: true,
            set: SequenceSet::Ranges(vec![(SeqNum::Value(2), SeqNum::Value(4))]),
            unchanged_since: Some(12),
            mode: StoreMode::Remove,
            silent: true,
            flags: vec!["\\Seen".into(), "$Work".into()],
        })
    );
    let Command::Store(s) = ok("a STORE 1 FLAGS \\Deleted \\Seen\r\n") else {
        panic!()
    };
    assert_eq!((s.mode, s.flags.len()), (StoreMode::Replace, 2));
    assert!(matches!(
        ok("a UID MOVE 1,3 Trash\r\n"),
        Command::Move { uid: true, .. }
    ));
    assert!(matches!(
        ok("a UID EXPUNGE 1:2\r\n"),
        Command::Expunge { uids: Some(_) }
    ));
}

#[test]
fn qresync_parameters() {
    let Command::Select { qresync, .. } =
        ok("a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 (1:3 4:6)))\r\n")
    else {
        panic!()
    };
    let q = qresync.unwrap();
    assert_eq!((q.uidvalidity, q.modseq), (67890007, 20050715194045000));
    assert!(q.known_uids.is_some());
    let Command::Select { qresync, .. } = ok("a EXAMINE x (QRESYNC (1 2))\r\n") else {
        panic!()
    };
    assert_eq!(qresync.unwrap().known_uids, None);
    let Command::Fetch(f) = ok("a UID FETCH 1:* FLAGS (CHANGEDSINCE 5 VANISHED)\r\n") else {
        panic!()
    };
    assert!(f.vanished);
    assert!(
        err("a FETCH 1:* FLAGS (CHANGEDSINCE 5 VANISHED)\r\n")
            .reason
            .contains("VANISHED")
    );
}

#[test]
fn sort_and_thread() {
    assert_eq!(
        ok("a UID SORT (REVERSE DATE SUBJECT) UTF-8 UNSEEN\r\n"),
        Command::Sort {
            uid: true,
            returns: None,
            criteria: vec![(true, SortKey::Date), (false, SortKey::Subject)],
            charset: "UTF-8".into(),
            key: SearchKey::NoFlag("\\Seen".into())
        }
    );
    assert!(
        err("a SORT (REVERSE) UTF-8 ALL\r\n")
            .reason
            .contains("REVERSE")
    );
    assert!(err("a SORT (DATE) ALL\r\n").reason.contains("space"));
    assert!(matches!(
        ok("a THREAD REFERENCES US-ASCII SINCE 1-Jan-2020\r\n"),
        Command::Thread {
            algorithm: ThreadAlgorithm::References,
            ..
        }
    ));
}

/// ESORT, PARTIAL and SORT=DISPLAY (RFC 5267, 9394, 5957), and their
/// bad forms.
#[test]
fn esort_partial_and_display() {
    let Command::Sort {
        returns, criteria, ..
    } = ok(
        "a UID SORT RETURN (MIN COUNT PARTIAL -1:-10) (DISPLAYFROM REVERSE DISPLAYTO) UTF-8 ALL\r\n",
    )
    else {
        panic!("not SORT");
    };
    let r = returns.unwrap();
    assert!(r.min && r.count && !r.all);
    let p = r.partial.unwrap();
    assert_eq!((p.first, p.last, p.from_end), (1, 10, true));
    assert_eq!(p.to_string(), "-1:-10");
    assert_eq!(
        criteria,
        [(false, SortKey::DisplayFrom), (true, SortKey::DisplayTo)]
    );
    // Bounds in either order; the window of 25 results.
    let Command::Search(s) = ok("a SEARCH RETURN (PARTIAL 20:11) ALL\r\n") else {
        panic!("not SEARCH");
    };
    let p = s.returns.unwrap().partial.unwrap();
    assert_eq!(p.to_string(), "11:20");
    assert_eq!(p.window(25), 10..20);
    assert_eq!(p.window(15), 10..15);
    assert_eq!(p.window(5), 5..5);
    let last = PartialRange {
        first: 1,
        last: 10,
        from_end: true,
    };
    assert_eq!(last.window(25), 15..25);
    assert_eq!(last.window(4), 0..4);
    let Command::Fetch(f) = ok("a UID FETCH 1:* (FLAGS) (PARTIAL -1:-5)\r\n") else {
        panic!("not FETCH");
    };
    assert!(f.partial.is_some_and(|p| p.from_end && p.last == 5));
    for bad in [
        "a SEARCH RETURN (PARTIAL 0:5) ALL\r\n",
        "a SEARCH RETURN (PARTIAL 1:-5) ALL\r\n",
        "a SEARCH RETURN (PARTIAL) ALL\r\n",
        "a SEARCH RETURN (PARTIAL 1:99999999999) ALL\r\n",
        "a SEARCH RETURN (ALL PARTIAL 1:5) ALL\r\n",
        "a SORT RETURN (SAVE) (DATE) UTF-8 ALL\r\n",
        "a UID FETCH 1:* (FLAGS) (PARTIAL x)\r\n",
    ] {
        err(bad);
    }
}

/// GENURLAUTH, RESETKEY and URLFETCH (RFC 4467, 5524), and their bad forms.
#[test]
fn urlauth_commands() {
    assert_eq!(
        ok("a GENURLAUTH \"imap://u@h/INBOX/;UID=1;URLAUTH=authuser\" internal\r\n"),
        Command::GenUrlAuth(vec![(
            "imap://u@h/INBOX/;UID=1;URLAUTH=authuser".into(),
            "INTERNAL".into()
        )])
    );
    assert_eq!(
        ok("a RESETKEY INBOX INTERNAL\r\n"),
        Command::ResetKey {
            mailbox: Some(b"INBOX".to_vec()),
            mechanisms: vec!["INTERNAL".into()]
        }
    );
    assert!(matches!(
        ok("a RESETKEY\r\n"),
        Command::ResetKey { mailbox: None, .. }
    ));
    let Command::UrlFetch(args) = ok("a URLFETCH \"u1\" (\"u2\" binary BODYPARTSTRUCTURE)\r\n")
    else {
        panic!()
    };
    assert_eq!(args[0].params, None);
    assert_eq!(
        args[1].params.as_deref(),
        Some(&["BINARY".to_string(), "BODYPARTSTRUCTURE".to_string()][..])
    );
    for bad in [
        "a GENURLAUTH\r\n",
        "a GENURLAUTH \"u\"\r\n",
        "a URLFETCH\r\n",
        "a URLFETCH (\"u\" BINARY\r\n",
    ] {
        err(bad);
    }
}

#[test]
fn calendar_days() {
    assert_eq!(civil_day(1970, 1, 1), Some(0));
    assert_eq!(civil_day(2000, 2, 29), Some(11_016));
    assert_eq!(civil_day(1900, 2, 29), None);
    for d in [-1000, 0, 11_016, 20_000, 2_932_896] {
        let (y, m, day) = civil_from_day(d);
        assert_eq!(civil_day(y, m, day), Some(d));
    }
}

#[test]
fn messages_take_only_the_system_flags_that_exist() {
    for bad in [
        "a STORE 1 +FLAGS (\\Important)\r\n",
        "a STORE 1 FLAGS \\Seen \\Custom\r\n",
        "a UID STORE 1:* -FLAGS.SILENT (\\Flaggedd)\r\n",
        "a APPEND INBOX (\\Junk) {1}\r\nx\r\n",
    ] {
        let e = err(bad);
        assert!(
            e.reason.contains("is not a system flag"),
            "{bad}: {}",
            e.reason
        );
    }
    for good in [
        "a STORE 1 +FLAGS (\\SEEN \\answered $Label Work)\r\n",
        "a STORE 1 FLAGS \\Deleted\r\n",
        "a STORE 1 -FLAGS (\\Recent)\r\n",
        "a APPEND INBOX (\\Draft $Forwarded) {1}\r\nx\r\n",
    ] {
        ok(good);
    }
    // Special-use attributes are not message flags.
    ok("a CREATE Stuff (USE (\\Junk))\r\n");
}
