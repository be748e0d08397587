"""Runs a plan. One environment serves every run that needs the same one (same images,
constraints and generators); before each run the server is restarted with the run's options and
Redis is emptied, so every run starts from a fresh server process and an empty Redis, and the
run records that it did. Per run: preparing -> verifying -> warming_up -> measuring -> recording
-> complete (or failed, or interrupted); the result's status is derived from those states.

Ctrl-C (or SIGTERM) at any point stops the generators, tears the environment down, keeps every
finished run and marks the one in progress; the same command later resumes the unfinished runs.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from loadgen.client import AgentClient, AgentError, run_on_agents, start_skew_s
from loadgen.merge import merge_results

from lab.evidence import EvidenceSampler
from lab.facts import host_facts
from lab.hosthealth import HostMonitor, keep_off, set_process_affinity
from lab.plan import RunPlan
from lab.progress import Progress
from lab.results import ResultStore, now_iso
from lab.scenario import SteadyState, parse_cpuset
from lab.stats import StatsSampler, busiest_share
from lab.uncertainty import steady_state
from lab.validity import error_count, failed_run, judge

START_DELAY_S = 0.2                 # lets every agent receive its share before the common start
SERVER_READY_S = 60.0               # a restarted server must answer within this
# After the warm-up, before a server other than the lab's is looked at: it writes its answers to
# the closed connections at once (the lab's own Python servers ignore SIGPIPE, and are not checked).
WARMUP_SETTLE_S = 0.3
PHASES = {"preparing": "fresh server, empty Redis", "verifying": "verifying responses",
          "warming_up": "warming up", "measuring": "measuring", "recording": "recording"}


class RunFailed(Exception):
    """A run that cannot produce a figure (verification failed, a generator failed)."""


@dataclass
class RunOutcome:
    fields: dict
    stats: list[dict] = field(default_factory=list)


EnvironmentFactory = Callable[..., object]


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


def project_name(scenario: str, result_id: str, environment_index: int) -> str:
    """The compose project (or stack) of one environment of one result. The same result always
    gets the same names, so a rerun finds and removes what a killed controller left."""
    prefix = os.environ.get("ZL_PROJECT_PREFIX", "zl")
    tag = hashlib.sha256(f"{scenario}/{result_id}".encode()).hexdigest()[:6]
    return compose_project_name(f"{prefix}-{scenario[:24]}-{result_id}-{tag}-e{environment_index}")


def compose_project_name(raw: str) -> str:
    """`raw` as a name compose keeps unchanged: lowercase letters, digits and '-', at most 60."""
    return re.sub(r"[^a-z0-9-]", "", raw.lower())[:60]


def environment_indexes(runs: list[RunPlan]) -> dict[str, int]:
    """Each distinct environment of the plan, numbered in plan order."""
    indexes: dict[str, int] = {}
    for run in runs:
        indexes.setdefault(run.environment_key(), len(indexes) + 1)
    return indexes


def run_plan(store: ResultStore, runs: list[RunPlan], make_environment: EnvironmentFactory,
             progress: Progress, extend: Callable[[list[dict]], list[RunPlan]] | None = None,
             steady: SteadyState | None = None) -> str:
    """Runs every unfinished run of the result into `store`; returns the result's status.
    `runs` is the plan the result was created with; the result's own list (which `extend` may
    have lengthened: more repeats for cells not yet known well enough) is what is run.
    `extend(run entries)` gives the next round's runs once every run has ended, or none."""
    indexes = environment_indexes(runs)
    todo = _unfinished(store)
    progress.begin(total=len(store.doc["runs"]), done=len(store.doc["runs"]) - len(todo),
                   result_dir=store.dir)
    restore = keep_off(measured_cpus(runs[0])) if runs else None  # the controller's own work
    with sigterm_as_interrupt():
        try:
            session: EnvironmentSession | None = None
            try:
                while todo:
                    for run in todo:
                        index = indexes.setdefault(run.environment_key(), len(indexes) + 1)
                        if session is not None and (session.index != index or session.broken):
                            session.close()
                            session = None
                        if session is None:
                            project = project_name(store.doc["scenario"], store.doc["result_id"], index)
                            session = EnvironmentSession(store, make_environment, run, project, index,
                                                         progress, steady)
                        outcome = session.execute(run)
                        store.append_stats(outcome.stats)
                        store.record_run(run.id, outcome.fields)
                        progress.run_done(run, outcome.fields)
                    more = extend(store.doc["runs"]) if extend else []
                    if more:
                        store.add_runs(more)
                        progress.more(len(more), len(store.doc["runs"]))
                    todo = _unfinished(store, states=("pending",))  # failed ones wait for a rerun
            finally:
                if session is not None:
                    session.close()
        except KeyboardInterrupt:
            progress.note("interrupted: environment torn down, finished runs kept; "
                          "run the same command again to resume")
        except Exception as exc:  # outside any run: an environment could not be made or removed
            store.add_problem(f"{type(exc).__name__}: {exc}")
            progress.note(f"[red]stopped: {type(exc).__name__}: {exc}[/red]")
        finally:
            if restore:
                set_process_affinity(restore)
            status = store.finish()
            progress.end(status)
    return status


