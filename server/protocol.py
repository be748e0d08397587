"""HTTP/1.0 over bytes, without sockets (sans-IO).

`Connection.receive(data)` takes what a socket read and answers with one of:
  - None: the request is not complete yet, read more;
  - bytes: the whole response, send it and close (b"" means close without answering);
  - a `RedisCall`: send its commands to Redis, then `call.finish(replies)` gives the answer:
    bytes, or the next `RedisCall` (one more round trip), or
  - a `FileResponse` (faithful variant, static files): send its head, then its open file with
    sendfile, and close the file.
Every architecture moves bytes between its sockets and this one object.
"""
import os
import re

import httptools

HEAD_LIMIT = 8 * 1024
BODY_LIMIT = 64 * 1024

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}
# Encoded once: response_head() runs for every rendered guestbook page.
_REASON_BYTES = {status: reason.encode() for status, reason in REASONS.items()}
HTML = b"text/html; charset=utf-8"

# A syntactically valid request line with a method the parser does not know: 501, not 400.
_REQUEST_LINE = re.compile(rb"[A-Z]{1,20} \S+ HTTP/\d\.\d\r\n")


def response_head(status, content_type, length):
    return b"HTTP/1.0 %d %s\r\nServer: zerolab\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (
        status, _REASON_BYTES[status], content_type, length)


def response(status, body, content_type=HTML):
    return response_head(status, content_type, len(body)) + body


def page(status, message):
    """A small HTML page for statuses other than 200."""
    title = f"{status} {REASONS[status]}"
    body = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>\n'
            f"<body><h1>{title}</h1><p>{message}</p></body></html>\n")
    return response(status, body.encode())


BAD_REQUEST = page(400, "The request could not be parsed.")
INCOMPLETE = page(400, "The request ended before it was complete.")
HEAD_TOO_LARGE = page(431, f"The request line and headers exceed {HEAD_LIMIT} bytes.")
BODY_TOO_LARGE = page(413, f"The request body exceeds {BODY_LIMIT} bytes.")
NOT_IMPLEMENTED = page(501, "Only GET and POST are implemented.")

CLOSE = b""


class FileResponse:
    """A 200 response whose body is an open file, sent with sendfile: its head (bytes), the
    file's descriptor and how many bytes of it to send. Whoever sends it closes it."""

    __slots__ = ("head", "fd", "size")

    def __init__(self, head, fd, size):
        self.head = head
        self.fd = fd
        self.size = size

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Abort(Exception):
    """Raised inside a parser callback to stop parsing with a ready response."""


class Connection:
    """One client connection: bytes in, at most one response out."""

    __slots__ = ("_handler", "_parser", "_url", "_content_length", "_content_type", "_body",
                 "_body_size", "_head_seen", "_first", "_tail", "_headers_done", "_complete", "_error",
                 "done", "linger")

    def __init__(self, handler):
        # handler(method, url, body, content_type) -> bytes | RedisCall
        self._handler = handler
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._content_length = 0
        self._content_type = b""
        self._body = []
        self._body_size = 0
        self._head_seen = 0
        self._first = b""
        self._tail = b""
        self._headers_done = False
        self._complete = False
        self._error = None
        self.done = False
        # True when the answer leaves unread request bytes behind: close gently, so that the
        # client reads the answer before a reset would discard it.
        self.linger = False

    def receive(self, data):
        if self.done:
            return None
        if not data:
            self.done = True
            if self._head_seen == 0:
                return CLOSE
            return INCOMPLETE
        if not self._headers_done:
            before = self._head_seen
            if before == 0:
                self._first = data
            self._head_seen = before + len(data)
            if self._head_seen > HEAD_LIMIT and (self._tail + data[:HEAD_LIMIT - before]).find(b"\r\n\r\n") < 0:
                return self._fail(HEAD_TOO_LARGE)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            return self._fail(self._error or BAD_REQUEST)
        except httptools.HttpParserInvalidMethodError:
            return self._fail(NOT_IMPLEMENTED if _REQUEST_LINE.match(self._first) else BAD_REQUEST)
        except httptools.HttpParserUpgrade:
            if not self._complete:
                return self._fail(BAD_REQUEST)
        except httptools.HttpParserError:
            return self._fail(BAD_REQUEST)
        if not self._complete:
            if not self._headers_done:
                self._tail = data[-3:]
            return None
        self.done = True
        body = b"".join(self._body) if self._body else b""
        return self._handler(self._parser.get_method(), self._url, body, self._content_type)

    def _fail(self, answer):
        self.done = True
        self.linger = True
        return answer

    # httptools callbacks

    def on_url(self, url):
        self._url += url

    def on_header(self, name, value):
        name = name.lower()
        if name == b"content-length":
            try:
                self._content_length = int(value)
            except ValueError:
                self._content_length = 0
        elif name == b"content-type":
            self._content_type = value

    def on_headers_complete(self):
        self._headers_done = True
        method = self._parser.get_method()
        if method != b"GET" and method != b"POST":
            self._error = NOT_IMPLEMENTED
            raise _Abort
        if self._content_length > BODY_LIMIT:
            self._error = BODY_TOO_LARGE
            raise _Abort

    def on_body(self, chunk):
        self._body_size += len(chunk)
        if self._body_size > BODY_LIMIT:
            self._error = BODY_TOO_LARGE
            raise _Abort
        self._body.append(chunk)

    def on_message_complete(self):
        self._complete = True

