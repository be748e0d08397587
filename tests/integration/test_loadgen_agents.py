"""Two real agents (local processes) drive real Debian wrk, and oha when built, against a real
server and Redis on 127.0.0.1, through the agent protocol only. Agents with stand-in tools
(a script given as $WRK/$OHA) show how a tool's end judges its run, and agents with a token,
a target and a Redis show that they answer, load and read nothing else. Each run says what
its generator measured of itself (tool start and end, CPU), and oha's latency is checked
against its own per-request file."""
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy
import pytest
import redis

from lab.scenario import ROOT
from loadgen import cpu
from loadgen.client import AgentClient, AgentError, run_on_agents, start_skew_s
from loadgen.merge import REPORTED, merge_results, new_histogram
from loadgen.parse import PER_REQUEST_PREFIX, parse_output
from loadgen.perrequest import to_us
from loadgen.spec import LoadSpec
from loadgen.tools import MEASURES, find_tool, min_duration_s, run_load, tool_threads

from procs import RedisServer, ServerProcess, free_port, stop_group  # tests/integration/procs.py

AGENT_VARS = ("ZL_AGENT_TOKEN", "ZL_AGENT_TARGET", "ZL_AGENT_REDIS")
TOKEN = "test-token-0123456789"
FIXTURES = Path(ROOT) / "tests" / "fixtures"
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


def agent_env(**extra):
    """This process's environment without any ZL_AGENT_* of its own, plus extra."""
    env = {k: v for k, v in os.environ.items() if k not in AGENT_VARS}
    env.update(extra)
    return env


def start_agent(log, env, prefix=()):
    """(Process, url) of an agent on a free loopback port (prefix: e.g. a taskset command)."""
    p = Process([*prefix, sys.executable, "-m", "loadgen", "agent", "--host", "127.0.0.1",
                 "--port", "0"], log, env)
    port = p.wait_for(r"agent listening on [\d.]+:(\d+)").group(1)
    return p, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def lg_agents(tmp_path_factory):
    env = agent_env()
    if oha_path():
        env["OHA"] = oha_path()
    procs, urls = [], []
    try:
        for i in range(2):
            p, url = start_agent(tmp_path_factory.mktemp("agent") / f"agent{i}.log", env)
            procs.append(p)
            urls.append(url)
        yield urls
    finally:
        for p in procs:
            p.stop()


@pytest.fixture
def agent_factory(tmp_path):
    """Start agents with chosen ZL_AGENT_* variables (all stopped at teardown)."""
    procs = []

    def start(prefix=(), **variables):
        p, url = start_agent(tmp_path / f"agent{len(procs)}.log", agent_env(**variables), prefix)
        procs.append(p)
        return url

    try:
        yield start
    finally:
        for p in procs:
            p.stop()


@pytest.fixture(scope="module")
def secure_agent(tmp_path_factory, lg_server, lg_redis):
    """An agent as the environments start it: a token, the server as target, its Redis."""
    p, url = start_agent(tmp_path_factory.mktemp("secure") / "agent.log",
                         agent_env(ZL_AGENT_TOKEN=TOKEN, ZL_AGENT_TARGET=lg_server,
                                   ZL_AGENT_REDIS=f"127.0.0.1:{lg_redis}"))
    try:
        yield url
    finally:
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
    # oha's latency comes from every request; wrk's from its histogram, read by the script
    source = "per-request" if tool == "oha" else "histogram"
    assert [r["latency_source"] for r in results] == [source, source]
    assert (merged["latency_source"], merged["latency_kind"]) == (source, "closed-loop")
    assert (PER_REQUEST_PREFIX in runs[0]["raw_output"]) == (tool == "oha")
    for r in runs:
        assert_self_measures(r, LoadSpec.from_dict(r["spec"]))
    assert start_skew_s(runs) >= 0


