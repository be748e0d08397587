"""`python -m lab` as the container tests run it: under the project prefix PREFIX, so that
`lab cleanup --prefix PREFIX` removes whatever a test left behind.

A plain module, imported as `from labcli import ...` (pytest puts this folder on sys.path)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lab.scenario import ROOT

PREFIX = "zltest"


def lab(args: list[str], results: Path, timeout: float = 360, prefixed: bool = True,
        **kw) -> subprocess.CompletedProcess:
    """`python -m lab *args --results results`, output captured. prefixed: under PREFIX with a
    wide console (COLUMNS=200); otherwise in the environment as it is."""
    env = (os.environ | {"ZL_PROJECT_PREFIX": PREFIX, "COLUMNS": "200"}) if prefixed else None
    return subprocess.run([sys.executable, "-m", "lab", *args, "--results", str(results)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, **kw)


def cleanup() -> subprocess.CompletedProcess:
    """`python -m lab cleanup --prefix PREFIX`: removes the projects and stacks tests started."""
    return subprocess.run([sys.executable, "-m", "lab", "cleanup", "--prefix", PREFIX], cwd=ROOT,
                          timeout=120)
