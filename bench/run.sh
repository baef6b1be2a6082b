#!/usr/bin/env bash
# Run the same workload against Stratus (embedded backend, release build)
# and against Postfix + Dovecot from Debian, one after the other, and print
# each figure side by side with its ratio (see BENCHMARKS.md).
#
#   bench/run.sh [--rounds N] [--messages N] [--seconds S] [--idle N] [--quick] [--only stratus|baseline]
#
#   --rounds N    run the whole workload N times on each side, from fresh
#                 state, alternating which side goes first (default 1); the
#                 table then gives the median of each figure, and the ratio
#                 of every round, so that the machine's drift shows (an
#                 odd N lets Stratus go first once more than the baseline)
#   --messages N  messages for the SMTP / end-to-end workload (default 20000)
#   --seconds S   seconds per IMAP operation (default 10)
#   --idle N      idle IMAP connections for the memory figure (default 1000)
#   --quick       500 messages, 2 s per operation, 200 idle connections
#   --only X      run one side only (the table then lacks the other)
#
# Needs root (it installs postfix, dovecot-imapd and dovecot-lmtpd when
# missing, and runs them as a private instance: nothing under /etc is
# changed). Everything else lives in $STRATUS_BENCH_DIR (default
# /tmp/stratus-bench), recreated on every run; results are in its
# results/ folder. Every server it starts is stopped on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
root="$(cd "$here/.." && pwd -P)"

ROUNDS=1
MESSAGES=20000
OP_SECONDS=10
IDLE=1000
ONLY=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --messages) MESSAGES="$2"; shift 2 ;;
    --seconds) OP_SECONDS="$2"; shift 2 ;;
    --idle) IDLE="$2"; shift 2 ;;
    --quick) MESSAGES=500; OP_SECONDS=2; IDLE=200; shift ;;
    --only) ONLY="$2"; shift 2 ;;
    -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 1; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds wants a positive number, not '$ROUNDS'"
[[ $EUID -eq 0 ]] || die "run as root (packages, a private Postfix instance, the vmail user)"

USERS=20
DOMAIN=bench.test
PASSWORD="bench password 1"
SMTP_PORT=12525   # Postfix smtpd
IMAP_PORT=11143   # Dovecot IMAP
LMTP_PORT=12424   # Dovecot LMTP (Postfix → Dovecot)
S="${STRATUS_BENCH_DIR:-/tmp/stratus-bench}"
BIN="$S/bin"
RES="$S/results"

