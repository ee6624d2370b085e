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


def tree_allreduce(comm, part, schedule, wait_some):
    """The sum of every rank's ``part`` (1-D, the same shape and dtype on all
    ranks), on every rank, along ``schedule``.

    ``comm`` must have ``schedule.n_nodes`` ranks and carry no other
    point-to-point traffic (the backend gives it a duplicate of its own).
    ``wait_some(requests)`` blocks until at least one of a list of MPI
    requests completes and returns the indices of those that did.

    Each rank moves a message as soon as what it carries is complete rather
    than at the schedule's time steps: a partial sum goes up once every
    child's has arrived, a total goes down once it has arrived. The schedule
    keeps links free of contention when every rank keeps pace; a rank that
    lags only delays the messages that wait for it.
    """
    me = comm.Get_rank()
    n_nodes = schedule.n_nodes
    bounds = schedule.chunk_bounds(part.shape[0])
    total = np.empty_like(part)
    plans = [schedule.neighbours_in_tree(root, me) for root in range(n_nodes)]
    partial = {root: part[a:b].copy() for root, (a, b) in enumerate(bounds)}
    arrived = {root: {} for root in range(n_nodes)}
    requests, events = [], []

    def post(request, event):
        requests.append(request)
        events.append(event)

    def reduced(root):
        """Every child's partial sum of ``root``'s chunk is here: add them in
        the schedule's order, then send the sum up, or down if this is the root."""
        parent, children = plans[root]
        for child in children:
            partial[root] += arrived[root].pop(child)
        if parent is None:
            start, stop = bounds[root]
            total[start:stop] = partial[root]
            broadcast(root)
        else:
            post(comm.Isend(partial[root], dest=parent, tag=root), None)

    def broadcast(root):
        start, stop = bounds[root]
        for child in plans[root][1]:
            post(comm.Isend(total[start:stop], dest=child, tag=n_nodes + root), None)

    for root, (parent, children) in enumerate(plans):
        start, stop = bounds[root]
        for child in children:
            buffer = np.empty_like(partial[root])
            post(comm.Irecv(buffer, source=child, tag=root), ("up", root, child, buffer))
        if parent is not None:
            post(comm.Irecv(total[start:stop], source=parent, tag=n_nodes + root),
                 ("down", root))
    for root, (parent, children) in enumerate(plans):
        if not children:
            reduced(root)
    while any(request is not None for request in requests):
        live = [i for i, request in enumerate(requests) if request is not None]
        for index in wait_some([requests[i] for i in live]):
            i = live[index]
            event, requests[i] = events[i], None
            if event is None:  # a send completed
                continue
            if event[0] == "up":
                _, root, child, buffer = event
                arrived[root][child] = buffer
                if len(arrived[root]) == len(plans[root][1]):
                    reduced(root)
            else:
                broadcast(event[1])
    return total
