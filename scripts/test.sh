#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
# Installs what the tests need, runs every fuzz target briefly, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/sbin:/sbin:$PATH"
scripts/self-contained.sh
scripts/install-deps.sh
scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
cargo test --workspace --release --no-fail-fast
