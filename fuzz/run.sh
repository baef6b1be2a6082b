#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for a while each, on nightly,
# from the checked-in corpora; new inputs that grow coverage are added to
# the corpora, crashes land in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     (default: 600 seconds, all)
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(imap_command pop3_command smtp_command message_metadata spam_score sieve_script managesieve_command)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "== $target for ${seconds}s"
  cargo +nightly fuzz run "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 2>&1 | tail -25
done
