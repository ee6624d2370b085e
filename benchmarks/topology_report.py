"""Table and figure of benchmarks/run_topology.sh: allreduce times and fits on
networks with a shape, with the targets' ratios.

    python benchmarks/topology_report.py \\
        --allreduce benchmarks/results/topology_allreduce*.jsonl \\
        --fits benchmarks/results/topology_fits.jsonl

Writes ``benchmarks/results/topology.md`` and ``topology.png`` (and copies the
figure to ``docs/figures/topology.png``).
"""

import json
import shutil
from collections import defaultdict
from pathlib import Path

from sklearn_relu.collectives import multitree_schedule

RESULTS = Path(__file__).resolve().parent / "results"
FIGURE = RESULTS / "topology.png"
DOCS_FIGURE = RESULTS.parent.parent / "docs" / "figures" / "topology.png"


def rate_bits(label):
    """'10mbit' -> 1e7, '2500kbit' -> 2.5e6 (anything after a comma is a note)."""
    label = label.split(",")[0].strip()
    for unit, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if label.endswith(unit):
            return float(label[: -len(unit)]) * scale
    return float(label)


def multitree_wire_ms(spec, nbytes, rate):
    """The MultiTree schedule's time on the wire: each of its steps moves one
    chunk (1/N of the vector) per link, twice (reduce-scatter, allgather)."""
    schedule = multitree_schedule(spec)
    return 2 * schedule.n_steps * nbytes / schedule.n_nodes * 8 / rate * 1e3


def uplink_chunks(spec):
    """Chunk transfers (1/N of the vector each) on the busiest leaf uplink
    direction over a whole allreduce on ``switches:LxH``: (MultiTree's
    schedule, the least any allreduce that reduces and broadcasts whole
    chunks needs, MPICH's ring in rank order).

    The least: in the reduce-scatter each leaf sends up a partial sum of every
    chunk rooted outside it, ``N (L - 1) / L``; in the allgather every chunk
    must come down into the ``L - 1`` leaves that do not hold it, and what
    comes down one leaf's uplink went up another's, ``N (L - 1) / L`` again on
    average. The ring crosses each leaf boundary once a direction and carries
    a chunk across it in each of its ``2 (N - 1)`` steps.
    """
    schedule = multitree_schedule(spec)
    graph = schedule.graph
    leaf = {node: graph.neighbours(node)[0] for node in range(graph.n_nodes)}
    up, down = defaultdict(int), defaultdict(int)
    for edges in schedule.trees:
        for child, parent, _ in edges:
            a, b = leaf[parent], leaf[child]
            if a != b:  # the allgather goes a -> b, the reduce-scatter b -> a
                up[a] += 1
                down[b] += 1
                up[b] += 1
                down[a] += 1
    n, leaves = graph.n_nodes, graph.n_switches - 1
    return (max(max(up.values()), max(down.values())), 2 * n * (leaves - 1) // leaves,
            2 * (n - 1))


def allreduce_tables(rows):
    out, targets = [], []
    by_network = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        by_network[(row["network"], row["rate"])][row["bytes"]][row["label"]] = row
    for (network, _), sizes in by_network.items():
        ours = "hierarchical" if network.startswith("hosts:") else "multitree"
        any_row = next(iter(next(iter(sizes.values())).values()))
        rate = any_row["rate"]
        out.append(f"\n### `{network}`, {rate} a link each way\n")
        labels = sorted({label for cells in sizes.values() for label in cells
                         if label.startswith("mpich")})
        header = ["payload"] + labels + [ours, "MPICH's best", f"{ours} speed-up"]
        if not network.startswith("hosts:"):
            header.append(f"{ours} on the wire")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        for nbytes in sorted(sizes):
            cells = sizes[nbytes]
            mpich = {label: cells[label]["ms_median"] for label in labels if label in cells}
            best = min(mpich, key=mpich.get)
            mine = cells.get(ours, {}).get("ms_median")
            speedup = mpich[best] / mine if mine else float("nan")
            line = [f"{nbytes / 1024:g} kB"] + [
                f"{mpich[label]:.1f}" if label in mpich else "-" for label in labels
            ] + [f"{mine:.1f}" if mine else "-", f"{best[6:]}", f"**{speedup:.2f}x**"]
            if network.startswith("switches:"):
                # The uplinks (a quarter of the rate) carry the most chunks.
                most = uplink_chunks(network)[0]
                line.append(f"{most * nbytes / 16 * 8 / (rate_bits(rate) / 4) * 1e3:.1f}")
            elif not network.startswith("hosts:"):
                line.append(f"{multitree_wire_ms(network, nbytes, rate_bits(rate)):.1f}")
            out.append("| " + " | ".join(line) + " |")
            targets.append((network, rate, nbytes, speedup, best))
        if network.startswith("switches:"):
            most, least, ring = uplink_chunks(network)
            out.append(
                f"\nUplinks: MultiTree's trees put at most {most} chunk transfers "
                "(1/16 of the vector each) on one leaf uplink direction over the "
                f"allreduce, against {least} that an allreduce of whole chunks needs "
                f"and {ring} for a ring in rank order (benchmarks/topology_report.py, "
                "`uplink_chunks`). With uplinks at a quarter of the node rate the "
                "uplinks set the time: the bound is "
                f"{least} x (V / 16) / (rate / 4), the ring's {ring} x."
            )
    return out, targets


