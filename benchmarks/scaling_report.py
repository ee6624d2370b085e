"""Table and figure of the scaling study (``benchmarks/run_scaling.sh``).

    python benchmarks/scaling_report.py benchmarks/results/scaling.jsonl

Writes ``scaling.md`` (the table, the targets with PASS/FAIL) and ``scaling.png``
next to the input, and the same table, targets and figure for the docs to
``docs/figures/scaling.csv``, ``scaling_targets.csv`` and ``scaling.png``.
Every ratio is against SGD over allreduce in the same cell (same ranks, same
rate, same run): what a user would run instead.

Communication per step is given two ways: inside the fit (the time in the
collectives, which includes waiting for ranks still computing: with more ranks
than cores, the CPU's doing), and as network time, from a short pass whose
ranks meet in a barrier before each step's collectives (the barrier's wait is
the "skew"). The communication targets are judged on the network time.
"""

import csv
import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path

BASELINE = "sgd-allreduce"
NETWORK = "network_ms_per_step_mean"
LABELS = {
    "sgd-allgather": "SGD, allgather (the paper's setting)",
    "sgd-allreduce": "SGD, allreduce (baseline)",
    "qsgd8-allgather": "QSGD 8-bit, allgather",
    "qsgd2-elias-allgather": "QSGD 2-bit Elias (bucket 128), allgather",
    "qsgd8-master-worker": "QSGD 8-bit, master-worker",
    "intsgd8-allreduce": "IntSGD 8-bit, allreduce",
}
COMPRESSED = [s for s in LABELS if not s.startswith("sgd")]


def load(path):
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
    cells = defaultdict(dict)
    for row in rows:
        cells[row["rate"], row["ranks"]][row["scheme"]] = row
    for (rate, ranks), cell in cells.items():
        # A capped run's totals: its per-step figures times the steps the same
        # arithmetic takes. Steps depend on the scheme and the ranks only (the
        # fit is deterministic), so they come from the same scheme at another
        # rate, or for SGD over allgather from SGD over allreduce (the same
        # gradients added in another order).
        for row in cell.values():
            row["estimated"] = not row["reached"]
            if row["reached"]:
                row["time_s"] = row["wall_seconds"]
                row["rx_total"] = row["rx_bytes_per_rank_mean"]
                row["steps_total"] = row["steps"]
                continue
            donors = [
                other.get(row["scheme"]) for (r, w), other in cells.items()
                if w == ranks and r != rate
            ]
            if row["scheme"] == "sgd-allgather":
                donors.append(cell.get(BASELINE))
            # Failing those, the same scheme at the nearest number of ranks
            # (its steps change little with the ranks: 8589 at 4, 8442 at 8
            # for 2-bit QSGD).
            donors += [
                other.get(row["scheme"]) for (_, w), other in sorted(
                    cells.items(), key=lambda item: abs(item[0][1] - ranks)
                ) if w != ranks
            ]
            steps = next(
                (d["steps"] for d in donors if d is not None and d["reached"]), None
            )
            row["steps_total"] = steps
            if steps is None:
                row["time_s"] = row["rx_total"] = float("nan")
                continue
            row["time_s"] = row["wall_seconds"] / row["steps"] * steps
            row["rx_total"] = row["rx_bytes_per_rank_mean"] / row["steps"] * steps
    return cells


def ratio(a, b):
    return a / b if b else float("nan")


def rate_mbit(rate):
    return float(rate.lower().replace("mbit", ""))


def table(cells):
    """The study's table: a header row, then one row per (rate, ranks, scheme)."""
    rows = [[
        "rate per rank", "ranks", "scheme", "steps to 1e-6",
        "comm ms/step in the fit (mean / max over ranks)",
        "network ms/step (mean / max; skew)", "time to 1e-6 (s)",
        "MB received per rank to 1e-6", "bytes received per rank per step",
        "vs SGD allreduce: network/step, bytes, time",
    ]]
    for (rate, ranks) in sorted(cells, key=lambda k: (-rate_mbit(k[0]), k[1])):
        cell = cells[rate, ranks]
        base = cell.get(BASELINE)
        for scheme in LABELS:
            row = cell.get(scheme)
            if row is None:
                continue
            est = " (est.)" if row["estimated"] else ""
            if base is not None and scheme != BASELINE:
                ratios = (
                    f"{ratio(base[NETWORK], row[NETWORK]):.1f}x"
                    f" / {ratio(base['rx_total'], row['rx_total']):.1f}x"
                    f" / {ratio(base['time_s'], row['time_s']):.1f}x"
                )
            else:
                ratios = "1 (baseline)" if scheme == BASELINE else ""
            steps = row["steps_total"]
            capped = "" if row["reached"] else f" (capped at {row['steps']})"
            rows.append([
                rate, str(ranks), LABELS[scheme], f"{steps if steps else 'n/a'}{capped}",
                f"{row['comm_ms_per_step_mean']:.2f} / {row['comm_ms_per_step_max']:.2f}",
                f"{row[NETWORK]:.2f} / {row['network_ms_per_step_max']:.2f}; "
                f"{row['skew_ms_per_step']:.2f}",
                f"{row['time_s']:.1f}{est}", f"{row['rx_total'] / 1e6:.1f}{est}",
                f"{row['rx_bytes_per_step_mean']:.0f}", ratios,
            ])
    return rows


