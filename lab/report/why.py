"""A short generated "why" for each cell: the dominant cost its evidence shows (a claim and the
measurement behind it), and what moved at an architecture's collapse point.

The evidence is each run's `evidence` (lab/evidence.py): what the server's cgroups, processes and
network namespace did during the measured window. A cell's figure is the median over its trusted
repeats (server-failed ones included: they are results) of the runs that carry evidence. Every
rule below has an explicit threshold; a cell none of whose rules fires gets its main figures
and no claim, and a cell without evidence gets no "why" at all.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from lab.validity import MAX_GENERATOR_CPU, error_count

from .cells import Cell
from .load import Run

# --- thresholds -----------------------------------------------------------------------------
# Tasks (processes or threads) created per request from which creation is "per request": a fork
# or a thread per connection makes one per request (HTTP/1.0 closes each connection); a pool
# makes none, so half a task a request already means most requests paid for one.
TASKS_PER_REQUEST = 0.5
# Listen overflows per connection attempt from which the accept queue "overflowed": one in a
# thousand connections waiting a SYN retry (1 s, then 3 s) already shows in the p99.
OVERFLOW_PER_REQUEST = 0.001
# Linux resends an unanswered SYN after 1 s, then 3 s, 7 s (TCP_TIMEOUT_INIT, doubling): a p99 of
# this much or more with overflows is those retries.
SYN_RETRY_MS = 900.0
# Cores used, against those a process can use: at 90% the CPU is the limit. One process of
# Python uses one core at most (one interpreter lock) whatever the threads.
SATURATED_SHARE = 0.90
# Processes of a single-process server: the container's init and the server itself.
SINGLE_PROCESS_MAX = 2
# System CPU share (of the server's user + system) from which the kernel's work dominates.
SYSTEM_SHARE = 0.50
# Descriptors open at once from which a scan over them (poll) is a cost.
MANY_FDS = 1000
# Tasks alive at once from which their memory and scheduling is a cost.
MANY_TASKS = 500
# softirq time on the server's CPUs, as a share of those CPUs' time, from which the network
# stack's own work is a cost (it is all work on them, not the server's alone).
SOFTIRQ_SHARE = 0.15
# Involuntary context switches per request from which the server is being preempted: more
# runnable tasks than cores.
INVOLUNTARY_PER_REQUEST = 0.5
# Connections the server opens (to Redis) per request, from which it opens one per request.
ACTIVE_OPENS_PER_REQUEST = 0.5
# Sockets in TIME_WAIT worth naming with them.
MANY_TIME_WAIT = 1000
# Resets per request from which connections are being refused or cut.
RESETS_PER_REQUEST = 0.01
# Share of the window the cgroup's CPU quota held the server back.
THROTTLED_SHARE = 0.05
# A generator from this share of its CPUs is near the limit at which validity distrusts the
# run (MAX_GENERATOR_CPU): the figure may partly be the generator's.
GENERATOR_NEAR_SHARE = MAX_GENERATOR_CPU - 0.10

# Rules in the order a cause comes before its effects: a request refused at the door explains
# more than the CPU spent on those admitted. A finding's weight is its rule's priority times
# how far past its threshold the figure is (0.5 at the threshold, 1 at ten times it).
PRIORITY = {"overflow": 0.95, "generator": 0.9, "fork": 0.85, "thread": 0.8,
            "poll": 0.75, "saturated": 0.7, "redis_per_request": 0.65, "resets": 0.6,
            "throttled": 0.6, "system": 0.55, "tasks_alive": 0.5, "softirq": 0.45,
            "involuntary": 0.4, "fds": 0.3}


@dataclass(frozen=True)
class Finding:
    claim: str
    measurement: str
    source: str
    weight: float


@dataclass(frozen=True)
class CellWhy:
    text: str
    findings: list[Finding] = field(default_factory=list)
    dominant: Finding | None = None

    def to_json(self) -> dict:
        return {"text": self.text, "dominant": _finding_json(self.dominant),
                "findings": [_finding_json(f) for f in self.findings]}


def _finding_json(f: Finding | None) -> dict | None:
    return None if f is None else {"claim": f.claim, "measurement": f.measurement,
                                   "source": f.source, "weight": round(f.weight, 3)}


# --- one run's figures -----------------------------------------------------------------------

def server_evidence(run: Run) -> tuple[dict | None, str | None]:
    """(the server's evidence, None) or (None, why there is none)."""
    ev = run.raw.get("evidence")
    if not ev:
        return None, "no evidence recorded"
    if ev.get("available") is False or "services" not in ev:
        return None, f"evidence unavailable: {ev.get('reason') or 'no services'}"
    srv = (ev.get("services") or {}).get("server")
    if not srv:
        return None, "no evidence of the server"
    if not srv.get("available"):
        return None, f"server evidence unavailable: {srv.get('reason') or 'unknown'}"
    return srv, None


def run_figures(run: Run) -> dict[str, float]:
    """The figures the rules and plots use, of one run; those it cannot know are left out."""
    srv, _ = server_evidence(run)
    if srv is None:
        return {}
    ev = run.raw["evidence"]
    window = float(ev.get("window_s") or 0) or None
    rps = run.requests_per_sec
    out: dict[str, float] = {}
    per_s = srv.get("per_s") or {}

    def per_request(group: str, key: str, rate: str | None = None) -> float | None:
        """per second / requests per second; a rate left out of per_s (zeros are) is 0 when
        its group was measured."""
        if not rps or key not in (srv.get(group) or {}):
            return None
        return float(per_s.get(rate or key, 0.0)) / rps

    cpu = srv.get("cpu") or {}
    if "total_s" in cpu and window:
        out["cores"] = float(cpu.get("cores", cpu["total_s"] / window))
        out["user_cores"] = float(cpu.get("user_s", 0)) / window
        out["system_cores"] = float(cpu.get("system_s", 0)) / window
        both = float(cpu.get("user_s", 0)) + float(cpu.get("system_s", 0))
        if both > 0:
            out["system_share"] = float(cpu.get("system_s", 0)) / both
        if rps:
            out["cpu_ms_per_request"] = 1000 * out["cores"] / rps
        if "throttled_s" in cpu:
            out["throttled_share"] = float(cpu["throttled_s"]) / window
    if "softirq_s" in cpu and window:
        out["softirq_cores"] = float(cpu["softirq_s"]) / window
        n = len(cpu.get("softirq_cpus") or []) or 1
        out["softirq_share"] = out["softirq_cores"] / n
        out["cpus"] = float(n)

    tasks = srv.get("tasks") or {}
    if "created" in tasks and rps:
        out["tasks_per_request"] = per_request("tasks", "created", "tasks_created")
    for key in ("max_alive", "max_processes", "new_processes_seen", "new_threads_seen"):
        if key in tasks:
            out[key] = float(tasks[key])

    cs = srv.get("context_switches") or {}
    if rps and cs:
        out["voluntary_per_request"] = per_request("context_switches", "voluntary")
        out["involuntary_per_request"] = per_request("context_switches", "involuntary")
    faults = srv.get("page_faults") or {}
    if rps and "minor" in faults:
        out["faults_per_request"] = per_request("page_faults", "minor")

    fds = srv.get("fds") or {}
    if "max_sum" in fds:
        out["fds_max"] = float(fds["max_sum"])

    net = srv.get("net") or {}
    for key in ("listen_overflows", "listen_drops", "syn_retrans", "tcp_timeouts", "estab_resets",
                "out_rsts", "passive_opens", "active_opens", "time_wait_max"):
        if key in net:
            out[key] = float(net[key])
    # A SYN the full queue dropped is resent by the client: its retransmits and timeouts are
    # counted in the generators' network namespace, when it is not the server's.
    client = _client_net(ev, net.get("netns"))
    for key in ("syn_retrans", "tcp_timeouts"):
        if key in client:
            out[key] = out.get(key, 0.0) + float(client[key])
    queues = net.get("accept_queue") or {}
    if queues:
        out["accept_queue_max"] = float(max(q.get("max", 0) for q in queues.values()))
    if rps and window and "listen_overflows" in net:
        attempts = max(float(net.get("passive_opens", 0)) + float(net["listen_overflows"]), 1.0)
        out["overflow_share"] = float(net["listen_overflows"]) / attempts
    if rps and "active_opens" in net:
        out["active_opens_per_request"] = per_request("net", "active_opens")
    if rps and ("out_rsts" in net or "estab_resets" in net):
        out["resets_per_request"] = (float(per_s.get("out_rsts", 0))
                                     + float(per_s.get("estab_resets", 0))) / rps

    for key, figure in _run_outside_evidence(run).items():
        out[key] = figure
    return {k: v for k, v in out.items() if v is not None}


def _client_net(ev: dict, server_netns: str | None) -> dict:
    """The generators' TCP counters, when they were read in a namespace of their own."""
    gen = (ev.get("services") or {}).get("loadgen") or {}
    net = gen.get("net") or {} if gen.get("available") else {}
    return net if net and net.get("netns") != server_netns else {}


def _run_outside_evidence(run: Run) -> dict[str, float]:
    """Figures of the run itself that the rules weigh with the evidence."""
    out: dict[str, float] = {}
    if run.requests_per_sec is not None:
        out["requests_per_sec"] = run.requests_per_sec
    p99 = (run.latency_ms or {}).get("p99")
    if p99 is not None:
        out["p99_ms"] = float(p99)
    errors = run.raw.get("errors") or {}
    requests = run.raw.get("requests")
    if errors and requests:
        out["error_share"] = error_count(errors) / int(requests)   # as validity.judge counts
    gen = run.raw.get("generator_cpu_share") or {}
    if gen:
        out["generator_cpu_share"] = float(max(gen.values()))
    return out


def cell_figures(cell: Cell) -> tuple[dict[str, float], int, list[str]]:
    """Median of each figure over the cell's trusted runs with evidence; how many runs had
    evidence; why the others had none."""
    per_run, missing = [], []
    for run in cell.trusted_runs:
        srv, why = server_evidence(run)
        if srv is None:
            missing.append(f"{run.label}: {why}")
        else:
            per_run.append(run_figures(run))
    keys = {k for figures in per_run for k in figures}
    medians = {k: statistics.median([f[k] for f in per_run if k in f]) for k in keys}
    return medians, len(per_run), missing


# --- the rules -------------------------------------------------------------------------------

def _strength(value: float, threshold: float) -> float:
    """0.5 at the threshold, 1 at ten times it."""
    if threshold <= 0 or value <= 0:
        return 0.5
    return max(0.5, min(1.0, 0.5 + 0.5 * math.log10(value / threshold)))


def _n(x: float) -> str:
    """A count or a figure, short: 1,512; 58; 2.8; 0.42."""
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.0f}"
    if abs(x) >= 1:
        return f"{x:.2g}" if x == int(x) else f"{x:.2f}".rstrip("0").rstrip(".")
    return f"{x:.2g}"


