"""Routing: from a parsed request to response bytes or a RedisCall (no sockets here)."""
import os

from server.guestbook import Guestbook
from server.protocol import Connection, page
from server.static import StaticFiles

PACKAGE_ROOT = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join("templates", "guestbook", "index.html")

METHOD_NOT_ALLOWED = page(405, "Only GET is allowed here; the guestbook also takes POST.")


class App:
    """The whole application. `root` holds `public/` and, optionally, `templates/` (the
    package's own template is used when it has none)."""

    def __init__(self, root=PACKAGE_ROOT):
        self.static = StaticFiles(os.path.join(root, "public"))
        template = os.path.join(root, TEMPLATE)
        if not os.path.isfile(template):
            template = os.path.join(PACKAGE_ROOT, TEMPLATE)
        with open(template, encoding="utf-8") as f:
            self.guestbook = Guestbook(f.read())

    def connection(self):
        return Connection(self.handle)

    def handle(self, method, url, body, content_type):
        if url == b"/guestbook" or url.startswith(b"/guestbook?"):
            if method == b"GET":
                return self.guestbook.view
            return self.guestbook.sign(body, content_type)
        if method == b"GET":
            return self.static.get(url)
        return METHOD_NOT_ALLOWED
