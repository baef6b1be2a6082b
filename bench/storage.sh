#!/usr/bin/env bash
# Storage follows deletion: deliver N messages to Stratus (embedded backend,
# release build), expunge them all over IMAP, run the sweeper, and print the
# size of the data directory at each step (see BENCHMARKS.md).
#
#   bench/storage.sh [--messages N] [--size BYTES]
#
#   --messages N  messages to deliver (default 100000)
#   --size BYTES  size of each message (default 10240)
#
# Needs no root. Everything lives in $STRATUS_BENCH_DIR (default
# /tmp/stratus-storage-bench), recreated on every run; every server it
# starts is stopped on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
root="$(cd "$here/.." && pwd -P)"

MESSAGES=100000
SIZE=10240
while [[ $# -gt 0 ]]; do
  case "$1" in
    --messages) MESSAGES="$2"; shift 2 ;;
    --size) SIZE="$2"; shift 2 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "storage.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

log() { printf '[storage %s] %s\n' "$(date +%T)" "$*" >&2; }

USERS=20
DOMAIN=bench.test
PASSWORD="bench password 1"
S="${STRATUS_BENCH_DIR:-/tmp/stratus-storage-bench}"
case "$S" in /|"") echo "STRATUS_BENCH_DIR='$S'?" >&2; exit 1 ;; esac

log "building stratus and stratus-bench (release)"
(cd "$root" && cargo build --release -q -p stratus-gateway -p stratus-bench)
target="${CARGO_TARGET_DIR:-$root/target}"
BIN="$target/release"

rm -rf "$S"
mkdir -p "$S"
pids=()
STRATUS_PID=""
cleanup() {
  set +e
  [[ -n "$STRATUS_PID" ]] && kill -TERM "$STRATUS_PID" 2>/dev/null && wait "$STRATUS_PID" 2>/dev/null
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
}
trap cleanup EXIT

"$BIN/stratus-bench" dns --addr-file "$S/dns.addr" \
  --txt "bench-sender.test=v=spf1 ip4:127.0.0.1 -all" &
pids+=($!)
for _ in $(seq 100); do [[ -s "$S/dns.addr" ]] && break; sleep 0.05; done

export STRATUS_DATA_DIR="$S/data"
export STRATUS_HOSTNAME=mx.$DOMAIN
export STRATUS_DNS_RESOLVER="$(cat "$S/dns.addr")"
export STRATUS_MAX_CONNECTIONS_PER_IP=100000
export STRATUS_MAX_CONNECTIONS_PER_USER_IP=2000
# Sweeps run when this script says, with a short in-flight window and grace.
export STRATUS_SWEEP_INTERVAL=off
export STRATUS_SEND_LIFETIME=10s
export STRATUS_SWEEP_GRACE=1s
export STRATUS_CHANGES_RETENTION=1s
for v in SMTP SUBMISSION SUBMISSIONS IMAP IMAPS POP3 POP3S HTTP HTTPS; do
  export "STRATUS_${v}_LISTEN=127.0.0.1:0"
done

mkdir -p "$STRATUS_DATA_DIR"
"$BIN/stratus" domain add "$DOMAIN" >/dev/null
for i in $(seq "$USERS"); do
  printf '%s\n' "$PASSWORD" | "$BIN/stratus" user add "user$i@$DOMAIN" --password-stdin >/dev/null
done

addr() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" "$STRATUS_DATA_DIR/listeners.json" | head -n 1; }
start() {
  rm -f "$STRATUS_DATA_DIR/listeners.json"
  "$BIN/stratus" serve >>"$S/stratus.log" 2>&1 &
  STRATUS_PID=$!
  for _ in $(seq 400); do [[ -s "$STRATUS_DATA_DIR/listeners.json" ]] && return; sleep 0.05; done
  echo "serve did not start; see $S/stratus.log" >&2; exit 1
}
stop() {
  kill -TERM "$STRATUS_PID"; wait "$STRATUS_PID" || true; STRATUS_PID=""
}
# Bytes of the data directory: total, message blobs (files and the
# small-object database), index database; WAL files included.
sizes() {
  local d="$STRATUS_DATA_DIR"
  printf '%s %s %s\n' "$(du -sb "$d" | cut -f1)" "$(du -sb "$d/blobs" | cut -f1)" \
    "$(cat "$d"/index.db* | wc -c)"
}
declare -A row

start
log "delivering $MESSAGES messages of $SIZE bytes to $USERS users"
"$BIN/stratus-bench" delivery --smtp "$(addr smtp)" --imap "$(addr imap)" \
  --domain "$DOMAIN" --user-count "$USERS" --password "$PASSWORD" \
  --messages "$MESSAGES" --size "$SIZE" >"$S/delivery.json"
stop
row[delivered]="$(sizes)"

start
log "expunging every message over IMAP"
python3 - "$(addr imap)" "$USERS" "$DOMAIN" "$PASSWORD" <<'EOF'
import imaplib, sys
host, port = sys.argv[1].rsplit(":", 1)
users, domain, password = int(sys.argv[2]), sys.argv[3], sys.argv[4]
total = 0
for i in range(1, users + 1):
    m = imaplib.IMAP4(host, int(port))
    m.login(f"user{i}@{domain}", password)
    typ, data = m.select("INBOX")
    n = int(data[0])
    if n:
        m.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
        m.expunge()
    total += n
    m.logout()
print(f"expunged {total}", file=sys.stderr)
EOF
stop
row[expunged]="$(sizes)"

# Bodies become candidates once older than the in-flight window (10 s)
# plus the grace (1 s); the first pass marks them and records each
# mailbox's change watermark, the next (a grace and a retention later)
# deletes them, prunes the tombstones and change rows, and vacuums.
sleep 12
log "sweeping (mark)"
"$BIN/stratus" sweep | tee "$S/sweep1.txt" >&2
sleep 2
log "sweeping (delete)"
"$BIN/stratus" sweep | tee "$S/sweep2.txt" >&2
row[swept]="$(sizes)"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo
echo "| after | data directory | message blobs | index database |"
echo "| --- | ---: | ---: | ---: |"
for step in delivered expunged swept; do
  read -r total blobs index <<<"${row[$step]}"
  echo "| $step | $(mib "$total") MiB | $(mib "$blobs") MiB | $(mib "$index") MiB |"
done
