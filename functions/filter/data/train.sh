#!/usr/bin/env bash
# Rebuilds the shipped classifier model (functions/filter/data/bayes.model)
# from the training corpus, and measures the verdict on it by 5-fold
# cross-validation. Only ../shared/corpus/spamassassin-train/ is read: the
# rest of the public corpus is kept out for an independent measurement.
# The same corpus gives the same model, byte for byte.
#
#   functions/filter/data/train.sh [CORPUS_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
corpus="${1:-$root/../shared/corpus/spamassassin-train}"
cd "$root"
cargo build --release --locked -p stratus-gateway
stratus=target/release/stratus
"$stratus" spam train --ham "$corpus/ham" --spam "$corpus/spam" --out functions/filter/data/bayes.model
sha256sum functions/filter/data/bayes.model
"$stratus" spam evaluate --ham "$corpus/ham" --spam "$corpus/spam" --folds 5 --verbose | grep -v '^  \(spam missed\|ham called spam\):'
