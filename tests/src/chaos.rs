//! The chaos test: `stratus serve` is killed with SIGKILL and restarted,
//! again and again, while SMTP clients send and an IMAP client appends and
//! watches INBOX. Afterwards every message that got 250 (and every APPEND
//! that got OK) is in the mailbox exactly once, no job is left in a queue
//! other than a dead-letter queue, and the UIDs the IMAP client saw only
//! ever grew and still name the same messages.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stratus_core::ports::{Queue, QueueName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::cli::{Env, wait_for_listeners};
use crate::smtp::{Look, RawSmtp, add_users, queue_id};

/// What the clients were told, across all rounds.
#[derive(Debug, Default)]
struct Record {
    /// Queue ids of SMTP messages that got 250, with their subjects.
    acked: Vec<(String, String)>,
    /// Subjects of APPENDs that got OK, with the UID APPENDUID gave.
    appended: Vec<(String, u32)>,
    /// Every UID the IMAP client saw, and the subject it had.
    seen: BTreeMap<u32, String>,
    /// UIDVALIDITY values seen (must stay one).
    validity: BTreeSet<u32>,
    /// Newly seen UIDs that were not above everything seen before.
    out_of_order: Vec<String>,
}

/// A small IMAP client over plaintext loopback (LOGIN is allowed there).
struct Imap {
    c: BufReader<TcpStream>,
    tag: u32,
}

impl Imap {
    async fn connect(addr: &str) -> std::io::Result<Imap> {
        let stream = TcpStream::connect(addr).await?;
        let mut imap = Imap {
            c: BufReader::new(stream),
            tag: 0,
        };
        let mut greeting = String::new();
        imap.c.read_line(&mut greeting).await?;
        Ok(imap)
    }

    /// Sends a command (`literal` follows it as a LITERAL+ literal) and
    /// returns the response, literals inline, and whether it was OK.
    async fn run(
        &mut self,
        command: &str,
        literal: Option<&[u8]>,
    ) -> std::io::Result<(bool, String)> {
        self.tag += 1;
        let tag = format!("c{}", self.tag);
        let mut wire = match literal {
            Some(l) => format!("{tag} {command} {{{}+}}\r\n", l.len()).into_bytes(),
            None => format!("{tag} {command}\r\n").into_bytes(),
        };
        if let Some(l) = literal {
            wire.extend_from_slice(l);
            wire.extend_from_slice(b"\r\n");
        }
        self.c.get_mut().write_all(&wire).await?;
        let mut out = String::new();
        loop {
            let mut line = String::new();
            if self.c.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            // A literal: `{n}` at the end of the line, then n octets.
            if let Some(n) = line
                .trim_end()
                .strip_suffix('}')
                .and_then(|l| l.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok())
            {
                let mut data = vec![0; n];
                self.c.read_exact(&mut data).await?;
                out.push_str(&line);
                out.push_str(&String::from_utf8_lossy(&data));
                continue;
            }
            out.push_str(&line);
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                return Ok((rest.starts_with("OK"), out));
            }
        }
    }
}

