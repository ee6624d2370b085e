"""Property tests of the compressors: QSGD's Lemma 3.1 and the wire format.

Every statistical check is a bound that holds with probability at least
``1 - 1e-9`` per example (Hoeffding's inequality with a union bound over the
coordinates or buckets), and the draws are seeded, so the tests are not flaky.
"""

import copy
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sklearn_relu import compression
from sklearn_relu.compression import (
    QSGD,
    ErrorFeedback,
    Identity,
    IntSGD,
    MessageError,
    ScaledSign,
    SignSGD,
    Signum,
    SummableCompressor,
    TernGrad,
    TopK,
    available_compressors,
    get_compressor,
    levels_for_bits,
    register_compressor,
)
from sklearn_relu.compression._base import HEADER_NBYTES, MAX_SPARSE_VALUES

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)
FAILURE_PROBABILITY = 1e-9
N_DRAWS = 1000

bits_st = st.integers(2, 16)
bucket_st = st.one_of(st.none(), st.integers(1, 70))


def vectors(max_size=64, min_size=0):
    """float32 or float64 vectors, with exact zeros, tiny and large entries."""

    def of_dtype(dtype):
        width = 32 if dtype == np.float32 else 64
        tiny = float(np.float32(1e-30)) if width == 32 else 1e-30
        return hnp.arrays(
            dtype,
            st.integers(min_size, max_size),
            elements=st.one_of(
                st.just(0.0),
                st.floats(-1e6, 1e6, width=width),
                st.floats(-tiny, tiny, width=width),
            ),
        )

    return st.sampled_from([np.float32, np.float64]).flatmap(of_dtype)


def bucket_slices(d, bucket_size):
    size = d if bucket_size is None else bucket_size
    return [slice(start, min(start + size, d)) for start in range(0, d, max(size, 1))]


def hoeffding_margin(value_range, n_draws, n_tests):
    """Deviation of a mean of ``n_draws`` bounded draws exceeded with probability
    ``FAILURE_PROBABILITY`` over ``n_tests`` tests (Hoeffding plus a union bound).

    For a draw that takes two adjacent grid values, ``value_range / 2`` is also the
    largest standard deviation QSGD allows, so this is a z-test at
    ``z = 2 sqrt(log(2 n_tests / p) / 2)`` with the variance bound as its variance.
    """
    return value_range * math.sqrt(
        math.log(2 * n_tests / FAILURE_PROBABILITY) / (2 * n_draws)
    )


def draws(quantizer, vector, n_draws=N_DRAWS, seed=0):
    """``n_draws`` seeded quantizations of ``vector`` and the float32 norms each sent."""
    decoded, norms = [], None
    for seed_k in np.random.SeedSequence(seed).generate_state(n_draws):
        norms, levels = quantizer.quantize(vector, int(seed_k))
        decoded.append(quantizer.dequantize(norms, levels, dtype=np.float64))
    # The norms are deterministic: every draw sends the same ones.
    return np.array(decoded), norms.astype(np.float64)


def scaled_norm(x):
    """Euclidean norm without underflow or overflow of the squares."""
    peak = float(np.abs(x).max())
    return 0.0 if peak == 0 else peak * float(np.sqrt(np.sum((x / peak) ** 2)))


def per_coordinate(norms, d, bucket_size):
    out = np.empty(d)
    for norm, part in zip(norms, bucket_slices(d, bucket_size)):
        out[part] = norm
    return out


def assert_unbiased(samples, vector, step):
    """Per-coordinate test of ``E[Q(v)] = v``; ``step`` is the grid spacing ``N/s``.

    Each draw lies on one of two adjacent grid points, a range of ``step``.
    """
    d = vector.shape[0]
    margin = hoeffding_margin(step, samples.shape[0], max(d, 1))
    # Rounding of N * k / s in float64 is far below the margin except when the
    # spacing itself is at float resolution.
    margin += 8 * np.finfo(np.float64).eps * step * 2 ** 16
    deviation = np.abs(samples.mean(axis=0) - vector.astype(np.float64))
    assert np.all(deviation <= margin), (deviation / np.maximum(margin, 1e-300)).max()


