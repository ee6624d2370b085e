"""Reliability: no local process, stopped worker or lying message can stall or
corrupt a fit (issue 12's defects, one section each, numbered as there)."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from multiprocessing.connection import Client, Listener

import joblib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_array_equal
from test_compression import assert_unbiased, bucket_slices, per_coordinate, scaled_norm

from sklearn_relu import DivergenceError, ReLURegressor, make_relu_regression
from sklearn_relu._cli import load_data, main, save_atomically
from sklearn_relu.backends import JoblibBackend
from sklearn_relu.backends._joblib import WorkerError
from sklearn_relu.compression import QSGD, Identity, MessageError
from sklearn_relu.compression._elias import decode_sparse_levels

try:
    import cloudpickle
except ImportError:  # joblib before 1.6 vendors it
    from joblib.externals import cloudpickle

# The stopping compressor below must reach loky's worker processes.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def make_data(n_samples=240, n_features=8, seed=0):
    return make_relu_regression(
        n_samples=n_samples, n_features=n_features, noise=0.1, random_state=seed
    )


def relu(backend, **params):
    defaults = dict(n_workers=2, batch_size=30, max_iter=3, tol=None, random_state=0)
    return ReLURegressor(backend=backend, **{**defaults, **params})


# -- 1 and 2: the joblib start-up handshake --------------------------------------
def _intrude(port, kind, family=socket.AF_INET, host="127.0.0.1"):
    """Connect to the driver's port the way a hostile or careless local
    process would; returns the socket to close at the end (or None)."""
    if kind == "wrong-key":  # a multiprocessing client of some other program
        threading.Thread(
            target=_client_with_a_wrong_key, args=((host, port),), daemon=True
        ).start()
        return None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.connect((host, port))
    if kind == "hang-up":  # a port scanner's connect-and-close
        sock.close()
        return None
    if kind == "junk":
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n" + bytes(range(256)))
    if kind == "half-message":  # half a length prefix, then nothing
        sock.sendall(b"\x00\x00")
    # "silent" sends nothing. Closed after a while, so that a driver that
    # blocks on it fails the test instead of hanging it.
    threading.Timer(20, sock.close).start()
    return sock


def _client_with_a_wrong_key(address):
    try:
        Client(address, authkey=b"not this fit's key").close()
    except Exception:  # refused, as it should be
        pass


@pytest.fixture
def intruders(monkeypatch):
    """``intruders(kinds)``: connections made to the driver's listening port
    before any worker can connect (they are first in the accept queue)."""
    made = []
    listener_init = Listener.__init__

    def install(kinds):
        def init_with_intruders(self, *args, **kwargs):
            listener_init(self, *args, **kwargs)
            made.extend(_intrude(self.address[1], kind) for kind in kinds)

        monkeypatch.setattr(Listener, "__init__", init_with_intruders)

    yield install
    for sock in made:
        if sock is not None:
            sock.close()


@pytest.mark.parametrize(
    "kinds",
    [
        ["silent"], ["junk"], ["hang-up"], ["half-message"], ["wrong-key"],
        ["silent", "junk", "hang-up", "silent"],
        ["silent"] * 8 + ["half-message"] * 4,
    ],
)
def test_local_processes_on_the_port_neither_stall_nor_fail_the_fit(intruders, kinds):
    # Defect 1 (a silent connection blocked start-up forever) and defect 2 (junk
    # or a hang-up made fit raise): each is dropped, the workers still connect,
    # however many connections hold a thread of the driver.
    intruders(kinds)
    X, y = make_data()
    with joblib.parallel_config(backend="threading"):
        est = relu(JoblibBackend(start_timeout=15)).fit(X, y)
    reference = relu("inprocess").fit(X, y)
    assert_array_equal(est.coef_, reference.coef_)


def _accepting_threads(wait=5.0):
    """The driver's accepting threads still alive after up to ``wait`` s."""
    deadline = time.monotonic() + wait
    while True:
        alive = [t for t in threading.enumerate() if t.name == "sklearn_relu-accept"]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def test_a_fit_leaves_no_thread_waiting_for_connections():
    X, y = make_data()
    with joblib.parallel_config(backend="threading"):
        for n_workers in (1, 2, 5):
            relu(JoblibBackend(start_timeout=15), n_workers=n_workers).fit(X, y)
    assert _accepting_threads() == []