def _per(x: float) -> str:
    """A figure per request: 1.01, 0.35, 350."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if 0 < abs(x) < 0.1 else f"{100 * x:.0f}%"


def _secs(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


SOURCES = {  # the evidence fields behind each rule (the sampler's own `sources` say how)
    "overflow": ("net", "server net.listen_overflows; net.syn_retrans of the server and the "
                        "generators (TcpExt of each network namespace); latency_ms.p99"),
    "fork": ("tasks_created", "server tasks.created (pids handed out in its pid namespace), "
                              "cpu.system_s, page_faults.minor"),
    "thread": ("tasks_created", "server tasks.created, tasks.max_alive"),
    "poll": ("fds", "server fds.max_sum, cpu.user_s"),
    "fds": ("fds", "server fds.max_sum"),
    "saturated": ("cpu", "server cpu.total_s over the window"),
    "system": ("cpu", "server cpu.user_s, cpu.system_s"),
    "softirq": ("softirq", "server cpu.softirq_s over cpu.softirq_cpus"),
    "involuntary": ("context_switches", "server context_switches.involuntary"),
    "redis_per_request": ("net", "server net.active_opens, time_wait_max"),
    "resets": ("net", "server net.out_rsts, estab_resets"),
    "throttled": ("throttling", "server cpu.throttled_s"),
    "tasks_alive": ("tasks", "server tasks.max_alive"),
    "generator": (None, "run generator_cpu_share (each agent's tool CPU)"),
    "failed": (None, "run validity.server_reasons"),   # said beside the cause, never for it
}


def _source(rule: str, sources: dict) -> str:
    key, fields = SOURCES[rule]
    how = sources.get(key) if key else None
    return f"{fields}; {how}" if how else fields


def findings_of(f: dict[str, float], arch: str, backlog, sources: dict | None = None
                ) -> list[Finding]:
    """Every rule that fires on a cell's median figures `f`, heaviest first."""
    sources = sources or {}
    out: list[Finding] = []

    def add(rule: str, claim: str, measurement: str, value: float, threshold: float) -> None:
        out.append(Finding(claim, measurement, _source(rule, sources),
                           PRIORITY[rule] * _strength(value, threshold)))

    share = f.get("overflow_share", 0.0)
    if share >= OVERFLOW_PER_REQUEST and f.get("listen_overflows", 0) > 0:
        queue = f"the {backlog}-entry accept queue" if backlog else "the accept queue"
        m = (f"{_n(f['listen_overflows'])} listen overflows and "
             f"{_n(f.get('syn_retrans', 0))} SYN retransmits in the window "
             f"({_pct(share)} of connection attempts)")
        if f.get("p99_ms", 0) >= SYN_RETRY_MS:
            m += f", p99 {_secs(f['p99_ms'])} ~ the 1 s/3 s SYN retry"
        add("overflow", f"{queue} overflowed", m, share, OVERFLOW_PER_REQUEST)

    gen = f.get("generator_cpu_share", 0.0)
    if gen >= GENERATOR_NEAR_SHARE:
        add("generator", "the generator was near its limit",
            f"{_pct(gen)} of its CPUs (runs above {_pct(MAX_GENERATOR_CPU)} are not trusted)",
            gen, GENERATOR_NEAR_SHARE)

    per_req = f.get("tasks_per_request", 0.0)
    if per_req >= TASKS_PER_REQUEST:
        processes = (f.get("new_processes_seen", 0) > f.get("new_threads_seen", 0)
                     or f.get("max_processes", 0) > SINGLE_PROCESS_MAX + 1)
        if processes:
            m = f"{_per(per_req)} processes created per request"
            if "system_share" in f:
                m += f", system CPU {_pct(f['system_share'])} of the server's"
            if "faults_per_request" in f:
                m += f", {_per(f['faults_per_request'])} page faults per request"
            add("fork", "a fork per request", m, per_req, TASKS_PER_REQUEST)
        else:
            m = f"{_per(per_req)} threads created per request"
            if "max_alive" in f:
                m += f", up to {_n(f['max_alive'])} alive at once"
            add("thread", "a thread created per request", m, per_req, TASKS_PER_REQUEST)

    fds = f.get("fds_max", 0.0)
    if fds >= MANY_FDS:
        if arch == "poll":
            m = f"{_n(fds)} descriptors open"
            if "system_share" in f:
                m += f", user CPU {_pct(1 - f['system_share'])} of the server's"
            if "cpu_ms_per_request" in f:
                m += f", {_per(f['cpu_ms_per_request'])} ms CPU per request"
            add("poll", "poll scans every descriptor on each call", m, fds, MANY_FDS)
        else:
            add("fds", "many descriptors open at once", f"{_n(fds)} descriptors", fds, MANY_FDS)

    cores = f.get("cores", 0.0)
    single = f.get("max_processes", SINGLE_PROCESS_MAX + 1) <= SINGLE_PROCESS_MAX
    usable = 1.0 if single else f.get("cpus", 0.0)
    if usable and cores >= SATURATED_SHARE * usable:
        if single:
            add("saturated", "one core saturated",
                f"{cores:.2f} cores used by one process (one interpreter lock)", cores / usable,
                SATURATED_SHARE)
        else:
            add("saturated", f"all {_n(usable)} cores saturated",
                f"{cores:.2f} of {_n(usable)} cores", cores / usable, SATURATED_SHARE)

    active = f.get("active_opens_per_request", 0.0)
    if active >= ACTIVE_OPENS_PER_REQUEST:
        m = f"{_per(active)} connections opened (to Redis) per request"
        if f.get("time_wait_max", 0) >= MANY_TIME_WAIT:
            m += f", up to {_n(f['time_wait_max'])} sockets in TIME_WAIT"
        add("redis_per_request", "a Redis connection per request", m, active,
            ACTIVE_OPENS_PER_REQUEST)

    resets = f.get("resets_per_request", 0.0)
    if resets >= RESETS_PER_REQUEST:
        add("resets", "connections reset",
            f"{_per(resets)} resets per request ({_n(f.get('out_rsts', 0))} sent)",
            resets, RESETS_PER_REQUEST)

    throttled = f.get("throttled_share", 0.0)
    if throttled >= THROTTLED_SHARE:
        add("throttled", "held back by its CPU quota",
            f"throttled {_pct(throttled)} of the window", throttled, THROTTLED_SHARE)

    system = f.get("system_share", 0.0)
    if system >= SYSTEM_SHARE and not any(x.claim == "a fork per request" for x in out):
        add("system", "the kernel's work dominates",
            f"system CPU {_pct(system)} of the server's", system, SYSTEM_SHARE)

    alive = f.get("max_alive", 0.0)
    if alive >= MANY_TASKS:
        add("tasks_alive", "many tasks alive at once",
            f"up to {_n(alive)} processes and threads alive", alive, MANY_TASKS)

    softirq = f.get("softirq_share", 0.0)
    if softirq >= SOFTIRQ_SHARE:
        add("softirq", "the network stack's softirq work is a large share",
            f"softirq {_pct(softirq)} of its CPUs' time (all work on them)", softirq,
            SOFTIRQ_SHARE)

    invol = f.get("involuntary_per_request", 0.0)
    if invol >= INVOLUNTARY_PER_REQUEST:
        add("involuntary", "preempted: more runnable tasks than cores",
            f"{_per(invol)} involuntary context switches per request", invol,
            INVOLUNTARY_PER_REQUEST)

    return sorted(out, key=lambda x: -x.weight)


