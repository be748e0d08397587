"""Fixtures for tests against real processes on 127.0.0.1: a throwaway redis-server and the
server in each architecture. Everything started here is stopped at teardown, even on failure."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARCHITECTURES = ("iterative", "forking", "preforked", "threaded", "prethreaded", "poll", "epoll")
START_TIMEOUT = 15.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_group(proc, timeout=5.0):
    """SIGTERM the process group, then SIGKILL whatever is left of it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class RedisServer:
    """redis-server on a free loopback port in a temporary folder, without persistence."""

    def __init__(self, workdir):
        self.workdir = str(workdir)
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except Exception:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.proc is not None:
            _stop_group(self.proc)
            self.proc = None

    def client(self):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)


@pytest.fixture
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


class ServerProcess:
    """`python -m server` in its own process group; its output is collected as it runs."""

    def __init__(self, arch, redis_port, **options):
        self.arch = arch
        cmd = [sys.executable, "-m", "server", "--arch", arch, "--host", "127.0.0.1",
               "--port", "0", "--redis-port", str(redis_port)]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                cmd.append(flag)
            elif value is not None and value is not False:
                cmd += [flag, str(value)]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.pid = self.proc.pid
        self.stdout_lines = []
        self.stderr_lines = []
        self._listening = threading.Event()
        self.port = None
        threading.Thread(target=self._collect, args=(self.proc.stdout, self.stdout_lines, True),
                         daemon=True).start()
        threading.Thread(target=self._collect, args=(self.proc.stderr, self.stderr_lines, False),
                         daemon=True).start()
        if not self._listening.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"{arch} server did not print its listening line: {self.output()}")

    def _collect(self, stream, lines, watch):
        for raw in stream:
            line = raw.decode(errors="replace")
            lines.append(line)
            match = watch and re.fullmatch(r"listening on 127\.0\.0\.1:(\d+) arch=(\w+)\n", line)
            if match:
                self.port = int(match.group(1))
                self._listening.set()

    @property
    def address(self):
        return ("127.0.0.1", self.port)

    def output(self):
        return "".join(self.stdout_lines) + "".join(self.stderr_lines)

    def stop(self):
        _stop_group(self.proc)


@pytest.fixture
def site_root(tmp_path):
    """A --root with the package's assets plus a sub-folder, a large file, and a symlink that
    points out of the public folder at a secret."""
    root = tmp_path / "site"
    shutil.copytree(os.path.join(ROOT, "server", "public"), root / "public")
    shutil.copytree(os.path.join(ROOT, "server", "templates"), root / "templates")
    (root / "public" / "docs").mkdir()
    (root / "public" / "docs" / "index.html").write_text("<p>docs index</p>\n")
    (root / "public" / "docs" / "notes.txt").write_text("plain notes\n")
    (root / "public" / "big.bin").write_bytes(os.urandom(1 << 20))
    (tmp_path / "secret.txt").write_text("TOP-SECRET\n")
    (root / "secret.txt").write_text("TOP-SECRET\n")
    os.symlink(tmp_path / "secret.txt", root / "public" / "leak.txt")
    os.symlink(tmp_path, root / "public" / "outside")
    return root


@pytest.fixture
def server_factory(redis_server, site_root):
    """Start servers with chosen options (all stopped at teardown)."""
    started = []

    def start(arch, **options):
        options.setdefault("root", site_root)
        options.setdefault("workers", 8)
        options.setdefault("backlog", 128)
        server = ServerProcess(arch, redis_server.port, **options)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(params=ARCHITECTURES)
def arch(request):
    return request.param


@pytest.fixture
def running_server(server_factory, arch):
    """The server in each of the seven architectures, with a 1 s read timeout."""
    return server_factory(arch, read_timeout=1)
