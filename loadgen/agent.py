"""The generator agent: an HTTP JSON service that runs one load run at a time.

The controller reaches every generator through this protocol (docs/architecture.md), so the
same code works in a local container or on another machine.

It is not an open relay: with ZL_AGENT_TOKEN set, every request but GET /health needs
`Authorization: Bearer <token>`; it loads only ZL_AGENT_TARGET (the server's base URL) and
reads only ZL_AGENT_REDIS (host:port), or loopback addresses when those are not set.
"""
import hmac
import http.client
import ipaddress
import json
import os
import platform
import signal
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import redis

from .spec import LoadSpec, SpecError
from .tools import STOP_GRACE_S, detect_tools, no_measures, run_load
from .verify import verify_server

KEEP_RUNS = 20  # finished runs kept for the controller to read
MAX_BODY = 1 << 20  # bytes; a LoadSpec is a few hundred
PROBE_TIMEOUT_S = 1.0
TOKEN_ENV, TARGET_ENV, REDIS_ENV = "ZL_AGENT_TOKEN", "ZL_AGENT_TARGET", "ZL_AGENT_REDIS"
# For tests only: start the tool this many seconds after the common start time, to make a
# start skew between generators on purpose.
START_DELAY_ENV = "ZL_AGENT_TEST_START_DELAY_S"
DEFAULT_REDIS = ("127.0.0.1", 6379)


class Forbidden(Exception):
    """An address this agent may not load or read."""


