"""The compiled barrier of MPIBackend(wait="sleep") (backends/_futex.c), between
processes forked here over shared anonymous memory: no MPI needed.
"""

import mmap
import os
import signal
import sys
import time

import numpy as np
import pytest

from sklearn_relu.backends._shared_memory import futex_module

_futex = futex_module()
if _futex is None:
    # CI sets SKLEARN_RELU_REQUIRE_KERNEL=1: there a failed build must fail.
    if os.environ.get("SKLEARN_RELU_REQUIRE_KERNEL") == "1" and sys.platform == "linux":
        raise ImportError("the compiled barrier (sklearn_relu.backends._futex) was not built")
    pytest.skip("the compiled barrier is built on Linux only", allow_module_level=True)

CONTROL = _futex.CONTROL_BYTES


def shared_memory(nbytes):
    """Zeroed memory that forked children share with this process (page aligned)."""
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=np.uint8)


def run_in_children(n_children, task):
    """Fork ``n_children`` processes running ``task(index)``; their exit codes
    (0 when ``task`` returned, 1 when it raised)."""
    pids = []
    for index in range(n_children):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                task(index)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    return pids


def wait_for(pids, timeout=30):
    codes, deadline = [], time.monotonic() + timeout
    for pid in pids:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes.append(os.waitstatus_to_exitcode(status))
                break
            if time.monotonic() > deadline:  # none is left behind
                for other in pids:
                    os.kill(other, signal.SIGKILL)
                    os.waitpid(other, 0)
                raise AssertionError("a process still waits at the barrier")
            time.sleep(0.01)
    return codes


def process_state(pid):
    with open(f"/proc/{pid}/stat") as file:
        return file.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("spin_seconds", [0.0, 1e-3])
def test_no_process_passes_the_barrier_before_all_arrived_also_across_the_wrap(
    spin_seconds,
):
    # Four processes pass 300 barriers; before each, a process writes the
    # phase it reached, and after it, every process must read that all have
    # reached it. The counter starts just below 2**32, so it wraps midway.
    n_processes, phases, start = 4, 300, 2**32 - 500
    memory = shared_memory(4096)
    control, reached = memory[:CONTROL], memory[CONTROL:].view(np.int64)[:n_processes]
    control[:4].view(np.uint32)[0] = start

    def task(index):
        for phase in range(1, phases + 1):
            reached[index] = phase
            _futex.arrive_and_wait(control, start + phase * n_processes, spin_seconds)
            if reached.min() < phase:
                raise AssertionError(f"passed barrier {phase} early")

    assert wait_for(run_in_children(n_processes, task)) == [0] * n_processes
    assert control[:4].view(np.uint32)[0] == (start + phases * n_processes) % 2**32


def test_a_waiter_sleeps_until_the_last_arrival():
    memory = shared_memory(4096)
    control = memory[:CONTROL]
    (child,) = run_in_children(1, lambda _: _futex.arrive_and_wait(control, 2, 0.0))
    # Not polling: the waiting process is asleep in the kernel ("S").
    deadline = time.monotonic() + 30
    while process_state(child) != "S" and time.monotonic() < deadline:
        time.sleep(0.01)
    if process_state(child) != "S":
        wait_for([child], timeout=0)
    assert process_state(child) == "S"
    assert control[64:68].view(np.uint32)[0] == 1  # one sleeper counted
    _futex.arrive_and_wait(control, 2, 0.0)  # the last arrival wakes it
    assert wait_for([child]) == [0]
    assert control[64:68].view(np.uint32)[0] == 0


def test_ctrl_c_ends_a_sleeping_wait():
    memory = shared_memory(4096)
    control = memory[:CONTROL]

    def task(_):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            _futex.arrive_and_wait(control, 2, 0.0)
        except KeyboardInterrupt:
            os._exit(7)

    (child,) = run_in_children(1, task)
    deadline = time.monotonic() + 30
    while process_state(child) != "S" and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child, signal.SIGINT)
    assert wait_for([child]) == [7]


def test_the_control_block_must_be_whole_and_aligned():
    memory = shared_memory(4096)
    with pytest.raises(ValueError, match="128 bytes, 64-byte aligned"):
        _futex.arrive_and_wait(memory[: CONTROL - 1], 1, 0.0)
    with pytest.raises(ValueError, match="128 bytes, 64-byte aligned"):
        _futex.arrive_and_wait(memory[8 : 8 + CONTROL], 1, 0.0)
    with pytest.raises(TypeError):
        _futex.arrive_and_wait(bytes(CONTROL), 1, 0.0)  # read-only