def assert_self_measures(run, share):
    """What an agent says of its own run: when its tool started and ended, its CPU time, the
    CPUs it could use and its share of them."""
    assert set(MEASURES) <= set(run)
    started, ended = run["tool_started_at"], run["tool_ended_at"]
    assert started <= run["tool_started_last_at"] <= ended <= run["tool_exited_at"]
    assert abs(started - time.time()) < 120  # epoch seconds
    assert run["tool_wall_s"] == pytest.approx(ended - started)
    assert run["tool_wall_s"] >= min_duration_s(share.duration_s)
    assert run["tool_cpu_s"]["user"] + run["tool_cpu_s"]["system"] > 0
    limits = run["cpu_limits"]
    assert limits["threads"] == tool_threads(share)
    assert run["usable_cpus"] == min(v for v in limits.values() if v is not None)
    assert 0 < run["cpu_share"] <= 1.5


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
    assert stopped["error"] is None  # the SIGINT that stopped it was the agent's own
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


def wait_final(agent, run_id, limit_s=30):
    deadline = time.monotonic() + limit_s
    while (state := agent.status(run_id))["state"] in ("waiting", "running"):
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    return state


def test_a_wrk_that_reaches_nothing_reports_the_refused_connections(lg_agents):
    """The lab's wrk script skips wrk's own connect-and-close check (loadgen/lua.py), so a closed
    port is no longer wrk's exit 1: the run ends with no request and every connection refused,
    which the lab judges as it judges a server refusing connections under load."""
    agent = AgentClient(lg_agents[0])
    port = free_port()
    spec = LoadSpec(tool="wrk", url=f"http://127.0.0.1:{port}", connections=2, threads=1,
                    duration_s=2)
    agent.start("refused-wrk", spec, time.time())
    state = wait_final(agent, "refused-wrk")
    assert state["state"] == "done", state.get("error")
    result = state["result"]
    assert result["requests"] == 0
    assert result["errors"]["connect"] + result["errors"]["write"] > 0, result["errors"]


def test_an_oha_kind_that_cannot_connect_is_named(lg_agents):
    if not oha_path():
        pytest.skip("oha is not built")
    agent = AgentClient(lg_agents[0])
    spec = LoadSpec(tool="oha", url=f"http://127.0.0.1:{free_port()}", connections=2, threads=1,
                    duration_s=1, mix={"guestbook_get": 1, "static": 1})
    agent.start("refused-oha", spec, time.time())
    state = wait_final(agent, "refused-oha")
    assert state["state"] == "failed"
    for kind in ("guestbook_get", "static"):
        assert f"oha {kind} printed no report: oha could not connect: Connection refused" \
            in state["error"]
        assert f"# oha {kind}: " in state["raw_output"]


# ---------------------------------------------------------------- stand-in tools

FAKE_TOOL = '''#!{python}
"""A stand-in for wrk and oha (by the name it is called as): does what the plan ($ZL_FAKE_PLAN)
says for its kind: print a file and text, then exit with a status or kill itself."""
import json, os, signal, sys
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
if args in (["-v"], ["--version"]):
    print("wrk debian/4.1.0-fake [epoll] Copyright (C) 2012 Will Glozer" if name == "wrk"
          else "oha 1.16.0")
    sys.exit(1 if name == "wrk" else 0)
kind = name
if name == "oha":
    kind = ("static" if not args[-1].endswith("/guestbook")
            else "guestbook_post" if "POST" in args else "guestbook_get")
with open(os.environ["ZL_FAKE_PLAN"]) as f:
    step = json.load(f).get(kind, {{}})
if step.get("stdout_file"):
    with open(step["stdout_file"]) as f:
        sys.stdout.write(f.read())
sys.stdout.write(step.get("stdout", ""))
sys.stdout.flush()
sys.stderr.write(step.get("stderr", ""))
sys.stderr.flush()
if step.get("signal"):
    os.kill(os.getpid(), step["signal"])
sys.exit(step.get("exit", 0))
'''
FAKE_URL = "http://127.0.0.1:9"  # never reached: the stand-ins only print
MIX3 = {"guestbook_get": 1, "guestbook_post": 1, "static": 1}


