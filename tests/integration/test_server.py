"""The same HTTP behaviour from every architecture in both variants, against a real redis-server
(fixtures in conftest.py): static files, the guestbook, bad input, concurrency with exact counts,
slow and resetting clients, graceful shutdown and a Redis restart; and the Redis traffic and file
reads of each variant, counted by Redis itself."""
import concurrent.futures
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from urllib.parse import urlencode

import pytest

from lab.scenario import ROOT
from server.variant import VARIANTS

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=VARIANTS)
def variant(request):
    return request.param


@pytest.fixture
def running_server(server_factory, arch, variant):
    """The server in each of the seven architectures and both variants, with a 1 s read
    timeout."""
    return server_factory(arch, read_timeout=1, variant=variant)


def exchange(address, request, timeout=10.0):
    """Send raw bytes, read until the server closes; (status, headers, body)."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return parse_response(b"".join(chunks))


def parse_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status, _ = lines[0].split(" ", 2)
    assert version == "HTTP/1.0"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert int(headers["content-length"]) == len(body)
    return int(status), headers, body


def get(server, path, timeout=10.0):
    return exchange(server.address, f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode(), timeout)


def post(server, fields, path="/guestbook", timeout=10.0):
    body = urlencode(fields).encode()
    return exchange(server.address, b"POST %s HTTP/1.1\r\nHost: test\r\n"
                    b"Content-Type: application/x-www-form-urlencoded\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body), timeout)


def proc_stats():
    """(pid, fields of /proc/<pid>/stat after the command name) of every process: fields[0] is
    the state, fields[1] the parent pid, fields[2] the process group."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        yield int(entry), stat.rsplit(")", 1)[1].split()


def children_of(pid):
    """Pids whose parent is `pid`, and whether any of them is a zombie."""
    return [(child, fields[0]) for child, fields in proc_stats() if int(fields[1]) == pid]


def group_members(pgid):
    return [member for member, fields in proc_stats() if int(fields[2]) == pgid and fields[0] != "Z"]


# Static files


def test_static_files_with_their_content_types(running_server):
    status, headers, body = get(running_server, "/index.html")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert b"/guestbook" in body
    assert headers["connection"] == "close"
    status, headers, body = get(running_server, "/zerolab.png")
    assert status == 200
    assert headers["content-type"] == "image/png"
    assert body.startswith(b"\x89PNG\r\n\x1a\n")
    status, headers, body = get(running_server, "/docs/notes.txt")
    assert (status, headers["content-type"], body) == (200, "text/plain; charset=utf-8", b"plain notes\n")
    status, headers, body = get(running_server, "/big.bin")
    assert (status, headers["content-type"], len(body)) == (200, "application/octet-stream", 1 << 20)


def test_index_for_root_and_folders(running_server):
    root = get(running_server, "/")
    assert root[0] == 200 and root[2] == get(running_server, "/index.html")[2]
    assert get(running_server, "/docs/")[2] == b"<p>docs index</p>\n"
    assert get(running_server, "/docs")[2] == b"<p>docs index</p>\n"
    assert get(running_server, "/?query=1")[0] == 200


def test_missing_file_is_404(running_server):
    status, headers, body = get(running_server, "/no-such-file.html")
    assert status == 404
    assert headers["content-type"].startswith("text/html")
    assert b"404" in body


ESCAPING_PATHS = [
    "/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/docs/../../secret.txt",
    "/docs/%2e%2e/%2e%2e/secret.txt", "/..%2fsecret.txt", "//etc/passwd", "/leak.txt",
    "/outside/secret.txt", "/%00", "http://test/../secret.txt",
]


def test_paths_that_escape_the_root_are_404(server_factory, variant):
    # One architecture is enough here: path handling is the shared core's (one server for all
    # paths: a server start costs more than all the requests).
    server = server_factory("epoll", variant=variant)
    for path in ESCAPING_PATHS:
        status, _, body = get(server, path)
        assert status in (400, 404), path
        assert b"TOP-SECRET" not in body and b"root:" not in body, path


def test_path_escapes_in_every_architecture(running_server):
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/leak.txt", "/outside/secret.txt"):
        status, _, body = get(running_server, path)
        assert status == 404 and b"TOP-SECRET" not in body, path


# The guestbook


