#!/usr/bin/env bash
# Sweeps the simulator over many fresh seeds, as a user checking the lock manager would:
# the lock workload under every fault kind, with and without overlapping episodes, at
# several cluster sizes, judged by every checker. Prints one line per configuration and every broken rule
# with its replay command; exits 1 if any seed broke a rule.
#   scripts/sim-sweep.sh [SEEDS_PER_RUN (default 1000: 10,000 in all)] [FIRST_SEED (default 100000)]
set -euo pipefail
cd "$(dirname "$0")/.."
per=${1:-1000}
first=${2:-100000}
cargo build --release -q -p o2cb
# A copy: a rebuild while the sweep runs must not change the binary under it.
bin=$(mktemp /tmp/o2cb-sweep.XXXXXX)
trap 'rm -f "$bin"' EXIT
install -m 755 target/release/o2cb "$bin"
failed=0
total=0
began=$(date +%s)
for overlap in "" --overlap; do
    for nodes in 3 4 5 7 9; do
        from=$((first + nodes * 1000000))
        to=$((from + per))
        start=$(date +%s)
        out=$("$bin" sim --nodes "$nodes" --workload locks --faults all $overlap \
            --duration 300s --seeds "$from..$to" 2>&1) || true
        summary=$(printf '%s\n' "$out" | grep -E 'seeds? broke a rule' || echo "no summary")
        echo "nodes $nodes ${overlap:-(no overlap)}, seeds $from..$to: $summary ($(( $(date +%s) - start )) s)"
        total=$((total + per))
        if ! printf '%s\n' "$summary" | grep -q '^0 of'; then
            failed=1
            printf '%s\n' "$out" | grep -E '^seed [0-9]+: VIOLATION|^replay:' || printf '%s\n' "$out" | tail -5
        fi
    done
done
echo "$total seeds in $(( $(date +%s) - began )) s"

exit $failed
