#!/usr/bin/env python3
"""Cost basis of the AWS backend: requests per message, counted on the emulators.

    bench/cost.py [--messages N]       (default 300; run from the work tree)

Starts its own emulator pair (localstack/up.sh on STRATUS_EMU_PORT /
STRATUS_DDB_PORT, default 4586 / 8020), a counting proxy in front of each
(bench/count_proxy.py), and `stratus serve --backend aws` pointed at the
proxies. It sends N messages of 10 KiB over SMTP, waits until the pipeline
has consumed them, then reads every message once over IMAP, and counts the
requests of each phase. From the counts per message it prices one million
messages a month at us-east-1 list prices, and writes results/cost.json
and results/cost.md under STRATUS_BENCH_DIR (default /tmp/stratus-bench).
It stops everything it started, the emulators included (localstack/down.sh).
"""

import argparse
import imaplib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, HERE)
import count_proxy  # noqa: E402

# us-east-1 list prices, as published before 2026-11-28 (USD).
PRICES_DATE = "2026-11-28"
S3_PUT_PER_1K = 0.005       # PUT, COPY, POST, LIST
S3_GET_PER_1K = 0.0004      # GET, HEAD and other reads
S3_GB_MONTH = 0.023
DDB_WRU_PER_M = 0.625       # on demand
DDB_RRU_PER_M = 0.125
DDB_GB_MONTH = 0.25
SQS_PER_M = 0.40            # standard queue, per 64 KiB request chunk
LAMBDA_REQ_PER_M = 0.20
LAMBDA_GB_S = 0.0000166667  # x86
# Assumptions (not measured here): function memory (the template's
# FunctionMemory default) and billed duration per invocation.
LAMBDA_MEMORY_GB = 0.5
LAMBDA_MS = 100
MONTHLY = 1_000_000
USERS = 20
DOMAIN = "bench.test"
PASSWORD = "bench password 1"
STAGES = ["inbound", "route", "deliver", "archive", "send"]


def log(msg):
    print(f"[cost {time.strftime('%T')}] {msg}", file=sys.stderr, flush=True)


