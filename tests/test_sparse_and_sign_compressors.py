"""Properties of the sign, ternary and top-k compressors and of error feedback."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sklearn_relu.aggregation import MajorityVote, Mean, get_aggregator
from sklearn_relu.compression import (
    QSGD,
    ErrorFeedback,
    Identity,
    MessageError,
    ScaledSign,
    SignSGD,
    Signum,
    TernGrad,
    TopK,
)
from sklearn_relu.compression._sign import pack_signs, unpack_signs

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)
FAILURE_PROBABILITY = 1e-9


def vectors(min_size=1, max_size=70):
    """float32 or float64 vectors, with exact zeros and ties in magnitude."""

    def of_dtype(dtype):
        width = 32 if dtype == np.float32 else 64
        return hnp.arrays(
            dtype,
            st.integers(min_size, max_size),
            elements=st.one_of(
                st.just(0.0), st.just(1.0), st.just(-1.0),
                st.floats(-1e6, 1e6, width=width),
            ),
        )

    return st.sampled_from([np.float32, np.float64]).flatmap(of_dtype)


# -- signs ------------------------------------------------------------------------
@SETTINGS
@given(vector=vectors())
def test_sign_packing_round_trips(vector):
    signs = np.where(vector < 0, -1.0, 1.0)
    packed = pack_signs(vector)
    assert len(packed) == math.ceil(vector.shape[0] / 8)
    np.testing.assert_array_equal(unpack_signs(memoryview(packed), vector.shape[0]), signs)
    message = SignSGD().compress(vector)
    assert len(message) == 8 + math.ceil(vector.shape[0] / 8)
    assert len(message) == SignSGD().message_nbytes(vector.shape[0])
    decoded = SignSGD().decompress(message)
    assert decoded.dtype == vector.dtype
    np.testing.assert_array_equal(decoded, signs)


@SETTINGS
@given(vector=vectors())
def test_scaled_sign_sends_the_mean_magnitude_with_the_signs(vector):
    decoded = ScaledSign().decompress(ScaledSign().compress(vector))
    scale = np.abs(vector).sum(dtype=np.float64) / vector.shape[0]
    expected = np.where(vector < 0, -1.0, 1.0) * scale
    np.testing.assert_allclose(decoded, expected.astype(vector.dtype), rtol=1e-6)
    assert len(ScaledSign().compress(vector)) == ScaledSign().message_nbytes(
        vector.shape[0], vector.dtype
    )


def test_a_sign_message_must_have_exactly_its_bytes_and_no_stray_bits():
    message = SignSGD().compress(np.ones(10))
    with pytest.raises(MessageError, match="sign message body has 1 bytes, expected 2"):
        SignSGD().decompress(message[:-1])
    with pytest.raises(MessageError, match="bits set beyond its last coordinate"):
        SignSGD().decompress(message[:-1] + b"\x80")


def test_signum_is_signsgd_on_the_momentum_and_resets():
    c = Signum(momentum=0.5)
    c.compress(np.array([1.0, -1.0]))
    np.testing.assert_array_equal(c.get_state(), [0.5, -0.5])
    c.reset()
    assert c.get_state().shape == (0,)
    c.set_state(np.array([4.0, 4.0]))
    assert c.decompress(c.compress(np.array([-1.0, -9.0]))).tolist() == [1.0, -1.0]
    with pytest.raises(ValueError, match=r"momentum must be a float in \[0, 1\), got 1"):
        Signum(momentum=1)
    # Equality is the parameters', not the state's.
    assert c == Signum(momentum=0.5)


# -- TernGrad ---------------------------------------------------------------------
@SETTINGS
@given(vector=vectors(), seed=st.integers(0, 2**32 - 1))
def test_terngrad_packing_round_trips_to_ternary_levels(vector, seed):
    message = TernGrad().compress(vector, random_state=seed)
    itemsize = vector.dtype.itemsize
    assert len(message) == 8 + itemsize + math.ceil(2 * vector.shape[0] / 8)
    assert len(message) == TernGrad().message_nbytes(vector.shape[0], vector.dtype)
    decoded = TernGrad().decompress(message)
    scale = np.abs(vector).max()
    assert decoded.dtype == vector.dtype
    assert set(np.unique(np.abs(decoded))) <= {0.0, scale}
    # A level is never against the gradient's sign, and zero stays zero.
    assert np.all(decoded * vector >= 0)
    assert np.all(decoded[vector == 0] == 0)
    # The largest coordinate is always sent (its probability is 1).
    assert np.abs(decoded).max() == scale


def test_terngrad_is_unbiased():
    # Each draw of a coordinate lies in [-s, s] (range 2s): Hoeffding with a
    # union bound over the coordinates fails with probability 1e-9.
    vector = np.array([3.0, -1.0, 0.25, 0.0, -2.5, 1e-3, 2.0, -0.5])
    n_draws, scale = 4000, 3.0
    rng = np.random.default_rng(0)
    samples = np.array(
        [TernGrad().decompress(TernGrad().compress(vector, rng)) for _ in range(n_draws)]
    )
    margin = 2 * scale * math.sqrt(
        math.log(2 * vector.shape[0] / FAILURE_PROBABILITY) / (2 * n_draws)
    )
    assert np.all(np.abs(samples.mean(axis=0) - vector) <= margin)
    # The check can fail: a biased quantizer (always the sign times s) is caught.
    assert np.any(np.abs(np.sign(vector) * scale - vector) > margin)
    # The variance is s ||g||_1 - ||g||^2. A draw's squared error takes, in
    # each coordinate, (s - |g_i|)^2 with probability p_i = |g_i| / s and
    # g_i^2 otherwise: Bernstein's inequality with that exact variance and
    # range bounds the mean of n_draws with probability 1e-9.
    variance = ((samples - vector) ** 2).sum(axis=1).mean()
    expected = scale * np.abs(vector).sum() - vector @ vector
    p = np.abs(vector) / scale
    hit, miss = (scale - np.abs(vector)) ** 2, vector**2
    draw_variance = np.sum(p * (1 - p) * (hit - miss) ** 2)
    # The largest deviation of a draw from its mean.
    spread = max(np.maximum(hit, miss).sum() - expected, expected - np.minimum(hit, miss).sum())
    log_term = math.log(2 / FAILURE_PROBABILITY)
    margin = (math.sqrt(2 * draw_variance * log_term / n_draws)
              + 2 * spread * log_term / (3 * n_draws))
    assert abs(variance - expected) <= margin
    # That margin (0.61) is within a tenth of the variance (7.2): a quantizer
    # whose variance is off by a tenth is caught.
    assert margin < 0.1 * expected


def test_a_terngrad_message_of_the_wrong_length_is_rejected():
    message = TernGrad().compress(np.ones(5), random_state=0)
    with pytest.raises(MessageError, match="TernGrad message body has 9 bytes, expected 10"):
        TernGrad().decompress(message[:-1])


# -- top-k ------------------------------------------------------------------------
@SETTINGS
@given(vector=vectors(), k=st.one_of(st.integers(1, 80), st.floats(0.01, 1.0)))
def test_topk_keeps_the_k_largest(vector, k):
    compressor = TopK(k=k)
    message = compressor.compress(vector)
    d = vector.shape[0]
    kept = compressor.n_kept(d)
    assert kept == (min(k, d) if isinstance(k, int) else min(max(math.ceil(k * d), 1), d))
    assert len(message) == 8 + kept * (4 + vector.dtype.itemsize)
    assert len(message) == compressor.message_nbytes(d, vector.dtype)
    decoded = compressor.decompress(message)
    sent = compressor.select(vector)
    assert sent.shape == (kept,)
    dropped = np.setdiff1d(np.arange(d), sent)
    # Every kept magnitude is at least every dropped one; kept values are exact.
    if dropped.size:
        assert np.abs(vector[sent]).min() >= np.abs(vector[dropped]).max()
    np.testing.assert_array_equal(decoded[sent], vector[sent])
    assert np.all(decoded[dropped] == 0)


def test_topk_breaks_ties_toward_the_lower_index():
    assert TopK(k=2).select(np.array([1.0, -2.0, 2.0, 2.0])).tolist() == [1, 2]


@pytest.mark.parametrize(
    "k, match",
    [(0, "k must be an integer >= 1 or a fraction in"), (1.5, "got 1.5"),
     (True, "got True"), (-0.1, "got -0.1")],
)
def test_topk_rejects_a_bad_k(k, match):
    with pytest.raises(ValueError, match=match):
        TopK(k=k)


def test_a_malformed_topk_message_is_rejected():
    message = TopK(k=2).compress(np.array([0.0, 3.0, 0.0, -4.0]))
    with pytest.raises(MessageError, match="not a whole number of 12-byte entries"):
        TopK(k=2).decompress(message[:-1])
    swapped = message[:8] + message[12:16] + message[8:12] + message[16:]
    with pytest.raises(MessageError, match="indices are not increasing and in range"):
        TopK(k=2).decompress(swapped)


# -- error feedback -----------------------------------------------------------------
@SETTINGS
@given(
    steps=st.lists(hnp.arrays(np.float64, 12, elements=st.floats(-1e3, 1e3)),
                   min_size=1, max_size=6),
    inner=st.sampled_from([ScaledSign(), TopK(k=3), TopK(k=0.5)]),
)
def test_error_feedback_memory_is_what_was_not_sent(steps, inner):
    compressor = ErrorFeedback(inner)
    memory = np.zeros(12)
    total_sent = np.zeros(12)
    for gradient in steps:
        sent = compressor.decompress(compressor.compress(gradient))
        # This step's memory is what it had to send and did not.
        np.testing.assert_array_equal(compressor.get_state(), gradient + memory - sent)
        memory = compressor.get_state()
        total_sent += sent
    # Over the steps, everything was sent or is still in memory.
    np.testing.assert_allclose(
        total_sent + memory, np.sum(steps, axis=0), atol=1e-9 * (1 + np.abs(steps).max())
    )


@pytest.mark.parametrize(
    "inner, match",
    [(QSGD(bits=4), "ErrorFeedback wraps a biased compressor"),
     (Identity(), "ErrorFeedback wraps a biased compressor"),
     (Signum(), "ErrorFeedback wraps a stateless compressor")],
)
def test_error_feedback_only_wraps_a_stateless_biased_compressor(inner, match):
    with pytest.raises(ValueError, match=match):
        ErrorFeedback(inner)


# -- aggregation --------------------------------------------------------------------
def test_majority_vote_is_the_sign_of_the_sum_and_a_tie_votes_plus():
    votes = [np.array([1.0, -1.0, 1.0]), np.array([-1.0, -1.0, 1.0])]
    assert MajorityVote().aggregate(votes, SignSGD()).tolist() == [1.0, -1.0, 1.0]
    assert Mean().aggregate(votes, SignSGD()).tolist() == [0.0, -1.0, 1.0]


def test_an_unknown_aggregation_is_rejected():
    with pytest.raises(ValueError, match=r"aggregation must be one of \['bgmd', .*'trimmed_mean'\]"):
        get_aggregator("vote")
