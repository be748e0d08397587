"""The container environment end to end: images (built when missing), compose up with the
constraints a scenario sets, the testinfra checks, and a teardown that leaves nothing behind,
also when a check fails."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

docker = pytest.importorskip("docker")

from lab.cleanup import PROJECT_LABEL  # noqa: E402
from lab.environment.compose import ComposeEnvironment  # noqa: E402
from lab.environment.infra_checks import run_infra_checks  # noqa: E402
from lab.scenario import ROOT  # noqa: E402

from labcli import PREFIX  # noqa: E402  tests/integration/labcli.py

IMAGES = ("zerolab/redis:latest", "zerolab/server:latest", "zerolab/loadgen:latest")

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="docker is not installed")


def docker_client():
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker daemon: {exc}")
    return client


@pytest.fixture(scope="module")
def images():
    """Builds the images once when one is missing (several minutes from nothing)."""
    client = docker_client()
    missing = []
    for name in IMAGES:
        try:
            client.images.get(name)
        except docker.errors.ImageNotFound:
            missing.append(name)
    if missing:
        env = {**os.environ, "PYTHON": sys.executable}
        proc = subprocess.run(["bash", "docker/build-images.sh"], cwd=ROOT, env=env, timeout=1500)
        assert proc.returncode == 0, "docker/build-images.sh failed"
    return client


def small_environment(project: str) -> ComposeEnvironment:
    variables = {
        "ZL_ARCH": "preforked", "ZL_WORKERS": "4", "ZL_BACKLOG": "64", "ZL_READ_TIMEOUT": "5",
        "ZL_SERVER_CPUSET": "0", "ZL_REDIS_CPUSET": "0", "ZL_LOADGEN_CPUSET": "1",
        "ZL_SERVER_MEM": "512m", "ZL_REDIS_MEM": "128m", "ZL_LOADGEN_MEM": "256m",
        "ZL_NOFILE": "10000", "ZL_SOMAXCONN": "1024", "ZL_PORT_RANGE": "2000 60000", "ZL_TW_REUSE": "1",
    }
    return ComposeEnvironment(project, variables, generators=2)


def expectation(project: str, **overrides) -> dict:
    mib = 1024 * 1024
    expect = {
        "project": project, "arch": "preforked", "workers": 4, "backlog": 64,
        "cpusets": {"server": "0", "redis": "0", "loadgen": "1"},
        "mem_bytes": {"server": 512 * mib, "redis": 128 * mib, "loadgen": 256 * mib},
        "nofile": 10000, "generators": 2, "tools": ["wrk", "oha"],
        "sysctls": {"server": {"net.core.somaxconn": "1024"},
                    "loadgen": {"net.ipv4.ip_local_port_range": "2000 60000", "net.ipv4.tcp_tw_reuse": "1"}},
    }
    expect.update(overrides)
    return expect


def leftovers(client, project: str) -> list[str]:
    label = {"label": f"{PROJECT_LABEL}={project}"}
    found = [f"container {c.name}" for c in client.containers.list(all=True, filters=label)]
    found += [f"network {n.name}" for n in client.networks.list(filters=label)]
    found += [f"network {n.name}" for n in client.networks.list(names=[f"{project}_lab"])]
    found += [f"volume {v.name}" for v in client.volumes.list(filters=label)]
    return found


def unique_project(kind: str) -> str:
    return f"{PREFIX}-{kind}-{uuid.uuid4().hex[:8]}"


@pytest.mark.timeout(1800)
def test_environment_matches_its_constraints_and_leaves_nothing(images):
    project = unique_project("infra")
    with small_environment(project) as env:
        env.up(timeout_s=180)
        urls = env.agent_urls()
        assert len(urls) == 2 and all(u.startswith("http://127.0.0.1:") for u in urls)
        assert set(env.image_ids()) == {"redis", "server", "loadgen"}
        assert env.compose_version()
        assert run_infra_checks(env, expectation(project)) == 0
        # A restarted server keeps every constraint and takes the new options; the generators
        # and Redis are the same containers.
        before = {c.name: c.id for group in env.containers().values() for c in group}
        old_server = env.server_identity()["id"]
        env.restart_server({"ZL_ARCH": "epoll", "ZL_WORKERS": "1", "ZL_BACKLOG": "32"})
        now = {c.name: c.id for group in env.containers().values() for c in group}
        assert {n for n in now if now[n] != before[n]} == {f"{project}_server_1"}
        assert env.server_identity()["id"] != old_server
        assert run_infra_checks(env, expectation(project, arch="epoll", workers=1, backlog=32)) == 0
    assert leftovers(images, project) == []


@pytest.mark.timeout(600)
def test_a_failing_check_still_tears_the_environment_down(images):
    project = unique_project("fail")
    with small_environment(project) as env:
        env.up(timeout_s=180)
        wrong = expectation(project, cpusets={"server": "1", "redis": "0", "loadgen": "1"})
        assert run_infra_checks(env, wrong, extra_args=("-k", "cpuset")) != 0
    assert leftovers(images, project) == []


@pytest.mark.timeout(600)
def test_a_service_that_never_gets_healthy_is_named_and_removed(images):
    project = unique_project("sick")
    env = ComposeEnvironment(project, {"ZL_ARCH": "no-such-architecture"}, generators=1)
    with pytest.raises(RuntimeError, match="server"):
        with env:
            env.up(timeout_s=120)
    assert leftovers(images, project) == []
