"""The MPI backend under a real ``mpiexec`` with 1, 2 and 4 ranks.

Each test launches ``mpiexec -n K python -m mpi4py tests/mpi/<script>.py``; the
scripts make assertions that hold for any K (``check_equivalence.py``: every
rank's model equals the in-process one with K workers) and exit non-zero when
one fails.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pytest

if os.environ.get("SKLEARN_RELU_REQUIRE_MPI"):
    import mpi4py  # noqa: F401  (CI: fail, never skip, when MPI is missing)
else:
    pytest.importorskip(
        "mpi4py", reason='the MPI tests need mpi4py: pip install "sklearn-relu[mpi]"'
    )

from sklearn_relu import make_relu_regression  # noqa: E402

SCRIPTS = Path(__file__).parent / "mpi"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
if not MPIEXEC.exists():
    MPIEXEC = shutil.which("mpiexec")


def mpiexec(n_ranks, *args, timeout, runner=("-m", "mpi4py"), env=None):
    if MPIEXEC is None:
        pytest.fail("mpi4py is installed but no mpiexec was found")
    command = [str(MPIEXEC), "-n", str(n_ranks), sys.executable, *runner, *args]
    start = time.monotonic()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )
    return done, time.monotonic() - start


def run_check(script, n_ranks, timeout, env=None):
    """Run ``tests/mpi/<script>`` on ``n_ranks`` ranks: it must end well, and
    say so from rank 0."""
    done, _ = mpiexec(n_ranks, str(SCRIPTS / script), timeout=timeout, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ok: {n_ranks} ranks" in done.stderr
    return done.stderr


@pytest.mark.parametrize("n_ranks", [1, 2, 4])
def test_multitree_and_hierarchical_equal_inprocess_on_every_rank(n_ranks):
    run_check("check_multitree.py", n_ranks, timeout=180)


@pytest.mark.parametrize("n_hosts", [2, 4])
def test_hierarchical_groups_the_ranks_of_each_emulated_host(n_hosts):
    # MPICH treats blocks of a machine's ranks as separate hosts
    # (MPIR_CVAR_NUM_CLIQUES): the hierarchy then has n_hosts hosts.
    stderr = run_check("check_multitree.py", 4, timeout=180, env={
        "MPIR_CVAR_NUM_CLIQUES": str(n_hosts), "MPIR_CVAR_CLIQUES_BY_BLOCK": "1",
    })
    per_host = 4 // n_hosts
    hosts = [list(range(h * per_host, (h + 1) * per_host)) for h in range(n_hosts)]
    assert f"hosts {hosts}" in stderr


@pytest.mark.parametrize("n_ranks", [1, 2, 4])
def test_mpi_fits_equal_inprocess_on_every_rank(n_ranks):
    run_check("check_equivalence.py", n_ranks, timeout=180)


def test_a_bad_command_line_under_mpiexec_is_reported_once(tmp_path):
    done, _ = mpiexec(2, "-m", "sklearn_relu", "fit", str(tmp_path / "d.npz"),
                      "--out", str(tmp_path / "m"), "--tol", "x", timeout=60)
    assert done.returncode != 0
    assert done.stderr.count("error: argument --tol") == 1, done.stderr


@pytest.mark.parametrize("n_ranks", [1, 3])
def test_ranks_that_sleep_in_shared_memory_fit_the_inprocess_model(n_ranks):
    run_check("check_shared_memory.py", n_ranks, timeout=180)


@pytest.mark.parametrize("n_ranks", [1, 2])
def test_each_rank_keeps_blas_to_its_share_of_the_host(n_ranks):
    run_check("check_blas_threads.py", n_ranks, timeout=120)


@pytest.mark.parametrize("n_ranks", [1, 2, 4])
def test_mpi_sign_methods_equal_inprocess_on_every_rank(n_ranks):
    run_check("check_sign_methods.py", n_ranks, timeout=180)


@pytest.mark.parametrize("n_ranks", [2, 4])
def test_mpi_robust_rules_with_byzantine_ranks_equal_inprocess_on_every_rank(n_ranks):
    run_check("check_robust.py", n_ranks, timeout=180)


@pytest.mark.parametrize("n_ranks", [2, 4])
def test_mpi_omniscient_attacks_equal_inprocess_on_every_rank(n_ranks):
    run_check("check_omniscient.py", n_ranks, timeout=180)


@pytest.mark.parametrize("n_ranks", [2, 4])
def test_mpi_local_steps_equal_inprocess_on_every_rank(n_ranks):
    run_check("check_local_steps.py", n_ranks, timeout=240)


@pytest.mark.parametrize("n_ranks", [1, 2])
def test_mpi_sparse_X_equals_inprocess_on_every_rank(n_ranks):
    run_check("check_sparse.py", n_ranks, timeout=180)


@pytest.mark.parametrize("n_ranks", [1, 2])
def test_a_callback_that_stops_on_one_rank_stops_every_rank_at_that_step(n_ranks):
    run_check("check_callback.py", n_ranks, timeout=120)


@pytest.mark.parametrize("mode", ["raise", "kill"])
def test_a_failing_rank_ends_the_whole_job(mode):
    # No hang: the subprocess timeout is the 30 seconds.
    done, _ = mpiexec(2, str(SCRIPTS / "fault.py"), mode, timeout=30)
    assert done.returncode != 0
    if mode == "raise":
        assert "injected failure on the last rank" in done.stderr
        assert "MPI rank(s) [1] failed during the fit" in done.stderr
    else:
        output = done.stdout + done.stderr
        assert "signal 9" in output or "KILLED" in output, output


def test_bad_data_on_one_rank_raises_on_every_rank_even_when_caught():
    done, _ = mpiexec(2, str(SCRIPTS / "fault.py"), "bad-data", timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rank 1 caught ValueError" in done.stdout, done.stdout
    assert "rank 0 caught RemoteWorkerError" in done.stdout, done.stdout
    assert "MPI rank(s) [1] could not use their data" in done.stdout


@pytest.mark.parametrize("topology", ["allgather", "master-worker"])
def test_a_truncated_message_is_rejected_on_every_rank(topology):
    done, _ = mpiexec(2, str(SCRIPTS / "fault.py"), "corrupt", topology, timeout=30)
    assert done.returncode != 0
    assert "MessageError: Identity message body has" in done.stderr, done.stderr


@pytest.mark.parametrize("topology", ["allgather", "master-worker"])
def test_a_message_of_the_wrong_length_is_rejected_on_every_rank(topology):
    # It used to be broadcast-added to every coordinate, and the job exit 0.
    done, _ = mpiexec(2, str(SCRIPTS / "fault.py"), "short", topology, timeout=30)
    assert done.returncode != 0
    assert (
        "MessageError: Identity message declares 1 values, but the receiver's "
        "model has 7" in done.stderr
    ), done.stderr


def test_ranks_given_different_parameters_all_raise_instead_of_hanging():
    # One rank with max_iter=5, the other 50: they used to wait for each other
    # until killed. verbose and random_state may differ (rank 0's seed rules).
    done, _ = mpiexec(2, str(SCRIPTS / "disagree.py"), timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    for rank in (0, 1):
        assert (
            f"rank {rank} caught ValueError: the MPI ranks disagree on the "
            "estimator parameters: rank(s) [1] have max_iter=5 instead of 50 on "
            "rank 0" in done.stdout
        ), done.stdout + done.stderr


@pytest.mark.parametrize("n_ranks", [1, 3, 4])
def test_each_rank_that_disagrees_is_named_with_its_own_value(n_ranks):
    # At 3 ranks, rank 1 passes max_iter=15 and rank 2 20: each is named with
    # its own; at 4, ranks 1 and 3 differ the same way and are named together.
    run_check("check_disagreement.py", n_ranks, timeout=60)


@pytest.fixture
def data_file(tmp_path):
    X, y = make_relu_regression(n_samples=300, n_features=8, random_state=0)
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    return path, X, y


def test_cli_under_mpiexec_writes_the_model_once(data_file, tmp_path):
    path, X, y = data_file
    out = tmp_path / "model.joblib"
    args = [
        "-m",
        "sklearn_relu",
        "fit",
        str(path),
        "--solver",
        "qsgd",
        "--bits",
        "8",
        "--random-state",
        "0",
        "--out",
        str(out),
    ]
    done, _ = mpiexec(2, *args, "--json", "--topology", "master-worker", timeout=60)
    assert done.returncode == 0, done.stderr
    # Only rank 0 reports and writes; no temporary file is left behind.
    assert done.stdout.count('"n_workers": 2') == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "model.joblib"]
    est = joblib.load(out)
    assert est.n_workers_ == 2 and est.score(X, y) > 0.99


def test_a_cli_error_on_one_rank_ends_the_job_without_the_mpi4py_runner(
    data_file, tmp_path
):
    # Without ``-m mpi4py`` nothing aborts the job for us: rank 0 would wait
    # forever for the rank that failed, unless the command line ends the job.
    path, _, _ = data_file
    args = [
        str(SCRIPTS / "fault.py"),
        "cli-load",
        str(path),
        "--out",
        str(tmp_path / "m.joblib"),
    ]
    done, _ = mpiexec(2, *args, timeout=30, runner=())
    assert done.returncode != 0
    assert "error on MPI rank 1: injected: the last rank cannot" in done.stderr


def test_a_killed_cli_fit_leaves_the_earlier_model_untouched(data_file, tmp_path):
    path, X, y = data_file
    out = tmp_path / "model.joblib"
    out.write_bytes(b"an earlier model")
    done, _ = mpiexec(
        2, str(SCRIPTS / "fault.py"), "cli", str(path), "--out", str(out), timeout=30
    )
    assert done.returncode != 0
    assert out.read_bytes() == b"an earlier model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "model.joblib"]


@pytest.mark.parametrize("n_ranks", [1, 2, 4])
def test_allreduce_intsgd_and_local_data_on_every_rank(n_ranks):
    run_check("check_allreduce.py", n_ranks, timeout=240)


def test_cli_data_local_reads_only_its_rows_and_fits_the_same_model(tmp_path):
    # Each rank memory-maps the .npy files and keeps its own shard's rows; the
    # model is the one every rank reading all rows gives.
    X, y = make_relu_regression(n_samples=300, n_features=8, random_state=0)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    models = {}
    for mode in ("all", "local"):
        out = tmp_path / f"{mode}.joblib"
        args = ["-m", "sklearn_relu", "fit", str(tmp_path / "X.npy"), "--target",
                str(tmp_path / "y.npy"), "--solver", "intsgd", "--random-state", "0",
                "--data", mode, "--out", str(out)]
        done, _ = mpiexec(2, *args, timeout=60)
        assert done.returncode == 0, done.stderr
        models[mode] = joblib.load(out)
    np.testing.assert_array_equal(models["local"].coef_, models["all"].coef_)
    assert models["local"].n_workers_ == 2
    # The scaler and the printed scores cover every rank's rows, not rank 0's.
    X = X * np.arange(1, 9) + 3.0
    np.save(tmp_path / "X.npy", X)
    summaries = {}
    for mode in ("all", "local"):
        out = tmp_path / f"{mode}-standardized.joblib"
        args = ["-m", "sklearn_relu", "fit", str(tmp_path / "X.npy"), "--target",
                str(tmp_path / "y.npy"), "--standardize", "--random-state", "0",
                "--data", mode, "--out", str(out), "--json"]
        done, _ = mpiexec(2, *args, timeout=60)
        assert done.returncode == 0, done.stderr
        models[mode] = joblib.load(out)
        summaries[mode] = json.loads(done.stdout)
    scalers = [models[mode].named_steps["scale"] for mode in ("all", "local")]
    np.testing.assert_allclose(scalers[1].mean_, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scalers[1].scale_, X.std(axis=0), rtol=1e-12)
    assert scalers[1].n_samples_seen_ == scalers[0].n_samples_seen_ == 300
    np.testing.assert_allclose(models["local"][-1].coef_, models["all"][-1].coef_,
                               rtol=1e-6)
    assert summaries["local"]["n_samples"] == summaries["all"]["n_samples"] == 300
    assert summaries["local"]["training_r2"] == pytest.approx(
        models["local"].score(X, y), abs=1e-12
    )
    # Anything but .npy cannot be read a shard at a time: a clear error.
    np.savez(tmp_path / "data.npz", X=X, y=y)
    args = ["-m", "sklearn_relu", "fit", str(tmp_path / "data.npz"), "--data", "local",
            "--out", str(tmp_path / "m.joblib")]
    done, _ = mpiexec(2, *args, timeout=60)
    assert done.returncode != 0
    assert "--data local reads each rank's rows from a memory-mapped .npy" in done.stderr


@pytest.mark.parametrize("n_ranks", [2, 4])
def test_cli_data_local_reads_each_ranks_own_parquet_files_or_row_groups(n_ranks):
    pytest.importorskip("pyarrow", reason='needs pyarrow: pip install "sklearn-relu[parquet]"')
    run_check("check_parquet.py", n_ranks, timeout=180)


# -- a fit that survives being killed (issue 12) ------------------------------------
def _rank_pid(marker, rank):
    """The pid of MPI rank ``rank`` of the job whose command line has ``marker``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours
            continue
        if marker.encode() in command and f"PMI_RANK={rank}".encode() in environment:
            return int(entry.name)
    return None