def is_loopback(host):
    """localhost, 127.0.0.0/8 or ::1, written as such (names are not resolved)."""
    host = (host or "").strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_origin(url):
    """(scheme, host, port) of an http URL, host lower-cased, port defaulted; ValueError if
    it has no host."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r} is not an http://host[:port] URL")
    return parts.scheme, parts.hostname.lower(), parts.port or 80


def parse_host_port(value, default_port=6379):
    """'redis:6379' or '[::1]:6379' -> (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":") or default_port
    else:
        host, sep, port = value.rpartition(":")
        if not sep:
            host, port = value, default_port
    if not host:
        raise ValueError(f"{value!r} is not host:port")
    try:
        port = int(port)
    except ValueError:
        raise ValueError(f"{value!r}: the port is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"{value!r}: the port is out of range")
    return host.lower(), port


@dataclass(frozen=True)
class AgentConfig:
    """What the agent may do: token (None: no authentication), target (the server's base URL
    it may load and probe; None: loopback only), redis ((host, port) it may read and flush;
    None: loopback only for reading, nothing to flush); test_start_delay_s (tests only: the
    tool starts this long after the asked start time)."""
    token: str | None = None
    target: str | None = None
    redis: tuple | None = None
    test_start_delay_s: float = 0.0

    @classmethod
    def from_env(cls, environ=None):
        """From ZL_AGENT_TOKEN, ZL_AGENT_TARGET, ZL_AGENT_REDIS and (tests only)
        ZL_AGENT_TEST_START_DELAY_S (empty counts as unset); ValueError naming the variable
        when one is malformed."""
        env = os.environ if environ is None else environ
        token = env.get(TOKEN_ENV) or None
        target = (env.get(TARGET_ENV) or "").strip() or None
        redis_addr = (env.get(REDIS_ENV) or "").strip() or None
        if target is not None:
            try:
                url_origin(target)
            except ValueError as exc:
                raise ValueError(f"{TARGET_ENV}: {exc}") from None
            if urlsplit(target).path not in ("", "/"):
                raise ValueError(f"{TARGET_ENV}: {target!r} must be a base URL, without a path")
            target = target.rstrip("/")
        if redis_addr is not None:
            try:
                redis_addr = parse_host_port(redis_addr)
            except ValueError as exc:
                raise ValueError(f"{REDIS_ENV}: {exc}") from None
        delay = (env.get(START_DELAY_ENV) or "").strip() or "0"
        try:
            delay = float(delay)
        except ValueError:
            raise ValueError(f"{START_DELAY_ENV}: {delay!r} is not a number of seconds") from None
        if not 0 <= delay <= 3600:
            raise ValueError(f"{START_DELAY_ENV}: {delay!r} must be from 0 to 3600 seconds")
        return cls(token=token, target=target, redis=redis_addr, test_start_delay_s=delay)

    def check_url(self, url):
        """Forbidden unless url is the target (same scheme, host and port), or, with no target
        configured, a loopback address."""
        try:
            origin = url_origin(url)
        except ValueError as exc:
            raise Forbidden(str(exc)) from None
        if self.target is not None:
            if origin != url_origin(self.target):
                raise Forbidden(f"{url} is not this agent's target; it may load only "
                                f"{self.target} ({TARGET_ENV})")
        elif not is_loopback(origin[1]):
            raise Forbidden(f"{url} is not a loopback address; with {TARGET_ENV} unset this "
                            f"agent may load only 127.0.0.0/8, ::1 or localhost")

    def redis_address(self, host=None, port=None):
        """(host, port) of the Redis to read: the configured one (host and port, when given,
        must match it), or with none configured the given (default 127.0.0.1:6379) loopback
        one; Forbidden otherwise."""
        if self.redis is not None:
            want_host, want_port = self.redis
            if (host is not None and host.lower() != want_host) or \
                    (port is not None and int(port) != want_port):
                raise Forbidden(f"Redis {host or want_host}:{port or want_port} is not this "
                                f"agent's; it may read only {want_host}:{want_port} ({REDIS_ENV})")
            return self.redis
        address = (host or DEFAULT_REDIS[0], int(port) if port is not None else DEFAULT_REDIS[1])
        if not is_loopback(address[0]):
            raise Forbidden(f"Redis {address[0]}:{address[1]} is not a loopback address; with "
                            f"{REDIS_ENV} unset this agent may read only 127.0.0.0/8, ::1 or "
                            f"localhost")
        return address

    def authorized(self, header):
        """Whether an Authorization header value carries the token (constant-time compare)."""
        if self.token is None:
            return True
        scheme, _, presented = (header or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode(), self.token.encode())


class Busy(Exception):
    pass


class Run:
    def __init__(self, run_id, spec, start_at, start_delay_s=0.0):
        self.run_id, self.spec, self.start_at = run_id, spec, start_at
        self.start_delay_s = start_delay_s  # tests only (ZL_AGENT_TEST_START_DELAY_S)
        self.state, self.error, self.outcome = "waiting", None, None
        self.started = self.finished = None
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._main, name=f"run-{run_id}", daemon=True)

    def _main(self):
        try:
            # an interruptible wait for the common start time
            due = self.start_at + self.start_delay_s
            if self.stop_event.wait(max(0.0, due - time.time())):
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
        report = {"run_id": self.run_id, "state": self.state,
                  "elapsed_s": round(end - self.started, 3) if self.started else 0.0,
                  "start_at": self.start_at, "spec": self.spec.to_dict(),
                  "commands": self.outcome.commands if self.outcome else None,
                  "raw_output": self.outcome.raw_output if self.outcome else "",
                  "result": self.outcome.result if self.outcome else None,
                  "error": self.error}
        # what the generator measured of itself (loadgen.tools.measures_of), once the tool ended
        report.update(self.outcome.measures if self.outcome else no_measures())
        return report


class Agent:
    def __init__(self, config=None):
        self.config = config or AgentConfig()
        self.runs = {}
        self.lock = threading.Lock()

    def health(self):
        redis_addr = self.config.redis
        # kernel and wall clock: what a controller on another machine cannot read itself (its
        # clock offset to this node is measured from `time` and the request's round trip).
        return {"ok": True, "hostname": socket.gethostname(), "tools": detect_tools(),
                "cpus": os.cpu_count(), "kernel": platform.release(), "time": time.time(),
                "busy": any(r.active for r in self.runs.values()),
                "target": self.config.target,
                "redis": f"{redis_addr[0]}:{redis_addr[1]}" if redis_addr else None}

    def start(self, run_id, spec, start_at):
        with self.lock:
            if run_id in self.runs:
                raise Busy(f"run {run_id!r} exists already")
            active = [r.run_id for r in self.runs.values() if r.active]
            if active:
                raise Busy(f"run {active[0]!r} is still {self.runs[active[0]].state}")
            run = self.runs[run_id] = Run(run_id, spec, start_at,
                                          self.config.test_start_delay_s)
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


def _redis(host, port):
    return redis.Redis(host=host, port=port, socket_timeout=5, socket_connect_timeout=5)