def _plain(f: dict[str, float]) -> str:
    """The main figures, for a cell where no rule fired."""
    parts = []
    if "cores" in f:
        parts.append(f"{f['cores']:.2f} cores")
    if "cpu_ms_per_request" in f:
        parts.append(f"{_n(f['cpu_ms_per_request'])} ms CPU per request")
    if "system_share" in f:
        parts.append(f"system {_pct(f['system_share'])} of its CPU")
    if "max_alive" in f:
        parts.append(f"{_n(f['max_alive'])} tasks alive at most")
    return ", ".join(parts) or "no figures"


def _shared_sources(cell: Cell) -> dict:
    for run in cell.trusted_runs:
        ev = run.raw.get("evidence") or {}
        srv = (ev.get("services") or {}).get("server") or {}
        if ev.get("sources") or srv.get("sources"):
            return {**(ev.get("sources") or {}), **(srv.get("sources") or {})}
    return {}


def evidence_missing(cell: Cell) -> str | None:
    """Why a cell has no "why": None when some trusted run carries the server's evidence."""
    if not cell.trusted_runs:
        return "no trusted run"
    reasons = []
    for run in cell.trusted_runs:
        srv, why = server_evidence(run)
        if srv is not None:
            return None
        if why not in reasons:
            reasons.append(why)
    return "; ".join(reasons)


