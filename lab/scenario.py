"""Scenario files: what runs. Loaded from YAML and validated before anything starts.

Every error names the file, the field and the fix, so a typo never costs a half-started run.
"""
from __future__ import annotations

import difflib
import os
import re
import shlex
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer,
                      model_validator)

from loadgen.spec import MODES, TOOLS, LoadSpec, SpecError

ROOT = Path(__file__).resolve().parent.parent
SCENARIO_DIR = ROOT / "scenarios"
PROFILE_DIR = ROOT / "compose" / "profiles"

ARCHITECTURES = ("iterative", "forking", "preforked", "threaded", "prethreaded", "poll", "epoll")
SERVICES = ("server", "redis", "loadgen")
NOFILE_HARD_LIMIT = 20_000  # above it a container fails to start on this kind of host
# Descriptors a generator needs beyond its connections (stdio, epoll, timers, script files).
GENERATOR_FD_MARGIN = 64

Arch = Literal[ARCHITECTURES]
Service = Literal[SERVICES]


class ScenarioError(Exception):
    """A scenario that cannot run, with every problem found in it."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def __str__(self) -> str:
        lines = [f"{self.source} is not a valid scenario:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


VARIANTS = ("lean", "faithful")
Variant = Literal[VARIANTS]

# Which server runs: this project's Python server, the article's own C servers (ZeroHTTPd, from a
# checkout the user built: `make images ZEROHTTPD=...`), or any image the scenario names.
IMPLS = ("python", "zerohttpd", "image")
# The request kinds a load mix weighs, and a server may serve.
KINDS = ("guestbook_get", "guestbook_post", "static")
Kind = Literal[KINDS]
# The fields each implementation takes; the others are fixed by it (the C servers fix their
# workers, backlog and timeouts in their sources) or mean nothing to it.
PYTHON_FIELDS = ("arch", "variant", "workers", "backlog", "read_timeout_s")
IMAGE_FIELDS = ("image", "command", "port", "ready_path", "serves", "name")
IMPL_FIELDS = {"python": PYTHON_FIELDS, "zerohttpd": ("arch", "serves"), "image": IMAGE_FIELDS}
# A Docker image reference: [registry[:port]/]path[:tag][@digest].
IMAGE_REF = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
                       r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?")
SERVER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")


class ServerSpec(Strict):
    # python | zerohttpd | image; the fields below say which ones each takes (IMPL_FIELDS).
    impl: Literal[IMPLS] = "python"
    arch: Arch = "preforked"
    # faithful: the per-request work of the article's C servers (docs/architecture.md);
    # lean: the same architecture with that work trimmed (one Redis round trip, cached pages).
    variant: Variant = "lean"
    workers: int = Field(100, ge=1, le=2000, description="children (preforked) or threads (prethreaded)")
    backlog: int = Field(10, ge=1, le=65535, description="listen() backlog; the article used 10")
    read_timeout_s: float = Field(5.0, gt=0, le=300)
    # impl: image only.
    image: Optional[str] = Field(None, description="the server image, e.g. zerolab/nginx:latest")
    command: Optional[list[str]] = Field(None, description="its command (a list, or a string split "
                                                            "as a shell would); null: the image's own")
    port: int = Field(8000, ge=1, le=65535, description="the port it listens on")
    ready_path: str = Field("/", description="any HTTP answer to GET of this path means it is up")
    # impl: image (required) and zerohttpd (default: all): what verification holds it to.
    serves: Optional[list[Kind]] = Field(None, min_length=1, description="the request kinds it serves")
    name: Optional[str] = Field(None, description="its name in cell ids and reports; default: the image's")

    @field_validator("image")
    @classmethod
    def _image_ref(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not IMAGE_REF.fullmatch(v):
            raise ValueError("write an image reference such as zerolab/nginx or nginx:1.22 "
                             "(lowercase name, optional :tag)")
        return v

    @field_validator("command", mode="before")
    @classmethod
    def _command(cls, v):
        # A string is split as compose would split it, so both forms mean the same thing.
        if isinstance(v, str):
            try:
                v = shlex.split(v)
            except ValueError as exc:
                raise ValueError(f"cannot split it into words: {exc}") from None
        if isinstance(v, list) and not v:
            raise ValueError("an empty command; leave it out to run the image's own")
        return v

    @field_validator("ready_path")
    @classmethod
    def _ready_path(cls, v: str) -> str:
        if not v.startswith("/") or any(c.isspace() for c in v):
            raise ValueError("must start with '/' and hold no spaces, e.g. / or /health")
        return v

    @field_validator("serves")
    @classmethod
    def _serves_once(cls, v):
        if v is not None and len(set(v)) != len(v):
            raise ValueError("list each request kind once")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        if not SERVER_NAME.fullmatch(v):
            raise ValueError("lowercase letters, digits, '.', '_' and '-', at most 40, e.g. nginx")
        if v in ARCHITECTURES or v in IMPLS:
            raise ValueError(f"{v!r} names an architecture or implementation of the lab's own "
                             "servers; name the server after what it is, e.g. nginx")
        return v

    def served(self) -> tuple[str, ...]:
        """The request kinds this server is held to: all of them unless it says fewer."""
        return tuple(self.serves) if self.impl != "python" and self.serves else KINDS

    def label(self) -> str:
        """What names the server in cell ids: its architecture, or for an image its name."""
        if self.impl != "image":
            return self.arch
        return self.name or image_name(self.image or "server")


def image_name(ref: str) -> str:
    """The last part of an image's path, without tag or digest: zerolab/nginx:latest -> nginx."""
    path = ref.split("@", 1)[0]
    last = path.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