def counts(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__counts") as r:
        return json.load(r)


def reset(port):
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/__reset", method="POST"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300)
    args = ap.parse_args()
    n = args.messages
    scratch = os.environ.get("STRATUS_BENCH_DIR", "/tmp/stratus-bench")
    emu_port = int(os.environ.get("STRATUS_EMU_PORT", "4586"))
    ddb_port = int(os.environ.get("STRATUS_DDB_PORT", "8020"))
    proxy_aws, proxy_ddb = emu_port + 1, ddb_port + 1
    work = os.path.join(scratch, "cost")
    res = os.path.join(scratch, "results")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    os.makedirs(res, exist_ok=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    log("building stratus and stratus-bench (release)")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "stratus-gateway", "-p",
                    "stratus-bench"], cwd=ROOT, check=True)
    stratus = os.path.join(target, "release", "stratus")
    bench = os.path.join(target, "release", "stratus-bench")
    started = []
    emu_env = dict(os.environ, STRATUS_EMU_PORT=str(emu_port), STRATUS_DDB_PORT=str(ddb_port))
    log(f"emulators on {emu_port} (moto) and {ddb_port} (DynamoDB Local)")
    up = subprocess.run([os.path.join(ROOT, "localstack", "up.sh")], env=emu_env,
                        capture_output=True, text=True)
    if up.returncode != 0:
        # Nothing of ours is running yet, so nothing to stop: in particular
        # not the emulators up.sh refused to start beside (a developer's test
        # emulators on the default ports share .emu/ with these).
        sys.exit(f"cost.py: localstack/up.sh failed:\n{up.stderr.strip()}")
    try:
        env = dict(os.environ)
        for line in up.stdout.splitlines():
            if line.startswith("export "):
                k, _, v = line[7:].partition("=")
                env[k] = v.strip("'\"")
        count_proxy.serve(proxy_aws, emu_port, "aws")
        count_proxy.serve(proxy_ddb, ddb_port, "ddb")
        dns_file = os.path.join(work, "dns.addr")
        dns = subprocess.Popen([bench, "dns", "--addr-file", dns_file, "--txt",
                                "bench-sender.test=v=spf1 ip4:127.0.0.1 -all"])
        started.append(dns)
        while not os.path.exists(dns_file):
            time.sleep(0.05)
        data = os.path.join(work, "data")
        os.makedirs(data)
        env.update({
            "STRATUS_BACKEND": "aws",
            "STRATUS_AWS_ENDPOINT": f"http://127.0.0.1:{proxy_aws}",
            "STRATUS_DYNAMODB_ENDPOINT": f"http://127.0.0.1:{proxy_ddb}",
            "STRATUS_DATA_DIR": data,
            "STRATUS_HOSTNAME": f"mx.{DOMAIN}",
            "STRATUS_DNS_RESOLVER": open(dns_file).read().strip(),
            "STRATUS_MAX_CONNECTIONS_PER_IP": "100000",
            "STRATUS_MAX_CONNECTIONS_PER_USER_IP": "2000",
        })
        for v in ["SMTP", "SUBMISSION", "SUBMISSIONS", "IMAP", "IMAPS", "POP3", "POP3S", "HTTP", "HTTPS"]:
            env[f"STRATUS_{v}_LISTEN"] = "127.0.0.1:0"
        subprocess.run([stratus, "domain", "add", DOMAIN], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        for i in range(1, USERS + 1):
            subprocess.run([stratus, "user", "add", f"user{i}@{DOMAIN}", "--password-stdin"],
                           env=env, input=PASSWORD + "\n", text=True, check=True,
                           stdout=subprocess.DEVNULL)
        listeners = os.path.join(data, "listeners.json")
        serve = subprocess.Popen([stratus, "serve"], env=env, stdin=subprocess.DEVNULL,
                                 stdout=open(os.path.join(work, "stratus.log"), "w"),
                                 stderr=subprocess.STDOUT)
        started.append(serve)
        for _ in range(600):
            if os.path.exists(listeners):
                break
            time.sleep(0.1)
        addrs = json.load(open(listeners))

        # Idle: what the running gateway asks of SQS with no mail.
        time.sleep(2)
        reset(proxy_aws), reset(proxy_ddb)
        idle_s = 20
        time.sleep(idle_s)
        idle = {**counts(proxy_aws), **counts(proxy_ddb)}
        reset(proxy_aws), reset(proxy_ddb)

        log(f"sending {n} messages")
        t0 = time.time()
        sent = subprocess.run([bench, "delivery", "--send-only", "--smtp", addrs["smtp"],
                               "--imap", addrs["imap"], "--messages", str(n), "--domain",
                               DOMAIN, "--user-count", str(USERS), "--password", PASSWORD],
                              capture_output=True, text=True, check=True)
        sent = json.loads(sent.stdout)
        # Wait until deliver and archive have consumed every message.
        want = {"deliver": n, "archive": n}
        prefix = env.get("STRATUS_QUEUE_PREFIX", "stratus-")
        while True:
            c = counts(proxy_aws)
            if all(c.get(f"sqs.received.{prefix}{q}", 0) >= k for q, k in want.items()):
                break
            if time.time() - t0 > 1800:
                raise SystemExit("the pipeline did not drain in 30 minutes")
            time.sleep(1)
        time.sleep(3)  # the last acks
        ingest_s = time.time() - t0
        ingest = {**counts(proxy_aws), **counts(proxy_ddb)}
        reset(proxy_aws), reset(proxy_ddb)

        log("reading every message once over IMAP")
        host, port = addrs["imap"].rsplit(":", 1)
        for i in range(1, USERS + 1):
            m = imaplib.IMAP4(host, int(port))
            m.login(f"user{i}@{DOMAIN}", PASSWORD)
            m.select("INBOX")
            m.fetch("1:*", "(BODY.PEEK[])")
            m.logout()
        read = {**counts(proxy_aws), **counts(proxy_ddb)}
    finally:
        for p in reversed(started):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run([os.path.join(ROOT, "localstack", "down.sh")], env=emu_env)

    out = {"messages": n, "accepted": sent["accepted"], "ingest_seconds": ingest_s,
           "idle_seconds": idle_s, "idle": idle, "ingest": ingest, "read_once": read,
           "prices_date": PRICES_DATE}
    with open(os.path.join(res, "cost.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    md = table(out)
    with open(os.path.join(res, "cost.md"), "w") as f:
        f.write(md)
    print(md)


def per_msg(c, n, pred):
    return sum(v for k, v in c.items() if pred(k)) / n


def table(r):
    n = r["messages"]
    rows = []
    total = 0.0

    def row(what, per_message, price_text, monthly):
        nonlocal total
        total += monthly
        rows.append(f"| {what} | {per_message} | {price_text} | ${monthly:,.2f} |")

    for phase in ("ingest", "read_once"):
        c = r[phase]
        label = "receive and deliver" if phase == "ingest" else "read once over IMAP"
        puts = per_msg(c, n, lambda k: k in ("s3.PUT", "s3.COPY", "s3.POST", "s3.LIST"))
        gets = per_msg(c, n, lambda k: k in ("s3.GET", "s3.HEAD"))
        row(f"{label}: S3 PUT/COPY/POST/LIST", f"{puts:.2f}", f"${S3_PUT_PER_1K} per 1,000",
            puts * MONTHLY / 1000 * S3_PUT_PER_1K)
        row(f"{label}: S3 GET/HEAD", f"{gets:.2f}", f"${S3_GET_PER_1K} per 1,000",
            gets * MONTHLY / 1000 * S3_GET_PER_1K)
        w_ops = per_msg(c, n, lambda k: k[4:] in count_proxy.WRITE_OPS)
        r_ops = per_msg(c, n, lambda k: k in ("ddb.GetItem", "ddb.Query", "ddb.Scan",
                                              "ddb.BatchGetItem", "ddb.TransactGetItems"))
        wru = c.get("ddb.write_units", 0) / n
        rru = c.get("ddb.read_units", 0) / n
        anyu = c.get("ddb.any_units", 0) / n
        row(f"{label}: DynamoDB writes ({w_ops:.2f} requests)", f"{wru:.2f} WRU",
            f"${DDB_WRU_PER_M} per million WRU", wru * MONTHLY / 1e6 * DDB_WRU_PER_M)
        row(f"{label}: DynamoDB reads ({r_ops:.2f} requests)", f"{rru:.2f} RRU",
            f"${DDB_RRU_PER_M} per million RRU", rru * MONTHLY / 1e6 * DDB_RRU_PER_M)
        if anyu:
            rows.append(f"| {label}: DynamoDB units not split read/write | {anyu:.2f} | | |")
        sqs = per_msg(c, n, lambda k: k.startswith("sqs.") and k.count(".") == 1
                      and k != "sqs.ReceiveMessage")
        recv = per_msg(c, n, lambda k: k.startswith("sqs.receives_with_messages."))
        if sqs or recv:
            row(f"{label}: SQS send/delete/visibility + receives that returned work",
                f"{sqs + recv:.2f}", f"${SQS_PER_M:.2f} per million",
                (sqs + recv) * MONTHLY / 1e6 * SQS_PER_M)
        if phase == "ingest":
            inv = per_msg(c, n, lambda k: k.startswith("sqs.received."))
            row("Lambda invocations (one per SQS message a stage consumed; batches of 1 at this volume)",
                f"{inv:.2f}", f"${LAMBDA_REQ_PER_M:.2f} per million",
                inv * MONTHLY / 1e6 * LAMBDA_REQ_PER_M)
            gbs = inv * LAMBDA_MEMORY_GB * LAMBDA_MS / 1000
            row(f"Lambda duration (assumed {LAMBDA_MS} ms at {int(LAMBDA_MEMORY_GB * 1024)} MB each)",
                f"{gbs:.3f} GB-s", f"${LAMBDA_GB_S:.10f} per GB-s", gbs * MONTHLY * LAMBDA_GB_S)
    # Storage of one month's mail: the body and the archive copy, 10 KiB each.
    gb = MONTHLY * 10 * 1024 / 1e9
    row("S3 storage added per month (body + archive copy, 10 KiB each)", "20 KiB",
        f"${S3_GB_MONTH} per GB-month", 2 * gb * S3_GB_MONTH)
    head = [
        f"Requests per message counted on the emulators ({n} messages of 10 KiB, "
        f"{r['accepted']} accepted), priced for {MONTHLY:,} messages a month at us-east-1 "
        f"list prices as of {r['prices_date']} (free tiers not deducted):",
        "",
        "| item | per message | price | per month, 1M messages |",
        "| --- | --- | --- | --- |",
    ]
    idle = r["idle"]
    idle_sqs = sum(v for k, v in idle.items() if k.startswith("sqs.") and k.count(".") == 1)
    tail = [
        f"| **total** | | | **${total:,.2f}** |",
        "",
        f"Idle (no mail, {r['idle_seconds']} s): {idle_sqs} SQS requests from the gateway's "
        "stage pollers; these are the fixed polling cost the README's idle-stack table "
        "already prices, not a per-message cost.",
    ]
    return "\n".join(head + rows + tail) + "\n"


if __name__ == "__main__":
    main()