# -- QSGD: Lemma 3.1 ------------------------------------------------------------------
@SETTINGS
@given(vector=vectors(max_size=40), bits=bits_st, bucket_size=bucket_st)
def test_qsgd_is_unbiased(vector, bits, bucket_size):
    quantizer = QSGD(bits=bits, bucket_size=bucket_size)
    samples, norms = draws(quantizer, vector)
    step = per_coordinate(norms, vector.shape[0], bucket_size) / quantizer.levels
    assert_unbiased(samples, vector, step)


def test_unbiasedness_check_rejects_a_biased_quantizer():
    # The statistical check above must have power: deterministic rounding to the
    # nearest level (biased) is caught on a vector far from the grid.
    quantizer = QSGD(bits=3)
    vector = np.array([0.3, -0.55, 0.1, 0.77, 0.0, 0.2])
    norms, _ = quantizer.quantize(vector, 0)
    step = float(norms[0]) / quantizer.levels
    nearest = np.round(vector / step) * step
    samples = np.repeat(nearest[None, :], N_DRAWS, axis=0)
    with pytest.raises(AssertionError):
        assert_unbiased(samples, vector, np.full(vector.shape, step))


@SETTINGS
@given(vector=vectors(max_size=64), bits=bits_st, bucket_size=bucket_st)
def test_qsgd_variance_within_bound(vector, bits, bucket_size):
    quantizer = QSGD(bits=bits, bucket_size=bucket_size)
    samples, norms = draws(quantizer, vector, n_draws=400, seed=1)
    s = quantizer.levels
    vector64 = vector.astype(np.float64)
    parts = bucket_slices(vector.shape[0], bucket_size)
    for norm, part in zip(norms, parts):
        d_bucket = part.stop - part.start
        squared_errors = ((samples[:, part] - vector64[part]) ** 2).sum(axis=1)
        # Lemma 3.1 (ii) for this bucket, with the float32 norm it sent (which is
        # >= the true norm, so the lemma's proof holds with it).
        bound = min(d_bucket / s**2, math.sqrt(d_bucket) / s) * norm**2
        # One draw's squared error is at most d_bucket (N/s)^2.
        margin = hoeffding_margin(d_bucket * (norm / s) ** 2, samples.shape[0], len(parts))
        assert squared_errors.mean() <= bound + margin
        # And the exact expected variance from the rounding probabilities agrees.
        fraction = np.abs(vector64[part]) * s / norm if norm > 0 else 0.0 * vector64[part]
        p = fraction - np.floor(fraction)
        expected = (norm / s) ** 2 * float(np.sum(p * (1 - p)))
        assert expected <= bound * (1 + 1e-9)
        assert abs(squared_errors.mean() - expected) <= margin


def test_variance_factor():
    assert QSGD(bits=8).variance_factor(100) == pytest.approx(100 / 127**2)
    assert QSGD(bits=2).variance_factor(100) == pytest.approx(10.0)
    assert QSGD(bits=2, bucket_size=16).variance_factor(100) == pytest.approx(4.0)
    assert QSGD(bits=2, bucket_size=1000).variance_factor(100) == pytest.approx(10.0)


@SETTINGS
@given(vector=vectors(), bits=bits_st, bucket_size=bucket_st, seed=st.integers(0, 2**32 - 1))
def test_qsgd_values_lie_on_the_grid(vector, bits, bucket_size, seed):
    quantizer = QSGD(bits=bits, bucket_size=bucket_size)
    s = quantizer.levels
    norms, levels = quantizer.quantize(vector, seed)
    assert norms.dtype == np.float64 and levels.dtype == np.int32
    # Each norm is a float32 scaled by a power of two common to the vector.
    exponent = np.frexp(np.abs(vector.astype(np.float64)).max(initial=0))[1]
    assert np.all(
        (norms == norms.astype(np.float32))
        | (np.ldexp(norms, -exponent) == np.ldexp(norms, -exponent).astype(np.float32))
    )
    assert np.all(np.abs(levels) <= s)
    message = quantizer.compress(vector, seed)
    decoded = quantizer.decompress(message)
    assert decoded.dtype == vector.dtype and decoded.shape == vector.shape
    vector64 = vector.astype(np.float64)
    parts = bucket_slices(vector.shape[0], bucket_size)
    assert norms.shape == (len(parts),)
    for norm, part in zip(norms.astype(np.float64), parts):
        true_norm = scaled_norm(vector64[part])
        # The norm is rounded up to float32: never below the true norm, and
        # at float32's precision at any magnitude.
        assert true_norm <= norm
        assert norm <= true_norm * (1 + 2**-22)
        if norm == 0:
            assert np.all(decoded[part] == 0)
            continue
        # Each decoded value is N k / s for the integer |k| <= s that was sent,
        # up to rounding to the output dtype (subnormals included) ...
        k = levels[part].astype(np.float64)
        grid = norm * k / s
        finfo = np.finfo(vector.dtype)
        tolerance = 4 * finfo.eps * norm + finfo.smallest_subnormal
        np.testing.assert_allclose(decoded[part], grid, rtol=0, atol=tolerance)
        # ... with the sign of v_i (or zero) and one of the two levels around |v_i|.
        assert np.all(np.sign(k) * np.sign(vector64[part]) >= 0)
        fraction = np.abs(vector64[part]) * s / norm
        assert np.all((np.abs(k) == np.floor(fraction)) | (np.abs(k) == np.ceil(fraction)))


