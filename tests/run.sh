#!/usr/bin/env bash
# The whole test suite, as CI runs it: format, licences, lints, then every
# test on the embedded backend and on the AWS emulators, which this script
# installs (when missing), starts and stops.
#
#   tests/run.sh
#
# STRATUS_KEEP_EMULATORS=1 leaves the emulators running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
started=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

# A cold build from a fresh clone needs about 7 GiB under target/.
# Incremental compilation only helps the next build, and doubles the
# size of target/debug on a cold one, so CI runs without it.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
step "disk: $(( free_kib / 1024 / 1024 )) GiB free here"
if [ "$free_kib" -lt $(( 8 * 1024 * 1024 )) ]; then
  echo "warning: under 8 GiB free; the build may fail with 'No space left on device'" >&2
fi

mkdir -p .emu
# Real clients the end-to-end tests drive (Debian packages).
packages=()
command -v swaks >/dev/null || packages+=(swaks)
command -v mbsync >/dev/null || packages+=(isync)
command -v neomutt >/dev/null || packages+=(neomutt)
command -v tmux >/dev/null || packages+=(tmux)
command -v fetchmail >/dev/null || packages+=(fetchmail)
command -v sieve-connect >/dev/null || packages+=(sieve-connect)
# A real DNSSEC chain for the DANE test: signed zones (ldns), an
# authoritative server (NSD) and a validating resolver (Unbound).
command -v ldns-signzone >/dev/null || packages+=(ldnsutils)
[ -x /usr/sbin/nsd ] || command -v nsd >/dev/null || packages+=(nsd)
[ -x /usr/sbin/unbound ] || command -v unbound >/dev/null || packages+=(unbound)
# Virus scanning: the tests start clamd with a signature database of the
# EICAR test file's hash alone (no freshclam, no internet).
[ -x /usr/sbin/clamd ] || command -v clamd >/dev/null || packages+=(clamav-daemon)
# An ARC verifier that is not ours: dkimpy checks the seals of forwards.
/usr/bin/python3 -c 'import dkim' 2>/dev/null || packages+=(python3-dkim)
# The admin pages are tested in a real browser: Debian's chromium, driven
# by playwright-core from npm (tests/browser; no browser download).
[ -x /usr/bin/chromium ] || packages+=(chromium)
command -v node >/dev/null || packages+=(nodejs npm)
if [ ${#packages[@]} -gt 0 ]; then
  step "Debian packages: ${packages[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
fi

# A JMAP client library that is not ours (tests/jmap/walk.py).
if ! .emu/clients/bin/python -c 'import jmapc' 2>/dev/null; then
  step "PyPI: jmapc for the JMAP test (.emu/clients)"
  python3 -m venv .emu/clients
  .emu/clients/bin/python -m pip install --disable-pip-version-check -q jmapc==0.4.0
fi

if [ ! -d tests/browser/node_modules/playwright-core ]; then
  step "npm: playwright-core for the browser test (tests/browser)"
  npm ci --prefix tests/browser --no-audit --no-fund >/dev/null
fi

step "emulators: install and start in the background (log: .emu/up.log)"
localstack/up.sh > .emu/up.env 2> .emu/up.log &
emu_pid=$!
cleanup() {
  if [ "${STRATUS_KEEP_EMULATORS:-0}" != 1 ]; then
    "$root/localstack/down.sh" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

step "format"
cargo fmt --all --check

step "licences"
python3 tests/check-licenses.py

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --bins --locked

step "emulators: waiting until they answer"
if ! wait "$emu_pid"; then
  cat .emu/up.log >&2
  echo "the emulators did not start (see above)" >&2
  exit 1
fi
# shellcheck disable=SC1091
source .emu/up.env
cat .emu/up.env

step "cfn-lint infra/template.yaml"
.emu/venv/bin/cfn-lint infra/template.yaml

step "OpenAPI: the admin API's document is valid OpenAPI 3.1 (openapi-spec-validator)"
target/debug/stratus openapi > target/openapi.json
.emu/venv/bin/openapi-spec-validator target/openapi.json

step "infra tests: the template, the glibc check (infra/test_*.py)"
.emu/venv/bin/python -m unittest discover -s infra -p 'test_*.py'

step "tests: embedded and AWS backends"
export STRATUS_TEST_REQUIRE_AWS=1
export STRATUS_TEST_REQUIRE_BROWSER=1
export STRATUS_TEST_REQUIRE_CLIENTS=1
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-6}"
cargo test --workspace --locked

# The function zips must run on provided.al2023 (glibc 2.34). A debug
# build of the five bootstraps for that target (cargo-lambda with zig, about
# 6 minutes cold on two cores, installed into .tools/ on first use), then
# infra/check-glibc.sh on each zip. Release packaging is infra/package.sh.
step "Lambda zips: build for provided.al2023 and check glibc <= 2.34"
infra/package.sh --debug

step "done"