class SweepServer(ServerSpec):
    """One server of a sweep over servers: the fields it sets, over the scenario's `server:`.

    It keeps only what the scenario file says (a resolved scenario writes it back the same way),
    so a field it leaves out comes from `server:`. `optional`: left out of the plan, with a note,
    when its image is not on this machine (the article's C servers are built only from a
    checkout the user supplies)."""
    optional: bool = Field(False, description="leave this server out when its image is missing here")

    @model_serializer(mode="wrap")
    def _as_written(self, handler):
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}

    def own_fields(self) -> set[str]:
        """The server fields this entry sets itself (not `optional`)."""
        return self.model_fields_set - {"optional"}


def merged_server(base: ServerSpec, entry: SweepServer) -> ServerSpec:
    """`entry` over `base`: the base's fields that the entry's implementation takes, then the
    entry's own. What `server:` says of another implementation never reaches it (a Python
    variant does not become a field of the C servers)."""
    impl = entry.impl if "impl" in entry.model_fields_set else base.impl
    takes = IMPL_FIELDS[impl]
    data = {k: v for k, v in base.model_dump().items() if k in takes}
    data.update({k: getattr(entry, k) for k in entry.own_fields()}, impl=impl)
    return ServerSpec(**data)


class Sysctls(Strict):
    somaxconn: int = Field(4096, ge=16, le=65535)
    ip_local_port_range: str = "1024 65000"
    tcp_tw_reuse: Literal[0, 1, 2] = 1

    @field_validator("ip_local_port_range")
    @classmethod
    def _port_range(cls, v: str) -> str:
        m = re.fullmatch(r"\s*(\d+)\s+(\d+)\s*", v)
        if not m or not (1 <= int(m.group(1)) < int(m.group(2)) <= 65535):
            raise ValueError("must be two port numbers 'LOW HIGH' with LOW < HIGH <= 65535")
        return f"{int(m.group(1))} {int(m.group(2))}"


class Constraints(Strict):
    profile: Optional[str] = Field(None, description="a file compose/profiles/<name>.env")
    cpusets: dict[Service, str] = {}
    memory: dict[Service, str] = {}
    nofile: Optional[int] = Field(None, ge=1024, le=NOFILE_HARD_LIMIT)
    sysctls: Optional[Sysctls] = None

    @field_validator("cpusets")
    @classmethod
    def _cpuset_syntax(cls, v: dict[str, str]) -> dict[str, str]:
        for service, cpuset in v.items():
            parse_cpuset(str(cpuset), f"cpusets.{service}")
        return {k: str(s) for k, s in v.items()}

    @field_validator("memory")
    @classmethod
    def _memory_syntax(cls, v: dict[str, str]) -> dict[str, str]:
        for service, size in v.items():
            if not re.fullmatch(r"\d+[bkmg]?", str(size).lower()):
                raise ValueError(f"memory.{service}={size!r}: write a size such as 512m or 2g")
        return {k: str(s).lower() for k, s in v.items()}


