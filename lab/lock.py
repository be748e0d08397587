"""One controller at a time per host: two sweeps pinned to the same CPUs would measure each other.

An advisory lock (flock) on a file that names its holder. The kernel releases it when the holder
exits, however it exits (a SIGKILLed controller included), so a stale lock never blocks anyone.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import tempfile
from pathlib import Path

from lab.results import now_iso


class ControllerBusy(RuntimeError):
    """Another controller holds the host; the message names it."""


def lock_path() -> Path:
    """ZL_LOCK_FILE, or one file per host in the temporary directory."""
    return Path(os.environ.get("ZL_LOCK_FILE") or Path(tempfile.gettempdir()) / "zerolab-controller.lock")


class ControllerLock:
    def __init__(self, what: str, path: Path | None = None):
        self.what = what  # e.g. "scenario smoke"
        self.path = path or lock_path()
        self._file = None

    def __enter__(self) -> "ControllerLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = _describe(f.read())
            f.close()
            raise ControllerBusy(
                f"another zerolab controller is running on this host: {holder}. One controller at a "
                f"time keeps two runs off the same CPUs; wait for it to finish, or stop it "
                f"(Ctrl-C in its terminal, or kill its pid) and run this again. Lock: {self.path}") from None
        f.seek(0)
        f.truncate()
        json.dump({"pid": os.getpid(), "what": self.what, "host": socket.gethostname(),
                   "since": now_iso(), "command": " ".join(sys.argv)}, f)
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is None:
            return
        try:
            self._file.seek(0)
            self._file.truncate()
            fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._file.close()
            self._file = None


def _describe(text: str) -> str:
    try:
        h = json.loads(text)
        return f"pid {h['pid']} ({h['what']}, since {h['since']}, `{h['command']}`)"
    except (ValueError, KeyError, TypeError):
        return "a process that has not written its name yet"