def _unfinished(store: ResultStore, states: tuple[str, ...] | None = None) -> list[RunPlan]:
    """Runs still to do, in the result's order: every run not complete (a new invocation retries
    the failed ones too), or only those in `states`."""
    return [RunPlan.from_entry(e) for e in store.doc["runs"]
            if e["status"] != "complete" and (states is None or e["status"] in states)]


class EnvironmentSession:
    """One environment kept across the runs that need it, and the agents that drive it."""

    def __init__(self, store: ResultStore, make_environment: EnvironmentFactory, first: RunPlan,
                 project: str, index: int, progress: Progress, steady: SteadyState | None = None):
        self.store, self.progress, self.index, self.project = store, progress, index, project
        self.steady = steady or SteadyState()
        # The agents answer only to this controller (ZL_AGENT_TOKEN in their environment).
        self.token = secrets.token_urlsafe(18)
        self.env = make_environment(first, project, agent_token=self.token)
        self.agents: list[AgentClient] = []
        self.tools: dict = {}
        self.broken = False     # a failed run: the next run gets a new environment
        self.up = False
        self.runs_served = 0
        self.last_server: dict | None = None

    # ------------------------------------------------------------ the environment

    def _open(self, run: RunPlan) -> None:
        left = self.env.leftovers()
        if left:
            # A controller killed while it ran this result: its generators may still be loading
            # its server. Nothing of it may serve this run.
            self.progress.phase("removing what an earlier controller left")
            self.env.down()
            self.store.add_note(f"removed what an earlier controller left of {self.project}: "
                                + ", ".join(left))
        self.progress.phase("starting environment")
        self.up = True  # from here on, close() must tear down
        self.env.up()
        _note_environment(self.store, self.env)
        self.agents = [AgentClient(url, token=self.token) for url in self.env.agent_urls()]
        for agent in self.agents:
            self.tools = agent.wait_ready(timeout_s=60).get("tools") or {}

    def close(self) -> None:
        """Tears the environment down; what could not be removed is recorded, not hidden."""
        if not self.up:
            return
        self.up = False
        self.progress.phase("tearing down")
        try:
            self.env.down()
        except Exception as exc:  # the runs are recorded already: say what is left, go on
            self.store.add_problem(f"teardown of {self.project}: {type(exc).__name__}: {exc}")
            self.progress.note(f"[red]teardown of {self.project} incomplete: {exc}[/red]")

    def _fresh_start(self, run: RunPlan) -> dict:
        """A server process started for this run and an empty Redis; returns the record of both."""
        reused = self.up
        t0 = time.monotonic()
        if not reused:
            self._open(run)
        else:
            self.env.restart_server(run.variables())
        t1 = time.monotonic()
        server = self._wait_for_server(run.ready_url)
        t2 = time.monotonic()
        if self.last_server and server["id"] == self.last_server["id"]:
            raise RunFailed(f"the server container {server['id']} was not replaced for this run")
        self.last_server = server
        redis = self._flush_redis()
        if redis.get("keys_after") != 0:
            raise RunFailed(f"Redis still holds {redis.get('keys_after')} keys after FLUSHALL")
        return {"environment": self.project, "environment_reused": reused,
                "runs_before_in_environment": self.runs_served, "server": server, "redis": redis,
                # seconds to (re)start the server, then until it answered, then to empty Redis
                "seconds": {"start": round(t1 - t0, 3), "answer": round(t2 - t1, 3),
                            "flush": round(time.monotonic() - t2, 3)}}

    def _flush_redis(self) -> dict:
        """FLUSHALL through a generator; a Redis that has just started may need a moment."""
        deadline = time.monotonic() + SERVER_READY_S
        while True:
            try:
                return self.agents[0].flush_redis()
            except AgentError as exc:
                if time.monotonic() > deadline:
                    raise RunFailed(f"Redis could not be emptied: {exc}") from None
                time.sleep(0.1)

    def _wait_for_server(self, url: str | None = None) -> dict:
        """Until the server answers through a generator (a restarted server needs a moment):
        any HTTP answer to a GET of `url` (the run's ready URL; None: the agent's target)."""
        deadline = time.monotonic() + SERVER_READY_S
        detail = "no answer yet"
        while time.monotonic() < deadline:
            identity = self.env.server_identity()
            if identity.get("state") in ("exited", "dead"):
                raise RunFailed(f"the server exited on start (code {identity.get('exit_code')}): "
                                f"{identity.get('log_tail') or 'no output'}")
            try:
                probe = self.agents[0].probe(url)
            except AgentError as exc:
                probe = {"ok": False, "detail": str(exc)}
            if probe.get("ok"):
                return identity
            detail = probe.get("detail") or detail
            time.sleep(0.1)
        raise RunFailed(f"the server did not answer within {SERVER_READY_S:g} s: {detail}")

    # ------------------------------------------------------------ one run

    def execute(self, run: RunPlan) -> RunOutcome:
        t0 = time.monotonic()
        timeline: list[list] = []
        entry = {"status": "preparing", "started_at": now_iso(), "error": None, "timeline": timeline}

        def enter(state: str, save: bool = False) -> None:
            timeline.append([state, round(time.monotonic() - t0, 3)])
            entry["status"] = state
            if save:
                self.store.record_run(run.id, entry)
            self.progress.phase(PHASES[state])

        self.progress.run_started(run, phase=PHASES["preparing"])
        verification = start_state = None
        try:
            enter("preparing", save=True)
            start_state = self._fresh_start(run)
            provenance = run_provenance(self.store, self.env)
            if not self.tools.get(run.tool):
                raise RunFailed(missing_tool_message(run.tool))

            enter("verifying")
            verification = self.agents[0].verify(run.server_url, run.static_path, kinds=run.served)
            if not verification["passed"]:
                failed = [f"{c['name']}: {c['detail']}" for c in verification["checks"] if not c["passed"]]
                raise RunFailed("verification failed: " + "; ".join(failed))

            warmup = run.warmup_spec(run.server_url)
            warmup_errors, warmup_restart = 0, None
            if warmup:
                enter("warming_up")
                warmed = self._load(f"{run.id}-warmup", warmup, progress=None)
                warmup_errors = sum(error_count({**(g["result"].get("errors") or {}),
                                                 "non_2xx_3xx": g["result"].get("non_2xx_3xx", 0)})
                                    for g in warmed if g.get("result"))
                warmup_restart = self._restart_if_warmup_ended_server(run)

            before = settled_counters(self.agents[0])
            containers = self.env.containers()
            series = ServerSideSeries(self.agents[0], before, run)
            sampler = StatsSampler(containers, run.id).start()
            monitor = self._host_monitor(run, containers)
            evidence = EvidenceSampler({service: [c.id for c in group] for service, group in containers.items()})
            enter("measuring", save=True)
            evidence.start()
            try:
                results = self._load(run.id, run.load_spec(run.server_url),
                                     progress=lambda elapsed: self.progress.measuring(
                                         elapsed, series.sample(elapsed)))
            finally:
                stats = sampler.stop()
                host = monitor.stop() if monitor else {"available": False,
                                                       "reason": "this engine's nodes are not this host"}
                found = evidence.stop()
            lost = self._node_trouble()
            if lost:  # the server's node, say: the generators ran on, against nothing
                raise RunFailed(f"a node was lost during the run: {lost}")
            enter("recording")
            after = settled_counters(self.agents[0])
            fields = summarise(run, results, stats, before, after, verification, containers,
                               series=series.points, host_health=host, steady=self.steady,
                               warmup_errors=warmup_errors)
            if hasattr(self.env, "run_facts"):  # across nodes: placement, clocks, limits applied
                fields.update(self.env.run_facts(results))
            timeline.append(["complete", round(time.monotonic() - t0, 3)])
            fields.update(start_state=start_state, provenance=provenance, timeline=timeline,
                          started_at=entry["started_at"], evidence=found)
            if warmup_restart:
                fields["warmup_restart"] = warmup_restart
            self.runs_served += 1
            return RunOutcome(fields, stats)
        except KeyboardInterrupt:
            # run_on_agents has already stopped the generators
            timeline.append(["interrupted", round(time.monotonic() - t0, 3)])
            self.store.record_run(run.id, {"status": "interrupted", "error": "interrupted by the user",
                                           "timeline": timeline, "start_state": start_state})
            raise
        except Exception as exc:  # one failed run must not lose the others
            self.broken = True
            reason = str(exc) if isinstance(exc, RunFailed) else f"{type(exc).__name__}: {exc}"
            timeline.append(["failed", round(time.monotonic() - t0, 3)])
            return RunOutcome({
                "status": "failed", "error": reason, "failed_in": entry["status"],
                "started_at": entry["started_at"], "timeline": timeline, "start_state": start_state,
                "verification": verification, "validity": failed_run(reason),
            })

    def _host_monitor(self, run: RunPlan, containers: dict[str, list]) -> HostMonitor | None:
        """What else used the measured CPUs (server's and Redis'), when they are on this host."""
        if getattr(self.env, "engine", "compose") != "compose":
            return None
        return HostMonitor(measured_cpus(run), [c.id for group in containers.values() for c in group]).start()

    def _load(self, run_id: str, spec: dict, progress: Callable[[float], None] | None) -> list[dict]:
        """One load split over the agents, started together; every share must finish."""
        hostnames = {agent.url: agent.hostname for agent in self.agents}
        on_progress = None
        if progress:
            def on_progress(elapsed, statuses):
                progress(max(0.0, elapsed - START_DELAY_S))
        try:
            shares = run_on_agents([agent.url for agent in self.agents], spec, start_delay_s=START_DELAY_S,
                                   on_progress=on_progress, run_id=run_id, token=self.token, poll_s=0.5)
        except AgentError as exc:  # a generator that stopped answering: its node may be gone
            lost = self._node_trouble(exc.url)
            raise RunFailed(f"{lost}: {exc}" if lost else str(exc)) from None
        for share in shares:
            if share["state"] != "done":
                who = hostnames.get(share["agent"]) or share["agent"]
                lost = self._node_trouble(share["agent"])
                raise RunFailed(f"generator {who} {share['state']}: {share['error']}{self._server_exit()}"
                                + (f"; {lost}" if lost else ""))
        # Everything each agent said of its share (tool start and end, its own CPU) is kept.
        return [{"node": hostnames.get(s["agent"]), **{k: v for k, v in s.items() if k not in ("state", "error")}}
                for s in shares]


    def _node_trouble(self, agent_url: str | None = None) -> str | None:
        """On an engine of several nodes: a sentence naming the nodes that went away."""
        check = getattr(self.env, "node_trouble", None)
        return check(agent_url) if check else None

    def _restart_if_warmup_ended_server(self, run: RunPlan) -> dict | None:
        """The warm-up's end closes the generators' connections with requests in flight. A server
        that dies of it would leave the measurement no server, so it is started afresh and the
        run records why: any server but the lab's found exited, and the article's C servers
        always, since they take SIGPIPE's default (their epoll server also exits on a failed
        send) and may die only once measuring has begun (the iterative one works through its
        queue first). They keep nothing a warm-up would build: no cache, pools made at start."""
        if run.impl == "python":   # ignores SIGPIPE
            return None
        time.sleep(WARMUP_SETTLE_S)
        identity = self.env.server_identity()
        exited = identity.get("state") in ("exited", "dead")
        if not exited and run.impl != "zerohttpd":
            return None
        ended = ({"exit_code": identity.get("exit_code"), "how": exit_description(identity.get("exit_code")),
                  "log_tail": identity.get("log_tail")} if exited else None)
        self.env.restart_server(run.variables())
        server = self._wait_for_server(run.ready_url)
        self.last_server = server
        if exited:
            self.progress.note(f"{run.id}: the server exited as the warm-up ended ({ended['how']}); "
                               "measuring a fresh one")
        return {"ended": ended, "server": server,
                "note": ("the server exited as the warm-up's connections closed" if exited else
                         "the article's C servers die of SIGPIPE when the warm-up's connections close")
                        + "; the measured window is a fresh server's"}

    def _server_exit(self) -> str:
        """The server's own end, when it ended under the load: it explains the tool's failure
        (a generator cannot even resolve the name of a server container that has exited)."""
        try:
            identity = self.env.server_identity()
        except Exception:  # the failure being reported matters more than this detail
            return ""
        if identity.get("state") not in ("exited", "dead"):
            return ""
        how = exit_description(identity.get("exit_code"))
        return f"; the server had exited ({how}): {identity.get('log_tail') or 'no output'}"


