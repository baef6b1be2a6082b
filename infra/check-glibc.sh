#!/usr/bin/env bash
# Prove that Lambda binaries run on provided.al2023: no binary may need a
# GLIBC symbol version newer than the one that runtime ships (2.34).
#
#   infra/check-glibc.sh FILE...     # ELF binaries or bootstrap.zip files
#
# Reads each binary's version needs (.gnu.version_r, with readelf) and
# fails, naming the binary and the newest version it needs, when any needs
# more than STRATUS_MAX_GLIBC (default 2.34). It also refuses files that are
# not x86-64 ELF executables (the functions are deployed as x86_64).
# Prints one line per binary and exits 0 when all pass.
set -euo pipefail

max="${STRATUS_MAX_GLIBC:-2.34}"
log() { printf 'check-glibc: %s\n' "$*" >&2; }
die() { printf 'check-glibc: error: %s\n' "$*" >&2; exit 1; }

[[ $# -gt 0 ]] || die "usage: $0 FILE... (ELF binaries or bootstrap.zip files)"
command -v readelf >/dev/null || die "readelf is required (Debian: apt-get install binutils)"
[[ "$max" =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]] || die "STRATUS_MAX_GLIBC must look like 2.34, got '$max'"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Is version $1 newer than version $2?
newer() { [[ "$1" != "$2" && "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -n 1)" == "$1" ]]; }

failed=0
n=0
for file in "$@"; do
  [[ -f "$file" ]] || die "$file: no such file"
  bin="$file"
  if [[ "$file" == *.zip ]]; then
    # A Lambda zip for provided.* holds an executable named bootstrap.
    n=$((n + 1))
    mkdir -p "$tmp/$n"
    python3 - "$file" "$tmp/$n/bootstrap" <<'PY' || die "$file: no bootstrap inside"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    info = z.getinfo("bootstrap")
    if (info.external_attr >> 16) & 0o111 == 0:
        sys.exit(f"{sys.argv[1]}: bootstrap is not executable in the zip")
    with open(sys.argv[2], "wb") as out:
        out.write(z.read(info))
PY
    bin="$tmp/$n/bootstrap"
  fi
  header="$(readelf -h "$bin" 2>/dev/null)" || die "$file: not an ELF file"
  grep -q 'Machine:.*X86-64' <<<"$header" || die "$file: not an x86-64 binary"
  grep -qE 'Type:.*(EXEC|DYN)' <<<"$header" || die "$file: not an executable"
  needs="$(readelf --version-info --wide "$bin" | grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' | sed 's/^GLIBC_//' | sort -uV || true)"
  newest="$(tail -n 1 <<<"$needs")"
  if [[ -z "$newest" ]]; then
    printf '%s: no GLIBC symbol versions (static or not glibc)\n' "$file"
  elif newer "$newest" "$max"; then
    too_new="$(while read -r v; do if newer "$v" "$max"; then printf 'GLIBC_%s ' "$v"; fi; done <<<"$needs")"
    printf '%s: needs GLIBC_%s, newer than GLIBC_%s (%s)\n' "$file" "$newest" "$max" "${too_new% }"
    failed=1
  else
    printf '%s: newest GLIBC symbol version needed: GLIBC_%s (<= %s)\n' "$file" "$newest" "$max"
  fi
done

if [[ $failed == 1 ]]; then
  die "some binaries need a newer glibc than GLIBC_$max (provided.al2023 ships 2.34)"
fi