class Mix(Strict):
    guestbook_get: float = Field(1.0, ge=0)
    guestbook_post: float = Field(0.0, ge=0)
    static: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> "Mix":
        if self.guestbook_get + self.guestbook_post + self.static <= 0:
            raise ValueError("at least one request kind needs a weight above 0")
        return self


class Load(Strict):
    tool: Literal[TOOLS] = "wrk"
    mode: Literal[MODES] = "closed"
    connections: int = Field(20, ge=1, le=100_000)
    rate: Optional[int] = Field(None, ge=1, description="total requests/second, open mode only")
    threads: int = Field(2, ge=1, le=64)
    # Whole seconds: wrk reads `-d 1.5s` as an error.
    duration_s: int = Field(10, gt=0, le=3600)
    warmup_s: int = Field(2, ge=0, le=600)
    timeout_s: int = Field(5, gt=0, le=120)
    mix: Mix = Mix()
    static_path: str = "/index.html"

    @field_validator("static_path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with '/', e.g. /index.html")
        return v


class Sweep(Strict):
    arch: Optional[list[Arch]] = Field(None, min_length=1)
    variant: Optional[list[Variant]] = Field(None, min_length=1)
    connections: Optional[list[int]] = Field(None, min_length=1)
    rate: Optional[list[int]] = Field(None, min_length=1)
    # Servers side by side in one result: each merged over `server:` (merged_server).
    server: Optional[list[SweepServer]] = Field(None, min_length=1)

    @model_serializer(mode="wrap")
    def _without_unused_servers(self, handler):
        # Left out when unused, so scenarios written before it keep their digest (and resume).
        data = handler(self)
        if data.get("server") is None:
            data.pop("server", None)
        return data

    @field_validator("connections", "rate")
    @classmethod
    def _positive(cls, v):
        if v is not None and any(x < 1 for x in v):
            raise ValueError("every value must be 1 or more")
        return v

    @field_validator("arch", "variant", "connections", "rate")
    @classmethod
    def _each_once(cls, v):
        # Two equal values would plan two runs with one id; repeats measure a cell again.
        if v is not None:
            twice = sorted({x for x in v if v.count(x) > 1}, key=str)
            if twice:
                raise ValueError(f"{', '.join(map(str, twice))} appear(s) more than once; list each "
                                 "value once and use repeats to measure a cell several times")
        return v


class RepeatTarget(Strict):
    """Repeat a cell until its figure is known well enough: at least `min` times, at most `max`,
    stopping once the 95% interval of its median is within +-ci_pct percent."""
    min: int = Field(3, ge=1, le=100)
    max: int = Field(10, ge=1, le=100)
    ci_pct: float = Field(5.0, gt=0, le=100, description="target half-width of the interval, % of the median")

    @model_validator(mode="after")
    def _order(self) -> "RepeatTarget":
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be at least min ({self.min})")
        return self


class SteadyState(Strict):
    """The part of the measured window whose throughput counts on the server's side."""
    trim_start_s: float = Field(1.0, ge=0, le=600)
    trim_end_s: float = Field(1.0, ge=0, le=600)
    # The two halves of 10 s runs differed by 6-11% on average, up to 21%, on this kind of host
    # (make bench-noise, 24 runs).
    max_drift: float = Field(0.3, gt=0, le=1, description="largest share the two halves may differ by")


class Scenario(Strict):
    name: str
    description: str = ""
    server: ServerSpec = ServerSpec()
    constraints: Constraints = Constraints()
    load: Load = Load()
    generators: int = Field(1, ge=1, le=64, description="load-generator containers")
    # Each cell this many times, or until its interval is narrow enough ({min, max, ci_pct}).
    repeats: Union[Annotated[int, Field(ge=1, le=100)], RepeatTarget] = 1
    # round-robin: every cell once per round, so drift of the host spreads over all cells;
    # shuffled: each round in a random order drawn from `seed` (recorded in the result).
    order: Literal["round-robin", "shuffled"] = "round-robin"
    seed: Optional[int] = None
    steady_state: SteadyState = SteadyState()
    sweep: Optional[Sweep] = None
    # Swarm cannot pin CPUs; a scenario must accept the weaker limits explicitly to run there.
    accept_weaker_cpu_limits: bool = False


