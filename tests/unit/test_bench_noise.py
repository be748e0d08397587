"""bench/bench_noise.py without containers: its plan, its splits and its analysis of a made-up
result (runs with and without host_health)."""
import importlib.util
import os
from math import comb

import pytest

from lab.plan import plan_runs
from lab.scenario import validate_scenario

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("bench_noise", os.path.join(ROOT, "bench", "bench_noise.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

RECORDED = [5814, 4401, 5429, 4380, 3291, 4950]


def test_plan_interleaves_the_two_cells():
    data = bench.scenario_data("bench-noise-backlog4096", ("preforked", 200), ("epoll", 1000),
                               3, 10, 2, 4096, "article")
    runs = bench.select_runs(plan_runs(validate_scenario(data, "test")),
                             [("preforked", 200), ("epoll", 1000)])
    assert [r.id for r in runs] == ["preforked-c200-1", "epoll-c1000-1", "preforked-c200-2",
                                    "epoll-c1000-2", "preforked-c200-3", "epoll-c1000-3"]
    assert [r.index for r in runs] == [1, 2, 3, 4, 5, 6]
    assert {r.backlog for r in runs} == {4096} and {r.duration_s for r in runs} == {10}
    with pytest.raises(Exception):
        bench.parse_cell("preforked")


def test_half_splits_each_once():
    # n = 6: C(6,3) = 20 ordered splits, each with its mirror: 10. n = 5: C(5,2) = 10.
    assert len(bench.half_splits(6)) == comb(6, 3) // 2 == 10
    assert len(bench.half_splits(5)) == comb(5, 2) == 10
    for left, right in bench.half_splits(6):
        assert 0 in left and sorted(left + right) == list(range(6))


def test_a_versus_a():
    aa = bench.a_versus_a(RECORDED)
    assert aa["splits"] == 10 and 0 <= aa["false_positives"] <= 10
    assert aa["rate"] == aa["false_positives"] / 10
    assert aa["first_half_vs_second_half"]["verdict"] in ("within noise", "faster", "slower")
    few = bench.a_versus_a([1.0, 2.0, 3.0])
    assert few["rate"] is None and "need 4" in few["note"]


def _entry(rid, rps, host=None, trusted=True):
    e = {"id": rid, "status": "complete", "requests_per_sec": rps,
         "params": {"arch": rid.split("-")[0], "connections": 200, "repeat": int(rid[-1])},
         "validity": {"trusted": trusted, "untrusted_reasons": [] if trusted else ["host busy"],
                      "server_failed": False, "server_reasons": [], "valid": trusted,
                      "reasons": [] if trusted else ["host busy"]},
         "server_side": {"requests_per_sec": rps * 0.99, "drift": 0.02, "stable": True}}
    if host is not None:
        e["host_health"] = {"lab_cpu_share": host, "other_cpu_share_on_measured_cpus": 0.01,
                            "steal_share": 0.0, "busy": not trusted}
    return e


def test_analyse_with_and_without_host_health():
    runs = []
    for i, v in enumerate(RECORDED, start=1):
        runs.append(_entry(f"preforked-c200-{i}", v, host=0.01 * i))
        runs.append(_entry(f"epoll-c200-{i}", v * 2, host=0.01))
    runs.append(_entry("preforked-c200-7", 9000.0, host=0.5, trusted=False))
    a = bench.analyse({"runs": runs}, "preforked-c200", "epoll-c200")
    ref = a["cells"]["preforked-c200"]
    assert ref["runs"] == 7 and ref["values"] == RECORDED
    assert ref["requests_per_sec"]["n"] == 6 and ref["drift_within_runs"]["mean"] == pytest.approx(0.02)
    assert a["reference_vs_second"]["verdict"] == "faster"
    n = a["noise_sources"]
    assert n["host_health_available"] and n["runs_with_host_health"] == 7
    assert n["lab_cpu_cores"]["max"] == 0.5 and n["host_busy_runs"] == 1
    assert n["cv_all_complete"] > n["cv_trusted"]
    assert n["left_out_as_untrusted"] == ["preforked-c200-7: host busy"]
    assert "of a core on average" in n["lab_share"]
    for r in runs:
        r.pop("host_health", None)
    n = bench.analyse({"runs": runs}, "preforked-c200", "epoll-c200")["noise_sources"]
    assert not n["host_health_available"] and n["lab_share"].startswith("unknown")
