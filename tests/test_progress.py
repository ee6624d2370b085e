"""What ``verbose`` shows where logging was never set up (sklearn_relu/_progress.py):
one line kept up to date on a terminal, a line every few epochs elsewhere, and
only the main process's epochs."""

import io
import logging

import pytest

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu._cli import build_parser
from sklearn_relu._progress import MAX_LINES, EpochProgress, ProgressHandler, log, logger


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def drawn_on(monkeypatch):
    """Install a ProgressHandler on ``stream``, as ``log`` does where logging
    was never set up; the logger's handlers are restored afterwards."""
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "propagate", False)  # not into pytest's caplog

    def install(stream):
        logger.addHandler(ProgressHandler(stream))
        logger.setLevel(logging.INFO)
        return stream

    return install


def fit(**params):
    X, y = make_relu_regression(n_samples=600, n_features=5, noise=0.5, random_state=0)
    return ReLURegressor(**{"random_state": 0, "tol": None, **params}).fit(X, y)


def test_a_terminal_gets_one_line_kept_up_to_date(drawn_on):
    stream = drawn_on(Terminal())
    fit(verbose=1, max_iter=7, n_ensemble=2)
    text = stream.getvalue()
    # One line a run, redrawn in place after every epoch.
    assert text.count("\n") == 2
    runs = text.split("\n")[:2]
    for run, line in enumerate(runs):
        frames = line.split("\r")[1:]
        assert len(frames) == 7
        assert frames[0].startswith(f"run {run} [#") and "epoch 1/7" in frames[0]
        assert "sent " in frames[0] and "left" in frames[0]
        assert frames[-1].startswith(f"run {run} [####################] epoch 7/7  loss ")


def test_elsewhere_a_line_every_few_epochs_and_the_last(drawn_on):
    stream = drawn_on(io.StringIO())
    est = fit(verbose=1, max_iter=120)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    every = -(-120 // MAX_LINES)
    assert [int(line.split("epoch ")[1].split("/")[0]) for line in lines] == list(
        range(every, 121, every)
    )
    assert f"loss {est.loss_curve_[-1]:.4g}" in lines[-1]


def test_verbose_2_writes_every_epoch_and_a_stopped_run_its_last(drawn_on):
    stream = drawn_on(io.StringIO())
    fit(verbose=2, max_iter=120, batch_size=60, callback=lambda info: info.step >= 30)
    epochs = [int(line.split("epoch ")[1].split("/")[0])
              for line in stream.getvalue().splitlines() if line.startswith("run 0 [")]
    # 10 steps an epoch: the callback stops the 3rd epoch at its end, before
    # its line (the fit then says where it stopped).
    assert epochs == [1, 2]
    assert "stopped by the callback at step 30" in stream.getvalue()
    assert "run 0: stopped by the callback after epoch 2" in stream.getvalue()
    # verbose=1 writes the last epoch of a run that stopped early, off the grid.
    stream.truncate(0)
    stream.seek(0)
    fit(verbose=1, max_iter=120, batch_size=60, callback=lambda info: info.step >= 30)
    assert [line.split("epoch ")[1].split("/")[0]
            for line in stream.getvalue().splitlines() if line.startswith("run 0 [")] == ["2"]
    assert stream.getvalue().splitlines()[-1].endswith(", stopped by the callback")


def test_a_run_that_converged_says_so_on_its_line(drawn_on):
    stream = drawn_on(Terminal())
    est = fit(verbose=1, max_iter=200, tol=1e-2)
    assert est.n_iter_ < 200
    last = stream.getvalue().split("\r")[-1]
    assert f"epoch {est.n_iter_}/200" in last and last.endswith(", converged\x1b[K\n")


def test_only_the_main_process_draws_its_epochs(drawn_on):
    stream = drawn_on(Terminal())
    progress = dict(run=0, epoch=1, max_epochs=5, loss=1.0, bytes_sent=10.0, elapsed=0.1,
                    epochs_timed=1)
    log("run 0, epoch 1", EpochProgress(**progress, main=False))
    assert stream.getvalue() == ""
    log("run 0, epoch 1", EpochProgress(**progress, main=True))
    log("run 0: resumed from checkpoint c.ckpt")  # any other line starts afresh
    assert stream.getvalue().startswith("\rrun 0 [####....")
    assert stream.getvalue().endswith("\nrun 0: resumed from checkpoint c.ckpt\n")


def test_configured_logging_gets_one_record_an_epoch(caplog):
    caplog.set_level(logging.INFO, logger="sklearn_relu")
    fit(verbose=1, max_iter=4)
    records = [r for r in caplog.records if r.name == "sklearn_relu"]
    assert [r.progress.epoch for r in records] == [1, 2, 3, 4]
    assert not any(isinstance(h, ProgressHandler) for h in logger.handlers)


def test_the_cli_shows_progress_by_default_on_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", Terminal())
    assert build_parser().parse_args(["fit", "d.npz", "--out", "m"]).verbose == 1
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert build_parser().parse_args(["fit", "d.npz", "--out", "m"]).verbose == 0
    assert build_parser().parse_args(
        ["fit", "d.npz", "--out", "m", "--verbose", "2"]).verbose == 2
