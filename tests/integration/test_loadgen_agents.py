"""Two real agents (local processes) drive real Debian wrk, and oha when built, against a real
server and Redis on 127.0.0.1, through the agent protocol only."""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from lab.scenario import ROOT
from loadgen.client import AgentClient, AgentError, run_on_agents
from loadgen.merge import merge_results
from loadgen.parse import parse_output
from loadgen.spec import LoadSpec

from procs import RedisServer, ServerProcess, free_port, stop_group  # tests/integration/procs.py

OHA_BUILD = (Path(os.environ.get("ZL_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zerolab")
             / "oha-1.16.0" / "bin" / "oha")
ARCH = "threaded"  # any architecture serves the same app; this one starts fastest
MIX = {"guestbook_get": 3, "guestbook_post": 1, "static": 1}

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(not shutil.which("wrk"), reason="Debian's wrk is not installed"),
              pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is missing")]


def oha_path():
    return os.environ.get("OHA") or shutil.which("oha") or (str(OHA_BUILD) if OHA_BUILD.exists() else None)


class Process:
    """A child process in its own session, stopped with its whole group."""

    def __init__(self, argv, log, env=None):
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)

    def wait_for(self, pattern, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, Path(self.log).read_text(errors="replace"))
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.proc.args[:3]} not ready: {Path(self.log).read_text()[-2000:]}")

    def stop(self):
        stop_group(self.proc, timeout=8)


@pytest.fixture(scope="module")
def lg_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.port
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lg_server(lg_redis):
    server = ServerProcess(ARCH, lg_redis)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lg_bad_server():
    """A server whose Redis is not there: the guestbook answers 503."""
    server = ServerProcess(ARCH, free_port())
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lg_agents(tmp_path_factory):
    env = dict(os.environ)
    if oha_path():
        env["OHA"] = oha_path()
    procs, urls = [], []
    try:
        for i in range(2):
            p = Process([sys.executable, "-m", "loadgen", "agent", "--host", "127.0.0.1",
                         "--port", "0"], tmp_path_factory.mktemp("agent") / f"agent{i}.log", env)
            procs.append(p)
            port = p.wait_for(r"agent listening on [\d.]+:(\d+)").group(1)
            urls.append(f"http://127.0.0.1:{port}")
        yield urls
    finally:
        for p in procs:
            p.stop()


def counters(redis_port):
    r = redis.Redis(port=redis_port)
    try:
        return int(r.get("visitor_count") or 0), r.llen("guestbook_remarks")
    finally:
        r.close()


def test_agents_report_their_tools(lg_agents):
    for url in lg_agents:
        h = AgentClient(url).health()
        assert h["ok"] and h["cpus"] >= 1 and h["hostname"]
        assert h["tools"]["wrk"].startswith("debian/")
        assert h["tools"]["wrk2"] is None or h["tools"]["wrk2"].startswith("4.")
        assert (h["tools"]["oha"] is not None) == bool(oha_path())


def test_counters_read_redis(lg_agents, lg_redis):
    got = AgentClient(lg_agents[0]).counters("127.0.0.1", lg_redis)
    assert (got["visitor_count"], got["remarks"]) == counters(lg_redis)


def test_verify_passes_on_a_good_server(lg_agents, lg_server):
    answer = AgentClient(lg_agents[0]).verify(lg_server, "/index.html")
    assert answer["passed"], answer
    assert [c["name"] for c in answer["checks"]] == ["guestbook_get", "guestbook_post", "static",
                                                     "not_found"]


def test_verify_fails_with_a_reason_on_a_bad_server(lg_agents, lg_bad_server):
    answer = AgentClient(lg_agents[0]).verify(lg_bad_server, "/index.html")
    assert not answer["passed"]
    by_name = {c["name"]: c for c in answer["checks"]}
    assert not by_name["guestbook_get"]["passed"]
    assert "503" in by_name["guestbook_get"]["detail"]
    assert by_name["static"]["passed"] and by_name["not_found"]["passed"]
    missing = AgentClient(lg_agents[0]).verify(f"http://127.0.0.1:{free_port()}", "/index.html")
    assert not missing["passed"]
    assert "Connection refused" in missing["checks"][0]["detail"]