def repeat_bounds(s: Scenario) -> tuple[int, int, Optional[float]]:
    """(repeats every cell gets, most any cell may get, target interval half-width in %)."""
    if isinstance(s.repeats, RepeatTarget):
        return s.repeats.min, s.repeats.max, s.repeats.ci_pct
    return s.repeats, s.repeats, None


def swept(s: Scenario, name: str, default):
    """The sweep's values of field `name`, or `default` when the scenario does not sweep it."""
    return (getattr(s.sweep, name) if s.sweep else None) or default


def servers(s: Scenario) -> list[ServerSpec]:
    """The servers a scenario runs, in its order: each of sweep.server merged over `server:`,
    or `server:` alone."""
    if s.sweep and s.sweep.server:
        return [merged_server(s.server, entry) for entry in s.sweep.server]
    return [s.server]


# ---------------------------------------------------------------- loading


def parse_cpuset(text: str, field: str = "cpuset") -> set[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise ValueError(f"{field}={text!r}: write CPUs as in Docker's cpuset, e.g. 0 or 0-1 or 0,2")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"{field}={text!r}: range {lo}-{hi} runs backwards")
        cpus.update(range(lo, hi + 1))
    return cpus


def read_profile(name: str) -> dict[str, str]:
    """Variables of a named constraint profile (compose/profiles/<name>.env)."""
    path = PROFILE_DIR / f"{name}.env"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILE_DIR.glob("*.env"))
        raise ValueError(f"no profile {name!r} (known: {', '.join(known) or 'none'})")
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def available_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def scenario_path(name: str) -> Path:
    """A scenario by name (scenarios/<name>.yaml) or by path."""
    as_path = Path(name)
    if as_path.suffix in (".yaml", ".yml") and as_path.is_file():
        return as_path
    path = SCENARIO_DIR / f"{name}.yaml"
    if not path.is_file():
        known = available_scenarios()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ScenarioError(
            f"scenario {name!r}",
            [f"no file {path.relative_to(ROOT)}.{hint} Scenarios: {', '.join(known)}"],
        )
    return path


