"""Every registered aggregator and pre-aggregator against a plain NumPy
reference written from its paper's definition (loops over workers and
coordinates, no Gram matrix), on random messages: float64 and float32
gradients, QSGD-decoded messages and signs, with the number of Byzantine
workers given to the rule, taken from the fit, or left to the default.

The exact rules must equal their reference to 1e-12 (relative to the
messages' magnitude); where a rule picks among points (Krum, the medoid), any
pick the reference ties within rounding is accepted. The geometric median is
iterative: its sum of distances must be within 1e-9 (relative) of a long
Weiszfeld run's (Vardi and Zhang's modification, which also converges where
the median is one of the points).

A rule registered without a reference here fails
``test_every_registered_rule_has_a_reference``.
"""

import math

import numpy as np
import pytest

from sklearn_relu.aggregation import (
    NNM,
    BlockGeometricMedian,
    Bucketing,
    CenteredClip,
    Krum,
    MultiKrum,
    PreAggregated,
    TrimmedMean,
    available_aggregators,
    available_pre_aggregators,
    get_aggregator,
)
from sklearn_relu.compression import QSGD, Identity, SignSGD

RTOL = 1e-12


# -- the references, from the papers -----------------------------------------------------
def distance(x, y):
    return math.sqrt(math.fsum((a - b) ** 2 for a, b in zip(x, y)))


def mean_reference(points):
    return np.array([math.fsum(column) / len(column) for column in points.T])


def majority_reference(points):
    """Bernstein et al. 2019: the sign of the sum of the votes, +1 on a tie."""
    return np.array([1.0 if math.fsum(column) >= 0 else -1.0 for column in points.T])


def median_reference(points):
    """Yin et al. 2018: the median of each coordinate."""
    out = []
    for column in points.T:
        ordered = sorted(column)
        n = len(ordered)
        out.append(ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2)
    return np.array(out)


def trimmed_mean_reference(points, trimmed):
    """Yin et al. 2018: each coordinate's mean without its ``trimmed`` largest
    and ``trimmed`` smallest values."""
    n = len(points)
    return np.array([
        math.fsum(sorted(column)[trimmed : n - trimmed]) / (n - 2 * trimmed)
        for column in points.T
    ])


def krum_scores_reference(points, f):
    """Blanchard et al. 2017: each point's sum of squared distances to its
    ``n - f - 2`` nearest others."""
    n = len(points)
    return [
        math.fsum(sorted(distance(points[i], points[j]) ** 2 for j in range(n) if j != i)
                  [: n - f - 2])
        for i in range(n)
    ]


def near_ties(values):
    """The indices whose value is the least within rounding (first is the least)."""
    least = min(values)
    return [i for i, v in enumerate(values) if v <= least + 1e-9 * abs(least) + 1e-300]


def krum_references(points, f):
    """Every point Krum may return: the least score, or one tied with it."""
    return [points[i] for i in near_ties(krum_scores_reference(points, f))]


def multi_krum_references(points, f, m):
    """The mean of the ``m`` best-scored points (the first in worker order
    among equal scores); a tie at the cut may go either way."""
    scores = krum_scores_reference(points, f)
    order = sorted(range(len(points)), key=lambda i: (scores[i], i))
    kept, cut = order[:m], scores[order[m - 1]]
    tied = [i for i in range(len(points)) if abs(scores[i] - cut) <= 1e-9 * abs(cut)]
    picks = [kept]
    for inside in set(kept) & set(tied):
        for outside in set(tied) - set(kept):
            picks.append([outside if i == inside else i for i in kept])
    return [mean_reference(points[sorted(pick)]) for pick in picks]


def medoids(points):
    """Every point of least sum of distances to the others (within rounding)."""
    sums = [math.fsum(distance(x, z) for z in points) for x in points]
    return near_ties(sums)


def more_than_half_at(points, k):
    return 2 * sum(np.array_equal(x, points[k]) for x in points) > len(points)


