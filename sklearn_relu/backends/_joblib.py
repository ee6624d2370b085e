"""Workers on joblib: loky processes, threads, or a Dask cluster.

Each worker is one long-running joblib task, launched once per fit under the
active ``joblib.parallel_config``: the task receives its shard (once; loky
memory-maps large arrays, Dask scatters them), builds its
:class:`~sklearn_relu._worker.ShardWorker`, connects back to the driver (the
process calling ``fit``) through :mod:`multiprocessing.connection`,
authenticated both ways with a key made for the fit, and serves requests until
the fit ends. A step is then one round trip per worker -- the parameters out,
the compressor's message back -- instead of a new batch of joblib tasks, whose
dispatch and result polling would cost more than the step itself.

Requests are answered in worker order and decoded in worker order, so a fit is
the same, bit for bit, as in-process.
"""

import logging
import os
import pickle
import queue
import socket
import threading
import time
import warnings
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener

import joblib
import numpy as np
from joblib.parallel import get_active_backend

from .._worker import ShardWorker, worker_arguments
from ._base import Backend

__all__ = ["JoblibBackend", "WorkerError"]

logger = logging.getLogger("sklearn_relu")


class WorkerError(RuntimeError):
    """A joblib worker raised, or stopped answering."""


# Bind addresses that mean "every interface": workers cannot connect to them,
# so they connect to this machine's name instead.
_ANY_ADDRESS = ("", "0.0.0.0", "::")

# How often the driver, awaiting its workers, looks whether a thread took a
# connection: the longest a worker waits behind a peer that holds a thread.
_ACCEPT_POLL_SECONDS = 0.02


def _no_delay(conn):
    """Send every write of ``conn`` at once.

    Requests and replies are small and strictly alternate: with Nagle's
    algorithm every step would wait for the peer's delayed ACK. A Connection
    has no socket options of its own; a duplicate of its descriptor reaches
    the same socket.
    """
    with socket.socket(fileno=os.dup(conn.fileno())) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _listen(host, authkey):
    """A Listener on ``host`` (IPv4 or IPv6) that authenticates whom it accepts
    with ``authkey``; ``(listener, address workers connect to, family)``."""
    family = socket.getaddrinfo(
        host or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0][0].name
    # The backlog holds every worker that connects while another is accepted.
    listener = Listener(
        (host, 0), family=family, backlog=socket.SOMAXCONN, authkey=authkey
    )
    connect_to = socket.gethostname() if host in _ANY_ADDRESS else host
    return listener, (connect_to, listener.address[1]), family


def _connect(address, family, authkey):
    """The worker's end: a connection to the driver, authenticated both ways."""
    if family == "AF_INET6":
        conn = _connect_ipv6(address, authkey)
    else:
        conn = Client(address, authkey=authkey)
    _no_delay(conn)
    return conn


def _connect_ipv6(address, authkey):
    """:func:`~multiprocessing.connection.Client` for an IPv6 driver.

    ``Client`` opens IPv4 sockets only (python/cpython#99766, open): here the
    socket is opened by :func:`socket.create_connection`, which takes either
    family, and authenticated as ``Client`` authenticates its own -- with the
    functions it calls, private to :mod:`multiprocessing.connection`, so that
    the handshake is the one the driver's ``Listener`` expects.
    """
    from multiprocessing.connection import (
        Connection,
        answer_challenge,
        deliver_challenge,
    )

    conn = Connection(socket.create_connection(address).detach())
    try:
        answer_challenge(conn, authkey)
        deliver_challenge(conn, authkey)
    except BaseException:
        conn.close()
        raise
    return conn