def exit_description(code) -> str:
    """`code 141, SIGPIPE`: 128 + N is a process killed by signal N."""
    how = f"code {code}"
    if isinstance(code, int) and code - 128 in signal.valid_signals():
        how += f", {signal.Signals(code - 128).name}"
    return how


def missing_tool_message(tool: str) -> str:
    hint = {"wrk2": " (supply one: make images WRK2=/path/to/wrk2)",
            "oha": " (build it in: make images TOOLS=oha)"}.get(tool, "")
    return f"{tool} is not installed in the loadgen image{hint}"


def run_provenance(store: ResultStore, env) -> dict:
    """What this run was measured with. A resumed result may span an image rebuild or a new
    commit: each run says what it ran, and where that differs from the result's first run."""
    facts = host_facts()
    mine = {"images": env.image_ids(), "git_commit": facts["git_commit"],
            "hostname": facts["hostname"], "kernel": facts["kernel"], "cores": facts["cores"],
            "cpu_model": facts["cpu_model"]}
    recorded = store.doc["environment"]
    differs = [f"images.{svc}: {img} (result: {recorded.get('images', {}).get(svc)})"
               for svc, img in sorted(mine["images"].items())
               if recorded.get("images", {}).get(svc) not in (None, img)]
    differs += [f"{k}: {mine[k]} (result: {recorded.get(k)})"
                for k in ("git_commit", "hostname", "kernel", "cores", "cpu_model")
                if recorded.get(k) not in (None, mine[k])]
    if differs:
        mine["differs_from_result"] = differs
        recorded["provenance_varies"] = True
    return mine


