"""Debian's wrk, driven by the lab's Lua script, against a loopback server that records what
each connection sent: no connection is opened and closed unused (wrk's own resolve does that
once per address, and the article's C poll and epoll servers loop forever on such a
connection; see loadgen/lua.py)."""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading

import pytest

from loadgen.lua import REPORT_ENV, render_script
from loadgen.spec import LoadSpec

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(shutil.which("wrk") is None, reason="Debian's wrk is not installed")]

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class RecordingServer:
    """Answers every request on a connection; records the bytes each connection sent."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sent: list[int] = []
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket):
        total, pending = 0, b""
        with conn:
            conn.settimeout(10)
            try:
                while data := conn.recv(65536):
                    total += len(data)
                    pending += data
                    while b"\r\n\r\n" in pending:
                        _, pending = pending.split(b"\r\n\r\n", 1)
                        conn.sendall(ANSWER)
            except OSError:
                pass
        with self.lock:
            self.sent.append(total)

    def close(self) -> list[int]:
        self.sock.close()
        for t in self.threads:
            t.join(timeout=10)
        with self.lock:
            return list(self.sent)


def run_wrk(tmp_path, script: bool) -> list[int]:
    server = RecordingServer()
    argv = ["wrk", "-t1", "-c2", "-d1s", f"http://127.0.0.1:{server.port}/guestbook"]
    env = None
    if script:
        spec = LoadSpec(tool="wrk", url=f"http://127.0.0.1:{server.port}", connections=2, threads=1,
                        duration_s=1)
        path = tmp_path / "mix.lua"
        path.write_text(render_script(spec))
        argv[1:1] = ["-s", str(path)]
        env = {"PATH": "/usr/bin:/bin", REPORT_ENV: str(tmp_path / "report.json")}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    finally:
        sent = server.close()
    assert done.returncode == 0, done.stderr
    return sent


def test_wrk_with_the_labs_script_opens_no_unused_connection(tmp_path):
    sent = run_wrk(tmp_path, script=True)
    assert sent and all(n > 0 for n in sent), f"bytes sent per connection: {sent}"
    assert (tmp_path / "report.json").exists()


def test_plain_wrk_does_open_one(tmp_path):
    """The behaviour the script replaces: the test above would see it."""
    sent = run_wrk(tmp_path, script=False)
    assert 0 in sent, f"bytes sent per connection: {sent}"
