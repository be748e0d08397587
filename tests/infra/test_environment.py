"""Does the running environment match what the scenario asked for? (see conftest.py)"""
from __future__ import annotations

import json
import time

import pytest


pytestmark = pytest.mark.timeout(120)

SERVICES = ("redis", "server", "loadgen")

# Runs in the server container with nothing but sh and coreutils (no procps, and no python3 in
# the C servers' image): every process's status, binary and arguments (separated by \037).
PROCESSES = r"""
for d in /proc/[0-9]*; do
  status=$(cat "$d/status" 2>/dev/null) || continue
  printf 'pid %s\n%s\n' "${d#/proc/}" "$status"
  printf 'exe:\t%s\n' "$(readlink "$d/exe" 2>/dev/null)"
  printf 'argv:\t%s\n' "$(tr '\000' '\037' < "$d/cmdline" 2>/dev/null)"
done
"""
# Where the C servers' image keeps the seven binaries, named after their architecture.
ZEROHTTPD_DIR = "/opt/zerohttpd"
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


def processes(host) -> list[dict]:
    """Every process of the container: pid, ppid, threads, uid, exe, argv."""
    out: list[dict] = []
    for block in host.check_output("sh -c %s", PROCESSES).split("\npid ")[0:]:
        lines = block.removeprefix("pid ").splitlines()
        fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        if not lines or "PPid" not in fields or "Threads" not in fields:
            continue  # it ended while being read
        argv = fields.get("argv", "").strip()
        out.append({"pid": int(lines[0]), "ppid": int(fields["PPid"]), "threads": int(fields["Threads"]),
                    "uid": int(fields["Uid"].split()[0]), "exe": fields.get("exe", "").strip(),
                    "argv": [a for a in argv.split("\x1f") if a]})
    return out


def server_processes(host, impl: str = "python") -> list[dict]:
    """The server's processes: `python3 -m server`, or one of the C servers' binaries."""
    if impl == "zerohttpd":
        return [p for p in processes(host) if p["exe"].startswith(ZEROHTTPD_DIR + "/")]
    return [p for p in processes(host)
            if "-m" in p["argv"] and p["argv"][p["argv"].index("-m") + 1:][:1] == ["server"]]


def impl_of(expect) -> str:
    return expect.get("impl") or "python"


def skip_for_image(expect, why: str) -> None:
    """A server image the scenario brings is held only to what the scenario says of it."""
    if impl_of(expect) == "image":
        pytest.skip(f"impl: image: {why}")


def one(hosts, service):
    assert hosts.get(service), f"no {service} container in the project"
    return hosts[service][0]


def test_every_service_has_its_containers(expect, containers):
    wanted = {"redis": 1, "server": 1, "loadgen": expect.get("generators", 1)}
    found = {service: len(containers.get(service, [])) for service in wanted}
    assert found == wanted


@pytest.mark.parametrize("service", SERVICES)
def test_running_and_not_unhealthy(expect, containers, service):
    """Docker's health checks run every 30 s (they cost measured CPU), so a young container may
    still be "starting"; what it serves is checked below (Redis from the server, the server from
    each generator). A server image the scenario brings has no health check of the lab's."""
    assert containers.get(service), f"no {service} container"
    allowed = {"starting", "healthy"} | ({None} if service == "server" and impl_of(expect) == "image" else set())
    for c in containers[service]:
        c.reload()
        state = c.attrs["State"]
        assert state["Status"] == "running", f"{c.name} is {state['Status']}"
        health = (state.get("Health") or {}).get("Status")
        assert health in allowed, f"{c.name} is {health}"


@pytest.mark.parametrize("service", SERVICES)
def test_runs_as_unprivileged_user(expect, hosts, service):
    if service == "server":
        skip_for_image(expect, "the scenario says nothing of the user its server runs as")
    for host in hosts[service]:
        uid = host.check_output("awk '/^Uid:/ {print $2}' /proc/1/status")
        assert uid != "0", f"{service}: PID 1 runs as root"


