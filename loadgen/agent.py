"""The generator agent: an HTTP JSON service that runs one load run at a time.

The controller reaches every generator through this protocol (docs/architecture.md), so the
same code works in a local container or on another machine.
"""
import json
import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import redis

from .spec import LoadSpec, SpecError
from .tools import STOP_GRACE_S, detect_tools, run_load
from .verify import verify_server

KEEP_RUNS = 20  # finished runs kept for the controller to read


class Busy(Exception):
    pass


class Run:
    def __init__(self, run_id, spec, start_at):
        self.run_id, self.spec, self.start_at = run_id, spec, start_at
        self.state, self.error, self.outcome = "waiting", None, None
        self.started = self.finished = None
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._main, name=f"run-{run_id}", daemon=True)

    def _main(self):
        try:
            # an interruptible wait for the common start time
            if self.stop_event.wait(max(0.0, self.start_at - time.time())):
                self.state, self.error = "stopped", "stopped before it started"
                return
            self.started, self.state = time.monotonic(), "running"
            self.outcome = run_load(self.spec, self.stop_event)
            self.error = self.outcome.error
            if self.outcome.stopped:
                self.state = "stopped"
            else:
                self.state = "done" if self.outcome.result and not self.error else "failed"
        except Exception as exc:  # the run thread must always leave a final state
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            self.finished = time.monotonic()

    @property
    def active(self):
        return self.state in ("waiting", "running")

    def report(self):
        end = self.finished or time.monotonic()
        return {"run_id": self.run_id, "state": self.state,
                "elapsed_s": round(end - self.started, 3) if self.started else 0.0,
                "start_at": self.start_at, "spec": self.spec.to_dict(),
                "commands": self.outcome.commands if self.outcome else None,
                "raw_output": self.outcome.raw_output if self.outcome else "",
                "result": self.outcome.result if self.outcome else None,
                "error": self.error}


class Agent:
    def __init__(self):
        self.runs = {}
        self.lock = threading.Lock()

    def health(self):
        return {"ok": True, "hostname": socket.gethostname(), "tools": detect_tools(),
                "cpus": os.cpu_count(),
                "busy": any(r.active for r in self.runs.values())}

    def start(self, run_id, spec, start_at):
        with self.lock:
            if run_id in self.runs:
                raise Busy(f"run {run_id!r} exists already")
            active = [r.run_id for r in self.runs.values() if r.active]
            if active:
                raise Busy(f"run {active[0]!r} is still {self.runs[active[0]].state}")
            run = self.runs[run_id] = Run(run_id, spec, start_at)
            for old in [r for r in self.runs.values() if not r.active][:-KEEP_RUNS]:
                del self.runs[old.run_id]
        run.thread.start()
        return run

    def stop(self, run_id, wait_s=STOP_GRACE_S + 5):
        run = self.runs[run_id]
        run.stop_event.set()
        run.thread.join(wait_s)
        return run

    def stop_all(self):
        for run in list(self.runs.values()):
            if run.active:
                self.stop(run.run_id)


def read_counters(host, port):
    r = redis.Redis(host=host, port=port, socket_timeout=5, socket_connect_timeout=5)
    try:
        pipe = r.pipeline(transaction=False)
        pipe.get("visitor_count")
        pipe.llen("guestbook_remarks")
        count, remarks = pipe.execute()
        return {"visitor_count": int(count or 0), "remarks": int(remarks)}
    finally:
        r.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    agent = None  # set by make_server

    def log_message(self, fmt, *args):
        pass  # one line per poll would drown the agent's own output

    def _send(self, code, payload):
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        data = json.loads(self.rfile.read(n) or b"{}")
        if not isinstance(data, dict):
            raise ValueError("the request body must be a JSON object")
        return data

    def _run_id(self):
        parts = urlsplit(self.path).path.strip("/").split("/")
        return parts[1] if len(parts) == 2 and parts[0] == "runs" else None

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/health":
            return self._send(200, self.agent.health())
        if url.path == "/counters":
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            try:
                return self._send(200, read_counters(q.get("redis_host", "127.0.0.1"),
                                                     int(q.get("redis_port", 6379))))
            except (redis.RedisError, ValueError) as exc:
                return self._send(502, {"error": f"redis: {exc}"})
        run_id = self._run_id()
        if run_id is not None:
            run = self.agent.runs.get(run_id)
            if run is None:
                return self._send(404, {"error": f"no run {run_id!r}"})
            return self._send(200, run.report())
        self._send(404, {"error": f"no such resource {url.path}"})

    def do_POST(self):
        path = urlsplit(self.path).path
        try:
            body = self._body()
        except ValueError as exc:
            return self._send(400, {"error": f"bad JSON body: {exc}"})
        if path == "/verify":
            if "url" not in body:
                return self._send(400, {"error": "url: missing"})
            return self._send(200, verify_server(body["url"], body.get("static_path", "/index.html")))
        if path == "/runs":
            return self._start(body)
        self._send(404, {"error": f"no such resource {path}"})

    def _start(self, body):
        run_id = body.get("run_id")
        if not isinstance(run_id, str) or not run_id or "/" in run_id:
            return self._send(400, {"error": "run_id: a non-empty string without '/' is required",
                                    "field": "run_id"})
        try:
            spec = LoadSpec.from_dict(body.get("spec"))
            start_at = float(body.get("start_at") or time.time())
        except SpecError as exc:
            return self._send(400, {"error": str(exc), "field": exc.field})
        except (TypeError, ValueError) as exc:
            return self._send(400, {"error": f"start_at: {exc}", "field": "start_at"})
        try:
            self.agent.start(run_id, spec, start_at)
        except Busy as exc:
            return self._send(409, {"error": str(exc)})
        self._send(202, {"run_id": run_id})

    def do_DELETE(self):
        run_id = self._run_id()
        if run_id is None or run_id not in self.agent.runs:
            return self._send(404, {"error": f"no run {run_id!r}"})
        self._send(200, self.agent.stop(run_id).report())


def make_server(host="0.0.0.0", port=9100):
    handler = type("AgentHandler", (Handler,), {"agent": Agent()})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve(host="0.0.0.0", port=9100):
    """Serve until SIGTERM or SIGINT, then stop any run (its tool gets SIGINT) and exit."""
    server = make_server(host, port)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    loop = threading.Thread(target=server.serve_forever, daemon=True)
    loop.start()
    bound_host, bound_port = server.server_address[:2]
    print(f"agent listening on {bound_host}:{bound_port}", flush=True)
    while not done.wait(0.5):
        pass
    server.RequestHandlerClass.agent.stop_all()
    server.shutdown()
    server.server_close()
