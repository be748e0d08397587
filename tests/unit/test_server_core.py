"""The server's sans-IO core, without sockets: request parsing and limits, routing, static path
safety, guestbook rendering, RESP commands and reply handling, in both variants."""
import os
import socket
import threading

import hiredis
import pytest

from server.app import App
from server.config import Config, parse_args
from server.guestbook import (GET_COMMAND, INCRBY_COMMAND, LRANGE_COMMAND, VIEW_COMMANDS,
                              FaithfulGuestbook, Guestbook, escape, render_remarks)
from server.protocol import BODY_LIMIT, CLOSE, HEAD_LIMIT, Connection, FileResponse
from server.redis_link import RedisUnavailable
from server.resp import RedisCall, encode_command
from server.runtime import _ask_redis, send_file
from server.static import StaticFiles

pytestmark = pytest.mark.timeout(10)

TEMPLATE = "<ul>\n$GUEST_REMARKS$</ul><p>$VISITOR_COUNT$ visits</p>"


def status_of(answer):
    assert isinstance(answer, bytes), answer
    return int(answer.split(b" ", 2)[1])


def body_of(answer):
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    assert length == len(body)
    return body


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, method, url, body, content_type):
        self.calls.append((method, url, body, content_type))
        return b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"


# Request parsing


def test_a_request_in_one_piece():
    handler = Recorder()
    conn = Connection(handler)
    answer = conn.receive(b"GET /guestbook?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert status_of(answer) == 200
    assert handler.calls == [(b"GET", b"/guestbook?x=1", b"", b"")]
    assert conn.done and not conn.linger


def test_a_request_byte_by_byte():
    handler = Recorder()
    conn = Connection(handler)
    raw = (b"POST /guestbook HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\n"
           b"Content-Length: 5\r\n\r\nab=cd")
    answers = [conn.receive(raw[i:i + 1]) for i in range(len(raw))]
    assert answers[:-1] == [None] * (len(raw) - 1)
    assert status_of(answers[-1]) == 200
    assert handler.calls == [(b"POST", b"/guestbook", b"ab=cd", b"application/x-www-form-urlencoded")]


def test_eof_before_anything_closes_quietly_and_eof_midway_is_400():
    assert Connection(Recorder()).receive(b"") is CLOSE
    conn = Connection(Recorder())
    assert conn.receive(b"GET / HT") is None
    assert status_of(conn.receive(b"")) == 400


@pytest.mark.parametrize("raw, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.0\n\n", 400),
    (b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
    (b"PUT / HTTP/1.1\r\n\r\n", 501),
    (b"DELETE /guestbook HTTP/1.1\r\n\r\n", 501),
    (b"HEAD / HTTP/1.0\r\n\r\n", 501),
    (b"BREW /pot HTTP/1.1\r\n\r\n", 501),
])
def test_bad_requests(raw, status):
    handler = Recorder()
    conn = Connection(handler)
    assert status_of(conn.receive(raw)) == status
    assert handler.calls == [] and conn.linger


def test_head_limit_is_8_kib():
    line = b"GET / HTTP/1.1\r\n"
    end = b"\r\n"
    filler = HEAD_LIMIT - len(line) - len(end) - len(b"X: \r\n")
    fits = line + b"X: " + b"a" * filler + b"\r\n" + end
    assert len(fits) == HEAD_LIMIT
    assert status_of(Connection(Recorder()).receive(fits)) == 200
    too_big = line + b"X: " + b"a" * (filler + 1) + b"\r\n" + end
    assert status_of(Connection(Recorder()).receive(too_big)) == 431
    # The same, arriving in pieces, and a head that never ends.
    conn = Connection(Recorder())
    answers = [conn.receive(too_big[i:i + 1000]) for i in range(0, len(too_big), 1000)]
    assert status_of([a for a in answers if a is not None][0]) == 431
    conn = Connection(Recorder())
    assert conn.receive(line) is None
    assert status_of(conn.receive(b"Y: " + b"b" * HEAD_LIMIT)) == 431


