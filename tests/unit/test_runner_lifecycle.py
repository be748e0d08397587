"""The runner's faults outside a run, and the host lock: no containers needed (the environment
factory itself fails, which is where these faults happen)."""
import io
import json
import os
import subprocess
import sys

import pytest
from rich.console import Console

from lab.lock import ControllerBusy, ControllerLock
from lab.plan import plan_runs, scenario_digest
from lab.progress import Progress
from lab.results import ResultStore
from lab.runner import environment_indexes, project_name, run_plan
from lab.scenario import ROOT, validate_scenario

pytestmark = pytest.mark.timeout(60)


def store_for(tmp_path, **fields):
    s = validate_scenario({"name": "t", "sweep": {"arch": ["preforked", "epoll"]}, **fields}, "t",
                          host_cpus={0, 1})
    runs = plan_runs(s)
    return ResultStore.create(tmp_path, s.model_dump(mode="json"), scenario_digest(s), runs, {}), runs


def quiet_progress():
    return Progress(Console(file=io.StringIO(), width=200))


def test_an_environment_that_cannot_be_created_leaves_a_resumable_result(tmp_path):
    store, runs = store_for(tmp_path)

    def factory(run, project, agent_token=None):
        raise RuntimeError("the engine is gone")

    status = run_plan(store, runs, factory, quiet_progress())
    doc = json.loads((store.dir / "result.json").read_text())
    # Never "complete" with runs still to do, and the reason is kept.
    assert status == doc["status"] == "interrupted"
    assert [r["status"] for r in doc["runs"]] == ["pending", "pending"]
    assert "the engine is gone" in doc["problems"][0]
    assert ResultStore.resumable(tmp_path, "t", doc["scenario_digest"]) is not None


class BrokenEnvironment:
    """An environment whose up() fails; down() is counted and fails too."""

    downs = 0

    def __init__(self, *args, **kwargs):
        pass

    def leftovers(self):
        return []

    def up(self):
        raise RuntimeError("compose up failed: port already allocated")

    def down(self):
        BrokenEnvironment.downs += 1
        raise RuntimeError("network zl-x_lab has active endpoints")


def test_a_failed_up_fails_the_run_and_a_failed_teardown_is_reported(tmp_path):
    store, runs = store_for(tmp_path)
    BrokenEnvironment.downs = 0
    status = run_plan(store, runs, lambda run, project, agent_token=None: BrokenEnvironment(),
                      quiet_progress())
    doc = json.loads((store.dir / "result.json").read_text())
    assert status == doc["status"] == "failed"
    for run in doc["runs"]:
        assert run["status"] == "failed" and "port already allocated" in run["error"]
        assert run["failed_in"] == "preparing"
        assert [state for state, _ in run["timeline"]] == ["preparing", "failed"]
    # Each failed run's environment was torn down before the next one, and the failures said so.
    assert BrokenEnvironment.downs == 2
    assert sum("active endpoints" in p for p in doc["problems"]) == 2


def test_environment_names_are_fixed_per_result_and_shared_by_equal_environments(tmp_path):
    store, runs = store_for(tmp_path)
    indexes = environment_indexes(runs)
    assert len(indexes) == 1  # two architectures, one environment
    a = project_name("t", store.doc["result_id"], 1)
    assert a == project_name("t", store.doc["result_id"], 1) != project_name("t", "other", 1)
    assert len(a) <= 60 and a.endswith("-e1")
    long = project_name("a-very-long-scenario-name-that-goes-on-and-on", "20261130T120000Z", 3)
    assert len(long) <= 60 and long.endswith("-e3")


def test_a_second_controller_is_refused_naming_the_first(tmp_path):
    lock_file = tmp_path / "controller.lock"
    env = os.environ | {"ZL_LOCK_FILE": str(lock_file), "COLUMNS": "200"}
    with ControllerLock("scenario held-by-test", path=lock_file):
        with pytest.raises(ControllerBusy) as err:
            ControllerLock("another", path=lock_file).acquire()
        assert f"pid {os.getpid()}" in str(err.value) and "held-by-test" in str(err.value)
        out = subprocess.run([sys.executable, "-m", "lab", "scenario", "smoke", "--results",
                              str(tmp_path / "results")], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 3, out.stdout + out.stderr
        assert "another zerolab controller" in out.stdout and str(os.getpid()) in out.stdout
        assert not (tmp_path / "results").exists()  # refused before anything was created
    # Released: the next one gets it.
    with ControllerLock("next", path=lock_file):
        pass
