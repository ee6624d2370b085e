#!/usr/bin/env bash
# Networks with a shape: one allreduce per scheme and payload on torus:4x4, mesh:4x4,
# switches:4x4 (uplinks at a quarter of the node rate) and hosts:4x4, then fits to
# relative error 1e-6 on torus:4x4 and hosts:4x4; the table and figure last
# (benchmarks/topology_report.py).
#
#   sudo benchmarks/run_topology.sh                        # everything (about 40 minutes)
#   sudo PARTS=allreduce NETWORKS="torus:4x4" benchmarks/run_topology.sh   # a part
#
# Every MPICH algorithm is its own mpiexec (MPICH reads MPIR_CVAR_* at MPI_Init), run
# back to back with the package's schemes on the same emulated network. Needs root, as
# netns_cluster.sh does. Results go to benchmarks/results/topology_allreduce.jsonl and
# topology_fits.jsonl (moved aside first), summarized in benchmarks/results/topology.md
# and topology.png.
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS=${PARTS:-"allreduce fits"}
NETWORKS=${NETWORKS:-"torus:4x4 mesh:4x4 switches:4x4 hosts:4x4"}
RATE=${RATE:-10mbit}
UPLINK_RATE=${UPLINK_RATE:-2500kbit}      # a quarter of RATE: 4:1 oversubscribed
# The fits: d = 4000, so IntSGD's message is 4 kB. At 500 kbit/s its allreduce on the
# torus is bandwidth-bound (a 4 kB MultiTree allreduce at 2 Mbit/s is still mostly
# the 10 hops' scheduling on 2 cores; see docs/scaling.rst).
TORUS_FIT_RATE=${TORUS_FIT_RATE:-500kbit}
HOSTS_FIT_RATE=${HOSTS_FIT_RATE:-2mbit}
FIT_CAP=${FIT_CAP:-240}
REPEATS=${REPEATS:-3}
ALGORITHMS=${ALGORITHMS:-"auto ring recursive_doubling reduce_scatter_allgather"}
PYTHON=${PYTHON:-$(pwd)/.venv/bin/python}
SIZES=${SIZES:-"4096 65536 1048576 4194304"}
# TAG names a second set of results (e.g. TAG=_2500kbit RATE=2500kbit ...).
ALLREDUCE=benchmarks/results/topology_allreduce${TAG:-}.jsonl
FITS=benchmarks/results/topology_fits${TAG:-}.jsonl

launch() {   # launch NETWORK RATE [env...] -- script args...
    local network=$1 rate=$2; shift 2
    local extra=()
    [[ $network == switches:* ]] && extra=(--uplink-rate "$UPLINK_RATE")
    local envs=()
    while [[ $1 != -- ]]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" PYTHON="$PYTHON" benchmarks/netns_cluster.sh --network "$network" \
        --rate "$rate" "${extra[@]}" --timeout 3600 -- python -m mpi4py "$@"
}

if [[ " $PARTS " == *" allreduce "* ]]; then
    [[ -f "$ALLREDUCE" ]] && mv "$ALLREDUCE" "$ALLREDUCE.previous"
    for network in $NETWORKS; do
        echo "[run_topology] allreduce on $network at $RATE, $(date -u +%H:%M:%S) UTC"
        for algorithm in $ALGORITHMS; do
            launch "$network" "$RATE" MPIR_CVAR_ALLREDUCE_INTRA_ALGORITHM="$algorithm" -- \
                benchmarks/allreduce_topology.py --scheme mpi --label "mpich-$algorithm" \
                --repeats "$REPEATS" --rate "$RATE" --sizes $SIZES --out "$ALLREDUCE"
        done
        if [[ $network == hosts:* ]]; then
            # MPICH's node-aware composition: reduce inside each host through shared
            # memory, allreduce between hosts, broadcast inside each host.
            launch "$network" "$RATE" MPIR_CVAR_ALLREDUCE_COMPOSITION=1 -- \
                benchmarks/allreduce_topology.py --scheme mpi --label mpich-node-aware \
                --repeats "$REPEATS" --rate "$RATE" --sizes $SIZES --out "$ALLREDUCE"
            launch "$network" "$RATE" -- benchmarks/allreduce_topology.py \
                --scheme hierarchical --label hierarchical --repeats "$REPEATS" \
                --rate "$RATE" --sizes $SIZES --out "$ALLREDUCE"
        else
            launch "$network" "$RATE" -- benchmarks/allreduce_topology.py \
                --scheme multitree --label multitree --repeats "$REPEATS" \
                --rate "$RATE" --sizes $SIZES --out "$ALLREDUCE"
        fi
    done
fi

if [[ " $PARTS " == *" fits "* ]]; then
    [[ -f "$FITS" ]] && mv "$FITS" "$FITS.previous"
    # Every scheme waits the same way (yielding its core between tests): each rank
    # here is a machine of its own that shares 2 cores with 15 others. SGD over
    # float64 at the torus's rate would take most of an hour: capped, its time and
    # bytes to 1e-6 are extrapolated from its measured steps (--extrapolate).
    FIT_ARGS=(--wait yield --sync-steps 20 --max-seconds "$FIT_CAP" --extrapolate --out "$FITS")
    echo "[run_topology] fits on torus:4x4 at $TORUS_FIT_RATE, $(date -u +%H:%M:%S) UTC"
    launch torus:4x4 "$TORUS_FIT_RATE" -- benchmarks/scaling.py --rate "$TORUS_FIT_RATE" \
        "${FIT_ARGS[@]}" --schemes intsgd8-multitree intsgd8-allreduce sgd-allreduce
    echo "[run_topology] fits on hosts:4x4 at $HOSTS_FIT_RATE, $(date -u +%H:%M:%S) UTC"
    launch hosts:4x4 "$HOSTS_FIT_RATE" -- benchmarks/scaling.py --rate "$HOSTS_FIT_RATE" \
        "${FIT_ARGS[@]}" --schemes intsgd8-hierarchical sgd-hierarchical
    launch hosts:4x4 "$HOSTS_FIT_RATE" MPIR_CVAR_ALLREDUCE_COMPOSITION=1 -- \
        benchmarks/scaling.py --rate "$HOSTS_FIT_RATE" "${FIT_ARGS[@]}" \
        --schemes sgd-allreduce --label sgd-allreduce-node-aware
fi
# Every allreduce set (the 10 Mbit/s sweep and any TAG run beside it) and the fits.
if [[ -z "${TAG:-}" ]]; then
    "$PYTHON" benchmarks/topology_report.py --fits "$FITS" \
        --allreduce benchmarks/results/topology_allreduce*.jsonl
fi