def _note_environment(store: ResultStore, env) -> None:
    """The first environment up fills in what the engine knows (versions, images, nodes)."""
    recorded = store.doc["environment"]
    if "images" not in recorded:
        recorded.update(env.describe())
        store.save()


def settled_counters(agent: AgentClient, quiet_s: float = 0.2, limit_s: float = 15.0) -> dict:
    """Redis counters once they stop moving: requests the server had already read when the
    generators stopped (thousands, at high concurrency) are still being served, and would be
    counted in the next window."""
    deadline = time.monotonic() + limit_s
    last = agent.counters()
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = agent.counters()
        if now == last:
            return now
        last = now
    return last


class ServerSideSeries:
    """Requests answered so far, on the server's side, about once a second of the measured window:
    the guestbook's visitor counter (one per GET) scaled by the GETs' share of the mix. Read from
    Redis through a generator's agent; the same reads give the console its rate so far."""

    def __init__(self, agent: AgentClient, before: dict, run: RunPlan, every_s: float = 1.0):
        self.agent, self.before, self.every_s = agent, before, every_s
        self.share = run.mix.get("guestbook_get", 0) / max(1e-9, sum(run.mix.values()))
        self.points: list[list[float]] = [[0.0, 0.0]] if self.share > 0 else []
        self._last = 0.0

    def sample(self, elapsed: float) -> float | None:
        """Called with the seconds since the common start; returns requests/second so far."""
        if self.share <= 0 or elapsed - self._last < self.every_s:
            return None
        try:
            now = self.agent.counters()
        except Exception:  # a missed sample shortens the series, the run goes on
            return None
        self._last = elapsed
        done = (now["visitor_count"] - self.before["visitor_count"]) / self.share
        self.points.append([round(elapsed, 3), round(done, 1)])
        return done / elapsed if elapsed > 0 else None


