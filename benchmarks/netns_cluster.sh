#!/usr/bin/env bash
# Run a command under `mpiexec -n W` over an emulated cluster network, on one machine.
#
#   sudo benchmarks/netns_cluster.sh [--mode per-host|shared] [--rate R] [--burst B]
#        [--latency L] [--timeout S] -n W -- python -m mpi4py script.py args...
#
# Modes
#   per-host (default)  One network namespace per rank, each with its own NIC: a veth
#       pair whose far end is a port of a bridge (br0) living in a namespace of its own.
#       Each rank's eth0 (MTU 1500) gets a tbf qdisc (rate R, burst B, latency L) on
#       egress, so every rank can send at most R, like one NIC per instance. Ranks have
#       addresses 10.77.0.(rank+1)/24; those exist only inside the namespaces this script
#       creates (the bridge is attached to no real interface, nothing is routed out).
#       mpiexec runs in the caller's namespace; a generated wrapper (in a temp dir)
#       execs each rank into the namespace named by its PMI_RANK (the PMI fd survives
#       the exec). MPICH talks TCP on eth0: FI_PROVIDER=tcp FI_TCP_IFACE=eth0
#       MPIR_CVAR_CH4_NETMOD=ofi MPIR_CVAR_NOLOCAL=1 (no shared memory between ranks).
#   shared  One namespace for all ranks; its loopback is rate-limited the same way and
#       set to MTU 1500 (with loopback's default 65536-byte MTU a full-size segment is
#       larger than the 64 KiB tbf bucket, is dropped forever and the first large
#       collective hangs). All ranks share one link of rate R.
#   The veth MTU is set to 1500 as well, and the loopback hang does apply to veth: with
#   the veth at MTU 65535 and burst 64kb a 1.6 MB Allreduce hung until the timeout. At
#   MTU 1500, 8 MB Allreduce/Allgather run at the shaped rate in both modes. --burst
#   must hold the largest frame (1514 bytes at MTU 1500).
#
# Burst (default 1600 bytes: one full frame)
#   A NIC serializes every frame at its line rate; it has no bucket of credit to spend
#   at a faster speed. tbf's bucket is that credit: up to --burst bytes leave at the
#   veth's speed once the link has been idle long enough to refill it. With a 64 KiB
#   bucket every exchange smaller than 64 KiB that follows an idle moment skipped the
#   rate limit: measured here at 8 ranks and 10 Mbit/s, a 4066-byte int8 Allreduce
#   (9.4 kB received per rank) took 2.2 ms, 34 Mbit/s, and a float64 one (58 kB)
#   25.9 ms, 18 Mbit/s; with the 1600-byte default they take 6.0 ms and 49.8 ms, the
#   shaped rate. So the default keeps the bucket at one frame, and a larger --burst is
#   a burstier link, not a faster NIC.
#
# Byte counters (for "bytes received per rank, counted at the NIC")
#   per-host: inside a rank, /proc/net/dev and /sys/class/net/* list only that rank's
#       namespace: `lo` (idle, ranks never talk over it) and `eth0`, its own NIC. So
#       /sys/class/net/eth0/statistics/rx_bytes (or the eth0 line of /proc/net/dev) is
#       the bytes this rank received, as Ethernet frames: payload plus Ethernet/IP/TCP
#       headers (~66 bytes per 1448-byte segment, ~4.5%) plus the TCP ACKs for what the
#       rank sent and a few ARP packets. IPv6 is disabled in the namespaces to keep
#       neighbour-discovery chatter out of the counters.
#   shared: there is one loopback for everyone. Every packet is counted once in lo's
#       tx_bytes and once in its rx_bytes, so lo rx_bytes (== tx_bytes) is the TOTAL of
#       all ranks' traffic; every rank reads the same number. Divide by W for an average
#       per rank; a per-rank figure is not observable at the NIC in this mode.
#
# Needs: root (ip netns, veth, tc); iproute2 (`ip`) and `tc` with the tbf qdisc
#   (sch_tbf), veth and bridge support in the kernel; MPICH and mpi4py, e.g. from PyPI
#   (`pip install mpi4py mpich`). MPIEXEC and PYTHON come from the environment, else from
#   the venv next to the repo (.venv/bin/mpiexec, .venv/bin/python) if present, else from
#   PATH. PYTHON's directory is put first on PATH, so `python` in the command is PYTHON.
#   Ranks get OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
#   SKLEARN_RELU_THREADS=1.
#
# Fidelity: the network is emulated, the CPUs are not. W ranks share this machine's
#   cores (2 here), and every hop of a collective needs the receiving process to be
#   scheduled. While a step's wire time is large against scheduling delays the emulation
#   is bandwidth-bound and faithful: measured here (d=4000 float64, quiet machine), the
#   4-rank Allgather at 100 Mbit/s took 8.2 ms for 99 kB received per rank (wire time
#   7.9 ms), 8 ranks 20.8 ms for 234 kB (18.7 ms), 16 ranks at 10 Mbit/s 422 ms for
#   496 kB (397 ms). Small messages, many ranks, or a loaded machine make it CPU-bound:
#   the 8-rank Allreduce at 100 Mbit/s (4 kB per hop) took 8 ms for 4.6 ms of wire time,
#   and with 16 ranks on 2 cores a ring allreduce is 30 sequential hops, each waiting for
#   a process to get a core, so it measures the scheduler rather than 16 machines'
#   network. With other jobs on the machine (load 12) the 4-rank Allreduce went from
#   4-5 ms to 21 ms while the bandwidth-bound Allgather barely moved. Check the regime
#   by comparing with the wire time (rx_bytes * 8 / rate) or a run at a lower rate, and
#   benchmark on an otherwise idle machine.
#
# Teardown: the namespaces (names contain this script's PID, so concurrent runs cannot
#   collide) are deleted in a trap on EXIT/INT/TERM, also after failure, and any process
#   still inside them is killed first. The command runs under `timeout` (--timeout,
#   default 900 s; exit code 124) so a hung rank cannot keep the namespaces alive.
set -euo pipefail
{

prog=netns_cluster.sh
die() { echo "$prog: $*" >&2; exit 2; }
usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

MODE=per-host RATE=100mbit BURST=1600 LATENCY=50ms TIMEOUT=900 W=
while (( $# )); do
    case "$1" in
        --mode) MODE=${2:?}; shift 2 ;;
        --mode=*) MODE=${1#*=}; shift ;;
        --rate) RATE=${2:?}; shift 2 ;;
        --rate=*) RATE=${1#*=}; shift ;;
        --burst) BURST=${2:?}; shift 2 ;;
        --burst=*) BURST=${1#*=}; shift ;;
        --latency) LATENCY=${2:?}; shift 2 ;;
        --latency=*) LATENCY=${1#*=}; shift ;;
        --timeout) TIMEOUT=${2:?}; shift 2 ;;
        --timeout=*) TIMEOUT=${1#*=}; shift ;;
        -n|-np) W=${2:?}; shift 2 ;;
        -h|--help) usage 0 ;;
        --) shift; break ;;
        *) echo "$prog: unknown argument '$1'" >&2; usage ;;
    esac