# --- packages ---------------------------------------------------------------
need=()
[[ -x /usr/sbin/postfix ]] || need+=(postfix)
[[ -x /usr/lib/dovecot/imap ]] || need+=(dovecot-imapd)
[[ -x /usr/lib/dovecot/lmtp ]] || need+=(dovecot-lmtpd)
if [[ ${#need[@]} -gt 0 ]]; then
  log "installing ${need[*]}"
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null
fi

# --- build --------------------------------------------------------------------
log "building stratus and stratus-bench (release)"
(cd "$root" && cargo build --release -q -p stratus-gateway -p stratus-bench)
target="${CARGO_TARGET_DIR:-$root/target}"

# --- scratch --------------------------------------------------------------------
pids_to_stop=()
cleanup() {
  set +e
  [[ -n "${STRATUS_PID:-}" ]] && stop_stratus
  [[ -n "${BASELINE_UP:-}" ]] && stop_baseline
  for p in "${pids_to_stop[@]}"; do kill "$p" 2>/dev/null; done
}
trap cleanup EXIT

for p in $SMTP_PORT $IMAP_PORT $LMTP_PORT; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "127.0.0.1:$p is in use"; fi
done
case "$S" in /|"") die "STRATUS_BENCH_DIR='$S'?" ;; esac
if [[ -f "$S/postfix/etc/main.cf" ]] && postfix -c "$S/postfix/etc" status >/dev/null 2>&1; then
  postfix -c "$S/postfix/etc" stop >/dev/null 2>&1 || true
fi
rm -rf "$S"
mkdir -p "$BIN" "$RES/stratus" "$RES/baseline"
chmod 755 "$S"
cp "$target/release/stratus" "$target/release/stratus-bench" "$BIN/"
ulimit -n "$(ulimit -Hn)"

# A loopback DNS server for Stratus's SPF/DMARC lookups: the sender's domain
# publishes SPF for 127.0.0.1; everything else is NXDOMAIN.
"$BIN/stratus-bench" dns --addr-file "$S/dns.addr" \
  --txt "bench-sender.test=v=spf1 ip4:127.0.0.1 -all" &
pids_to_stop+=($!)
for _ in $(seq 100); do [[ -s "$S/dns.addr" ]] && break; sleep 0.05; done
DNS_ADDR="$(cat "$S/dns.addr")"

bench() { "$BIN/stratus-bench" "$@" --domain "$DOMAIN" --user-count "$USERS" --password "$PASSWORD"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
json_num() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }

# --- Stratus --------------------------------------------------------------------
export STRATUS_DATA_DIR="$S/stratus"
export STRATUS_HOSTNAME=mx.$DOMAIN
export STRATUS_DNS_RESOLVER="$DNS_ADDR"
# 20 sessions and 1,000 idle ones of a few users come from one address;
# the defaults allow 500 per address and 10 per user and address. Dovecot
# gets the same room (mail_max_userip_connections below).
export STRATUS_MAX_CONNECTIONS_PER_IP=100000
export STRATUS_MAX_CONNECTIONS_PER_USER_IP=2000
for v in SMTP SUBMISSION SUBMISSIONS IMAP IMAPS POP3 POP3S MANAGESIEVE HTTP HTTPS; do
  export "STRATUS_${v}_LISTEN=127.0.0.1:0"
done

stratus_addr() {  # role → ip:port from listeners.json
  sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" "$STRATUS_DATA_DIR/listeners.json" | head -n 1
}
start_stratus() {  # → $RES/stratus/$1 (JSON with cold_start_ms and pid)
  "$BIN/stratus-bench" start --listeners-json "$STRATUS_DATA_DIR/listeners.json" \
    --log "$S/stratus.log" -- "$BIN/stratus" serve >"$1"
  STRATUS_PID="$(json_num pid <"$1")"
}
stop_stratus() {
  kill -TERM "$STRATUS_PID" 2>/dev/null || true
  for _ in $(seq 200); do kill -0 "$STRATUS_PID" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$STRATUS_PID" 2>/dev/null || true
  STRATUS_PID=""
}

setup_stratus() {
  mkdir -p "$STRATUS_DATA_DIR"
  "$BIN/stratus" domain add "$DOMAIN" >/dev/null
  for i in $(seq "$USERS"); do
    printf '%s\n' "$PASSWORD" | "$BIN/stratus" user add "user$i@$DOMAIN" --password-stdin >/dev/null
  done
}

# --- Postfix + Dovecot ------------------------------------------------------------
B="$S/baseline"
DOVECOT_CONF="$B/dovecot.conf"
PF="$S/postfix"

setup_baseline() {
  id vmail >/dev/null 2>&1 ||
    useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin vmail
  mkdir -p "$B/run" "$B/state" "$B/mail" "$PF/etc" "$PF/queue" "$PF/data"
  chown vmail:vmail "$B/mail"
  chown postfix "$PF/data"
  local uid gid i hash
  uid="$(id -u vmail)"; gid="$(id -g vmail)"
  : >"$B/users"
  : >"$PF/etc/vmailbox"
  for i in $(seq "$USERS"); do
    # The same Argon2id parameters (and kind of salt) as Stratus's store.
    hash="$(printf '%s\n' "$PASSWORD" | "$BIN/stratus-bench" hash)"
    printf 'user%s:{ARGON2ID}%s:%s:%s::%s/mail/user%s::\n' "$i" "$hash" "$uid" "$gid" "$B" "$i" >>"$B/users"
    printf 'user%s@%s OK\n' "$i" "$DOMAIN" >>"$PF/etc/vmailbox"
  done
  chown root:dovecot "$B/users"; chmod 640 "$B/users"

  cat >"$DOVECOT_CONF" <<EOF
# Written by bench/run.sh: a private Dovecot on loopback (no /etc/dovecot).
protocols = imap lmtp
listen = 127.0.0.1
instance_name = stratus-bench
base_dir = $B/run
state_dir = $B/state
log_path = $B/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Ln
first_valid_uid = $uid
first_valid_gid = $gid
mail_location = maildir:~/Maildir
mailbox_list_index = yes
passdb {
  driver = passwd-file
  args = username_format=%u $B/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $B/users
}
namespace inbox {
  inbox = yes
  separator = /
}
# 1,000 idle connections from one address and user set: the defaults stop
# at 10 per user and address, and at 100 processes per service.
default_process_limit = 2000
default_client_limit = 4000
protocol imap {
  mail_max_userip_connections = 2000
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service imap {
  process_limit = 2000
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
}
EOF
  doveconf -c "$DOVECOT_CONF" -n >"$B/dovecot.effective" 2>"$B/doveconf.err" ||
    die "doveconf rejected $DOVECOT_CONF: $(cat "$B/doveconf.err")"

  cp /etc/postfix/master.cf "$PF/etc/master.cf"
  touch "$PF/etc/main.cf"
  postconf -c "$PF/etc" -e \
    "compatibility_level = 3.6" \
    "queue_directory = $PF/queue" \
    "data_directory = $PF/data" \
    "myhostname = mx.$DOMAIN" \
    "mydomain = $DOMAIN" \
    "mydestination =" \
    "local_recipient_maps =" \
    "alias_maps =" \
    "alias_database =" \
    "inet_interfaces = 127.0.0.1" \
    "inet_protocols = ipv4" \
    "mynetworks = 127.0.0.0/8" \
    "relayhost =" \
    "biff = no" \
    "smtpd_banner = \$myhostname ESMTP" \
    "virtual_mailbox_domains = $DOMAIN" \
    "virtual_mailbox_maps = texthash:$PF/etc/vmailbox" \
    "virtual_transport = lmtp:inet:127.0.0.1:$LMTP_PORT" \
    "maillog_file_prefixes = $PF" \
    "maillog_file = $PF/postfix.log"
  postconf -c "$PF/etc" -M# smtp/inet
  postconf -c "$PF/etc" -M "127.0.0.1:$SMTP_PORT/inet=127.0.0.1:$SMTP_PORT inet n - n - - smtpd"
  postconf -c "$PF/etc" -F '*/*/chroot = n'
  postfix -c "$PF/etc" check 2>&1 | grep -v 'not owned by\|group or other writable' >&2 || true
}

start_baseline() {  # → $RES/baseline/$1; both daemons start at once, as at boot
  "$BIN/stratus-bench" start --addr "127.0.0.1:$SMTP_PORT" --addr "127.0.0.1:$IMAP_PORT" \
    --addr "127.0.0.1:$LMTP_PORT" --log "$B/startup.log" -- \
    sh -c "dovecot -c '$DOVECOT_CONF' & postfix -c '$PF/etc' start; wait" >"$1"
  BASELINE_UP=1
  DOVECOT_PID="$(tr -d ' \n' <"$B/run/master.pid")"
}
stop_baseline() {
  local pf_pid=""
  [[ -s "$PF/queue/pid/master.pid" ]] && pf_pid="$(tr -d ' \n' <"$PF/queue/pid/master.pid")"
  postfix -c "$PF/etc" stop >/dev/null 2>&1 || true
  dovecot -c "$DOVECOT_CONF" stop >/dev/null 2>&1 || true
  for _ in $(seq 200); do
    { [[ -n "$pf_pid" ]] && kill -0 "$pf_pid" 2>/dev/null; } || kill -0 "${DOVECOT_PID:-0}" 2>/dev/null || break
    sleep 0.05
  done
  BASELINE_UP=""
}

# --- the workload, per server ----------------------------------------------------
# $1 = stratus|baseline, $2 = the folder for its results. Start (warm-up),
# delivery, IMAP operations, then three timed cold starts (median), and idle
# memory on the freshly started server (so earlier phases do not inflate or
# pre-warm its heap).
workload() {
  local who="$1" out="$2" smtp imap i
  mkdir -p "$out"
  log "$who: starting"
  "start_$who" "$out/warmup-start.txt"
  if [[ $who == stratus ]]; then
    smtp="$(stratus_addr smtp)"; imap="$(stratus_addr imap)"
  else
    smtp="127.0.0.1:$SMTP_PORT"; imap="127.0.0.1:$IMAP_PORT"
  fi
  log "$who: delivery, $MESSAGES messages"
  bench delivery --smtp "$smtp" --imap "$imap" --messages "$MESSAGES" >"$out/delivery.json"
  log "$who: IMAP operations, $OP_SECONDS s each"
  bench ops --imap "$imap" --seconds "$OP_SECONDS" >"$out/ops.json"
  log "$who: cold starts"
  for i in 1 2 3; do
    "stop_$who"
    "start_$who" "$out/start-$i.txt"
  done
  printf '{"cold_start_ms": %s}\n' \
    "$(cat "$out"/start-[123].txt | json_num cold_start_ms | median)" >"$out/start.json"
  [[ $who == stratus ]] && imap="$(stratus_addr imap)"
  log "$who: $IDLE idle IMAP connections"
  local pid="$STRATUS_PID"
  [[ $who == baseline ]] && pid="$DOVECOT_PID"
  bench idle --imap "$imap" --connections "$IDLE" --pid "$pid" >"$out/idle.json"
  "stop_$who"
}

# Every round starts each server from nothing: empty mailboxes, new queues.
fresh_stratus() { rm -rf "$STRATUS_DATA_DIR"; setup_stratus; }
fresh_baseline() { rm -rf "$B" "$PF"; setup_baseline; }

for round in $(seq "$ROUNDS"); do
  # Alternate which side goes first, so that a machine slowing down (or
  # speeding up) over the run does not favour one side.
  order=(stratus baseline)
  (( round % 2 == 0 )) && order=(baseline stratus)
  for who in "${order[@]}"; do
    [[ -z $ONLY || $ONLY == "$who" ]] || continue
    log "round $round of $ROUNDS: $who"
    "fresh_$who"
    # The previous side's files (and their deletion) reach the disk first,
    # so that their writeback does not slow this side's fsyncs.
    sync
    workload "$who" "$RES/$who/round-$round"
  done
done

{
  echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM," \
    "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1), kernel $(uname -r), Debian $(cat /etc/debian_version)"
  echo "baseline: postfix $(dpkg-query -W -f '${Version}' postfix), dovecot $(dpkg-query -W -f '${Version}' dovecot-core)"
  echo "stratus: $(git -C "$root" rev-parse --short HEAD); workload: $MESSAGES messages, $OP_SECONDS s per IMAP operation, $IDLE idle connections, $ROUNDS round(s)"
  echo
  "$BIN/stratus-bench" report --stratus "$RES/stratus" --baseline "$RES/baseline"
} | tee "$RES/report.md"