def to_target(row, key):
    """A fit's time or NIC bytes to the target: measured, or for a capped fit
    extrapolated from its measured steps to the steps an in-process fit needs."""
    if row["reached"]:
        return row["wall_seconds"] if key == "time" else row["rx_bytes_per_rank_mean"]
    return row["wall_seconds_to_target"] if key == "time" else row["rx_bytes_to_target"]


def fit_table(rows):
    out = ["\n| network, rate | scheme | steps to 1e-6 | bytes received at a node's NIC "
           "to 1e-6 | time to 1e-6 (s) | network ms/step |", "|---|---|---|---|---|---|"]
    for row in rows:
        steps = row["steps"] if row["reached"] else (
            f"{row['steps_to_target']} (measured {row['steps']}, then extrapolated)")
        out.append(
            f"| `{row['network']}`, {row['rate']} | {row['label']} | {steps} | "
            f"{to_target(row, 'bytes') / 1e6:.2f} MB | {to_target(row, 'time'):.1f} | "
            f"{row['network_ms_per_step_mean']:.1f} |"
        )
    return out


def fit_targets(rows):
    by = {(r["network"].split(":")[0], r["label"]): r for r in rows}
    out = []
    tree, mpich, sgd = (by.get(("torus", k)) for k in
                        ("intsgd8-multitree", "intsgd8-allreduce", "sgd-allreduce"))
    if tree and mpich and sgd:
        t = to_target(tree, "time")
        out.append(f"- `torus:4x4` fit: IntSGD over MultiTree reaches 1e-6 "
                   f"**{to_target(mpich, 'time') / t:.2f}x** sooner than IntSGD over "
                   f"MPICH's allreduce (target 1.5x) and **{to_target(sgd, 'time') / t:.1f}x** "
                   "sooner than SGD over MPICH's allreduce (target 8x).")
    hier, sgd_h, node_aware = (by.get(("hosts", k)) for k in
                               ("intsgd8-hierarchical", "sgd-hierarchical",
                                "sgd-allreduce-node-aware"))
    if hier and sgd_h:
        out.append(f"- `hosts:4x4`: hierarchical IntSGD takes {hier['steps']} steps, SGD "
                   f"{sgd_h['steps']}: **{hier['steps'] / sgd_h['steps'] - 1:+.1%}** "
                   "(target at most +3%).")
    if hier and node_aware:
        ratio = to_target(node_aware, "bytes") / to_target(hier, "bytes")
        def steps_bytes(row):
            steps = row["steps"] if row["reached"] else row["steps_to_target"]
            return row["rx_bytes_per_step_mean"] * steps

        out.append(f"- `hosts:4x4`: bytes at each host's NIC to 1e-6, SGD over MPICH's "
                   f"node-aware allreduce / hierarchical IntSGD: **{ratio:.1f}x** with the "
                   "start's exact statistics (the same for both), **"
                   f"{steps_bytes(node_aware) / steps_bytes(hier):.1f}x** for the steps "
                   "alone (target 7.5x).")
    return out


def figure(rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((row["network"], row["rate"]) for row in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6),
                             squeeze=False)
    for ax, (network, rate) in zip(axes[0], panels):
        mine = [r for r in rows if r["network"] == network and r["rate"] == rate]
        sizes = sorted({r["bytes"] for r in mine})
        best = []
        for nbytes in sizes:
            times = [r["ms_median"] for r in mine
                     if r["bytes"] == nbytes and r["label"].startswith("mpich")]
            best.append(min(times))
        ax.plot(sizes, best, "o-", label="MPICH's best", color="gray")
        for label, style in (("mpich-ring", "s--"), ("multitree", "o-"),
                             ("hierarchical", "o-"), ("mpich-node-aware", "^--")):
            points = sorted((r["bytes"], r["ms_median"]) for r in mine if r["label"] == label)
            if points:
                ax.plot(*zip(*points), style, label=label.replace("mpich-", "MPICH "))
        ax.set(xscale="log", yscale="log", xlabel="payload (bytes)",
               title=f"{network}, {rate}")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("one allreduce (ms)")
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=110)
    shutil.copyfile(FIGURE, DOCS_FIGURE)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allreduce", nargs="+", type=Path, required=True)
    parser.add_argument("--fits", type=Path, default=None)
    args = parser.parse_args(argv)
    allreduce = [json.loads(line) for path in args.allreduce for line in open(path)]
    fits = []
    if args.fits is not None and args.fits.exists():
        fits = [json.loads(line) for line in open(args.fits)]
    lines = ["# Networks with a shape: allreduce and fits", "",
             "Made by `sudo benchmarks/run_topology.sh` (median of the repeats; one "
             "allreduce of float64, the slowest rank's time). Load average during the "
             f"runs: {min(r['load_average'] for r in allreduce):.1f} to "
             f"{max(r['load_average'] for r in allreduce):.1f}."]
    tables, targets = allreduce_tables(allreduce)
    lines += tables
    lines += ["", "## Targets", ""]
    for network, rate, nbytes, speedup, best in targets:
        lines.append(f"- `{network}` at {rate}, {nbytes / 1024:g} kB: {speedup:.2f}x "
                     f"MPICH's best ({best[6:]})")
    if fits:
        lines += ["", "## Fits to relative error 1e-6", ""] + fit_table(fits)
        lines += [""] + fit_targets(fits)
    text = "\n".join(lines) + "\n"
    (RESULTS / "topology.md").write_text(text)
    print(text)
    figure(allreduce)


if __name__ == "__main__":
    main()
