#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a short time (default 15 s each).
# Usage: scripts/fuzz.sh [SECONDS]   — cargo-fuzz is installed if missing.
# The stable toolchain is used with RUSTC_BOOTSTRAP=1, since cargo fuzz needs -Z flags.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list --fuzz-dir fuzz)
if [ -z "$targets" ]; then
    echo "fuzz: no targets" >&2
    exit 1
fi
cargo fuzz build --fuzz-dir fuzz -O
for t in $targets; do
    mkdir -p "fuzz/corpus/$t"
    echo "fuzz: $t for ${secs}s"
    cargo fuzz run --fuzz-dir fuzz -O "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=0 2>&1 | tail -n 2
done
