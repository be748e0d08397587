"""Requests/second of each server architecture on this host (`make bench-server`), in both
variants (faithful: the article's per-request work; lean: trimmed; see docs/architecture.md).

For each architecture and variant: a fresh redis-server and the server pinned to one CPU, Debian's
wrk pinned to another, `GET /guestbook` with a new connection per request (the server speaks
HTTP/1.0 and closes), at each connection count. The two variants of an architecture run one after
the other, so that drift of the host touches both alike. Prints a table, the variants side by
side beside the article's C servers, and writes results/bench-server.json with wrk's raw output.

The C figures are those of ../shared/README.md, measured once on another day. With
`--c-servers DIR` (`make bench-server C_SERVERS=DIR`), DIR being a checkout of the article's
ZeroHTTPd built with its own Makefile (binaries named after the architectures, next to its
templates/), each C server present is measured in the same run, the same way, and the ratios
are taken against those same-run figures. The C servers only talk to Redis on port 6379, which
must then be free.

    .venv/bin/python bench/bench_server.py [--archs poll,epoll] [--variants faithful,lean]
        [--connections 20,200] [--duration 10] [--workers 100] [--server-arg=--backlog=128]
        [--c-servers DIR]
"""
import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lab.report.baseline import load_article_table  # noqa: E402
from lab.report.score import kendall_tau_b  # noqa: E402
from loadgen.lua import NO_TRIAL_CONNECTION  # noqa: E402
from loadgen.parse import ERROR_KINDS, ParseError, parse_wrk  # noqa: E402
from server.config import ARCHITECTURES  # noqa: E402
from server.variant import VARIANTS  # noqa: E402

PYTHON = sys.executable
# The article's C servers as ../shared/README.md reports them (same kind of machine, same setup,
# one run each on another day); None: stalls.
C_SERVERS = {
    "forking": {20: 637, 200: 578, 1000: 518},
    "preforked": {20: 1721, 200: 1864, 1000: 1951},
    "threaded": {20: 1042, 200: None, 1000: None},
    "prethreaded": {20: 1405, 200: 1378, 1000: 1328},
    "iterative": {20: None, 200: None, 1000: None},
    "poll": {20: None, 200: None, 1000: None},
    "epoll": {20: None, 200: None, 1000: None},
}
C_REDIS_PORT = 6379  # REDIS_SERVER_PORT, fixed in the C sources
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def port_is_free(port):
    with socket.socket() as s:
        # as redis-server binds: connections in TIME_WAIT on the port do not make it taken
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_redis(workdir, cpu, port=None):
    port = port or free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", str(cpu), "redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", workdir, "--maxclients", "10000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError("redis-server did not start")


def start_server(arch, variant, redis_port, cpu, workers, extra):
    cmd = ["taskset", "-c", str(cpu), PYTHON, "-m", "server", "--arch", arch, "--variant", variant,
           "--host", "127.0.0.1", "--port", "0", "--redis-port", str(redis_port), *extra]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True, text=True)
    deadline = time.monotonic() + START_TIMEOUT
    line = ""
    while time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline()
        match = re.match(r"listening on [\d.]+:(\d+) arch=", line)
        if match:
            return proc, int(match.group(1))
    stop(proc)
    raise RuntimeError(f"{arch} server did not start: {line!r}")


def start_c_server(binary, cpu):
    """One of the article's C servers: `BINARY PORT REDIS_IP`, run from its checkout (it opens
    templates/ and public/ relative to the working directory). It prints a line per request,
    which goes nowhere."""
    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", str(cpu), binary, str(port), "127.0.0.1"],
                            cwd=os.path.dirname(binary), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            # A request, read to its end: a connection closed before its request sends the poll
            # and epoll servers into an endless loop, one closed before its answer kills them.
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                conn.sendall(b"GET /guestbook HTTP/1.0\r\n\r\n")
                answer = b""
                while chunk := conn.recv(65536):
                    answer += chunk
                if answer.startswith(b"HTTP/"):
                    return proc, port
        except OSError:
            pass
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"{binary} did not answer on port {port}")


def c_binaries(directory, archs):
    """The C server of each architecture found in `directory` (an executable named after it)."""
    found = {}
    for arch in archs:
        binary = os.path.join(directory, arch)
        if os.path.isfile(binary) and os.access(binary, os.X_OK):
            found[arch] = binary
    return found


