"""Servers side by side in one result (sweep.server), end to end on real containers: the Python
servers faithful and lean always; with the article's C servers too when their image is here; an
optional server whose image is missing left out with a note, one that is not optional refused."""
from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest
import yaml

from labcli import image_exists, lab, leftovers  # tests/integration/labcli.py

pytestmark = pytest.mark.timeout(600)
HOST_NOISE = ("unstable", "host busy", "generator-bound")
# An image no machine has: its server is left out, or refused.
ABSENT = "zerolab/zltest-absent-server"
TINY = {"constraints": {"profile": "article"}, "repeats": 1,
        "load": {"connections": 20, "threads": 2, "duration_s": 2, "warmup_s": 1,
                 "mix": {"guestbook_get": 1}}}

C_IMAGE = image_exists("zerolab/zerohttpd:latest")











def scenario_file(tmp_path: Path, name: str, **fields) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**TINY, **fields}))
    return path


def only_result(results: Path, name: str) -> dict:
    [path] = list((results / name).glob("*/result.json"))
    return json.loads(path.read_text())


def assert_measured(run: dict) -> None:
    """A figure, verified, and no fault of the lab's (the host's noise is printed, not failed on)."""
    assert run["status"] == "complete", run.get("error")
    assert run["verification"]["passed"] and run["requests"] > 0
    v = run["validity"]
    assert not [r for r in v["untrusted_reasons"] if not r.startswith(HOST_NOISE)], v
    if not v["trusted"]:
        print(f"{run['id']}: untrusted: {v['untrusted_reasons']}")


def test_python_faithful_and_lean_side_by_side_in_one_result(results, tmp_path):
    """One environment for both variants (the server restarted per run); an optional server
    whose image is not here is left out, said on the console and in the result."""
    path = scenario_file(tmp_path, "side-python", sweep={
        "arch": ["preforked", "epoll"],
        "server": [{"variant": "faithful"}, {"variant": "lean"},
                   {"impl": "image", "image": ABSENT, "name": "absent", "serves": ["guestbook_get"],
                    "optional": True}]})
    out = lab(["scenario", str(path)], results, timeout=540)
    assert out.returncode == 0, out.stdout + out.stderr
    note = f"absent cells left out: no {ABSENT} image; build or pull it on this machine first"
    assert note in out.stdout
    doc = only_result(results, "side-python")
    assert doc["status"] == "complete"
    assert any(n.endswith(note) for n in doc["notes"]), doc["notes"]
    assert [r["id"] for r in doc["runs"]] == ["preforked-faithful-c20-1", "epoll-faithful-c20-1",
                                              "preforked-c20-1", "epoll-c20-1"]
    assert [(r["params"]["impl"], r["params"]["variant"]) for r in doc["runs"]] == [
        ("python", "faithful")] * 2 + [("python", "lean")] * 2
    for run in doc["runs"]:
        assert_measured(run)
    states = [r["start_state"] for r in doc["runs"]]
    assert len({s["environment"] for s in states}) == 1
    assert len({s["server"]["id"] for s in states}) == 4  # a fresh server per run
    assert [c["cell"] for c in doc["cells"]] == [r["id"].removesuffix("-1") for r in doc["runs"]]
    assert not leftovers()


@pytest.mark.skipif(not C_IMAGE, reason="no zerolab/zerohttpd image: build it with make images "
                    "ZEROHTTPD=/path/to/built/checkout (a checkout of github.com/shuveb/zerohttpd "
                    "built with its own `make all`)")
def test_python_and_the_c_servers_side_by_side_in_one_result(results, tmp_path):
    """Two architectures that run the article's load x one level x the three servers: the
    Python servers' environment, then the C servers' own, the first torn down before the second."""
    path = scenario_file(tmp_path, "side-three", sweep={
        "arch": ["forking", "preforked"],
        "server": [{"variant": "faithful"}, {"variant": "lean"},
                   {"impl": "zerohttpd", "serves": ["guestbook_get", "guestbook_post"], "optional": True}]})
    out = lab(["scenario", str(path)], results, timeout=540)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "cells left out" not in out.stdout
    doc = only_result(results, "side-three")
    assert [r["id"] for r in doc["runs"]] == [
        "forking-faithful-c20-1", "preforked-faithful-c20-1", "forking-c20-1", "preforked-c20-1",
        "zerohttpd-forking-c20-1", "zerohttpd-preforked-c20-1"]
    assert [r["params"]["impl"] for r in doc["runs"]] == ["python"] * 4 + ["zerohttpd"] * 2
    for run in doc["runs"]:
        assert_measured(run)
    python, c = doc["runs"][:4], doc["runs"][4:]
    environments = [r["start_state"]["environment"] for r in doc["runs"]]
    assert len(set(environments[:4])) == 1 and len(set(environments[4:])) == 1
    assert environments[0] != environments[4]
    assert not c[0]["start_state"]["environment_reused"] and c[1]["start_state"]["environment_reused"]
    client = docker.from_env()
    zerohttpd = client.images.get("zerolab/zerohttpd:latest").id
    assert {r["provenance"]["images"]["server"] for r in c} == {zerohttpd}
    assert {r["provenance"]["images"]["server"] for r in python} == {client.images.get("zerolab/server:latest").id}
    # Only what the C servers are held to was verified.
    assert [ch["name"] for ch in c[0]["verification"]["checks"]] == ["guestbook_get", "guestbook_post"]
    assert not leftovers()


def test_a_server_that_is_not_optional_and_has_no_image_is_refused(results, tmp_path):
    path = scenario_file(tmp_path, "side-refused", sweep={
        "server": [{"variant": "lean"},
                   {"impl": "image", "image": ABSENT, "name": "absent", "serves": ["guestbook_get"]}]})
    out = lab(["scenario", str(path)], results, timeout=540)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "cells left out" not in out.stdout
    doc = only_result(results, "side-refused")
    failed = [r for r in doc["runs"] if r["id"] == "absent-c20-1"]
    problems = " ".join(doc.get("problems") or []) + " ".join(r.get("error") or "" for r in failed)
    assert f"image {ABSENT} not found" in problems, doc
    assert not leftovers()
