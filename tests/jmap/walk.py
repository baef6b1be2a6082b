"""A JMAP client that is not ours (jmapc, from PyPI) reads, searches,
flags and moves mail on a running `stratus serve`.

    walk.py HOST:PORT ADDRESS PASSWORD read|changes STATE|send TO

Prints one `name: value` line per finding, for the Rust test to check.
The server's certificate is the self-signed one it made for itself, so
it is not verified (the connection is still TLS)."""

import json
import sys

import urllib3
from jmapc import (
    Client,
    Email,
    EmailAddress,
    EmailBodyPart,
    EmailBodyValue,
    EmailSubmission,
    EmailQueryFilterCondition,
    MailboxQueryFilterCondition,
    Ref,
)
from jmapc.methods import (
    EmailChanges,
    EmailGet,
    EmailQuery,
    EmailSet,
    EmailSubmissionSet,
    IdentityGet,
    MailboxGet,
    MailboxQuery,
    ThreadGet,
)

urllib3.disable_warnings()
host, address, password, phase = sys.argv[1:5]
client = Client.create_with_password(host=host, user=address, password=password)
client.requests_session.verify = False
# REQUESTS_CA_BUNDLE in the environment would win over verify=False.
client.requests_session.trust_env = False


def say(name, value):
    print(f"{name}: {json.dumps(value, sort_keys=True)}", flush=True)


def one(method):
    return client.request(method, raise_errors=True)


def mailbox(role):
    return one(MailboxQuery(filter=MailboxQueryFilterCondition(role=role))).ids[0]


say("account", client.account_id)
if phase == "read":
    inbox = mailbox("inbox")
    archive = mailbox("archive")
    responses = client.request(
        [
            MailboxGet(ids=[inbox]),
            EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=inbox)),
            EmailGet(
                ids=Ref("/ids"),
                properties=["subject", "from", "threadId", "hasAttachment", "textBody", "attachments", "bodyValues"],
                fetch_text_body_values=True,
            ),
        ],
        raise_errors=True,
    )
    box = responses[0].response.data[0]
    say("inbox", {"total": box.total_emails, "unread": box.unread_emails, "threads": box.total_threads})
    emails = responses[2].response.data
    for e in sorted(emails, key=lambda e: e.subject):
        text = "".join(v.value for v in (e.body_values or {}).values())
        say("email", {"subject": e.subject, "from": e.mail_from[0].email, "attachment": e.has_attachment,
                      "text": text.strip(), "names": [a.name for a in e.attachments or []]})
    threads = {e.thread_id for e in emails}
    thread = one(ThreadGet(ids=list(threads)))
    say("threads", sorted(len(t.email_ids) for t in thread.data))
    found = one(EmailQuery(filter=EmailQueryFilterCondition(text="quarterly")))
    say("search", [e.subject for e in one(EmailGet(ids=found.ids, properties=["subject"])).data])
    none = one(EmailQuery(filter=EmailQueryFilterCondition(text="nothing-matches-this")))
    say("search-none", none.ids)
    identities = one(IdentityGet(ids=None))
    say("identities", sorted(i.email for i in identities.data))
    state = one(EmailGet(ids=[], properties=["id"])).state
    target = [e for e in emails if e.subject == "Quarterly report"][0]
    result = one(EmailSet(update={target.id: {"keywords/$flagged": True, "keywords/$seen": True,
                                              "mailboxIds": {archive: True}}}))
    say("updated", sorted((result.updated or {}).keys()) == [target.id])
    changes = one(EmailChanges(since_state=state))
    say("changes", {"updated": changes.updated, "created": changes.created, "moved": target.id})
    say("state", changes.new_state)
elif phase == "send":
    drafts, sent = mailbox("drafts"), mailbox("sent")
    identity = one(IdentityGet(ids=None)).data[0].id
    draft = Email(
        mail_from=[EmailAddress(name="Alice", email=address)],
        to=[EmailAddress(email=sys.argv[5])],
        subject="Sent over JMAP",
        keywords={"$draft": True},
        mailbox_ids={drafts: True},
        body_values={"body": EmailBodyValue(value="Hello from jmapc.")},
        text_body=[EmailBodyPart(part_id="body", type="text/plain")],
    )
    responses = client.request(
        [
            EmailSet(create={"draft": draft}),
            EmailSubmissionSet(
                create={"send": EmailSubmission(email_id="#draft", identity_id=identity)},
                on_success_update_email={
                    "#send": {f"mailboxIds/{drafts}": None, f"mailboxIds/{sent}": True, "keywords/$draft": None}
                },
            ),
        ],
        raise_errors=True,
    )
    say("sent", sorted((responses[1].response.created or {}).keys()))
    filed = one(EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=sent)))
    say("in-sent", len(filed.ids))
else:
    changes = one(EmailChanges(since_state=sys.argv[5]))
    got = one(EmailGet(ids=changes.updated, properties=["subject", "keywords", "mailboxIds"]))
    say("imap-changes", sorted((e.subject, sorted(k for k, v in (e.keywords or {}).items() if v)) for e in got.data))
