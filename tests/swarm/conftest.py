"""The multi-node test bed (lab/swarmlab.py) for the tests in this folder: three Docker Engines
in containers, one swarm, made once for the session and removed at its end whatever happened
(also one a killed earlier session left). Its node image is built here when it is missing, so
that `make test` and `bash .ci/run` need nothing more."""
from __future__ import annotations

import time

import docker
import pytest

from lab.swarmlab import LAB_IMAGES, SwarmLab

from swarmbed import NAME, NODES, Bed, ensure_node_image, host_leftovers  # tests/swarm/swarmbed.py


@pytest.fixture(scope="session")
def swarm_bed():
    client = docker.from_env(timeout=60)
    for image in LAB_IMAGES:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"image {image} not found: make images first")
    ensure_node_image()
    host_swarm = client.info()["Swarm"]["LocalNodeState"]
    lab = SwarmLab(NAME, client)
    lab.down()  # what a killed earlier session left
    started = time.monotonic()
    try:
        seconds = lab.up(NODES)
        seconds["measured_total"] = round(time.monotonic() - started, 1)
        print(f"\ntest bed {NAME}: {NODES} nodes up in {seconds}")
        yield Bed(lab, seconds)
    finally:
        failed = lab.down()
        assert not failed, f"test bed {NAME} not removed: {failed}"
        assert host_leftovers() == []
        # The host's own engine was never part of the swarm.
        assert client.info()["Swarm"]["LocalNodeState"] == host_swarm