def test_head_limit_does_not_count_the_body():
    body = b"a=" + b"b" * 20000
    raw = b"POST /x HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    assert status_of(Connection(Recorder()).receive(raw)) == 200


def test_body_limit_is_64_kib():
    ok = b"a" * BODY_LIMIT
    raw = b"POST /x HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(ok)
    conn = Connection(Recorder())
    assert conn.receive(raw) is None
    assert status_of(conn.receive(ok)) == 200
    # Refused from the header alone, before the body arrives.
    conn = Connection(Recorder())
    answer = conn.receive(b"POST /x HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % (BODY_LIMIT + 1))
    assert status_of(answer) == 413 and conn.linger
    # A chunked body counted as it arrives.
    conn = Connection(Recorder())
    assert conn.receive(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") is None
    chunk = b"%x\r\n%s\r\n" % (40000, b"z" * 40000)
    assert conn.receive(chunk) is None
    assert status_of(conn.receive(chunk)) == 413


def test_nothing_after_the_answer():
    conn = Connection(Recorder())
    assert conn.receive(b"GET / HTTP/1.0\r\n\r\n") is not None
    assert conn.receive(b"GET / HTTP/1.0\r\n\r\n") is None


# RESP


def test_resp_encoding_reads_back_with_hiredis():
    assert encode_command(b"INCR", b"visitor_count") == b"*2\r\n$4\r\nINCR\r\n$13\r\nvisitor_count\r\n"
    assert VIEW_COMMANDS == (b"*4\r\n$6\r\nLRANGE\r\n$17\r\nguestbook_remarks\r\n$1\r\n0\r\n$2\r\n-1\r\n"
                             b"*2\r\n$4\r\nINCR\r\n$13\r\nvisitor_count\r\n")
    reader = hiredis.Reader()
    value = "é\r\n$3 - ok".encode()
    reader.feed(encode_command(b"RPUSH", b"k", value))
    assert reader.gets() == [b"RPUSH", b"k", value]


# Guestbook


def test_view_is_one_call_with_two_replies():
    book = Guestbook(TEMPLATE)
    assert isinstance(book.view(), RedisCall)
    assert (book.view().commands, book.view().replies) == (VIEW_COMMANDS, 2)


@pytest.mark.parametrize("count, text", [
    (0, b"0"), (999, b"999"), (1000, b"1,000"), (38377, b"38,377"), (1234567, b"1,234,567"),
])
def test_visitor_count_has_thousands_separators(count, text):
    body = body_of(Guestbook(TEMPLATE).render_view([[], count]))
    assert body.endswith(b"<p>" + text + b" visits</p>")


def test_remarks_are_escaped_one_paragraph_each():
    book = Guestbook(TEMPLATE)
    remarks = [b"<script>alert(1)</script> - x", "caf\u00e9 & \"q\" - y".encode()]
    body = body_of(book.render_view([remarks, 1]))
    assert body == (b'<ul>\n    <p class="guest-entry">&lt;script&gt;alert(1)&lt;/script&gt; - x</p>\n'
                    b'    <p class="guest-entry">caf\xc3\xa9 &amp; &quot;q&quot; - y</p>\n'
                    b"</ul><p>1 visits</p>")
    # The cached rendering follows the remarks when they change.
    assert b"new one" in body_of(book.render_view([remarks + [b"new one"], 2]))
    assert b"new one" not in body_of(book.render_view([remarks, 3]))
    assert b"no-entries" in render_remarks([])


@pytest.mark.parametrize("text", ["", "plain", "<a href=\"x\">'&amp;'</a>", "&&<<>>\"\"''",
                                  "caf\u00e9 \u2603 &#x27; \x00 \r\n"])
def test_escape_is_html_escape(text):
    import html

    assert escape(text) == html.escape(text, quote=True)


def test_placeholders_may_repeat_and_come_in_any_order():
    body = body_of(Guestbook("$VISITOR_COUNT$|$GUEST_REMARKS$|$VISITOR_COUNT$").render_view([[b"a"], 1500]))
    assert body == b'1,500|    <p class="guest-entry">a</p>\n|1,500'


def test_view_is_503_without_redis_or_on_an_error_reply():
    book = Guestbook(TEMPLATE)
    assert status_of(book.render_view(None)) == 503
    error = hiredis.ReplyError("WRONGTYPE Operation against a key holding the wrong kind of value")
    assert status_of(book.render_view([error, 1])) == 503
    assert b"unavailable" in body_of(book.render_view(None))


def test_sign_builds_one_rpush():
    book = Guestbook(TEMPLATE)
    call = book.sign(b"guest-remarks=Nice+server%21+%C3%A9&guest-name=Ada",
                     b"application/x-www-form-urlencoded; charset=utf-8")
    assert isinstance(call, RedisCall) and call.replies == 1
    assert call.commands == encode_command(b"RPUSH", b"guestbook_remarks", "Nice server! é - Ada".encode())
    assert status_of(call.finish([1])) == 200
    assert status_of(call.finish(None)) == 503


@pytest.mark.parametrize("body, missing", [
    (b"guest-name=Ada", [b"guest-remarks"]),
    (b"guest-remarks=hi", [b"guest-name"]),
    (b"guest-remarks=+++&guest-name=Ada", [b"guest-remarks"]),
    (b"", [b"guest-remarks", b"guest-name"]),
])
def test_sign_says_which_field_is_missing(body, missing):
    answer = Guestbook(TEMPLATE).sign(body, b"application/x-www-form-urlencoded")
    assert status_of(answer) == 400
    for name in missing:
        assert name in body_of(answer)


def test_sign_refuses_other_encodings():
    answer = Guestbook(TEMPLATE).sign(b"x", b"multipart/form-data; boundary=z")
    assert status_of(answer) == 400


# The faithful guestbook: ZeroHTTPd's template read and three round trips


@pytest.fixture
def template_file(tmp_path):
    path = tmp_path / "index.html"
    path.write_text(TEMPLATE)
    return path


def visit(call, replies):
    """Walk a faithful view through its round trips: (commands of each, final answer)."""
    sent = []
    answer = call
    for reply in replies:
        assert isinstance(answer, RedisCall) and answer.replies == 1
        sent.append(answer.commands)
        answer = answer.finish(None if reply is None else [reply])
    return sent, answer


def test_faithful_view_is_lrange_incrby_get_one_round_trip_each(template_file):
    book = FaithfulGuestbook(str(template_file))
    sent, answer = visit(book.view(), [[b"<hi> - Ada"], 1234, b"1235"])
    assert sent == [LRANGE_COMMAND, INCRBY_COMMAND, GET_COMMAND]
    assert LRANGE_COMMAND == encode_command(b"LRANGE", b"guestbook_remarks", b"0", b"-1")
    assert INCRBY_COMMAND == encode_command(b"INCRBY", b"visitor_count", b"1")
    assert GET_COMMAND == encode_command(b"GET", b"visitor_count")
    # The count shown is GET's, as in ZeroHTTPd; the remarks are escaped as in lean.
    assert body_of(answer) == (b'<ul>\n    <p class="guest-entry">&lt;hi&gt; - Ada</p>\n'
                               b"</ul><p>1,235 visits</p>")
    assert body_of(answer) == body_of(Guestbook(TEMPLATE).render_view([[b"<hi> - Ada"], 1235]))


def test_faithful_view_reads_the_template_on_every_request(template_file):
    book = FaithfulGuestbook(str(template_file))
    first = book.view()
    template_file.write_text("<b>$VISITOR_COUNT$</b>")
    second = book.view()
    assert body_of(visit(first, [[], 1, b"1"])[1]).endswith(b"<p>1 visits</p>")
    assert body_of(visit(second, [[], 2, b"2"])[1]) == b"<b>2</b>"
    template_file.unlink()
    assert status_of(book.view()) == 500


@pytest.mark.parametrize("replies", [
    [None], [[], None], [[], 1, None],
    [hiredis.ReplyError("WRONGTYPE")], [[], hiredis.ReplyError("WRONGTYPE")],
    [[], 1, b"not a number"],
])
def test_faithful_view_is_503_whichever_round_trip_fails(template_file, replies):
    _, answer = visit(FaithfulGuestbook(str(template_file)).view(), replies)
    assert status_of(answer) == 503


class Recording:
    """A blocking Redis link that answers from a script and records each call."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.calls = []

    def call(self, commands, count):
        self.calls.append((commands, count))
        reply = self.replies.pop(0)
        if reply is RedisUnavailable:
            raise RedisUnavailable("down")
        return reply


def test_blocking_servers_make_one_call_per_round_trip(template_file):
    redis = Recording([[]], [7], [b"7"])
    answer = _ask_redis(FaithfulGuestbook(str(template_file)).view(), redis)
    assert redis.calls == [(LRANGE_COMMAND, 1), (INCRBY_COMMAND, 1), (GET_COMMAND, 1)]
    assert b"<p>7 visits</p>" in answer
    redis = Recording([[]], RedisUnavailable)
    assert status_of(_ask_redis(FaithfulGuestbook(str(template_file)).view(), redis)) == 503
    assert len(redis.calls) == 2
    redis = Recording([[], 7])
    assert b"<p>7 visits</p>" in _ask_redis(Guestbook(TEMPLATE).view(), redis)
    assert redis.calls == [(VIEW_COMMANDS, 2)]


# Static files


@pytest.fixture
def public(tmp_path):
    root = tmp_path / "public"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("home")
    (root / "sub" / "index.html").write_text("sub home")
    (root / "sub" / "a.css").write_text("css")
    (root / "pic.PNG").write_bytes(b"\x89PNG")
    (root / "data.unknown").write_bytes(b"?")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", root / "leak.txt")
    os.symlink(tmp_path, root / "up")
    os.symlink(root / "sub" / "a.css", root / "alias.css")
    return root


@pytest.mark.parametrize("url, body, content_type", [
    (b"/", b"home", b"text/html; charset=utf-8"),
    (b"/index.html?v=1", b"home", b"text/html; charset=utf-8"),
    (b"/sub/", b"sub home", b"text/html; charset=utf-8"),
    (b"/sub", b"sub home", b"text/html; charset=utf-8"),
    (b"/sub/a.css", b"css", b"text/css; charset=utf-8"),
    (b"/alias.css", b"css", b"text/css; charset=utf-8"),
    (b"/pic.PNG", b"\x89PNG", b"image/png"),
    (b"/data.unknown", b"?", b"application/octet-stream"),
    (b"/sub/./a.css", b"css", b"text/css; charset=utf-8"),
    (b"/%73ub/a.css", b"css", b"text/css; charset=utf-8"),
])
def test_static_files(public, url, body, content_type):
    answer = StaticFiles(public).get(url)
    assert status_of(answer) == 200
    assert body_of(answer) == body
    assert b"Content-Type: " + content_type + b"\r\n" in answer


@pytest.mark.parametrize("url", [
    b"/../secret.txt", b"/%2e%2e/secret.txt", b"/%2E%2e/secret.txt", b"/sub/../../secret.txt",
    b"/..%2fsecret.txt", b"/leak.txt", b"/up/secret.txt", b"//etc/passwd", b"/%00", b"/nope",
    b"/sub/nope/", b"/%ff", b"*",
])
def test_static_paths_that_escape_or_miss_are_404(public, url):
    answer = StaticFiles(public).get(url)
    assert status_of(answer) in (400, 404)
    assert b"secret" not in body_of(answer).replace(b"404", b"")


def test_static_cache_follows_changes(public):
    files = StaticFiles(public)
    assert body_of(files.get(b"/sub/a.css")) == b"css"
    target = public / "sub" / "a.css"
    target.write_text("changed")
    os.utime(target, ns=(1, 1))
    assert body_of(files.get(b"/sub/a.css")) == b"changed"
    target.unlink()
    os.symlink(public.parent / "secret.txt", target)
    assert status_of(files.get(b"/sub/a.css")) == 404


@pytest.mark.parametrize("url, body, content_type", [
    (b"/", b"home", b"text/html; charset=utf-8"),
    (b"/sub", b"sub home", b"text/html; charset=utf-8"),
    (b"/alias.css", b"css", b"text/css; charset=utf-8"),
    (b"/pic.PNG", b"\x89PNG", b"image/png"),
    (b"/data.unknown", b"?", b"application/octet-stream"),
])
def test_faithful_static_files_are_opened_for_sendfile(public, url, body, content_type):
    answer = StaticFiles(public, cache=False).get(url)
    assert isinstance(answer, FileResponse)
    try:
        assert status_of(answer.head + b"x") == 200
        assert b"Content-Type: " + content_type + b"\r\n" in answer.head
        assert b"Content-Length: %d\r\n" % len(body) in answer.head
        assert answer.size == len(body)
        assert os.pread(answer.fd, 100, 0) == body
    finally:
        answer.close()
    assert answer.fd == -1


@pytest.mark.parametrize("url", [
    b"/../secret.txt", b"/%2e%2e/secret.txt", b"/leak.txt", b"/up/secret.txt", b"//etc/passwd",
    b"/%00", b"/nope", b"/sub/nope/", b"/%ff", b"*",
])
def test_faithful_static_paths_that_escape_or_miss_are_404(public, url):
    answer = StaticFiles(public, cache=False).get(url)
    assert isinstance(answer, bytes) and status_of(answer) in (400, 404)


def test_faithful_static_opens_the_file_again_on_every_request(public):
    files = StaticFiles(public, cache=False)
    first = files.get(b"/sub/a.css")
    (public / "sub" / "a.css").write_text("changed")
    second = files.get(b"/sub/a.css")
    try:
        assert (first.size, second.size) == (3, 7)
        assert os.pread(second.fd, 100, 0) == b"changed"
    finally:
        first.close()
        second.close()


def test_send_file_sends_head_and_body_and_closes_the_file(public, tmp_path):
    big = tmp_path / "public" / "big.bin"
    data = os.urandom(3 << 20)  # more than a socket buffer: sendfile takes several calls
    big.write_bytes(data)
    response = StaticFiles(public, cache=False).get(b"/big.bin")
    ours, theirs = socket.socketpair()
    received = []
    with ours, theirs:
        reader = threading.Thread(target=lambda: received.extend(iter(lambda: theirs.recv(1 << 16), b"")))
        reader.start()
        send_file(ours.fileno(), response)
        ours.shutdown(socket.SHUT_WR)
        reader.join(5)
    raw = b"".join(received)
    assert raw == response.head + data
    assert response.fd == -1


# Routing


def test_routes():
    app = App()
    conn = app.connection()
    assert conn.receive(b"GET /guestbook HTTP/1.1\r\n\r\n") is app.guestbook.view()
    assert app.handle(b"GET", b"/guestbook?ref=x", b"", b"") is app.guestbook.view()
    assert isinstance(app.handle(b"POST", b"/guestbook", b"guest-remarks=a&guest-name=b", b""), RedisCall)
    assert status_of(app.handle(b"POST", b"/index.html", b"", b"")) == 405
    assert status_of(app.handle(b"GET", b"/zerolab.png", b"", b"")) == 200
    rendered = body_of(app.guestbook.render_view([[b"hello - x"] * 3, 38377]))
    assert 2500 <= len(rendered) <= 4000


def test_faithful_routes():
    app = App(variant="faithful")
    first = app.handle(b"GET", b"/guestbook", b"", b"")
    assert isinstance(first, RedisCall) and first.commands == LRANGE_COMMAND
    assert app.handle(b"GET", b"/guestbook", b"", b"") is not first  # one per visit
    sign = app.handle(b"POST", b"/guestbook", b"guest-remarks=a&guest-name=b", b"")
    assert isinstance(sign, RedisCall) and sign.replies == 1
    static = app.handle(b"GET", b"/zerolab.png", b"", b"")
    assert isinstance(static, FileResponse)
    static.close()
    assert status_of(app.handle(b"GET", b"/nope", b"", b"")) == 404
    _, page = visit(app.handle(b"GET", b"/guestbook", b"", b""), [[b"hello - x"] * 3, 38377, b"38377"])
    assert body_of(page) == body_of(App().guestbook.render_view([[b"hello - x"] * 3, 38377]))


@pytest.mark.parametrize("argv", [
    ["--arch", "forking"],
    ["--arch", "epoll", "--edge-triggered", "--read-timeout", "0.3", "--port", "0"],
    ["--arch=preforked", "--work", "7", "--root", "{odd_root}", "--redis-host", "redis"],
    ["--arch", "forking", "--variant", "faithful"],
])
def test_canonical_command_line_reads_back_without_argparse(argv, tmp_path):
    odd_root = tmp_path / "a dir" / "--arch"  # a root whose path looks like options
    (odd_root / "public").mkdir(parents=True)
    argv = [str(odd_root) if a == "{odd_root}" else a for a in argv]
    config = parse_args(argv)
    assert Config.from_argv(config.to_argv()) == config
    assert parse_args(config.to_argv()) == config


@pytest.mark.parametrize("argv", [
    [], ["--arch", "forking"], ["--arch", "nope", *parse_args(["--arch", "poll"]).to_argv()[2:]],
    [*parse_args(["--arch", "poll"]).to_argv()[:-1], "soon"],
    [*parse_args(["--arch", "poll"]).to_argv(), "--extra"],
])
def test_anything_but_the_canonical_form_is_not_read_back(argv):
    assert Config.from_argv(argv) is None


@pytest.mark.parametrize("argv, message", [
    (["--read-timeout", "nan"], "--read-timeout must be a number of seconds above 0"),
    (["--read-timeout", "inf"], "--read-timeout must be a number of seconds above 0"),
    (["--read-timeout", "0"], "--read-timeout must be a number of seconds above 0"),
    (["--port", "70000"], "--port must be between 0 and 65535"),
    (["--redis-port", "0"], "--redis-port must be between 1 and 65535"),
    (["--workers", "0"], "--workers must be at least 1"),
    (["--backlog", "-1"], "--backlog must be 0 or more"),
    (["--root", "/nonexistent/zerolab"], "--root /nonexistent/zerolab: no public/ folder"),
    (["--variant", "fast"], "argument --variant: invalid choice: 'fast'"),
])
def test_bad_options_are_refused_with_the_option_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--arch", "iterative", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_canonical_form_is_checked_like_the_command_line():
    argv = parse_args(["--arch", "poll"]).to_argv()
    at = argv.index("--read-timeout")
    assert Config.from_argv(argv[:at + 1] + ["nan"] + argv[at + 2:]) is None
    at = argv.index("--workers")
    assert Config.from_argv(argv[:at + 1] + ["0"] + argv[at + 2:]) is None
    at = argv.index("--variant")
    assert Config.from_argv(argv[:at + 1] + ["fast"] + argv[at + 2:]) is None


def test_the_variant_is_lean_unless_asked():
    assert parse_args(["--arch", "poll"]).variant == "lean"
    config = parse_args(["--arch", "forking", "--variant", "faithful"])
    assert config.variant == "faithful"
    assert config.to_argv()[config.to_argv().index("--variant") + 1] == "faithful"