/// The number after `word` in `text` (`[APPENDUID 7 12]` → 7 for
/// `APPENDUID`).
fn number_after(text: &str, word: &str) -> Option<u32> {
    let at = text.find(word)? + word.len();
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// One IMAP client's work until `stop`: append a message, list INBOX's
/// UIDs, learn the subjects of new ones; errors (the server died) end it.
async fn imap_activity(
    addr: String,
    round: usize,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
) {
    let Ok(mut imap) = Imap::connect(&addr).await else {
        return;
    };
    if !matches!(
        imap.run("LOGIN alice@example.com \"alice password\"", None)
            .await,
        Ok((true, _))
    ) {
        return;
    }
    let Ok((true, selected)) = imap.run("SELECT INBOX", None).await else {
        return;
    };
    if let Some(v) = number_after(&selected, "UIDVALIDITY") {
        record.lock().unwrap().validity.insert(v);
    }
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let subject = format!("append {round}-{n}");
        n += 1;
        let message = format!("From: alice@example.com\r\nSubject: {subject}\r\n\r\nappended\r\n");
        match imap
            .run("APPEND INBOX (\\Seen)", Some(message.as_bytes()))
            .await
        {
            Ok((true, reply)) => {
                let uid = reply
                    .split("APPENDUID")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().nth(1))
                    .and_then(|u| u.trim_end_matches(']').parse().ok())
                    .expect("APPENDUID in the OK");
                record.lock().unwrap().appended.push((subject, uid));
            }
            Ok((false, reply)) => panic!("APPEND refused: {reply}"),
            Err(_) => return,
        }
        let Ok((true, search)) = imap.run("UID SEARCH ALL", None).await else {
            return;
        };
        let uids: Vec<u32> = search
            .lines()
            .filter_map(|l| l.strip_prefix("* SEARCH"))
            .flat_map(|l| l.split_whitespace().filter_map(|u| u.parse().ok()))
            .collect();
        let new: Vec<u32> = {
            let mut r = record.lock().unwrap();
            let max_seen = r.seen.keys().next_back().copied().unwrap_or(0);
            let new: Vec<u32> = uids
                .iter()
                .copied()
                .filter(|u| !r.seen.contains_key(u))
                .collect();
            for &u in &new {
                if u <= max_seen {
                    r.out_of_order
                        .push(format!("UID {u} appeared after {max_seen} had been seen"));
                }
                // Known to exist; its subject follows.
                r.seen.insert(u, String::new());
            }
            new
        };
        if new.is_empty() {
            continue;
        }
        let set: Vec<String> = new.iter().map(u32::to_string).collect();
        let command = format!(
            "UID FETCH {} (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
            set.join(",")
        );
        let Ok((true, fetched)) = imap.run(&command, None).await else {
            return;
        };
        let mut r = record.lock().unwrap();
        for item in fetched.split("* ").filter(|i| i.contains(" FETCH ")) {
            let (Some(uid), Some(subject)) = (
                number_after(item, "UID "),
                item.lines().find_map(|l| l.strip_prefix("Subject: ")),
            ) else {
                continue;
            };
            r.seen.insert(uid, subject.trim().to_string());
        }
    }
}

/// One SMTP client's work until `stop`: messages to alice, recording the
/// ones that got 250.
async fn smtp_load(
    addr: String,
    round: usize,
    sender: usize,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
) {
    let Ok((mut c, _)) = RawSmtp::connect(&addr).await else {
        return;
    };
    if c.cmd("EHLO chaos.example").await.is_err() {
        return;
    }
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let subject = format!("chaos {round}-{sender}-{n}");
        n += 1;
        let body = format!("Subject: {subject}\r\n\r\n{}\r\n", "x".repeat(2000));
        match c
            .transaction(
                "sender@remote.example",
                &["alice@example.com"],
                body.as_bytes(),
            )
            .await
        {
            Ok(reply) if reply.starts_with("250") => {
                let id = queue_id(&reply).expect("queue id in 250");
                record.lock().unwrap().acked.push((id, subject));
            }
            _ => return,
        }
    }
}

