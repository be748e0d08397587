"""`lab verify` (make verify) on real containers, for each kind of server: the ceiling's image
(only what its scenario says of it is checked) and, when their image is here, the article's C
servers beside the Python ones (two environments, one after the other)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from lab.scenario import ROOT

import labcli  # tests/integration/labcli.py
from labcli import PREFIX, image_exists  # tests/integration/labcli.py

pytestmark = pytest.mark.timeout(600)


def verify(name: str) -> subprocess.CompletedProcess:
    env = os.environ | {"ZL_PROJECT_PREFIX": PREFIX, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "lab", "verify", name], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=540)


def leftovers() -> list[str]:
    return labcli.leftovers(f"{PREFIX}-verify")


@pytest.fixture
def cleanup():
    yield
    labcli.cleanup(f"{PREFIX}-verify")


def test_verify_checks_an_image_for_what_its_scenario_says(cleanup):
    out = verify("nginx-static")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "environment verified" in out.stdout
    # What does not apply to a server image is skipped with the reason, not failed.
    assert "impl: image: the scenario says nothing of its processes" in out.stdout
    assert " failed" not in out.stdout
    assert not leftovers()


@pytest.mark.skipif(not image_exists("zerolab/zerohttpd:latest"),
                    reason="no zerolab/zerohttpd image: build it with make images "
                    "ZEROHTTPD=/path/to/built/checkout")
@pytest.mark.parametrize("arch", ["preforked", "prethreaded"])
def test_verify_checks_the_c_servers_beside_the_python_ones(cleanup, tmp_path, arch):
    path = tmp_path / f"verify-c-{arch}.yaml"
    path.write_text(yaml.safe_dump({
        "server": {"arch": arch, "workers": 100}, "constraints": {"profile": "article"},
        "sweep": {"server": [{"variant": "faithful"}, {"impl": "zerohttpd"}]}}))
    out = verify(str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "environment 1 of 2: python server" in out.stdout
    assert "environment 2 of 2: zerohttpd server" in out.stdout
    assert "environment verified" in out.stdout and " failed" not in out.stdout
    assert not leftovers()
