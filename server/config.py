"""The command line, shared by every architecture."""
import argparse
import dataclasses

ARCHITECTURES = ("iterative", "forking", "preforked", "threaded", "prethreaded", "poll", "epoll")


@dataclasses.dataclass
class Config:
    arch: str
    host: str = "0.0.0.0"
    port: int = 8000
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    workers: int = 100
    backlog: int = 10
    root: str = ""
    read_timeout: float = 5.0
    edge_triggered: bool = False


def parse_args(argv=None):
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
    parser.add_argument("--edge-triggered", action="store_true",
                        help="epoll only: edge-triggered instead of level-triggered")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.read_timeout <= 0:
        parser.error("--read-timeout must be positive")
    return Config(**vars(args))