def test_guestbook_renders_remarks_and_counts_the_visit(running_server, redis_server):
    r = redis_server.client()
    r.rpush("guestbook_remarks", "first <b>bold</b> & co - Ada", "second - Bob")
    r.set("visitor_count", 38376)
    status, headers, body = get(running_server, "/guestbook")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert b"38,377" in body
    assert b'<p class="guest-entry">first &lt;b&gt;bold&lt;/b&gt; &amp; co - Ada</p>' in body
    assert b'<p class="guest-entry">second - Bob</p>' in body
    assert b"$GUEST_REMARKS$" not in body and b"$VISITOR_COUNT$" not in body
    assert b'action="/guestbook"' in body
    assert int(r.get("visitor_count")) == 38377


def test_post_stores_the_remark(running_server, redis_server):
    status, _, body = post(running_server, {"guest-remarks": "Nice & fast é", "guest-name": "Zoë"})
    assert status == 200
    assert b"Thank you" in body
    r = redis_server.client()
    assert r.lrange("guestbook_remarks", 0, -1) == ["Nice & fast é - Zoë".encode()]
    assert b"Nice &amp; fast \xc3\xa9 - Zo\xc3\xab" in get(running_server, "/guestbook")[2]


def test_post_with_a_missing_or_empty_field_is_400(server_factory, redis_server, variant):
    server = server_factory("poll", variant=variant)
    for fields, missing in [
        ({"guest-name": "Ada"}, "guest-remarks"),
        ({"guest-remarks": "hello"}, "guest-name"),
        ({"guest-remarks": "   ", "guest-name": "Ada"}, "guest-remarks"),
        ({"guest-remarks": "hello", "guest-name": ""}, "guest-name"),
    ]:
        status, _, body = post(server, fields)
        assert status == 400, fields
        assert missing.encode() in body, fields
    assert redis_server.client().llen("guestbook_remarks") == 0


def test_post_with_no_fields_is_400_in_every_architecture(running_server, redis_server):
    status, _, body = post(running_server, {})
    assert status == 400
    assert b"guest-remarks" in body and b"guest-name" in body
    assert redis_server.client().llen("guestbook_remarks") == 0


# Bad input


