"""Routing: from a parsed request to response bytes, a RedisCall or a FileResponse (no sockets
here)."""
import os

from server.guestbook import FaithfulGuestbook, Guestbook
from server.protocol import Connection, page
from server.static import StaticFiles
from server.variant import LEAN, variant_of

PACKAGE_ROOT = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join("templates", "guestbook", "index.html")

METHOD_NOT_ALLOWED = page(405, "Only GET is allowed here; the guestbook also takes POST.")


class App:
    """The whole application. `root` holds `public/` and, optionally, `templates/` (the
    package's own template is used when it has none). `variant` (server/variant.py) decides
    what a request costs: the template and static files kept in memory or read per request,
    the page in one Redis round trip or three."""

    def __init__(self, root=PACKAGE_ROOT, variant=LEAN):
        variant = variant_of(variant)
        self.variant = variant
        self.static = StaticFiles(os.path.join(root, "public"), cache=variant.cache_pages)
        template = os.path.join(root, TEMPLATE)
        if not os.path.isfile(template):
            template = os.path.join(PACKAGE_ROOT, TEMPLATE)
        if variant.cache_pages:
            with open(template, "rb") as f:
                self.guestbook = Guestbook(f.read())
        else:
            self.guestbook = FaithfulGuestbook(template)

    def connection(self):
        return Connection(self.handle)

    def handle(self, method, url, body, content_type):
        if url == b"/guestbook" or url.startswith(b"/guestbook?"):
            if method == b"GET":
                return self.guestbook.view()
            return self.guestbook.sign(body, content_type)
        if method == b"GET":
            return self.static.get(url)
        return METHOD_NOT_ALLOWED
