"""`smoke` on a single-node Docker Swarm with two generator replicas.

The test makes the swarm it needs and leaves the machine as it found it: a swarm it created is
left again (with the gateway bridge Swarm adds), labels it added are removed.
"""
from __future__ import annotations

import json
import subprocess

import docker
import pytest

from labcli import PREFIX, cleanup, lab  # tests/integration/labcli.py

LABELS = ("zerolab.server", "zerolab.load")
pytestmark = pytest.mark.timeout(480)


def docker_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=check)


@pytest.fixture
def single_node_swarm():
    client = docker.from_env()
    was_active = client.info()["Swarm"]["LocalNodeState"] == "active"
    had_gwbridge = bool(client.networks.list(names=["docker_gwbridge"]))
    if not was_active:
        docker_cli("swarm", "init", "--advertise-addr", "127.0.0.1")
    node = client.nodes.get(client.info()["Swarm"]["NodeID"])
    added = [label for label in LABELS if (node.attrs["Spec"].get("Labels") or {}).get(label) != "true"]
    for label in added:
        docker_cli("node", "update", "--label-add", f"{label}=true", node.id)
    try:
        yield client
    finally:
        cleanup()
        for label in added:
            docker_cli("node", "update", "--label-rm", label, node.id, check=False)
        if not was_active:
            docker_cli("swarm", "leave", "--force", check=False)
            if not had_gwbridge:
                docker_cli("network", "rm", "docker_gwbridge", check=False)
        assert (client.info()["Swarm"]["LocalNodeState"] == "active") == was_active


def test_scenario_refuses_pinning_swarm_cannot_give(single_node_swarm, tmp_path):
    out = lab(["scenario", "smoke", "--engine", "swarm"], tmp_path, timeout=60, prefixed=False)
    assert out.returncode == 2
    assert "Swarm cannot pin" in out.stdout and "accept_weaker_cpu_limits" in out.stdout
    assert not list(tmp_path.glob("*/*/result.json"))  # nothing started


def test_smoke_on_swarm_merges_two_generators_and_records_placement(single_node_swarm, tmp_path):
    out = lab(["scenario", "smoke", "--engine", "swarm", "--accept-weaker-cpu-limits"], tmp_path,
              timeout=420)
    assert out.returncode == 0, out.stdout + out.stderr
    [path] = list(tmp_path.glob("smoke/*/result.json"))
    doc = json.loads(path.read_text())
    env_doc = doc["environment"]
    assert env_doc["engine"] == "swarm"
    hostname = single_node_swarm.info()["Name"]
    assert [n["hostname"] for n in env_doc["nodes"]] == [hostname]
    assert env_doc["placement"] == {"redis": [hostname], "server": [hostname], "loadgen": [hostname] * 2}
    assert any("cpuset" in c for c in env_doc["constraints"]["not_enforced"])
    assert any("CPU" in c for c in env_doc["constraints"]["enforced"])
    [run] = doc["runs"]
    assert run["status"] == "complete" and run["verification"]["passed"], run.get("error")
    gens = run["generators"]
    assert len(gens) == 2 and len({g["agent"] for g in gens}) == 2
    assert run["requests"] == sum(g["result"]["requests"] for g in gens) > 0
    sent = sum(g["result"]["requests_by_kind"]["guestbook_get"] for g in gens)
    assert sent - run["params"]["connections"] <= run["redis"]["visitor_count_delta"] <= sent
    # The stack is gone.
    stacks = docker_cli("stack", "ls", "--format", "{{.Name}}").stdout.split()
    assert not [s for s in stacks if s.startswith(PREFIX)]
