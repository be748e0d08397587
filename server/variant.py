"""What a request costs, apart from how connections reach the core: the variant.

faithful: the per-request work of the article's C servers (ZeroHTTPd): the guestbook template
read from disk on every request, three Redis round trips for the page (LRANGE, INCRBY, GET, each
waiting for its reply), every static file stat'ed, opened and sent with sendfile, and Redis
connections held as each C server holds them (one per client where it opens one per client).

lean: the same architectures with that work trimmed: the page in one round trip (LRANGE and INCR
written together), the template and static responses kept in memory, Redis connections shared
by the clients of a process.

The core (app, guestbook, static) asks the variant what to do, the blocking servers ask it how
to hold their Redis connections (redis_link.py), and the event loop likewise; the architecture
modules never look at it.
"""

VARIANTS = ("lean", "faithful")


class Variant:
    __slots__ = ("name", "round_trips", "cache_pages", "redis_per_client", "connect_early",
                 "lookup_once")

    def __init__(self, name, round_trips, cache_pages, redis_per_client, connect_early, lookup_once):
        self.name = name
        # Redis round trips of one guestbook page: 1 (pipelined) or 3 (one command each).
        self.round_trips = round_trips
        # Template parsed once and static responses kept in memory, or read from disk (the
        # template) and sent with sendfile (static files) on every request.
        self.cache_pages = cache_pages
        # Where clients of one process share Redis (threads, event loops): a pool or one
        # pipelined connection, or a connection of its own for each client, closed with it.
        self.redis_per_client = redis_per_client
        # Connect when the process (iterative, preforked child, forking child) or the client
        # (threads) starts, as ZeroHTTPd does, rather than on the first command.
        self.connect_early = connect_early
        # Redis' host name looked up once per server (before any fork) and its address used from
        # then on, as ZeroHTTPd takes an IPv4 address; or looked up on every connect.
        self.lookup_once = lookup_once

    def __repr__(self):
        return f"Variant({self.name})"


LEAN = Variant("lean", round_trips=1, cache_pages=True, redis_per_client=False, connect_early=False,
               lookup_once=False)
FAITHFUL = Variant("faithful", round_trips=3, cache_pages=False, redis_per_client=True,
                   connect_early=True, lookup_once=True)
_BY_NAME = {LEAN.name: LEAN, FAITHFUL.name: FAITHFUL}


def variant_of(name):
    """The Variant called `name` (a Variant is returned as it is)."""
    if name.__class__ is Variant:
        return name
    return _BY_NAME[name]