def _logged_epochs(log):
    """The epochs rank 0 drew (``run 0 [bar] epoch N/M ...``, one line an
    epoch off a terminal at this max_iter), in order."""
    return [
        int(line.split("epoch ", 1)[1].split("/", 1)[0])
        for line in log.splitlines()
        if line.startswith("run 0 [")
    ]


def _run_until_killed(command, log_path, saved, every):
    """Run the checkpointed fit ``command`` until epoch ``2 * every`` was saved
    and epoch ``2 * every + 2`` logged, then SIGKILL its rank 1: the job must
    end. Its log."""
    with open(log_path, "w+") as log:
        job = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            # Killed between checkpoints: after epoch 2 * every + 2 was logged
            # (epoch 2 * every was saved), so that finished epochs are lost.
            deadline = time.monotonic() + 120
            while not (
                (saved() or {"epoch": 0})["epoch"] >= 2 * every
                and max(_logged_epochs(Path(log.name).read_text()) or [0])
                >= 2 * every + 2
            ):
                assert job.poll() is None, Path(log.name).read_text()
                assert time.monotonic() < deadline, "no checkpoint within 120 s"
                time.sleep(0.005)
            victim = _rank_pid(command[command.index("--checkpoint") + 1], 1)
            assert victim is not None
            os.kill(victim, signal.SIGKILL)
            job.wait(timeout=60)
        finally:
            if job.poll() is None:
                job.kill()
        log.seek(0)
        killed_log = log.read()
    assert job.returncode != 0
    return killed_log