def stop(proc):
    """SIGTERM the process group, SIGKILL it if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def redis_get(port, key):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET %s\r\n" % key)
        data = s.recv(1024)
    lines = data.split(b"\r\n")
    return int(lines[1]) if lines[0] != b"$-1" else 0


def run_wrk(port, connections, duration, threads, timeout, cpu, script):
    cmd = ["taskset", "-c", str(cpu), "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s",
           f"--timeout={timeout}s", "-s", script, f"http://127.0.0.1:{port}/guestbook"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + timeout + 30)
        return cmd, out.stdout + out.stderr
    except subprocess.TimeoutExpired as expired:
        # TimeoutExpired.stdout is bytes even with text=True
        partial = (expired.stdout or b"").decode("utf-8", "replace")
        return cmd, f"wrk did not finish in time (stalled)\n{partial}"


def wrk_figures(text):
    """The figures the bench records of wrk's output; a stall when it holds no report."""
    try:
        result = parse_wrk(text, "wrk")
    except ParseError:
        return {"requests_per_sec": None, "requests": 0, "errors": dict.fromkeys(ERROR_KINDS, 0),
                "non_2xx_3xx": 0}
    # loadgen reads a "-nan" rate as 0.0; the bench records it as a stall (None)
    nan_rate = re.search(r"^Requests/sec:\s+-?nan", text, re.M)
    return {"requests_per_sec": None if nan_rate else result["requests_per_sec"],
            "requests": result["requests"], "errors": result["errors"],
            "non_2xx_3xx": result["non_2xx_3xx"]}


def _record(arch, implementation, variant, connections, duration_s, command, figures, raw_output):
    """One run as results/bench-server.json records it (`variant` None for a C server)."""
    return {"arch": arch, "implementation": implementation, "variant": variant,
            "connections": connections, "duration_s": duration_s, "command": command, **figures,
            "raw_output": raw_output}


def bench_arch(arch, args, console, variant=None, c_binary=None):
    """wrk against one architecture at each connection count: the Python server in `variant`,
    or with `c_binary` the article's C server of that architecture."""
    runs = []
    implementation = "python" if c_binary is None else "c"
    workdir = tempfile.mkdtemp(prefix="zl-bench-")
    redis = server = None
    try:
        if c_binary is None:
            redis, redis_port = start_redis(workdir, args.server_cpu)
            server, port = start_server(arch, variant, redis_port, args.server_cpu, args.workers,
                                        args.server_arg)
        else:
            redis, redis_port = start_redis(workdir, args.server_cpu, C_REDIS_PORT)
            server, port = start_c_server(c_binary, args.server_cpu)
        label = f"{arch} {variant}" if c_binary is None else f"{arch} (C)"
        # The lab's: no connection opened and closed unused (the C poll and epoll servers would
        # loop forever on it; loadgen/lua.py).
        script = os.path.join(workdir, "resolve.lua")
        with open(script, "w") as f:
            f.write(NO_TRIAL_CONNECTION)
        for i, connections in enumerate(args.connections):
            if c_binary is not None and i > 0:
                # SIGPIPE's default kills some of them when wrk closes its connections at the
                # end of a level: each level gets a fresh process, as in the lab.
                stop(server)
                server, port = start_c_server(c_binary, args.server_cpu)
            before = redis_get(redis_port, b"visitor_count")
            cmd, raw = run_wrk(port, connections, args.duration, args.threads, args.timeout,
                               args.wrk_cpu, script)
            parsed = wrk_figures(raw)
            # Redis counts every answered guestbook GET: a check on wrk's count.
            parsed["visitor_count_delta"] = redis_get(redis_port, b"visitor_count") - before
            parsed["server_alive"] = server.poll() is None
            runs.append(_record(arch, implementation, variant, connections, args.duration,
                                " ".join(cmd), parsed, raw))
            rps = parsed["requests_per_sec"]
            console.print(f"  {label:20} c={connections:<5} "
                          f"{'stalled' if rps is None else f'{rps:,.0f} req/s'}  "
                          f"errors={parsed['errors']} non-2xx={parsed['non_2xx_3xx']}")
            if not parsed["server_alive"]:
                # Counted as a stall at the remaining levels: the server did not survive.
                for rest in args.connections[i + 1:]:
                    not_run = {"requests_per_sec": None, "requests": 0, "errors": {},
                               "non_2xx_3xx": 0, "visitor_count_delta": 0, "server_alive": False}
                    runs.append(_record(arch, implementation, variant, rest, 0, "", not_run,
                                        "not run: the server had exited"))
                    console.print(f"  {label:20} c={rest:<5} not run: the server had exited")
                break
            time.sleep(args.pause)
    finally:
        if server is not None:
            stop(server)
        if redis is not None:
            stop(redis)
        shutil.rmtree(workdir, ignore_errors=True)
    return runs