def targets(cells):
    """The issue's targets with PASS/FAIL: a header row, then one row each."""
    out = []

    def check(name, value, op, bound, detail):
        ok = value >= bound if op == ">=" else value <= bound
        out.append([name, f"{detail} = {value:.2f}", f"{op} {bound}",
                    "PASS" if ok else "FAIL"])

    def best(cell, key):
        rows = [cell[s] for s in COMPRESSED if s in cell]
        rows = [r for r in rows if r[key] == r[key]]  # not NaN
        return min(rows, key=lambda r: r[key])

    cell = cells.get(("10mbit", 4))
    if cell and BASELINE in cell:
        winner = best(cell, "time_s")
        check("wall clock to 1e-6, 4 ranks, 10 Mbit/s",
              ratio(cell[BASELINE]["time_s"], winner["time_s"]), ">=", 3,
              f"SGD allreduce / {LABELS[winner['scheme']]}")
    cell = cells.get(("10mbit", 16))
    if cell and BASELINE in cell:
        winner = best(cell, NETWORK)
        check("network time per step, 16 ranks, 10 Mbit/s",
              ratio(cell[BASELINE][NETWORK], winner[NETWORK]),
              ">=", 5, f"SGD allreduce / {LABELS[winner['scheme']]}")
        winner = best(cell, "rx_total")
        check("bytes received per rank to 1e-6, 16 ranks, 10 Mbit/s",
              ratio(cell[BASELINE]["rx_total"], winner["rx_total"]), ">=", 6,
              f"SGD allreduce / {LABELS[winner['scheme']]}")
        if "intsgd8-allreduce" in cell:
            check("bytes per rank per step, 16 ranks, 10 Mbit/s",
                  ratio(cell[BASELINE]["rx_bytes_per_step_mean"],
                        cell["intsgd8-allreduce"]["rx_bytes_per_step_mean"]), ">=", 6,
                  "SGD allreduce / IntSGD 8-bit (at the NIC)")
    small, large = cells.get(("10mbit", 8)), cells.get(("10mbit", 16))
    if small and large and "intsgd8-allreduce" in small and "intsgd8-allreduce" in large:
        check("IntSGD network time per step, 8 -> 16 ranks, 10 Mbit/s",
              ratio(large["intsgd8-allreduce"][NETWORK],
                    small["intsgd8-allreduce"][NETWORK]), "<=", 1.3,
              "16 ranks / 8 ranks")
    if not out:
        return []
    return [["target", "measured", "bound", ""], *out]


def markdown(rows):
    """``rows`` (a header row first) as markdown table lines."""
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    return lines[:1] + ["|" + "---|" * len(rows[0])] + lines[1:]


def figure(cells, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rates = sorted({rate for rate, _ in cells}, key=lambda r: -rate_mbit(r))
    fig, axes = plt.subplots(2, len(rates), figsize=(5.5 * len(rates), 8), squeeze=False)
    for column, rate in enumerate(rates):
        ranks = sorted(r for (rt, r) in cells if rt == rate)
        for scheme, label in LABELS.items():
            points = [(r, cells[rate, r][scheme]) for r in ranks if scheme in cells[rate, r]]
            if not points:
                continue
            style = dict(marker="o", label=label, lw=2 if scheme == BASELINE else 1.2)
            axes[0, column].plot([r for r, _ in points],
                                 [p[NETWORK] for _, p in points], **style)
            axes[1, column].plot([r for r, _ in points],
                                 [p["rx_total"] / 1e6 for _, p in points], **style)
        for row, ylabel in enumerate(["network ms per step (synchronized)",
                                      "MB received per rank to 1e-6"]):
            ax = axes[row, column]
            ax.set(xscale="log", yscale="log", xlabel="MPI ranks", ylabel=ylabel,
                   title=f"{rate} per rank, d = 4000")
            ax.set_xticks(ranks, [str(r) for r in ranks])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    source = Path(argv[0] if argv else "benchmarks/results/scaling.jsonl")
    cells = load(source)
    lines = ["# Scaling: SGD, QSGD and IntSGD on MPI ranks with one emulated NIC each", "",
             "Planted model, n = 20000, d = 4000, batch 1000, noiseless, to relative "
             "error 1e-6. Command: `sudo benchmarks/run_scaling.sh`. "
             "(est.): a run stopped by the time cap; its total is its time and bytes per "
             "step times the steps the same scheme took at the other rate (the fit is "
             "deterministic), or for SGD over allgather the steps of SGD over allreduce, "
             "or else the same scheme's steps at the nearest number of ranks. "
             "Ranks wait with `MPIBackend(wait='auto')`: they yield the core when they "
             "outnumber it (4 ranks and more here).", ""]
    study, goals = table(cells), targets(cells)
    lines += markdown(study) + [""] + (markdown(goals) if goals else [])
    source.with_suffix(".md").write_text("\n".join(lines) + "\n")
    figure(cells, source.with_suffix(".png"))
    docs = Path(__file__).resolve().parent.parent / "docs" / "figures"
    write_csv(docs / "scaling.csv", study)
    write_csv(docs / "scaling_targets.csv", goals)
    shutil.copyfile(source.with_suffix(".png"), docs / "scaling.png")
    print("\n".join(lines))


def write_csv(path, rows):
    """``rows`` (a header row first) as CSV, for Sphinx's csv-table."""
    with open(path, "w", newline="") as file:
        csv.writer(file).writerows(rows)


if __name__ == "__main__":
    main()