@pytest.fixture(scope="module")
def fake_tools(tmp_path_factory):
    """(agent url, plan file): an agent whose $WRK and $OHA are the stand-in."""
    folder = tmp_path_factory.mktemp("fake-tools")
    script = FAKE_TOOL.format(python=sys.executable)
    for name in ("wrk", "oha"):
        (folder / name).write_text(script)
        (folder / name).chmod(0o755)
    plan = folder / "plan.json"
    plan.write_text("{}")
    p, url = start_agent(folder / "agent.log",
                         agent_env(WRK=str(folder / "wrk"), OHA=str(folder / "oha"),
                                   ZL_FAKE_PLAN=str(plan)))
    try:
        yield url, plan
    finally:
        p.stop()


def fake_run(fake_tools, run_id, plan, **spec):
    url, plan_file = fake_tools
    plan_file.write_text(json.dumps(plan))
    agent = AgentClient(url)
    agent.start(run_id, LoadSpec(url=FAKE_URL, **spec), time.time())
    return wait_final(agent, run_id)


WRK_5S = {"stdout_file": str(FIXTURES / "wrk/wrk_preforked_c20_latency.txt")}  # 5.02 s
WRK_2S = {"stdout_file": str(FIXTURES / "wrk/wrk_sigint_after_2s.txt")}       # 2.00 s
OHA_2S = {"stdout_file": str(FIXTURES / "oha/oha_closed.json")}                # 2.001 s


def test_stand_ins_that_did_their_whole_run_are_done(fake_tools):
    wrk = fake_run(fake_tools, "fake-wrk-ok", {"wrk": WRK_5S}, tool="wrk", connections=2,
                   threads=1, duration_s=5)
    assert wrk["state"] == "done" and wrk["error"] is None, wrk["error"]
    oha = fake_run(fake_tools, "fake-oha-ok", dict.fromkeys(MIX3, OHA_2S), tool="oha",
                   connections=3, threads=1, duration_s=2, mix=MIX3)
    assert oha["state"] == "done" and oha["error"] is None, oha["error"]
    assert set(oha["result"]["requests_by_kind"]) == set(MIX3)
    # a stand-in writes no per-request file: the printed percentiles stand for it, and say so
    assert oha["result"]["latency_source"] == "reconstructed from printed percentiles"
    assert PER_REQUEST_PREFIX not in oha["raw_output"]
    assert oha["tool_started_at"] <= oha["tool_started_last_at"] <= oha["tool_ended_at"]


@pytest.mark.parametrize("name, plan, duration_s, error", [
    ("exit-1", {"wrk": dict(WRK_5S, stderr="wrk: thread 2 failed\n", exit=1)}, 5,
     "wrk exited with status 1: wrk: thread 2 failed"),
    ("partial-exit-1", {"wrk": {"stdout": "Running 5s test @ http://127.0.0.1:9/\n"
                                          "  1 threads and 2 connections\n", "exit": 1}}, 5,
     "wrk exited with status 1: Running 5s test @ http://127.0.0.1:9/ | "
     "1 threads and 2 connections"),
    ("segv", {"wrk": dict(WRK_5S, signal=int(signal.SIGSEGV))}, 5,
     "wrk was killed by SIGSEGV: "),
    ("sigint", {"wrk": dict(WRK_5S, signal=int(signal.SIGINT))}, 5,
     "wrk was killed by SIGINT (not sent by the agent)"),
    ("short", {"wrk": WRK_2S}, 10,
     "wrk stopped early: it reports 2.00 s of the 10 s asked (at least 9 s expected)"),
])
def test_a_wrk_that_failed_fails_the_run_in_its_own_words(fake_tools, name, plan, duration_s,
                                                           error):
    state = fake_run(fake_tools, f"fake-wrk-{name}", plan, tool="wrk", connections=2, threads=1,
                     duration_s=duration_s)
    assert state["state"] == "failed"
    assert state["error"].startswith(error), state["error"]
    assert re.search(r"threads and \d+ connections", state["raw_output"])  # what it printed is kept


