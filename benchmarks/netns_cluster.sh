#!/usr/bin/env bash
# Run a command under `mpiexec -n W` over an emulated cluster network, on one machine.
#
#   sudo benchmarks/netns_cluster.sh [--mode per-host|shared] [--rate R] [--burst B]
#        [--latency L] [--timeout S] -n W -- python -m mpi4py script.py args...
#   sudo benchmarks/netns_cluster.sh --network torus:RxC|mesh:RxC|switches:LxH|hosts:HxR
#        [--uplink-rate R2] [--rate R] [--burst B] [--latency L] [--timeout S] [-n W]
#        -- python -m mpi4py script.py args...
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
# Networks with a shape (--network SPEC; replaces --mode; -n may be omitted, and if given
#   must be the spec's rank count; ranks get SKLEARN_RELU_NETWORK=SPEC so a program can
#   build the same graph). Every rank is 10.77.0.(rank+1) on its eth0, as in per-host,
#   and MPICH gets the same environment (FI_TCP_IFACE=eth0) except for hosts:.
#   torus:RxC, mesh:RxC  R*C nodes; node i = rank i sits at row i / C, column i % C. A node
#       is two namespaces: a host ncl<pid>r<i>, where the rank runs, and a router
#       ncl<pid>x<i> joined to it by an unshaped veth (host eth0, 10.77.0.(i+1)/32, default
#       route to the router). Routers are joined by one veth pair per edge of the grid
#       (the mesh's, plus the torus's wraparound edges; when R or C is 2 the wraparound
#       edge is the direct edge and there is one link), each end MTU 1500 with a tbf at
#       rate R on its egress, one /30 (10.78.0.0/16) per link. Routers forward
#       (ip_forward=1, rp_filter=0: the way back from B to A is another path than A to B)
#       along static dimension-order routes: column first, then row; on a torus the
#       shorter way round, a tie (distance C/2 or R/2) going east/south (+1, wrapping). So a
#       message to a non-neighbour crosses, and contends on, intermediate nodes' links:
#       measured at 20 Mbit/s on mesh:1x3, 1 MB flows 0->2 (through node 1) and 1->2 at
#       once got 8.8-10.4 Mbit/s each of payload (19.1 together: the link's 1448/1514
#       share) in 12 runs of 13, 0->1 and 1->2 at once 19.1 each in every run. TCP over
#       one FIFO queue can share unevenly: 14.4/4.5 in the 13th. Why a host apart from
#       its router: the rank's own traffic crosses its eth0 and nothing else does (a 1 MB
#       message 0->2 on mesh:1x3 put 262 bytes on node 1's eth0, 1.05 MB on node 2's),
#       the same counter as per-host. A 1 MB float64 Allreduce on torus:4x4 at 10 Mbit/s
#       took 2.8-3.2 s with MPICH's default algorithm (machine load 7). Setting up and
#       tearing down torus:8x8 (128 namespaces, 128 links) took 15 s.
#   switches:LxH [--uplink-rate R2]  L leaf switches of H nodes each (node i on leaf i / H),
#       leaves joined by one spine: bridges in namespaces ncl<pid>l<leaf>, ncl<pid>spine.
#       A node's NIC is shaped at R both ways (tbf on its eth0 and on its leaf port), each
#       leaf's uplink at R2 both ways (default R2 = R, no oversubscription). One subnet.
#       Measured at R = 20 Mbit/s, R2 = 10 Mbit/s on switches:2x2: flows 0->2 and 1->3
#       (both up leaf 0's uplink) got 5.0 and 4.5 Mbit/s, 0->1 and 2->3 19.1 each.
#   hosts:HxR  H hosts of R ranks each (W = H*R); rank k runs in host namespace
#       ncl<pid>h<k / R>, with the host's one NIC (eth0, 10.77.0.(host+1), shaped and
#       bridged as per-host). MPICH is told the blocks are nodes: MPIR_CVAR_NUM_CLIQUES=H
#       MPIR_CVAR_CLIQUES_BY_BLOCK=1 instead of MPIR_CVAR_NOLOCAL=1, so a host's ranks
#       use shared memory among themselves (Split_type(COMM_TYPE_SHARED) has R ranks) and
#       TCP over eth0 between hosts: a 100 kB Sendrecv between ranks 0 and 1 of
#       hosts:2x2 added 0 bytes to eth0's rx_bytes, one between ranks 0 and 2 104 kB.
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
#   torus/mesh/switches: as per-host, eth0 is the rank's own traffic only. On torus and
#       mesh the links (own plus forwarded traffic) are the router's interfaces n<j>
#       (link to node j), not visible inside the rank; read them from outside during
#       the run: `ip -n ncl<pid>x<i> -s link show n<j>`.
#   hosts: eth0 is the host's traffic to other hosts, the sum over its R ranks; traffic
#       between ranks of one host is shared memory and on no counter. A rank's share
#       is not observable at the NIC.
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
#   collide; every one is recorded as it is created, so a failed setup removes those that
#   exist) are deleted in a trap on EXIT/INT/TERM, also after failure, and any process
#   still inside them is killed first. The command runs under `timeout` (--timeout,
#   default 900 s; exit code 124) so a hung rank cannot keep the namespaces alive.
set -euo pipefail
{

prog=netns_cluster.sh
die() { echo "$prog: $*" >&2; exit 2; }
usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

MODE=per-host RATE=100mbit BURST=1600 LATENCY=50ms TIMEOUT=900 W= NETWORK= UPLINK_RATE=
while (( $# )); do
    case "$1" in
        --mode) MODE=${2:?}; shift 2 ;;
        --mode=*) MODE=${1#*=}; shift ;;
        --network) NETWORK=${2:?}; shift 2 ;;
        --network=*) NETWORK=${1#*=}; shift ;;
        --rate) RATE=${2:?}; shift 2 ;;
        --rate=*) RATE=${1#*=}; shift ;;
        --uplink-rate) UPLINK_RATE=${2:?}; shift 2 ;;
        --uplink-rate=*) UPLINK_RATE=${1#*=}; shift ;;
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
if [[ -n "$NETWORK" ]]; then
    [[ "$NETWORK" =~ ^(torus|mesh|switches|hosts):([0-9]+)x([0-9]+)$ ]] \
        || die "--network must be torus:RxC, mesh:RxC, switches:LxH or hosts:HxR, not '$NETWORK'"
    KIND=${BASH_REMATCH[1]} D1=$((10#${BASH_REMATCH[2]})) D2=$((10#${BASH_REMATCH[3]}))
    (( D1 >= 1 && D2 >= 1 && D1 * D2 <= 250 )) || die "--network $NETWORK: both sizes must be >= 1 and their product <= 250"
    [[ "$MODE" == per-host ]] || die "--network replaces --mode; give one of them"
    [[ -z "$W" || "$W" == "$((D1 * D2))" ]] || die "-n $W does not match --network $NETWORK ($((D1 * D2)) ranks)"
    W=$((D1 * D2))
    [[ -z "$UPLINK_RATE" || "$KIND" == switches ]] || die "--uplink-rate only applies to --network switches:LxH"
    MODE=$KIND
fi
[[ -z "$UPLINK_RATE" || -n "$NETWORK" ]] || die "--uplink-rate only applies to --network switches:LxH"
UPLINK_RATE=${UPLINK_RATE:-$RATE}
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
PREFIX=ncl$$    # namespaces: ncl<pid>hub, ncl<pid>r<rank>, ncl<pid>shared, ncl<pid>x<node>,
                # ncl<pid>l<leaf>, ncl<pid>spine, ncl<pid>h<host>
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
shape() {   # shape NS DEV [RATE]
    local rate=${3:-$RATE}
    tc -n "$1" qdisc add dev "$2" root tbf rate "$rate" burst "$BURST" latency "$LATENCY" \
        || die "tc could not add 'tbf rate $rate burst $BURST latency $LATENCY' on $2 (sch_tbf missing or bad value?)"
}
veth() {    # veth NS1 DEV1 NS2 DEV2: a veth pair, both ends MTU 1500 and up
    ip link add "$2" netns "$1" mtu 1500 type veth peer name "$4" netns "$3" mtu 1500 \
        || die "could not create a veth pair (no veth support?)"
    ip -n "$1" link set "$2" up
    ip -n "$3" link set "$4" up
}
bridge() {  # bridge NS: a namespace holding br0, up
    addns "$1"; quiet_v6 "$1"
    ip -n "$1" link add br0 type bridge || die "could not create a bridge (no bridge support?)"
    ip -n "$1" link set br0 up
}
host() {    # host NS: a namespace for ranks, lo up, IPv6 off
    addns "$1"; quiet_v6 "$1"
    ip -n "$1" link set lo up
}
addr() { echo "10.77.0.$(($1 + 1))"; }    # node/rank/host i's address

RANK_ENV=(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 SKLEARN_RELU_THREADS=1
          MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp)
[[ "$MODE" == hosts ]] || RANK_ENV+=(MPIR_CVAR_NOLOCAL=1)
[[ -z "$NETWORK" ]] || RANK_ENV+=(SKLEARN_RELU_NETWORK="$NETWORK")
RANK_NS='r${PMI_RANK}'   # the namespace suffix of a rank, in the generated wrapper (sh syntax)

# ---- setup ----------------------------------------------------------------------------
star() {   # star NAME COUNT: namespaces ${PREFIX}NAME0.. on one bridge, each eth0 shaped
    local i N HUB=${PREFIX}hub
    bridge "$HUB"
    for (( i = 0; i < $2; i++ )); do
        N=${PREFIX}$1$i
        host "$N"
        veth "$N" eth0 "$HUB" "p$i"
        ip -n "$HUB" link set "p$i" master br0
        ip -n "$N" addr add "$(addr "$i")/24" dev eth0
        shape "$N" eth0
    done
}

setup_per_host() {
    star r "$W"
    echo "[$prog] per-host: $W namespaces ${PREFIX}r0..$((W - 1)), eth0 mtu 1500 limited to" \
         "$RATE each (burst $BURST, latency $LATENCY), bridged in ${PREFIX}hub" >&2
}

setup_hosts() {   # hosts:HxR: per-host with H namespaces; rank k in host k / R
    local H=$D1 RPH=$D2
    star h "$H"
    RANK_ENV+=(MPIR_CVAR_NUM_CLIQUES="$H" MPIR_CVAR_CLIQUES_BY_BLOCK=1)
    RANK_NS="h\$((PMI_RANK / $RPH))"
    echo "[$prog] hosts:${H}x$RPH: $H host namespaces ${PREFIX}h0..$((H - 1)) of $RPH ranks" \
         "each, eth0 mtu 1500 limited to $RATE each (burst $BURST, latency $LATENCY)," \
         "bridged in ${PREFIX}hub" >&2
}

setup_switches() {   # switches:LxH: node i on leaf i / H; leaves on one spine
    local l i L=$D1 H=$D2 LEAF R SPINE=${PREFIX}spine
    bridge "$SPINE"
    for (( l = 0; l < L; l++ )); do
        LEAF=${PREFIX}l$l
        bridge "$LEAF"
        veth "$LEAF" uplink "$SPINE" "l$l"
        ip -n "$LEAF" link set uplink master br0
        ip -n "$SPINE" link set "l$l" master br0
        shape "$LEAF" uplink "$UPLINK_RATE"       # leaf -> spine
        shape "$SPINE" "l$l" "$UPLINK_RATE"   # spine -> leaf
        for (( i = l * H; i < (l + 1) * H; i++ )); do
            R=${PREFIX}r$i
            host "$R"
            veth "$R" eth0 "$LEAF" "p$i"
            ip -n "$LEAF" link set "p$i" master br0
            ip -n "$R" addr add "$(addr "$i")/24" dev eth0
            shape "$R" eth0       # node -> leaf
            shape "$LEAF" "p$i"   # leaf -> node
        done
    done
    echo "[$prog] switches:${L}x$H: $W node namespaces ${PREFIX}r0..$((W - 1)), NICs at $RATE" \
         "each way, $L leaves ${PREFIX}l0..$((L - 1)) with uplinks at $UPLINK_RATE each way" \
         "to ${PREFIX}spine (burst $BURST, latency $LATENCY)" >&2
}

# torus:RxC / mesh:RxC. Node i = (row i / C, column i % C) is two namespaces: a router
# ${PREFIX}x<i> that owns the node's links and forwards, and a host ${PREFIX}r<i> where
# the rank runs, joined by an unshaped veth (host eth0 <-> router h).
declare -A PEER_ADDR   # "i,j" -> j's address on the link between routers i and j
grid_next() {   # grid_next SRC DST: sets NEXT, the neighbour SRC forwards to (X, then Y)
    local rs=$(($1 / D2)) cs=$(($1 % D2)) rd=$(($2 / D2)) cd=$(($2 % D2))
    if (( cs != cd )); then grid_step "$cs" "$cd" "$D2"; NEXT=$((rs * D2 + (cs + STEP) % D2))
    else grid_step "$rs" "$rd" "$D1"; NEXT=$(((rs + STEP) % D1 * D2 + cs)); fi
}
grid_step() {   # grid_step FROM TO SIZE: sets STEP to +1, or -1 as SIZE - 1 (modulo SIZE)
    local d=$((($2 - $1 + $3) % $3))
    if [[ "$KIND" == mesh ]]; then (( $2 > $1 )) && STEP=1 || STEP=$(($3 - 1))
    elif (( 2 * d <= $3 )); then STEP=1        # the shorter way round; a tie goes +1
    else STEP=$(($3 - 1)); fi
}
setup_grid() {
    local i j k=0 r c rows=$D1 cols=$D2 X R a b edges=()
    for (( i = 0; i < W; i++ )); do
        R=${PREFIX}r$i X=${PREFIX}x$i
        host "$R"
        addns "$X"; quiet_v6 "$X"
        ip netns exec "$X" sh -c 'sysctl -qw net.ipv4.ip_forward=1 \
            net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
            net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.default.arp_announce=2' >/dev/null \
            || die "could not enable IP forwarding in $X"
        ip -n "$X" link set lo up
        veth "$R" eth0 "$X" host
        ip -n "$R" addr add "$(addr "$i")/32" dev eth0
        ip -n "$R" route add 10.76.0.1/32 dev eth0 scope link
        ip -n "$R" route add default via 10.76.0.1 dev eth0 src "$(addr "$i")"
        ip -n "$X" addr add 10.76.0.1/32 dev host
        ip -n "$X" route add "$(addr "$i")/32" dev host src 10.76.0.1
        r=$((i / cols)) c=$((i % cols))
        # east and south neighbours; the wraparound only when it is a new edge (size > 2)
        if (( c + 1 < cols )); then edges+=("$i $((i + 1))")
        elif [[ "$KIND" == torus ]] && (( cols > 2 )); then edges+=("$((r * cols)) $i"); fi
        if (( r + 1 < rows )); then edges+=("$i $((i + cols))")
        elif [[ "$KIND" == torus ]] && (( rows > 2 )); then edges+=("$c $i"); fi
    done
    for e in "${edges[@]}"; do   # one link, one /30, a tbf on each end
        read -r i j <<< "$e"
        a=10.78.$((k / 64)).$((k % 64 * 4 + 1)) b=10.78.$((k / 64)).$((k % 64 * 4 + 2))
        veth "${PREFIX}x$i" "n$j" "${PREFIX}x$j" "n$i"
        ip -n "${PREFIX}x$i" addr add "$a/30" dev "n$j"
        ip -n "${PREFIX}x$j" addr add "$b/30" dev "n$i"
        shape "${PREFIX}x$i" "n$j"
        shape "${PREFIX}x$j" "n$i"
        PEER_ADDR[$i,$j]=$b PEER_ADDR[$j,$i]=$a
        k=$((k + 1))
    done
    for (( i = 0; i < W; i++ )); do
        for (( j = 0; j < W; j++ )); do
            (( i != j )) || continue
            grid_next "$i" "$j"
            echo "route add $(addr "$j")/32 via ${PEER_ADDR[$i,$NEXT]} dev n$NEXT"
        done | ip -n "${PREFIX}x$i" -batch - || die "could not add the routes of router $i"
        # interfaces created before the defaults were set keep their own rp_filter
        ip netns exec "${PREFIX}x$i" sh -c \
            'for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > "$f"; done'
    done
    echo "[$prog] $NETWORK: $W nodes, hosts ${PREFIX}r0..$((W - 1)) behind routers" \
         "${PREFIX}x0..$((W - 1)), $k links at $RATE each way (burst $BURST, latency" \
         "$LATENCY), dimension-order routes" >&2
}

case $MODE in
    shared)
        NS=${PREFIX}shared
        addns "$NS"
        quiet_v6 "$NS"
        ip netns exec "$NS" ip link set lo mtu 1500 up
        shape "$NS" lo
        echo "[$prog] shared: namespace $NS, loopback mtu 1500 limited to $RATE (burst $BURST," \
             "latency $LATENCY) for all $W ranks" >&2 ;;
    per-host) setup_per_host ;;
    hosts) setup_hosts ;;
    switches) setup_switches ;;
    torus|mesh) setup_grid ;;
esac

if [[ "$MODE" == shared ]]; then
    LAUNCH=(ip netns exec "$NS" env "${RANK_ENV[@]}" "$MPIEXEC" -n "$W" "$@")
else
    TMP=$(mktemp -d /tmp/netns_cluster.XXXXXX)
    cat > "$TMP/inrank.sh" <<EOF
#!/bin/sh
# generated by $prog: run this MPI rank inside its own namespace
[ -n "\${PMI_RANK:-}" ] || { echo "inrank.sh: PMI_RANK is not set (not launched by MPICH's mpiexec?)" >&2; exit 2; }
exec ip netns exec "${PREFIX}$RANK_NS" "\$@"
EOF
    chmod 755 "$TMP/inrank.sh"
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