def _fit_without_checkpoint(command, out, model_path):
    """The model of ``command`` (which writes ``out``) run without its
    checkpoint, written to ``model_path`` instead."""
    plain = [str(model_path) if part == str(out) else part for part in command]
    at = plain.index("--checkpoint")
    del plain[at : at + 2]
    done = subprocess.run(plain, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return joblib.load(model_path)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
@pytest.mark.parametrize("solver", ["signum", "intsgd"])  # allgather, allreduce
def test_a_rank_killed_mid_fit_resumes_bit_identically(solver, tmp_path):
    # The target of issue 12: under mpiexec -n 3, SIGKILL of one rank mid-run
    # ends the job; the same command run again resumes from the checkpoint
    # rank 0 wrote and ends with the model of a fit never killed, having
    # redone at most one checkpoint interval.
    from sklearn_relu._checkpoint import _read

    X, y = make_relu_regression(n_samples=3000, n_features=30, noise=0.1,
                                random_state=0)
    data = tmp_path / "data.npz"
    np.savez(data, X=X, y=y)
    out, checkpoint = tmp_path / "model.joblib", tmp_path / "fit.ckpt"
    every, steps_per_epoch, epochs = 3, 50, 30
    command = [
        str(MPIEXEC), "-n", "3", sys.executable, "-m", "mpi4py", "-m", "sklearn_relu",
        "fit", str(data), "--out", str(out), "--solver", solver, "--batch-size",
        "60", "--max-iter", str(epochs), "--tol", "none", "--random-state", "0",
        "--checkpoint", str(checkpoint), "--checkpoint-every", str(every),
        "--verbose", "1",
    ]

    def saved():
        try:
            return _read(checkpoint)
        except ValueError:  # not written yet
            return None

    killed_log = _run_until_killed(command, tmp_path / "killed.log", saved, every)
    assert "signal 9" in killed_log or "KILLED" in killed_log, killed_log
    left = saved()
    assert left is not None and left["t"] == left["epoch"] * steps_per_epoch
    reached = max(_logged_epochs(killed_log))
    assert reached < epochs, "the fit ended before it was killed"
    # Epochs the killed job had done beyond its last checkpoint: redone below.
    assert 0 <= reached - left["epoch"] <= every
    print(f"{solver}: rank 1 killed after epoch {reached}; the checkpoint holds "
          f"epoch {left['epoch']} (t={left['t']} steps): {reached - left['epoch']} "
          f"epoch(s) redone, at most {every}")

    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.count(
        f"resumed from checkpoint {checkpoint} after epoch {left['epoch']}"
    ) == 3  # every rank resumed
    assert min(_logged_epochs(done.stderr)) == left["epoch"] + 1
    # The checkpoint is gone, and so is any temporary file of the killed write.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "data.npz", "killed.log", "model.joblib"
    ]
    # The uninterrupted fit: the same command without a checkpoint.
    est = joblib.load(out)
    reference = _fit_without_checkpoint(command, out, tmp_path / "uninterrupted.joblib")
    np.testing.assert_array_equal(est.coef_, reference.coef_)
    assert est.intercept_ == reference.intercept_
    assert (est.n_iter_, est.t_) == (reference.n_iter_, reference.t_)
    assert est.loss_curve_ == reference.loss_curve_
