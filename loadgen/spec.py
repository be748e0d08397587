"""The load specification: what one run asks of its generators, and how it splits over several."""
from dataclasses import asdict, dataclass, field, fields, replace
from urllib.parse import urlsplit

TOOLS = ("wrk", "wrk2", "oha")
MODES = ("closed", "open")
KINDS = ("guestbook_get", "guestbook_post", "static")


class SpecError(ValueError):
    """A LoadSpec field is wrong; `field` names it."""

    def __init__(self, field_name, message):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def _default_mix():
    return {"guestbook_get": 1, "guestbook_post": 0, "static": 0}


@dataclass(frozen=True)
class LoadSpec:
    tool: str = "wrk"
    mode: str = "closed"
    url: str = "http://127.0.0.1:8000"
    connections: int = 100
    threads: int = 2
    duration_s: float = 10
    rate: int | None = None
    timeout_s: float = 2
    mix: dict = field(default_factory=_default_mix)
    static_path: str = "/index.html"

    def __post_init__(self):
        _validate(self)

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise SpecError("spec", f"expected an object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SpecError(unknown[0], f"unknown field (known: {', '.join(sorted(names))})")
        return cls(**data)

    def to_dict(self):
        return asdict(self)

    def kinds(self):
        """Request kinds with a positive weight, in a fixed order."""
        return [k for k in KINDS if self.mix.get(k, 0) > 0]

    def split(self, n):
        """This spec's share for each of n generators: connections and rate divided,
        the remainder going to the first ones."""
        if not isinstance(n, int) or n < 1:
            raise SpecError("generators", f"must be a positive integer, got {n!r}")
        if self.connections < n:
            raise SpecError("connections", f"{self.connections} cannot be split over {n} generators")
        if self.rate is not None and self.rate < n:
            raise SpecError("rate", f"{self.rate} cannot be split over {n} generators")
        conns = divide(self.connections, n)
        rates = divide(self.rate, n) if self.rate is not None else [None] * n
        return [replace(self, connections=c, rate=r, threads=min(self.threads, c))
                for c, r in zip(conns, rates)]


def divide(total, n):
    """total split into n integer parts, the remainder one each to the first parts."""
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _validate(s):
    if s.tool not in TOOLS:
        raise SpecError("tool", f"{s.tool!r} is not one of {', '.join(TOOLS)}")
    if s.mode not in MODES:
        raise SpecError("mode", f"{s.mode!r} is not one of {', '.join(MODES)}")
    parts = urlsplit(s.url) if isinstance(s.url, str) else None
    if not parts or parts.scheme != "http" or not parts.hostname:
        raise SpecError("url", f"{s.url!r} is not an http://host[:port] URL")
    if parts.path not in ("", "/"):
        raise SpecError("url", f"{s.url!r} must be the server's base URL, without a path")
    for name in ("connections", "threads"):
        v = getattr(s, name)
        if not _is_int(v) or v < 1:
            raise SpecError(name, f"must be a positive integer, got {v!r}")
    if s.threads > s.connections:
        raise SpecError("threads", f"{s.threads} threads need at least as many connections "
                                   f"(connections is {s.connections})")
    for name in ("duration_s", "timeout_s"):
        v = getattr(s, name)
        # wrk and wrk2 only take whole seconds
        if not _is_number(v) or v < 1 or v != int(v):
            raise SpecError(name, f"must be a whole number of seconds >= 1, got {v!r}")
    if s.rate is not None and (not _is_int(s.rate) or s.rate < 1):
        raise SpecError("rate", f"must be a positive integer (requests/second) or null, got {s.rate!r}")
    if s.mode == "open" and s.rate is None:
        raise SpecError("rate", "open mode needs a rate (requests/second over all connections)")
    if s.mode == "closed" and s.rate is not None:
        raise SpecError("rate", "closed mode runs as fast as the connections go; set rate to null "
                                "or use mode: open")
    if s.tool == "wrk" and s.mode == "open":
        raise SpecError("mode", "Debian's wrk has no rate option; use wrk2 or oha for open mode")
    if s.tool == "wrk2" and s.mode == "closed":
        raise SpecError("mode", "wrk2 always runs at a fixed rate; use mode: open, or wrk/oha "
                                "for closed mode")
    _validate_mix(s)
    if not isinstance(s.static_path, str) or not s.static_path.startswith("/"):
        raise SpecError("static_path", f"must be a path starting with '/', got {s.static_path!r}")


def _validate_mix(s):
    if not isinstance(s.mix, dict):
        raise SpecError("mix", f"must be an object of weights, got {s.mix!r}")
    unknown = sorted(set(s.mix) - set(KINDS))
    if unknown:
        raise SpecError(f"mix.{unknown[0]}", f"unknown request kind (known: {', '.join(KINDS)})")
    for k, w in s.mix.items():
        if not _is_number(w) or w < 0:
            raise SpecError(f"mix.{k}", f"weight must be a number >= 0, got {w!r}")
    active = s.kinds()
    if not active:
        raise SpecError("mix", "at least one request kind needs a positive weight")
    if s.tool == "oha" and s.connections < len(active):
        # oha runs one process per kind, each with at least one connection
        raise SpecError("connections", f"oha needs at least one connection per request kind "
                                       f"({len(active)} kinds, {s.connections} connections)")
    if s.tool == "oha" and s.rate is not None and s.rate < len(active):
        raise SpecError("rate", f"oha needs a rate of at least 1/s per request kind "
                                f"({len(active)} kinds, rate {s.rate})")
