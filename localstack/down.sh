#!/usr/bin/env bash
# Stop the emulators that localstack/up.sh started: moto (.emu/moto.pid) and
# DynamoDB Local (.emu/dynamodb-local.pid). Succeeds quietly when none is
# running. Never touches a server up.sh did not start (e.g. LocalStack under
# Docker: use `docker compose down` for that), checked by pid and command line.
# Both keep their state in memory: stopping them discards every bucket, table,
# queue and stack; the next up.sh provisions afresh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
root="$(cd "$here/.." && pwd -P)"
emu="$root/.emu"

# Is the process in pid file $1 alive, with $2 in its command line?
is_ours() {
  local pid
  pid="$(cat "$1" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"
}

# stop NAME PIDFILE CMDLINE-MARK: TERM, up to 5 s grace, then KILL.
stopped_any=0
stop() {
  local name="$1" pidfile="$2" mark="$3" pid
  [[ -f "$pidfile" ]] || return 0
  stopped_any=1
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if is_ours "$pidfile" "$mark"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      is_ours "$pidfile" "$mark" || break
      sleep 0.1
    done
    if is_ours "$pidfile" "$mark"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
    printf 'down.sh: stopped %s (pid %s)\n' "$name" "$pid" >&2
  fi
  rm -f "$pidfile"
}

# Hold up.sh's lock, so that a concurrent up.sh does not start a server
# between our check and its own.
[[ -d "$emu" ]] || exit 0
exec 9>>"$emu/up.lock"
if command -v flock >/dev/null; then
  flock -w 300 9 || true
fi

stop moto "$emu/moto.pid" moto_server
rm -f "$emu/moto.port"
# up.sh starts it with -Djava.library.path=$emu/dynamodb-local/...
stop "DynamoDB Local" "$emu/dynamodb-local.pid" "$emu/dynamodb-local/"
rm -f "$emu/dynamodb-local.port"
if [[ $stopped_any == 1 ]]; then
  rm -f "$emu/env"
fi
