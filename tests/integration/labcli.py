"""`python -m lab` as the container tests run it: under the project prefix PREFIX, so that
`lab cleanup --prefix PREFIX` removes whatever a test left behind.

A plain module, imported as `from labcli import ...` (pytest puts this folder on sys.path)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import docker
import docker.errors

from lab.scenario import ROOT

# Under `make test` the lab's test prefix; by hand, the caller's own (never the bare "zl" that
# `make cleanup` sweeps), so that the cleanup touches only what the tests started.
_ASKED = os.environ.get("ZL_PROJECT_PREFIX", "")
PREFIX = _ASKED if _ASKED.startswith("zl") and len(_ASKED) > 2 else "zltest"


def lab(args: list[str], results: Path, timeout: float = 360, prefixed: bool = True,
        **kw) -> subprocess.CompletedProcess:
    """`python -m lab *args --results results`, output captured. prefixed: under PREFIX with a
    wide console (COLUMNS=200); otherwise in the environment as it is."""
    env = (os.environ | {"ZL_PROJECT_PREFIX": PREFIX, "COLUMNS": "200"}) if prefixed else None
    return subprocess.run([sys.executable, "-m", "lab", *args, "--results", str(results)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, **kw)


def cleanup(prefix: str = PREFIX) -> subprocess.CompletedProcess:
    """`python -m lab cleanup --prefix PREFIX`: removes the projects and stacks tests started."""
    return subprocess.run([sys.executable, "-m", "lab", "cleanup", "--prefix", prefix], cwd=ROOT,
                          timeout=120)


def leftovers(prefix: str = PREFIX) -> list[str]:
    """The containers and networks of the Compose projects under `prefix` still there."""
    client = docker.from_env()
    names = [c.name for c in client.containers.list(all=True)
             if c.labels.get("com.docker.compose.project", "").startswith(prefix)]
    return names + [n.name for n in client.networks.list() if n.name.startswith(prefix)]


def image_exists(ref: str) -> bool:
    try:
        docker.from_env().images.get(ref)
        return True
    except docker.errors.DockerException:
        return False