def test_a_worker_that_never_connects_ends_the_start_with_a_clear_error(monkeypatch):
    from sklearn_relu.backends import _joblib

    serve = _joblib._serve

    def serve_but_the_second(address, family, authkey, index, shard):
        if index != 1:
            serve(address, family, authkey, index, shard)

    monkeypatch.setattr(_joblib, "_serve", serve_but_the_second)
    X, y = make_data()
    start = time.monotonic()
    with (
        joblib.parallel_config(backend="threading"),
        pytest.raises(WorkerError, match="only 1 of 2 joblib workers started within 1 s"),
    ):
        relu(JoblibBackend(start_timeout=1), n_workers=2).fit(X, y)
    assert time.monotonic() - start < 10
    assert _accepting_threads() == []


@pytest.mark.parametrize("host", ["", "0.0.0.0", "::1"])
def test_any_address_and_ipv6_hosts_work(host):
    # Defect 2: host="" bound every interface but workers could not connect to
    # it, and "::1" failed with an address-family error.
    if host == "::1":
        try:
            socket.create_server(("::1", 0), family=socket.AF_INET6).close()
        except OSError:
            pytest.skip("no IPv6 loopback on this machine")
    X, y = make_data()
    with joblib.parallel_config(backend="threading"):
        est = relu(JoblibBackend(host=host, start_timeout=15)).fit(X, y)
    assert_array_equal(est.coef_, relu("inprocess").fit(X, y).coef_)


# -- 3: a worker that stops answering ---------------------------------------------
class StoppingIdentity(Identity):
    """Stops its own process (SIGSTOP) at its ``stop_at``-th compress call,
    after writing the process id to ``pid_dir``."""

    def __init__(self, stop_at, pid_dir):
        self.stop_at, self.pid_dir, self.calls = stop_at, pid_dir, 0

    def compress(self, vector, random_state=None):
        self.calls += 1
        if self.calls == self.stop_at:
            pid = os.getpid()
            with open(os.path.join(self.pid_dir, str(pid)), "w"):
                pass
            os.kill(pid, signal.SIGSTOP)
        return super().compress(vector, random_state)


def test_a_stopped_worker_process_ends_the_step_with_a_clear_error(tmp_path):
    X, y = make_data()

    def resume_stopped(sig):
        for name in os.listdir(tmp_path):
            try:
                os.kill(int(name), sig)
            except ProcessLookupError:
                pass  # already ended by the backend

    # Should the backend wait forever, the workers resume and the test fails
    # (no exception) instead of hanging.
    watchdog = threading.Timer(40, resume_stopped, args=(signal.SIGCONT,))
    watchdog.start()
    backend = JoblibBackend(timeout=2)
    try:
        with joblib.parallel_config(backend="loky"):
            backend.start(
                X, y, None, n_workers=2, batch_size=20,
                compressor=StoppingIdentity(stop_at=2, pid_dir=str(tmp_path)),
            )
            params = np.zeros(X.shape[1] + 1)
            try:
                backend.step(params, lambda p, g: p - 0.1 * g)
                with pytest.raises(WorkerError, match="did not answer within timeout=2"):
                    backend.step(params, lambda p, g: p - 0.1 * g)
            finally:
                backend.stop()
    finally:
        watchdog.cancel()
        resume_stopped(signal.SIGKILL)


# -- 4: decoders check the declared length against the model's size -------------
def test_a_message_declaring_billions_of_values_is_rejected_before_allocating():
    # 20 bytes: header (2^32 - 1 values, bits=2), bucket size 0, no nonzeros, a
    # zero norm. Decoded as declared it would be 32 GiB of levels.
    message = (
        b"RE" + bytes([0, 2]) + (2**32 - 1).to_bytes(4, "little")
        + bytes(4) + bytes(4) + bytes(4)
    )
    assert len(message) == 20
    with pytest.raises(MessageError, match="declares 4294967295 values, but the "
                       "receiver's model has 9"):
        QSGD(bits=2, encoding="elias").decompress(message, n_values=9)


