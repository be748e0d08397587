"""Servers other than the lab's own, end to end on real containers: the shipped nginx ceiling, an
image on another port with its own command, one that dies on start, and the article's C servers
from a checkout the user built (ZEROHTTPD=/path/to/zerohttpd; skipped without one)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker
import docker.errors
import pytest
import yaml

from lab.scenario import ROOT

from labcli import PREFIX, lab, leftovers  # tests/integration/labcli.py

pytestmark = pytest.mark.timeout(420)
HOST_NOISE = ("unstable", "host busy", "generator-bound")
STATIC_ONLY = {"guestbook_get": 0, "guestbook_post": 0, "static": 1}


def scenario_file(tmp_path: Path, name: str, base: str | None = None, **fields) -> Path:
    data = yaml.safe_load((ROOT / "scenarios" / f"{base}.yaml").read_text()) if base else {}
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def only_result(results: Path, name: str) -> dict:
    [path] = list((results / name).glob("*/result.json"))
    return json.loads(path.read_text())


def assert_no_lab_fault(run: dict) -> None:
    """The server did not fail and the lab's own checks hold; the host's noise, and a generator
    that a fast server keeps busy, are printed, not failed on."""
    v = run["validity"]
    assert not v["server_failed"], v
    assert not [r for r in v["untrusted_reasons"] if not r.startswith(HOST_NOISE)], v
    if not v["trusted"]:
        print(f"{run['id']}: untrusted: {v['untrusted_reasons']}")


def image_id(ref: str) -> str:
    return docker.from_env().images.get(ref).id


# ------------------------------------------------------------------ nginx, the ceiling


def test_the_nginx_ceiling_runs_end_to_end(results, tmp_path):
    path = scenario_file(tmp_path, "nginx-e2e", base="nginx-static", repeats=1,
                         load={"duration_s": 2, "warmup_s": 1}, sweep={"connections": [20, 200]})
    out = lab(["scenario", str(path)], results)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = only_result(results, "nginx-e2e")
    assert doc["status"] == "complete"
    assert [r["id"] for r in doc["runs"]] == ["nginx-c20-1", "nginx-c200-1"]
    assert doc["environment"]["images"]["server"] == image_id("zerolab/nginx:latest")
    assert doc["environment"]["constraints"]["ZL_SERVER_IMPL"] == "image"
    for run in doc["runs"]:
        assert run["status"] == "complete", run.get("error")
        # Only what it serves was verified: a file and a 404, no guestbook.
        assert [c["name"] for c in run["verification"]["checks"]] == ["static", "not_found"]
        assert run["verification"]["passed"]
        assert run["params"]["impl"] == "image" and run["params"]["serves"] == ["static"]
        assert run["params"]["image"] == "zerolab/nginx" and run["params"]["arch"] == "nginx"
        sent = run["generators"][0]["result"]["requests_by_kind"]
        assert sent["static"] > 0 and not sent.get("guestbook_get") and not sent.get("guestbook_post")
        assert run["requests"] > 0 and run["errors"]["non_2xx_3xx"] == 0
        assert run["redis"]["visitor_count_delta"] == 0  # nothing touched the guestbook
        assert_no_lab_fault(run)
    # One environment, the server restarted for the second level.
    a, b = (r["start_state"] for r in doc["runs"])
    assert a["environment"] == b["environment"] and a["server"]["id"] != b["server"]["id"]
    assert not leftovers()


def test_an_image_on_another_port_with_its_own_command(results, tmp_path):
    """The port reaches the generators' agents (ZL_SERVER_PORT) and the command every word."""
    command = ["sh", "-c", "sed 's/listen 8000 /listen 8080 /' /etc/nginx/zerolab.conf > /tmp/n.conf"
                           " && exec nginx -e stderr -c /tmp/n.conf"]
    path = scenario_file(
        tmp_path, "port8080",
        server={"impl": "image", "image": "zerolab/nginx", "name": "nginx8080", "port": 8080,
                "command": command, "ready_path": "/index.html", "serves": ["static"]},
        load={"connections": 10, "threads": 1, "duration_s": 2, "warmup_s": 0, "mix": STATIC_ONLY},
        constraints={"profile": "article"})
    out = lab(["scenario", str(path)], results)
    assert out.returncode == 0, out.stdout + out.stderr
    [run] = only_result(results, "port8080")["runs"]
    assert run["status"] == "complete", run.get("error")
    assert run["id"] == "nginx8080-c10-1" and run["params"]["command"] == command
    assert run["generators"][0]["spec"]["url"] == "http://server:8080"
    assert run["verification"]["passed"] and run["requests"] > 0
    overrides = Path(tempfile.gettempdir()) / "zerolab-compose"
    assert not list(overrides.glob(f"{PREFIX}-port8080-*"))  # its override went
    assert not leftovers()


