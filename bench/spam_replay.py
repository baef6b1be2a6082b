#!/usr/bin/env python3
"""Replays held-out mail through the whole pipeline as an outside sender
would send it, and counts where it ends up.

The corpus (default ../shared/corpus/spamassassin-train, whose MD5s begin
with 5 to f) is split by the MD5 in each file's name: names whose MD5
begins with 5 or 6 (about 2/11; --hold chooses others) are held out, the
rest train a model. Then a fresh embedded
`stratus serve`:

- has the model trained on the rest stored as its global model
  (`stratus spam train` without --out),
- has two users, ham@ and spam@replay.test, so where each message lands
  says how it was judged,
- resolves through a loopback DNS server that answers NXDOMAIN to every
  name (no SPF, DKIM keys, DMARC, reverse DNS or blocklist answers),

and each held-out message is sent over SMTP from 127.0.0.1 with the
envelope sender taken from its From, its original Date, CRLF line ends.
A ham message refused at DATA or filed in Junk is a false positive; a spam
message accepted into INBOX is a miss. The held-out mail is unseen by the
model, so the figures are the whole pipeline's on unseen mail of the
corpus's kind. Run from the repository root after
`cargo build --release`:

    python3 bench/spam_replay.py [--corpus DIR] [--keep]
"""

import argparse
import email
import email.policy
import email.utils
import imaplib
import os
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

STRATUS = os.path.abspath("target/release/stratus")
DOMAIN = "replay.test"
PASSWORD = "replay passphrase"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nxdomain(query):
    """The reply to a DNS query: the question echoed, NXDOMAIN, no records."""
    if len(query) < 12:
        return None
    ident, flags = struct.unpack("!HH", query[:4])
    opcode = (flags >> 11) & 0xF
    reply_flags = 0x8000 | (opcode << 11) | (flags & 0x0100) | 0x0080 | 3
    qdcount = struct.unpack("!H", query[4:6])[0]
    # The question section runs to the end of the first question.
    end = 12
    for _ in range(min(qdcount, 1)):
        while end < len(query) and query[end] != 0:
            end += query[end] + 1
        end += 5
    return struct.pack("!HHHHHH", ident, reply_flags, min(qdcount, 1), 0, 0, 0) + query[12:end]


def serve_dns(port):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    tcp = socket.socket()
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", port))
    tcp.listen(16)

    def udp_loop():
        while True:
            data, peer = udp.recvfrom(4096)
            reply = nxdomain(data)
            if reply:
                udp.sendto(reply, peer)

    def tcp_loop():
        while True:
            conn, _ = tcp.accept()
            with conn:
                try:
                    n = struct.unpack("!H", conn.recv(2))[0]
                    reply = nxdomain(conn.recv(n))
                    if reply:
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
                except (OSError, struct.error):
                    pass

    threading.Thread(target=udp_loop, daemon=True).start()
    threading.Thread(target=tcp_loop, daemon=True).start()


def held_out(name, hold):
    md5 = name.split(".")[-2]
    return md5[0] in hold


def split(corpus, work, hold):
    held = {"ham": [], "spam": []}
    for kind in ("ham", "spam"):
        train_dir = os.path.join(work, "train", kind)
        os.makedirs(train_dir)
        for name in sorted(os.listdir(os.path.join(corpus, kind))):
            path = os.path.join(corpus, kind, name)
            if held_out(name, hold):
                held[kind].append(path)
            else:
                shutil.copyfile(path, os.path.join(train_dir, name))
    return held


