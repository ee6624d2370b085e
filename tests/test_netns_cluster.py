"""benchmarks/netns_cluster.sh: 2 ranks, each in its own network namespace.

Runs a tiny mpi4py script through the launcher (per-host mode, 100mbit) and checks
that both ranks ran, that the Allreduce crossed the emulated NICs (each rank's eth0
rx_bytes grew), and that the launcher removed its namespaces afterwards; and that
a NIC sends at its rate even after an idle moment (no burst of credit). Needs root
and ``ip netns``; skipped otherwise.
"""

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

LAUNCHER = Path(__file__).resolve().parent.parent / "benchmarks" / "netns_cluster.sh"
MPIEXEC = Path(sys.executable).parent / "mpiexec"

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from mpi4py import MPI

    def rx_bytes():
        with open("/sys/class/net/eth0/statistics/rx_bytes") as f:
            return int(f.read())

    comm = MPI.COMM_WORLD
    before = rx_bytes()
    x = np.full(1000, comm.rank + 1.0)
    out = np.empty_like(x)
    comm.Allreduce(x, out, op=MPI.SUM)
    comm.Barrier()
    size = comm.size
    assert np.all(out == size * (size + 1) / 2), out[:3]
    print(f"rank={comm.rank} size={size} rx_bytes={rx_bytes() - before}", flush=True)
    """
)


def _skip_reason():
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "needs root to create network namespaces (run the tests as root)"
    for tool in ("ip", "tc", "timeout"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (iproute2/coreutils)"
    try:
        done = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"'ip netns' is unavailable: {exc}"
    if done.returncode != 0:
        return f"'ip netns' is unavailable: {done.stderr.decode(errors='replace').strip()}"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed"
    if not MPIEXEC.exists():
        return f"no mpiexec next to {sys.executable}"
    return None


_reason = _skip_reason()
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")


def _namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_two_ranks_per_host(tmp_path):
    script = tmp_path / "allreduce.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHON=sys.executable, MPIEXEC=str(MPIEXEC))
    done = subprocess.run(
        ["bash", str(LAUNCHER), "--timeout", "15", "-n", "2", "--",
         sys.executable, "-m", "mpi4py", str(script)],
        capture_output=True, text=True, env=env, timeout=19,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = sorted(re.findall(r"rank=(\d) size=(\d) rx_bytes=(\d+)", done.stdout))
    assert [(r, s) for r, s, _ in lines] == [("0", "2"), ("1", "2")], done.stdout
    # each rank receives >= 8000 bytes of payload at its NIC (its lo would show 0)
    for _, _, rx in lines:
        assert int(rx) > 4000, done.stdout
    # the launcher's namespaces (named after its PID) are gone
    match = re.search(r"namespaces (ncl\d+)r0", done.stderr)
    assert match, done.stderr
    assert not {ns for ns in _namespaces() if ns.startswith(match.group(1) + "r")
                or ns == match.group(1) + "hub"}


PACED_SCRIPT = textwrap.dedent(
    """
    import time
    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    peer = 1 - comm.rank
    message = np.ones(100_000, dtype=np.uint8)
    received = np.empty_like(message)
    comm.Sendrecv(message[:1000], peer, recvbuf=received[:1000], source=peer)
    comm.Barrier()
    time.sleep(0.5)  # idle: whatever credit the shaper gives is refilled
    start = time.perf_counter()
    comm.Sendrecv(message, peer, recvbuf=received, source=peer)
    print(f"rank={comm.rank} seconds={time.perf_counter() - start:.4f}", flush=True)
    """
)


def test_a_nic_sends_no_faster_than_its_rate_even_after_an_idle_moment(tmp_path):
    # A NIC serializes every frame at its line rate. 100 kB at 10 Mbit/s take
    # 80 ms on the wire; a token bucket holding 64 KiB let most of them through
    # at once after an idle moment (about 30 ms). A lower bound on time: a
    # loaded machine only makes it longer.
    script = tmp_path / "paced.py"
    script.write_text(PACED_SCRIPT)
    env = dict(os.environ, PYTHON=sys.executable, MPIEXEC=str(MPIEXEC))
    done = subprocess.run(
        ["bash", str(LAUNCHER), "--timeout", "20", "--rate", "10mbit", "-n", "2", "--",
         sys.executable, "-m", "mpi4py", str(script)],
        capture_output=True, text=True, env=env, timeout=25,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seconds = [float(s) for s in re.findall(r"seconds=([\d.]+)", done.stdout)]
    assert len(seconds) == 2, done.stdout
    assert min(seconds) >= 0.9 * 100_000 * 8 / 10e6, seconds
