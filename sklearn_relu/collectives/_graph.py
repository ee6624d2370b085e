"""A cluster's network as a graph: compute nodes, switches and directed links.

Pure Python, no MPI: the MPI backend, the in-process backend and the tests
build the same graph from the same spec, so they schedule the same trees.
See :doc:`/scaling` ("Networks with a shape").
"""

import re
from collections import deque
from dataclasses import dataclass, field

__all__ = ["NetworkGraph", "network_graph"]

_SPEC = re.compile(r"^(torus|mesh|switches|hosts):(\d+)x(\d+)$|^(switch):(\d+)$")


@dataclass(frozen=True)
class NetworkGraph:
    """A network as a graph: compute nodes, switches and directed links.

    Compute nodes are numbered from 0 to ``n_nodes - 1``, switches after
    them. Compute nodes run workers (graph node ``i`` is worker or rank ``i``);
    switches (nodes ``n_nodes .. n_nodes + n_switches - 1``) only forward.
    Every link is full duplex: both directions are in :attr:`links`, and each
    direction carries its own traffic.

    Attributes
    ----------
    n_nodes : int
        Compute nodes.
    n_switches : int
        Switch nodes, numbered after the compute nodes.
    links : tuple of (int, int)
        Directed links ``(from, to)``, sorted; both directions of every cable.
    spec : str or None
        The spec the graph was built from, if any.
    ranks_per_node : int
        Ranks that share each compute node (``hosts:HxR``: ``R``), else 1.
    """

    n_nodes: int
    n_switches: int
    links: tuple
    spec: str = None
    ranks_per_node: int = 1
    _adjacent: dict = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        adjacent = {u: [] for u in range(self.n_nodes + self.n_switches)}
        for u, v in self.links:
            adjacent[u].append(v)
        object.__setattr__(
            self, "_adjacent", {u: tuple(sorted(vs)) for u, vs in adjacent.items()}
        )

    def neighbours(self, node):
        """The nodes one link away from ``node``, sorted."""
        return self._adjacent[node]

    def is_switch(self, node):
        return node >= self.n_nodes

    def peers(self, node):
        """``{peer: route}`` for every compute node reached from compute node
        ``node`` through switches only (a direct link, or a path whose inner
        nodes are all switches), with the directed links of the shortest such
        path (ties broken by the lowest node numbers). A tree of MultiTree
        joins only peers: compute nodes never forward another tree's data."""
        routes, queue, seen = {}, deque([(node, ())]), {node}
        while queue:
            here, path = queue.popleft()
            for nxt in self.neighbours(here):
                if nxt in seen:
                    continue
                seen.add(nxt)
                hop = path + ((here, nxt),)
                if self.is_switch(nxt):
                    queue.append((nxt, hop))
                else:
                    routes[nxt] = hop
        return routes


def _grid_links(rows, cols, wrap):
    """The cables of a ``rows x cols`` mesh (torus if ``wrap``), node
    ``r * cols + c``; a 2-long ring dimension has one cable, not two."""
    cables = set()
    for r in range(rows):
        for c in range(cols):
            here = r * cols + c
            for dr, dc in ((0, 1), (1, 0)):
                rr, cc = r + dr, c + dc
                if wrap:
                    rr, cc = rr % rows, cc % cols
                elif rr >= rows or cc >= cols:
                    continue
                there = rr * cols + cc
                if there != here:
                    cables.add((min(here, there), max(here, there)))
    return cables


def _star_links(n_nodes, switch):
    return {(node, switch) for node in range(n_nodes)}


