"""scikit-learn's own estimator checks."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_relu import ReLURegressor

_RANDOM_BATCHES = (
    "SGD draws its batches at random, so integer weights and repeated rows "
    "give different (equally valid) random trajectories, not the same model"
)
EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": _RANDOM_BATCHES,
    "check_sample_weight_equivalence_on_sparse_data": _RANDOM_BATCHES,
}


@parametrize_with_checks(
    [ReLURegressor(random_state=0)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
