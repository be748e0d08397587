"""Runs tests/infra (pytest-testinfra) against a running ComposeEnvironment: `make verify`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from lab.environment.compose import ComposeEnvironment
from lab.plan import RunPlan

# The C servers fix their workers in their sources: 100 preforked children, 100 prethreads.
ZEROHTTPD_WORKERS = 100


def run_infra_checks(env: ComposeEnvironment, expect: dict, extra_args: tuple[str, ...] = ()) -> int:
    """pytest's exit code for tests/infra with `expect` as ZL_EXPECT (0: the environment matches)."""
    expect = {"project": env.project, "generators": env.generators, **expect}
    fd, path = tempfile.mkstemp(prefix=f"zl-expect-{env.project}-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(expect, f, indent=2)
        cmd = [sys.executable, "-m", "pytest", str(Path(env.root) / "tests" / "infra"), "-q", "-rs",
               "-p", "no:cacheprovider", *extra_args]
        return subprocess.run(cmd, cwd=env.root, env={**os.environ, "ZL_EXPECT": path}).returncode
    finally:
        os.unlink(path)


def environments_of(runs: list[RunPlan]) -> list[RunPlan]:
    """The first run of each environment a plan brings up (one per server image, constraints and
    generators): what `make verify` checks, one environment after the other."""
    firsts: dict[str, RunPlan] = {}
    for run in runs:
        firsts.setdefault(run.environment_key(), run)
    return list(firsts.values())


def infra_expectation(run: RunPlan) -> dict:
    """What tests/infra must find in a running environment of this run (run_infra_checks adds
    the project and the number of generators)."""
    workers = ZEROHTTPD_WORKERS if run.impl == "zerohttpd" else run.workers
    return {
        "impl": run.impl, "arch": run.arch, "variant": run.variant, "workers": workers,
        "backlog": run.backlog, "port": run.port, "ready_path": run.ready_path,
        "served": list(run.served), "static_path": run.static_path,
        "cpusets": dict(run.cpusets), "mem_bytes": {k: size_bytes(v) for k, v in run.memory.items()},
        "nofile": run.nofile, "tools": [run.tool],
        "sysctls": {
            "server": {"net.core.somaxconn": str(run.sysctls["somaxconn"]),
                       "net.ipv4.ip_local_port_range": str(run.sysctls["ip_local_port_range"]),
                       "net.ipv4.tcp_tw_reuse": str(run.sysctls["tcp_tw_reuse"])},
            "loadgen": {"net.ipv4.ip_local_port_range": str(run.sysctls["ip_local_port_range"]),
                        "net.ipv4.tcp_tw_reuse": str(run.sysctls["tcp_tw_reuse"])},
        },
    }


def size_bytes(text: str) -> int:
    units = {"b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    text = text.lower()
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
