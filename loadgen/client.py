"""The controller's side of the agent protocol: one client per agent, and one run over many."""
import json
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlencode

from .spec import LoadSpec
from .tools import MEASURES, STOP_GRACE_S, hard_timeout_s

FINAL_STATES = ("done", "failed", "stopped")


class AgentError(RuntimeError):
    """An agent answered with an error status, or could not be reached."""

    def __init__(self, url, message, status=None):
        super().__init__(f"agent {url}: {message}")
        self.url, self.status = url, status


class AgentClient:
    """One agent. token: the agent's ZL_AGENT_TOKEN (sent as `Authorization: Bearer`), or
    None for an agent that has none."""

    def __init__(self, url, token=None, timeout=10.0):
        if isinstance(token, (int, float)) and not isinstance(token, bool):
            # AgentClient(url, 5.0): the former positional timeout
            token, timeout = None, token
        self.url = url.rstrip("/")
        self.token = token or None
        self.timeout = timeout
        self.hostname = None  # known after health()

    def _call(self, method, path, payload=None, timeout=None):
        data = json.dumps(payload).encode() if payload is not None else None
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                message = exc.reason
            raise AgentError(self.url, f"{method} {path}: {exc.code} {message}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise AgentError(self.url, f"{method} {path}: {exc}") from None

    def health(self):
        """The agent's full health answer. An agent with a token answers a request without it
        with {"ok": true} only: that is an AgentError (401) here, not a healthy answer."""
        answer = self._call("GET", "/health")
        if "hostname" not in answer:
            raise AgentError(self.url, "GET /health: 401 the agent needs its token "
                                       "(ZL_AGENT_TOKEN) and none was given", 401)
        self.hostname = answer.get("hostname")
        return answer

    def wait_ready(self, timeout_s=60.0, interval_s=0.5):
        """The health answer once the agent answers; AgentError when it does not in time, or
        at once when it refuses the token (401)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.health()
            except AgentError as exc:
                if exc.status == 401 or time.monotonic() > deadline:
                    raise
                time.sleep(interval_s)

    def verify(self, url, static_path="/index.html", kinds=None):
        """The checks of the request kinds the server serves (`kinds`, default all of them)."""
        body = {"url": url, "static_path": static_path}
        if kinds is not None:
            body["kinds"] = list(kinds)
        return self._call("POST", "/verify", body, timeout=60)

    def counters(self, redis_host=None, redis_port=None):
        """{"visitor_count", "remarks"} from the agent's Redis (ZL_AGENT_REDIS); redis_host and
        redis_port, when given, must name that one."""
        query = {k: v for k, v in (("redis_host", redis_host), ("redis_port", redis_port))
                 if v is not None}
        return self._call("GET", "/counters" + ("?" + urlencode(query) if query else ""))

    def flush_redis(self):
        """FLUSHALL on the agent's Redis: {"keys_before": n, "keys_after": m}."""
        return self._call("POST", "/redis/flush", {})

    def probe(self, url=None):
        """One GET / to the agent's target (or url, which must be it), ~1 s timeouts:
        {"ok": bool, "status": int or None, "detail": str}."""
        return self._call("GET", "/probe" + ("?" + urlencode({"url": url}) if url else ""))

    def start(self, run_id, spec, start_at):
        spec = spec.to_dict() if isinstance(spec, LoadSpec) else spec
        return self._call("POST", "/runs", {"run_id": run_id, "spec": spec, "start_at": start_at})

    def status(self, run_id):
        return self._call("GET", f"/runs/{run_id}")

    def stop(self, run_id):
        return self._call("DELETE", f"/runs/{run_id}", timeout=STOP_GRACE_S + 15)


def run_on_agents(urls, spec, start_delay_s=2.0, on_progress=None, timeout=None, run_id=None,
                  poll_s=0.5, token=None):
    """Split spec over the agents at urls, start them all at one time start_delay_s from now,
    and wait for all (token: the agents' ZL_AGENT_TOKEN). Returns one dict per agent, in the
    order of urls:
    {"agent", "spec", "state", "elapsed_s", "raw_output", "result", "error",
     "tool_started_at", "tool_started_last_at", "tool_ended_at", "tool_exited_at",
     "tool_wall_s", "tool_cpu_s", "usable_cpus", "cpu_limits", "cpu_share"}
    (what each generator measured of itself: loadgen.tools.measures_of; None from an agent
    that does not say it).
    on_progress(elapsed_s, [status dicts]) is called after every poll. On an exception or
    KeyboardInterrupt the run is stopped on every agent before it propagates; past timeout
    (default: the run's hard timeout plus the start delay) the runs are stopped and returned."""
    spec = spec if isinstance(spec, LoadSpec) else LoadSpec.from_dict(spec)
    clients = [AgentClient(u, token=token) for u in urls]
    shares = spec.split(len(clients))
    run_id = run_id or uuid.uuid4().hex[:12]
    timeout = timeout or hard_timeout_s(spec) + start_delay_s + 10
    t0 = time.monotonic()
    try:
        start_at = time.time() + start_delay_s
        for client, share in zip(clients, shares):
            client.start(run_id, share, start_at)
        expected_end = t0 + start_delay_s + spec.duration_s
        statuses = _poll_until_final(clients, run_id, t0 + timeout, on_progress, poll_s, t0, expected_end)
        if statuses is None:  # past the deadline
            statuses = [c.stop(run_id) for c in clients]
            for s in statuses:
                s["error"] = s.get("error") or f"stopped: the run did not finish within {timeout:.0f} s"
    except BaseException:
        # All of them: a start that timed out may still have started its run.
        _stop_quietly(clients, run_id)
        raise
    return [dict({"agent": c.url, "spec": share.to_dict(), "state": s["state"],
                  "elapsed_s": s.get("elapsed_s"), "raw_output": s.get("raw_output", ""),
                  "result": s.get("result"), "error": s.get("error")},
                 **{k: s.get(k) for k in MEASURES})
            for c, share, s in zip(clients, shares, statuses)]


def start_skew_s(shares):
    """How far apart the generators' tools really started, in seconds: the largest minus the
    smallest `tool_started_at` of run_on_agents' answers (0.0 for one); None when one of them
    does not say (its tool never started, or an agent that does not measure it)."""
    starts = [s.get("tool_started_at") for s in shares]
    if not starts or None in starts:
        return None
    return max(starts) - min(starts)


# Once the tools should be done, look often: each poll interval there is a harness second lost
# per run, while polls during the load run on the generators' CPUs.
FINISH_POLL_S = 0.05


def _poll_until_final(clients, run_id, deadline, on_progress, poll_s, t0, expected_end=0.0):
    while True:
        statuses = [c.status(run_id) for c in clients]
        if on_progress is not None:
            on_progress(time.monotonic() - t0, statuses)
        if all(s["state"] in FINAL_STATES for s in statuses):
            return statuses
        now = time.monotonic()
        if now > deadline:
            return None
        time.sleep(FINISH_POLL_S if now >= expected_end else min(poll_s, max(FINISH_POLL_S, expected_end - now)))


def _stop_quietly(clients, run_id):
    for c in clients:
        try:
            c.stop(run_id)
        except Exception:  # 404: never started; unreachable: its tool ends at its own hard timeout
            pass