def test_a_server_that_dies_on_start_is_a_failed_run_with_its_reason(results, tmp_path):
    path = scenario_file(
        tmp_path, "dies",
        server={"impl": "image", "image": "zerolab/nginx", "name": "dies", "serves": ["static"],
                "command": ["sh", "-c", "echo out of luck >&2; exit 3"]},
        load={"connections": 10, "threads": 1, "duration_s": 2, "warmup_s": 0, "mix": STATIC_ONLY})
    out = lab(["scenario", str(path)], results)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    [run] = only_result(results, "dies")["runs"]
    assert run["status"] == "failed" and run["failed_in"] == "preparing"
    assert "code 3" in run["error"] and "out of luck" in run["error"], run["error"]
    assert not leftovers()


# ------------------------------------------------------------------ the article's C servers

ZEROHTTPD = os.environ.get("ZEROHTTPD", "")
ARCHS = ("iterative", "forking", "preforked", "threaded", "prethreaded", "poll", "epoll")


def build_zerohttpd(checkout: Path, tag: str = "latest") -> subprocess.CompletedProcess:
    env = os.environ | {"IMAGES": "zerohttpd", "ZEROHTTPD": str(checkout), "ZL_TAG": tag}
    return subprocess.run(["bash", str(ROOT / "docker" / "build-images.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not ZEROHTTPD, reason="set ZEROHTTPD=/path/to/zerohttpd (a checkout of "
                    "github.com/shuveb/zerohttpd built with its own `make all`) to run the article's "
                    "C servers in the lab")
def test_the_c_servers_from_a_users_checkout_run_end_to_end(results, tmp_path):
    built = build_zerohttpd(Path(ZEROHTTPD))
    assert built.returncode == 0, built.stdout + built.stderr
    labels = docker.from_env().images.get("zerolab/zerohttpd:latest").labels
    assert labels["io.zerolab.zerohttpd.checkout"] == str(Path(ZEROHTTPD).resolve())
    # No POSTs in the load: their answers carry no Content-Length (wrk counts read errors), and
    # past about 240 remarks the guestbook page outgrows the C servers' 16 KiB buffer and they
    # crash (the next test). Verification still posts one remark.
    path = scenario_file(
        tmp_path, "zerohttpd-e2e", server={"impl": "zerohttpd"}, constraints={"profile": "article"},
        load={"connections": 20, "threads": 2, "duration_s": 2, "warmup_s": 1,
              "mix": {"guestbook_get": 8, "guestbook_post": 0, "static": 2}},
        sweep={"arch": ["forking", "preforked"]})
    out = lab(["scenario", str(path)], results)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = only_result(results, "zerohttpd-e2e")
    assert [r["id"] for r in doc["runs"]] == ["zerohttpd-forking-c20-1", "zerohttpd-preforked-c20-1"]
    assert doc["environment"]["images"]["server"] == image_id("zerolab/zerohttpd:latest")
    for run in doc["runs"]:
        assert run["status"] == "complete", run.get("error")
        assert [c["name"] for c in run["verification"]["checks"]] == [
            "guestbook_get", "guestbook_post", "static", "not_found"]
        assert run["verification"]["passed"], run["verification"]
        assert run["params"]["impl"] == "zerohttpd" and run["params"]["workers"] is None
        assert run["requests"] > 0 and run["redis"]["visitor_count_delta"] > 0
        # SIGPIPE's default kills them when the warm-up's connections close: measured afresh
        restart = run["warmup_restart"]
        assert restart["server"]["id"] != run["start_state"]["server"]["id"]
        assert_no_lab_fault(run)
    assert not leftovers()


@pytest.mark.skipif(not ZEROHTTPD, reason="set ZEROHTTPD=/path/to/zerohttpd (a checkout of "
                    "github.com/shuveb/zerohttpd built with its own `make all`) to run the article's "
                    "C servers in the lab")
def test_a_c_server_that_fails_under_load_is_a_result(results, tmp_path):
    """Guestbook POSTs: the iterative server's answers to them have no Content-Length, and once
    the page outgrows its buffer it dies (SIGSEGV). The run is recorded as the server's failure;
    the lab goes on to the next run with a fresh server."""
    built = build_zerohttpd(Path(ZEROHTTPD))
    assert built.returncode == 0, built.stdout + built.stderr
    path = scenario_file(
        tmp_path, "zerohttpd-fails", server={"impl": "zerohttpd"}, constraints={"profile": "article"},
        load={"connections": 20, "threads": 2, "duration_s": 3, "warmup_s": 0,
              "mix": {"guestbook_get": 1, "guestbook_post": 1, "static": 0}},
        sweep={"arch": ["iterative", "preforked"]})
    out = lab(["scenario", str(path)], results)
    assert out.returncode in (0, 1), out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    runs = only_result(results, "zerohttpd-fails")["runs"]
    assert len(runs) == 2
    for run in runs:
        # Either a figure marked as the server's failure, or a failed run with the reason.
        if run["status"] == "complete":
            assert run["validity"]["server_failed"], run["validity"]
        else:
            assert run["status"] == "failed" and run["error"], run
    servers = [r["start_state"]["server"]["id"] for r in runs if (r.get("start_state") or {}).get("server")]
    assert len(set(servers)) == len(servers)  # each run had a server of its own
    assert not leftovers()


def fake_checkout(root: Path, missing_library: bool = True, skip: str | None = None) -> Path:
    """A checkout shaped like ZeroHTTPd's whose binaries link a library no image has."""
    root.mkdir()
    (root / "public").mkdir()
    (root / "public" / "index.html").write_text("<p>hi</p>\n")
    (root / "templates" / "guestbook").mkdir(parents=True)
    (root / "templates" / "guestbook" / "index.html").write_text("$GUEST_REMARKS$\n")
    (root / "zlmissing.c").write_text("int zl_missing(void) { return 0; }\n")
    (root / "main.c").write_text("int zl_missing(void);\nint main(void) { return zl_missing(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(root / "libzlmissing.so"), str(root / "zlmissing.c")],
                   check=True)
    for arch in ARCHS:
        if arch != skip:
            subprocess.run(["gcc", "-o", str(root / arch), str(root / "main.c"), f"-L{root}", "-lzlmissing"],
                           check=True)
    return root


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to make a binary that cannot run")
def test_a_c_server_that_cannot_run_in_the_image_is_refused_at_build_time(tmp_path):
    client = docker.from_env()
    before = {c.id for c in client.containers.list(all=True)}
    built = build_zerohttpd(fake_checkout(tmp_path / "zerohttpd"), tag="zltest-refused")
    assert built.returncode == 1, built.stdout + built.stderr
    # The failed build step leaves no container behind.
    assert {c.id for c in client.containers.list(all=True)} - before == set()
    assert "iterative cannot run on this image" in built.stderr
    assert "libzlmissing.so => not found" in built.stderr
    assert "make all" in built.stderr and "refused" in built.stderr
    with pytest.raises(docker.errors.ImageNotFound):
        docker.from_env().images.get("zerolab/zerohttpd:zltest-refused")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc for the stand-in binaries")
def test_a_checkout_without_all_seven_servers_is_refused_before_any_build(tmp_path):
    built = build_zerohttpd(fake_checkout(tmp_path / "zerohttpd", skip="poll"), tag="zltest-refused")
    assert built.returncode == 1
    assert "no executable poll: run 'make all' in the checkout" in built.stderr
    assert "==> images" not in built.stdout
