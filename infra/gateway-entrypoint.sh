#!/bin/sh
# Entrypoint of the gateway image: hand the TLS certificate from the
# environment to `stratus` as files, then become `stratus`.
#
# On ECS the task definition injects the certificate secret's two JSON keys
# as TLS_CERT_PEM and TLS_KEY_PEM (ECS `secrets`), and names the files in
# STRATUS_TLS_CERT and STRATUS_TLS_KEY. This script writes them there,
# readable only by the gateway's user, removes the PEM text from the
# environment (so no child process or crash report inherits the key), and
# execs `stratus` with the arguments given (`serve` by default).
#
# Without TLS_CERT_PEM and TLS_KEY_PEM nothing is written: STRATUS_TLS_CERT
# and STRATUS_TLS_KEY are used as they are (files mounted some other way),
# or, left empty, the gateway makes a self-signed certificate.
set -eu

fail() {
  echo "stratus-entrypoint: $*" >&2
  exit 64
}

if [ -n "${TLS_CERT_PEM:-}" ] || [ -n "${TLS_KEY_PEM:-}" ]; then
  [ -n "${TLS_CERT_PEM:-}" ] || fail "TLS_KEY_PEM is set but TLS_CERT_PEM is empty"
  [ -n "${TLS_KEY_PEM:-}" ] || fail "TLS_CERT_PEM is set but TLS_KEY_PEM is empty"
  [ -n "${STRATUS_TLS_CERT:-}" ] || fail "TLS_CERT_PEM is set but STRATUS_TLS_CERT names no file"
  [ -n "${STRATUS_TLS_KEY:-}" ] || fail "TLS_KEY_PEM is set but STRATUS_TLS_KEY names no file"
  case "$TLS_CERT_PEM" in
    *"-----BEGIN CERTIFICATE-----"*) ;;
    *) fail "TLS_CERT_PEM holds no PEM certificate (want the secret's \"cert\" key)" ;;
  esac
  case "$TLS_KEY_PEM" in
    *"-----BEGIN "*"PRIVATE KEY-----"*) ;;
    *) fail "TLS_KEY_PEM holds no PEM private key (want the secret's \"key\" key)" ;;
  esac
  umask 077
  mkdir -p "$(dirname "$STRATUS_TLS_CERT")" "$(dirname "$STRATUS_TLS_KEY")"
  # Written to a temporary name and renamed, so `stratus` never reads half.
  printf '%s\n' "$TLS_CERT_PEM" >"$STRATUS_TLS_CERT.tmp"
  mv -f "$STRATUS_TLS_CERT.tmp" "$STRATUS_TLS_CERT"
  printf '%s\n' "$TLS_KEY_PEM" >"$STRATUS_TLS_KEY.tmp"
  mv -f "$STRATUS_TLS_KEY.tmp" "$STRATUS_TLS_KEY"
fi
unset TLS_CERT_PEM TLS_KEY_PEM

[ $# -gt 0 ] || set -- serve
exec stratus "$@"