@pytest.mark.parametrize("bits", range(2, 17))
@pytest.mark.parametrize("bucket_size", [None, 1, 3, 512])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_qsgd_zero_vector_maps_to_zeros(bits, bucket_size, dtype):
    quantizer = QSGD(bits=bits, bucket_size=bucket_size)
    vector = np.zeros(17, dtype=dtype)
    decoded = quantizer.decompress(quantizer.compress(vector, 0))
    assert decoded.dtype == dtype
    np.testing.assert_array_equal(decoded, vector)
    norms, levels = quantizer.quantize(vector, 0)
    assert np.all(norms == 0) and np.all(levels == 0)


# -- the wire format -----------------------------------------------------------------
@SETTINGS
@given(vector=vectors(max_size=300), bits=bits_st, bucket_size=bucket_st, seed=st.integers(0, 2**32 - 1))
def test_message_decodes_to_exactly_the_quantized_vector(vector, bits, bucket_size, seed):
    quantizer = QSGD(bits=bits, bucket_size=bucket_size)
    message = quantizer.compress(vector, seed)
    norms, levels = quantizer.quantize(vector, seed)
    decoded = quantizer.decompress(message)
    expected = quantizer.dequantize(norms, levels, dtype=vector.dtype)
    assert decoded.dtype == expected.dtype
    np.testing.assert_array_equal(decoded, expected)
    # The message is self-describing: any QSGD instance decodes it.
    np.testing.assert_array_equal(QSGD(bits=5, bucket_size=3).decompress(message), expected)
    # Same seed, same message; a Generator works as the source too.
    assert quantizer.compress(vector, seed) == message
    assert quantizer.compress(vector, np.random.default_rng(seed)) == message


@SETTINGS
@given(d=st.integers(0, 3000), bits=bits_st, bucket_size=bucket_st)
def test_message_size(d, bits, bucket_size):
    quantizer = QSGD(bits=bits, bucket_size=bucket_size)
    message = quantizer.compress(np.linspace(-1.0, 2.0, d), 0)
    n_buckets = 0 if d == 0 else math.ceil(d / (bucket_size or d))
    expected = 12 + 4 * n_buckets + math.ceil(d * bits / 8)
    assert len(bytes(message)) == quantizer.message_nbytes(d) == expected
    header = 12 + 4 * n_buckets
    if bits <= 8:
        assert len(message) <= d + header
    assert len(message) <= 2 * d + header


def test_message_size_of_paper_setting():
    # d = 4000 at 8 bits, one bucket: 4000 bytes and a 16-byte header, 8x under float64.
    message = QSGD(bits=8).compress(np.ones(4000), 0)
    assert len(message) == 4016
    assert len(Identity().compress(np.ones(4000))) == 8 + 8 * 4000


@SETTINGS
@given(vector=vectors(max_size=100))
def test_identity_round_trips_exactly(vector):
    identity = Identity()
    message = identity.compress(vector)
    decoded = identity.decompress(message)
    assert decoded.dtype == vector.dtype
    np.testing.assert_array_equal(decoded, vector)
    assert len(message) == identity.message_nbytes(vector.shape[0], vector.dtype)
    assert len(message) == HEADER_NBYTES + vector.nbytes


