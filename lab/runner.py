"""Runs a plan: for every run, environment up -> verify -> warm up -> load -> stats -> down -> record.

Ctrl-C (or SIGTERM) at any point stops the generators, tears the environment down, keeps every
finished run and marks the rest; the same command later resumes the unfinished runs.
"""
from __future__ import annotations

import os
import re
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from loadgen.client import AgentClient, run_on_agents
from loadgen.merge import merge_results

from lab.plan import RunPlan
from lab.progress import Progress
from lab.results import ResultStore, now_iso
from lab.scenario import parse_cpuset
from lab.stats import StatsSampler, busiest_share
from lab.validity import judge

SERVER_URL = "http://server:8000"   # as the generators see it on the scenario's network
REDIS_HOST, REDIS_PORT = "redis", 6379
START_DELAY_S = 1.0                 # lets every agent receive its share before the common start


class RunFailed(Exception):
    """A run that cannot produce a figure (verification failed, a generator failed)."""


@dataclass
class RunOutcome:
    fields: dict
    stats: list[dict] = field(default_factory=list)


EnvironmentFactory = Callable[[RunPlan, str], object]


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM gets the same clean stop as Ctrl-C."""
    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def project_name(scenario: str, result_id: str, run: RunPlan) -> str:
    """A compose project of its own per run, so parallel or leftover runs never collide."""
    prefix = os.environ.get("ZL_PROJECT_PREFIX", "zl")
    return compose_project_name(f"{prefix}-{scenario}-{result_id}-{run.index}")


def compose_project_name(raw: str) -> str:
    """`raw` as a name compose keeps unchanged: lowercase letters, digits and '-', at most 60."""
    return re.sub(r"[^a-z0-9-]", "", raw.lower())[:60]


def run_plan(store: ResultStore, runs: list[RunPlan], make_environment: EnvironmentFactory,
             progress: Progress) -> str:
    """Runs every pending run of `runs` into `store`; returns the result's final status."""
    pending = set(store.pending())
    todo = [r for r in runs if r.id in pending]
    progress.begin(total=len(runs), done=len(runs) - len(todo), result_dir=store.dir)
    status = "complete"
    with sigterm_as_interrupt():
        try:
            for run in todo:
                outcome = execute_run(store, run, make_environment, progress)
                store.append_stats(outcome.stats)
                store.record_run(run.id, outcome.fields)
                progress.run_done(run, outcome.fields)
                if outcome.fields["status"] != "complete":
                    status = "failed"
        except KeyboardInterrupt:
            status = "interrupted"
            progress.note("interrupted: environment torn down, finished runs kept; "
                          "run the same command again to resume")
        finally:
            store.finish(status)
            progress.end(status)
    return status


def execute_run(store: ResultStore, run: RunPlan, make_environment: EnvironmentFactory,
                progress: Progress) -> RunOutcome:
    entry = {"status": "running", "started_at": now_iso(), "error": None}
    store.record_run(run.id, entry)
    project = project_name(store.doc["scenario"], store.doc["result_id"], run)
    env = make_environment(run, project)
    progress.run_started(run, phase="starting environment")
    agents: list[AgentClient] = []
    verification = None
    try:
        env.up()
        _note_environment(store, env)
        agents = [AgentClient(url) for url in env.agent_urls()]
        for agent in agents:
            tools = agent.wait_ready(timeout_s=60).get("tools") or {}
            if not tools.get(run.tool):
                hint = " (supply one: make images WRK2=/path/to/wrk2)" if run.tool == "wrk2" else ""
                raise RunFailed(f"{run.tool} is not installed in the loadgen image{hint}")

        progress.phase("verifying responses")
        verification = agents[0].verify(SERVER_URL, run.static_path)
        if not verification["passed"]:
            failed = [f"{c['name']}: {c['detail']}" for c in verification["checks"] if not c["passed"]]
            raise RunFailed("verification failed: " + "; ".join(failed))

        warmup = run.warmup_spec(SERVER_URL)
        if warmup:
            progress.phase(f"warming up {run.warmup_s:g} s")
            _load(agents, f"{run.id}-warmup", warmup, progress=None)

        before = settled_counters(agents[0])
        containers = env.containers()
        sampler = StatsSampler(containers, run.id).start()
        try:
            progress.phase("measuring")
            results = _load(agents, run.id, run.load_spec(SERVER_URL),
                            progress=lambda elapsed: progress.measuring(
                                elapsed, _rate_so_far(agents[0], before, elapsed, run)))
        finally:
            stats = sampler.stop()
        after = settled_counters(agents[0])
        fields = summarise(run, results, stats, before, after, verification, containers)
        return RunOutcome(fields, stats)
    except KeyboardInterrupt:
        # run_on_agents has already stopped the generators
        store.record_run(run.id, {"status": "interrupted", "error": "interrupted by the user"})
        raise
    except Exception as exc:  # one failed run must not lose the others
        reason = str(exc) if isinstance(exc, RunFailed) else f"{type(exc).__name__}: {exc}"
        return RunOutcome({
            "status": "failed", "error": reason,
            "verification": verification,
            "validity": {"valid": False, "reasons": [reason]},
        })
    finally:
        progress.phase("tearing down")
        env.down()