/// `rounds` times: start the server, put it under SMTP and IMAP load, and
/// kill it with SIGKILL once a round-dependent number of messages is in;
/// then restart it for good and check what the clients were told.
pub async fn kill_and_restart_under_load(env: &mut Env, look: Look, rounds: usize) {
    add_users(env);
    // Jobs a killed server had taken come back after 2 s, not 60.
    env.set("STRATUS_STAGE_VISIBILITY", "2");
    let record = Arc::new(Mutex::new(Record::default()));
    for round in 0..rounds {
        let _ = std::fs::remove_file(env.data_dir().join("listeners.json"));
        let mut child = env.serve(&[]);
        let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
        let smtp = listeners["smtp"].as_str().unwrap().to_string();
        let imap = listeners["imap"].as_str().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for sender in 0..4 {
            tasks.push(tokio::spawn(smtp_load(
                smtp.clone(),
                round,
                sender,
                record.clone(),
                stop.clone(),
            )));
        }
        tasks.push(tokio::spawn(imap_activity(
            imap,
            round,
            record.clone(),
            stop.clone(),
        )));
        // Kill at a different point of the load each round (by progress,
        // not by time).
        let target = record.lock().unwrap().acked.len() + 15 + (round * 37) % 60;
        crate::eventually(Duration::from_secs(60), "SMTP load under way", || {
            let n = record.lock().unwrap().acked.len();
            async move { (n >= target).then_some(()) }
        })
        .await;
        std::process::Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()
            .unwrap();
        let _ = child.wait();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("a client task panicked");
        }
    }

    let _ = std::fs::remove_file(env.data_dir().join("listeners.json"));
    let mut child = env.serve(&[]);
    wait_for_listeners(&env.data_dir(), &mut child).await;
    let record = std::mem::take(&mut *record.lock().unwrap());
    let entries = crate::eventually(
        Duration::from_secs(120),
        "every acknowledged message delivered",
        || async {
            let entries = look.inbox("alice@example.com").await;
            let ids: BTreeSet<String> = entries.iter().map(|e| e.queue_id.to_string()).collect();
            record
                .acked
                .iter()
                .all(|(id, _)| ids.contains(id))
                .then_some(entries)
        },
    )
    .await;
    let queues = stratus_store_local::LocalStores::open(&env.data_dir(), 5)
        .unwrap()
        .queue;
    let dead = crate::eventually(Duration::from_secs(60), "every queue drained", || async {
        let mut dead = 0;
        for q in QueueName::ALL {
            let d = queues.depth(q).await.unwrap();
            if d.visible + d.in_flight + d.delayed > 0 {
                return None;
            }
            dead += d.dead;
        }
        Some(dead)
    })
    .await;
    crate::cli::stop(child);

    let subject_of = |e: &stratus_core::mailstore::MessageEntry| {
        e.meta
            .as_ref()
            .and_then(|m| m.envelope.subject.clone())
            .unwrap_or_default()
    };
    let mut by_subject: HashMap<String, usize> = HashMap::new();
    let mut by_uid: BTreeMap<u32, String> = BTreeMap::new();
    for e in &entries {
        *by_subject.entry(subject_of(e)).or_default() += 1;
        assert!(
            by_uid.insert(e.uid, subject_of(e)).is_none(),
            "UID {} used twice",
            e.uid
        );
    }
    for (id, subject) in &record.acked {
        assert_eq!(
            by_subject.get(subject),
            Some(&1),
            "{subject} ({id}) delivered once"
        );
    }
    for (subject, uid) in &record.appended {
        assert_eq!(by_subject.get(subject), Some(&1), "{subject} appended once");
        assert_eq!(
            by_uid.get(uid),
            Some(subject),
            "APPENDUID {uid} names {subject}"
        );
    }
    assert!(record.out_of_order.is_empty(), "{:?}", record.out_of_order);
    for (uid, subject) in &record.seen {
        let now = by_uid.get(uid);
        assert!(now.is_some(), "UID {uid} seen, then gone");
        if !subject.is_empty() {
            assert_eq!(now, Some(subject), "UID {uid} reused");
        }
    }
    assert_eq!(
        record.validity.len(),
        1,
        "UIDVALIDITY changed: {:?}",
        record.validity
    );
    assert_eq!(dead, 0, "jobs dead-lettered");
    eprintln!(
        "chaos: {rounds} kill -9 restarts; {} SMTP messages acknowledged, {} APPENDs, {} messages in INBOX, {} UIDs watched, none lost, none twice",
        record.acked.len(),
        record.appended.len(),
        entries.len(),
        record.seen.len()
    );
}

/// Every blob key that a message entry of `users` references.
async fn referenced(look: &Look, users: &[&str]) -> (BTreeSet<String>, usize) {
    let mut keys = BTreeSet::new();
    let mut entries = 0;
    for user in users {
        for e in look.inbox(user).await {
            entries += 1;
            keys.insert(e.body.as_str().to_string());
        }
    }
    (keys, entries)
}

/// Every message blob in the store.
async fn stored(look: &Look) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut after = None;
    loop {
        let page = look.blobs.list("msg/", after.as_ref(), 500).await.unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        after = Some(last.key.clone());
        out.extend(page.into_iter().map(|b| b.key.as_str().to_string()));
    }
}