def test_levels_for_bits():
    assert [levels_for_bits(b) for b in (2, 3, 8, 16)] == [1, 3, 127, 32767]
    assert QSGD(bits=8).levels == 127


@pytest.mark.parametrize("bits", [1, 17, 0, 2.5, "8", True, None])
def test_qsgd_rejects_bad_bits(bits):
    with pytest.raises(ValueError, match="bits must be an integer in \\[2, 16\\]"):
        QSGD(bits=bits)


@pytest.mark.parametrize("bucket_size", [0, -3, 2.5, "10", False])
def test_qsgd_rejects_bad_bucket_size(bucket_size):
    with pytest.raises(ValueError, match="bucket_size must be None or a positive integer"):
        QSGD(bucket_size=bucket_size)


@pytest.mark.parametrize("compressor", [QSGD(bits=4), Identity()])
@pytest.mark.parametrize(
    "vector, match",
    [
        (np.array([1.0, np.nan]), "NaN or infinity"),
        (np.array([np.inf, 0.0]), "NaN or infinity"),
        (np.ones((2, 2)), "1-D vector"),
    ],
)
def test_compress_rejects_bad_vectors(compressor, vector, match):
    with pytest.raises(ValueError, match=match):
        compressor.compress(vector, 0)


def test_qsgd_rejects_a_float32_norm_beyond_float32():
    # A float32 vector decodes to float32, which cannot hold a coordinate of
    # +-norm beyond its range; float64 vectors of any magnitude travel with a
    # power-of-two exponent (tests/test_reliability.py).
    vector = np.array([3e38, 3e38], dtype=np.float32)
    with pytest.raises(FloatingPointError, match="exceeds the float32 range"):
        QSGD(bits=8).compress(vector, 0)
    # Up to the float32 limit it works.
    decoded = QSGD(bits=8).decompress(QSGD(bits=8).compress(np.array([1e38, 0.0]), 0))
    assert decoded[0] == pytest.approx(1e38, rel=1e-6)


def test_qsgd_tiny_vectors_are_not_flushed_to_zero():
    # Squares of 1e-200 underflow; the quantizer must still be unbiased, so the
    # norm is nonzero and the draws average to the vector.
    vector = np.array([1e-200, -3e-200, 2e-200])
    quantizer = QSGD(bits=8)
    norms, _ = quantizer.quantize(vector, 0)
    assert norms[0] > 0
    samples, norms = draws(quantizer, vector, n_draws=200)
    step = np.full(3, norms[0] / quantizer.levels)
    assert_unbiased(samples, vector, step)


# -- malformed messages -------------------------------------------------------------
COMPRESSORS = [QSGD(bits=8), QSGD(bits=3, bucket_size=4), Identity()]


@pytest.mark.parametrize("compressor", COMPRESSORS)
@settings(max_examples=30, deadline=None, derandomize=True)
@given(data=st.data())
def test_truncated_message_raises(compressor, data):
    vector = data.draw(vectors(min_size=1, max_size=30))
    message = compressor.compress(vector, 0)
    cut = data.draw(st.integers(0, len(message) - 1))
    with pytest.raises(MessageError):
        compressor.decompress(message[:cut])


@pytest.mark.parametrize("compressor", COMPRESSORS)
@settings(max_examples=50, deadline=None, derandomize=True)
@given(junk=st.binary(max_size=80))
def test_random_bytes_raise_message_error_or_decode(compressor, junk):
    # Random bytes are either rejected with MessageError or (when they happen to
    # form a valid message) decode to a finite vector; nothing else.
    try:
        decoded = compressor.decompress(junk)
    except MessageError:
        return
    assert decoded.ndim == 1 and np.all(np.isfinite(decoded))


@pytest.mark.parametrize("compressor", COMPRESSORS)
@settings(max_examples=30, deadline=None, derandomize=True)
@given(junk=st.binary(min_size=1, max_size=60))
def test_valid_header_with_random_body_raises_message_error_or_decodes(compressor, junk):
    header = compressor.compress(np.ones(5), 0)[: HEADER_NBYTES + 4]
    try:
        decoded = compressor.decompress(header + junk)
    except MessageError:
        return
    assert decoded.shape == (5,) and np.all(np.isfinite(decoded))


