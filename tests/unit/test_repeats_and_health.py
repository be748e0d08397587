"""Repeats in rounds, more repeats until a cell is known well enough, and what the host did:
pure logic on hand-made inputs."""
import pytest

from lab.hosthealth import assess
from lab.plan import next_round, order_seed, plan_runs, statistics_block
from lab.scenario import validate_scenario
from lab.validity import verdict

pytestmark = pytest.mark.timeout(60)
TWO_CPUS = {0, 1}


def scenario(**fields):
    return validate_scenario({"name": "t", "sweep": {"arch": ["epoll", "poll"], "connections": [20, 200]},
                              **fields}, "t", host_cpus=TWO_CPUS)


def test_repeats_run_in_rounds_so_drift_spreads_over_every_cell():
    runs = plan_runs(scenario(repeats=3))
    assert [r.id for r in runs[:4]] == ["epoll-c20-1", "epoll-c200-1", "poll-c20-1", "poll-c200-1"]
    assert [r.repeat for r in runs] == [1] * 4 + [2] * 4 + [3] * 4
    assert [r.index for r in runs] == list(range(1, 13))
    assert {r.cell for r in runs[4:8]} == {r.cell for r in runs[:4]}


def test_a_shuffled_order_is_drawn_from_a_recorded_seed_and_is_the_same_on_every_plan():
    s = scenario(repeats=2, order="shuffled", seed=11)
    first, again = plan_runs(s), plan_runs(s)
    assert [r.id for r in first] == [r.id for r in again]
    rounds = [[r.cell for r in first[:4]], [r.cell for r in first[4:]]]
    assert sorted(rounds[0]) == sorted(rounds[1])
    assert statistics_block(s)["seed"] == 11 and statistics_block(s)["order"] == "shuffled"
    # Without a seed, one is derived from the scenario: still recorded, still repeatable.
    unseeded = scenario(repeats=2, order="shuffled")
    assert order_seed(unseeded) == order_seed(scenario(repeats=2, order="shuffled")) is not None
    orders = {tuple(r.id for r in plan_runs(scenario(repeats=2, order="shuffled", seed=k))) for k in range(8)}
    assert len(orders) > 1  # the seed matters


def entry(run, rps, trusted=True, server_failed=False):
    return {"id": run.id, "index": run.index, "status": "complete", "params": run.params(),
            "requests_per_sec": rps, "latency_ms": {"p50": 1.0, "p99": 9.0},
            "validity": verdict([] if trusted else ["generator-bound"], ["errors"] if server_failed else [])}


def test_cells_get_more_repeats_until_their_interval_is_narrow_enough():
    s = validate_scenario({"name": "t", "sweep": {"arch": ["epoll", "poll"]},
                           "repeats": {"min": 3, "max": 5, "ci_pct": 5}}, "t", host_cpus=TWO_CPUS)
    runs = plan_runs(s)
    assert len(runs) == 6  # min 3 of each
    # epoll: 1000, 1010, 1020 -> [min, max] = +-1% of 1010: known. poll: 1000, 1500, 2000: not.
    values = {"epoll-c20": [1000, 1010, 1020], "poll-c20": [1000, 1500, 2000]}
    entries = [entry(r, values[r.cell][r.repeat - 1]) for r in runs]
    more = next_round(s, entries)
    assert [(r.id, r.index) for r in more] == [("poll-c20-4", 7)]
    entries.append(entry(more[0], 1600))
    assert [r.id for r in next_round(s, entries)] == ["poll-c20-5"]
    entries.append(entry(next_round(s, entries)[0], 1700))
    assert next_round(s, entries) == []  # at its maximum: it stops, not converged
    # Untrusted runs count towards the maximum but give no figure.
    s2 = validate_scenario({"name": "t", "repeats": {"min": 2, "max": 3, "ci_pct": 5}}, "t", host_cpus=TWO_CPUS)
    bad = [entry(r, 1000, trusted=False) for r in plan_runs(s2)]
    [third] = next_round(s2, bad)
    assert third.repeat == 3 and next_round(s2, bad + [entry(third, 1000, trusted=False)]) == []


