"""Rules of the Swarm engine across nodes that need no engine: when a swarm short of nodes is
refused, and what of the test bed's cgroups is removed."""
from __future__ import annotations

import pytest

from lab.environment.swarm import SwarmEnvironment
from lab.swarmlab import remove_node_cgroups


class Node:
    """What _check_nodes_ready reads of a node: its attrs, as the Docker SDK gives them."""

    def __init__(self, hostname: str, label: str, state: str = "ready", availability: str = "active"):
        self.attrs = {"Description": {"Hostname": hostname}, "Status": {"State": state},
                      "Spec": {"Labels": {label: "true"}, "Availability": availability}}


def environment(generators: int) -> SwarmEnvironment:
    env = SwarmEnvironment.__new__(SwarmEnvironment)  # no engine needed for this rule
    env.generators = generators
    return env


def test_a_lost_generator_node_refuses_a_new_environment_naming_it():
    nodes = [Node("n1", "zerolab.load"), Node("n2", "zerolab.server"), Node("n3", "zerolab.load", "down")]
    with pytest.raises(RuntimeError) as caught:
        environment(2)._check_nodes_ready(nodes)
    message = str(caught.value)
    assert "n3 (down, active)" in message and "--generators 1" in message and "run the same command" in message


def test_fewer_generators_or_enough_nodes_go_ahead():
    nodes = [Node("n1", "zerolab.load"), Node("n2", "zerolab.server"), Node("n3", "zerolab.load", "down")]
    environment(1)._check_nodes_ready(nodes)
    # One load node for two generators is how the swarm was built, not a loss.
    environment(2)._check_nodes_ready([Node("n1", "zerolab.load"), Node("n2", "zerolab.server")])


def test_a_lost_server_node_refuses_a_new_environment_naming_it():
    nodes = [Node("n1", "zerolab.load"), Node("n2", "zerolab.server", "down")]
    with pytest.raises(RuntimeError, match=r"server and Redis is ready: n2 \(down, active\)"):
        environment(1)._check_nodes_ready(nodes)


def test_drained_nodes_count_as_gone():
    nodes = [Node("n1", "zerolab.load", availability="drain"), Node("n2", "zerolab.server"),
             Node("n3", "zerolab.load")]
    with pytest.raises(RuntimeError, match=r"n1 \(ready, drain\)"):
        environment(2)._check_nodes_ready(nodes)


def test_node_cgroups_are_removed_deepest_first_and_nothing_else(tmp_path):
    for hierarchy in ("cpu", "memory"):
        (tmp_path / hierarchy / "zlswarm-t-node1" / "abc" / "inner").mkdir(parents=True)
        (tmp_path / hierarchy / "zlswarm-t-node2").mkdir(parents=True)
        (tmp_path / hierarchy / "docker" / "keep").mkdir(parents=True)
    assert remove_node_cgroups("zlswarm-t", tmp_path) == []
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/*")) == ["cpu/docker", "memory/docker"]
