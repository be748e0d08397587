"""`smoke` on a single-node Docker Swarm with two generator replicas.

The test makes the swarm it needs and leaves the machine as it found it: a swarm it created is
left again (with the gateway bridge Swarm adds), labels it added are removed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid

import docker
import pytest

from lab.cleanup import STACK_LABEL, remove_leftovers
from lab.environment import TeardownError
from lab.environment.swarm import SwarmEnvironment

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


def stack_objects(client, stack: str) -> list[str]:
    """Services, containers and networks of the stack that still exist."""
    label = {"label": f"{STACK_LABEL}={stack}"}
    return ([f"service {s.name}" for s in client.services.list(filters=label)]
            + [f"container {c.name}" for c in client.containers.list(all=True, filters=label)]
            + [f"network {n.name}" for n in client.networks.list(filters=label)])


@pytest.fixture
def stack(single_node_swarm):
    """A running one-generator stack under a name of its own; removed whatever the test did."""
    name = f"{os.environ.get('ZL_PROJECT_PREFIX') or PREFIX}-{uuid.uuid4().hex[:6]}-down"
    env = SwarmEnvironment(name, {}, generators=1)
    try:
        env.up(timeout_s=240)
        yield env
    finally:
        docker_cli("stack", "rm", name, check=False)
        remove_leftovers(name, single_node_swarm)


def test_down_returns_only_once_the_stack_is_gone_also_through_a_ctrl_c(single_node_swarm, stack):
    client = single_node_swarm
    assert len(stack_objects(client, stack.project)) >= 7  # 3 services, 3 containers, the network
    label = {"label": f"{STACK_LABEL}={stack.project}"}
    armed, sent = threading.Event(), threading.Event()

    def interrupt(signum, frame):
        if armed.is_set():
            raise KeyboardInterrupt

    def ctrl_c_while_waiting():
        # The services are gone and their containers not yet: down() is in its wait.
        watcher = docker.from_env()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and armed.is_set():
            if (not watcher.services.list(filters=label)
                    and watcher.containers.list(all=True, filters=label)):
                sent.set()
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        armed.set()
        thread = threading.Thread(target=ctrl_c_while_waiting, daemon=True)
        thread.start()
        with pytest.raises(KeyboardInterrupt):
            try:
                stack.down()
            finally:
                armed.clear()
        thread.join(timeout=10)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sent.is_set()
    assert stack_objects(client, stack.project) == []


def test_down_names_what_it_could_not_remove(single_node_swarm, stack):
    client = single_node_swarm
    network = f"{stack.project}_lab"
    # A container that is not the stack's holds its (attachable) network.
    blocker = client.containers.run("zerolab/redis:latest", ["sleep", "infinity"], detach=True,
                                    name=f"{stack.project}x-blocker", network=network)
    try:
        started = time.monotonic()
        with pytest.raises(TeardownError) as caught:
            stack.down(timeout_s=20)
        assert time.monotonic() - started >= 20
        assert caught.value.remaining == [f"network {network}"]
        assert network in str(caught.value)
        assert stack_objects(client, stack.project) == [f"network {network}"]
    finally:
        blocker.remove(force=True)
    stack.down(timeout_s=60)  # the network is free now
    assert stack_objects(client, stack.project) == []