@pytest.mark.parametrize("tool", ["wrk", "oha"])
def test_two_agents_split_a_run_and_agree_with_redis(tool, lg_agents, lg_server, lg_redis):
    if tool == "oha" and not oha_path():
        pytest.skip("oha is not built")
    spec = LoadSpec(tool=tool, url=lg_server, connections=7, threads=2, duration_s=2, mix=MIX)
    visitors0, remarks0 = counters(lg_redis)
    progress = []
    runs = run_on_agents(lg_agents, spec, start_delay_s=1.0,
                         on_progress=lambda elapsed, statuses: progress.append(
                             [s["state"] for s in statuses]))
    visitors1, remarks1 = counters(lg_redis)

    assert [r["state"] for r in runs] == ["done", "done"], [r["error"] for r in runs]
    assert [r["spec"]["connections"] for r in runs] == [4, 3]
    assert ["running", "running"] in progress or ["done", "done"] == progress[-1]
    results = [r["result"] for r in runs]
    for r in runs:  # the raw output alone gives back the same result
        reparsed = parse_output(r["raw_output"], tool)
        assert reparsed["requests"] == r["result"]["requests"]
        assert reparsed["requests_by_kind"] == r["result"]["requests_by_kind"]
    merged = merge_results(results)
    assert merged["requests"] == sum(r["requests"] for r in results) > 0
    assert merged["connections"] == 7
    sent = merged["requests_by_kind"]
    assert sent == {k: sum(r["requests_by_kind"][k] for r in results) for k in MIX}
    errors = sum(merged["errors"].values())
    # every request sent was completed, except at most one in flight per connection at the end
    assert 0 <= sum(sent.values()) - merged["requests"] <= spec.connections + errors
    assert sent["guestbook_get"] - spec.connections <= visitors1 - visitors0 <= sent["guestbook_get"]
    assert sent["guestbook_post"] - spec.connections <= remarks1 - remarks0 <= sent["guestbook_post"]
    assert all(n > 0 for n in sent.values())
    lat = merged["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"]
    assert merged["spectrum"][-1][1:] == [1.0, sum(r["latency"]["spectrum"][-1][2] for r in results)]


@pytest.mark.parametrize("tool", ["wrk", "oha"])
def test_delete_stops_a_run_early_and_keeps_its_report(tool, lg_agents, lg_server):
    if tool == "oha" and not oha_path():
        pytest.skip("oha is not built")
    agent = AgentClient(lg_agents[1])
    spec = LoadSpec(tool=tool, url=lg_server, connections=2, threads=1, duration_s=60,
                    mix={"static": 1})
    run_id = f"early-stop-{tool}"
    assert agent.start(run_id, spec, time.time()) == {"run_id": run_id}
    with pytest.raises(AgentError) as busy:
        agent.start(run_id + "-second", spec, time.time())
    assert busy.value.status == 409
    deadline = time.monotonic() + 10
    while agent.status(run_id)["state"] != "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    t0 = time.monotonic()
    stopped = agent.stop(run_id)
    assert time.monotonic() - t0 < 8
    assert stopped["state"] == "stopped"
    assert stopped["result"]["requests"] > 0 and stopped["elapsed_s"] < 15
    assert stopped["raw_output"]
    assert agent.status(run_id)["state"] == "stopped"


def test_a_bad_spec_is_refused_naming_the_field(lg_agents):
    agent = AgentClient(lg_agents[0])
    with pytest.raises(AgentError, match="conections: unknown field") as err:
        agent.start("bad-spec", {"tool": "wrk", "conections": 3}, time.time())
    assert err.value.status == 400
    with pytest.raises(AgentError) as err:
        agent.status("no-such-run")
    assert err.value.status == 404


def test_a_missing_tool_fails_the_run_with_the_reason(lg_agents, lg_server):
    if shutil.which("wrk2") or os.environ.get("WRK2"):
        pytest.skip("a wrk2 binary is present")
    agent = AgentClient(lg_agents[0])
    spec = LoadSpec(tool="wrk2", mode="open", rate=10, url=lg_server, connections=1, threads=1,
                    duration_s=1)
    agent.start("no-wrk2", spec, time.time())
    deadline = time.monotonic() + 10
    while (state := agent.status("no-wrk2"))["state"] in ("waiting", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert state["state"] == "failed" and "wrk2 not found" in state["error"]
