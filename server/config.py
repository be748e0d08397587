"""The command line, shared by every architecture."""
import os

from server.variant import VARIANTS

MAX_READ_TIMEOUT = 86_400
ARCHITECTURES = ("iterative", "forking", "preforked", "threaded", "prethreaded", "poll", "epoll")


class Config:
    """The parsed options. A plain class, not a dataclass: dataclasses imports inspect (and
    with it ast, dis, tokenize), over a megabyte that every forked child would carry."""

    __slots__ = ("arch", "host", "port", "redis_host", "redis_port", "workers", "backlog", "root",
                 "read_timeout", "variant", "edge_triggered")

    # Only edge_triggered has a default (from_argv() omits it when off): parse_args() owns the
    # other defaults.
    def __init__(self, arch, host, port, redis_host, redis_port, workers, backlog, root, read_timeout,
                 variant, edge_triggered=False):
        self.arch = arch
        self.host = host
        self.port = port
        self.redis_host = redis_host
        self.redis_port = redis_port
        self.workers = workers
        self.backlog = backlog
        self.root = root
        self.read_timeout = read_timeout
        self.variant = variant
        self.edge_triggered = edge_triggered

    def to_argv(self):
        """The options in their canonical command-line form, every one spelled out."""
        argv = []
        for name, convert in _OPTIONS.items():
            value = getattr(self, name)
            argv += [_FLAGS[name], repr(value) if convert is float else str(value)]
        if self.edge_triggered:
            argv.append("--edge-triggered")
        return argv

    @classmethod
    def from_argv(cls, argv):
        """The inverse of to_argv(), for a command line that parse_args() has already checked;
        None when argv is not in that exact form."""
        values = {}
        rest = list(argv)
        if rest and rest[-1] == "--edge-triggered":
            values["edge_triggered"] = True
            rest.pop()
        if len(rest) != 2 * len(_OPTIONS):
            return None
        for (name, convert), flag, text in zip(_OPTIONS.items(), rest[::2], rest[1::2]):
            if flag != _FLAGS[name]:
                return None
            try:
                values[name] = convert(text)
            except ValueError:
                return None
        config = cls(**values)
        return None if config.problem() else config

    def problem(self):
        """What argparse's types cannot refuse on their own, or None: the same checks for
        parse_args() and from_argv()."""
        if self.arch not in ARCHITECTURES:
            return f"--arch must be one of {', '.join(ARCHITECTURES)}"
        if self.variant not in VARIANTS:
            return f"--variant must be one of {', '.join(VARIANTS)}"
        for name, low in (("port", 0), ("redis_port", 1)):
            if not low <= getattr(self, name) <= 65535:
                return f"{_FLAGS[name]} must be between {low} and 65535"
        if self.workers < 1:
            return "--workers must be at least 1"
        if self.backlog < 0:
            return "--backlog must be 0 or more"
        if not os.path.isdir(os.path.join(self.root, "public")):
            return f"--root {self.root}: no public/ folder in it to serve"
        # nan and inf parse as floats but make no timeout; the kernel takes at most a day here.
        if not 0 < self.read_timeout <= MAX_READ_TIMEOUT:
            return f"--read-timeout must be a number of seconds above 0 and at most {MAX_READ_TIMEOUT:,}"
        return None

    def __repr__(self):
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Config({fields})"

    def __eq__(self, other):
        if other.__class__ is not Config:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)


# Every option that takes a value, in to_argv() order, with the type it converts to.
_OPTIONS = {"arch": str, "host": str, "port": int, "redis_host": str, "redis_port": int,
            "workers": int, "backlog": int, "root": str, "read_timeout": float, "variant": str}
# Their command-line spelling, built once for to_argv() and from_argv().
_FLAGS = {name: f"--{name.replace('_', '-')}" for name in _OPTIONS}


def parse_args(argv=None):
    # Imported here, not above: a server that forks per connection restarts without it (see
    # server/__main__.py), and argparse brings gettext and shutil, with its compression modules.
    import argparse

    from server.app import PACKAGE_ROOT

    parser = argparse.ArgumentParser(
        prog="python -m server",
        description="The guestbook server of the article, in one of its seven architectures.")
    parser.add_argument("--arch", required=True, choices=ARCHITECTURES)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--redis-host", default="127.0.0.1")
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--workers", type=int, default=100,
                        help="children (preforked) or threads (prethreaded); default 100")
    parser.add_argument("--backlog", type=int, default=10, help="listen() backlog; default 10")
    parser.add_argument("--root", default=PACKAGE_ROOT,
                        help="folder holding public/ (static files) and optionally "
                             "templates/guestbook/index.html; default: the package's own")
    parser.add_argument("--read-timeout", type=float, default=5.0,
                        help="seconds a client has to send its whole request; default 5")
    parser.add_argument("--variant", default="lean", choices=VARIANTS,
                        help="faithful: the per-request work of the article's C servers (three "
                             "Redis round trips, template and files read per request, their Redis "
                             "connections); lean: that work trimmed; default lean")
    parser.add_argument("--edge-triggered", action="store_true",
                        help="epoll only: edge-triggered instead of level-triggered")
    args = parser.parse_args(argv)
    config = Config(**vars(args))
    problem = config.problem()
    if problem:
        parser.error(problem)
    return config
