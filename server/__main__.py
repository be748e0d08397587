"""python -m server --arch ARCH [...]: see server/config.py."""
import importlib
import os
import sys

from server.config import Config, parse_args
from server.runtime import ServerStop, raise_nofile_limit

# Architectures that start over in a fresh interpreter once the command line is checked: a
# process that forks per connection has every child copy its page tables and tear them down on
# exit, so what argparse and its imports leave in memory (about 0.7 MB and 30 mappings) would
# cost every request.
LEAN_ARCHITECTURES = ("forking",)
# Set on the restart: the arguments are parse_args()'s own canonical output, read back without
# argparse.
CHECKED = "ZEROLAB_SERVER_ARGV_CHECKED"


def main(argv=None):
    config = None
    if argv is None and os.environ.pop(CHECKED, None) == "1":
        config = Config.from_argv(sys.argv[1:])
    if config is None:
        config = parse_args(argv)
        if argv is None and config.arch in LEAN_ARCHITECTURES:
            restart(config)
    raise_nofile_limit()
    module = importlib.import_module(f"server.arch.{config.arch}")
    try:
        module.run(config)
    except ServerStop:  # a stop signal that arrived between two steps of the start-up
        pass
    return 0


def restart(config):
    """exec() this same `python [options] -m server` with the canonical arguments: the same
    process (pid, parent, descriptors), without the modules that parsing imported."""
    command = sys.orig_argv
    try:
        at = command.index("-m")
    except ValueError:
        return  # not started as `-m server`: go on in this interpreter
    if command[at + 1:at + 2] != ["server"]:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *command[1:at + 2], *config.to_argv()],
                  dict(os.environ, **{CHECKED: "1"}))
    except OSError as error:  # no usable sys.executable: serve from this interpreter as it is
        print(f"zerolab server: not restarting lean ({error}); serving as started",
              file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
