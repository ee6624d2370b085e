"""
MultiTree's schedule on a 4x4 torus
===================================

:func:`~sklearn_relu.collectives.multitree_schedule` builds one spanning tree
per node of the network. The tree rooted at node ``r`` sums chunk ``r`` of the
vector up to ``r`` (a reduce-scatter) and sends the sum back down (an
allgather). Trees are grown one time step at a time, and within a step no
directed link carries two trees' messages, so no message waits for another on
a link.

Left: the tree rooted at node 0, its edges coloured by the time step of the
allgather in which they carry the total (the reduce-scatter runs the same
edges child to parent, in reverse step order). Right: how many of the 64
directed links each step of the whole schedule uses (all 16 trees).
"""

import matplotlib.pyplot as plt
import numpy as np

from sklearn_relu.collectives import multitree_schedule

schedule = multitree_schedule("torus:4x4")
rows = cols = 4
position = {node: (node % cols, -(node // cols)) for node in range(rows * cols)}

fig, (ax, bars) = plt.subplots(1, 2, figsize=(9, 4))
for u, v in schedule.graph.links:
    (x0, y0), (x1, y1) = position[u], position[v]
    if abs(x0 - x1) + abs(y0 - y1) == 1:  # wraparound links are not drawn
        ax.plot([x0, x1], [y0, y1], color="0.85", lw=1, zorder=0)
colours = plt.cm.viridis(np.linspace(0, 0.9, schedule.n_steps))
for child, parent, step in schedule.trees[0]:
    (x0, y0), (x1, y1) = position[parent], position[child]
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                arrowprops=dict(arrowstyle="->", color=colours[step], lw=2,
                                connectionstyle="arc3,rad=0.15"))
for node, (x, y) in position.items():
    ax.scatter(x, y, s=300, color="tab:red" if node == 0 else "white",
               edgecolors="black", zorder=2)
    ax.text(x, y, str(node), ha="center", va="center", fontsize=8, zorder=3)
for step, colour in enumerate(colours):
    ax.plot([], [], color=colour, lw=2, label=f"step {step}")
ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
ax.set_title("tree rooted at node 0 (wraparound links not drawn)", fontsize=9)
ax.set_axis_off()

used = [0] * schedule.n_steps
for (step, _), load in schedule.link_loads().items():
    used[step] += load
bars.bar(range(schedule.n_steps), used, color=colours)
bars.axhline(len(schedule.graph.links), color="black", ls="--", lw=1)
bars.set(xlabel="time step", ylabel="directed links in use",
         title=f"{schedule.n_steps} steps, each link at most once a step")
fig.tight_layout()
plt.show()