@pytest.mark.parametrize("name, changes, duration_s, error", [
    ("silent", {"guestbook_post": {}}, 2, "oha guestbook_post printed nothing"),
    ("garbage", {"static": {"stdout": "thread 'main' panicked at src/main.rs\n"}}, 2,
     "oha static printed no report: not a oha report"),
    ("exit-1", {"static": {"stdout": '{"summary": {"total": 0.3',
                           "stderr": "error: Too many open files (os error 24)\n", "exit": 1}}, 2,
     "oha static exited with status 1: error: Too many open files (os error 24)"),
    ("short", {"guestbook_get": {"stdout_file": str(FIXTURES / "oha/oha_sigint.json")}}, 10,
     "oha guestbook_get stopped early: it reports 1.99 s of the 10 s asked"),
])
def test_an_oha_kind_that_failed_fails_the_run_naming_the_kind(fake_tools, name, changes,
                                                               duration_s, error):
    plan = dict.fromkeys(MIX3, OHA_2S)
    plan.update(changes)
    if name == "short":  # every kind short of the 10 s; the first one is named first
        plan = {k: changes["guestbook_get"] for k in MIX3}
    state = fake_run(fake_tools, f"fake-oha-{name}", plan, tool="oha", connections=3, threads=1,
                     duration_s=duration_s, mix=MIX3)
    assert state["state"] == "failed"
    assert state["error"].startswith(error), state["error"]
    for kind in MIX3:  # every process's output is kept, under its header
        assert f"# oha {kind}: " in state["raw_output"]


# ---------------------------------------------------------------- token, target, Redis

def raw_request(url, method, path, body=None, headers=None, conn=None):
    """(status, headers, JSON answer) of one request, on conn when given."""
    parts = urlsplit(url)
    own = conn is None
    conn = conn or http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        payload = json.dumps(body) if body is not None else None
        conn.request(method, path, body=payload, headers=dict(headers or {}))
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(resp.read())
    finally:
        if own:
            conn.close()


