"""Real processes on 127.0.0.1 for the integration tests: a throwaway redis-server and the server
in one architecture, each in its own process group that stop_group ends as a whole.

A plain module (not conftest.py): the fixtures in conftest.py and the test modules import it with
`from procs import ...`; pytest puts this folder on sys.path (no __init__.py, default "prepend"
import mode), as it does for the test modules themselves."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from lab.scenario import ROOT

START_TIMEOUT = 15.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc, timeout=5.0):
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
            stop_group(self.proc)
            self.proc = None

    def client(self):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)


class ServerProcess:
    """`python -m server` in its own process group; its output is collected as it runs."""

    def __init__(self, arch, redis_port, **options):
        cmd = [sys.executable, "-m", "server", "--arch", arch, "--host", "127.0.0.1",
               "--port", "0", "--redis-port", str(redis_port)]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                cmd.append(flag)
            elif value is not None and value is not False:
                cmd += [flag, str(value)]
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
            match = watch and re.fullmatch(r"listening on 127\.0\.0\.1:(\d+) arch=(\w+) variant=(\w+)\n",
                                           line)
            if match:
                self.port = int(match.group(1))
                self._listening.set()

    @property
    def address(self):
        return ("127.0.0.1", self.port)

    def output(self):
        return "".join(self.stdout_lines) + "".join(self.stderr_lines)

    def stop(self):
        stop_group(self.proc)
