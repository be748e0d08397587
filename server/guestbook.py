"""The guestbook: its Redis commands, and rendering their replies (no sockets here)."""
from urllib.parse import parse_qsl

from server.protocol import HTML, page, response, response_head
from server.resp import RedisCall, encode_command

REMARKS_KEY = b"guestbook_remarks"
COUNT_KEY = b"visitor_count"
REMARKS_PLACEHOLDER = "$GUEST_REMARKS$"
COUNT_PLACEHOLDER = "$VISITOR_COUNT$"

# Read the remarks and count this visit in one round trip: two commands written together, no
# MULTI; the replies come back in order.
VIEW_COMMANDS = (encode_command(b"LRANGE", REMARKS_KEY, b"0", b"-1")
                 + encode_command(b"INCR", COUNT_KEY))

UNAVAILABLE = page(503, "The guestbook is unavailable right now (its database cannot be reached). "
                        "Please try again in a moment.")
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


class Guestbook:
    def __init__(self, template):
        # The template split once around its placeholders: a render is a join of constants and
        # two computed parts.
        parts = [b""]  # slot 0: the response head, once the length is known
        self._remark_slots = []
        self._count_slots = []
        rest = template
        while True:
            positions = [(rest.find(p), p) for p in (REMARKS_PLACEHOLDER, COUNT_PLACEHOLDER)]
            positions = [(i, p) for i, p in positions if i >= 0]
            if not positions:
                parts.append(rest.encode())
                break
            i, placeholder = min(positions)
            parts.append(rest[:i].encode())
            slots = self._remark_slots if placeholder == REMARKS_PLACEHOLDER else self._count_slots
            slots.append(len(parts))
            parts.append(b"")
            rest = rest[i + len(placeholder):]
        self._parts = parts
        self._fixed_length = sum(len(p) for p in parts)
        # Remarks change rarely compared with reads: reuse the last rendering while they match.
        self._last = (None, b"")
        self.view = RedisCall(VIEW_COMMANDS, 2, self.render_view)

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

    def sign(self, body, content_type):
        """POST /guestbook: a RedisCall that appends the remark, or a 400 page."""
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


def _finish_sign(replies):
    if replies is None or replies[0].__class__ is not int:
        return UNAVAILABLE
    return THANKS