def c_reference(runs, arch, connections):
    """The C figure to compare with: this run's measurement of the C server when there is one
    (None when it stalled), else ../shared/README.md's; and where it came from."""
    for run in runs:
        if run["implementation"] == "c" and run["arch"] == arch and run["connections"] == connections:
            stalled = run["requests_per_sec"] is None or run["requests"] == 0
            return (None if stalled else run["requests_per_sec"]), "measured"
    return C_SERVERS.get(arch, {}).get(connections), "shared/README.md"


def print_table(runs, connections, console):
    """Per connection count: each variant's requests/second side by side, the C server's, and
    each variant's ratio to it."""
    measured = any(r["implementation"] == "c" for r in runs)
    python = [r for r in runs if r["implementation"] == "python"]
    variants = list(dict.fromkeys(r["variant"] for r in python))
    table = Table(title="GET /guestbook, requests/second: Python (" + ", ".join(variants)
                  + ") | C server | ratio",
                  caption="C: measured in this run, * from shared/README.md" if measured
                  else "C: shared/README.md (measured on another day)")
    table.add_column("architecture")
    for c in connections:
        for variant in variants:
            table.add_column(f"c={c}\n{variant}", justify="right")
        table.add_column("C", justify="right", style="dim")
        for variant in variants:
            table.add_column(f"x C\n{variant}", justify="right")
    by_key = {(r["arch"], r["variant"], r["connections"]): r for r in python}
    for arch in dict.fromkeys(r["arch"] for r in python):
        cells = [arch]
        for c in connections:
            c_rps, source = c_reference(runs, arch, c)
            ratios = []
            for variant in variants:
                run = by_key.get((arch, variant, c))
                rps = run and run["requests_per_sec"]
                cells.append("-" if run is None else "stalled" if rps is None else f"{rps:,.0f}")
                ratios.append(f"{rps / c_rps:.2f}" if rps and c_rps else "")
            c_text = "stalls" if c_rps is None else f"{c_rps:,.0f}"
            cells.append(c_text + ("" if source == "measured" or not measured else "*"))
            cells.extend(ratios)
        table.add_row(*cells)
    console.print(table)


def series_of(runs, implementation, variant):
    """requests/second per (arch, connections) of one implementation (variant None: C); 0 for a
    stall or a level not run after the server exited, so that it ranks last."""
    return {(r["arch"], r["connections"]): r["requests_per_sec"] or 0.0 for r in runs
            if r["implementation"] == implementation and r["variant"] == variant}


def rank_agreement(runs, connections):
    """Kendall's tau-b per connection count between each measured server set and the article's
    table (and the faithful Python servers against the same run's C servers), over the
    architectures both have a figure for. Rows: (label, {connections: (tau, n archs)})."""
    table = load_article_table()
    sets = [(f"Python {v}", series_of(runs, "python", v))
            for v in dict.fromkeys(r["variant"] for r in runs if r["implementation"] == "python")]
    if any(r["implementation"] == "c" for r in runs):
        sets.append(("C servers (this run)", series_of(runs, "c", None)))
    article = {(a, c): table.number(a, c) for a in table.archs for c in connections
               if table.number(a, c) is not None}
    pairs = [(f"{label} vs article", s, article) for label, s in sets]
    faithful = dict(sets).get("Python faithful")
    c_run = dict(sets).get("C servers (this run)")
    if faithful and c_run:
        pairs.append(("Python faithful vs C servers", faithful, c_run))
    rows = []
    for label, ours, theirs in pairs:
        per_level = {}
        for c in connections:
            archs = [a for (a, level) in ours if level == c and (a, c) in theirs]
            tau = kendall_tau_b([ours[(a, c)] for a in archs], [theirs[(a, c)] for a in archs])
            per_level[c] = (tau, len(archs))
        rows.append((label, per_level))
    return rows