def measured_cpus(run: RunPlan) -> set[int]:
    """The CPUs whose time is the measurement: the server's and Redis' sets (all CPUs when
    they are not pinned)."""
    cpus: set[int] = set()
    for service in ("server", "redis"):
        if run.cpusets.get(service):
            cpus |= parse_cpuset(run.cpusets[service])
    return cpus or set(range(os.cpu_count() or 1))


def summarise(run: RunPlan, generators: list[dict], stats: list[dict], before: dict, after: dict,
              verification: dict, containers: dict[str, list], series: list | None = None,
              host_health: dict | None = None, steady: SteadyState | None = None,
              warmup_errors: int = 0) -> dict:
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
    cpu, cpu_source = generator_cpu(run, generators, stats, containers)
    skew = start_skew_s(generators) if generators else None
    steady = steady or SteadyState()
    server_side = server_side_figures(series or [], steady, merged, run)
    validity = judge(mode=run.mode, rate=run.rate, connections=run.connections,
                     requests=merged["requests"], errors=errors,
                     requests_per_sec=merged["requests_per_sec"], generator_cpu=cpu,
                     guestbook_sent=sent, visitor_count_delta=delta, warmed_up=run.warmup_s > 0,
                     warmup_errors=warmup_errors,
                     duration_s=run.duration_s, start_skew_s=skew,
                     steady=server_side if server_side.get("points") else None,
                     host_health=host_health)
    return {
        "status": "complete", "error": None,
        "requests_per_sec": merged["requests_per_sec"], "requests": merged["requests"],
        "duration_s": merged["duration_s"], "errors": errors,
        "latency_ms": merged["latency_ms"], "latency_spectrum": merged.get("spectrum"),
        # Agents from before latency labels: oha's figure then came from its printed percentiles.
        "latency_source": merged.get("latency_source") or (
            "reconstructed from printed percentiles" if run.tool == "oha" else "histogram"),
        "latency_kind": merged.get("latency_kind") or (
            "open-loop corrected" if run.mode == "open" else "closed-loop"),
        "validity": validity, "verification": verification,
        "redis": {"visitor_count_delta": delta, "remarks_delta": after["remarks"] - before["remarks"],
                  "guestbook_get_sent": sent},
        "server_side": server_side,
        "start_skew_s": skew,
        "host_health": host_health,
        "generator_cpu_share": cpu, "generator_cpu_source": cpu_source,
        "generators": generators,
    }


