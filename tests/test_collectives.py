"""Networks as graphs and MultiTree's schedule (sklearn_relu.collectives).

Properties over random connected graphs (with and without switches), tori and
meshes: every tree spans every compute node; within a time step no directed
link carries two trees; a reduce-scatter then an allgather run message by
message along the schedule (a simulation written here, apart from the
package's reference) sends every partial sum only once it is complete, and
ends with the exact sum on every node.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from sklearn_relu.collectives import (
    hierarchy,
    multitree_schedule,
    network_graph,
)

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def connected_graphs(draw):
    """Cables of a random connected network: a random spanning tree of the
    compute nodes and switches, plus random extra cables."""
    n_nodes = draw(st.integers(1, 9))
    n_switches = draw(st.integers(0, 3))
    names = list(range(n_nodes)) + [f"s{i}" for i in range(n_switches)]
    order = draw(st.permutations(names))
    cables = set()
    for i in range(1, len(order)):
        j = draw(st.integers(0, i - 1))
        cables.add(frozenset((order[i], order[j])))
    for _ in range(draw(st.integers(0, 6))):
        a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
        if a != b:
            cables.add(frozenset((a, b)))
    if n_nodes == 1 and not cables:
        return "switch:1"
    return [tuple(sorted(c, key=repr)) for c in cables]


grids = st.builds(
    lambda kind, r, c: f"{kind}:{r}x{c}",
    st.sampled_from(["torus", "mesh"]), st.integers(1, 5), st.integers(1, 5),
)
networks = st.one_of(grids, connected_graphs(), st.sampled_from(
    ["switches:2x3", "switches:4x4", "hosts:4x4", "switch:7"]
))


def simulate(schedule, parts):
    """Run the schedule message by message: returns every node's result, and
    checks that a partial sum leaves a node only with its whole subtree in
    it."""
    n = schedule.n_nodes
    rounds = schedule.rounds()
    bounds = schedule.chunk_bounds(parts[0].shape[0])
    partial = {(node, root): parts[node][a:b].copy() for node in range(n)
               for root, (a, b) in enumerate(bounds)}
    contributors = {(node, root): {node} for node in range(n) for root in range(n)}
    subtree = {}
    for root, edges in enumerate(schedule.trees):
        children = {}
        for child, parent, _ in edges:
            children.setdefault(parent, []).append(child)

        def below(node, children=children):
            out = {node}
            for kid in children.get(node, []):
                out |= below(kid)
            return out
        for node in range(n):
            subtree[(node, root)] = below(node)
    for edges in reversed(rounds):
        sent = [(root, child, parent, partial[(child, root)].copy()) for root, child, parent in edges]
        for root, child, parent, _ in sent:
            assert contributors[(child, root)] == subtree[(child, root)], "sent early"
        for root, child, parent, value in sent:
            partial[(parent, root)] += value
            contributors[(parent, root)] |= contributors[(child, root)]
    results = [np.full_like(parts[0], -1) for _ in range(n)]
    have = {(root, root) for root in range(n)}
    for root, (a, b) in enumerate(bounds):
        assert contributors[(root, root)] == set(range(n))
        results[root][a:b] = partial[(root, root)]
    for edges in rounds:
        for root, child, parent in edges:
            assert (parent, root) in have, "forwarded a chunk it did not have"
        for root, child, parent in edges:
            a, b = bounds[root]
            results[child][a:b] = results[parent][a:b]
            have.add((child, root))
    return results


@SETTINGS
@given(network=networks, k=st.sampled_from([None, 2, 3]), length=st.integers(0, 40),
       seed=st.integers(0, 2**32 - 1))
def test_multitree_spans_is_contention_free_and_sums_exactly(network, k, length, seed):
    schedule = multitree_schedule(network, k=k)
    graph = schedule.graph
    n = graph.n_nodes
    for root, edges in enumerate(schedule.trees):
        assert len(edges) == n - 1
        members = {root} | {child for child, _, _ in edges}
        assert members == set(range(n))
        joined = {root: -1} | {child: step for child, _, step in edges}
        for child, parent, step in edges:
            # A parent was in the tree before the step its child joined in.
            assert joined[parent] < step
            assert child in graph.peers(parent)
        if k is not None:
            for step in range(schedule.n_steps):
                per_parent = {}
                for _, parent, s in edges:
                    if s == step:
                        per_parent[parent] = per_parent.get(parent, 0) + 1
                assert all(c <= k - 1 for c in per_parent.values())
    assert all(load == 1 for load in schedule.link_loads().values())
    rng = np.random.default_rng(seed)
    parts = [rng.integers(-1000, 1000, size=length) for _ in range(n)]
    exact = np.sum(parts, axis=0)
    for result in simulate(schedule, parts):
        assert_array_equal(result, exact)
    assert_array_equal(schedule.allreduce(parts), exact)


@SETTINGS
@given(network=networks, seed=st.integers(0, 2**32 - 1))
def test_the_reference_adds_floats_in_the_simulated_order(network, seed):
    # The package's reference (what in-process runs and MPI must equal) and
    # the message-by-message simulation add floats in the same order.
    schedule = multitree_schedule(network)
    rng = np.random.default_rng(seed)
    parts = [rng.standard_normal(23) * 10.0 ** rng.integers(-8, 8) for _ in range(schedule.n_nodes)]
    assert_array_equal(schedule.allreduce(parts), simulate(schedule, parts)[0])


def test_torus_and_mesh_schedules_are_near_the_link_bound():
    # A 4x4 torus: 16 trees x 15 edges over 64 directed links is at least 4
    # steps (and its diameter is 4); a 4x4 mesh has 48 links: at least 5.
    assert multitree_schedule("torus:4x4").n_steps <= 5
    assert multitree_schedule("mesh:4x4").n_steps <= 8
    # N nodes on one switch: each node's one uplink sends once a step, so
    # N(N-1) edges take at least N-1 steps, which the schedule meets.
    assert multitree_schedule("switch:8").n_steps == 7


def test_specs_build_the_shapes_they_name():
    torus = network_graph("torus:3x4")
    assert torus.n_nodes == 12 and torus.n_switches == 0
    assert len(torus.links) == 2 * 2 * 12  # two cables a node, both directions
    assert network_graph("torus:2x2").neighbours(0) == (1, 2)  # no double cables
    mesh = network_graph("mesh:2x3")
    assert len(mesh.links) == 2 * 7
    leaves = network_graph("switches:4x4")
    assert (leaves.n_nodes, leaves.n_switches) == (16, 5)
    assert len(leaves.peers(0)[1]) == 2 and len(leaves.peers(0)[4]) == 4
    hosts = network_graph("hosts:4x8")
    assert hosts.n_nodes == 4 and hosts.ranks_per_node == 8


@pytest.mark.parametrize("spec, match", [
    ("ring:4", "is not one of"),
    ("torus:0x4", "at least 1"),
    ([(0, 1), (2, 3)], "not connected"),
    ([(0, 2)], "must be 0 .. N-1"),
    ([(0, 0)], "joins a node to itself"),
    (5, "spec string or an iterable"),
])
def test_bad_networks_are_clear_errors(spec, match):
    with pytest.raises((ValueError, TypeError), match=match):
        network_graph(spec)


def test_hierarchy_sums_hosts_in_worker_order_then_along_the_hosts_trees():
    h = hierarchy([[0, 2], [1, 3]], network="mesh:1x2")
    vectors = [np.array([1e16, 1.0]), np.array([1.0, 2.0]),
               np.array([-1e16, 3.0]), np.array([1.0, 4.0])]
    sums = h.host_sums(vectors)
    assert_array_equal(sums[0], (vectors[0] + vectors[2]))
    assert_array_equal(h.allreduce(sums), sums[0] + sums[1])
    assert h.encoders == (0, 1) and h.n_summands == 2 and h.n_workers == 4
    with pytest.raises(ValueError, match="exactly once"):
        hierarchy([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="3 compute nodes for 2 hosts"):
        hierarchy([[0], [1]], network="switch:3")
    with pytest.raises(ValueError, match="k must be an integer >= 2"):
        multitree_schedule("torus:2x2", k=1)


def test_inprocess_reduction_sums_integers_exactly_and_checks_its_fit():
    from sklearn_relu import ReLURegressor, make_relu_regression
    from sklearn_relu.backends import InProcessBackend

    X, y = make_relu_regression(n_samples=400, n_features=9, random_state=0)
    kw = dict(n_workers=4, batch_size=40, max_iter=3, tol=None, random_state=1)
    # IntSGD's integer sums are exact in any order: a MultiTree reduction
    # gives the worker-order model, bit for bit.
    plain = ReLURegressor(solver="intsgd", **kw).fit(X, y)
    tree = ReLURegressor(solver="intsgd", backend=InProcessBackend(
        reduction=multitree_schedule("torus:2x2")), **kw).fit(X, y)
    assert_array_equal(tree.coef_, plain.coef_)
    assert tree.comm_record_.bytes_sent == plain.comm_record_.bytes_sent
    # Float sums in another order: the same model up to rounding.
    sgd = ReLURegressor(solver="sgd", **kw).fit(X, y)
    hosts = ReLURegressor(solver="sgd", backend=InProcessBackend(
        reduction=hierarchy([[0, 1], [2, 3]])), **kw).fit(X, y)
    np.testing.assert_allclose(hosts.coef_, sgd.coef_, rtol=1e-9, atol=1e-12)
    # A hierarchy encodes one vector per host.
    assert hosts.comm_record_.n_messages == 2 * hosts.t_
    with pytest.raises(ValueError, match="sums the vectors of 4 workers, but the fit has n_workers=2"):
        ReLURegressor(backend=InProcessBackend(reduction=multitree_schedule("switch:4")),
                      **{**kw, "n_workers": 2}).fit(X, y)
    with pytest.raises(ValueError, match="cannot be summed"):
        ReLURegressor(solver="qsgd", backend=InProcessBackend(
            reduction=multitree_schedule("switch:4")), **kw).fit(X, y)