def test_server_process_model(expect, hosts):
    skip_for_image(expect, "the scenario says nothing of its processes")
    host, impl = one(hosts, "server"), impl_of(expect)
    arch, workers = expect["arch"], int(expect["workers"])
    # Forked children come and go (forking) or start a moment after the master (preforked).
    deadline = time.monotonic() + 15
    while True:
        procs = server_processes(host, impl)
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
    skip_for_image(expect, "its command is the scenario's or the image's own")
    host, impl = one(hosts, "server"), impl_of(expect)
    procs = server_processes(host, impl)
    assert procs, f"no server process found: {processes(host)}"
    argv = procs[0]["argv"]
    if impl == "zerohttpd":
        # The arch's own binary, from the checkout's root, with its port and Redis' address.
        assert {p["exe"] for p in procs} == {f"{ZEROHTTPD_DIR}/{expect['arch']}"}
        assert argv[:2] == [f"./{expect['arch']}", str(expect.get("port", 8000))], argv
        return
    args = dict(zip(argv, argv[1:]))
    assert args.get("--arch") == expect["arch"]
    assert args.get("--workers") == str(expect["workers"])
    assert args.get("--backlog") == str(expect["backlog"])
    if expect.get("variant"):
        assert args.get("--variant") == expect["variant"]


def test_server_listens_on_its_port(expect, hosts):
    host = one(hosts, "server")
    port = int(expect.get("port", 8000))
    if impl_of(expect) == "image" and not host.exists("cat"):
        pytest.skip("impl: image without cat: its port is checked from the generators "
                    "(test_loadgen_gets_an_answer_from_the_server)")
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        result = host.run("cat %s", table)
        for line in result.stdout.splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                listening.append(int(fields[1].rsplit(":", 1)[1], 16))
    assert port in listening, f"listening ports: {sorted(set(listening))}"


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
    impl = impl_of(expect)
    for host in hosts[service]:
        # A server image's own processes are unknown here: its PID 1 (an init) passes its limit on.
        own = service == "server" and impl != "image"
        pids = [p["pid"] for p in server_processes(host, impl)] if own else [1]
        assert pids, f"no {service} process found"
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


def test_redis_answers_ping_from_server(expect, hosts):
    skip_for_image(expect, "how it reaches Redis is its own; what it serves is checked from a generator")
    host = one(hosts, "server")
    if impl_of(expect) == "python":
        out = host.check_output(
            "python3 -c %s", "import redis; print(redis.Redis(host='redis', port=6379, socket_timeout=5).ping())")
        assert out == "True"
        return
    # The C servers take Redis as an address on their command line (no python3 in their image):
    # that address is Redis', and Redis answers there.
    redis_ip = server_processes(host, "zerohttpd")[0]["argv"][2]
    assert redis_ip in host.check_output("getent ahostsv4 redis").split()
    pong = host.check_output("timeout 5 bash -c %s",
                             f"exec 3<>/dev/tcp/{redis_ip}/6379; printf 'PING\\r\\n' >&3; head -c 5 <&3")
    assert pong == "+PONG", pong


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


def test_loadgen_gets_an_answer_from_the_server(expect, hosts):
    """Any HTTP answer to GET of the server's ready path, on its port: what says a run may start."""
    probe = ("import http.client, sys; c = http.client.HTTPConnection('server', int(sys.argv[1]), timeout=5); "
             "c.request('GET', sys.argv[2]); print(c.getresponse().status)")
    for host in hosts["loadgen"]:
        status = host.check_output("python3 -I -S -c %s %s %s", probe, str(expect.get("port", 8000)),
                                   expect.get("ready_path", "/"))
        assert status.isdigit(), f"server answered {status!r}"


def test_server_serves_what_the_scenario_says(expect, hosts):
    """The checks a run starts with (loadgen/verify.py), from a generator, for the request kinds
    the server is held to: last, as its guestbook POST leaves a remark in Redis."""
    kinds = expect.get("served") or ["guestbook_get", "guestbook_post", "static"]
    script = ("import json, sys; from loadgen.verify import verify_server; "
              "print(json.dumps(verify_server(sys.argv[1], sys.argv[2], kinds=sys.argv[3].split(','))))")
    url = f"http://server:{expect.get('port', 8000)}"
    out = one(hosts, "loadgen").check_output("cd /app && python3 -c %s %s %s %s", script, url,
                                             expect.get("static_path", "/index.html"), ",".join(kinds))
    answer = json.loads(out)
    failed = [f"{c['name']}: {c['detail']}" for c in answer["checks"] if not c["passed"]]
    assert answer["passed"], "; ".join(failed)
