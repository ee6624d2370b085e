"""What ``fit`` reports: rows and R^2 over every MPI rank's rows, and the
summary (a paragraph, or ``--json``) of the fit and of what the workers sent."""

import json
import time

import numpy as np

from ..compression import SOLVER_PARAMETERS, get_compressor


def _r2(model, X, y, sample_weight, ranks):
    """R^2 (sample-weighted, as ``model.score``), over every rank's rows when
    ``ranks`` is given."""
    if ranks is None:
        return model.score(X, y, sample_weight)
    w = np.ones(y.shape[0]) if sample_weight is None else np.asarray(sample_weight, float)
    total, weighted_y = ranks.sum_over_ranks([w.sum(), w @ y])
    mean = weighted_y / total
    residual, spread = ranks.sum_over_ranks(
        [w @ (y - model.predict(X)) ** 2, w @ (y - mean) ** 2]
    )
    if spread == 0:  # as scikit-learn's r2_score: 1 if perfect, else 0
        return 1.0 if residual == 0 else 0.0
    return 1.0 - residual / spread


def scores_over_ranks(model, train, test, ranks):
    """Rows and R^2 of the training and held-out sets (over every rank's rows
    when ``ranks`` is given: every rank must call this)."""

    def rows(X):
        n = X.shape[0]
        return int(n if ranks is None else ranks.sum_over_ranks([n])[0])

    scores = {"n_samples": rows(train[0]), "training_r2": _r2(model, *train, ranks)}
    if test is not None:
        scores.update(n_test=rows(test[0]), test_r2=_r2(model, *test, ranks))
    return scores


def report(model, scores, args, started):
    """Print the summary of a fit that began at ``started`` (a
    ``time.perf_counter()``): a paragraph, or one JSON object with
    ``--json``."""
    est = model[-1] if hasattr(model, "steps") else model
    record = est.comm_record_
    summary = {
        "n_samples": scores["n_samples"],
        "n_features": int(est.n_features_in_),
        "n_workers": est.n_workers_,
        "steps": est.t_,
        "epochs": est.n_iter_,
        "final_loss": est.loss_curve_[-1],
        "training_r2": scores["training_r2"],
        **record.as_dict(),
        "seconds": time.perf_counter() - started,
        "out": str(args.out),
    }
    if "test_r2" in scores:
        summary["n_test"], summary["test_r2"] = scores["n_test"], scores["test_r2"]
    if args.json:
        print(json.dumps(summary))
        return
    # A message of no values: the header every message carries.
    given = est.get_params(deep=False)
    compressor = get_compressor(est.solver, **{k: given[k] for k in SOLVER_PARAMETERS})
    header_nbytes = compressor.message_nbytes(0)
    held_out = (
        f", held-out R^2 {summary['test_r2']:.4f} on {summary['n_test']} rows"
        if "test_r2" in summary
        else " (no held-out score: see --test-size)"
    )
    print(
        f"fitted {args.solver} on {summary['n_samples']} x {summary['n_features']}"
        f" with {est.n_workers_} worker(s) in {summary['seconds']:.1f} s: {est.t_} "
        + (f"local steps in {record.n_rounds} rounds" if est.local_steps > 1 else "steps")
        + f" ({est.n_iter_} epochs), loss {summary['final_loss']:.4g}, "
        f"training R^2 {summary['training_r2']:.4f}{held_out}\n"
        f"workers sent {record.n_messages} messages, {record.bytes_sent} bytes "
        f"({_share_of_float64(record, header_nbytes)}); compute "
        f"{record.compute_seconds:.3f} s, communication "
        f"{record.communicate_seconds:.3f} s\nmodel written to {args.out}"
    )


def _share_of_float64(record, header_nbytes):
    """The bytes sent as a share of float64's: "12.5% of float64", with a
    remark when the messages' headers (``header_nbytes`` each: the size of a
    message of no values) are most of the bytes."""
    if not record.float64_bytes:
        return "no messages"
    share = record.bytes_sent / record.float64_bytes
    text = f"{100 * share:.3g}% of float64"
    # float64_bytes counts the values alone. At a few features the header
    # of every message may outweigh its values; at d = 500 plain SGD's 8
    # bytes are 0.2% of a message, which is not worth a word.
    headers = record.n_messages * header_nbytes / record.bytes_sent
    if headers > 0.5:
        text += (
            f": every message's header counts, and at this size it dominates "
            f"({100 * headers:.3g}% of the bytes)"
        )
    return text