def load_scenario(name: str, host_cpus: Optional[set[int]] = None) -> Scenario:
    path = scenario_path(name)
    source = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioError(source, [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ScenarioError(source, ["the file must hold a mapping of fields (name, server, load, ...)"])
    data.setdefault("name", path.stem)
    return validate_scenario(data, source, host_cpus)


def validate_scenario(data: dict, source: str, host_cpus: Optional[set[int]] = None) -> Scenario:
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, [_explain(err) for err in _one_branch(exc.errors(), data)]) from None
    problems = check_consistency(scenario, host_cpus)
    if problems:
        raise ScenarioError(source, problems)
    return scenario


def _one_branch(errors: list[dict], data: dict) -> list[dict]:
    """A field that takes a number or a mapping (repeats) fails both ways: keep the complaint of
    the form the file used, and drop pydantic's branch names from the location."""
    kept = []
    for err in errors:
        loc = list(err["loc"])
        branch = loc[1] if len(loc) > 1 and isinstance(loc[1], str) and (
            loc[1] in ("int", "constrained-int", "RepeatTarget") or loc[1].startswith("function-after[")) else None
        if branch is not None:
            as_number = branch.endswith("int")
            if as_number == isinstance(data.get(loc[0]), dict):
                continue
            loc.remove(branch)
        kept.append({**err, "loc": tuple(loc)})
    return kept or errors


def _loc_text(loc: tuple) -> str:
    """sweep.server[2].variant: an entry of a list of servers by its place, as the file reads."""
    text = ""
    for part, before in zip(loc, (None, *loc)):
        if isinstance(part, int) and before == "server":
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _explain(err: dict) -> str:
    loc = _loc_text(err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        model = _model_at(err["loc"][:-1])
        known = list(model.model_fields) if model else []
        close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        fix = f"did you mean '{close[0]}'?" if close else f"known fields here: {', '.join(known)}"
        return f"{loc}: unknown field; {fix}"
    if err["type"] == "literal_error":
        return f"{loc}: {err['input']!r} is not allowed; {err['msg'].replace('Input should be', 'use')}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg} (got {err.get('input')!r})"


def _model_at(loc: tuple) -> Optional[type[BaseModel]]:
    model: type[BaseModel] = Scenario
    for part in loc:
        if isinstance(part, int):  # an item of a list of models: the same model
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        for candidate in (ann, *args, *(a for arg in args for a in getattr(arg, "__args__", ()))):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
        else:
            return None
    return model


# ---------------------------------------------------------------- cross-field rules


def host_cpu_set() -> set[int]:
    return set(os.sched_getaffinity(0))


def resolved_constraints(s: Scenario) -> dict[str, object]:
    """The profile's values, overridden by the scenario's explicit ones."""
    profile = read_profile(s.constraints.profile) if s.constraints.profile else {}
    cpusets = {svc: profile.get(f"ZL_{svc.upper()}_CPUSET", "") for svc in SERVICES}
    memory = {svc: profile.get(f"ZL_{svc.upper()}_MEM", "") for svc in SERVICES}
    cpusets.update(s.constraints.cpusets)
    memory.update(s.constraints.memory)
    nofile = s.constraints.nofile or int(profile.get("ZL_NOFILE", NOFILE_HARD_LIMIT))
    sysctls = s.constraints.sysctls or Sysctls(
        somaxconn=int(profile.get("ZL_SOMAXCONN", 4096)),
        ip_local_port_range=profile.get("ZL_PORT_RANGE", "1024 65000"),
        tcp_tw_reuse=int(profile.get("ZL_TW_REUSE", 1)),
    )
    return {"cpusets": {k: v for k, v in cpusets.items() if v},
            "memory": {k: v for k, v in memory.items() if v},
            "nofile": nofile, "sysctls": sysctls}


def check_consistency(s: Scenario, host_cpus: Optional[set[int]] = None) -> list[str]:
    problems: list[str] = server_problems(s) + load_problems(s)
    load = s.load
    try:
        constraints = resolved_constraints(s)
    except ValueError as exc:
        return problems + [f"constraints.profile: {exc}"]

    cpus = host_cpus if host_cpus is not None else host_cpu_set()
    for service, cpuset in constraints["cpusets"].items():
        try:
            wanted = parse_cpuset(cpuset, f"constraints.cpusets.{service}")
        except ValueError as exc:
            problems.append(str(exc))
            continue
        missing = wanted - cpus
        if missing:
            problems.append(
                f"constraints.cpusets.{service}: CPU {','.join(map(str, sorted(missing)))} does not exist "
                f"here (this machine has CPUs {_cpu_text(cpus)}); pick among those")

    nofile = int(constraints["nofile"])
    if nofile > NOFILE_HARD_LIMIT:
        problems.append(f"constraints.nofile: {nofile} is above this host's hard limit {NOFILE_HARD_LIMIT}")
    levels = swept(s, "connections", None)
    field = "sweep.connections" if levels else "load.connections"
    for connections in levels or [load.connections]:
        per_generator = -(-connections // s.generators)
        if per_generator + GENERATOR_FD_MARGIN > nofile:
            problems.append(
                f"{field}: {connections} connections over {s.generators} generator(s) need "
                f"{per_generator + GENERATOR_FD_MARGIN} open files each, above nofile={nofile}; "
                f"add generators or lower the connections")
            break
        if connections < s.generators * load.threads and load.tool != "oha":
            problems.append(f"generators: {s.generators} generators x {load.threads} threads need at least "
                            f"{s.generators * load.threads} connections (got {connections})")
            break
    return problems


def server_problems(s: Scenario) -> list[str]:
    """What each server of the scenario takes, and what it can serve: `server:` alone, or each
    entry of sweep.server merged over it (checked as a `server:` block, named by its place)."""
    entries = s.sweep.server if s.sweep and s.sweep.server else None
    defaults = ServerSpec()
    # A field is the scenario's when it differs from the default: a resolved scenario's dump
    # carries every field of `server:`.
    said = {f for f in ServerSpec.model_fields if getattr(s.server, f) != getattr(defaults, f)}
    if entries is None:
        problems = _one_server_problems(s, s.server, "server", said)
        for field in ("arch", "variant"):
            if getattr(s.sweep, field, None) and field not in IMPL_FIELDS[s.server.impl]:
                problems.append(f"sweep.{field}: impl: {s.server.impl} has no {field} to sweep; remove it")
        return problems
    # `server:` is the base the entries start from: only what its own impl does not take is wrong.
    problems = _not_taken(s.server, "server", said)
    if s.sweep.variant:
        problems.append("sweep.variant: with sweep.server, list the variants as servers, e.g. "
                        "server: [{variant: faithful}, {variant: lean}]; remove sweep.variant")
    merged = [merged_server(s.server, e) for e in entries]
    stems: dict[str, int] = {}
    for i, (entry, server) in enumerate(zip(entries, merged)):
        where = f"sweep.server[{i}]"
        problems += _one_server_problems(s, server, where, entry.own_fields())
        if entry.optional and server.impl == "python":
            problems.append(f"{where}.optional: the lab's own server is always there (make images "
                            "builds it); only impl: zerohttpd or image can be left out; remove it")
        if s.sweep.arch and "arch" in entry.own_fields():
            problems.append(f"{where}.arch: sweep.arch sweeps the architecture of every server that "
                            "has one; set it in one place")
        same = next((j for j in range(i) if merged[j] == server), None)
        if same is not None:
            problems.append(f"{where}: the same server as sweep.server[{same}]; list each server once")
            continue
        for stem in server_stems(server, swept(s, "arch", None)):
            if stem in stems:
                problems.append(f"{where}: its cells would have the ids of sweep.server[{stems[stem]}]'s "
                                f"({stem}-c...); servers side by side must differ in impl, arch, "
                                "variant or (impl: image) name")
                break
            stems[stem] = i
    if s.sweep.arch and not any("arch" in IMPL_FIELDS[m.impl] for m in merged):
        problems.append("sweep.arch: no server in sweep.server has an architecture to sweep; remove it")
    return problems


def _not_taken(server: ServerSpec, where: str, fields: set[str]) -> list[str]:
    """`fields` that `server`'s implementation does not take, each with the reason."""
    impl = server.impl
    c_sources = {"variant": "variants are the Python server's (faithful imitates these very servers)",
                 "workers": "their sources fix it (100 preforked children, 100 prethreads)",
                 "backlog": "their sources fix it at 10",
                 "read_timeout_s": "their sources fix it (only prethreaded has one: 5 s)"}
    problems = []
    for field in ServerSpec.model_fields:
        if field == "impl" or field in IMPL_FIELDS[impl] or field not in fields:
            continue
        if field == "serves":
            reason = "the lab's own server serves every kind"
        elif field in IMAGE_FIELDS:
            reason = "it describes a server image, for impl: image"
        elif impl == "zerohttpd":
            reason = c_sources[field]
        elif field == "arch":
            reason = "an image's server is named by server.name"
        else:
            reason = "it is an option of the lab's Python server"
        problems.append(f"{where}.{field}: impl: {impl} does not take it: {reason}; remove it")
    return problems


def _one_server_problems(s: Scenario, server: ServerSpec, where: str, fields: set[str]) -> list[str]:
    """One server's rules, its problems named at `where` (server, or sweep.server[i]); `fields`
    are those the scenario set there."""
    problems = _not_taken(server, where, fields)
    if server.impl == "image":
        if not server.image:
            problems.append(f"{where}.image: impl: image needs the server's image, e.g. zerolab/nginx")
        elif not server.name:
            derived = image_name(server.image)
            if not SERVER_NAME.fullmatch(derived) or derived in ARCHITECTURES or derived in IMPLS:
                problems.append(f"{where}.name: the image's own name {derived!r} cannot name its cells "
                                "(an architecture's or implementation's name); give server.name, e.g. nginx")
        if not server.serves:
            problems.append(f"{where}.serves: say which request kinds the image serves, e.g. [static] "
                            f"(kinds: {', '.join(KINDS)})")
    if server.serves and "guestbook_post" in server.serves and "guestbook_get" not in server.serves:
        problems.append(f"{where}.serves: guestbook_post needs guestbook_get too (verification reads "
                        "the posted remark back with GET /guestbook)")
    served = server.served()
    who = "the server" if where == "server" else where
    for kind in KINDS:
        if getattr(s.load.mix, kind) > 0 and kind not in served:
            problems.append(f"load.mix.{kind}: {who} does not serve {kind} ({where}.serves: "
                            f"{', '.join(served)}); set its weight to 0 or add it to {where}.serves")
    return problems


def server_stems(server: ServerSpec, archs: Optional[list[str]] = None) -> list[str]:
    """The start of its cells' ids, one per architecture it runs (`archs`: sweep.arch)."""
    if server.impl == "image":
        return [cell_stem(server.label(), None, "image")]
    variant = server.variant if server.impl == "python" else None
    return [cell_stem(arch, variant, server.impl) for arch in archs or [server.arch]]


def cell_stem(arch: str, variant: Optional[str], impl: str) -> str:
    """A cell's id before its load: poll, poll-faithful (lean, the first variant, is not named,
    so results from before variants keep their ids), zerohttpd-poll (the article's C servers),
    nginx (impl: image, by the server's name)."""
    prefix = "zerohttpd-" if impl == "zerohttpd" else ""
    named = "" if variant in ("lean", None) else f"-{variant}"
    return f"{prefix}{arch}{named}"


def load_problems(s: Scenario) -> list[str]:
    """The load specification's own rules (loadgen.spec, which the agents apply too), checked for
    every run the sweep makes and for its split over the generators, before anything starts."""
    problems: list[str] = []
    seen: set[str] = set()
    load = s.load
    for connections in swept(s, "connections", [load.connections]):
        for rate in swept(s, "rate", [load.rate]):
            try:
                LoadSpec(tool=load.tool, mode=load.mode, url=f"http://server:{s.server.port}",
                         connections=connections, threads=load.threads, duration_s=load.duration_s, rate=rate,
                         timeout_s=load.timeout_s, mix=load.mix.model_dump(),
                         static_path=load.static_path).split(s.generators)
            except SpecError as exc:
                message = str(exc).removeprefix(f"{exc.field}: ")
                where = _scenario_field(s, exc.field)
                if f"{where}: {message}" in seen:  # one line per rule, at its first run
                    continue
                seen.add(f"{where}: {message}")
                if s.sweep or s.generators > 1:
                    message += (f" (for {connections} connections" + (f" at {rate}/s" if rate else "")
                                + f" over {s.generators} generator(s))")
                problems.append(f"{where}: {message}")
    return problems


def _scenario_field(s: Scenario, spec_field: str) -> str:
    """The scenario field behind a LoadSpec field."""
    if spec_field in ("connections", "rate") and s.sweep and getattr(s.sweep, spec_field):
        return f"sweep.{spec_field}"
    if spec_field == "generators":
        return "generators"
    return f"load.{spec_field}"


def with_overrides(s: Scenario, source: str, duration_s: Optional[int] = None,
                   repeats: Optional[int] = None) -> Scenario:
    """The scenario with command-line overrides applied and validated by the same schema, so an
    override the scenario file could not hold is refused the same way, naming the field."""
    if duration_s is None and repeats is None:
        return s
    data = s.model_dump(mode="json")
    said = []
    if duration_s is not None:
        said.append(f"--duration {duration_s}")
        data["load"]["duration_s"] = duration_s
        if isinstance(duration_s, int) and duration_s > 0:
            # A shortened run keeps its warm-up in proportion.
            data["load"]["warmup_s"] = min(s.load.warmup_s, duration_s // 5)
    if repeats is not None:
        said.append(f"--repeats {repeats}")
        data["repeats"] = repeats
    return validate_scenario(data, f"{source} with {' '.join(said)}")


def _cpu_text(cpus: set[int]) -> str:
    return ",".join(map(str, sorted(cpus)))
