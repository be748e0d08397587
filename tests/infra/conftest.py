"""Checks of a RUNNING environment, driven by the JSON file named by ZL_EXPECT:

    {"project", "impl", "arch", "variant", "workers", "backlog", "port", "ready_path", "served",
     "static_path", "cpusets": {service: "0"}, "mem_bytes": {service: int}, "nofile": int,
     "sysctls": {service: {name: value}}, "generators": int, "tools": [str]}

impl is python (the default), zerohttpd or image: the checks that do not apply to a server
(a process model of an image the scenario brings, say) are skipped with the reason.

`make verify` (lab/environment/infra_checks.py) writes that file and runs these tests; without
ZL_EXPECT every test here is skipped, so `pytest tests` on the host does not need containers.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

@pytest.fixture(scope="session")
def expect() -> dict:
    path = os.environ.get("ZL_EXPECT")
    if not path:
        pytest.skip("ZL_EXPECT is not set: these checks need a running environment (make verify)")
    return json.loads(Path(path).read_text())

@pytest.fixture(scope="session")
def docker_client():
    import docker

    client = docker.from_env(timeout=60)
    yield client
    client.close()

@pytest.fixture(scope="session")
def containers(expect, docker_client) -> dict[str, list]:
    """The project's containers per service, in replica order."""
    found = docker_client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={expect['project']}"})
    by_service: dict[str, list] = {}
    for c in found:
        by_service.setdefault(c.labels.get("com.docker.compose.service"), []).append(c)
    for group in by_service.values():
        group.sort(key=lambda c: int(c.labels.get("com.docker.compose.container-number") or 0))
    return by_service

@pytest.fixture(scope="session")
def hosts(containers) -> dict[str, list]:
    """testinfra hosts (docker backend) per service."""
    import testinfra

    return {service: [testinfra.get_host(f"docker://{c.id}") for c in group]
            for service, group in containers.items()}