done
(( $# )) || { echo "$prog: no command given after --" >&2; usage; }
[[ "$MODE" == per-host || "$MODE" == shared ]] || die "--mode must be per-host or shared, not '$MODE'"
[[ "$W" =~ ^[0-9]+$ ]] && (( W >= 1 && W <= 250 )) || die "-n W must be an integer in 1..250 (got '${W}')"
[[ "$TIMEOUT" =~ ^[0-9]+([.][0-9]+)?[smhd]?$ ]] || die "--timeout must be a duration like 900 or 15m"

(( EUID == 0 )) || die "needs root to create network namespaces, veth pairs and tc qdiscs (run with sudo)"
command -v ip >/dev/null || die "'ip' (iproute2) not found; install iproute2"
command -v tc >/dev/null || die "'tc' not found; install iproute2 (tc with the tbf qdisc)"
command -v timeout >/dev/null || die "'timeout' (coreutils) not found"
ip netns list >/dev/null 2>&1 || die "'ip netns' does not work here (no network namespace support?)"

REPO=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON=$REPO/.venv/bin/python
    else PYTHON=$(command -v python3 || command -v python || true); fi
fi
if [[ -z "${MPIEXEC:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/mpiexec" ]]; then MPIEXEC=$REPO/.venv/bin/mpiexec
    elif [[ -n "$PYTHON" && -x "$(dirname "$PYTHON")/mpiexec" ]]; then MPIEXEC=$(dirname "$PYTHON")/mpiexec
    else MPIEXEC=$(command -v mpiexec || true); fi
fi
[[ -n "$MPIEXEC" && -x "$MPIEXEC" ]] || die "no mpiexec found; pip install mpi4py mpich, or set MPIEXEC"
[[ -n "$PYTHON" && -x "$PYTHON" ]] && export PATH="$(dirname "$PYTHON"):$PATH" PYTHON

# ---- teardown -------------------------------------------------------------------------
PREFIX=ncl$$            # namespaces: ncl<pid>hub, ncl<pid>r<rank>, ncl<pid>shared
CREATED=() TMP= CHILD=
descendants() {   # all descendants of pid $1
    ps -e -o pid= -o ppid= | awk -v root="$1" '
        { parent[$1] = $2 }
        END { for (p in parent) { q = parent[p]; while (q > 1) { if (q == root) { print p; break }; q = parent[q] } } }'
}
cleanup() {
    local rc=$? ns pids
    trap - EXIT INT TERM
    if [[ -n "$CHILD" ]] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null || true      # timeout forwards it to mpiexec
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$CHILD" 2>/dev/null || break; sleep 0.5; done
        # still alive: kill the whole tree (hydra's proxy is in a session of its own)
        kill -KILL $(descendants "$CHILD") "$CHILD" 2>/dev/null || true
    fi
    for ns in "${CREATED[@]}"; do                     # kill stragglers, then delete
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null || true
    done
    for ns in "${CREATED[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    [[ -n "$TMP" ]] && rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

addns() { ip netns add "$1" || die "could not create network namespace $1"; CREATED+=("$1"); }
quiet_v6() { ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
                 net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1 || true; }
shape() {   # shape NS DEV
    ip netns exec "$1" tc qdisc add dev "$2" root tbf rate "$RATE" burst "$BURST" latency "$LATENCY" \
        || die "tc could not add 'tbf rate $RATE burst $BURST latency $LATENCY' on $2 (sch_tbf missing or bad value?)"
}

RANK_ENV=(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 SKLEARN_RELU_THREADS=1
          MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp MPIR_CVAR_NOLOCAL=1)

# ---- setup ----------------------------------------------------------------------------
if [[ "$MODE" == shared ]]; then
    NS=${PREFIX}shared
    addns "$NS"
    quiet_v6 "$NS"
    ip netns exec "$NS" ip link set lo mtu 1500 up
    shape "$NS" lo
    echo "[$prog] shared: namespace $NS, loopback mtu 1500 limited to $RATE (burst $BURST," \
         "latency $LATENCY) for all $W ranks" >&2
    LAUNCH=(ip netns exec "$NS" env "${RANK_ENV[@]}" "$MPIEXEC" -n "$W" "$@")
else
    HUB=${PREFIX}hub
    addns "$HUB"
    quiet_v6 "$HUB"
    ip netns exec "$HUB" ip link add br0 type bridge || die "could not create a bridge (no bridge support?)"
    ip netns exec "$HUB" ip link set br0 up
    for (( i = 0; i < W; i++ )); do
        R=${PREFIX}r$i
        addns "$R"
        quiet_v6 "$R"
        ip link add eth0 netns "$R" type veth peer name "p$i" netns "$HUB" \
            || die "could not create a veth pair (no veth support?)"
        ip netns exec "$HUB" ip link set "p$i" master br0
        ip netns exec "$HUB" ip link set "p$i" mtu 1500 up
        ip netns exec "$R" ip link set lo up
        ip netns exec "$R" ip link set eth0 mtu 1500
        ip netns exec "$R" ip addr add "10.77.0.$((i + 1))/24" dev eth0
        ip netns exec "$R" ip link set eth0 up
        shape "$R" eth0
    done
    TMP=$(mktemp -d /tmp/netns_cluster.XXXXXX)
    cat > "$TMP/inrank.sh" <<EOF
#!/bin/sh
# generated by $prog: run this MPI rank inside its own namespace
[ -n "\${PMI_RANK:-}" ] || { echo "inrank.sh: PMI_RANK is not set (not launched by MPICH's mpiexec?)" >&2; exit 2; }
exec ip netns exec "${PREFIX}r\${PMI_RANK}" "\$@"
EOF
    chmod 755 "$TMP/inrank.sh"
    echo "[$prog] per-host: $W namespaces ${PREFIX}r0..$((W - 1)), eth0 mtu 1500 limited to" \
         "$RATE each (burst $BURST, latency $LATENCY), bridged in $HUB" >&2
    LAUNCH=(env "${RANK_ENV[@]}" FI_TCP_IFACE=eth0 "$MPIEXEC" -n "$W" "$TMP/inrank.sh" "$@")
fi

# ---- run ------------------------------------------------------------------------------
# In the background so that a TERM/INT reaches the trap at once (bash defers traps
# while a foreground child runs); timeout puts the job in its own process group.
timeout -k 10 "$TIMEOUT" "${LAUNCH[@]}" &
CHILD=$!
rc=0
wait "$CHILD" || rc=$?
CHILD=
case $rc in
    124) echo "[$prog] timed out after $TIMEOUT; the job was terminated" >&2 ;;
    137) echo "[$prog] the job was killed (SIGKILL: 10 s after the --timeout of $TIMEOUT if it ignored SIGTERM)" >&2 ;;
esac
exit "$rc"
}  # the whole script is one block, so bash has read all of it before running any of it