def read_counters(host, port):
    r = _redis(host, port)
    try:
        pipe = r.pipeline(transaction=False)
        pipe.get("visitor_count")
        pipe.llen("guestbook_remarks")
        count, remarks = pipe.execute()
        return {"visitor_count": int(count or 0), "remarks": int(remarks)}
    finally:
        r.close()


def flush_redis(host, port):
    """FLUSHALL, with the key counts before and after (DBSIZE)."""
    r = _redis(host, port)
    try:
        before = r.dbsize()
        r.flushall()
        return {"keys_before": int(before), "keys_after": int(r.dbsize())}
    finally:
        r.close()


def redis_server_info(host, port):
    """What Redis says of itself and of the machine it runs on (INFO server): across machines,
    the kernel of the server's node, where no agent runs."""
    r = _redis(host, port)
    try:
        info = r.info("server")
        return {"os": info.get("os"), "redis_version": info.get("redis_version")}
    finally:
        r.close()


def probe(url, timeout=PROBE_TIMEOUT_S):
    """One GET of url's path (/ when it has none): {"ok", "status", "detail"}; ok when any HTTP
    status line came back."""
    _, host, port = url_origin(url)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    shown = f"{parts.scheme}://{parts.netloc}{path}"
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        status = conn.getresponse().status
        return {"ok": True, "status": status,
                "detail": f"GET {shown} answered {status} in "
                          f"{(time.monotonic() - t0) * 1000:.0f} ms"}
    except (OSError, http.client.HTTPException) as exc:
        return {"ok": False, "status": None,
                "detail": f"GET {shown}: {type(exc).__name__}: {exc}"}
    finally:
        conn.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    agent = None  # set by make_server

    def log_message(self, fmt, *args):
        pass  # one line per poll would drown the agent's own output

    def _send(self, code, payload, headers=()):
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self):
        """The request's body bytes; ValueError for a bad or too large Content-Length (the
        connection is then closed, its remaining bytes being unknown)."""
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise ValueError("Content-Length is not a number") from None
        if not 0 <= n <= MAX_BODY:
            self.close_connection = True
            raise ValueError(f"a body of {n} bytes (at most {MAX_BODY})")
        return self.rfile.read(n) if n else b""

    def _body(self):
        data = json.loads(self._read_body() or b"{}")
        if not isinstance(data, dict):
            raise ValueError("the request body must be a JSON object")
        return data

    def _authorized(self):
        """True when the request may go on; otherwise a 401 has been sent (and any body read,
        so that the connection stays usable)."""
        if self.agent.config.authorized(self.headers.get("Authorization")):
            return True
        try:
            self._read_body()
        except ValueError:
            pass
        self._send(401, {"error": "this agent needs its token: Authorization: Bearer "
                                  f"<{TOKEN_ENV}> missing or wrong"},
                   headers=[("WWW-Authenticate", 'Bearer realm="loadgen agent"')])
        return False

    def _forbidden(self, exc, field=None):
        payload = {"error": str(exc)}
        if field:
            payload["field"] = field
        self._send(403, payload)

    def _run_id(self):
        parts = urlsplit(self.path).path.strip("/").split("/")
        return parts[1] if len(parts) == 2 and parts[0] == "runs" else None

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/health":
            if self.headers.get("Authorization") is None and self.agent.config.token:
                # the container's health check: that the agent answers, and nothing else
                return self._send(200, {"ok": True})
            if not self._authorized():
                return
            return self._send(200, self.agent.health())
        if not self._authorized():
            return
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/counters":
            return self._counters(q)
        if url.path == "/redis/info":
            return self._redis_info()
        if url.path == "/probe":
            try:
                target = q.get("url") or self.agent.config.target
                if target is None:
                    raise Forbidden(f"no target to probe: {TARGET_ENV} is not set and no url "
                                    f"was given")
                self.agent.config.check_url(target)
            except Forbidden as exc:
                return self._forbidden(exc, "url")
            return self._send(200, probe(target))
        run_id = self._run_id()
        if run_id is not None:
            run = self.agent.runs.get(run_id)
            if run is None:
                return self._send(404, {"error": f"no run {run_id!r}"})
            return self._send(200, run.report())
        self._send(404, {"error": f"no such resource {url.path}"})

    def _counters(self, q):
        try:
            port = int(q["redis_port"]) if "redis_port" in q else None
        except ValueError:
            return self._send(400, {"error": f"redis_port: {q['redis_port']!r} is not a number",
                                    "field": "redis_port"})
        try:
            host, port = self.agent.config.redis_address(q.get("redis_host"), port)
        except Forbidden as exc:
            return self._forbidden(exc, "redis_host")
        try:
            return self._send(200, read_counters(host, port))
        except redis.RedisError as exc:
            return self._send(502, {"error": f"redis {host}:{port}: {exc}"})

    def do_POST(self):
        if not self._authorized():
            return
        path = urlsplit(self.path).path
        try:
            body = self._body()
        except ValueError as exc:
            return self._send(400, {"error": f"bad JSON body: {exc}"})
        if path == "/verify":
            if "url" not in body:
                return self._send(400, {"error": "url: missing", "field": "url"})
            try:
                self.agent.config.check_url(body["url"])
            except Forbidden as exc:
                return self._forbidden(exc, "url")
            kinds = body.get("kinds")
            if kinds is not None and (not isinstance(kinds, list) or not kinds
                                      or not all(isinstance(k, str) for k in kinds)):
                return self._send(400, {"error": "kinds: a non-empty list of request kinds",
                                        "field": "kinds"})
            try:
                answer = verify_server(body["url"], body.get("static_path", "/index.html"), kinds=kinds)
            except ValueError as exc:
                return self._send(400, {"error": f"kinds: {exc}", "field": "kinds"})
            return self._send(200, answer)
        if path == "/runs":
            return self._start(body)
        if path == "/redis/flush":
            return self._flush()
        self._send(404, {"error": f"no such resource {path}"})

    def _redis_info(self):
        if self.agent.config.redis is None:
            return self._forbidden(f"no Redis to read: {REDIS_ENV} is not set")
        host, port = self.agent.config.redis
        try:
            return self._send(200, redis_server_info(host, port))
        except redis.RedisError as exc:
            return self._send(502, {"error": f"redis {host}:{port}: {exc}"})

    def _flush(self):
        if self.agent.config.redis is None:
            return self._forbidden(f"no Redis to flush: {REDIS_ENV} is not set")
        host, port = self.agent.config.redis
        try:
            return self._send(200, flush_redis(host, port))
        except redis.RedisError as exc:
            return self._send(502, {"error": f"redis {host}:{port}: {exc}"})

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
            self.agent.config.check_url(spec.url)
        except Forbidden as exc:
            return self._forbidden(exc, "url")
        try:
            self.agent.start(run_id, spec, start_at)
        except Busy as exc:
            return self._send(409, {"error": str(exc)})
        self._send(202, {"run_id": run_id})

    def do_DELETE(self):
        if not self._authorized():
            return
        run_id = self._run_id()
        if run_id is None or run_id not in self.agent.runs:
            return self._send(404, {"error": f"no run {run_id!r}"})
        self._send(200, self.agent.stop(run_id).report())