def test_a_fixed_number_of_repeats_never_extends():
    s = scenario(repeats=2)
    assert next_round(s, [entry(r, 1000 * r.repeat) for r in plan_runs(s)]) == []


def snapshot(t, busy, steal=0, softirq=0, containers=None, own=0.0):
    return {"t": t, "own": own, "containers": containers or {},
            "stat": {0: {"busy": busy, "steal": steal, "softirq": softirq},
                     1: {"busy": 5000, "steal": 0, "softirq": 0}}}


def test_other_work_on_the_measured_cpus_is_what_no_container_accounts_for():
    hz = 100  # USER_HZ here
    from lab import hosthealth
    assert hosthealth.USER_HZ == hz
    # 10 s; CPU 0 busy 9 s; the run's containers used 8.5 s of it: 0.05 of a core of other work.
    quiet = assess(snapshot(0, 0, containers={"a": [0, 0]}),
                   snapshot(10, 900, containers={"a": [int(8.5e9), 0]}), [0])
    assert quiet["other_cpu_share_on_measured_cpus"] == pytest.approx(0.05)
    assert quiet["busy_cores"] == pytest.approx(0.9) and not quiet["busy"]
    # 3 s of someone else's work: busy, with the reason.
    busy = assess(snapshot(0, 0, containers={"a": [0, 0]}),
                  snapshot(10, 900, containers={"a": [int(6e9), 0]}), [0])
    assert busy["busy"] and "0.30 of a core" in busy["reason"]
    # The hypervisor took 8% of CPU 0.
    stolen = assess(snapshot(0, 0, containers={"a": [0, 0]}),
                    snapshot(10, 500, steal=80, containers={"a": [int(5e9), 0]}), [0])
    assert stolen["busy"] and "steal 8%" in stolen["reason"]
    # A container whose accounting cannot be read: other work is unknown, not zero.
    unknown = assess(snapshot(0, 0, containers={"a": None}), snapshot(10, 900, containers={"a": None}), [0])
    assert unknown["other_cpu_share_on_measured_cpus"] is None and not unknown["available"]


def test_generators_are_judged_against_the_cpus_their_tool_can_use():
    from lab.runner import generator_cpu

    s = validate_scenario({"name": "t", "load": {"threads": 2, "connections": 100}, "generators": 2},
                          "t", host_cpus=TWO_CPUS)
    [run] = plan_runs(s)  # nothing pinned: two threads each, on a two-CPU machine

    class Container:
        def __init__(self, name):
            self.name = name

    containers = {"loadgen": [Container("lg-1"), Container("lg-2")]}
    # 150% of a core over two usable CPUs is 75%: not the bottleneck; 190% is.
    rows = [{"service": "loadgen", "container": name, "t_s": t, "cpu_percent": pct}
            for name, pct in (("lg-1", 150.0), ("lg-2", 190.0)) for t in (2, 3, 4)]
    cpu, source = generator_cpu(run, [{"agent": "a"}, {"agent": "b"}], rows, containers)
    assert cpu == {"lg-1": pytest.approx(0.75), "lg-2": pytest.approx(0.95)} and "docker stats" in source
    # One thread can use one CPU only, whatever the machine has.
    one = validate_scenario({"name": "t", "load": {"threads": 1, "connections": 100}}, "t", host_cpus=TWO_CPUS)
    [run1] = plan_runs(one)
    cpu1, _ = generator_cpu(run1, [{"agent": "a"}], rows[:3], {"loadgen": [Container("lg-1")]})
    assert cpu1 == {"lg-1": pytest.approx(1.5)}
    # A generator on another node measures itself; its share is taken as it says.
    remote = [{"agent": "http://10.0.0.7:31000", "node": "load-2", "cpu_share": 0.97},
              {"agent": "http://127.0.0.1:31001", "node": "here", "cpu_share": 0.40}]
    cpu2, source2 = generator_cpu(run, remote, [], {"loadgen": []})
    assert cpu2 == {"load-2": 0.97, "here": 0.40} and "each agent" in source2