def test_an_elias_count_the_bytes_cannot_hold_is_rejected():
    with pytest.raises(ValueError, match="1000 nonzeros declared, but 8 bits"):
        decode_sparse_levels(b"\xff", 1000, 10**6)


@pytest.mark.parametrize(
    "compressor",
    [Identity(), QSGD(bits=4), QSGD(bits=3, bucket_size=2), QSGD(encoding="elias")],
    ids=repr,
)
@pytest.mark.parametrize("n_values", [1, 8, 10])
def test_every_decoder_rejects_a_valid_message_of_another_length(compressor, n_values):
    message = compressor.compress(np.linspace(-1, 1, n_values), random_state=0)
    with pytest.raises(MessageError, match=f"declares {n_values} values, but the "
                       "receiver's model has 9"):
        compressor.decompress(message, n_values=9)
    assert compressor.decompress(message, n_values=n_values).shape == (n_values,)


class OneValueIdentity(Identity):
    """A worker whose messages are valid, but of one value instead of d."""

    def compress(self, vector, random_state=None):
        return super().compress(vector[:1], random_state)


@pytest.mark.parametrize("backend", ["inprocess", "joblib"])
def test_a_short_message_fails_the_fit_instead_of_being_broadcast(backend):
    X, y = make_data()
    est = relu(backend, solver=OneValueIdentity())
    with joblib.parallel_config(backend="threading"):
        with pytest.raises(MessageError, match="declares 1 values, but the "
                           "receiver's model has 9"):
            est.fit(X, y)


# -- 6: learning_rate="auto" and skewed weights -----------------------------------
def heavy_zero_row(seed, weight, n_samples=500, n_features=10):
    """Planted data and one more row, with y = 0 and ``weight`` (the others 1)."""
    X, y = make_relu_regression(
        n_samples=n_samples, n_features=n_features, random_state=seed
    )
    row = np.random.default_rng(seed).standard_normal(n_features)
    sample_weight = np.ones(n_samples + 1)
    sample_weight[-1] = weight
    return np.vstack([X, row]), np.append(y, 0.0), sample_weight


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("weight", [1e4, 1e6])
@pytest.mark.parametrize("seed", range(5))
def test_auto_step_does_not_diverge_when_a_heavy_row_activates_later(seed, weight):
    # The heavy row is inactive at the start, so the curvature measured on
    # the active rows alone missed it: the step diverged in 5 of 5 seeds.
    X, y, sample_weight = heavy_zero_row(seed, weight)
    est = ReLURegressor(max_iter=20, tol=None, random_state=seed)
    est.fit(X, y, sample_weight=sample_weight)
    assert np.all(np.isfinite(est.loss_curve_))
    assert est.loss_curve_[-1] <= 10 * est.loss_curve_[0]


def test_a_diverging_auto_step_does_not_advise_auto(monkeypatch):
    from sklearn_relu import _fit

    monkeypatch.setattr(_fit, "auto_learning_rate", lambda *a, **k: 1e6)
    X, y = make_data()
    with pytest.raises(DivergenceError, match="SGD diverged") as raised:
        ReLURegressor(random_state=0).fit(X, y)
    assert "Use learning_rate='auto'" not in str(raised.value)
    assert "learning_rate='auto' chose that step" in str(raised.value)


# -- 8: numerical edges -------------------------------------------------------------
def test_float32_fit_of_huge_targets_is_not_stopped_by_an_infinite_floor():
    # The rounding floor was computed in float32 and overflowed to inf, so
    # every epoch's loss was "at the floor" and the fit stopped after one.
    X, y, w = make_relu_regression(
        n_samples=2000, n_features=10, coef=True, random_state=0
    )
    scale = 1e22
    est = ReLURegressor(fit_intercept=False, random_state=0)
    est.fit(X.astype(np.float32), (y * scale).astype(np.float32))
    assert est.n_iter_ > 1
    assert np.linalg.norm(est.coef_ / scale - w) / np.linalg.norm(w) < 1e-6


