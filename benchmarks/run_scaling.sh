#!/usr/bin/env bash
# The scaling study: benchmarks/scaling.py for 2, 4, 8 and 16 ranks at 100 and
# 10 Mbit/s per rank, each rank with its own emulated NIC (benchmarks/netns_cluster.sh),
# then the table and figure (benchmarks/scaling_report.py).
#
#   sudo benchmarks/run_scaling.sh                 # the whole grid (about an hour)
#   sudo RANKS="4 16" RATES=10mbit benchmarks/run_scaling.sh   # a part of it
#
# Needs root (network namespaces, tc), as netns_cluster.sh does. Results are appended to
# benchmarks/results/scaling.jsonl (moved aside first) and summarized in
# benchmarks/results/scaling.md and scaling.png.
set -euo pipefail
cd "$(dirname "$0")/.."
RANKS=${RANKS:-"16 4 8 2"}
RATES=${RATES:-"10mbit 100mbit"}
MAX_SECONDS=${MAX_SECONDS:-120}
CAP_SGD_ALLGATHER=${CAP_SGD_ALLGATHER:-60}
OUT=benchmarks/results/scaling.jsonl
PYTHON=${PYTHON:-$(pwd)/.venv/bin/python}
[[ -f "$OUT" ]] && mv "$OUT" "$OUT.previous"
for rate in $RATES; do
    for ranks in $RANKS; do
        echo "[run_scaling] $ranks ranks at $rate per rank, $(date -u +%H:%M:%S) UTC"
        PYTHON="$PYTHON" benchmarks/netns_cluster.sh -n "$ranks" --rate "$rate" \
            --timeout 3600 -- python -m mpi4py benchmarks/scaling.py --rate "$rate" \
            --max-seconds "$MAX_SECONDS" --cap-sgd-allgather "$CAP_SGD_ALLGATHER" \
            --out "$OUT" "$@"
    done
done
"$PYTHON" benchmarks/scaling_report.py "$OUT"

# IntSGD's growth from 8 to 16 ranks where the emulation is bandwidth-bound:
# at 10 Mbit/s, 16 ranks taking turns on 2 cores add CPU time to every hop of
# the allreduce; at 1 Mbit/s the wire dominates it (docs/scaling.rst).
if [[ "${GROWTH_CHECK:-1}" == 1 ]]; then
    GROWTH=benchmarks/results/scaling_growth_1mbit.jsonl
    rm -f "$GROWTH"
    for ranks in 8 16; do
        echo "[run_scaling] growth check: $ranks ranks at 1mbit, IntSGD only"
        PYTHON="$PYTHON" benchmarks/netns_cluster.sh -n "$ranks" --rate 1mbit \
            --timeout 900 -- python -m mpi4py benchmarks/scaling.py --rate 1mbit \
            --schemes intsgd8-allreduce --max-seconds 20 --sync-steps 30 --out "$GROWTH"
    done
    "$PYTHON" - "$GROWTH" <<'PY'
import json, sys
rows = {r["ranks"]: r for r in map(json.loads, open(sys.argv[1]))}
a, b = rows[8], rows[16]
print(f"IntSGD network ms/step at 1 Mbit/s: 8 ranks {a['network_ms_per_step_mean']:.2f}, "
      f"16 ranks {b['network_ms_per_step_mean']:.2f}: growth "
      f"{b['network_ms_per_step_mean'] / a['network_ms_per_step_mean']:.2f}x "
      f"(bytes a step {b['rx_bytes_per_step_mean'] / a['rx_bytes_per_step_mean']:.2f}x)")
PY
fi
