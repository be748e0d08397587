"""python -m server --arch ARCH [...]: see server/config.py."""
import importlib
import sys

from server.config import parse_args
from server.runtime import ServerStop, raise_nofile_limit


def main(argv=None):
    config = parse_args(argv)
    raise_nofile_limit()
    module = importlib.import_module(f"server.arch.{config.arch}")
    try:
        module.run(config)
    except ServerStop:  # a stop signal that arrived between two steps of the start-up
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