def centered_clip_reference(points, k, n_iter=1, tau=None):
    """Karimireddy et al. 2021, from the medoid ``points[k]``: ``n_iter`` times
    ``v <- v + 1/n sum_i (x_i - v) min(1, tau / |x_i - v|)``; ``tau`` by
    default half the median distance of the others from the medoid. More than
    half the points at the medoid leave nothing to clip towards."""
    n = len(points)
    v = points[k].copy()
    if tau is None:
        if more_than_half_at(points, k):
            return v
        tau = 0.5 * float(np.median([distance(points[i], v) for i in range(n) if i != k]))
        if tau == 0:
            return v
    for _ in range(n_iter):
        pulls = []
        for x in points:
            gap = distance(x, v)
            pulls.append((x - v) * (min(1.0, tau / gap) if gap > 0 else 1.0))
        v = v + mean_reference(np.array(pulls))
    return v


def rough_median_reference(points, k):
    """One clipped step from the medoid ``points[k]``: weights ``1 / max(|x_i -
    x_k|, s)``, ``s`` the median distance of all points from it."""
    if more_than_half_at(points, k):
        return points[k].copy()
    gaps = [distance(x, points[k]) for x in points]
    spread = max(float(np.median(gaps)), np.finfo(float).tiny)
    weights = [1.0 / max(gap, spread) for gap in gaps]
    total = math.fsum(weights)
    return points[k] + sum(w * (x - points[k]) for w, x in zip(weights, points)) / total


def nnm_reference(points, f):
    """Allouah et al. 2023: each vector the mean of its ``n - f`` nearest
    vectors, itself included (the first in worker order among equals)."""
    n = len(points)
    out = []
    for i in range(n):
        nearest = sorted(range(n), key=lambda j: (distance(points[i], points[j]), j))[: n - f]
        out.append(mean_reference(points[sorted(nearest)]))
    return np.array(out)


def bucketing_reference(points, s, order):
    """Karimireddy et al. 2022: the vectors in ``order``, averaged ``s`` at a time."""
    n = len(points)
    return np.array([
        mean_reference(points[[order[j] for j in range(start, min(start + s, n))]])
        for start in range(0, n, s)
    ])


def sum_of_distances(points, z):
    return math.fsum(distance(x, z) for x in points)


def weiszfeld_reference(points, iterations=3000):
    """Weiszfeld's iterations with Vardi and Zhang's (2000) modification at a
    data point, from the mean: converges to the geometric median, one of the
    points or not."""
    z = points.mean(axis=0)
    for _ in range(iterations):
        gaps = np.linalg.norm(points - z, axis=1)
        away = gaps > 0
        copies = np.count_nonzero(~away)
        inverse = 1.0 / gaps[away]
        target = inverse @ points[away] / inverse.sum()
        if copies == 0:
            z = target
            continue
        pull = np.linalg.norm(inverse @ (points[away] - z))
        if pull <= copies:
            break
        z = (1 - copies / pull) * target + (copies / pull) * z
    return z


# -- the messages ----------------------------------------------------------------------------
KINDS = ["float64", "float32", "qsgd", "sign"]


def messages(kind, n, d, seed, n_byzantine=0):
    """``n`` decoded messages of dimension ``d`` and the compressor that made
    them: noisy copies of one gradient, the first ``n_byzantine`` 30 times
    farther out."""
    rng = np.random.default_rng(seed)
    gradients = rng.normal(size=d) + 0.5 * rng.normal(size=(n, d))
    gradients[:n_byzantine] = 30 * rng.normal(size=(n_byzantine, d))
    if kind == "float64":
        return [g for g in gradients], Identity()
    if kind == "float32":
        return [g.astype(np.float32) for g in gradients], Identity()
    compressor = QSGD(4) if kind == "qsgd" else SignSGD()
    return [
        compressor.decompress(compressor.compress(g, random_state=seed + i))
        for i, g in enumerate(gradients)
    ], compressor


def direction_of(center, vectors, compressor):
    """What ``aggregate`` returns for a centre (docs/robust.rst): ``n`` times it
    for gradient shares, the centre itself for signs, in the messages' type."""
    n = len(vectors)
    scaled = center if isinstance(compressor, SignSGD) else n * center
    return scaled.astype(vectors[0].dtype)


