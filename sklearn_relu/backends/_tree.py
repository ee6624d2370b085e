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

    No rank waits for a time step to end: a partial sum goes up once every
    child's has arrived, a total goes down once it has arrived. But each rank
    sends to a neighbour one message at a time, in the schedule's order (the
    reduce-scatter's time steps, then the allgather's), so that a message
    ready early never shares a link with the one the schedule put there
    before it.
    """
    me = comm.Get_rank()
    n_nodes = schedule.n_nodes
    bounds = schedule.chunk_bounds(part.shape[0])
    total = np.empty_like(part)
    plans = [schedule.neighbours_in_tree(root, me) for root in range(n_nodes)]
    partial = {root: part[a:b].copy() for root, (a, b) in enumerate(bounds)}
    arrived = {root: {} for root in range(n_nodes)}
    # What this rank sends to each neighbour, in order: ("up", root) to the
    # parent of root's tree, ("down", root) to a child.
    queues = schedule.sends(me)
    ready, sending = set(), {}
    requests, events = [], []

    def post(request, event):
        requests.append(request)
        events.append(event)

    def pump(peer):
        """Send ``peer`` its next message if it is ready and the link is free."""
        queue = queues.get(peer)
        if not queue or sending.get(peer) or queue[0] not in ready:
            return
        kind, root = queue.pop(0)
        if kind == "up":
            request = comm.Isend(partial[root], dest=peer, tag=root)
        else:
            start, stop = bounds[root]
            request = comm.Isend(total[start:stop], dest=peer, tag=n_nodes + root)
        sending[peer] = True
        post(request, ("sent", peer))

    def make_ready(kind, root, peers):
        ready.add((kind, root))
        for peer in peers:
            pump(peer)

    def reduced(root):
        """Every child's partial sum of ``root``'s chunk is here: add them in
        the schedule's order, then send the sum up, or down if this is the root."""
        parent, children = plans[root]
        for child in children:
            partial[root] += arrived[root].pop(child)
        if parent is None:
            start, stop = bounds[root]
            total[start:stop] = partial[root]
            make_ready("down", root, children)
        else:
            make_ready("up", root, [parent])

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
            if event[0] == "sent":
                sending[event[1]] = False
                pump(event[1])
            elif event[0] == "up":
                _, root, child, buffer = event
                arrived[root][child] = buffer
                if len(arrived[root]) == len(plans[root][1]):
                    reduced(root)
            else:
                make_ready("down", event[1], plans[event[1]][1])
    return total
