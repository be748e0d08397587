"""The guestbook: its Redis commands, and rendering their replies (no sockets here)."""
from urllib.parse import parse_qsl

from server.protocol import HTML, page, response, response_head
from server.resp import RedisCall, encode_command

REMARKS_KEY = b"guestbook_remarks"
COUNT_KEY = b"visitor_count"
REMARKS_PLACEHOLDER = b"$GUEST_REMARKS$"
COUNT_PLACEHOLDER = b"$VISITOR_COUNT$"

# lean: read the remarks and count this visit in one round trip: two commands written together,
# no MULTI; the replies come back in order.
VIEW_COMMANDS = (encode_command(b"LRANGE", REMARKS_KEY, b"0", b"-1")
                 + encode_command(b"INCR", COUNT_KEY))
# faithful: ZeroHTTPd's three commands, each sent once the previous one is answered.
LRANGE_COMMAND = encode_command(b"LRANGE", REMARKS_KEY, b"0", b"-1")
INCRBY_COMMAND = encode_command(b"INCRBY", COUNT_KEY, b"1")
GET_COMMAND = encode_command(b"GET", COUNT_KEY)

UNAVAILABLE = page(503, "The guestbook is unavailable right now (its database cannot be reached). "
                        "Please try again in a moment.")
TEMPLATE_UNREADABLE = page(500, "The guestbook page cannot be read right now.")
THANKS = response(200, b"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Thank you</title></head>
<body><h1>Thank you for signing the guestbook</h1>
<p>Your remark has been saved. <a href="/guestbook">Back to the guestbook</a>.</p></body></html>
""")
FORM_TYPE = b"application/x-www-form-urlencoded"
WRONG_FORM_TYPE = page(400, "The form must be sent as application/x-www-form-urlencoded.")
# html.escape(text, quote=True) as one translate table: the html package also loads
# html.entities (over 2,000 entries, half a megabyte) that a forking server would carry into
# every child. tests/unit/test_server_core.py checks the two agree.
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"})


def escape(text):
    return text.translate(_ESCAPES)


def render_remarks(remarks):
    if not remarks:
        return b'    <p class="no-entries">No remarks yet: be the first.</p>\n'
    return "".join('    <p class="guest-entry">%s</p>\n' % escape(r.decode("utf-8", "replace"))
                   for r in remarks).encode()


class Template:
    """The page's template split around its placeholders: a render is a join of constants and
    two computed parts."""

    __slots__ = ("_parts", "_remark_slots", "_count_slots", "_fixed_length")

    def __init__(self, template):
        if template.__class__ is str:
            template = template.encode()
        parts = [b""]  # slot 0: the response head, once the length is known
        self._remark_slots = []
        self._count_slots = []
        rest = template
        while True:
            positions = [(rest.find(p), p) for p in (REMARKS_PLACEHOLDER, COUNT_PLACEHOLDER)]
            positions = [(i, p) for i, p in positions if i >= 0]
            if not positions:
                parts.append(rest)
                break
            i, placeholder = min(positions)
            parts.append(rest[:i])
            slots = self._remark_slots if placeholder == REMARKS_PLACEHOLDER else self._count_slots
            slots.append(len(parts))
            parts.append(b"")
            rest = rest[i + len(placeholder):]
        self._parts = parts
        self._fixed_length = sum(len(p) for p in parts)

    def render(self, fragment, count):
        """The whole 200 response: the remarks' HTML and the count with thousands separators."""
        count_text = format(count, ",").encode()
        parts = self._parts.copy()
        for i in self._remark_slots:
            parts[i] = fragment
        for i in self._count_slots:
            parts[i] = count_text
        length = (self._fixed_length + len(fragment) * len(self._remark_slots)
                  + len(count_text) * len(self._count_slots))
        parts[0] = response_head(200, HTML, length)
        return b"".join(parts)


def sign(body, content_type):
    """POST /guestbook: a RedisCall that appends the remark, or a 400 page (both variants)."""
    if content_type and content_type.split(b";")[0].strip().lower() != FORM_TYPE:
        return WRONG_FORM_TYPE
    fields = {}
    for name, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True,
                                 encoding="utf-8", errors="replace"):
        fields.setdefault(name, value)
    remarks = fields.get("guest-remarks", "").strip()
    name = fields.get("guest-name", "").strip()
    missing = [field for field, value in (("guest-remarks", remarks), ("guest-name", name))
               if not value]
    if missing:
        return page(400, "Missing or empty field: %s." % ", ".join(missing))
    entry = f"{remarks} - {name}".encode()
    return RedisCall(encode_command(b"RPUSH", REMARKS_KEY, entry), 1, _finish_sign)


class Guestbook:
    """lean: the template parsed once, the page in one round trip, the remarks' HTML reused
    while they do not change."""

    sign = staticmethod(sign)

    def __init__(self, template):
        self.template = Template(template)
        # Remarks change rarely compared with reads: reuse the last rendering while they match.
        self._last = (None, b"")
        self._view = RedisCall(VIEW_COMMANDS, 2, self.render_view)

    def view(self):
        return self._view

    def render_view(self, replies):
        if replies is None:
            return UNAVAILABLE
        remarks, count = replies
        if remarks.__class__ is not list or count.__class__ is not int:
            return UNAVAILABLE
        last = self._last
        if last[0] == remarks:
            fragment = last[1]
        else:
            fragment = render_remarks(remarks)
            self._last = (remarks, fragment)
        return self.template.render(fragment, count)


class FaithfulGuestbook:
    """faithful: ZeroHTTPd's page: the template opened and read on every request, then
    LRANGE, INCRBY and GET, each waiting for the previous reply; every part rendered anew."""

    sign = staticmethod(sign)

    def __init__(self, template_path):
        self.template_path = template_path

    def view(self):
        try:
            with open(self.template_path, "rb") as f:
                template = Template(f.read())
        except OSError:
            return TEMPLATE_UNREADABLE
        return RedisCall(LRANGE_COMMAND, 1, _PageVisit(template).remarks_read)


class _PageVisit:
    """One faithful page view between its round trips."""

    __slots__ = ("template", "remarks")

    def __init__(self, template):
        self.template = template
        self.remarks = None

    def remarks_read(self, replies):
        if replies is None or replies[0].__class__ is not list:
            return UNAVAILABLE
        self.remarks = replies[0]
        return RedisCall(INCRBY_COMMAND, 1, self.counted)

    def counted(self, replies):
        if replies is None or replies[0].__class__ is not int:
            return UNAVAILABLE
        return RedisCall(GET_COMMAND, 1, self.count_read)

    def count_read(self, replies):
        # GET answers the count as a string (None when another client removed the key).
        try:
            count = int(replies[0])
        except (TypeError, ValueError):
            return UNAVAILABLE
        return self.template.render(render_remarks(self.remarks), count)


def _finish_sign(replies):
    if replies is None or replies[0].__class__ is not int:
        return UNAVAILABLE
    return THANKS