def _note_environment(store: ResultStore, env) -> None:
    """The first environment up fills in what the engine knows (versions, images, nodes)."""
    recorded = store.doc["environment"]
    if "images" not in recorded:
        recorded.update(env.describe())
        store.save()


def _load(agents: list[AgentClient], run_id: str, spec: dict,
          progress: Callable[[float], None] | None) -> list[dict]:
    """One load split over the agents, started together; every share must finish."""
    hostnames = {agent.url: agent.hostname for agent in agents}
    on_progress = None
    if progress:
        def on_progress(elapsed, statuses):
            progress(max(0.0, elapsed - START_DELAY_S))
    shares = run_on_agents([agent.url for agent in agents], spec, start_delay_s=START_DELAY_S,
                           on_progress=on_progress, run_id=run_id)
    for share in shares:
        if share["state"] != "done":
            who = hostnames.get(share["agent"]) or share["agent"]
            raise RunFailed(f"generator {who} {share['state']}: {share['error']}")
    return [{"agent": s["agent"], "node": hostnames.get(s["agent"]), "spec": s["spec"],
             "raw_output": s["raw_output"], "result": s["result"]} for s in shares]


def settled_counters(agent: AgentClient, quiet_s: float = 0.5, limit_s: float = 15.0) -> dict:
    """Redis counters once they stop moving: requests the server had already read when the
    generators stopped (thousands, at high concurrency) are still being served, and would be
    counted in the next window."""
    deadline = time.monotonic() + limit_s
    last = agent.counters(REDIS_HOST, REDIS_PORT)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = agent.counters(REDIS_HOST, REDIS_PORT)
        if now == last:
            return now
        last = now
    return last


def _rate_so_far(agent: AgentClient, before: dict, elapsed: float, run: RunPlan) -> float | None:
    """Requests/second so far, from the visitor counter the guestbook GETs raise."""
    share = run.mix.get("guestbook_get", 0) / max(1e-9, sum(run.mix.values()))
    if share <= 0 or elapsed < 1:
        return None
    try:
        now = agent.counters(REDIS_HOST, REDIS_PORT)
    except Exception:
        return None
    return (now["visitor_count"] - before["visitor_count"]) / share / elapsed


def summarise(run: RunPlan, generators: list[dict], stats: list[dict], before: dict, after: dict,
              verification: dict, containers: dict[str, list]) -> dict:
    results = [g["result"] for g in generators if g.get("result")]
    if len(results) < len(generators):
        missing = [g["agent"] for g in generators if not g.get("result")]
        raise RunFailed(f"no parsable report from {', '.join(missing)}: "
                        + "; ".join((g.get("raw_output") or "")[-300:] for g in generators if not g.get("result")))
    merged = merge_results(results)
    errors = dict(merged["errors"])
    errors["non_2xx_3xx"] = merged.get("non_2xx_3xx", 0)
    sent = None
    if all(r.get("requests_by_kind") for r in results):
        sent = sum(int(r["requests_by_kind"].get("guestbook_get", 0)) for r in results)
    delta = after["visitor_count"] - before["visitor_count"]
    cores = _generator_cores(run, containers)
    cpu = busiest_share(stats, "loadgen", cores, start_s=1.5, end_s=run.duration_s + START_DELAY_S)
    if run.cpusets.get("loadgen") and len(cpu) > 1:
        # Generators pinned to the same CPUs compete for them: judge their sum too.
        cpu["all generators"] = sum(cpu.values())
    validity = judge(mode=run.mode, rate=run.rate, connections=run.connections,
                     requests=merged["requests"], errors=errors,
                     requests_per_sec=merged["requests_per_sec"], generator_cpu=cpu,
                     guestbook_sent=sent, visitor_count_delta=delta, warmed_up=run.warmup_s > 0)
    return {
        "status": "complete", "error": None,
        "requests_per_sec": merged["requests_per_sec"], "requests": merged["requests"],
        "duration_s": merged["duration_s"], "errors": errors,
        "latency_ms": merged["latency_ms"], "latency_spectrum": merged.get("spectrum"),
        "validity": validity, "verification": verification,
        "redis": {"visitor_count_delta": delta, "remarks_delta": after["remarks"] - before["remarks"],
                  "guestbook_get_sent": sent},
        "generator_cpu_share": cpu,
        "generators": generators,
    }


def _generator_cores(run: RunPlan, containers: dict[str, list]) -> dict[str, int]:
    cpuset = run.cpusets.get("loadgen")
    n = len(parse_cpuset(cpuset)) if cpuset else (os.cpu_count() or 1)
    return {c.name: n for c in containers.get("loadgen", [])}

