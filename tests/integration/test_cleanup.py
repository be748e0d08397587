"""`lab cleanup` and the compose teardown against real Docker: only what carries the lab's label
is removed, one object that will not go does not stop the others, and whatever is left is named.

Every name here starts with a prefix of its own (ZL_PROJECT_PREFIX, else labcli's, plus a random
part), so the cleanups these tests run can reach nothing but what the tests made."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest
import yaml

docker = pytest.importorskip("docker")

from docker.models.networks import Network  # noqa: E402

from lab.cleanup import LAB_LABEL, LAB_LABEL_VALUE, PROJECT_LABEL, remove_leftovers  # noqa: E402
from lab.environment import TeardownError  # noqa: E402
from lab.scenario import ROOT  # noqa: E402

from labcli import PREFIX  # noqa: E402  tests/integration/labcli.py
from test_containers import images, leftovers, small_environment  # noqa: E402,F401  the images fixture

pytestmark = [pytest.mark.skipif(shutil.which("docker") is None, reason="docker is not installed"),
              pytest.mark.timeout(600)]

FOREIGN_IMAGE = "zerolab/redis:latest"  # any image present will do: it only sleeps


def unique_prefix() -> str:
    return f"{os.environ.get('ZL_PROJECT_PREFIX') or PREFIX}-{uuid.uuid4().hex[:6]}"


def run_cleanup(prefix: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", "cleanup", "--prefix", prefix], cwd=ROOT,
                          env=os.environ | {"COLUMNS": "200"}, capture_output=True, text=True, timeout=180)


def sleeper(client, name: str, **kw):
    """A running container that is not the lab's (no LAB_LABEL), for as long as the test needs."""
    return client.containers.run(FOREIGN_IMAGE, ["sleep", "infinity"], name=name, detach=True, **kw)


def remove_quietly(*objects) -> None:
    """Containers first: a network goes only once nothing is attached."""
    for obj in objects:
        try:
            if isinstance(obj, Network):
                obj.remove()
            elif obj is not None:
                obj.remove(force=True)
        except docker.errors.NotFound:
            pass


def still_there(obj) -> bool:
    try:
        obj.reload()
        return True
    except docker.errors.NotFound:
        return False


def test_every_object_the_compose_files_create_carries_the_lab_label():
    for path, swarm in ((ROOT / "docker-compose.yml", False), (ROOT / "compose" / "swarm-stack.yml", True)):
        doc = yaml.safe_load(path.read_text())
        for name, service in doc["services"].items():
            assert (service.get("labels") or {}).get(LAB_LABEL) == LAB_LABEL_VALUE, f"{path.name}: {name}"
            if swarm:
                deploy_labels = (service.get("deploy") or {}).get("labels") or {}
                assert deploy_labels.get(LAB_LABEL) == LAB_LABEL_VALUE, f"{path.name}: {name} deploy"
            assert not service.get("volumes"), f"{path.name}: {name} mounts a volume without a label"
        for name, network in doc["networks"].items():
            assert (network.get("labels") or {}).get(LAB_LABEL) == LAB_LABEL_VALUE, f"{path.name}: network {name}"
        for name, volume in (doc.get("volumes") or {}).items():
            assert ((volume or {}).get("labels") or {}).get(LAB_LABEL) == LAB_LABEL_VALUE, f"{path.name}: volume {name}"


