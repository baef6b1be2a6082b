//! Accounts over the index: the same behaviour on every backend.

use std::collections::HashSet;

use stratus_core::accounts::{AccountError, Accounts};
use stratus_core::{Address, Domain, MailboxName, SpecialUse};

use crate::Backend;

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

pub async fn domains_users_and_mailboxes(b: &Backend) {
    let a = Accounts::new(b.index.clone());
    let example = Domain::parse("Example.com").unwrap();

    let err = a
        .add_user(&addr("alice@example.com"), "h".into(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, AccountError::UnknownDomain(_)), "{err}");
    assert!(
        err.to_string().contains("stratus domain add example.com"),
        "{err}"
    );

    a.add_domain(&example).await.unwrap();
    assert!(matches!(
        a.add_domain(&Domain::parse("EXAMPLE.COM").unwrap()).await,
        Err(AccountError::DomainExists(_))
    ));
    a.add_domain(&Domain::parse("bücher.example").unwrap())
        .await
        .unwrap();
    let names: Vec<String> = a
        .list_domains()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name.to_string())
        .collect();
    assert_eq!(names, ["example.com", "xn--bcher-kva.example"]);

    let alice = a
        .add_user(&addr("Alice@example.com"), "hash-a".into(), Some(1 << 30))
        .await
        .unwrap();
    assert_eq!(alice.quota, Some(1 << 30));
    assert!(
        matches!(
            a.add_user(&addr("alice@EXAMPLE.com"), "h".into(), None)
                .await,
            Err(AccountError::UserExists(_))
        ),
        "case-insensitive uniqueness"
    );
    a.add_user(&addr("jörg@bücher.example"), "hash-j".into(), None)
        .await
        .unwrap();
    assert_eq!(
        a.user(&addr("ALICE@example.com"))
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "hash-a"
    );

    let boxes = a.mailboxes(&addr("alice@example.com")).await.unwrap();
    let roles: Vec<(String, Option<SpecialUse>)> = boxes
        .iter()
        .map(|m| (m.name.to_string(), m.special_use))
        .collect();
    for want in [
        ("INBOX", None),
        ("Sent", Some(SpecialUse::Sent)),
        ("Drafts", Some(SpecialUse::Drafts)),
        ("Junk", Some(SpecialUse::Junk)),
        ("Trash", Some(SpecialUse::Trash)),
        ("Archive", Some(SpecialUse::Archive)),
    ] {
        assert!(
            roles.contains(&(want.0.to_string(), want.1)),
            "{want:?} in {roles:?}"
        );
    }
    assert_eq!(boxes.len(), 6);
    assert!(boxes.iter().all(|m| m.uidnext == 1 && m.messages == 0));
    let subs = a
        .subscriptions(&addr("alice@example.com"), &boxes)
        .await
        .unwrap();
    assert_eq!(
        subs.len(),
        6,
        "the default mailboxes start subscribed: {subs:?}"
    );
    let validities: HashSet<u32> = boxes.iter().map(|m| m.uidvalidity).collect();
    assert_eq!(validities.len(), 6, "every mailbox has its own UIDVALIDITY");

    let created = a
        .create_mailbox(
            &addr("alice@example.com"),
            MailboxName::parse("Projekte/Übersicht").unwrap(),
        )
        .await
        .unwrap();
    assert!(!validities.contains(&created.uidvalidity));
    let sent_lower = a
        .create_mailbox(
            &addr("alice@example.com"),
            MailboxName::parse("sent").unwrap(),
        )
        .await;
    assert!(sent_lower.is_ok(), "names are case-sensitive except INBOX");
    assert!(matches!(
        a.create_mailbox(
            &addr("alice@example.com"),
            MailboxName::parse("inbox").unwrap()
        )
        .await,
        Err(AccountError::MailboxExists(_))
    ));
    assert!(matches!(
        a.create_mailbox(
            &addr("nobody@example.com"),
            MailboxName::parse("X").unwrap()
        )
        .await,
        Err(AccountError::UnknownUser(_))
    ));

    a.set_password(&addr("alice@example.com"), "hash-b".into())
        .await
        .unwrap();
    a.set_quota(&addr("alice@example.com"), None).await.unwrap();
    let alice = a.user(&addr("alice@example.com")).await.unwrap().unwrap();
    assert_eq!(
        (alice.password_hash.as_str(), alice.quota),
        ("hash-b", None)
    );
    assert!(matches!(
        a.set_password(&addr("bob@example.com"), "x".into()).await,
        Err(AccountError::UnknownUser(_))
    ));

    let err = a.del_domain(&example).await.unwrap_err();
    assert!(
        matches!(err, AccountError::DomainNotEmpty { users: 1, .. }),
        "{err}"
    );
    a.del_user(&addr("alice@example.com")).await.unwrap();
    assert!(a.user(&addr("alice@example.com")).await.unwrap().is_none());
    assert!(
        a.mailboxes(&addr("alice@example.com"))
            .await
            .unwrap()
            .is_empty(),
        "mailboxes go with the user"
    );
    assert!(matches!(
        a.del_user(&addr("alice@example.com")).await,
        Err(AccountError::UnknownUser(_))
    ));
    a.del_domain(&example).await.unwrap();
    assert!(matches!(
        a.del_domain(&example).await,
        Err(AccountError::UnknownDomain(_))
    ));
    assert_eq!(
        a.list_users(&Domain::parse("bücher.example").unwrap())
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A mailbox deleted and created again never reuses a UIDVALIDITY, even when
/// many are handed out within the same second.
pub async fn uidvalidity_is_unique(b: &Backend) {
    let a = Accounts::new(b.index.clone());
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.next_uidvalidity().await.unwrap() })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        assert!(seen.insert(t.await.unwrap()));
    }
    assert_eq!(seen.len(), 20);
}

