"""The run matrix: a scenario's sweeps and repeats expanded into concrete runs."""
from __future__ import annotations

import hashlib
import itertools
import json
import random
from dataclasses import asdict, dataclass, fields, replace

from lab.scenario import (KINDS, Scenario, ScenarioError, ServerSpec, cell_stem, repeat_bounds, resolved_constraints, servers,
                          swept)
from lab.uncertainty import cell_summaries, needs_more

# What restarting the server changes; every other variable shapes the environment itself
# (ZL_SERVER_IMPL, ZL_SERVER_IMAGE_REF, ZL_SERVER_COMMAND, ZL_SERVER_PORT among them: another
# server image is another environment).
SERVER_VARIABLES = ("ZL_ARCH", "ZL_VARIANT", "ZL_WORKERS", "ZL_BACKLOG", "ZL_READ_TIMEOUT")
# Recorded only for impl: image (serves for zerohttpd too); the lab's and the article's
# servers fix them.
IMAGE_PARAMS = ("image", "command", "port", "ready_path", "serves")


@dataclass(frozen=True)
class RunPlan:
    id: str
    index: int
    arch: str                     # the architecture; for impl: image, the server's name
    variant: str | None           # the Python server's options: None for the other servers
    workers: int | None
    backlog: int | None
    read_timeout_s: float | None
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
    # Which server runs (server.impl), and for impl: image what it is and how it is reached.
    impl: str = "python"
    image: str | None = None
    command: list[str] | None = None
    port: int = 8000
    ready_path: str = "/"
    serves: list[str] | None = None   # None: every request kind

    @property
    def cell(self) -> str:
        """The cell this run measures once: its id without the repeat number."""
        return cell_id(self.arch, self.connections, self.rate, self.variant, self.impl)

    @property
    def server_url(self) -> str:
        """The server's base URL as the generators see it on the environment's network."""
        return f"http://server:{self.port}"

    @property
    def ready_url(self) -> str:
        """Any HTTP answer to a GET of this URL means the (re)started server is up."""
        return self.server_url + self.ready_path

    @property
    def served(self) -> tuple[str, ...]:
        """The request kinds the server answers, and so the ones verification checks."""
        return tuple(self.serves) if self.serves else KINDS

    @classmethod
    def from_entry(cls, entry: dict) -> "RunPlan":
        """A run back from its result.json entry (its id, index and params)."""
        names = {f.name for f in fields(cls)}
        params = {"variant": "lean"} | entry["params"]  # results from before variants: lean
        return cls(id=entry["id"], index=entry["index"], **{k: v for k, v in params.items() if k in names})

    def params(self) -> dict:
        """What result.json records of this run."""
        p = asdict(self)
        del p["id"], p["index"]
        if self.impl != "image":
            for key in IMAGE_PARAMS:
                if not (key == "serves" and self.impl == "zerohttpd"):
                    del p[key]
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
        """The ZL_* variables that docker-compose.yml (and compose/server-<impl>.yml) read."""
        v = {"ZL_ARCH": self.arch}
        if self.impl == "python":
            v.update({"ZL_VARIANT": self.variant, "ZL_WORKERS": str(self.workers),
                      "ZL_BACKLOG": str(self.backlog), "ZL_READ_TIMEOUT": f"{self.read_timeout_s:g}"})
        else:
            v.update({"ZL_SERVER_IMPL": self.impl, "ZL_SERVER_PORT": str(self.port)})
        if self.impl == "image":
            v["ZL_SERVER_IMAGE_REF"] = str(self.image)
            # JSON: compose.py writes it into the environment's override as a list.
            v["ZL_SERVER_COMMAND"] = json.dumps(list(self.command)) if self.command else ""
        v.update({
            "ZL_NOFILE": str(self.nofile),
            "ZL_SOMAXCONN": str(self.sysctls["somaxconn"]),
            "ZL_PORT_RANGE": str(self.sysctls["ip_local_port_range"]),
            "ZL_TW_REUSE": str(self.sysctls["tcp_tw_reuse"]),
        })
        for service, cpuset in self.cpusets.items():
            v[f"ZL_{service.upper()}_CPUSET"] = cpuset
        for service, size in self.memory.items():
            v[f"ZL_{service.upper()}_MEM"] = size
        return v