def assert_one_of(got, candidates, vectors):
    """``got`` equals one of ``candidates`` to 1e-12 relative to the messages'
    magnitude (to float32's rounding for float32 messages)."""
    points = np.array(vectors, dtype=np.float64)
    scale = len(points) * (np.abs(points).max() + 1e-300)
    eps = RTOL if vectors[0].dtype == np.float64 else 2.0**-23
    errors = [
        np.max(np.abs(got.astype(np.float64) - c.astype(np.float64)) / scale, initial=0.0)
        for c in candidates
    ]
    assert got.dtype == vectors[0].dtype
    assert min(errors) <= 2 * eps, f"off by {min(errors):.2e} relative"


# -- one reference per registered rule ---------------------------------------------------
def _mean(vectors, compressor, f):
    points = np.array(vectors, dtype=np.float64)
    return get_aggregator("mean"), [direction_of(mean_reference(points), vectors, compressor)]


def _majority(vectors, compressor, f):
    points = np.array(vectors, dtype=np.float64)
    return get_aggregator("majority"), [majority_reference(points).astype(vectors[0].dtype)]


def _median(vectors, compressor, f):
    points = np.array(vectors, dtype=np.float64)
    return get_aggregator("median"), [direction_of(median_reference(points), vectors,
                                                   compressor)]


def _trimmed_mean(vectors, compressor, f):
    points = np.array(vectors, dtype=np.float64)
    trimmed = len(points) // 4 if f is None else f
    return TrimmedMean(n_trimmed=f), [
        direction_of(trimmed_mean_reference(points, trimmed), vectors, compressor)
    ]


def _krum(vectors, compressor, f):
    points = np.array(vectors, dtype=np.float64)
    assumed = (len(points) - 3) // 2 if f is None else f
    return Krum(n_byzantine=f), [
        direction_of(c, vectors, compressor) for c in krum_references(points, assumed)
    ]


def _multi_krum(vectors, compressor, f):
    points = np.array(vectors, dtype=np.float64)
    assumed = (len(points) - 3) // 2 if f is None else f
    return MultiKrum(n_byzantine=f), [
        direction_of(c, vectors, compressor)
        for c in multi_krum_references(points, assumed, len(points) - assumed)
    ]


def _centered_clip(vectors, compressor, f):
    points = np.array(vectors, dtype=np.float64)
    return CenteredClip(n_iter=2), [
        direction_of(centered_clip_reference(points, k, n_iter=2), vectors, compressor)
        for k in medoids(points)
    ]


EXACT = {
    "mean": _mean,
    "majority": _majority,
    "median": _median,
    "trimmed_mean": _trimmed_mean,
    "krum": _krum,
    "multi_krum": _multi_krum,
    "centered_clip": _centered_clip,
}
#: The rules whose reference is a long Weiszfeld run (tested by objective).
ITERATIVE = {"geometric_median", "bgmd"}
NAIVE_PRE_AGGREGATORS = {"nnm": nnm_reference, "bucketing": bucketing_reference}


def test_every_registered_rule_has_a_reference():
    assert set(available_aggregators()) == set(EXACT) | ITERATIVE
    assert set(available_pre_aggregators()) == set(NAIVE_PRE_AGGREGATORS)


# -- the exact rules -------------------------------------------------------------------------
@pytest.mark.parametrize("rule", sorted(EXACT))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n, f", [(5, None), (7, 1), (10, 3), (16, 4)])
@pytest.mark.parametrize("seed", range(3))
def test_an_exact_rule_equals_its_reference(rule, kind, n, f, seed):
    vectors, compressor = messages(kind, n, 9, seed, n_byzantine=f or 0)
    aggregator, candidates = EXACT[rule](vectors, compressor, f)
    assert_one_of(aggregator.aggregate(vectors, compressor), candidates, vectors)


