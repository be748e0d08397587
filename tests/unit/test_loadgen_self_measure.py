"""What a generator measures of itself (loadgen.cpu, loadgen.tools.measures_of): CPU quota and
affinity, its children's CPU time, its tool's start and end, and the start skew of several."""
import os
import subprocess
import sys
import time

import pytest

from loadgen import cpu
from loadgen.client import start_skew_s
from loadgen.spec import LoadSpec
from loadgen.tools import (MEASURES, ProcessWatch, build_commands, hard_timeout_s, measures_of,
                           tool_threads)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ---------------------------------------------------------------- the CFS quota

def v2_tree(tmp_path, cpu_max_by_folder, own="/"):
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory\n")
    for folder, value in cpu_max_by_folder.items():
        write(root / folder.strip("/") / "cpu.max", value + "\n")
    write(tmp_path / "self-cgroup", f"0::{own}\n")
    return str(root), str(tmp_path / "self-cgroup")


def test_v2_container_quota(tmp_path):
    # a container with its own cgroup namespace: its cgroup is the root of the mount
    assert cpu.quota_cpus(*v2_tree(tmp_path, {"/": "150000 100000"})) == 1.5


def test_v2_without_quota(tmp_path):
    assert cpu.quota_cpus(*v2_tree(tmp_path, {"/": "max 100000"})) is None
    assert cpu.quota_cpus(*v2_tree(tmp_path / "none", {})) is None


def test_v2_the_smallest_along_the_ancestors_counts(tmp_path):
    root, own = v2_tree(tmp_path, {"/": "max 100000", "/lab": "300000 100000",
                                   "/lab/agent": "max 100000"}, own="/lab/agent")
    assert cpu.quota_cpus(root, own) == 3.0
    root, own = v2_tree(tmp_path / "b", {"/lab": "300000 100000",
                                         "/lab/agent": "50000 100000"}, own="/lab/agent")
    assert cpu.quota_cpus(root, own) == 0.5


def test_v2_a_path_the_mount_does_not_show_falls_back_to_the_mount(tmp_path):
    root, own = v2_tree(tmp_path, {"/": "200000 100000"}, own="/system.slice/docker-abc.scope")
    assert cpu.quota_cpus(root, own) == 2.0


def test_v1_quota_and_none(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cpu" / "cpu.cfs_quota_us", "250000\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    write(tmp_path / "self", "4:memory:/docker/abc\n1:cpu,cpuacct:/docker/abc\n0::/\n")
    assert cpu.quota_cpus(str(root), str(tmp_path / "self")) == 2.5
    write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    assert cpu.quota_cpus(str(root), str(tmp_path / "self")) is None


def test_usable_cpus_is_the_least_limit(tmp_path):
    root, own = v2_tree(tmp_path, {"/": "150000 100000"})
    usable, limits = cpu.usable_cpus(4, root, own)
    assert limits == {"threads": 4, "affinity": len(os.sched_getaffinity(0)), "quota": 1.5}
    assert usable == min(1.5, limits["affinity"])
    usable, limits = cpu.usable_cpus(1, *v2_tree(tmp_path / "b", {}))
    assert usable == 1 and limits["quota"] is None


def test_cpu_share():
    assert cpu.cpu_share({"user": 1.5, "system": 0.5}, 2.0, 2) == 0.5
    assert cpu.cpu_share(None, 2.0, 2) is None
    assert cpu.cpu_share({"user": 1.0, "system": 0.0}, 0.0, 2) is None


def test_tool_threads():
    assert tool_threads(LoadSpec(tool="wrk", connections=6, threads=4)) == 3  # wrk's -t
    oha = LoadSpec(tool="oha", connections=6, threads=2,
                   mix={"guestbook_get": 1, "static": 1})
    assert tool_threads(oha) == 4  # --worker-threads in each of its two processes
    assert tool_threads(oha, build_commands(oha, "/bin/oha")) == 4


# ---------------------------------------------------------------- CPU time of children

BUSY = [sys.executable, "-c",
        "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"]


def test_a_process_cpu_time_from_proc():
    before = cpu.process_cpu_s(os.getpid())
    t = time.process_time()
    while time.process_time() - t < 0.1:
        pass
    after = cpu.process_cpu_s(os.getpid())
    assert after["user"] + after["system"] > before["user"] + before["system"]
    assert cpu.process_cpu_s(2 ** 22 + 12345) is None  # no such process


def test_children_cpu_counts_the_runs_own_children():
    with cpu.spawned(1):
        meter = cpu.ChildrenCpu(1).start()
        subprocess.run(BUSY, check=True, timeout=30)
        got = meter.stop()
    assert got is not None and got["user"] + got["system"] >= 0.25


def test_children_cpu_refuses_a_figure_when_another_child_ran_meanwhile():
    with cpu.spawned(1):
        meter = cpu.ChildrenCpu(1).start()
        with cpu.spawned():  # e.g. a version check on another thread
            subprocess.run(BUSY, check=True, timeout=30)
        subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=30)
        assert meter.stop() is None
    with cpu.spawned(1), cpu.spawned():  # another child still running when the run starts
        meter = cpu.ChildrenCpu(1).start()
        assert meter.stop() is None


