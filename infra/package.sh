#!/usr/bin/env bash
# Build every pipeline stage as a Lambda-ready zip (provided.al2023, x86_64)
# and check that no binary needs a glibc newer than 2.34.
#
#   infra/package.sh            # release build (what gets deployed)
#   infra/package.sh --debug    # debug build (what CI checks; much faster)
#
# Output: <target dir>/lambda/stratus-<stage>/bootstrap.zip for the stages
# filter, route, deliver, send and archive, and of the sweeper, each holding one executable
# named `bootstrap` (<target dir> is $CARGO_TARGET_DIR, or target/). Upload
# them as <LambdaCodeKeyPrefix>stratus-<stage>.zip (see the README).
#
# Uses cargo-lambda from PyPI, installed with its zig toolchain (ziglang,
# also from PyPI) into .tools/lambda-venv on first use. Zig links against
# glibc 2.34's symbol versions whatever the build machine's glibc is.
set -euo pipefail

# Pinned, verified together with Rust 1.95.
LAMBDA_REQS=("cargo-lambda==1.9.2" "ziglang==0.17.1")
TARGET="x86_64-unknown-linux-gnu.2.34"
STAGES=(filter route deliver send archive sweep)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
root="$(cd "$here/.." && pwd -P)"
venv="$root/.tools/lambda-venv"

log() { printf 'package.sh: %s\n' "$*" >&2; }
die() { printf 'package.sh: error: %s\n' "$*" >&2; exit 1; }

profile=release
case "${1:-}" in
  "") ;;
  --debug) profile=debug ;;
  -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (expected --debug or nothing)" ;;
esac

# The venv holds exactly the pins; a stamp avoids network work on reruns.
stamp="$venv/.stratus-reqs"
want="$(printf '%s\n' "${LAMBDA_REQS[@]}")"
if [[ ! -x "$venv/bin/cargo-lambda" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  command -v python3 >/dev/null || die "python3 is required"
  log "installing ${LAMBDA_REQS[*]} into $venv (first run only)"
  python3 -m venv "$venv" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q "${LAMBDA_REQS[@]}" >&2 ||
    die "pip install failed"
  printf '%s\n' "$want" >"$stamp"
fi
# cargo-lambda finds zig as `python3 -m ziglang`, with the venv's python.
export PATH="$venv/bin:$PATH"

cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
args=(--package stratus-lambda --bins --locked --target "$TARGET" --output-format zip
  --lambda-dir "$target_dir/lambda")
[[ $profile == release ]] && args+=(--release)

log "building the stage functions ($profile, $TARGET)"
t0=$SECONDS
cargo lambda build "${args[@]}" >&2 || die "cargo lambda build failed"
log "built in $((SECONDS - t0)) s"

zips=()
for stage in "${STAGES[@]}"; do
  zip="$target_dir/lambda/stratus-$stage/bootstrap.zip"
  [[ -f "$zip" ]] || die "$zip was not built"
  zips+=("$zip")
done

"$here/check-glibc.sh" "${zips[@]}"
for zip in "${zips[@]}"; do
  printf '%s\t%s\n' "$(du -h "$zip" | cut -f1)" "$zip"
done