@pytest.mark.parametrize("weight", [1e306, 1e-320])
def test_uniform_sample_weights_of_any_scale_fit_as_unweighted(weight):
    # 1e306 gave ZeroDivisionError (the sum overflowed), 1e-320 "y is too large".
    X, y = make_data()
    weighted = relu("inprocess", n_workers=1).fit(X, y, np.full(y.shape, weight))
    plain = relu("inprocess", n_workers=1).fit(X, y)
    np.testing.assert_allclose(weighted.coef_, plain.coef_, rtol=1e-12)


def test_an_init_with_an_infinite_loss_is_rejected():
    X, y = make_data()
    with pytest.raises(ValueError, match="training loss at the initial point is inf"):
        ReLURegressor(init=np.full(X.shape[1], 1e200), random_state=0).fit(X, y)


def test_a_bucket_size_beyond_the_wire_format_is_rejected():
    with pytest.raises(ValueError, match=r"positive integer below 2\*\*32"):
        QSGD(bucket_size=2**32)
    with pytest.raises(ValueError, match=r"positive integer below 2\*\*32"):
        ReLURegressor(solver="qsgd", bucket_size=2**32).fit(*make_data())
    assert QSGD(bucket_size=2**32 - 1).bucket_size == 2**32 - 1


def test_a_bad_thread_count_in_the_environment_is_ignored(monkeypatch):
    from sklearn_relu import _parallel

    monkeypatch.setenv("SKLEARN_RELU_THREADS", "two")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with pytest.warns(UserWarning, match="SKLEARN_RELU_THREADS='two' is not a whole"):
        assert _parallel._default_threads() == 1


# -- 7: vectors of any finite float64 magnitude quantize unbiasedly --------------
@settings(max_examples=25, deadline=None)
@given(
    unit=hnp.arrays(np.float64, st.integers(1, 12), elements=st.floats(-1, 1)),
    magnitude=st.sampled_from([1e-300, 1e-200, 1e200, 1e300]),
    bits=st.integers(2, 16),
    bucket_size=st.one_of(st.none(), st.integers(1, 5)),
    encoding=st.sampled_from(["packed", "elias"]),
)
def test_qsgd_is_unbiased_and_precise_at_any_float64_magnitude(
    unit, magnitude, bits, bucket_size, encoding
):
    # Norms travelled as float32: ~1e-200 quantized to zeros (a norm of 1e-45
    # or 0) and ~1e200 raised. Now a power-of-two exponent scales them.
    vector = unit * magnitude
    quantizer = QSGD(bits=bits, bucket_size=bucket_size, encoding=encoding)
    norms, _ = quantizer.quantize(vector, 0)
    true_norms = np.array(
        [scaled_norm(vector[part]) for part in bucket_slices(vector.shape[0], bucket_size)]
    )
    assert np.all(true_norms <= norms)
    # One exponent a message: a bucket more than float32's range (2^100 here)
    # below the largest keeps unbiasedness but not float32's precision.
    within = true_norms >= true_norms.max() * 2.0**-100
    assert np.all(norms[within] <= true_norms[within] * (1 + 2**-22))
    samples = np.array([
        quantizer.decompress(quantizer.compress(vector, seed), vector.shape[0])
        for seed in range(300)
    ])
    step = per_coordinate(norms, vector.shape[0], bucket_size) / quantizer.levels
    assert_unbiased(samples, vector, step)


def test_tiny_and_huge_vectors_travel_as_the_same_message_but_the_exponent():
    # Powers of two scale exactly: 2^-1000 v and 2^1000 v draw the same levels
    # and norms, and decode to each other times 2^2000.
    vector = np.array([0.3, -1.7, 0.0, 2.2, 5e-3])
    quantizer = QSGD(bits=5, bucket_size=2)
    tiny = quantizer.compress(np.ldexp(vector, -1000), random_state=7)
    huge = quantizer.compress(np.ldexp(vector, 1000), random_state=7)
    assert len(tiny) == len(huge) == quantizer.message_nbytes(5) + 2
    # header (8 bytes), bucket size (4), exponent (2), then norms and levels
    assert tiny[:2] == huge[:2] == b"Rq" and tiny[14:] == huge[14:]
    assert_array_equal(
        np.ldexp(quantizer.decompress(tiny, 5), 2000), quantizer.decompress(huge, 5)
    )
    with pytest.raises(MessageError, match="norm exponent 0"):
        quantizer.decompress(tiny[:12] + bytes(2) + tiny[14:])


