"""MultiTree's allreduce on MPI ranks, with point-to-point messages.

Runs a :class:`~sklearn_relu.collectives.MultiTreeSchedule` (rank ``i`` is
graph node ``i``): a reduce-scatter up the trees, time step by time step,
then an allgather down them. Every rank adds the partial sums it receives in
the order :meth:`~sklearn_relu.collectives.MultiTreeSchedule.allreduce` does
(latest time step first, then by child), so the result is that reference's,
bit for bit, on every rank.
"""

import numpy as np

__all__ = ["tree_allreduce"]


def tree_allreduce(comm, part, schedule, wait_all):
    """The sum of every rank's ``part`` (1-D, the same shape and dtype on all
    ranks), on every rank, along ``schedule``.

    ``comm`` must have ``schedule.n_nodes`` ranks and carry no other
    point-to-point traffic (the backend gives it a duplicate of its own).
    ``wait_all(requests)`` completes a list of MPI requests.
    """
    me, n_nodes = comm.Get_rank(), schedule.n_nodes
    bounds = schedule.chunk_bounds(part.shape[0])
    rounds = schedule.rounds()
    partial = {root: part[start:stop].copy() for root, (start, stop) in enumerate(bounds)}
    # Reduce-scatter: an edge added at step t carries the child's partial sum
    # at time step n_steps - 1 - t; the latest-added edges go first.
    for edges in reversed(rounds):
        requests, arriving = [], []
        for root, child, parent in edges:
            if child == me:
                requests.append(comm.Isend(partial[root], dest=parent, tag=root))
            elif parent == me:
                buffer = np.empty_like(partial[root])
                requests.append(comm.Irecv(buffer, source=child, tag=root))
                arriving.append((root, child, buffer))
        wait_all(requests)
        for root, _, buffer in arriving:  # edges are sorted by (root, child)
            partial[root] += buffer
    # Allgather: the roots' sums travel down the trees in step order.
    total = np.empty_like(part)
    start, stop = bounds[me]
    total[start:stop] = partial[me]
    for edges in rounds:
        requests = []
        for root, child, parent in edges:
            start, stop = bounds[root]
            if parent == me:
                requests.append(comm.Isend(total[start:stop], dest=child, tag=n_nodes + root))
            elif child == me:
                requests.append(comm.Irecv(total[start:stop], source=parent, tag=n_nodes + root))
        wait_all(requests)
    return total
