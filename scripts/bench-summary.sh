#!/usr/bin/env bash
# Prints the one table `make bench` ends with: every SUMMARY line the
# benches wrote to LOG (benches/common/summary.rs), as a Markdown table.
# Ratios: >1 is erlnode better than its baseline of the same run, except
# where the target column says what the ratio is (p50 / round trip, ...).
set -euo pipefail
log=${1:?usage: bench-summary.sh LOG}
echo
mode=full
[ -n "${BENCH_QUICK:-}" ] && [ "$BENCH_QUICK" != 0 ] && mode="BENCH_QUICK=$BENCH_QUICK"
echo "## make bench: summary ($(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg), $mode)"
echo
echo "| bench | path | erlnode | baseline (same run) | ratio | target |"
echo "|---|---|---|---|---|---|"
grep -a '^SUMMARY' "$log" | awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6, $7 }'