def test_cleanup_removes_the_lab_objects_of_the_prefix_and_nothing_else(images):
    client = images
    prefix = unique_prefix()
    ours, foreign = f"{prefix}-lab", f"{prefix}-foreign"
    env = small_environment(ours)
    foreign_objects = []
    try:
        env.up(timeout_s=180)
        names = [c.name for group in env.containers().values() for c in group]
        assert len(names) == 4
        # No image declares a VOLUME, so no container has an anonymous volume without our label
        # (cleanup would remove one with its container anyway: v=True).
        assert not [m for group in env.containers().values() for c in group for m in c.attrs["Mounts"]]
        # What a user's own compose project called like ours would have: compose's labels, not ours.
        net = client.networks.create(f"{foreign}_lab", labels={PROJECT_LABEL: foreign,
                                                                "com.docker.compose.network": "lab"})
        foreign_objects = [
            sleeper(client, f"{foreign}_server_1", network=net.name,
                    labels={PROJECT_LABEL: foreign, "com.docker.compose.service": "server"}),
            client.volumes.create(f"{foreign}_data", labels={PROJECT_LABEL: foreign}),
            net,
        ]

        out = run_cleanup(prefix)

        assert out.returncode == 0, out.stdout + out.stderr
        assert leftovers(client, ours) == []
        for name in names:
            assert f"removed container {name}\n" in out.stdout
        assert f"removed network {ours}_lab\n" in out.stdout
        assert foreign not in out.stdout
        assert all(still_there(obj) for obj in foreign_objects)
    finally:
        remove_quietly(*foreign_objects)
        env.down()


def test_cleanup_goes_on_past_an_object_that_will_not_go_and_reports_it(images):
    client = images
    prefix = unique_prefix()
    ours = f"{prefix}-busy"
    env = small_environment(ours)
    blocker = volume = None
    try:
        env.up(timeout_s=180)
        names = [c.name for group in env.containers().values() for c in group]
        # A container that is not the lab's holds the lab's network: removing it must fail.
        blocker = sleeper(client, f"{prefix}x-blocker", network=f"{ours}_lab")
        # A volume of the project: volumes are removed after networks, so it shows that the
        # network's failure did not end the cleanup.
        volume = client.volumes.create(f"{ours}_data", labels={LAB_LABEL: LAB_LABEL_VALUE, PROJECT_LABEL: ours})

        out = run_cleanup(prefix)

        assert out.returncode == 1, out.stdout + out.stderr
        assert "Traceback" not in out.stderr, out.stderr
        for name in names:
            assert f"removed container {name}\n" in out.stdout
        assert f"could not remove network {ours}_lab: " in out.stdout
        assert "active endpoints" in out.stdout  # the engine's reason
        assert f"removed volume {ours}_data\n" in out.stdout
        assert not still_there(volume)
        assert still_there(blocker)  # not the lab's
        assert set(leftovers(client, ours)) == {f"network {ours}_lab"}
    finally:
        remove_quietly(blocker, volume)
        env.down()
    assert leftovers(client, ours) == []


def test_remove_leftovers_reports_each_failure_and_tries_every_object(images):
    client = images
    prefix = unique_prefix()
    nets, blockers = [], []
    try:
        for i in range(2):
            net = client.networks.create(f"{prefix}-p{i}_lab", labels={LAB_LABEL: LAB_LABEL_VALUE,
                                                                        PROJECT_LABEL: f"{prefix}-p{i}"})
            nets.append(net)
            blockers.append(sleeper(client, f"{prefix}x-blocker{i}", network=net.name))

        report = remove_leftovers(prefix, client)

        assert not report.ok and report.removed == []
        assert sorted(what for what, _ in report.failed) == [f"network {prefix}-p0_lab", f"network {prefix}-p1_lab"]
        assert all("active endpoints" in why for _, why in report.failed)
    finally:
        remove_quietly(*blockers, *nets)


def test_compose_down_names_what_it_could_not_remove(images):
    client = images
    project = f"{unique_prefix()}-down"
    env = small_environment(project)
    blocker = None
    try:
        env.up(timeout_s=180)
        blocker = sleeper(client, f"{project}x-blocker", network=f"{project}_lab")

        with pytest.raises(TeardownError) as caught:
            env.down()

        assert caught.value.remaining == [f"network {project}_lab"]
        assert "active endpoints" in caught.value.reasons[f"network {project}_lab"]
        assert f"network {project}_lab" in str(caught.value)
        assert not client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})
    finally:
        remove_quietly(blocker)
        env.down()  # the network is free now: nothing may remain
    assert leftovers(client, project) == []