def _from_spec(spec):
    match = _SPEC.match(spec.strip().lower())
    if match is None:
        raise ValueError(
            f"network spec {spec!r} is not one of 'torus:RxC', 'mesh:RxC', "
            "'switches:LxH', 'hosts:HxR' or 'switch:N' (R, C, L, H, N positive "
            "integers)"
        )
    if match.group(4):
        kind, a, b = "switch", int(match.group(5)), 1
    else:
        kind, a, b = match.group(1), int(match.group(2)), int(match.group(3))
    if a < 1 or b < 1:
        raise ValueError(f"network spec {spec!r}: every size must be at least 1")
    if kind in ("torus", "mesh"):
        return a * b, 0, _grid_links(a, b, wrap=kind == "torus"), 1
    if kind == "switch":
        return a, 1, _star_links(a, a), 1
    if kind == "hosts":
        # H hosts on one switch; each host's R ranks share its one NIC.
        return a, 1, _star_links(a, a), b
    # switches:LxH: L leaves of H nodes each, the leaves under one spine.
    n_nodes, spine = a * b, a * b + a
    cables = {(node, n_nodes + node // b) for node in range(n_nodes)}
    cables |= {(n_nodes + leaf, spine) for leaf in range(a)}
    return n_nodes, a + 1, cables, 1


def network_graph(spec_or_edges):
    """The network a spec or an edge list describes.

    Parameters
    ----------
    spec_or_edges : str, iterable of (node, node) pairs, or NetworkGraph
        A spec: ``"torus:RxC"`` (``R x C`` nodes, node ``r * C + c``, linked
        to its four neighbours with wraparound), ``"mesh:RxC"`` (the same
        without wraparound), ``"switches:LxH"`` (``L`` leaf switches of ``H``
        nodes each, the leaves joined by one spine switch),
        ``"hosts:HxR"`` (``H`` hosts of ``R`` ranks each on one switch: the
        graph has the ``H`` hosts), ``"switch:N"`` (``N`` nodes on one
        switch). Or cables as pairs: integers are compute nodes and must be
        ``0 .. N-1``; any other hashable (a string such as ``"s0"``) names a
        switch.

    Returns
    -------
    NetworkGraph

    Examples
    --------
    >>> from sklearn_relu.collectives import network_graph
    >>> g = network_graph("torus:4x4")
    >>> g.n_nodes, len(g.links), g.neighbours(0)
    (16, 64, (1, 3, 4, 12))
    >>> g = network_graph([(0, 1), (1, 2), (2, "s"), (3, "s")])
    >>> g.n_nodes, g.n_switches, sorted(g.peers(2))
    (4, 1, [1, 3])
    """
    if isinstance(spec_or_edges, NetworkGraph):
        return spec_or_edges
    if isinstance(spec_or_edges, str):
        n_nodes, n_switches, cables, per_node = _from_spec(spec_or_edges)
        spec = spec_or_edges.strip().lower()
    else:
        n_nodes, n_switches, cables, per_node = *_from_edges(spec_or_edges), 1
        spec = None
    links = sorted({(u, v) for u, v in cables} | {(v, u) for u, v in cables})
    graph = NetworkGraph(n_nodes, n_switches, tuple(links), spec, per_node)
    _check_connected(graph)
    return graph


def _from_edges(edges):
    try:
        pairs = [tuple(edge) for edge in edges]
    except TypeError:
        raise TypeError(
            "network must be a spec string or an iterable of (node, node) pairs, "
            f"got {edges!r}"
        ) from None
    if not pairs or any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"network edges must be (node, node) pairs, got {edges!r}")
    nodes = {n for pair in pairs for n in pair}
    compute = sorted(n for n in nodes if isinstance(n, int) and not isinstance(n, bool))
    if compute != list(range(len(compute))) or not compute:
        raise ValueError(
            "the compute nodes of a network (its integer nodes) must be "
            f"0 .. N-1, got {compute}"
        )
    switches = sorted((n for n in nodes if n not in set(compute)), key=repr)
    number = {n: n for n in compute}
    number.update({s: len(compute) + i for i, s in enumerate(switches)})
    cables = set()
    for u, v in pairs:
        if u == v:
            raise ValueError(f"network edge {(u, v)!r} joins a node to itself")
        cables.add((number[u], number[v]))
    return len(compute), len(switches), cables


def _check_connected(graph):
    seen, stack = {0}, [0]
    while stack:
        for nxt in graph.neighbours(stack.pop()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    missing = sorted(set(range(graph.n_nodes + graph.n_switches)) - seen)
    if missing:
        raise ValueError(f"the network is not connected: nodes {missing} are cut off")
