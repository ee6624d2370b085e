/* A barrier in memory shared by processes, whose waiters sleep in the kernel
 * (Linux futex) instead of polling: the wait of MPIBackend(wait="sleep").
 *
 * Why: MPI implementations poll while a rank waits for a collective. When the
 * ranks on a host outnumber its cores, the polling ranks hold the cores that a
 * rank still computing needs, and every step waits for the scheduler to take
 * a core from a poller. A sleeping waiter leaves the run queue: the core goes
 * to the rank that computes at once, and the kernel moves it to an idle core.
 *
 * The barrier is one 32-bit counter of arrivals, which only grows (modulo
 * 2^32), and a count of sleepers on another cache line. A phase ends when the
 * counter reaches `target` (every rank's arrival). The last rank to arrive
 * wakes the sleepers, and only if there are any: a barrier whose ranks all
 * found it complete makes no system call. Lost wake-ups cannot happen: a
 * waiter counts itself a sleeper before it reads the counter for the last
 * time (both sequentially consistent, against the arriving rank's increment
 * then read of the sleepers), and FUTEX_WAIT returns at once if the counter
 * moved since that read.
 *
 * The futex operations are the shared (not PRIVATE) ones: the counter lives in
 * a mapping shared by several processes (MPI_Win_allocate_shared). The data
 * the ranks exchange around the barrier is ordered by MPI_Win_sync on the
 * Python side (_shared_memory.py), as MPI's memory model asks; the barrier is
 * the process synchronization between those calls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Offsets in the control block, in bytes: the counter and the sleepers each
 * on their own cache line. CONTROL_BYTES is what the Python side reserves. */
#define ARRIVALS 0
#define SLEEPERS 64
#define CONTROL_BYTES 128

/* A sleeping waiter wakes this often to let Python handle signals (Ctrl-C). */
#define SIGNAL_CHECK_NS 100000000L

static int
reached(uint32_t count, uint32_t target)
{
    /* The counter wraps: compare by signed distance. */
    return (int32_t)(count - target) >= 0;
}

static double
now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

PyDoc_STRVAR(arrive_and_wait_doc,
"arrive_and_wait(control, target, spin_seconds)\n"
"\n"
"Count this process's arrival in the barrier whose control block is the\n"
"writable buffer `control` (at least 128 bytes, shared by the processes),\n"
"then return once the arrivals reach `target` (modulo 2**32). The waiter\n"
"polls for `spin_seconds`, yielding its core between reads, then sleeps in\n"
"the kernel until the last arrival wakes it. Releases the GIL while waiting; raises KeyboardInterrupt (or any\n"
"exception a signal handler raises) from a sleep.");

static PyObject *
arrive_and_wait(PyObject *self, PyObject *args)
{
    Py_buffer control;
    unsigned long long target_arg;
    double spin_seconds;
    if (!PyArg_ParseTuple(args, "w*Kd", &control, &target_arg, &spin_seconds))
        return NULL;
    if (control.len < CONTROL_BYTES || ((uintptr_t)control.buf % 64) != 0) {
        PyBuffer_Release(&control);
        PyErr_SetString(PyExc_ValueError,
                        "the control block must be 128 bytes, 64-byte aligned");
        return NULL;
    }
    uint32_t target = (uint32_t)target_arg;
    uint32_t *arrivals = (uint32_t *)((char *)control.buf + ARRIVALS);
    uint32_t *sleepers = (uint32_t *)((char *)control.buf + SLEEPERS);
    int failed = 0;

    Py_BEGIN_ALLOW_THREADS
    uint32_t count = __atomic_add_fetch(arrivals, 1, __ATOMIC_SEQ_CST);
    if (reached(count, target)) {
        if (__atomic_load_n(sleepers, __ATOMIC_SEQ_CST) != 0)
            syscall(SYS_futex, arrivals, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    }
    else {
        /* Poll first, yielding the core between reads: a rank queued on this
         * core (one that still computes) runs at once, and the barrier is
         * seen complete without a wake-up, which is slow to reach an idle
         * core of a virtual machine. Then sleep. */
        double deadline = now_seconds() + spin_seconds;
        while (!reached(__atomic_load_n(arrivals, __ATOMIC_ACQUIRE), target)
               && now_seconds() < deadline)
            sched_yield();
        for (;;) {
            __atomic_add_fetch(sleepers, 1, __ATOMIC_SEQ_CST);
            count = __atomic_load_n(arrivals, __ATOMIC_SEQ_CST);
            if (reached(count, target)) {
                __atomic_sub_fetch(sleepers, 1, __ATOMIC_SEQ_CST);
                break;
            }
            struct timespec timeout = {0, SIGNAL_CHECK_NS};
            long rc = syscall(SYS_futex, arrivals, FUTEX_WAIT, count, &timeout,
                              NULL, 0);
            int woken_by = rc == 0 ? 0 : errno;
            __atomic_sub_fetch(sleepers, 1, __ATOMIC_SEQ_CST);
            if (woken_by == EINTR || woken_by == ETIMEDOUT) {
                Py_BLOCK_THREADS
                failed = PyErr_CheckSignals();
                Py_UNBLOCK_THREADS
                if (failed)
                    break;
            }
        }
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&control);
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"arrive_and_wait", arrive_and_wait, METH_VARARGS, arrive_and_wait_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_futex",
    "A shared-memory barrier whose waiters sleep (Linux futex; optional C "
    "extension used by MPIBackend(wait='sleep')).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__futex(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "CONTROL_BYTES", CONTROL_BYTES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
