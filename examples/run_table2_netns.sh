#!/usr/bin/env bash
# Run examples/reproduce_table2.py under MPI over an emulated network
# (docs/theory.rst, "Emulating a cluster's network"):
# a network namespace whose loopback is rate-limited with tc, and MPICH told to use
# TCP instead of shared memory, so every message crosses the limited link.
#
#   sudo examples/run_table2_netns.sh [RANKS=4] [RATE=100mbit] [-- extra script args]
#
# Needs root (ip netns, tc) and mpiexec/python from the environment (PYTHON, MPIEXEC
# override them). The namespace is removed on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

RANKS=${1:-4}
RATE=${2:-100mbit}
shift $(( $# > 2 ? 2 : $# ))
[[ "${1:-}" == "--" ]] && shift
PYTHON=${PYTHON:-$(command -v python)}
MPIEXEC=${MPIEXEC:-$(dirname "$PYTHON")/mpiexec}
NS=relubench-$$

if [[ $EUID -ne 0 ]]; then
    echo "run_table2_netns.sh: needs root to create a network namespace (try sudo)" >&2
    exit 2
fi
[[ -x "$MPIEXEC" ]] || { echo "no mpiexec at $MPIEXEC; pip install mpi4py mpich or set MPIEXEC" >&2; exit 2; }

cleanup() { ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

ip netns add "$NS"
# An Ethernet-sized MTU: loopback's default 65536-byte packets are larger than any
# sensible tbf bucket, so tbf would drop every full-size segment forever and the
# MPI job would hang inside its first large collective. The bucket holds one frame:
# a link sends at its rate, also right after an idle moment (a 64 KiB bucket let
# every exchange below 64 KiB through at loopback speed).
ip netns exec "$NS" ip link set lo mtu 1500 up
ip netns exec "$NS" tc qdisc add dev lo root tbf rate "$RATE" burst 1600 latency 50ms
echo "[netns] $NS: loopback limited to $RATE; $RANKS ranks over TCP"

# A timeout so that a hung rank cannot keep the namespace alive forever.
ip netns exec "$NS" env MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp MPIR_CVAR_NOLOCAL=1 \
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    timeout "${TIMEOUT:-900}" "$MPIEXEC" -n "$RANKS" "$PYTHON" -m mpi4py \
    examples/reproduce_table2.py --bandwidth "$RATE" "$@"