def make_server(host="0.0.0.0", port=9100, config=None):
    """The agent's HTTP server; config defaults to AgentConfig.from_env()."""
    config = AgentConfig.from_env() if config is None else config
    handler = type("AgentHandler", (Handler,), {"agent": Agent(config)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve(host="0.0.0.0", port=9100, config=None):
    """Serve until SIGTERM or SIGINT, then stop any run (its tool gets SIGINT) and exit."""
    server = make_server(host, port, config)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    loop = threading.Thread(target=server.serve_forever, daemon=True)
    loop.start()
    bound_host, bound_port = server.server_address[:2]
    config = server.RequestHandlerClass.agent.config
    redis_addr = f"{config.redis[0]}:{config.redis[1]}" if config.redis else "loopback only"
    delay = (f", tools start {config.test_start_delay_s:g} s late ({START_DELAY_ENV}, "
             f"for tests only)" if config.test_start_delay_s else "")
    print(f"agent listening on {bound_host}:{bound_port} "
          f"(token {'required' if config.token else 'not set'}, "
          f"target {config.target or 'loopback only'}, redis {redis_addr}{delay})", flush=True)
    while not done.wait(0.5):
        pass
    server.RequestHandlerClass.agent.stop_all()
    server.shutdown()
    server.server_close()
