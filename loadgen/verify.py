"""Checks a server answers as the app should before any load is put on it."""
import http.client
import mimetypes
import re
import uuid
from urllib.parse import urlencode, urlsplit

# The count is rendered with thousands separators ("38,377").
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+|\d+")


class _Server:
    def __init__(self, url, timeout):
        parts = urlsplit(url)
        self.host, self.port, self.timeout = parts.hostname, parts.port or 80, timeout

    def request(self, method, path, body=None, headers=None):
        """(status, lower-cased headers, body text)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


def _check(name, passed, detail):
    return {"name": name, "passed": bool(passed), "detail": detail}


def visitor_count_step(before, after):
    """The rise of the one number that differs between two renderings of the guestbook page,
    or None when the pages do not differ in exactly one number."""
    a, b = _NUMBER.findall(before), _NUMBER.findall(after)
    if len(a) != len(b):
        return None
    changed = [(x, y) for x, y in zip(a, b) if x != y]
    if len(changed) != 1:
        return None
    x, y = (int(v.replace(",", "")) for v in changed[0])
    return y - x


def check_guestbook_get(server):
    pages = []
    for _ in range(2):
        status, _, body = server.request("GET", "/guestbook")
        if status != 200:
            return _check("guestbook_get", False, f"GET /guestbook answered {status}, not 200")
        pages.append(body.decode("utf-8", "replace"))
    step = visitor_count_step(*pages)
    if step is None:
        return _check("guestbook_get", False,
                      "two GET /guestbook pages do not differ in exactly one number "
                      "(the visitor count)")
    return _check("guestbook_get", step == 1,
                  f"visitor count rose by {step} over two GETs" + ("" if step == 1 else ", not 1"))


def check_guestbook_post(server):
    token = uuid.uuid4().hex[:12]
    remark, name = f"verify remark {token}", "loadgen verify"
    status, _, _ = server.request(
        "POST", "/guestbook", body=urlencode({"guest-remarks": remark, "guest-name": name}),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    if status != 200:
        return _check("guestbook_post", False, f"POST /guestbook answered {status}, not 200")
    status, _, body = server.request("GET", "/guestbook")
    shown = f"{remark} - {name}" in body.decode("utf-8", "replace")
    return _check("guestbook_post", status == 200 and shown,
                  f"posted remark {token} " + ("is shown by GET /guestbook" if shown
                                               else f"is missing from GET /guestbook ({status})"))


def check_static(server, static_path):
    status, headers, body = server.request("GET", static_path)
    expected = mimetypes.guess_type(static_path)[0] or "application/octet-stream"
    ctype = headers.get("content-type", "")
    problems = []
    if status != 200:
        problems.append(f"status {status}, not 200")
    if ctype.split(";")[0].strip() != expected:
        problems.append(f"Content-Type {ctype!r}, not {expected!r}")
    if not body:
        problems.append("empty body")
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) != len(body):
        problems.append(f"Content-Length {length} but {len(body)} bytes")
    detail = "; ".join(problems) or f"200, {ctype}, {len(body)} bytes"
    return _check("static", not problems, f"GET {static_path}: {detail}")


def check_not_found(server):
    path = f"/missing-{uuid.uuid4().hex[:12]}.html"
    status, _, _ = server.request("GET", path)
    return _check("not_found", status == 404, f"GET {path} answered {status}"
                  + ("" if status == 404 else ", not 404"))


# The request kinds a server may serve (a load mix's kinds), each with its checks: a server
# that serves files must also answer 404 for one it does not have.
KINDS = ("guestbook_get", "guestbook_post", "static")
CHECKS_OF_KIND = {"guestbook_get": ("guestbook_get",), "guestbook_post": ("guestbook_post",),
                  "static": ("static", "not_found")}


def verify_server(url, static_path="/index.html", timeout=5.0, kinds=None):
    """{"passed": bool, "checks": [{"name", "passed", "detail"}]}: the checks of the request
    kinds the server serves (`kinds`, default all); a check that cannot reach the server fails
    with the reason."""
    unknown = sorted(set(kinds or ()) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown request kind(s) {', '.join(unknown)} (kinds: {', '.join(KINDS)})")
    wanted = {check for kind in (kinds or KINDS) for check in CHECKS_OF_KIND[kind]}
    server = _Server(url, timeout)
    checks = []
    for name, run in (("guestbook_get", lambda: check_guestbook_get(server)),
                      ("guestbook_post", lambda: check_guestbook_post(server)),
                      ("static", lambda: check_static(server, static_path)),
                      ("not_found", lambda: check_not_found(server))):
        if name not in wanted:
            continue
        try:
            checks.append(run())
        except (OSError, http.client.HTTPException) as exc:
            checks.append(_check(name, False, f"{url}: {type(exc).__name__}: {exc}"))
    return {"passed": all(c["passed"] for c in checks), "checks": checks}
