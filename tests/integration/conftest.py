"""Fixtures for tests against real processes on 127.0.0.1: a throwaway redis-server and the
server in each architecture (the processes themselves are in procs.py). Everything started here
is stopped at teardown, even on failure."""
import os
import shutil

import pytest

from lab.scenario import ROOT
from server.config import ARCHITECTURES

from procs import RedisServer, ServerProcess  # tests/integration/procs.py, on sys.path via pytest
import labcli  # tests/integration/labcli.py


@pytest.fixture
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def site_root(tmp_path):
    """A --root with the package's assets plus a sub-folder, a large file, and a symlink that
    points out of the public folder at a secret."""
    root = tmp_path / "site"
    shutil.copytree(os.path.join(ROOT, "server", "public"), root / "public")
    shutil.copytree(os.path.join(ROOT, "server", "templates"), root / "templates")
    (root / "public" / "docs").mkdir()
    (root / "public" / "docs" / "index.html").write_text("<p>docs index</p>\n")
    (root / "public" / "docs" / "notes.txt").write_text("plain notes\n")
    (root / "public" / "big.bin").write_bytes(os.urandom(1 << 20))
    (tmp_path / "secret.txt").write_text("TOP-SECRET\n")
    (root / "secret.txt").write_text("TOP-SECRET\n")
    os.symlink(tmp_path / "secret.txt", root / "public" / "leak.txt")
    os.symlink(tmp_path, root / "public" / "outside")
    return root


@pytest.fixture
def server_factory(redis_server, site_root):
    """Start servers with chosen options (all stopped at teardown)."""
    started = []

    def start(arch, **options):
        options.setdefault("root", site_root)
        options.setdefault("workers", 8)
        options.setdefault("backlog", 128)
        server = ServerProcess(arch, redis_server.port, **options)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(params=ARCHITECTURES)
def arch(request):
    return request.param


@pytest.fixture
def running_server(server_factory, arch):
    """The server in each of the seven architectures, with a 1 s read timeout."""
    return server_factory(arch, read_timeout=1)


@pytest.fixture
def results(tmp_path):
    """Where `lab ... --results` writes; whatever the test started under the prefix is removed."""
    yield tmp_path / "results"
    labcli.cleanup()
