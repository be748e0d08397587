"""Requests/second of each server architecture on this host (`make bench-server`).

For each architecture: a fresh redis-server and the server pinned to one CPU, Debian's wrk pinned
to another, `GET /guestbook` with a new connection per request (the server speaks HTTP/1.0 and
closes), at each connection count. Prints a table beside the article's C servers measured the
same way (../shared/README.md) and writes results/bench-server.json with wrk's raw output.

    .venv/bin/python bench/bench_server.py [--archs poll,epoll] [--connections 20,200]
        [--duration 10] [--workers 100] [--server-arg=--backlog=128]
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
PYTHON = sys.executable
ARCHITECTURES = ("iterative", "forking", "preforked", "threaded", "prethreaded", "poll", "epoll")
# The article's C servers, same machine and setup (../shared/README.md); None: stalls.
C_SERVERS = {
    "forking": {20: 637, 200: 578, 1000: 518},
    "preforked": {20: 1721, 200: 1864, 1000: 1951},
    "threaded": {20: 1042, 200: None, 1000: None},
    "prethreaded": {20: 1405, 200: 1378, 1000: 1328},
    "iterative": {20: None, 200: None, 1000: None},
    "poll": {20: None, 200: None, 1000: None},
    "epoll": {20: None, 200: None, 1000: None},
}
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


def start_redis(workdir, cpu):
    port = free_port()
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


def start_server(arch, redis_port, cpu, workers, extra):
    cmd = ["taskset", "-c", str(cpu), PYTHON, "-m", "server", "--arch", arch, "--host", "127.0.0.1",
           "--port", "0", "--redis-port", str(redis_port), *extra]
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


def run_wrk(port, connections, duration, threads, timeout, cpu):
    cmd = ["taskset", "-c", str(cpu), "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s",
           f"--timeout={timeout}s", f"http://127.0.0.1:{port}/guestbook"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + timeout + 30)
        return cmd, out.stdout + out.stderr
    except subprocess.TimeoutExpired as expired:
        return cmd, f"wrk did not finish in time (stalled)\n{expired.stdout or ''}"


def parse_wrk(text):
    def number(pattern, default=0):
        match = re.search(pattern, text)
        return float(match.group(1)) if match else default

    errors = dict(zip(("connect", "read", "write", "timeout"),
                      map(int, re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                                         r"timeout (\d+)", text).groups())
                      if "Socket errors" in text else (0, 0, 0, 0)))
    return {
        "requests_per_sec": number(r"Requests/sec:\s+([\d.]+)", None),
        "requests": int(number(r"(\d+) requests in")),
        "errors": errors,
        "non_2xx_3xx": int(number(r"Non-2xx or 3xx responses: (\d+)")),
    }


def bench_arch(arch, args, console):
    runs = []
    workdir = tempfile.mkdtemp(prefix="zl-bench-")
    redis = server = None
    try:
        redis, redis_port = start_redis(workdir, args.server_cpu)
        server, port = start_server(arch, redis_port, args.server_cpu, args.workers, args.server_arg)
        for connections in args.connections:
            before = redis_get(redis_port, b"visitor_count")
            cmd, raw = run_wrk(port, connections, args.duration, args.threads, args.timeout,
                               args.wrk_cpu)
            parsed = parse_wrk(raw)
            # Redis counts every answered guestbook GET: a check on wrk's count.
            parsed["visitor_count_delta"] = redis_get(redis_port, b"visitor_count") - before
            parsed["server_alive"] = server.poll() is None
            run = {"arch": arch, "connections": connections, "duration_s": args.duration,
                   "command": " ".join(cmd), **parsed, "raw_output": raw}
            runs.append(run)
            rps = parsed["requests_per_sec"]
            console.print(f"  {arch:12} c={connections:<5} "
                          f"{'stalled' if rps is None else f'{rps:,.0f} req/s'}  "
                          f"errors={parsed['errors']} non-2xx={parsed['non_2xx_3xx']}")
            if not parsed["server_alive"]:
                break
            time.sleep(args.pause)
    finally:
        if server is not None:
            stop(server)
        if redis is not None:
            stop(redis)
        shutil.rmtree(workdir, ignore_errors=True)
    return runs


def print_table(runs, connections, console):
    table = Table(title="GET /guestbook, requests/second (Python | C server, same setup)")
    table.add_column("architecture")
    for c in connections:
        table.add_column(f"c={c}", justify="right")
        table.add_column("C", justify="right", style="dim")
        table.add_column("x C", justify="right")
    by_key = {(r["arch"], r["connections"]): r for r in runs}
    for arch in dict.fromkeys(r["arch"] for r in runs):
        cells = [arch]
        for c in connections:
            run = by_key.get((arch, c))
            rps = run and run["requests_per_sec"]
            c_rps = C_SERVERS.get(arch, {}).get(c)
            cells.append("-" if run is None else "stalled" if rps is None else f"{rps:,.0f}")
            cells.append("stalls" if c_rps is None else f"{c_rps:,}")
            cells.append(f"{rps / c_rps:.2f}" if rps and c_rps else "")
        table.add_row(*cells)
    console.print(table)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default=",".join(ARCHITECTURES))
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
    parser.add_argument("--output", default=os.path.join(ROOT, "results", "bench-server.json"))
    args = parser.parse_args(argv)
    args.archs = [a for a in args.archs.split(",") if a]
    args.connections = [int(c) for c in args.connections.split(",") if c]
    unknown = set(args.archs) - set(ARCHITECTURES)
    if unknown:
        parser.error(f"unknown architectures: {', '.join(sorted(unknown))}")
    for tool in ("wrk", "redis-server", "taskset"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")

    # Wide enough for the whole table when the output goes to a file or a pipe.
    console = Console(width=None if sys.stdout.isatty() else 150)
    nofile = raise_nofile()
    console.print(f"nofile {nofile}, server+redis on CPU {args.server_cpu}, wrk on CPU {args.wrk_cpu}, "
                  f"{args.duration}s per run")
    runs = []
    started = time.time()
    for arch in args.archs:
        runs.extend(bench_arch(arch, args, console))
    print_table(runs, args.connections, console)

    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    result = {
        "started_at": started,
        "finished_at": time.time(),
        "argv": sys.argv,
        "host": {"hostname": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
                 "python": platform.python_version(), "loadavg_at_end": os.getloadavg(),
                 "nofile": nofile},
        "c_servers": {arch: {str(c): v for c, v in figures.items()} for arch, figures in C_SERVERS.items()},
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