class _Acceptor:
    """Lets this fit's workers in through ``listener``, and no one else.

    ``Listener.accept`` authenticates the peer it accepts and has no timeout
    (python/cpython#76425): a local process that connects and says nothing (or
    half a message) holds the thread accepting it until it hangs up. So
    connections are accepted by threads, and a new one starts whenever one
    took a connection (:meth:`_replace_taken`): a thread is always free for
    the workers, and a silent peer costs a thread, never the fit. Junk, a
    hang-up or a wrong key fails ``accept`` and is dropped. A thread that let
    a connection in leaves if another is waiting, so that few threads wait at
    any time; :meth:`close` wakes those.

    Parameters
    ----------
    listener : multiprocessing.connection.Listener
        Authenticating (made with the fit's ``authkey``); closed by
        :meth:`close`.
    address : tuple
        Where the workers connect to it (and :meth:`close` does).
    n_workers : int
        Worker indices are ``range(n_workers)``.
    """

    def __init__(self, listener, address, n_workers):
        self.listener = listener
        self.address = address
        self.n_workers = n_workers
        self.deadline = None  # time.monotonic() by which the workers are in
        self._accepted = queue.SimpleQueue()  # (index, connection)
        self._lock = threading.Lock()
        self._waiting = 0  # threads in accept (waiting, or held by a silent peer)
        self._closed = False
        self._seen = None  # listener.last_accepted when last looked at

    def await_workers(self, connections, timeout):
        """Fill ``connections`` (``n_workers`` Nones) with the workers'
        connections, in worker order, as they come; whether all came within
        ``timeout`` seconds."""
        self.deadline = time.monotonic() + timeout
        self._start_thread()
        while any(conn is None for conn in connections):
            if time.monotonic() > self.deadline:
                return False
            try:
                index, conn = self._accepted.get(timeout=_ACCEPT_POLL_SECONDS)
            except queue.Empty:
                pass
            else:
                if connections[index] is None:
                    connections[index] = conn
                else:  # a replayed index: keep the first
                    conn.close()
            self._replace_taken()
        return True

    def _start_thread(self):
        threading.Thread(
            target=self._accept_loop, name="sklearn_relu-accept", daemon=True
        ).start()

    def _replace_taken(self):
        """Start a thread if one took a connection since the last look.

        Every accept sets ``listener.last_accepted`` to a new address object
        before it authenticates: should the thread that took it be held there,
        the new one takes the next connection.
        """
        latest = self.listener.last_accepted
        if latest is not self._seen:
            self._seen = latest
            self._start_thread()

    def _accept_loop(self):
        while True:
            with self._lock:
                if self._closed:
                    return
                self._waiting += 1
            try:
                conn = self.listener.accept()
            except Exception as exc:  # junk, a hang-up, a wrong key
                conn = None
                self._drop(exc)
            finally:
                with self._lock:
                    self._waiting -= 1
            if conn is not None:
                self._identify(conn)
            with self._lock:
                if self._waiting:  # another thread takes the next connection
                    return

    def _identify(self, conn):
        """Queue an authenticated connection with the worker index it sends."""
        try:
            if not conn.poll(max(self.deadline - time.monotonic(), 0)):
                raise TimeoutError("no worker index before the start deadline")
            index = conn.recv()
            if not (isinstance(index, int) and 0 <= index < self.n_workers):
                raise AuthenticationError(f"worker index {index!r} out of range")
            _no_delay(conn)
        except Exception as exc:
            conn.close()
            self._drop(exc)
            return
        with self._lock:
            if not self._closed:
                self._accepted.put((index, conn))
                return
        conn.close()  # too late: the fit has gone on, or given up, without it

    def _drop(self, exc):
        if not self._closed:  # else it is close() waking the thread
            logger.warning(
                "joblib backend: dropped a connection that is not one of this "
                "fit's workers (%r)", exc,
            )

    def close(self):
        """Stop letting connections in, and close the listener.

        A thread waiting in ``accept`` would wait forever (closing the
        listener does not wake it): a connection from here wakes each.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiting = self._waiting
        # A worker let in after the last look ends its task when it finds its
        # connection closed.
        while not self._accepted.empty():
            self._accepted.get()[1].close()
        for _ in range(waiting):  # those held by silent peers leave with them
            try:
                socket.create_connection(self.address, timeout=1).close()
            except OSError:
                break
        self.listener.close()


def _serve(address, family, authkey, index, shard):
    """The body of one worker task: answer the driver's requests until told to stop."""
    with _connect(address, family, authkey) as conn:
        conn.send(index)
        # Dask may deliver arrays at unaligned addresses, where NumPy avoids
        # BLAS and rounds differently from the driver: realign (a copy only
        # then; loky's memory maps are aligned and stay shared).
        shard = {
            key: np.require(value, requirements="A")
            if isinstance(value, np.ndarray)
            else value
            for key, value in shard.items()
        }
        try:
            worker = ShardWorker(**shard)
        except Exception as exc:  # reported to the driver, which raises it
            conn.send(("error", exc))
            return
        del shard
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return  # the driver is gone; nothing left to serve
            if request is None:
                return
            function, args = request
            try:
                start = time.perf_counter()
                result = function(worker, *args)
                conn.send(("ok", result, time.perf_counter() - start))
            except Exception as exc:
                conn.send(("error", exc))