def plan_runs(s: Scenario) -> list[RunPlan]:
    """Every cell `min` times (the scenario's repeats), in rounds: each round runs every cell once
    (round-robin, or shuffled from the scenario's seed), so drift of the host over a long sweep
    spreads over all cells instead of biasing the ones run last."""
    first, _, _ = repeat_bounds(s)
    runs: list[RunPlan] = []
    for repeat in range(1, first + 1):
        runs += round_of(s, cells(s), repeat, start_index=len(runs) + 1)
    return runs


def next_round(s: Scenario, entries: list[dict]) -> list[RunPlan]:
    """Once every run has ended: one more repeat of each cell whose interval is still wider
    than the scenario's target, while it has had fewer than `max` runs (every attempt counts,
    so a cell that never gives a trusted figure cannot run forever). None without a target."""
    _, most, target = repeat_bounds(s)
    if target is None:
        return []
    summaries = {c["cell"]: c for c in cell_summaries(entries, target)}
    done: dict[str, int] = {}  # runs so far per cell (repeat numbers have no gaps)
    for e in entries:
        p = e["params"]
        key = cell_id(p["arch"], p["connections"], p.get("rate"), p.get("variant", "lean"),
                      p.get("impl", "python"))
        done[key] = max(done.get(key, 0), p["repeat"])
    want = [c for c in cells(s)
            if needs_more((summaries.get(c.id) or {}).get("requests_per_sec"), target, most, done.get(c.id, 0))]
    if not want:
        return []
    repeat = max(done[c.id] for c in want) + 1
    return round_of(s, want, repeat, start_index=len(entries) + 1)


def statistics_block(s: Scenario) -> dict:
    """How the result's figures are made, recorded with it."""
    first, most, target = repeat_bounds(s)
    return {"interval": "95% interval of the median from order statistics (exact coverage "
                        "stated per cell; [min, max] below 6 repeats)",
            "order": s.order, "seed": order_seed(s),
            "repeats": {"min": first, "max": most}, "target_ci_pct": target,
            "steady_state": s.steady_state.model_dump()}


def order_seed(s: Scenario) -> int | None:
    """The seed a shuffled order is drawn from: the scenario's, or one derived from its content,
    so that the same scenario always runs in the same order and resumes into it."""
    if s.order != "shuffled":
        return None
    return s.seed if s.seed is not None else int(scenario_digest(s)[:8], 16)


def cells(s: Scenario) -> list[RunPlan]:
    """One run (repeat 0, index 0) per cell of the sweep, in the scenario's order: server by
    server (sweep.server), then architecture, concurrency and rate."""
    return [cell for server in servers(s) for cell in server_cells(s, server)]


def server_cells(s: Scenario, server: ServerSpec) -> list[RunPlan]:
    """The cells of one of the scenario's servers."""
    python = server.impl == "python"
    archs = swept(s, "arch", [server.arch]) if server.impl != "image" else [server.label()]
    variants = swept(s, "variant", [server.variant]) if python else [None]
    levels = swept(s, "connections", [s.load.connections])
    rates = swept(s, "rate", [s.load.rate])
    c = resolved_constraints(s)
    sysctls = c["sysctls"].model_dump()
    image = {"image": server.image, "command": list(server.command) if server.command else None,
             "port": server.port, "ready_path": server.ready_path} if server.impl == "image" else {}
    serves = list(server.serves) if server.impl != "python" and server.serves else None
    return [RunPlan(
        id=cell_id(arch, connections, rate, variant, server.impl), index=0, arch=arch, variant=variant,
        workers=server.workers if python else None, backlog=server.backlog if python else None,
        read_timeout_s=server.read_timeout_s if python else None, connections=connections,
        rate=rate, repeat=0, tool=s.load.tool, mode=s.load.mode, threads=s.load.threads,
        duration_s=s.load.duration_s, warmup_s=s.load.warmup_s, timeout_s=s.load.timeout_s,
        mix=s.load.mix.model_dump(), static_path=s.load.static_path, generators=s.generators,
        cpusets=dict(c["cpusets"]), memory=dict(c["memory"]), nofile=int(c["nofile"]), sysctls=sysctls,
        impl=server.impl, serves=serves, **image,
    ) for arch, variant, connections, rate in itertools.product(archs, variants, levels, rates)]


