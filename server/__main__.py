"""python -m server --arch ARCH [...]: see server/config.py."""
import importlib
import sys

from server.config import parse_args


def main(argv=None):
    config = parse_args(argv)
    module = importlib.import_module(f"server.arch.{config.arch}")
    module.run(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
