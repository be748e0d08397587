"""Runs tests/infra (pytest-testinfra) against a running ComposeEnvironment."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from lab.environment.compose import ComposeEnvironment


def run_infra_checks(env: ComposeEnvironment, expect: dict, extra_args: tuple[str, ...] = ()) -> int:
    """pytest's exit code for tests/infra with `expect` as ZL_EXPECT (0: the environment matches)."""
    expect = {"project": env.project, "generators": env.generators, **expect}
    fd, path = tempfile.mkstemp(prefix=f"zl-expect-{env.project}-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(expect, f, indent=2)
        cmd = [sys.executable, "-m", "pytest", str(Path(env.root) / "tests" / "infra"), "-q",
               "-p", "no:cacheprovider", *extra_args]
        return subprocess.run(cmd, cwd=env.root, env={**os.environ, "ZL_EXPECT": path}).returncode
    finally:
        os.unlink(path)