def explain_cell(cell: Cell) -> CellWhy | None:
    """The cell's "why" from its trusted runs' evidence; None when none of them has evidence."""
    figures, with_evidence, missing = cell_figures(cell)
    if not with_evidence:
        return None
    n = len(cell.trusted_runs)
    found = findings_of(figures, cell.arch, cell.runs[0].params.get("backlog"),
                        _shared_sources(cell))
    dominant = found[0] if found else None
    over = (f" (median of {with_evidence} repeats)" if with_evidence > 1 else "")
    if dominant:
        text = f"{dominant.claim}: {dominant.measurement}{over}"
        others = [x.claim for x in found[1:3]]
        if others:
            text += "; also " + "; ".join(others)
    else:
        text = f"no dominant cost in the evidence: {_plain(figures)}{over}"
    if cell.server_failed_runs:
        # the failure is the effect the findings explain: said, never the dominant cost
        reasons = cell.failure_reasons
        failure = Finding(f"the server failed in {len(cell.server_failed_runs)} of {n} repeats",
                          reasons[0] if reasons else "server failed", _source("failed", {}),
                          0.0)
        found = found + [failure]
        text += f". {failure.claim[0].upper()}{failure.claim[1:]} ({failure.measurement})"
    if missing:
        text += f". No evidence in {len(missing)} of {n} repeats ({missing[0]})"
    return CellWhy(text=text, findings=found, dominant=dominant)