@pytest.mark.parametrize("compressor", COMPRESSORS)
def test_wrong_magic_raises(compressor):
    message = bytearray(compressor.compress(np.ones(5), 0))
    message[:2] = b"XX"
    with pytest.raises(MessageError, match="not a"):
        compressor.decompress(bytes(message))


@pytest.mark.parametrize("compressor", COMPRESSORS)
def test_header_claiming_billions_of_values_is_rejected_cheaply(compressor):
    # A 20-byte message whose header claims 2**32 - 1 values (one norm each)
    # must be refused from the arithmetic alone, without allocating for them.
    message = bytearray(compressor.compress(np.ones(3), 0))
    message[4:8] = (2**32 - 1).to_bytes(4, "little")
    if isinstance(compressor, QSGD):
        message[8:12] = (1).to_bytes(4, "little")
    with pytest.raises(MessageError, match="bytes"):
        compressor.decompress(bytes(message))


@pytest.mark.parametrize("d", [0, 1, 5, 512, 513, 1000])
@pytest.mark.parametrize("bucket_size", [None, 1, 7, 512])
def test_n_buckets(d, bucket_size):
    expected = 0 if d == 0 else math.ceil(d / (bucket_size or d))
    assert QSGD(bucket_size=bucket_size).n_buckets(d) == expected


def test_messages_of_one_kind_are_refused_by_the_other():
    with pytest.raises(MessageError, match="not a QSGD message"):
        QSGD().decompress(Identity().compress(np.ones(3)))
    with pytest.raises(MessageError, match="not a Identity message"):
        Identity().decompress(QSGD().compress(np.ones(3), 0))


def test_bad_header_fields_raise():
    message = bytearray(QSGD(bits=8).compress(np.ones(5), 0))
    bad_dtype = message.copy()
    bad_dtype[2] = 9
    with pytest.raises(MessageError, match="dtype code"):
        QSGD().decompress(bytes(bad_dtype))
    bad_bits = message.copy()
    bad_bits[3] = 17
    with pytest.raises(MessageError, match="bits=17"):
        QSGD().decompress(bytes(bad_bits))
    bad_norm = message.copy()
    bad_norm[12:16] = np.array([-1.0], "<f4").tobytes()
    with pytest.raises(MessageError, match="norm"):
        QSGD().decompress(bytes(bad_norm))
    with pytest.raises(MessageError, match="bytes"):
        QSGD().decompress(bytes(message) + b"\x00")


def test_compressors_compare_by_parameters():
    assert QSGD(bits=4, bucket_size=8) == QSGD(bits=4, bucket_size=8)
    assert QSGD(bits=4) != QSGD(bits=5)
    assert hash(QSGD(bits=4)) == hash(QSGD(bits=4))
    assert repr(QSGD(bits=4)) == "QSGD(bits=4, bucket_size=None, encoding='packed')"
    assert QSGD(bits=4) != QSGD(bits=4, encoding="elias")
    assert Identity() == Identity() and Identity() != QSGD()


# Every kind of message a compressor decodes on its own (IntSGD has none).
STANDALONE = [
    Identity(), QSGD(bits=8), QSGD(bits=3, bucket_size=4), QSGD(bits=2, encoding="elias"),
    QSGD(bits=4, bucket_size=2, encoding="elias"), SignSGD(), ScaledSign(), TernGrad(),
    TopK(k=1), TopK(k=0.5), ErrorFeedback(TopK(k=1)),
]


@pytest.mark.parametrize("compressor", STANDALONE, ids=repr)
@pytest.mark.parametrize("declared", [2**32 - 1, MAX_SPARSE_VALUES + 1])
def test_a_short_message_declaring_billions_of_values_allocates_nothing(compressor, declared):
    # Issue: a 20-byte TopK or Elias-coded QSGD message declaring 4e9 values
    # made a receiver that passes no n_values allocate 32 GiB. Every decoder
    # refuses what the message's bytes cannot back before allocating it.
    message = bytearray(compressor.compress(np.array([0.0, 2.0, 0.0, -1.0]), 0))
    message[4:8] = declared.to_bytes(4, "little")
    tracemalloc.start()
    try:
        with pytest.raises(MessageError, match="bytes"):
            compressor.decompress(bytes(message))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20


