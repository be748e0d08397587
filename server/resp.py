"""Redis commands as RESP bytes, and the call an answer waits on (no sockets here)."""


def encode_command(*args):
    """One command in RESP, the form Redis reads: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


class RedisCall:
    """Commands to send to Redis in one write, how many replies they produce, and what turns
    those replies (or None when Redis could not be reached) into the response bytes, or into
    the next RedisCall when the answer needs another round trip."""

    __slots__ = ("commands", "replies", "finish")

    def __init__(self, commands, replies, finish):
        self.commands = commands
        self.replies = replies
        self.finish = finish