/// Subscriptions are names of their own (RFC 9051 §6.3.7): they outlive
/// the mailbox, may name one that never existed, are bounded, and the
/// old-style flag on a mailbox record becomes one on first use.
pub async fn subscriptions_are_names(b: &Backend) {
    use stratus_core::ports::{Condition, IndexExt, Key};
    let a = Accounts::new(b.index.clone());
    a.add_domain(&Domain::parse("example.com").unwrap())
        .await
        .unwrap();
    let alice = addr("alice@example.com");
    a.add_user(&alice, "h".into(), None).await.unwrap();
    let name = |n: &str| MailboxName::parse(n).unwrap();
    let created = a.create_mailbox(&alice, name("Old")).await.unwrap();
    assert!(!created.subscribed, "CREATE does not subscribe");
    // An old record that carries the flag.
    let mut old = created.clone();
    old.subscribed = true;
    let key = Key::new(format!("mbox#{}", alice.account_key()), "Old");
    let _ = b
        .index
        .put(key, serde_json::to_vec(&old).unwrap(), Condition::Any)
        .await
        .unwrap();
    a.delete_mailbox(&alice, &name("Old")).await.unwrap();
    a.set_subscribed(&alice, &name("Never/There"), true)
        .await
        .unwrap();
    let boxes = a.mailboxes(&alice).await.unwrap();
    let subs = a.subscriptions(&alice, &boxes).await.unwrap();
    assert!(subs.contains(&name("Old")), "kept after DELETE: {subs:?}");
    assert!(subs.contains(&name("Never/There")), "{subs:?}");
    a.set_subscribed(&alice, &name("Old"), false).await.unwrap();
    let subs = a.subscriptions(&alice, &boxes).await.unwrap();
    assert!(!subs.contains(&name("Old")), "{subs:?}");
    // Bounded: subscribing again to a name held is no new one.
    for i in subs.len()..stratus_core::accounts::MAX_SUBSCRIPTIONS {
        a.set_subscribed(&alice, &name(&format!("n{i}")), true)
            .await
            .unwrap();
    }
    a.set_subscribed(&alice, &name("n10"), true).await.unwrap();
    let err = a
        .set_subscribed(&alice, &name("one/more"), true)
        .await
        .unwrap_err();
    assert!(matches!(err, AccountError::TooManySubscriptions), "{err}");
    // The user's subscriptions go with the user.
    a.del_user(&alice).await.unwrap();
    a.add_user(&alice, "h".into(), None).await.unwrap();
    let boxes = a.mailboxes(&alice).await.unwrap();
    assert_eq!(a.subscriptions(&alice, &boxes).await.unwrap().len(), 6);
}