def print_rank_agreement(rows, connections, console):
    table = Table(title="Rank agreement, Kendall's tau-b over the architectures both have "
                        "(+1: same order, -1: reversed)",
                  caption="the article's table: lab/report/article_table.csv; n: architectures "
                          "compared; a level the article has no figures at has none")
    table.add_column("servers")
    for c in connections:
        table.add_column(f"c={c}", justify="right")
    for label, per_level in rows:
        table.add_row(label, *("-" if tau is None else f"{tau:+.2f} (n={n})"
                               for tau, n in (per_level[c] for c in connections)))
    console.print(table)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default=",".join(ARCHITECTURES))
    parser.add_argument("--variants", "--variant", dest="variants", default="faithful,lean",
                        help="server variants, run one after the other for each architecture, "
                             "printed side by side in this order (default: faithful,lean)")
    parser.add_argument("--connections", default="20,200,1000")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--timeout", type=int, default=10, help="wrk --timeout, seconds")
    parser.add_argument("--workers", type=int, default=None,
                        help="--workers for the server (default: the server's, 100)")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra server argument, e.g. --server-arg=--edge-triggered")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--wrk-cpu", type=int, default=1)
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between runs")
    parser.add_argument("--c-servers", metavar="DIR",
                        help="a built checkout of the article's ZeroHTTPd: measure its C servers "
                             "in this run too")
    parser.add_argument("--output", default=os.path.join(ROOT, "results", "bench-server.json"))
    args = parser.parse_args(argv)
    args.archs = [a for a in args.archs.split(",") if a]
    args.connections = [int(c) for c in args.connections.split(",") if c]
    unknown = set(args.archs) - set(ARCHITECTURES)
    if unknown:
        parser.error(f"unknown architectures: {', '.join(sorted(unknown))}")
    args.variants = list(dict.fromkeys(v for v in args.variants.split(",") if v))
    unknown = set(args.variants) - set(VARIANTS)
    if unknown or not args.variants:
        parser.error(f"--variants: one or more of {', '.join(VARIANTS)}, not "
                     f"{', '.join(sorted(unknown)) or 'none'}")
    for tool in ("wrk", "redis-server", "taskset"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")
    c_servers = {}
    if args.c_servers:
        if not os.path.isdir(args.c_servers):
            parser.error(f"--c-servers {args.c_servers}: no such folder")
        c_servers = c_binaries(os.path.abspath(args.c_servers), args.archs)
        if not c_servers:
            parser.error(f"--c-servers {args.c_servers}: no executable named after an architecture "
                         f"({', '.join(args.archs)}); build them with the checkout's Makefile")
        if not os.path.isfile(os.path.join(args.c_servers, "templates", "guestbook", "index.html")):
            parser.error(f"--c-servers {args.c_servers}: no templates/guestbook/index.html, which "
                         "the C servers read from their working directory")
        if not port_is_free(C_REDIS_PORT):
            parser.error(f"port {C_REDIS_PORT} is taken: the C servers only talk to Redis there")

    # Wide enough for the whole table when the output goes to a file or a pipe.
    console = Console(width=None if sys.stdout.isatty() else 150)
    nofile = raise_nofile()
    console.print(f"nofile {nofile}, server+redis on CPU {args.server_cpu}, wrk on CPU {args.wrk_cpu}, "
                  f"{args.duration}s per run, variants {', '.join(args.variants)}")
    runs = []
    started = time.time()
    for arch in args.archs:
        for variant in args.variants:
            runs.extend(bench_arch(arch, args, console, variant=variant))
        if arch in c_servers:
            runs.extend(bench_arch(arch, args, console, c_binary=c_servers[arch]))
    print_table(runs, args.connections, console)
    agreement = rank_agreement(runs, args.connections)
    print_rank_agreement(agreement, args.connections, console)

    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    result = {
        "started_at": started,
        "finished_at": time.time(),
        "argv": sys.argv,
        "variants": args.variants,
        "host": {"hostname": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
                 "python": platform.python_version(), "loadavg_at_end": os.getloadavg(),
                 "nofile": nofile},
        # The reference figures; runs with "implementation": "c" are this run's own measurements.
        "c_servers": {arch: {str(c): v for c, v in figures.items()} for arch, figures in C_SERVERS.items()},
        "c_servers_measured": c_servers,
        "rank_agreement": [{"servers": label, "levels": {str(c): {"tau_b": tau, "archs": n}
                                                         for c, (tau, n) in per_level.items()}}
                           for label, per_level in agreement],
        "runs": runs,
    }
    tmp = args.output + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, args.output)
    console.print(f"written {os.path.relpath(args.output, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
