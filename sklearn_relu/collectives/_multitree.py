"""MultiTree: one spanning tree per node, scheduled so no link carries two trees
at once (Huang et al., "Communication Algorithm-Architecture Co-Design for
Distributed Deep Learning", ISCA 2021, Algorithm 1).

The vector is cut into one chunk per node; the tree rooted at node ``r``
reduces chunk ``r`` up to ``r`` (a reduce-scatter) and sends the sum back down
(an allgather). Pure Python and NumPy: :meth:`MultiTreeSchedule.allreduce` is
the reference the MPI engine (``sklearn_relu/backends/_tree.py``) must equal,
bit for bit, and what the in-process backend runs when told the schedule.
See :doc:`/scaling` ("MultiTree").
"""

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ._graph import NetworkGraph, network_graph

__all__ = ["Hierarchy", "MultiTreeSchedule", "hierarchy", "multitree_schedule"]


@dataclass(frozen=True)
class MultiTreeSchedule:
    """The trees of a MultiTree allreduce and the time step of every edge.

    Attributes
    ----------
    graph : NetworkGraph
        The network the trees were built on.
    trees : tuple of tuple of (int, int, int)
        ``trees[r]``: the edges ``(child, parent, step)`` of the tree rooted at
        compute node ``r``, in the order they were added. In the allgather,
        ``parent`` sends to ``child`` at time step ``step``; in the
        reduce-scatter, ``child`` sends to ``parent`` at time step
        ``n_steps - 1 - step``.
    n_steps : int
        Time steps of each phase.
    k : int or None
        The tree arity bound used (a parent adds at most ``k - 1`` children
        in one step), or None for none.
    """

    graph: NetworkGraph
    trees: tuple
    n_steps: int
    k: int = None

    @property
    def n_nodes(self):
        return self.graph.n_nodes

    # As a reduction of W workers' vectors (``InProcessBackend(reduction=)``):
    # one summand per worker, each encoded by its own worker.
    @property
    def n_workers(self):
        return self.n_nodes

    @property
    def n_summands(self):
        return self.n_nodes

    @property
    def encoders(self):
        """The worker that encodes each summand: every worker its own."""
        return tuple(range(self.n_nodes))

    def summand_vectors(self, vectors):
        """The vectors to encode and sum: the workers' own."""
        return list(vectors)

    def chunk_bounds(self, n_values):
        """``[(start, stop)]``: the slice of a vector of ``n_values`` that the
        tree rooted at each node reduces (as equal as integers allow)."""
        n = self.n_nodes
        return [(r * n_values // n, (r + 1) * n_values // n) for r in range(n)]

    # Derived from the trees once (a schedule is immutable): the engine and
    # the in-process reference look them up at every step.
    @cached_property
    def _families(self):
        """``_families[root][node]``: (parent or None, children in addition order)."""
        families = []
        for root, edges in enumerate(self.trees):
            parent_of = {child: parent for child, parent, _ in edges}
            kids = defaultdict(list)
            for child, parent, step in sorted(edges, key=lambda e: (-e[2], e[0])):
                kids[parent].append(child)
            families.append({
                node: (parent_of.get(node), tuple(kids[node])) for node in range(self.n_nodes)
            })
        return tuple(families)

    @cached_property
    def _rounds(self):
        out = [[] for _ in range(self.n_steps)]
        for root, edges in enumerate(self.trees):
            for child, parent, step in edges:
                out[step].append((root, child, parent))
        return tuple(tuple(sorted(edges)) for edges in out)

    @cached_property
    def _sends(self):
        """``_sends[node][peer]``: what ``node`` sends to ``peer``, in order."""
        sends = [defaultdict(list) for _ in range(self.n_nodes)]
        for t in reversed(range(self.n_steps)):  # the reduce-scatter, child to parent
            for root, child, parent in self._rounds[t]:
                sends[child][parent].append(("up", root))
        for t in range(self.n_steps):  # the allgather, parent to child
            for root, child, parent in self._rounds[t]:
                sends[parent][child].append(("down", root))
        return tuple({peer: tuple(q) for peer, q in node.items()} for node in sends)

    def children(self, root, node):
        """``node``'s children in the tree of ``root``, in the order their
        partial sums are added: latest-joined first (their sums arrive first
        in the reduce-scatter), then by node number."""
        return list(self._families[root][node][1])

    def neighbours_in_tree(self, root, node):
        """``(parent, children)`` of ``node`` in the tree of ``root``: parent
        None at the root; children in :meth:`children` order."""
        parent, children = self._families[root][node]
        return parent, list(children)

    def sends(self, node):
        """``{peer: [(kind, root), ...]}``: the messages ``node`` sends to each
        neighbour, in the schedule's order: its partial sums up (``"up"``),
        latest time step first, then the totals down (``"down"``)."""
        return {peer: list(queue) for peer, queue in self._sends[node].items()}

    def rounds(self):
        """``rounds[t]``: the edges ``(root, child, parent)`` added at time step
        ``t``, sorted. The reduce-scatter runs them in reverse order of ``t``
        (child to parent), the allgather in order (parent to child)."""
        return [list(edges) for edges in self._rounds]

    def allreduce(self, parts):
        """The sum of ``parts`` (one vector per node), added along the trees.

        Chunk ``r`` of the result is node ``r``'s chunk plus its children's
        partial sums (each the same, recursively) in :meth:`children` order:
        the additions the MPI engine makes, so the same bits.
        """
        parts = [np.asarray(p) for p in parts]
        if len(parts) != self.n_nodes:
            raise ValueError(
                f"the schedule has {self.n_nodes} nodes, got {len(parts)} vectors"
            )
        total = np.empty_like(parts[0])
        for root, (start, stop) in enumerate(self.chunk_bounds(parts[0].shape[0])):
            total[start:stop] = self._partial(root, root, parts, start, stop)
        return total

    def _partial(self, root, node, parts, start, stop):
        acc = parts[node][start:stop].copy()
        for child in self._families[root][node][1]:
            acc += self._partial(root, child, parts, start, stop)
        return acc

    def link_loads(self):
        """``{(step, (u, v)): trees}``: how many trees use each directed link
        in each allgather step (1 everywhere: the schedule is contention-free;
        the reduce-scatter uses the reverse links, as many times)."""
        loads = defaultdict(int)
        for root, edges in enumerate(self.trees):
            for child, parent, step in edges:
                for link in self.graph.peers(parent)[child]:
                    loads[(step, link)] += 1
        return dict(loads)


def multitree_schedule(network, k=None):
    """Build MultiTree's trees on ``network``, greedily, one time step at a time.

    Every tree starts as its root. In each time step the trees take turns,
    round-robin by root; in its turn a tree adds one node: a
    peer of a node that was in the tree when the step began (a node that
    joins in step ``t`` parents nobody in step ``t``, or the reduce-scatter
    would send its partial sum before its children's parts arrived), reached
    through links no tree has used in this step. Turns repeat until no tree
    can grow; then the next step starts. Parents are tried latest-joined
    first, peers nearest first, and a node joins only through the shortest
    route any member of the tree has to it (on leaf switches a tree then
    crosses each leaf's uplink once per direction).

    Parameters
    ----------
    network : str, edge list or NetworkGraph
        See :func:`network_graph`.
    k : int or None, default=None
        Bound the trees' arity: a parent adds at most ``k - 1`` children in
        one step (``k >= 2``). None: as many as free links allow.

    Returns
    -------
    MultiTreeSchedule

    Examples
    --------
    >>> from sklearn_relu.collectives import multitree_schedule
    >>> s = multitree_schedule("torus:4x4")
    >>> s.n_steps, len(s.trees), len(s.trees[0])   # 15 edges in every tree
    (5, 16, 15)
    >>> max(s.link_loads().values())                 # no link carries two trees
    1
    """
    graph = network_graph(network)
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 2):
        raise ValueError(f"k must be an integer >= 2 or None, got {k!r}")
    n = graph.n_nodes
    peers = {
        u: sorted(graph.peers(u).items(), key=lambda item: (len(item[1]), item[0]))
        for u in range(n)
    }
    joined = [{root: -1} for root in range(n)]  # node -> the step it joined
    trees = [[] for _ in range(n)]
    step = 0
    while any(len(members) < n for members in joined):
        used, fathered = set(), defaultdict(int)
        # Latest-joined parents first: on a switch this chains the trees as
        # a ring does and meets the N - 1 step bound (earliest-first: N).
        before = [sorted(m, key=lambda node, m=m: (-m[node], node)) for m in joined]
        grew, grew_this_step = True, False
        while grew:
            grew = False
            for root in range(n):
                edge = _next_edge(root, before[root], joined[root], peers, used, fathered, k)
                if edge is None:
                    continue
                parent, child, route = edge
                joined[root][child] = step
                trees[root].append((child, parent, step))
                used.update(route)
                fathered[(root, parent)] += 1
                grew = grew_this_step = True
        if not grew_this_step:  # pragma: no cover - a connected graph always grows
            raise RuntimeError("MultiTree could not grow any tree")
        step += 1
    return MultiTreeSchedule(graph, tuple(tuple(t) for t in trees), step, k)


def _next_edge(root, parents, members, peers, used, fathered, k):
    if len(members) == len(peers):
        return None
    # A node joins through the shortest route any member has to it: a tree
    # that already reached a leaf switch grows inside it rather than sending
    # a second copy down the leaf's uplink.
    nearest = {}
    for member in members:
        for child, route in peers[member]:
            if child not in members:
                nearest[child] = min(nearest.get(child, len(route)), len(route))
    for parent in parents:
        if k is not None and fathered[(root, parent)] >= k - 1:
            continue
        for child, route in peers[parent]:
            if (
                child not in members
                and len(route) == nearest[child]
                and not any(link in used for link in route)
            ):
                return parent, child, route
    return None


def sum_in_order(vectors):
    """``vectors[0] + vectors[1] + ...``, added left to right, in their dtype."""
    acc = np.array(vectors[0], copy=True)
    for vector in vectors[1:]:
        acc += vector
    return acc


@dataclass(frozen=True)
class Hierarchy:
    """Workers grouped by host: each host's workers are summed first, exactly
    and in worker order (through shared memory, off the network), and the
    hosts' sums are then reduced along a MultiTree schedule over the hosts.

    A summable compressor then encodes each host's sum once (IntSGD's levels
    count hosts, not workers). Build one with :func:`hierarchy`.

    Attributes
    ----------
    hosts : tuple of tuple of int
        The workers of each host, in order; host ``h`` is graph node ``h``.
    schedule : MultiTreeSchedule
        The hosts' allreduce.
    """

    hosts: tuple
    schedule: MultiTreeSchedule

    @property
    def n_hosts(self):
        return len(self.hosts)

    # As a reduction of W workers' vectors (``InProcessBackend(reduction=)``):
    # one summand per host, encoded by the host's first worker.
    @property
    def n_workers(self):
        return sum(len(members) for members in self.hosts)

    @property
    def n_summands(self):
        return self.n_hosts

    @property
    def encoders(self):
        """The worker that encodes each host's sum: the host's first."""
        return tuple(members[0] for members in self.hosts)

    def summand_vectors(self, vectors):
        """The vectors to encode and sum: the hosts' sums."""
        return self.host_sums(vectors)

    def allreduce(self, parts):
        """The sum of the hosts' ``parts`` along :attr:`schedule`."""
        return self.schedule.allreduce(parts)

    def host_sums(self, vectors):
        """Each host's sum of its workers' ``vectors``, added in worker order."""
        return [sum_in_order([vectors[w] for w in members]) for members in self.hosts]


def hierarchy(hosts, network=None, k=None):
    """Group workers by host for a hierarchical allreduce.

    Parameters
    ----------
    hosts : list of list of int
        The workers of each host (every worker in exactly one host). Under
        MPI they are the ranks that share memory (``MPI.COMM_TYPE_SHARED``),
        hosts ordered by their lowest rank: pass the same grouping to an
        in-process run to get the same model.
    network : str, edge list, NetworkGraph or None, default=None
        The hosts' network (one node per host); None: every host on one
        switch (``"switch:H"``).
    k : int or None
        See :func:`multitree_schedule`.

    Examples
    --------
    >>> from sklearn_relu.collectives import hierarchy
    >>> h = hierarchy([[0, 1], [2, 3]])
    >>> h.n_hosts, h.schedule.n_steps
    (2, 1)
    """
    groups = tuple(tuple(int(w) for w in members) for members in hosts)
    flat = sorted(w for members in groups for w in members)
    if not groups or any(not members for members in groups) or flat != list(
        range(len(flat))
    ):
        raise ValueError(
            "hosts must list every worker 0 .. W-1 exactly once, in non-empty "
            f"groups; got {hosts!r}"
        )
    graph = network_graph(f"switch:{len(groups)}" if network is None else network)
    if graph.n_nodes != len(groups):
        raise ValueError(
            f"the hosts' network has {graph.n_nodes} compute nodes for "
            f"{len(groups)} hosts"
        )
    return Hierarchy(groups, multitree_schedule(graph, k=k))