def cell_id(arch: str, connections: int, rate: int | None, variant: str | None = "lean",
            impl: str = "python") -> str:
    """e.g. preforked-c200, epoll-c2000-r5000, poll-faithful-c200, zerohttpd-epoll-c200 (the
    article's C servers), nginx-c200 (impl: image, by the server's name): lab.scenario.cell_stem."""
    return f"{cell_stem(arch, variant, impl)}-c{connections}" + (f"-r{rate}" if rate else "")


# Where each implementation's image comes from, for a scenario that may leave its server out.
IMAGE_HINTS = {"zerohttpd": ("zerolab/zerohttpd",
                             "build it with make images ZEROHTTPD=/path/to/built/checkout"),
               "image": (None, "build or pull it on this machine first")}


def server_image(server: ServerSpec) -> str:
    """The image a server of the given implementation runs (as compose names it: no tag is latest)."""
    ref = server.image if server.impl == "image" else IMAGE_HINTS[server.impl][0]
    last = (ref or "").rsplit("/", 1)[-1]
    return ref if ":" in last or "@" in (ref or "") else f"{ref}:latest"


def without_absent_servers(s: Scenario, image_present) -> tuple[Scenario, list[str]]:
    """The scenario less its optional servers (sweep.server entries with `optional: true`) whose
    image `image_present(ref)` says is not here, and a note for each one left out. A server that
    is not optional stays: its missing image is an error when its environment comes up."""
    entries = s.sweep.server if s.sweep and s.sweep.server else []
    kept, notes = [], []
    for entry, server in zip(entries, servers(s)):
        if entry.optional and server.impl != "python" and not image_present(server_image(server)):
            who = "zerohttpd" if server.impl == "zerohttpd" else server.label()
            ref = server_image(server).removesuffix(":latest")
            notes.append(f"{who} cells left out: no {ref} image; {IMAGE_HINTS[server.impl][1]}")
        else:
            kept.append(entry)
    if not notes:
        return s, []
    if not kept:
        raise ScenarioError(f"scenario {s.name!r}", [f"sweep.server: every server is left out: {'; '.join(notes)}"])
    sweep = s.sweep.model_copy(update={"server": kept})
    return s.model_copy(update={"sweep": sweep}), notes


def round_of(s: Scenario, of_cells: list[RunPlan], repeat: int, start_index: int) -> list[RunPlan]:
    """Repeat number `repeat` of each of `of_cells`, in the scenario's order for that round."""
    ordered = list(of_cells)
    if s.order == "shuffled":
        # One generator per round, so a resumed or extended result draws the same order.
        random.Random(f"{order_seed(s)}/{repeat}").shuffle(ordered)
    # Cells that need another environment (another server image, say) run together in each
    # round: a change of environment costs seconds, a restarted server under one.
    first_seen = {key: i for i, key in reversed(list(enumerate(c.environment_key() for c in of_cells)))}
    ordered.sort(key=lambda c: first_seen[c.environment_key()])
    return [replace(cell, id=f"{cell.id}-{repeat}", repeat=repeat, index=start_index + i)
            for i, cell in enumerate(ordered)]


def scenario_digest(s: Scenario) -> str:
    """Identifies a scenario's content, so a sweep resumes only into results of the same scenario."""
    text = json.dumps(s.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