# ---------------------------------------------------------------- a run's measures

LIMITS = {"threads": 2, "affinity": 2, "quota": None}


def test_measures_of_one_process():
    w = ProcessWatch(started_at=1000.0, exited_at=1010.0)
    m = measures_of([w], {"user": 6.0, "system": 2.0}, 2, LIMITS)
    assert set(m) == set(MEASURES)
    assert (m["tool_started_at"], m["tool_started_last_at"]) == (1000.0, 1000.0)
    assert (m["tool_ended_at"], m["tool_exited_at"], m["tool_wall_s"]) == (1010.0, 1010.0, 10.0)
    assert m["tool_cpu_s"] == {"user": 6.0, "system": 2.0}
    assert (m["usable_cpus"], m["cpu_limits"], m["cpu_share"]) == (2, LIMITS, 0.4)


def test_measures_of_oha_stop_at_its_report_before_it_writes_its_file():
    watches = [ProcessWatch(started_at=1000.0, reported_at=1010.0, exited_at=1013.0,
                            cpu_at_report={"user": 3.0, "system": 1.0}),
               ProcessWatch(started_at=1000.2, reported_at=1010.1, exited_at=1012.0,
                            cpu_at_report={"user": 1.0, "system": 1.0})]
    # RUSAGE_CHILDREN (writing included) is not used when each process said its own
    m = measures_of(watches, {"user": 9.0, "system": 9.0}, 2, LIMITS)
    assert m["tool_started_last_at"] - m["tool_started_at"] == pytest.approx(0.2)
    assert m["tool_ended_at"] == 1010.1 and m["tool_exited_at"] == 1013.0
    assert m["tool_wall_s"] == pytest.approx(10.1)
    assert m["tool_cpu_s"] == {"user": 4.0, "system": 2.0}
    assert m["cpu_share"] == pytest.approx(6.0 / 10.1 / 2, abs=1e-4)
    watches[1].cpu_at_report = None  # one could not be read: the whole children's figure
    assert measures_of(watches, {"user": 9.0, "system": 9.0}, 2, LIMITS)["tool_cpu_s"] == \
        {"user": 9.0, "system": 9.0}


def test_measures_of_a_run_that_never_started_or_could_not_be_measured():
    assert measures_of([], None, 2, LIMITS) == dict.fromkeys(MEASURES)
    m = measures_of([ProcessWatch(started_at=1000.0, exited_at=1002.0)], None, 2, LIMITS)
    assert m["tool_wall_s"] == 2.0 and m["tool_cpu_s"] is None and m["cpu_share"] is None


def test_start_skew():
    assert start_skew_s([{"tool_started_at": 100.25}, {"tool_started_at": 100.0},
                         {"tool_started_at": 100.5}]) == 0.5
    assert start_skew_s([{"tool_started_at": 100.0}]) == 0.0
    assert start_skew_s([{"tool_started_at": 100.0}, {"tool_started_at": None}]) is None
    assert start_skew_s([{"state": "done"}]) is None and start_skew_s([]) is None


# ---------------------------------------------------------------- oha's per-request file

def test_oha_writes_each_kind_to_its_own_file():
    s = LoadSpec(tool="oha", url="http://server:8000", connections=4, threads=1,
                 mix={"guestbook_get": 1, "static": 1})
    cmds = build_commands(s, "/bin/oha", db_dir="/tmp/run")
    assert [c.db_path for c in cmds] == ["/tmp/run/oha-guestbook_get.db", "/tmp/run/oha-static.db"]
    for c in cmds:
        assert c.argv[c.argv.index("--db-url") + 1] == c.db_path and c.argv[-1].startswith("http")
    assert all(c.db_path is None and "--db-url" not in c.argv
               for c in build_commands(s, "/bin/oha"))


def test_the_hard_timeout_allows_oha_to_write_its_file():
    wrk = LoadSpec(tool="wrk", connections=100, threads=2, duration_s=20)
    base = hard_timeout_s(wrk)
    closed = LoadSpec(tool="oha", connections=100, threads=2, duration_s=20)
    opened = LoadSpec(tool="oha", mode="open", rate=2000, connections=100, threads=2,
                      duration_s=20)
    assert hard_timeout_s(opened) == pytest.approx(base + 20 * 2000 * 50e-6)
    assert hard_timeout_s(closed) == pytest.approx(base + 20 * 20_000 * 50e-6)