@pytest.mark.parametrize("compressor", [TopK(k=1), QSGD(bits=2, encoding="elias")], ids=repr)
def test_a_sparse_message_of_any_length_decodes_when_the_receiver_expects_it(compressor):
    vector = np.zeros(MAX_SPARSE_VALUES + 1)
    vector[-1] = 3.0
    message = compressor.compress(vector, 0)
    assert len(message) < 40
    with pytest.raises(MessageError, match="pass n_values, the length it expects"):
        compressor.decompress(message)
    decoded = compressor.decompress(message, vector.shape[0])
    assert decoded.shape == vector.shape and decoded[-1] == 3.0


# -- the registry: a factory names the keyword arguments it reads ----------------
@pytest.fixture
def registry(monkeypatch):
    """The compressor registry, restored after the test."""
    monkeypatch.setattr(compression, "_REGISTRY", copy.deepcopy(compression._REGISTRY))


SOLVER_PARAMS = dict(
    bits=4, bucket_size=16, encoding="elias", momentum=0.5, k=3, error_feedback=False
)


def test_a_factory_receives_the_keywords_it_declares(registry):
    register_compressor(
        "qsgd4", lambda *, bucket_size=None: QSGD(bits=4, bucket_size=bucket_size)
    )
    register_compressor("topk_class", TopK)  # a class: its __init__ declares k
    received = {}
    register_compressor("anything", lambda **params: received.update(params) or SignSGD())
    assert {"qsgd4", "topk_class", "anything"} <= set(available_compressors())
    assert get_compressor("qsgd4", **SOLVER_PARAMS) == QSGD(bits=4, bucket_size=16)
    assert get_compressor("topk_class", **SOLVER_PARAMS) == TopK(k=3)
    assert get_compressor("anything", **SOLVER_PARAMS) == SignSGD()
    assert received == SOLVER_PARAMS


@pytest.mark.parametrize(
    "solver, params, expected",
    [
        ("sgd", {}, Identity()),
        ("qsgd", SOLVER_PARAMS, QSGD(bits=4, bucket_size=16, encoding="elias")),
        ("intsgd", dict(SOLVER_PARAMS, bits=16), IntSGD(bits=16)),
        ("signsgd", {}, SignSGD()),
        ("signsgd", dict(error_feedback=True), ErrorFeedback(ScaledSign())),
        ("signum", SOLVER_PARAMS, Signum(momentum=0.5)),
        ("terngrad", SOLVER_PARAMS, TernGrad()),
        ("topk", dict(SOLVER_PARAMS, error_feedback=True), ErrorFeedback(TopK(k=3))),
    ],
)
def test_every_solver_from_keywords(solver, params, expected):
    assert get_compressor(solver, **params) == expected


@pytest.mark.parametrize(
    "solver, params, match",
    [
        ("sgd", dict(error_feedback=True), "solver='sgd' is unbiased"),
        ("qsgd", dict(bits=1, error_feedback=True), "bits must be an integer in"),
        ("signum", dict(error_feedback=True), "solver='signum' keeps momentum"),
        ("zip", {}, r"solver must be one of \['intsgd', "),
    ],
)
def test_a_bad_solver_parameter_is_a_clear_error(solver, params, match):
    with pytest.raises(ValueError, match=match):
        get_compressor(solver, **params)


def test_a_compressor_instance_is_the_solver_itself():
    solver = TopK(k=2)
    assert get_compressor(solver, k=5, error_feedback=True) is solver


# -- summable compressors: a base class of their own ------------------------------
def test_only_summable_compressors_carry_the_summable_protocol():
    compressors = [get_compressor(name) for name in ("sgd", "qsgd", "intsgd", "signsgd",
                                                      "signum", "terngrad", "topk")]
    summable = [c for c in compressors if c.summable]
    assert summable == [Identity(), IntSGD()]
    assert all(isinstance(c, SummableCompressor) for c in summable)
    for c in compressors:
        if c not in summable:
            assert not c.summed_only and not hasattr(c, "encode")
            assert not hasattr(c, "needs_scale")


def test_a_summable_compressor_must_encode_decode_and_report_failures():
    class Incomplete(SummableCompressor):
        def compress(self, vector, random_state=None):
            return b""

        def decompress(self, message, n_values=None):
            return np.zeros(0)

        def message_nbytes(self, n_values):
            return 0

    with pytest.raises(TypeError, match="decode_sum, encode, failed_summand, sum_failed"):
        Incomplete()
