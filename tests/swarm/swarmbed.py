"""The multi-node test bed as the tests in this folder use it (the fixture is in conftest.py).
A plain module, imported as `from swarmbed import ...` (pytest puts this folder on sys.path)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from lab.cleanup import HARNESS_LABEL, STACK_LABEL
from lab.scenario import ROOT
from lab.swarmlab import NODE_IMAGE, SERVER_NODE, SwarmLab

NAME = "zlswarm-t"      # the tests' test bed, apart from the one `make swarm-lab` starts
NODES = 3
PREFIX = os.environ.get("ZL_PROJECT_PREFIX") or "zltest"


class Bed:
    """The running test bed as the tests use it."""

    def __init__(self, lab: SwarmLab, up_seconds: dict):
        self.lab, self.up_seconds = lab, up_seconds
        self.docker_host = lab.docker_host()

    def node(self, index: int) -> str:
        return self.lab.node_name(index)

    def load_nodes(self) -> list[str]:
        return sorted(self.node(i) for i in range(1, NODES + 1) if i != SERVER_NODE)

    def lab_cli(self, args: list[str], results: Path, timeout: float = 420,
                popen: bool = False):
        """`python -m lab *args --results results` against the test bed's manager. The
        controller lock is the test's own: the test bed's engines are not this host's."""
        env = os.environ | {"DOCKER_HOST": self.docker_host, "ZL_PROJECT_PREFIX": PREFIX,
                            "COLUMNS": "200", "ZL_LOCK_FILE": str(results / "controller.lock")}
        cmd = [sys.executable, "-m", "lab", *args, "--results", str(results)]
        if popen:
            return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)

    def stack_objects(self, index: int, stack: str) -> list[str]:
        """What of `stack` is still on node `index` (its services too, on the manager)."""
        client = self.lab.node_client(self.lab.nodes()[index - 1], timeout=30)
        label = {"label": f"{STACK_LABEL}={stack}"}
        found = [f"container {c.name}" for c in client.containers.list(all=True, filters=label)]
        found += [f"network {n.name}" for n in client.networks.list(filters=label)]
        if index == 1:
            found += [f"service {s.name}" for s in client.services.list(filters=label)]
        return found


    def wait_stack_gone(self, index: int, stack: str, timeout_s: float = 60) -> list[str]:
        """What of `stack` is on node `index` once Swarm has had `timeout_s` to remove it: a
        worker removes its tasks' containers itself, after the manager removed the services."""
        deadline = time.monotonic() + timeout_s
        while (left := self.stack_objects(index, stack)) and time.monotonic() < deadline:
            time.sleep(1)
        return left


def read_result(results: Path) -> dict:
    [path] = list(results.glob("*/*/result.json"))
    return json.loads(path.read_text())


def host_leftovers(name: str = NAME) -> list[str]:
    """Everything of test bed `name` still on this host: containers, networks, volumes, cgroups."""
    client = docker.from_env(timeout=60)
    label = {"label": f"{HARNESS_LABEL}={name}"}
    found = [f"container {c.name}" for c in client.containers.list(all=True, filters=label)]
    found += [f"network {n.name}" for n in client.networks.list(filters=label)]
    found += [f"volume {v.name}" for v in client.volumes.list(filters=label)]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/{name}-node*")]
    return found


def ensure_node_image() -> None:
    client = docker.from_env(timeout=60)
    try:
        client.images.get(NODE_IMAGE)
        return
    except docker.errors.ImageNotFound:
        pass
    out = subprocess.run(["bash", "docker/build-images.sh"], cwd=ROOT, capture_output=True, text=True,
                         timeout=900, env=os.environ | {"IMAGES": "swarm-node", "PYTHON": sys.executable})
    if out.returncode != 0:
        pytest.fail(f"building {NODE_IMAGE} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")


