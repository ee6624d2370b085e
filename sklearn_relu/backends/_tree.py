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
    return _TreeAllreduce(comm, part, schedule).run(wait_some)


class _TreeAllreduce:
    """One rank's side of one :func:`tree_allreduce`: its chunks' partial sums,
    the messages it awaits and the queue of what it sends to each neighbour.

    Every pending request has an event that says what its completion means:
    ``("sent", peer)``, the link to ``peer`` is free; ``("up", root, child,
    buffer)``, ``child``'s partial sum of ``root``'s chunk arrived;
    ``("down", root)``, the total of ``root``'s chunk arrived.
    """

    def __init__(self, comm, part, schedule):
        me = comm.Get_rank()
        self.comm = comm
        self.n_nodes = schedule.n_nodes
        self.bounds = schedule.chunk_bounds(part.shape[0])
        self.total = np.empty_like(part)
        # (parent, children) of this rank in each root's tree.
        self.plans = [schedule.neighbours_in_tree(root, me) for root in range(self.n_nodes)]
        self.partial = {root: part[a:b].copy() for root, (a, b) in enumerate(self.bounds)}
        self.arrived = {root: {} for root in range(self.n_nodes)}
        # What this rank sends to each neighbour, in order: ("up", root) to the
        # parent of root's tree, ("down", root) to a child.
        self.queues = schedule.sends(me)
        self.ready, self.sending = set(), {}
        self.requests, self.events = [], []

    def run(self, wait_some):
        """Post every receive, send what is ready, and complete requests until
        none is left; the total, on this rank."""
        self._post_receives()
        for root, (_, children) in enumerate(self.plans):
            if not children:
                self._reduced(root)
        requests, events = self.requests, self.events
        while any(request is not None for request in requests):
            live = [i for i, request in enumerate(requests) if request is not None]
            for index in wait_some([requests[i] for i in live]):
                i = live[index]
                event, requests[i] = events[i], None
                self._completed(event)
        return self.total

    def _post(self, request, event):
        self.requests.append(request)
        self.events.append(event)

    def _post_receives(self):
        """Every partial sum this rank will receive from its children, and
        every total from its parents, as pending receives."""
        comm, n_nodes = self.comm, self.n_nodes
        for root, (parent, children) in enumerate(self.plans):
            start, stop = self.bounds[root]
            for child in children:
                buffer = np.empty_like(self.partial[root])
                self._post(
                    comm.Irecv(buffer, source=child, tag=root), ("up", root, child, buffer)
                )
            if parent is not None:
                self._post(
                    comm.Irecv(self.total[start:stop], source=parent, tag=n_nodes + root),
                    ("down", root),
                )

    def _completed(self, event):
        if event[0] == "sent":
            self.sending[event[1]] = False
            self._pump(event[1])
        elif event[0] == "up":
            _, root, child, buffer = event
            self.arrived[root][child] = buffer
            if len(self.arrived[root]) == len(self.plans[root][1]):
                self._reduced(root)
        else:
            self._make_ready("down", event[1], self.plans[event[1]][1])

    def _pump(self, peer):
        """Send ``peer`` its next message if it is ready and the link is free."""
        queue = self.queues.get(peer)
        if not queue or self.sending.get(peer) or queue[0] not in self.ready:
            return
        kind, root = queue.pop(0)
        if kind == "up":
            request = self.comm.Isend(self.partial[root], dest=peer, tag=root)
        else:
            start, stop = self.bounds[root]
            request = self.comm.Isend(
                self.total[start:stop], dest=peer, tag=self.n_nodes + root
            )
        self.sending[peer] = True
        self._post(request, ("sent", peer))

    def _make_ready(self, kind, root, peers):
        self.ready.add((kind, root))
        for peer in peers:
            self._pump(peer)

    def _reduced(self, root):
        """Every child's partial sum of ``root``'s chunk is here: add them in
        the schedule's order, then send the sum up, or down if this is the root."""
        parent, children = self.plans[root]
        for child in children:
            self.partial[root] += self.arrived[root].pop(child)
        if parent is None:
            start, stop = self.bounds[root]
            self.total[start:stop] = self.partial[root]
            self._make_ready("down", root, children)
        else:
            self._make_ready("up", root, [parent])
