"""The run matrix: a scenario's sweeps and repeats expanded into concrete runs."""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass

from lab.scenario import Scenario, resolved_constraints, swept

# What restarting the server changes; every other variable shapes the environment itself.
SERVER_VARIABLES = ("ZL_ARCH", "ZL_WORKERS", "ZL_BACKLOG", "ZL_READ_TIMEOUT")


@dataclass(frozen=True)
class RunPlan:
    id: str
    index: int
    arch: str
    workers: int
    backlog: int
    read_timeout_s: float
    connections: int
    rate: int | None
    repeat: int
    tool: str
    mode: str
    threads: int
    duration_s: int
    warmup_s: int
    timeout_s: int
    mix: dict[str, float]
    static_path: str
    generators: int
    cpusets: dict[str, str]
    memory: dict[str, str]
    nofile: int
    sysctls: dict[str, object]  # every Sysctls field (resolved_constraints always fills them)

    def params(self) -> dict:
        """What result.json records of this run."""
        p = asdict(self)
        del p["id"], p["index"]
        return p

    def load_spec(self, url: str) -> dict:
        """The whole run's load, before it is split over the generators."""
        return {
            "tool": self.tool, "mode": self.mode, "url": url,
            "connections": self.connections, "threads": self.threads,
            "duration_s": self.duration_s, "rate": self.rate, "timeout_s": self.timeout_s,
            "mix": dict(self.mix), "static_path": self.static_path,
        }

    def warmup_spec(self, url: str) -> dict | None:
        """A short closed-loop warm-up at the run's concurrency (open mode warms up at its rate)."""
        if self.warmup_s <= 0:
            return None
        spec = self.load_spec(url)
        spec["duration_s"] = self.warmup_s
        return spec

    def environment_key(self) -> str:
        """Runs with equal keys can share one environment (the server restarted between them)."""
        v = {k: val for k, val in self.variables().items() if k not in SERVER_VARIABLES}
        return json.dumps({"variables": v, "generators": self.generators}, sort_keys=True)

    def variables(self) -> dict[str, str]:
        """The ZL_* variables that docker-compose.yml reads."""
        v = {
            "ZL_ARCH": self.arch,
            "ZL_WORKERS": str(self.workers),
            "ZL_BACKLOG": str(self.backlog),
            "ZL_READ_TIMEOUT": f"{self.read_timeout_s:g}",
            "ZL_NOFILE": str(self.nofile),
            "ZL_SOMAXCONN": str(self.sysctls["somaxconn"]),
            "ZL_PORT_RANGE": str(self.sysctls["ip_local_port_range"]),
            "ZL_TW_REUSE": str(self.sysctls["tcp_tw_reuse"]),
        }
        for service, cpuset in self.cpusets.items():
            v[f"ZL_{service.upper()}_CPUSET"] = cpuset
        for service, size in self.memory.items():
            v[f"ZL_{service.upper()}_MEM"] = size
        return v


def plan_runs(s: Scenario) -> list[RunPlan]:
    archs = swept(s, "arch", [s.server.arch])
    levels = swept(s, "connections", [s.load.connections])
    rates = swept(s, "rate", [s.load.rate])
    c = resolved_constraints(s)
    sysctls = c["sysctls"].model_dump()
    runs = []
    for index, (arch, connections, rate, repeat) in enumerate(
        itertools.product(archs, levels, rates, range(1, s.repeats + 1)), start=1
    ):
        rate_part = f"-r{rate}" if rate else ""
        runs.append(RunPlan(
            id=f"{arch}-c{connections}{rate_part}-{repeat}",
            index=index, arch=arch, workers=s.server.workers, backlog=s.server.backlog,
            read_timeout_s=s.server.read_timeout_s, connections=connections, rate=rate,
            repeat=repeat, tool=s.load.tool, mode=s.load.mode, threads=s.load.threads,
            duration_s=s.load.duration_s, warmup_s=s.load.warmup_s, timeout_s=s.load.timeout_s,
            mix=s.load.mix.model_dump(), static_path=s.load.static_path, generators=s.generators,
            cpusets=dict(c["cpusets"]), memory=dict(c["memory"]), nofile=int(c["nofile"]),
            sysctls=sysctls,
        ))
    return runs


def scenario_digest(s: Scenario) -> str:
    """Identifies a scenario's content, so a sweep resumes only into results of the same scenario."""
    text = json.dumps(s.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