def test_bad_requests(running_server):
    address = running_server.address
    assert exchange(address, b"GARBAGE\r\n\r\n")[0] == 400
    assert exchange(address, b"GET / HTTP/1.1\r\nBad Header Without Colon\r\n\r\n")[0] == 400
    assert exchange(address, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")[0] == 400
    status, _, body = exchange(address, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    assert status == 431 and b"431" in body
    big = b"guest-remarks=" + b"a" * 70000 + b"&guest-name=x"
    status, _, body = exchange(address, b"POST /guestbook HTTP/1.1\r\nHost: x\r\nContent-Type: "
                               b"application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s"
                               % (len(big), big))
    assert status == 413 and b"413" in body
    for method in (b"PUT", b"DELETE", b"HEAD", b"OPTIONS"):
        status, _, body = exchange(address, method + b" /guestbook HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 501, method
    # Still serving after all that.
    assert get(running_server, "/guestbook")[0] == 200


# Concurrency


def test_concurrent_requests_are_all_counted(running_server, redis_server):
    gets, posts = 60, 30

    def one_get(_):
        return get(running_server, "/guestbook", timeout=20)[0]

    def one_post(i):
        return post(running_server, {"guest-remarks": f"remark {i}", "guest-name": "load"},
                    timeout=20)[0]

    with concurrent.futures.ThreadPoolExecutor(max_workers=30) as pool:
        statuses = list(pool.map(one_get, range(gets)))
        statuses += list(pool.map(one_post, range(posts)))
    assert statuses == [200] * (gets + posts)
    r = redis_server.client()
    assert int(r.get("visitor_count")) == gets
    remarks = r.lrange("guestbook_remarks", 0, -1)
    assert sorted(remarks) == sorted(f"remark {i} - load".encode() for i in range(posts))
    # No zombie left behind by the process architectures.
    deadline = time.monotonic() + 3
    while any(state == "Z" for _, state in children_of(running_server.pid)):
        assert time.monotonic() < deadline, "zombie children"
        time.sleep(0.05)


# Faults


def test_silent_and_slow_clients_are_dropped(running_server):
    """--read-timeout is 1 s: a client that sends nothing, or dribbles, is closed around then,
    and the others are still answered."""
    silent = socket.create_connection(running_server.address, timeout=10)
    slow = socket.create_connection(running_server.address, timeout=10)
    started = time.monotonic()
    slow.sendall(b"GET /guest")
    assert get(running_server, "/index.html", timeout=10)[0] == 200
    for sock in (silent, slow):
        try:
            while True:
                data = sock.recv(4096)
                if not data:
                    break
                assert not data.startswith(b"HTTP/1.0 200")
                sock.sendall(b"x")  # the slow one keeps dribbling
        except OSError:
            pass
        elapsed = time.monotonic() - started
        sock.close()
        assert 0.5 < elapsed < 5, elapsed
    assert get(running_server, "/guestbook")[0] == 200


def test_client_reset_mid_response_does_not_hurt_the_worker(running_server):
    for path in ("/big.bin", "/guestbook"):
        for _ in range(5):
            sock = socket.create_connection(running_server.address, timeout=10)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sock.recv(100)
            # Linger 0: close() sends a reset instead of a FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
    for _ in range(10):
        assert get(running_server, "/guestbook")[0] == 200
    assert get(running_server, "/big.bin")[0] == 200
    time.sleep(0.2)
    assert "Traceback" not in running_server.output()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_everything_within_5_seconds(server_factory, arch, variant, signum):
    server = server_factory(arch, workers=None, variant=variant)  # the default worker count (100)
    assert get(server, "/guestbook")[0] == 200
    # An idle connection in flight must not hold the shutdown.
    idle = socket.create_connection(server.address, timeout=10)
    if arch == "preforked":
        deadline = time.monotonic() + 10
        while len(children_of(server.pid)) < 100:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    started = time.monotonic()
    os.kill(server.pid, signum)
    assert server.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 5
    idle.close()
    assert children_of(server.pid) == []
    deadline = time.monotonic() + 2
    while group_members(server.pid):
        assert time.monotonic() < deadline, f"left behind: {group_members(server.pid)}"
        time.sleep(0.05)
    assert "Traceback" not in server.output()


def test_redis_restart_gives_503_then_recovers(running_server, redis_server):
    assert get(running_server, "/guestbook")[0] == 200
    redis_server.stop()
    status, _, body = get(running_server, "/guestbook")
    assert status == 503 and b"unavailable" in body
    assert get(running_server, "/index.html")[0] == 200
    redis_server.start()
    deadline = time.monotonic() + 10
    while True:
        status = get(running_server, "/guestbook")[0]
        if status == 200:
            break
        assert status == 503
        assert time.monotonic() < deadline, "no recovery after Redis came back"
        time.sleep(0.1)
    assert int(redis_server.client().get("visitor_count")) >= 1
    assert "Traceback" not in running_server.output()


def test_default_root_serves_the_package_assets(server_factory, variant):
    server = server_factory("epoll", root=None, variant=variant)
    assert get(server, "/")[0] == 200
    assert get(server, "/zerolab.png")[1]["content-type"] == "image/png"
    assert len(get(server, "/guestbook")[2]) > 2000


def test_forking_server_restarts_without_what_parsing_loaded(server_factory, variant):
    """The forking server exec()s itself once its command line is checked: same process, the
    canonical arguments, and none of the modules that only argparse needed (their extension
    libraries would be mapped into, copied for and torn down with every child)."""
    server = server_factory("forking", read_timeout=1, variant=variant)
    with open(f"/proc/{server.pid}/cmdline", "rb") as f:
        argv = f.read().decode().split("\0")[:-1]
    at = argv.index("-m")
    assert argv[at + 1:at + 5] == ["server", "--arch", "forking", "--host"]
    assert argv[argv.index("--read-timeout") + 1] == "1.0"
    assert argv[argv.index("--variant") + 1] == variant
    with open(f"/proc/{server.pid}/maps") as f:
        mapped = f.read()
    for library in ("_lzma", "_bz2", "_ctypes"):
        assert library not in mapped, f"{library} is loaded in the forking parent"
    assert get(server, "/guestbook")[0] == 200
    post_status = post(server, {"guest-remarks": "lean", "guest-name": "fork"})[0]
    assert post_status == 200
    assert b"lean - fork" in get(server, "/guestbook")[2]


def test_command_line_errors_still_come_from_argparse():
    """The restart happens only after a successful parse: bad options fail as before."""
    result = subprocess.run([sys.executable, "-m", "server", "--arch", "forking", "--port", "x"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "argument --port: invalid int value: 'x'" in result.stderr


def test_a_port_in_use_is_a_one_line_error(server_factory):
    """A second server on a taken port says so and exits 1: no traceback, nothing left."""
    first = server_factory("iterative")
    result = subprocess.run([sys.executable, "-m", "server", "--arch", "preforked", "--host",
                             "127.0.0.1", "--port", str(first.port), "--workers", "2"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{first.port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("loop_arch", ["poll", "epoll"])
def test_an_early_answer_lingers_about_a_second_behind_longer_deadlines(server_factory, loop_arch,
                                                                        variant):
    """After an early answer the event loop drains the client for LINGER_SECONDS (1 s), even
    when connections with the longer read timeout (here 5 s) were queued before it."""
    server = server_factory(loop_arch, read_timeout=5, variant=variant)
    idle = socket.create_connection(server.address, timeout=10)  # its 5 s deadline comes first
    talker = socket.create_connection(server.address, timeout=10)
    try:
        time.sleep(0.2)
        talker.sendall(b"GET /" + b"a" * 9000 + b" HTTP/1.0\r\n")  # head over 8 KiB: 431
        answer = b""
        while not answer.endswith(b"</html>\n"):
            chunk = talker.recv(65536)
            assert chunk, "closed before the answer"
            answer += chunk
        assert answer.startswith(b"HTTP/1.0 431 ")
        answered = time.monotonic()
        while time.monotonic() - answered < 6:  # keep talking until the server lets go
            try:
                talker.sendall(b"x")
            except OSError:
                break
            time.sleep(0.05)
        assert time.monotonic() - answered < 3, "the linger waited for the read timeout"
    finally:
        talker.close()
        idle.close()


# What each variant asks of Redis and of the disk (docs/architecture.md, "Server variants")

GETS = 6
WORKERS = 4


def redis_counts(client):
    """Redis' own counters: connections received, commands by name (INFO itself left out),
    replies written (one write per round trip of a client) and connected clients."""
    info = client.info("everything")
    calls = {name[len("cmdstat_"):]: stats["calls"] for name, stats in info.items()
             if name.startswith("cmdstat_")}
    info_calls = calls.pop("info", 0)
    return {"connections": info["total_connections_received"],
            "commands": info["total_commands_processed"] - info_calls,
            "writes": info["total_writes_processed"] - info_calls, "calls": calls,
            "connected": info["connected_clients"]}


def delta(after, before):
    calls = {name: after["calls"].get(name, 0) - before["calls"].get(name, 0) for name in after["calls"]}
    return {"connections": after["connections"] - before["connections"],
            "commands": after["commands"] - before["commands"],
            "writes": after["writes"] - before["writes"],
            "calls": {name: n for name, n in calls.items() if n}}


# New Redis connections while GETS guestbook pages are served one after another, counted from
# before the server started ("start": connections it opens at start count) or from when it
# listens ("ready"). A number is exact; a range is what lazily opened connections may add up to.
CONNECTIONS = {
    "faithful": {"iterative": ("start", 1), "forking": ("ready", GETS), "preforked": ("start", WORKERS),
                 "threaded": ("ready", GETS), "prethreaded": ("ready", GETS), "poll": ("ready", GETS),
                 "epoll": ("ready", GETS)},
    "lean": {"iterative": ("start", range(0, 2)), "forking": ("ready", GETS),
             "preforked": ("start", range(1, WORKERS + 1)), "threaded": ("ready", 1),
             "prethreaded": ("ready", 1), "poll": ("ready", 1), "epoll": ("ready", 1)},
}


def test_redis_traffic_of_each_variant(server_factory, redis_server, arch, variant):
    """faithful: the article's three round trips per page (LRANGE, INCRBY, GET, each answered
    before the next is written) and its Redis connections per architecture; lean: one round
    trip (LRANGE and INCR written together) over connections kept for many clients."""
    r = redis_server.client()
    at_start = redis_counts(r)
    server = server_factory(arch, variant=variant, workers=WORKERS)
    ready = redis_counts(r)
    for _ in range(GETS):
        assert get(server, "/guestbook")[0] == 200
    since, connections = CONNECTIONS[variant][arch]
    expected = connections if isinstance(connections, range) else range(connections, connections + 1)
    deadline = time.monotonic() + 3  # a preforked child may connect after the first answers
    while True:
        after = redis_counts(r)
        opened = delta(after, at_start if since == "start" else ready)["connections"]
        if opened in expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert opened in expected, f"{opened} Redis connections, want {connections} since {since}"
    traffic = delta(after, ready)
    if variant == "faithful":
        assert traffic["calls"] == {"lrange": GETS, "incrby": GETS, "get": GETS}
        assert traffic["commands"] == 3 * GETS
        assert traffic["writes"] == 3 * GETS  # a reply written for each command alone
    else:
        assert traffic["calls"] == {"lrange": GETS, "incr": GETS}
        # One write answers both commands of a page (the threads' pool may add its set-up).
        assert GETS <= traffic["writes"] <= GETS + 2
    assert int(r.get("visitor_count")) == GETS


CONCURRENT = 8
# Redis connections a server holds at once while CONCURRENT guestbook GETs all wait on Redis: a
# number is exact, a range what a lean server may open as it goes.
AT_ONCE = {
    "faithful": {"iterative": 1, "forking": CONCURRENT, "preforked": WORKERS, "threaded": CONCURRENT,
                 "prethreaded": CONCURRENT, "poll": CONCURRENT, "epoll": CONCURRENT},
    "lean": {"iterative": 1, "forking": CONCURRENT, "preforked": range(1, WORKERS + 1),
             "threaded": range(1, CONCURRENT + 1), "prethreaded": range(1, CONCURRENT + 1),
             "poll": 1, "epoll": 1},
}


def test_redis_connections_open_at_once(server_factory, redis_server, arch, variant):
    """With Redis holding back writes (CLIENT PAUSE WRITE: LRANGE is answered, INCR and INCRBY
    wait), CONCURRENT clients all wait on Redis: faithful poll and epoll (and the threads, and
    the forked children) hold a Redis connection per client, lean's event loops one for all."""
    r = redis_server.client()
    r.client_kill_filter(_type="normal", skipme=True)  # from here on, all but ours are the server's
    server = server_factory(arch, variant=variant,
                            workers=WORKERS if arch == "preforked" else CONCURRENT)
    want = AT_ONCE[variant][arch]
    exact = not isinstance(want, range)
    r.execute_command("CLIENT", "PAUSE", 3000, "WRITE")  # lifted below, or by itself after 3 s
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
            answers = [pool.submit(get, server, "/guestbook", 20) for _ in range(CONCURRENT)]
            # Sampled while they wait: until faithful's count is reached, else for a while, to
            # see that it stays within bounds.
            seen = []
            deadline = time.monotonic() + (1.5 if variant == "faithful" else 0.6)
            while time.monotonic() < deadline and not (exact and variant == "faithful" and seen
                                                       and seen[-1] == want):
                seen.append(redis_counts(r)["connected"] - 1)
                time.sleep(0.05)
            r.execute_command("CLIENT", "UNPAUSE")
            statuses = [answer.result()[0] for answer in answers]
    finally:
        r.execute_command("CLIENT", "UNPAUSE")
    assert statuses == [200] * CONCURRENT
    if exact:
        assert max(seen) == want, f"Redis connections at once: {seen}, want {want}"
    else:
        assert max(seen) in want, f"Redis connections at once: {seen}, want {want}"
    assert int(r.get("visitor_count")) == CONCURRENT


def test_the_template_is_read_per_request_in_faithful_only(running_server, site_root, variant):
    assert b"$VISITOR_COUNT$" not in get(running_server, "/guestbook")[2]
    template = site_root / "templates" / "guestbook" / "index.html"
    template.write_text("<p>changed: $VISITOR_COUNT$ visits</p>\n")
    status, _, body = get(running_server, "/guestbook")
    assert status == 200
    if variant == "faithful":
        assert body == b"<p>changed: 2 visits</p>\n"
    else:
        assert b"changed" not in body and b"2</span>" in body  # the page parsed at start


def test_a_large_file_reaches_a_slow_reader_whole(running_server, site_root):
    """More than the sockets hold: sendfile (faithful) or the writes (lean) go out in parts,
    waiting for the client to read."""
    data = os.urandom(8 << 20)
    (site_root / "public" / "large.bin").write_bytes(data)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # before connect: a small window
        sock.settimeout(10)
        sock.connect(running_server.address)
        sock.sendall(b"GET /large.bin HTTP/1.0\r\n\r\n")
        time.sleep(0.3)
        chunks = []
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    status, headers, body = parse_response(b"".join(chunks))
    assert (status, headers["content-type"]) == (200, "application/octet-stream")
    assert body == data