@pytest.mark.parametrize("rule", ["trimmed_mean", "krum", "multi_krum"])
@pytest.mark.parametrize("f", [0, 2, 3])
def test_a_rule_that_needs_f_takes_the_fits_n_byzantine(rule, f):
    vectors, compressor = messages("float64", 10, 6, f, n_byzantine=f)
    _, candidates = EXACT[rule](vectors, compressor, f)
    aggregator = get_aggregator(rule)
    aggregator.check_byzantine(f, len(vectors))
    assert_one_of(aggregator.aggregate(vectors, compressor), candidates, vectors)


@pytest.mark.parametrize("n_iter", [1, 3])
@pytest.mark.parametrize("tau", [None, 0.3, 40.0])
@pytest.mark.parametrize("seed", range(3))
def test_centered_clip_with_its_parameters_equals_its_reference(n_iter, tau, seed):
    vectors, compressor = messages("float64", 9, 7, seed, n_byzantine=3)
    points = np.array(vectors)
    candidates = [
        direction_of(centered_clip_reference(points, k, n_iter, tau), vectors, compressor)
        for k in medoids(points)
    ]
    got = CenteredClip(tau=tau, n_iter=n_iter).aggregate(vectors, compressor)
    assert_one_of(got, candidates, vectors)


@pytest.mark.parametrize("rule", sorted(EXACT))
def test_more_than_half_the_workers_sending_one_vector(rule):
    # Duplicates: the medoid is held by most points (centered clipping's and
    # the Gram matrices' special case), ties everywhere.
    rng = np.random.default_rng(0)
    common = rng.normal(size=5)
    vectors = [common.copy() for _ in range(4)] + [rng.normal(size=5) * 10 for _ in range(3)]
    aggregator, candidates = EXACT[rule](vectors, Identity(), 2)
    assert_one_of(aggregator.aggregate(vectors, Identity()), candidates, vectors)


@pytest.mark.parametrize("m", [1, 3, 6])
def test_multi_krum_with_m_given_equals_its_reference(m):
    vectors, compressor = messages("qsgd", 9, 8, m, n_byzantine=2)
    points = np.array(vectors)
    candidates = [direction_of(c, vectors, compressor)
                  for c in multi_krum_references(points, 2, m)]
    got = MultiKrum(n_byzantine=2, m=m).aggregate(vectors, compressor)
    assert_one_of(got, candidates, vectors)


@pytest.mark.parametrize("rule", sorted(EXACT))
def test_the_statistics_are_combined_as_the_reference_says(rule):
    # A sum for the mean, n times the coordinate median for the vote, n times
    # the rule's centre for a robust rule.
    vectors, _ = messages("float64", 7, 4, 11, n_byzantine=2)
    points = np.array(vectors)
    n = len(points)
    aggregator, candidates = EXACT[rule](vectors, Identity(), 2)
    if rule == "mean":
        candidates = [n * mean_reference(points)]
    elif rule == "majority":
        candidates = [n * median_reference(points)]
    assert_one_of(aggregator.combine_statistics(vectors), candidates, vectors)


# -- pre-aggregation -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("f", [0, 1, 3])
@pytest.mark.parametrize("seed", range(3))
def test_nnm_then_a_rule_equals_the_references_composed(kind, f, seed):
    vectors, compressor = messages(kind, 9, 6, seed, n_byzantine=f)
    points = np.array(vectors, dtype=np.float64)
    mixed = NNM(n_byzantine=f).transform(points, step=0)
    np.testing.assert_allclose(mixed, nnm_reference(points, f), rtol=0,
                               atol=RTOL * np.abs(points).max())
    aggregator = get_aggregator("nnm+median")
    aggregator.remember_byzantine(f)
    assert_one_of(
        aggregator.aggregate(vectors, compressor),
        [direction_of(median_reference(nnm_reference(points, f)), vectors, compressor)],
        vectors,
    )


