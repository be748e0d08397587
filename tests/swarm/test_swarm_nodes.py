"""Scenarios across the nodes of a real multi-node swarm (the test bed of conftest.py): placement,
merged counts, the facts each node contributes, the loss of a generator node mid-run, and a
test bed that leaves nothing behind."""
from __future__ import annotations

import json
import time

import pytest

from lab.swarmlab import SERVER_NODE, SwarmLab

from swarmbed import NODES, host_leftovers, read_result  # tests/swarm/swarmbed.py

SWARM = ["--engine", "swarm", "--accept-weaker-cpu-limits"]


@pytest.mark.timeout(600)
def test_smoke_across_three_nodes(swarm_bed, tmp_path):
    out = swarm_bed.lab_cli(["scenario", "smoke", *SWARM], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = read_result(tmp_path)
    env = doc["environment"]
    server_node, load_nodes = swarm_bed.node(SERVER_NODE), swarm_bed.load_nodes()
    # The server and Redis on the server's node, one generator on each load node.
    assert env["placement"] == {"redis": [server_node], "server": [server_node], "loadgen": load_nodes}
    nodes = {n["hostname"]: n for n in env["nodes"]}
    assert sorted(nodes) == sorted([server_node, *load_nodes])
    for n in nodes.values():
        assert n["cores"] > 0 and n["docker_version"] and n["kernel"] and n["state"] == "ready", n
    # Every node here shares this machine's clock: the measured offset is within its own bound.
    for node in load_nodes:
        offset = env["clock_offsets_s"][node]
        assert abs(offset["offset_s"]) <= offset["uncertainty_s"] + 0.05, offset
    assert any(node in line and "CPU(s)" in line for line in env["constraints"]["not_enforced"]
               for node in (server_node, *load_nodes))

    [run] = doc["runs"]
    assert run["status"] == "complete" and run["verification"]["passed"], run.get("error")
    gens = run["generators"]
    assert sorted(g["node"] for g in run["placement"]["generators"]) == load_nodes
    assert run["requests"] == sum(g["result"]["requests"] for g in gens) > 0
    sent = sum(g["result"]["requests_by_kind"]["guestbook_get"] for g in gens)
    assert sent - run["params"]["connections"] <= run["redis"]["visitor_count_delta"] <= sent
    assert run["start_skew_across_nodes_s"] is not None and run["start_skew_s"] is not None
    assert set(run["clock_offsets_s"]) == set(load_nodes)
    tasks = run["placement"]["tasks"]
    assert sorted((t["service"], t["node"]) for t in tasks) == sorted(
        [("redis", server_node), ("server", server_node)] + [("loadgen", n) for n in load_nodes])
    for t in tasks:
        applied = run["cpu_limits_applied"][f"{t['service']} {t['task']}"]
        assert applied["source"].startswith(("the agent", "the container")), applied
        assert applied.get("quota") or applied.get("cpus"), applied
    # The stack is gone from every node: from the manager when the command returns, from the
    # workers once they have removed their tasks' containers.
    stack = run["start_state"]["environment"]
    assert swarm_bed.stack_objects(1, stack) == []
    for i in range(2, NODES + 1):
        assert swarm_bed.wait_stack_gone(i, stack) == []


def wait_for(results, predicate, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        paths = list(results.glob("*/*/result.json"))
        if paths:
            try:
                doc = json.loads(paths[0].read_text())
            except ValueError:  # being written
                doc = None
            if doc and predicate(doc):
                return doc
        time.sleep(0.2)
    raise AssertionError(f"not reached in {timeout_s:g} s")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("lost_index, role", [(NODES, "generators"), (SERVER_NODE, "server and Redis")],
                         ids=["generator-node", "server-node"])
def test_node_lost_mid_run_fails_that_run_and_the_same_command_resumes(swarm_bed, tmp_path, lost_index, role):
    args = ["scenario", "smoke", *SWARM, "--repeats", "2", "--duration", "15"]
    lost = swarm_bed.node(lost_index)
    proc = swarm_bed.lab_cli(args, tmp_path, popen=True)
    try:
        # The second run's measured window.
        wait_for(tmp_path, lambda d: len(d["runs"]) == 2 and d["runs"][1]["status"] == "measuring", 420)
        time.sleep(3)
        swarm_bed.lab.stop_node(lost_index)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        assert proc.returncode == 1, output
        doc = read_result(tmp_path)
        first, second = doc["runs"]
        assert first["status"] == "complete"
        assert second["status"] == "failed" and second["failed_in"] == "measuring"
        assert f"node {lost} ({role})" in second["error"], second["error"]
        assert lost in output
        assert not doc.get("problems"), doc.get("problems")  # the teardown did not hang or fail
        stack = second["start_state"]["environment"]
        assert swarm_bed.stack_objects(1, stack) == []  # the manager
        for i in range(2, NODES + 1):  # the other nodes still there
            if i != lost_index:
                assert swarm_bed.wait_stack_gone(i, stack) == []
    finally:
        swarm_bed.lab.start_node(lost_index)

    # The node is back: the same command resumes, with the finished run kept as it was.
    out = swarm_bed.lab_cli(args, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    again = read_result(tmp_path)
    assert again["result_id"] == doc["result_id"]
    kept, redone = again["runs"]
    assert kept["started_at"] == first["started_at"] and kept["requests"] == first["requests"]
    assert redone["status"] == "complete"
    assert sorted(g["node"] for g in redone["placement"]["generators"]) == swarm_bed.load_nodes()
    # Swarm removed what the lost node still held of the failed run once it was back.
    assert swarm_bed.wait_stack_gone(lost_index, stack) == []


@pytest.mark.timeout(180)
def test_a_test_bed_leaves_nothing_on_the_host():
    name = "zlswarm-t2"
    lab = SwarmLab(name)
    try:
        lab.up(2, images=())
        assert [r["swarm"] for r in lab.status()] == ["ready", "ready"]
        assert host_leftovers(name)
    finally:
        assert lab.down() == []
    assert host_leftovers(name) == []