# --- the collapse ----------------------------------------------------------------------------

# Figures compared across a collapse: (key, label, how shown, floor). A figure's move is
# |log((after + floor) / (before + floor))|: the floor keeps a move from zero finite and stops a
# tiny figure doubling from counting as much as a large one.
COLLAPSE_FIGURES = [
    ("listen_overflows", "listen overflows", _n, 10.0),
    ("syn_retrans", "SYN retransmits", _n, 10.0),
    ("tcp_timeouts", "TCP timeouts", _n, 10.0),
    ("out_rsts", "resets sent", _n, 10.0),
    ("max_alive", "tasks alive", _n, 5.0),
    ("fds_max", "descriptors open", _n, 10.0),
    ("time_wait_max", "TIME_WAIT", _n, 100.0),
    ("tasks_per_request", "tasks created per request", _n, 0.05),
    ("cpu_ms_per_request", "CPU ms per request", _n, 0.05),
    ("cores", "cores used", lambda x: f"{x:.2f}", 0.1),
    ("system_share", "system CPU share", _pct, 0.05),
    ("softirq_share", "softirq share", _pct, 0.05),
    ("involuntary_per_request", "involuntary switches per request", _n, 0.05),
    ("error_share", "errors", _pct, 0.005),
    ("p99_ms", "p99", _secs, 10.0),
]
COLLAPSE_SHOWN = 3   # the figures that moved most