/// The sweeper under SIGKILL: rounds in which `serve` is killed while it
/// expunges and `stratus sweep` is killed while it sweeps (or runs to the
/// end). After every round each body a mailbox entry references is still
/// there; at the end, after two complete passes a grace period apart,
/// every body nothing references is gone, and the mailbox counters match
/// the entries.
pub async fn sweep_survives_kill_9(env: &mut Env, look: Look, rounds: usize) {
    use stratus_core::mailstore::{Mailstore, NewMessage};
    use stratus_core::{Address, BlobKey, MailboxName, QueueId};

    add_users(env);
    env.set("STRATUS_SEND_LIFETIME", "10s");
    env.set("STRATUS_SWEEP_GRACE", "1s");
    env.set("STRATUS_CHANGES_RETENTION", "1s");
    env.set("STRATUS_SWEEP_INTERVAL", "off");
    // 240 messages for alice made an hour ago (old enough to sweep); every
    // third shares its body with a message in bob's INBOX.
    let store = Mailstore::new(
        look.index.clone(),
        look.blobs.clone(),
        Arc::new(stratus_core::ports::InProcessFeed::default()),
    );
    let hour_ago = (stratus_core::mailstore::now() as u64 - 3600) * 1000;
    let inbox = MailboxName::inbox();
    for i in 0..240u64 {
        let id = QueueId::generate_at(hour_ago + i);
        let key = BlobKey::for_message(&id);
        let body = format!("Subject: old {i}\r\n\r\nhello\r\n").into_bytes();
        look.blobs.put(&key, body.clone().into()).await.unwrap();
        let users: &[&str] = if i % 3 == 0 {
            &["alice@example.com", "bob@example.com"]
        } else {
            &["alice@example.com"]
        };
        for user in users {
            let new = NewMessage {
                queue_id: id.clone(),
                body: key.clone(),
                body_size: body.len() as u64,
                prefix: String::new(),
                meta: stratus_core::message::analyze(&body),
                flags: Vec::new(),
                internal_date: 0,
                internal_tz: 0,
            };
            store
                .append(&Address::parse(user).unwrap(), &inbox, new)
                .await
                .unwrap();
        }
    }
    let users = ["alice@example.com", "bob@example.com"];
    for round in 0..rounds {
        let _ = std::fs::remove_file(env.data_dir().join("listeners.json"));
        let mut child = env.serve(&[]);
        let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
        let mut imap = Imap::connect(listeners["imap"].as_str().unwrap())
            .await
            .unwrap();
        let user = users[round % 2];
        assert!(
            imap.run(
                &format!(
                    "LOGIN {user} \"{}\"",
                    if round % 2 == 0 {
                        "alice password"
                    } else {
                        "bob password"
                    }
                ),
                None
            )
            .await
            .unwrap()
            .0
        );
        assert!(imap.run("SELECT INBOX", None).await.unwrap().0);
        let (ok, _) = imap
            .run("STORE 1:60 +FLAGS.SILENT (\\Deleted)", None)
            .await
            .unwrap();
        assert!(ok || round % 2 == 1, "alice's STORE");
        // EXPUNGE, and the server killed while it works on it.
        imap.c.get_mut().write_all(b"x EXPUNGE\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(5 * (round as u64 % 4))).await;
        std::process::Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()
            .unwrap();
        let _ = child.wait();
        // A sweep killed at a different point each round; every third
        // round runs to the end.
        let mut sweep = env
            .command(&["sweep"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if round % 3 != 2 {
            tokio::time::sleep(Duration::from_millis(20 * (round as u64 % 5))).await;
            std::process::Command::new("kill")
                .args(["-KILL", &sweep.id().to_string()])
                .status()
                .unwrap();
        }
        let _ = sweep.wait();
        let (keys, _) = referenced(&look, &users).await;
        let have = stored(&look).await;
        let lost: Vec<&String> = keys.difference(&have).collect();
        assert!(
            lost.is_empty(),
            "round {round}: referenced bodies deleted: {lost:?}"
        );
    }
    // Two complete passes a grace period (1 s) apart.
    env.ok(&["sweep"], b"");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.ok(&["sweep"], b"");
    let (keys, entries) = referenced(&look, &users).await;
    let have = stored(&look).await;
    assert_eq!(have, keys, "exactly the referenced bodies remain");
    for user in users {
        let (record, _) = store
            .mailbox(&Address::parse(user).unwrap(), &inbox)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            record.messages as usize,
            look.inbox(user).await.len(),
            "{user}'s counters"
        );
    }
    eprintln!(
        "sweep chaos: {rounds} rounds of kill -9 during EXPUNGE and sweep; {entries} entries, {} bodies left of 240, none referenced lost",
        have.len()
    );
}
