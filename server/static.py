"""Files under the public folder, answered safely (no sockets here)."""
import os
import stat
from urllib.parse import unquote_to_bytes

import httptools

from server.protocol import FileResponse, page, response, response_head

CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".htm": b"text/html; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".json": b"application/json",
    ".txt": b"text/plain; charset=utf-8",
    ".png": b"image/png",
    ".jpg": b"image/jpeg",
    ".jpeg": b"image/jpeg",
    ".gif": b"image/gif",
    ".svg": b"image/svg+xml",
    ".ico": b"image/x-icon",
    ".webp": b"image/webp",
}
DEFAULT_TYPE = b"application/octet-stream"

NOT_FOUND = page(404, "There is nothing at this address.")
BAD_URL = page(400, "The request target is not a valid URL.")

CACHE_FILE_LIMIT = 1 << 20
CACHE_TOTAL_LIMIT = 32 << 20


class StaticFiles:
    """Files under `public_dir`: with `cache` (lean) as response bytes kept in memory, checked
    against a fresh stat; without (faithful, as ZeroHTTPd) stat'ed, opened and answered as a
    FileResponse, sent with sendfile, on every request."""

    def __init__(self, public_dir, cache=True):
        self.root = os.path.realpath(public_dir)
        if not cache:
            self._answer = self._open
        # realpath -> (mtime_ns, size, response); checked against a fresh stat on every hit, so
        # a changed file is never served stale and every path still goes through realpath.
        self._cache = {}
        self._cached_bytes = 0

    def get(self, url):
        try:
            path = httptools.parse_url(url).path
        except httptools.HttpParserInvalidURLError:
            return BAD_URL
        if not path or not path.startswith(b"/"):
            return NOT_FOUND
        real = self.resolve(path)
        if real is None:
            return NOT_FOUND
        return self._answer(real)

    def resolve(self, path):
        """The real path of the file a URL path names, or None when it is missing or leaves the
        root (`..`, encoded or not, absolute paths, symlinks pointing out)."""
        try:
            decoded = unquote_to_bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            return None
        if "\x00" in decoded:
            return None
        segments = [s for s in decoded.split("/") if s and s != "."]
        if ".." in segments:
            return None
        candidate = os.path.join(self.root, *segments)
        if decoded.endswith("/") or not segments:
            candidate = os.path.join(candidate, "index.html")
        real = os.path.realpath(candidate)
        if os.path.isdir(real):
            real = os.path.realpath(os.path.join(real, "index.html"))
        if not real.startswith(self.root + os.sep):
            return None
        return real

    def _answer(self, real):
        try:
            st = os.stat(real)
        except OSError:
            return NOT_FOUND
        if not stat.S_ISREG(st.st_mode):  # os.path.isfile() would stat again
            return NOT_FOUND
        hit = self._cache.get(real)
        if hit is not None and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
            return hit[2]
        try:
            with open(real, "rb") as f:
                body = f.read()
        except OSError:
            return NOT_FOUND
        answer = response(200, body, CONTENT_TYPES.get(os.path.splitext(real)[1].lower(), DEFAULT_TYPE))
        if len(body) <= CACHE_FILE_LIMIT and self._cached_bytes + len(answer) <= CACHE_TOTAL_LIMIT:
            # Looked up again rather than reusing `hit`: the threaded servers share this cache,
            # and another thread may have stored this file while this one read it.
            old = self._cache.get(real)
            if old is not None:
                self._cached_bytes -= len(old[2])
            self._cache[real] = (st.st_mtime_ns, st.st_size, answer)
            self._cached_bytes += len(answer)
        return answer

    def _open(self, real):
        try:
            st = os.stat(real)
        except OSError:
            return NOT_FOUND
        if not stat.S_ISREG(st.st_mode):
            return NOT_FOUND
        try:
            fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return NOT_FOUND
        head = response_head(200, CONTENT_TYPES.get(os.path.splitext(real)[1].lower(), DEFAULT_TYPE),
                             st.st_size)
        return FileResponse(head, fd, st.st_size)