class JoblibBackend(Backend):
    """Run each worker as a long-running task of the active joblib backend.

    Honours ``joblib.parallel_config``: loky (the default), threading, or
    ``"dask"`` with a ``distributed.Client``. Every worker needs its own
    concurrent task for the whole fit; when the active backend cannot run
    ``n_workers`` tasks at once (for example the sequential backend, or a
    nested call inside a worker) the workers run as threads of this process.

    Parameters
    ----------
    host : str, default="127.0.0.1"
        The address workers connect back to (IPv4 or IPv6). Set it to this
        machine's address on the workers' network when Dask workers run on
        other hosts; ``""`` or ``"0.0.0.0"`` listens on every interface and
        has workers connect to this machine's host name. Connections that
        fail the mutual authentication are dropped, never let into the fit.
    start_timeout : float, default=60
        Seconds to wait for every worker to start and connect.
    timeout : float or None, default=600
        Seconds to wait for every worker's reply to a request (one step, or
        one statistic over its shard) before raising a :class:`WorkerError`:
        a worker that was stopped (SIGSTOP) or is stuck must not hang the
        fit. ``None`` waits forever.

    Examples
    --------
    >>> import joblib
    >>> from sklearn_relu import ReLURegressor, make_relu_regression
    >>> X, y = make_relu_regression(n_samples=200, n_features=5, random_state=0)
    >>> params = dict(n_workers=2, max_iter=3, tol=None, random_state=0)
    >>> with joblib.parallel_config(backend="threading"):
    ...     est = ReLURegressor(backend="joblib", **params).fit(X, y)
    >>> reference = ReLURegressor(backend="inprocess", **params).fit(X, y)
    >>> bool((est.coef_ == reference.coef_).all())
    True
    """

    name = "joblib"
    distributed = True

    def __init__(self, *, host="127.0.0.1", start_timeout=60.0, timeout=600.0):
        super().__init__()
        self.host = host
        self.start_timeout = start_timeout
        self.timeout = timeout
        self._connections, self._threads = [], []
        self._acceptor = self._tasks = None
        self._responsive = True

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(
            _connections=[], _threads=[], _acceptor=None, _tasks=None, _responsive=True
        )
        return state

    def resolve_n_workers(self, n_workers):
        """``n_workers``, or for ``None`` the ``n_jobs`` of the active
        ``parallel_config`` (all CPUs, or all Dask threads, when it sets none)."""
        if n_workers is not None:
            return n_workers
        # Private to joblib, but its public API cannot tell an n_jobs left
        # unset from n_jobs=1: Parallel().n_jobs and effective_n_jobs(None)
        # give 1 for both (joblib/joblib#1279); this gives None for unset.
        n_jobs = get_active_backend()[1]
        return joblib.effective_n_jobs(-1 if n_jobs is None else n_jobs)

    # -- starting and stopping the worker tasks ---------------------------------
    def _start(self, X, y, sample_weight, *, n_workers, batch_size, compressor):
        try:
            self._launch(X, y, sample_weight, n_workers, batch_size, compressor)
        except BaseException:
            # The estimator only stops a backend that started: release the
            # tasks that did start here.
            self.stop()
            raise

    def _launch(self, X, y, sample_weight, n_workers, batch_size, compressor):
        authkey = os.urandom(32)
        listener, address, family = _listen(self.host, authkey)
        self._acceptor = _Acceptor(listener, address, n_workers)
        tasks = []
        for index in range(n_workers):
            shard = worker_arguments(
                X, y, sample_weight, index=index, n_workers=n_workers,
                batch_size=batch_size, compressor=compressor,
                attack=self.worker_attack(index), rows=self.worker_rows(index),
            )
            tasks.append((address, family, authkey, index, shard))
        if n_workers > 1 and joblib.effective_n_jobs(n_workers) >= n_workers:
            parallel = joblib.Parallel(
                n_jobs=n_workers,
                return_as="generator",
                pre_dispatch="all",
                batch_size=1,
            )
            self._tasks = parallel(joblib.delayed(_serve)(*task) for task in tasks)
        else:
            # joblib would run the tasks one after another (one worker, the
            # sequential backend, a nested call, too few Dask threads) and
            # never start the second: run the workers as threads here.
            logger.debug("joblib cannot run %d tasks at once; using threads", n_workers)
            self._threads = [
                threading.Thread(target=_serve, args=task, daemon=True)
                for task in tasks
            ]
            for thread in self._threads:
                thread.start()
        self._accept(n_workers)
        for index, conn in enumerate(self._connections):
            if conn.poll():  # a worker that failed to start says so at once
                error = self._receive(index, conn)
                raise WorkerError(f"joblib worker {index} failed: {error!r}") from error

    def _accept(self, n_workers):
        """Fill ``self._connections`` with the workers' connections, in order,
        within ``start_timeout``; a local process that connects besides them
        neither delays nor fails the fit (see :class:`_Acceptor`)."""
        # Kept on self as they come, so that stop() can release the workers
        # that connected even when others never do.
        self._connections = connections = [None] * n_workers
        acceptor, self._acceptor = self._acceptor, None
        try:
            all_came = acceptor.await_workers(connections, self.start_timeout)
        finally:
            acceptor.close()
        if not all_came:
            started = sum(conn is not None for conn in connections)
            raise WorkerError(
                f"only {started} of {n_workers} joblib workers started within "
                f"{self.start_timeout:g} s: the active joblib backend must run "
                f"n_workers={n_workers} tasks at once, and reach this process "
                f"at {self.host} (for Dask workers on other hosts, pass "
                "JoblibBackend(host=<this machine's address>))"
            )

    def stop(self):
        connections, self._connections = self._connections, []
        # A worker that stopped answering would never end its task or thread.
        responsive, self._responsive = self._responsive, True
        all_started = responsive and all(conn is not None for conn in connections)
        for conn in connections:
            if conn is None:
                continue
            try:
                conn.send(None)
                conn.close()
            except OSError:
                pass  # that worker is already gone
        if self._acceptor is not None:
            self._acceptor.close()
            self._acceptor = None
        if self._tasks is not None:
            tasks, self._tasks = self._tasks, None
            try:
                if all_started:
                    for _ in tasks:  # each returns once told to stop
                        pass
                else:
                    # Tasks still queued would only start to find the driver
                    # gone: cancel them instead of waiting for a free slot.
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)  # "cancelled"
                        tasks.close()
            except Exception:  # the fit has already reported what went wrong
                logger.debug("joblib worker task ended with an error", exc_info=True)
        threads, self._threads = self._threads, []
        for thread in threads if responsive else ():
            thread.join()

    # -- requests -----------------------------------------------------------------
    def _request(self, function, args, message=False):
        """Have every worker run ``function(worker, *args)``; ``(results, slowest
        seconds)``. ``function`` pickles by reference (its name)."""
        payload = pickle.dumps((function, args), protocol=pickle.HIGHEST_PROTOCOL)
        for index, conn in enumerate(self._connections):
            try:
                conn.send_bytes(payload)
            except OSError as exc:
                raise self._lost(index) from exc
        self.record.control_bytes += len(payload) * len(self._connections)
        # Read every reply before raising a worker's error, so that no answer
        # is left behind in a connection.
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        replies = [
            self._receive(i, c, message, deadline)
            for i, c in enumerate(self._connections)
        ]
        for index, reply in enumerate(replies):
            if isinstance(reply, BaseException):
                raise WorkerError(f"joblib worker {index} failed: {reply!r}") from reply
        return [r[0] for r in replies], max(r[1] for r in replies)

    def _receive(self, index, conn, message=False, deadline=None):
        """``(result, seconds)``, or the exception the worker raised; a
        WorkerError when no reply came by ``deadline`` (``time.monotonic``)."""
        if deadline is not None and not conn.poll(max(deadline - time.monotonic(), 0)):
            self._responsive = False
            raise WorkerError(
                f"joblib worker {index} did not answer within timeout="
                f"{self.timeout:g} s: its process is stopped (SIGSTOP), stuck or "
                "overloaded; pass JoblibBackend(timeout=...) if a step on its "
                "shard takes longer"
            )
        try:
            reply = conn.recv_bytes()
        except (EOFError, OSError) as exc:
            raise self._lost(index) from exc
        status, *body = pickle.loads(reply)
        if status == "error":
            return body[0]
        result, seconds = body
        # Messages (bytes, or a summable compressor's vector) are counted as
        # messages by step(); the rest of the reply is control traffic.
        if isinstance(result, bytes):
            message_nbytes = len(result)
        elif message and isinstance(result, np.ndarray):
            message_nbytes = result.nbytes
        else:
            message_nbytes = 0
        self.record.control_bytes += len(reply) - message_nbytes
        return result, seconds

    def _lost(self, index):
        self._responsive = False
        return WorkerError(
            f"joblib worker {index} stopped answering: its process died or was "
            "killed (out of memory?)"
        )

    def call(self, function, *args):
        return self._request(function, args)[0]

    def step(self, params, update):
        if self.compressor.summed_only:
            return self.summed_step(params, update)
        start = time.perf_counter()
        messages, compute = self._request(ShardWorker.gradient_message, (params,))
        self.record.add_messages(messages, params.shape[0])
        gradient = self.sum_decoded(messages, params.shape[0])
        # Workers compute side by side, so a step's compute time is its slowest
        # worker's; the rest (sending, waiting, decoding) is communication.
        self.record.compute_seconds += compute
        self.record.communicate_seconds += time.perf_counter() - start - compute
        return update(params, gradient)

    # Each primitive is one round trip; a step of a compressor that needs a
    # scale takes one (the agreed scale) or two (the exact one first).
    def _max_statistic(self, params, draw):
        params = params if draw else None
        start = time.perf_counter()
        statistics, compute = self._request(ShardWorker.gradient_statistic, (params,))
        self.record.compute_seconds += compute
        self.record.communicate_seconds += time.perf_counter() - start - compute
        return max(statistics)

    def _sum_summands(self, scale, params, draw):
        params = params if draw else None
        start = time.perf_counter()
        parts, compute = self._request(
            ShardWorker.summand, (scale, params), message=True
        )
        sizes = {(part.shape, part.dtype.str) for part in parts}
        if len(sizes) != 1:
            raise WorkerError(f"workers sent vectors of different shapes to sum: {sizes}")
        total = self.sum_encoded(parts)
        self.record.compute_seconds += compute
        self.record.communicate_seconds += time.perf_counter() - start - compute
        return total, parts[0].nbytes