PROTECTED = [("GET", "/counters", None), ("GET", "/probe", None), ("GET", "/runs/x", None),
             ("DELETE", "/runs/x", None), ("GET", "/no-such-thing", None),
             ("POST", "/verify", {"url": "http://127.0.0.1:8000"}),
             ("POST", "/runs", {"run_id": "intruder", "spec": {"tool": "wrk",
                                                               "url": "http://127.0.0.1:9",
                                                               "connections": 1, "threads": 1,
                                                               "duration_s": 1}}),
             ("POST", "/redis/flush", {})]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"},
                                     {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": TOKEN}])
def test_without_the_token_every_endpoint_but_health_answers_401(secure_agent, lg_redis,
                                                                  headers):
    r = redis.Redis(port=lg_redis)
    r.set("zl-test-keep", "1")
    try:
        for method, path, body in PROTECTED:
            status, answer_headers, answer = raw_request(secure_agent, method, path, body, headers)
            assert status == 401, (method, path)
            assert "token" in answer["error"] and answer_headers["www-authenticate"].startswith("Bearer")
        assert r.get("zl-test-keep") == b"1"  # the flush did not happen
    finally:
        r.delete("zl-test-keep")
        r.close()
    with pytest.raises(AgentError) as err:  # nor did the run start
        AgentClient(secure_agent, token=TOKEN).status("intruder")
    assert err.value.status == 404


def test_a_refused_request_leaves_the_connection_usable(secure_agent):
    parts = urlsplit(secure_agent)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        status, _, _ = raw_request(secure_agent, "POST", "/verify", {"url": "x" * 5000}, conn=conn)
        assert status == 401
        status, _, answer = raw_request(secure_agent, "GET", "/health",
                                        headers={"Authorization": f"Bearer {TOKEN}"}, conn=conn)
        assert status == 200 and answer["hostname"]
    finally:
        conn.close()


def test_health_without_the_token_says_only_ok(secure_agent, lg_server, lg_redis):
    status, _, answer = raw_request(secure_agent, "GET", "/health")
    assert (status, answer) == (200, {"ok": True})
    status, _, _ = raw_request(secure_agent, "GET", "/health",
                               headers={"Authorization": "Bearer wrong"})
    assert status == 401
    full = AgentClient(secure_agent, token=TOKEN).health()
    assert full["ok"] and full["hostname"] and full["tools"]["wrk"].startswith("debian/")
    assert full["target"] == lg_server and full["redis"] == f"127.0.0.1:{lg_redis}"
    t0 = time.monotonic()
    with pytest.raises(AgentError) as err:
        AgentClient(secure_agent).wait_ready(timeout_s=60)  # no token: refused, not retried
    assert err.value.status == 401 and "token" in str(err.value)
    assert time.monotonic() - t0 < 30


def test_the_token_opens_every_endpoint_and_run_on_agents_passes_it(secure_agent, lg_server,
                                                                    lg_redis):
    agent = AgentClient(secure_agent, token=TOKEN)
    assert agent.verify(lg_server)["passed"]
    assert agent.counters()["visitor_count"] == counters(lg_redis)[0]
    assert agent.probe()["ok"]
    spec = LoadSpec(tool="wrk", url=lg_server, connections=2, threads=1, duration_s=1)
    [run] = run_on_agents([secure_agent], spec, start_delay_s=0.5, token=TOKEN)
    assert run["state"] == "done" and run["result"]["requests"] > 0, run["error"]
    with pytest.raises(AgentError) as err:
        run_on_agents([secure_agent], spec, start_delay_s=0.5)
    assert err.value.status == 401


def test_a_foreign_target_is_refused_naming_the_allowed_one(secure_agent, lg_server):
    agent = AgentClient(secure_agent, token=TOKEN)
    other = f"http://127.0.0.1:{free_port()}"
    for url in (other, "http://example.com:8000", "http://10.1.2.3" + lg_server[-6:]):
        with pytest.raises(AgentError) as err:
            agent.verify(url)
        assert err.value.status == 403 and lg_server in str(err.value)
        spec = LoadSpec(tool="wrk", url=url, connections=1, threads=1, duration_s=1)
        with pytest.raises(AgentError) as err:
            agent.start("foreign", spec, time.time())
        assert err.value.status == 403 and lg_server in str(err.value)
    with pytest.raises(AgentError) as err:
        agent.status("foreign")
    assert err.value.status == 404
    with pytest.raises(AgentError) as err:
        agent.probe(other)
    assert err.value.status == 403


def test_without_a_target_only_loopback_is_loaded(lg_agents, lg_server):
    agent = AgentClient(lg_agents[0])
    for url in ("http://10.255.255.1:8000", "http://example.com", "http://server:8000"):
        with pytest.raises(AgentError) as err:
            agent.verify(url)
        assert err.value.status == 403 and "ZL_AGENT_TARGET" in str(err.value)
        with pytest.raises(AgentError) as err:
            agent.start("not-loopback", LoadSpec(tool="wrk", url=url, connections=1, threads=1,
                                                 duration_s=1), time.time())
        assert err.value.status == 403
    port = urlsplit(lg_server).port
    assert agent.verify(f"http://localhost:{port}")["passed"]
    with pytest.raises(AgentError) as err:  # nothing to probe without a target or a url
        agent.probe()
    assert err.value.status == 403
    assert agent.probe(lg_server)["ok"]


def test_counters_come_from_the_configured_redis(agent_factory, redis_server):
    r = redis_server.client()
    r.set("visitor_count", 41)
    r.rpush("guestbook_remarks", "a", "b")
    url = agent_factory(ZL_AGENT_REDIS=f"127.0.0.1:{redis_server.port}")
    agent = AgentClient(url)
    assert agent.counters() == {"visitor_count": 41, "remarks": 2}
    assert agent.counters("127.0.0.1", redis_server.port) == {"visitor_count": 41, "remarks": 2}
    for host, port in (("127.0.0.1", free_port()), ("10.0.0.1", redis_server.port),
                       ("redis", 6379)):
        with pytest.raises(AgentError) as err:
            agent.counters(host, port)
        assert err.value.status == 403
        assert f"127.0.0.1:{redis_server.port}" in str(err.value)


def test_without_a_configured_redis_only_loopback_is_read(lg_agents):
    with pytest.raises(AgentError) as err:
        AgentClient(lg_agents[0]).counters("10.0.0.1", 6379)
    assert err.value.status == 403 and "ZL_AGENT_REDIS" in str(err.value)


def test_flush_empties_the_configured_redis(agent_factory, redis_server):
    r = redis_server.client()
    r.set("visitor_count", 7)
    r.rpush("guestbook_remarks", "x")
    r.mset({f"other-{i}": i for i in range(3)})
    agent = AgentClient(agent_factory(ZL_AGENT_REDIS=f"127.0.0.1:{redis_server.port}"))
    assert agent.flush_redis() == {"keys_before": 5, "keys_after": 0}
    assert r.dbsize() == 0
    assert agent.counters() == {"visitor_count": 0, "remarks": 0}


def test_flush_without_a_configured_redis_is_refused(lg_agents):
    with pytest.raises(AgentError) as err:
        AgentClient(lg_agents[0]).flush_redis()
    assert err.value.status == 403 and "ZL_AGENT_REDIS" in str(err.value)


def test_probe_says_whether_the_target_answers(agent_factory, lg_server):
    answered = AgentClient(agent_factory(ZL_AGENT_TARGET=lg_server)).probe()
    assert answered["ok"] and 100 <= answered["status"] < 600, answered
    refused = AgentClient(agent_factory(
        ZL_AGENT_TARGET=f"http://127.0.0.1:{free_port()}")).probe()
    assert not refused["ok"] and refused["status"] is None
    assert "refused" in refused["detail"].lower()
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        agent = AgentClient(agent_factory(
            ZL_AGENT_TARGET=f"http://127.0.0.1:{silent.getsockname()[1]}"))
        t0 = time.monotonic()
        mute = agent.probe()
        assert time.monotonic() - t0 < 8  # bounded by the probe's own timeouts
    assert not mute["ok"] and mute["status"] is None and "timed out" in mute["detail"]


def test_a_malformed_variable_stops_the_agent_with_its_name():
    out = subprocess.run([sys.executable, "-m", "loadgen", "agent", "--host", "127.0.0.1",
                          "--port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=30,
                         env=agent_env(ZL_AGENT_TARGET="server:8000"))
    assert out.returncode == 2
    assert "ZL_AGENT_TARGET: 'server:8000' is not an http://host[:port] URL" in out.stderr


# ---------------------------------------------------------------- what a generator measures of itself

def test_an_injected_start_delay_shows_as_start_skew(agent_factory, lg_server):
    """ZL_AGENT_TEST_START_DELAY_S starts one agent's tool late; both agents say when theirs
    really started."""
    prompt = agent_factory()
    late = agent_factory(ZL_AGENT_TEST_START_DELAY_S="0.8")
    spec = LoadSpec(tool="wrk", url=lg_server, connections=2, threads=1, duration_s=1,
                    mix={"static": 1})
    runs = run_on_agents([prompt, late], spec, start_delay_s=0.5)
    assert [r["state"] for r in runs] == ["done", "done"], [r["error"] for r in runs]
    assert runs[1]["tool_started_at"] - runs[0]["tool_started_at"] >= 0.75
    assert 0.75 <= start_skew_s(runs) < 10
    # The controller's verdict on such a run: not to be trusted.
    from lab.validity import judge

    verdict = judge(mode="closed", rate=None, connections=2, requests=100, errors={},
                    requests_per_sec=100.0, generator_cpu={}, duration_s=1, start_skew_s=start_skew_s(runs))
    assert not verdict["trusted"] and verdict["untrusted_reasons"][0].startswith("start skew")


@pytest.mark.skipif(not shutil.which("taskset"), reason="taskset is missing")
def test_usable_cpus_respect_the_affinity_and_the_threads(agent_factory, lg_server):
    spec = LoadSpec(tool="wrk", url=lg_server, connections=2, threads=2, duration_s=1,
                    mix={"static": 1})
    pinned = AgentClient(agent_factory(prefix=("taskset", "-c", "0")))
    pinned.start("pinned", spec, time.time())
    run = wait_final(pinned, "pinned")
    assert run["state"] == "done", run["error"]
    assert run["cpu_limits"]["affinity"] == 1 and run["cpu_limits"]["threads"] == 2
    assert run["usable_cpus"] == 1
    assert_self_measures(run, spec)
    one_thread = LoadSpec(tool="wrk", url=lg_server, connections=2, threads=1, duration_s=1,
                          mix={"static": 1})
    free = AgentClient(agent_factory())
    free.start("one-thread", one_thread, time.time())
    run = wait_final(free, "one-thread")
    assert run["state"] == "done", run["error"]
    assert run["cpu_limits"]["threads"] == 1 and run["usable_cpus"] == 1
    assert run["cpu_limits"]["affinity"] == cpu.affinity_cpus()
    assert_self_measures(run, one_thread)


def oha_rows(path):
    """Every request's latency (seconds) in one oha per-request file."""
    conn = sqlite3.connect(path)
    try:
        return [d for (d,) in conn.execute("SELECT duration FROM oha")]
    finally:
        conn.close()


@pytest.mark.parametrize("mode, rate", [("closed", None), ("open", 600)])
def test_oha_latency_equals_what_its_own_requests_say(mode, rate, lg_server, tmp_path,
                                                      monkeypatch):
    """Two generators' shares of an oha mix, run here with the agent's own run_load: the
    merged percentiles are those of every request in oha's per-request files."""
    if not oha_path():
        pytest.skip("oha is not built")
    monkeypatch.setenv("OHA", oha_path())
    find_tool.cache_clear()
    try:
        spec = LoadSpec(tool="oha", mode=mode, rate=rate, url=lg_server, connections=4,
                        threads=1, duration_s=2, mix={"guestbook_get": 1, "static": 1})
        work, kept, results = tmp_path / "work", [], []
        work.mkdir()
        for i, share in enumerate(spec.split(2)):
            keep = tmp_path / f"generator{i}"
            keep.mkdir()
            outcome = run_load(share, workdir=work, keep_request_files=keep)
            assert outcome.error is None and outcome.result is not None, outcome.error
            assert list(work.iterdir()) == []  # its temporary folder is gone
            files = sorted(keep.glob("oha-*.db"))
            assert [f.name for f in files] == ["oha-guestbook_get.db", "oha-static.db"]
            kept += files
            results.append(outcome.result)
            # the raw output alone gives back the same latency
            assert parse_output(outcome.raw_output, "oha")["latency"] == outcome.result["latency"]
    finally:
        find_tool.cache_clear()
    kind = "open-loop corrected" if mode == "open" else "closed-loop"
    for r in results:
        assert (r["latency_source"], r["latency_kind"]) == ("per-request", kind)
        assert (r["uncorrected_latency"] is not None) == (mode == "open")
    merged = merge_results(results)
    assert (merged["latency_source"], merged["latency_kind"]) == ("per-request", kind)
    durations = [d for f in kept for d in oha_rows(f)]
    assert len(durations) == merged["requests"] > 0  # oha writes every answered request
    exact = new_histogram()  # the same precision, built here from the raw rows
    for d in durations:
        exact.record_value(to_us(d))
    top = max(durations) * 1000.0
    assert merged["latency"]["max_ms"] == top
    assert merged["latency"]["mean_ms"] == pytest.approx(numpy.mean(durations) * 1000, rel=1e-9)
    assert merged["latency"]["stdev_ms"] == pytest.approx(numpy.std(durations) * 1000, rel=1e-6)
    by_ms = numpy.sort(numpy.array(durations) * 1000.0)
    n = len(by_ms)
    for p in REPORTED:
        key = f"{p:g}"
        got = merged["latency"]["percentiles_ms"][key]
        assert got == min(top, exact.get_value_at_percentile(p) / 1000.0), key
        # and within the histogram's precision (3 digits, whole microseconds) of the request at
        # that rank (HdrHistogram rounds the rank n * p / 100 to the nearest)
        low = by_ms[max(1, math.floor(n * p / 100)) - 1]
        high = by_ms[min(n, max(1, math.ceil(n * p / 100))) - 1]
        assert low - 1e-3 <= got <= high * (1 + 2e-3) + 1e-3, (key, low, got, high)
