"""Does the running environment match what the scenario asked for? (see conftest.py)"""
from __future__ import annotations

import json
import time

import pytest


pytestmark = pytest.mark.timeout(120)

SERVICES = ("redis", "server", "loadgen")

# Runs inside the server container (no procps there): every process with its parent, thread
# count, user and arguments.
PROCESSES = r"""
import json, os
out = []
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status").read().splitlines() if ":" in l)
    except OSError:
        continue
    out.append({"pid": int(pid), "ppid": int(status["PPid"]), "threads": int(status["Threads"]),
                "uid": int(status["Uid"].split()[0]), "argv": [a.decode(errors="replace") for a in argv if a]})
print(json.dumps(out))
"""
SINGLE_PROCESS = ("iterative", "threaded", "poll", "epoll")
CPUSET_FILES = ("/sys/fs/cgroup/cpuset.cpus.effective", "/sys/fs/cgroup/cpuset/cpuset.effective_cpus",
                "/sys/fs/cgroup/cpuset/cpuset.cpus")
MEMORY_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def parse_cpus(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def read_first(host, paths) -> str:
    for path in paths:
        result = host.run("cat %s", path)
        if result.rc == 0:
            return result.stdout.strip()
    raise AssertionError(f"none of {', '.join(paths)} is readable in the container")


def open_files_limit(host, pid: int | str) -> tuple[int, int]:
    for line in host.check_output("cat /proc/%s/limits", str(pid)).splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no 'Max open files' line in /proc/{pid}/limits")


def server_processes(host) -> list[dict]:
    procs = json.loads(host.check_output("python3 -I -S -c %s", PROCESSES))
    return [p for p in procs if "-m" in p["argv"] and p["argv"][p["argv"].index("-m") + 1:][:1] == ["server"]]


def one(hosts, service):
    assert hosts.get(service), f"no {service} container in the project"
    return hosts[service][0]


def test_every_service_has_its_containers(expect, containers):
    wanted = {"redis": 1, "server": 1, "loadgen": expect.get("generators", 1)}
    found = {service: len(containers.get(service, [])) for service in wanted}
    assert found == wanted


@pytest.mark.parametrize("service", SERVICES)
def test_running_and_not_unhealthy(containers, service):
    """Docker's health checks run every 30 s (they cost measured CPU), so a young container may
    still be "starting"; what it serves is checked below (Redis from the server, the server from
    each generator)."""
    assert containers.get(service), f"no {service} container"
    for c in containers[service]:
        c.reload()
        state = c.attrs["State"]
        assert state["Status"] == "running", f"{c.name} is {state['Status']}"
        health = (state.get("Health") or {}).get("Status")
        assert health in ("starting", "healthy"), f"{c.name} is {health}"


@pytest.mark.parametrize("service", SERVICES)
def test_runs_as_unprivileged_user(hosts, service):
    for host in hosts[service]:
        uid = host.check_output("awk '/^Uid:/ {print $2}' /proc/1/status")
        assert uid != "0", f"{service}: PID 1 runs as root"


def test_server_process_model(expect, hosts):
    host = one(hosts, "server")
    arch, workers = expect["arch"], int(expect["workers"])
    # Forked children come and go (forking) or start a moment after the master (preforked).
    deadline = time.monotonic() + 15
    while True:
        procs = server_processes(host)
        pids = {p["pid"] for p in procs}
        masters = [p for p in procs if p["ppid"] not in pids]
        problem = None
        if len(masters) != 1:
            problem = f"{len(masters)} top-level server processes: {masters}"
        elif arch == "preforked":
            children = [p for p in procs if p["ppid"] == masters[0]["pid"]]
            if len(children) != workers or len(procs) != workers + 1:
                problem = f"preforked: {len(children)} children of the master (of {len(procs)} processes), want {workers}"
        elif arch == "prethreaded":
            if len(procs) != 1 or procs[0]["threads"] != workers + 1:
                problem = (f"prethreaded: {len(procs)} process(es), {procs[0]['threads']} threads; "
                           f"want one process with {workers} worker threads besides the main one")
        elif arch == "forking":
            if len(procs) != 1:
                problem = f"forking: {len(procs)} processes while idle, want the parent alone"
        elif arch in SINGLE_PROCESS:
            if len(procs) != 1:
                problem = f"{arch}: {len(procs)} processes, want one"
        else:
            problem = f"unknown architecture {arch!r}"
        if problem is None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert problem is None, problem


def test_server_command_line(expect, hosts):
    argv = server_processes(one(hosts, "server"))[0]["argv"]
    args = dict(zip(argv, argv[1:]))
    assert args.get("--arch") == expect["arch"]
    assert args.get("--workers") == str(expect["workers"])
    assert args.get("--backlog") == str(expect["backlog"])


def test_server_listens_on_8000(hosts):
    host = one(hosts, "server")
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        result = host.run("cat %s", table)
        for line in result.stdout.splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                listening.append(int(fields[1].rsplit(":", 1)[1], 16))
    assert 8000 in listening, f"listening ports: {sorted(set(listening))}"


@pytest.mark.parametrize("service", SERVICES)
def test_cpuset(expect, hosts, service):
    wanted = (expect.get("cpusets") or {}).get(service)
    if not wanted:
        pytest.skip(f"{service} is not pinned")
    for host in hosts[service]:
        assert parse_cpus(read_first(host, CPUSET_FILES)) == parse_cpus(wanted)


@pytest.mark.parametrize("service", SERVICES)
def test_memory_limit(expect, hosts, service):
    wanted = (expect.get("mem_bytes") or {}).get(service)
    if not wanted:
        pytest.skip(f"no memory limit asked for {service}")
    for host in hosts[service]:
        assert read_first(host, MEMORY_FILES) == str(int(wanted))


@pytest.mark.parametrize("service", SERVICES)
def test_open_files_limit(expect, hosts, service):
    wanted = int(expect["nofile"])
    for host in hosts[service]:
        pids = [p["pid"] for p in server_processes(host)] if service == "server" else [1]
        for pid in pids:
            assert open_files_limit(host, pid) == (wanted, wanted), f"{service} pid {pid}"


@pytest.mark.parametrize("service", SERVICES)
def test_sysctls(expect, hosts, service):
    wanted = (expect.get("sysctls") or {}).get(service) or {}
    if not wanted:
        pytest.skip(f"no sysctl asked for {service}")
    for host in hosts[service]:
        for name, value in wanted.items():
            found = host.file("/proc/sys/" + name.replace(".", "/")).content_string
            assert found.split() == str(value).split(), f"{service}: {name} = {found.strip()!r}"


def test_redis_answers_ping_from_server(hosts):
    out = one(hosts, "server").check_output(
        "python3 -c %s", "import redis; print(redis.Redis(host='redis', port=6379, socket_timeout=5).ping())")
    assert out == "True"


def test_loadgen_has_its_tools(hosts, expect):
    """wrk always (a Debian package of the image); oha and wrk2 when the scenario uses them."""
    wanted = set(expect.get("tools") or ["wrk"])
    for host in hosts["loadgen"]:
        assert host.exists("wrk"), "wrk missing"
        version = host.run("wrk -v")
        assert "wrk " in version.stdout + version.stderr
        if "oha" in wanted:
            assert host.exists("oha"), "oha missing: make images TOOLS=oha"
            assert host.check_output("oha --version").startswith("oha ")
        if "wrk2" in wanted:
            assert host.exists("wrk2"), "wrk2 missing: make images WRK2=/path/to/wrk2"


def test_loadgen_reaches_server(hosts):
    probe = ("import http.client; c = http.client.HTTPConnection('server', 8000, timeout=5); "
             "c.request('GET', '/'); print(c.getresponse().status)")
    for host in hosts["loadgen"]:
        status = host.check_output("python3 -I -S -c %s", probe)
        assert status.isdigit(), f"server answered {status!r}"