@pytest.mark.parametrize("n, s", [(7, 2), (10, 3), (16, 2), (5, 1)])
def test_bucketing_then_a_rule_equals_the_references_composed(n, s):
    vectors, compressor = messages("float64", n, 5, n, n_byzantine=1)
    points = np.array(vectors)
    aggregator = PreAggregated(Bucketing(s=s, random_state=3), TrimmedMean(n_trimmed=1))
    for step in range(3):
        order = np.random.default_rng([3, step]).permutation(n)
        means = bucketing_reference(points, s, order)
        expected = n * trimmed_mean_reference(means, 1)
        assert_one_of(aggregator.aggregate(vectors, compressor), [expected], vectors)


# -- the geometric median and BGMD: iterative -------------------------------------------
def assert_objective_near(points, got, tolerance=1e-9):
    reference = sum_of_distances(points, weiszfeld_reference(points))
    assert abs(sum_of_distances(points, got) / reference - 1) <= tolerance


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n, f", [(5, 1), (10, 4), (16, 4)])
@pytest.mark.parametrize("seed", range(3))
def test_geometric_median_reaches_a_long_weiszfeld_runs_objective(kind, n, f, seed):
    vectors, compressor = messages(kind, n, 12, seed, n_byzantine=f)
    points = np.array(vectors, dtype=np.float64)
    got = get_aggregator("geometric_median").aggregate(vectors, compressor)
    center = got.astype(np.float64) / (1 if isinstance(compressor, SignSGD) else n)
    assert got.dtype == vectors[0].dtype
    assert_objective_near(points, center, 1e-9 if kind != "float32" else 1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_geometric_median_on_points_sent_several_times(seed):
    # Where the median is a point sent several times, or near one (the
    # iterations crawl): Vardi and Zhang's reference handles both.
    rng = np.random.default_rng(seed)
    points = np.repeat(rng.normal(size=(5, 4)), rng.integers(1, 4, 5), axis=0)
    center = get_aggregator("geometric_median").center(points)
    assert_objective_near(points, center)


@pytest.mark.parametrize("kind", ["float64", "float32", "qsgd"])
@pytest.mark.parametrize("seed", range(3))
def test_bgmd_equals_its_reference_step_by_step(kind, seed):
    """Acharya et al. 2022 with the block chosen as docs/robust.rst says: add
    each message to its worker's memory; the block is the ``k`` largest
    coordinates of one clipped step from the memory rows' medoid; the step is
    the geometric median of the rows on the block; the block is consumed."""
    n, d, k = 7, 20, 5
    rule = BlockGeometricMedian(block_size=k)
    memory = np.zeros((n, d))
    for step in range(3):
        vectors, compressor = messages(kind, n, d, 10 * seed + step, n_byzantine=2)
        memory += np.array(vectors)
        center = rough_median_reference(memory, medoids(memory)[0])
        ordered = np.sort(center**2)[::-1]
        assert ordered[k - 1] > ordered[k] * (1 + 1e-9)   # a block without a tie
        block = np.sort(np.argsort(-center**2, kind="stable")[:k])
        got = rule.aggregate(vectors, compressor).astype(np.float64)
        got /= 1 if isinstance(compressor, SignSGD) else n
        assert np.flatnonzero(got).tolist() == block.tolist()
        assert_objective_near(memory[:, block], got[block])
        memory[:, block] = 0.0
        np.testing.assert_allclose(rule.get_state()[2:].reshape(n, d), memory, rtol=RTOL,
                                   atol=RTOL * np.abs(memory).max())


def test_a_byzantine_vector_that_is_not_finite_is_never_the_medoid():
    # Before: a first vector with an infinite entry made every Gram-based
    # rule start from it (NaN or infinite directions).
    rng = np.random.default_rng(0)
    vectors = [np.full(4, np.inf)] + [5 + rng.normal(size=4) for _ in range(6)]
    honest = np.array(vectors[1:])
    for rule in ["geometric_median", "krum", "multi_krum", "centered_clip"]:
        aggregator = get_aggregator(rule)
        aggregator.remember_byzantine(1)
        direction = aggregator.aggregate(vectors, Identity()) / 7
        assert np.all(np.isfinite(direction)), rule
        assert np.all(np.abs(direction - honest.mean(axis=0)) < 3), rule
