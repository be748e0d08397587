"""`python -m lab scenario` end to end on real containers, real generators and a real Redis."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
import yaml

from lab.results import ACTIVE_STATES
from lab.scenario import ROOT

from labcli import PREFIX, lab, leftovers  # tests/integration/labcli.py

pytestmark = pytest.mark.timeout(420)


# Verdicts that depend on what else the shared host did meanwhile, not on the lab.
HOST_NOISE = ("unstable:", "host busy:")


def assert_measured_cleanly(run: dict) -> None:
    """The lab's own checks all pass: counts agree with Redis, no generator-bound figure, no
    skewed start, the server did not fail. A drifting window or a busy host are verdicts on the
    host's noise during the run, printed but not failed on."""
    v = run["validity"]
    assert not v["server_failed"], v
    lab_reasons = [r for r in v["untrusted_reasons"] if not r.startswith(HOST_NOISE)]
    assert not lab_reasons, v
    if not v["trusted"]:
        print(f"{run['id']}: untrusted because of the host: {v['untrusted_reasons']}")


def only_result(results: Path, name: str) -> tuple[Path, dict]:
    [path] = list((results / name).glob("*/result.json"))
    return path.parent, json.loads(path.read_text())


def write_scenario(tmp_path: Path, name: str, **fields) -> Path:
    base = yaml.safe_load((ROOT / "scenarios" / "smoke.yaml").read_text())
    for key, value in fields.items():
        if isinstance(value, dict):
            base.setdefault(key, {}).update(value)
        else:
            base[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def test_smoke_gives_a_valid_result_that_agrees_with_redis(results):
    out = lab(["scenario", "smoke"], results)
    assert out.returncode == 0, out.stdout + out.stderr
    directory, doc = only_result(results, "smoke")
    assert doc["schema_version"] == 3 and doc["status"] == "complete"
    env = doc["environment"]
    for key in ("engine", "cores", "kernel", "docker_version", "images", "git_commit"):
        assert env.get(key), key
    [run] = doc["runs"]
    assert run["status"] == "complete", run.get("error")
    assert_measured_cleanly(run)
    assert run["verification"]["passed"]

    # Two generators, and the merged figures are their sum.
    gens = run["generators"]
    assert len(gens) == 2 and all(g["raw_output"] and g["result"] for g in gens)
    assert run["requests"] == sum(g["result"]["requests"] for g in gens) > 0
    assert run["requests_per_sec"] > 0
    lat = run["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]

    # Redis saw what the generators sent, give or take one request in flight per connection.
    connections = run["params"]["connections"]
    sent = {}
    for g in gens:
        for kind, n in g["result"]["requests_by_kind"].items():
            sent[kind] = sent.get(kind, 0) + n
    assert sent["guestbook_get"] > 0 and sent["guestbook_post"] > 0 and sent["static"] > 0
    delta = run["redis"]["visitor_count_delta"]
    assert sent["guestbook_get"] - connections <= delta <= sent["guestbook_get"]
    remarks = run["redis"]["remarks_delta"]
    assert sent["guestbook_post"] - connections <= remarks <= sent["guestbook_post"]

    # Stats of every service, once a second; one index line; the console told the figure.
    with (directory / "stats.csv").open() as f:
        services = {row["service"] for row in csv.DictReader(f)}
    assert services == {"redis", "server", "loadgen"}
    index = list(csv.DictReader((results / "index.csv").open()))
    assert len(index) == 1 and index[0]["run_id"] == run["id"]
    assert index[0]["trusted"] == str(run["validity"]["trusted"])
    assert "req/s" in out.stdout
    assert not leftovers()


def test_failed_verification_stops_the_run_with_the_reason(results, tmp_path):
    path = write_scenario(tmp_path, "badstatic", load={"static_path": "/no-such-file.html"})
    out = lab(["scenario", str(path)], results)
    assert out.returncode == 1
    _, doc = only_result(results, "badstatic")
    [run] = doc["runs"]
    assert run["status"] == "failed"
    assert "verification failed" in run["error"] and "static" in run["error"]
    assert "requests_per_sec" not in run  # no load was run
    assert not leftovers()


def test_interrupt_keeps_finished_runs_and_the_same_command_resumes(results, tmp_path):
    path = write_scenario(tmp_path, "resume", repeats=2, generators=1,
                          load={"duration_s": 4, "warmup_s": 0})
    env = os.environ | {"ZL_PROJECT_PREFIX": PREFIX}
    proc = subprocess.Popen([sys.executable, "-m", "lab", "scenario", str(path), "--results", str(results)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            docs = list((results / "resume").glob("*/result.json"))
            if docs:
                runs = json.loads(docs[0].read_text())["runs"]
                if runs[0]["status"] == "complete" and runs[1]["status"] in ACTIVE_STATES:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("the first run never completed")
        time.sleep(4)  # into the second run's environment or load
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    directory, doc = only_result(results, "resume")
    assert doc["status"] == "interrupted"
    assert [r["status"] for r in doc["runs"]] == ["complete", "interrupted"]
    assert not leftovers()

    again = lab(["scenario", str(path)], results)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming: 1 already done" in again.stdout
    directory2, doc = only_result(results, "resume")
    assert directory2 == directory and doc["status"] == "complete"
    assert [r["status"] for r in doc["runs"]] == ["complete", "complete"]


def test_runs_share_one_environment_each_from_a_fresh_server_and_an_empty_redis(results, tmp_path):
    """Two architectures in one environment: the generators stay, the server container is new
    for each run, Redis is empty when each run starts, and each run says so."""
    path = write_scenario(tmp_path, "reuse", generators=1, sweep={"arch": ["preforked", "epoll"]},
                          load={"duration_s": 2, "warmup_s": 1})
    out = lab(["scenario", str(path)], results)
    assert out.returncode == 0, out.stdout + out.stderr
    _, doc = only_result(results, "reuse")
    first, second = doc["runs"]
    assert [r["status"] for r in doc["runs"]] == ["complete", "complete"], [r.get("error") for r in doc["runs"]]
    a, b = first["start_state"], second["start_state"]
    assert a["environment"] == b["environment"]
    assert (a["environment_reused"], b["environment_reused"]) == (False, True)
    assert a["server"]["id"] != b["server"]["id"]  # a fresh server process per run
    assert a["redis"]["keys_after"] == b["redis"]["keys_after"] == 0
    assert b["redis"]["keys_before"] > 0  # the first run's guestbook was there, and went
    assert first["generators"][0]["node"] == second["generators"][0]["node"]  # generators stayed
    # Each run records what it ran with, and moved through the named states.
    for run in (first, second):
        assert run["provenance"]["images"]["server"].startswith("sha256:")
        assert run["provenance"]["git_commit"] and "differs_from_result" not in run["provenance"]
        states = [state for state, _ in run["timeline"]]
        assert states == ["preparing", "verifying", "warming_up", "measuring", "recording", "complete"]
    assert second["verification"]["passed"]
    assert_measured_cleanly(second)
    assert not leftovers()


def project_objects(project_prefix: str) -> dict[str, set[str]]:
    client = docker.from_env()
    return {"containers": {c.id for c in client.containers.list(all=True)
                           if c.labels.get("com.docker.compose.project", "").startswith(project_prefix)}}


def test_a_killed_controller_leaves_nothing_that_serves_the_rerun(results, tmp_path):
    """SIGKILL mid-measurement: its generator goes on loading its server. The rerun removes all
    of it before it starts, and the counts of the rerun agree with Redis."""
    path = write_scenario(tmp_path, "killed", repeats=2, generators=1,
                          load={"duration_s": 8, "warmup_s": 0})
    env = os.environ | {"ZL_PROJECT_PREFIX": PREFIX}
    proc = subprocess.Popen([sys.executable, "-m", "lab", "scenario", str(path), "--results", str(results)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            docs = list((results / "killed").glob("*/result.json"))
            if docs and json.loads(docs[0].read_text())["runs"][0]["status"] == "measuring":
                break
            time.sleep(0.3)
        else:
            pytest.fail("the first run never started measuring")
        time.sleep(2)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    _, killed_doc = only_result(results, "killed")
    assert killed_doc["status"] == "running"  # what a killed controller leaves on disk
    before = project_objects(PREFIX)["containers"]
    assert before, "the killed controller's containers should still be there"

    again = lab(["scenario", str(path)], results)
    assert again.returncode == 0, again.stdout + again.stderr
    _, doc = only_result(results, "killed")
    assert doc["status"] == "complete" and [r["status"] for r in doc["runs"]] == ["complete", "complete"]
    assert any("removed what an earlier controller left" in n for n in doc.get("notes", []))
    for run in doc["runs"]:
        assert_measured_cleanly(run)  # the counts agree: nobody else loaded its server
        assert not any(run["start_state"]["server"]["id"] in cid for cid in before)
    assert not leftovers()


def test_an_exception_while_tearing_down_is_reported_and_loses_nothing(results, tmp_path):
    """The environment is really removed, then its teardown raises: the finished run stays
    complete, the result says what went wrong, and nothing is left running."""
    import io

    from rich.console import Console

    from lab.environment.compose import ComposeEnvironment
    from lab.plan import plan_runs, scenario_digest
    from lab.progress import Progress
    from lab.results import ResultStore
    from lab.runner import run_plan
    from lab.scenario import load_scenario

    class FailingTeardown(ComposeEnvironment):
        def down(self):
            super().down()
            raise RuntimeError("the engine hung up during teardown")

    scenario = load_scenario(str(write_scenario(tmp_path, "teardown", generators=1,
                                                load={"duration_s": 2, "warmup_s": 0})))
    runs = plan_runs(scenario)
    store = ResultStore.create(results, scenario.model_dump(mode="json"), scenario_digest(scenario),
                               runs, {"engine": "compose"})

    def factory(run, project, agent_token=None):
        return FailingTeardown(project, run.variables(), generators=run.generators, agent_token=agent_token)

    os.environ["ZL_PROJECT_PREFIX"] = PREFIX
    try:
        status = run_plan(store, runs, factory, Progress(Console(file=io.StringIO())))
    finally:
        os.environ.pop("ZL_PROJECT_PREFIX", None)
    doc = json.loads((store.dir / "result.json").read_text())
    assert status == doc["status"] == "complete"
    assert doc["runs"][0]["status"] == "complete" and doc["runs"][0]["requests"] > 0
    assert any("the engine hung up during teardown" in p for p in doc["problems"])
    assert not leftovers()


def test_cells_are_repeated_in_rounds_until_known_and_each_run_says_what_it_measured(results, tmp_path):
    """repeats {min 2, max 3} with a target no cell can meet: every cell gets its third round,
    in round-robin order, and is named as not converged. Each run carries the server's own
    throughput series, the generators' start skew and the host's accounting."""
    path = write_scenario(tmp_path, "rounds", generators=2, sweep={"arch": ["preforked", "epoll"]},
                          repeats={"min": 2, "max": 3, "ci_pct": 0.001},
                          load={"duration_s": 3, "warmup_s": 1})
    out = lab(["scenario", str(path)], results)
    assert out.returncode == 0, out.stdout + out.stderr
    _, doc = only_result(results, "rounds")
    assert [r["id"] for r in doc["runs"]] == ["preforked-c20-1", "epoll-c20-1", "preforked-c20-2",
                                              "epoll-c20-2", "preforked-c20-3", "epoll-c20-3"]
    assert doc["statistics"]["order"] == "round-robin" and doc["statistics"]["target_ci_pct"] == 0.001
    cells = {c["cell"]: c for c in doc["cells"]}
    assert set(cells) == {"preforked-c20", "epoll-c20"}
    for cell in cells.values():
        assert cell["converged"] is False and len(cell["runs"]) == 3
        rps = cell["requests_per_sec"]
        if cell["n_trusted"] >= 2:  # host noise may leave runs untrusted
            assert rps["n"] == cell["n_trusted"] and rps["ci95"][0] <= rps["median"] <= rps["ci95"][1]
    assert "not converged" in out.stdout
    for run in doc["runs"]:
        assert run["status"] == "complete", run.get("error")
        assert_measured_cleanly(run)
        assert run["start_skew_s"] is not None and run["generators"][0]["cpu_share"] > 0
        side = run["server_side"]
        assert len(side["series"]) >= 3 and side["series"][-1][1] > 0
        health = run["host_health"]
        assert health["measured_cpus"] == [0] and health["busy_cores"] > 0
        assert "trusted" in run["validity"] and "server_failed" in run["validity"]
        assert run["latency_kind"] == "closed-loop"
    assert not leftovers()
