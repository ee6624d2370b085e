"""Collectives with a shape: networks as graphs and the schedules run on them.

Pure Python and NumPy, no MPI. :func:`network_graph` turns a spec
(``"torus:4x4"``, ``"mesh:4x4"``, ``"switches:4x4"``, ``"hosts:4x4"``,
``"switch:8"``) or an edge list into a :class:`NetworkGraph`;
:func:`multitree_schedule` builds MultiTree's trees on it;
:func:`hierarchy` groups workers by host. The MPI backend runs these
schedules with point-to-point messages
(``MPIBackend(topology="multitree" | "hierarchical")``), and the in-process
backend adds in the same order when told the same schedule
(``InProcessBackend(reduction=...)``), so both give the same model, bit for
bit. See :doc:`/scaling`.
"""

from ._graph import NetworkGraph, network_graph
from ._multitree import Hierarchy, MultiTreeSchedule, hierarchy, multitree_schedule

__all__ = [
    "Hierarchy",
    "MultiTreeSchedule",
    "NetworkGraph",
    "hierarchy",
    "multitree_schedule",
    "network_graph",
]