def server_side_figures(series: list, steady: SteadyState, merged: dict, run: RunPlan) -> dict:
    """The steady window's throughput as the server counted it, and whether the tool agrees."""
    out = dict(steady_state(series, steady.trim_start_s, steady.trim_end_s, steady.max_drift),
               series=series)
    tool_rps = merged["requests_per_sec"]
    out["tool_requests_per_sec"] = tool_rps
    server_rps = out.get("requests_per_sec")
    if server_rps and tool_rps and out.get("window_s"):
        difference = abs(server_rps - tool_rps) / max(server_rps, tool_rps)
        out["disagreement"] = round(difference, 4)
        # Requests in flight at either edge of the window (one per connection) and the trimmed
        # start-up explain some difference; beyond that and 5%, the two figures disagree.
        explainable = run.connections / out["window_s"] / max(server_rps, tool_rps) + 0.05
        out["disagreement_explained"] = difference <= explainable
    else:
        out["disagreement"], out["disagreement_explained"] = None, None
    return out


def generator_cpu(run: RunPlan, generators: list[dict], stats: list[dict],
                  containers: dict[str, list]) -> tuple[dict[str, float], str]:
    """Each generator's CPU as a share of the CPUs its tool can use. Each agent measures its own
    tool (also on another node); docker stats of local containers are the fallback."""
    if generators and all(g.get("cpu_share") is not None for g in generators):
        cpu = {str(g.get("node") or g.get("agent")): float(g["cpu_share"]) for g in generators}
        source = "each agent: its tool's CPU time over the CPUs it can use"
    else:
        cores = _generator_cores(run, containers)
        cpu = busiest_share(stats, "loadgen", cores, start_s=1.5, end_s=run.duration_s + START_DELAY_S)
        source = "docker stats over the measured window"
    if run.cpusets.get("loadgen") and len(cpu) > 1:
        # Generators pinned to the same CPUs compete for them: their CPU time together, over the set.
        n = len(parse_cpuset(run.cpusets["loadgen"]))
        cpu["all generators"] = sum(cpu.values()) * min(run.threads, n) / n
    return cpu, source


def _generator_cores(run: RunPlan, containers: dict[str, list]) -> dict[str, int]:
    """CPUs a generator's tool can use: its threads, within its CPU set (or the machine)."""
    cpuset = run.cpusets.get("loadgen")
    n = len(parse_cpuset(cpuset)) if cpuset else (os.cpu_count() or 1)
    per = max(1, min(run.threads, -(-run.connections // max(1, run.generators))))
    return {c.name: min(n, per) for c in containers.get("loadgen", [])}