# -- 9: the command line's data and files ---------------------------------------------
def write_csv(tmp_path, text, name="d.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def test_a_byte_order_mark_does_not_cost_the_first_row(tmp_path):
    path = write_csv(tmp_path, "1,2,3\n4,5,6\n", encoding="utf-8-sig")
    X, y, _ = load_data(path)
    assert_array_equal(X, [[1, 2], [4, 5]])
    assert_array_equal(y, [3, 6])


@pytest.mark.parametrize(
    "first, why",
    [
        ("1.5,NA,2", "has a missing value"),
        ("0,1,2", "pandas' default column names"),
        ("x0,1,y", "mixes numbers and names"),
    ],
)
def test_a_first_line_that_may_be_names_or_data_is_an_error(tmp_path, first, why):
    path = write_csv(tmp_path, f"{first}\n4,5,6\n7,8,9\n")
    with pytest.raises(ValueError, match=f"cannot tell whether the first line .* {why}"):
        load_data(path)
    # Told, it reads what it is told.
    assert load_data(path, csv_header="yes")[0].shape == (2, 2)


def test_a_numeric_header_is_read_as_data_only_when_asked(tmp_path):
    path = write_csv(tmp_path, "0,1,2\n4,5,6\n")
    assert load_data(path, csv_header="no")[0].shape == (2, 2)
    assert load_data(path, csv_header="yes")[0].shape == (1, 2)
    # A line of names is still recognised without being told.
    assert load_data(write_csv(tmp_path, "a,b,y\n4,5,6\n"))[0].shape == (1, 2)


@pytest.mark.parametrize(
    "text, message", [("", "is empty"), ("x0,x1,y\n", "column names but no data rows")]
)
def test_empty_or_header_only_csv_says_so(tmp_path, text, message):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy "empty input" warning either
        with pytest.raises(ValueError, match=message):
            load_data(write_csv(tmp_path, text))


def test_a_bad_out_is_reported_before_the_fit(tmp_path, monkeypatch):
    from sklearn_relu import _estimator

    def no_fit(*args, **kwargs):
        raise AssertionError("the fit ran before --out was checked")

    monkeypatch.setattr(_estimator.ReLURegressor, "fit", no_fit)
    np.savez(tmp_path / "d.npz", X=np.ones((4, 2)), y=np.ones(4))
    out = tmp_path / "missing" / "model.joblib"
    with pytest.raises(ValueError, match="directory .*missing' does not exist"):
        main(["fit", str(tmp_path / "d.npz"), "--out", str(out)])


def test_a_temporary_file_left_by_a_killed_save_is_removed(tmp_path):
    out = tmp_path / "model.joblib"
    # A writer killed with SIGKILL mid-save: its process no longer exists.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    leftover = tmp_path / f".model.joblib.{socket.gethostname()}.{child.pid}.x1y2.tmp"
    leftover.write_bytes(b"half a model")
    save_atomically({"a": 1}, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.joblib"]


def test_a_norm_exponent_beyond_float64_is_a_message_error_not_a_warning():
    # Found by hypothesis: an exponent within the allowed range whose norm
    # overflows float64 (inf, and inf times a zero level is NaN) warned from
    # NumPy instead of raising MessageError.
    from sklearn_relu.compression._qsgd import _EXPONENT

    quantizer = QSGD(bits=8, bucket_size=3)
    vector = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 3.821209730505696e-124])
    message = bytearray(quantizer.compress(vector, random_state=0))
    # The exponent follows the 8-byte header and the 4-byte bucket size.
    (exponent,) = _EXPONENT.unpack_from(message, 12)
    assert exponent != 0  # the message is a scaled one
    _EXPONENT.pack_into(message, 12, 1100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(MessageError, match="beyond the float64 range"):
            quantizer.decompress(bytes(message), vector.shape[0])
