"""ConvergenceDisplay: the lines it draws are the fit's records (matplotlib Agg,
no screenshot)."""

import math
import sys

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_relu import ConvergenceDisplay, ReLURegressor, make_relu_regression

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def fits():
    X, y = make_relu_regression(n_samples=600, n_features=10, noise=0.05, random_state=0)
    return X, y, [
        ReLURegressor(solver=solver, bits=4, n_workers=2, random_state=0).fit(X, y)
        for solver in ("sgd", "qsgd")
    ]


@pytest.mark.parametrize("x, attribute", [
    ("steps", "steps_curve_"), ("bytes", "bytes_sent_curve_"),
    ("seconds", "seconds_curve_"),
])
def test_the_line_is_the_fits_record(fits, x, attribute):
    _, _, (sgd, _) = fits
    display = ConvergenceDisplay.from_estimator(sgd, x=x)
    assert_array_equal(display.line_.get_xdata(), getattr(sgd, attribute))
    assert_array_equal(display.line_.get_ydata(), sgd.loss_curve_)
    assert display.ax_.get_lines() == [display.line_]
    assert display.figure_ is display.ax_.figure
    assert display.ax_.get_yscale() == "log"
    assert display.line_.get_label() == "sgd"


def test_the_records_count_what_the_fit_did(fits):
    _, _, (sgd, qsgd) = fits
    for est in (sgd, qsgd):
        n = len(est.loss_curve_)
        assert len(est.steps_curve_) == len(est.bytes_sent_curve_) == len(est.seconds_curve_) == n
        assert est.steps_curve_[-1] == est.t_
        # One run, so all of the record's bytes are the run's.
        assert est.bytes_sent_curve_[-1] == est.comm_record_.bytes_sent
        assert np.all(np.diff(est.steps_curve_) > 0)
        assert np.all(np.diff(est.bytes_sent_curve_) > 0)
        assert np.all(np.diff(est.seconds_curve_) >= 0)
    assert qsgd.bytes_sent_curve_[-1] / qsgd.t_ < sgd.bytes_sent_curve_[-1] / sgd.t_


def test_several_fits_on_one_axes(fits):
    _, _, (sgd, qsgd) = fits
    first = ConvergenceDisplay.from_estimator(sgd, x="bytes")
    second = ConvergenceDisplay.from_estimator(qsgd, x="bytes", ax=first.ax_,
                                               label="QSGD", color="red")
    assert second.ax_ is first.ax_
    assert first.ax_.get_lines() == [first.line_, second.line_]
    assert_array_equal(second.line_.get_xdata(), qsgd.bytes_sent_curve_)
    assert second.line_.get_color() == "red"
    legend = [text.get_text() for text in first.ax_.get_legend().get_texts()]
    assert legend == ["sgd", "QSGD"]
    assert first.ax_.get_xlabel() == "bytes sent by the workers"


def test_plot_draws_the_given_values_on_a_given_axes():
    fig, ax = plt.subplots()
    display = ConvergenceDisplay(x_values=[1, 2, 3], y_values=[1.0, 0.0, 0.0]).plot(ax=ax)
    assert display.ax_ is ax and display.figure_ is fig
    assert_array_equal(display.line_.get_ydata(), [1.0, 0.0, 0.0])
    assert ax.get_yscale() == "linear"  # a loss of 0 has no logarithm
    assert ax.get_legend() is None  # no label, no legend


def test_a_pipeline_and_the_validation_score(fits):
    X, y, _ = fits
    model = make_pipeline(StandardScaler(), ReLURegressor(early_stopping=True, random_state=0))
    model.fit(X, y)
    display = ConvergenceDisplay.from_estimator(model, y="validation_score")
    assert_array_equal(display.line_.get_ydata(), model[-1].validation_scores_)
    assert_array_equal(display.line_.get_xdata(), model[-1].steps_curve_)
    assert display.ax_.get_yscale() == "linear"


def test_continued_fits_go_on_from_the_last_epoch(fits):
    X, y, _ = fits
    est = ReLURegressor(random_state=0)
    for _ in range(3):
        est.partial_fit(X, y)
    steps, sent = est.steps_curve_, est.bytes_sent_curve_
    assert steps == [steps[0], 2 * steps[0], 3 * steps[0]] and steps[-1] == est.t_
    assert sent == [sent[0], 2 * sent[0], 3 * sent[0]]
    display = ConvergenceDisplay.from_estimator(est, x="steps")
    assert_array_equal(display.line_.get_xdata(), steps)


def test_a_resumed_fit_has_no_bytes_or_seconds_for_its_run(fits, tmp_path, monkeypatch):
    from sklearn_relu._checkpoint import FitCheckpoint

    X, y, _ = fits
    save = FitCheckpoint.save
    saved = []

    def save_then_stop(self, *args, **kwargs):  # killed after the second save
        save(self, *args, **kwargs)
        saved.append(1)
        if len(saved) == 2:
            raise KeyboardInterrupt

    params = dict(tol=None, max_iter=4, random_state=0, checkpoint=tmp_path / "fit.ckpt")
    with monkeypatch.context() as patch:
        patch.setattr(FitCheckpoint, "save", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            ReLURegressor(**params).fit(X, y)
    est = ReLURegressor(**params).fit(X, y)
    reference = ReLURegressor(**{**params, "checkpoint": None}).fit(X, y)
    assert est.loss_curve_ == reference.loss_curve_
    assert est.steps_curve_ == reference.steps_curve_
    assert all(math.isnan(v) for v in est.bytes_sent_curve_ + est.seconds_curve_)


def test_errors_say_what_is_wrong(fits):
    _, _, (sgd, _) = fits
    with pytest.raises(ValueError, match=r"x must be one of \['bytes', 'seconds', 'steps'\], got 'epochs'"):
        ConvergenceDisplay.from_estimator(sgd, x="epochs")
    with pytest.raises(ValueError, match=r"y must be one of \['loss', 'validation_score'\], got 'r2'"):
        ConvergenceDisplay.from_estimator(sgd, y="r2")
    with pytest.raises(ValueError, match="y='validation_score' needs validation_scores_, which a fit "
                       "records only with early_stopping=True"):
        ConvergenceDisplay.from_estimator(sgd, y="validation_score")
    with pytest.raises(NotFittedError):
        ConvergenceDisplay.from_estimator(ReLURegressor())
    old = ReLURegressor(random_state=0).fit(*fits[:2])
    del old.bytes_sent_curve_  # as a model fitted before the curves were recorded
    with pytest.raises(ValueError, match="ReLURegressor has no bytes_sent_curve_: it was fitted by "
                       "a version of sklearn_relu that did not record it; fit it again"):
        ConvergenceDisplay.from_estimator(old, x="bytes")


def test_without_matplotlib_the_error_says_what_to_install(fits, monkeypatch):
    _, _, (sgd, _) = fits
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'sklearn-relu\[plot\]'"):
        ConvergenceDisplay.from_estimator(sgd)