def envelope_sender(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    _, addr = email.utils.parseaddr(str(msg.get("From", "")))
    if "@" in addr and " " not in addr and addr.isascii():
        return addr
    return ""


def crlf(raw):
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def counts(imap_port, user):
    imap = imaplib.IMAP4("127.0.0.1", imap_port)
    imap.login(f"{user}@{DOMAIN}", PASSWORD)
    out = {}
    for box in ("INBOX", "Junk"):
        typ, data = imap.status(box, "(MESSAGES)")
        out[box] = int(data[0].decode().split("MESSAGES")[1].strip(" )"))
    imap.logout()
    return out


GROUPS = ["56", "78", "9a", "bc", "de", "f"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="../shared/corpus/spamassassin-train")
    ap.add_argument("--hold", default="56",
                    help="hold out the files whose MD5 begins with one of these characters")
    ap.add_argument("--all", action="store_true",
                    help="hold out each of " + " ".join(GROUPS) + " in turn, and sum")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    args = ap.parse_args()
    corpus = os.path.abspath(args.corpus)
    if not os.access(STRATUS, os.X_OK):
        sys.exit("build first: cargo build --release")
    dns_port = free_port()
    serve_dns(dns_port)
    total = {"ham": 0, "spam": 0, "fp": 0, "caught": 0, "lost": 0}
    for hold in GROUPS if args.all else [args.hold]:
        print(f"== held out: MD5 beginning with one of {hold!r}")
        r = replay(corpus, hold, dns_port, args.keep)
        for k in total:
            total[k] += r[k]
    if args.all:
        print("== all groups")
        report(total)
    return 1 if total["lost"] else 0


def report(r):
    fp, caught = r["fp"], r["caught"]
    precision = caught / (caught + fp) if caught + fp else 0.0
    recall = caught / r["spam"] if r["spam"] else 0.0
    fpr = fp / r["ham"] if r["ham"] else 0.0
    print(f"ham {r['ham']}, spam {r['spam']}: spam caught {caught}, ham called spam {fp}")
    print(f"precision {precision * 100:.2f} %, recall {recall * 100:.2f} %, "
          f"false-positive rate {fpr * 100:.2f} %")


def replay(corpus, hold, dns_port, keep):
    work = tempfile.mkdtemp(prefix="stratus-replay-")
    data = os.path.join(work, "data")
    os.makedirs(data)
    held = split(corpus, work, hold)
    smtp_port, imap_port = free_port(), free_port()
    env = dict(
        os.environ,
        STRATUS_DATA_DIR=data,
        STRATUS_BACKEND="local",
        STRATUS_HOSTNAME="mx.replay.test",
        STRATUS_DNS_RESOLVER=f"127.0.0.1:{dns_port}",
        STRATUS_SMTP_LISTEN=f"127.0.0.1:{smtp_port}",
        STRATUS_IMAP_LISTEN=f"127.0.0.1:{imap_port}",
        STRATUS_SUBMISSION_LISTEN=f"127.0.0.1:{free_port()}",
        STRATUS_SUBMISSIONS_LISTEN=f"127.0.0.1:{free_port()}",
        STRATUS_IMAPS_LISTEN=f"127.0.0.1:{free_port()}",
        STRATUS_POP3_LISTEN=f"127.0.0.1:{free_port()}",
        STRATUS_POP3S_LISTEN=f"127.0.0.1:{free_port()}",
        STRATUS_MANAGESIEVE_LISTEN=f"127.0.0.1:{free_port()}",
        STRATUS_HTTP_LISTEN=f"127.0.0.1:{free_port()}",
        STRATUS_HTTPS_LISTEN=f"127.0.0.1:{free_port()}",
        STRATUS_LOG_FORMAT="json",
    )
    env.pop("STRATUS_CONFIG", None)

    def run(*argv, stdin=None):
        subprocess.run([STRATUS, *argv], env=env, check=True, input=stdin,
                       stdout=subprocess.PIPE, text=True)

    run("domain", "add", DOMAIN)
    for user in ("ham", "spam"):
        run("user", "add", f"{user}@{DOMAIN}", "--password-stdin", stdin=PASSWORD + "\n")
    train = os.path.join(work, "train")
    trained = subprocess.run(
        [STRATUS, "spam", "train", "--ham", f"{train}/ham", "--spam", f"{train}/spam"],
        env=env, check=True, stdout=subprocess.PIPE, text=True)
    print(trained.stdout.strip())
    log = open(os.path.join(work, "serve.log"), "w")
    server = subprocess.Popen([STRATUS, "serve"], env=env, stdout=log, stderr=log)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", smtp_port), timeout=1).close()
                socket.create_connection(("127.0.0.1", imap_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("stratus serve did not start; see " + log.name)
        refused = {"ham": [], "spam": []}
        accepted = {"ham": 0, "spam": 0}
        started = time.time()
        for kind in ("ham", "spam"):
            for path in held[kind]:
                raw = open(path, "rb").read()
                with smtplib.SMTP("127.0.0.1", smtp_port, local_hostname="relay.replay.invalid",
                                  timeout=60) as smtp:
                    try:
                        smtp.sendmail(envelope_sender(raw), [f"{kind}@{DOMAIN}"], crlf(raw))
                        accepted[kind] += 1
                    except smtplib.SMTPResponseException as e:
                        refused[kind].append((os.path.basename(path), e.smtp_code,
                                              e.smtp_error.decode(errors="replace")))
                    except smtplib.SMTPDataError as e:
                        refused[kind].append((os.path.basename(path), e.smtp_code,
                                              e.smtp_error.decode(errors="replace")))
        sent = time.time() - started
        # Wait until every accepted message is filed.
        deadline = time.time() + 300
        while True:
            c = {k: counts(imap_port, k) for k in ("ham", "spam")}
            filed = {k: c[k]["INBOX"] + c[k]["Junk"] for k in c}
            if all(filed[k] >= accepted[k] for k in c) or time.time() > deadline:
                break
            time.sleep(1)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        log.close()

    fp = len(refused["ham"]) + c["ham"]["Junk"]
    caught = len(refused["spam"]) + c["spam"]["Junk"]
    lost = {k: accepted[k] - filed[k] for k in c}
    print(f"sent {len(held['ham'])} ham and {len(held['spam'])} spam in {sent:.1f} s")
    print(f"  ham:  {c['ham']['INBOX']} in INBOX, {c['ham']['Junk']} in Junk, "
          f"{len(refused['ham'])} refused")
    print(f"  spam: {c['spam']['Junk']} in Junk, {len(refused['spam'])} refused, "
          f"{c['spam']['INBOX']} in INBOX")
    for name, code, text in refused["ham"]:
        print(f"  ham refused: {name}: {code} {text}")
    r = {"ham": len(held["ham"]), "spam": len(held["spam"]), "fp": fp, "caught": caught,
         "lost": sum(lost.values())}
    report(r)
    if r["lost"]:
        print(f"NOT FILED within 300 s: {lost}")
    if keep:
        print("work directory:", work)
    else:
        shutil.rmtree(work)
    return r


if __name__ == "__main__":
    sys.exit(main())