def moved(before: dict[str, float], after: dict[str, float]) -> list[tuple[float, str]]:
    """(how far, "label a -> b") of the figures both sides have, furthest first."""
    out = []
    for key, label, show, floor in COLLAPSE_FIGURES:
        if key in before and key in after:
            a, b = before[key], after[key]
            distance = abs(math.log((b + floor) / (a + floor)))
            if distance > math.log(1.5):   # under half as much again is no move worth naming
                out.append((distance, f"{label} {show(a)} -> {show(b)}"))
    return sorted(out, key=lambda x: -x[0])


def explain_collapse(cells: list[Cell]) -> dict[tuple[str, tuple], str]:
    """(arch, variant) -> what changed at the architecture's collapse point (score's) against the
    level before it: the figures that moved most, and the server's failure when it failed."""
    from .score import arch_series, collapse_point, server_exited
    out: dict[tuple[str, tuple], str] = {}
    groups: dict[tuple[str, tuple], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.arch, c.variant), []).append(c)
    for key, mine in groups.items():
        series, failed = arch_series(mine)
        point = collapse_point(series, failed)
        if point is None:
            continue
        at = next(c for c in mine if c.connections == point)
        earlier = [c for c in mine if c.connections < point and c.connections in series]
        before = max(earlier, key=lambda c: c.connections) if earlier else None
        head = f"collapses at {point:,} connections"
        if point in failed:
            reasons = at.failure_reasons
            exited = [r for r in at.runs if server_exited(r)]
            if reasons:
                head += f" (the server failed: {reasons[0]})"
            elif exited:
                head += f" (the server exited under the load in {len(exited)} of {len(at.runs)} runs)"
            else:
                head += " (the server failed)"
        if before is None:
            out[key] = head + "; no level before it to compare"
            continue
        head += f", against {before.connections:,}"
        fa, na, _ = cell_figures(at)
        fb, nb, _ = cell_figures(before)
        rps = []
        if before.figure is not None and at.figure is not None:
            rps = [f"requests/s {_n(before.figure)} -> {_n(at.figure)}"]
        if not na or not nb:
            sides = " and ".join(f"{c:,}" for c, n in ((before.connections, nb), (point, na))
                                 if not n)
            out[key] = head + ": " + "; ".join(rps + [f"no evidence at {sides} to compare"])
            continue
        top = [text for _, text in moved(fb, fa)[:COLLAPSE_SHOWN]]
        out[key] = head + ": " + "; ".join(rps + (top or ["no evidence figure moved"]))
    return out
