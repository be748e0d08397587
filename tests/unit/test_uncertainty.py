"""lab.uncertainty on hand-checked values: order-statistic intervals from binomial sums, Welch's
test from the t-table and closed-form t distributions, series made up to be steady, drifting,
stalled or too short, and the repeats of one cell recorded on the lab's 2-core machine
(5,814 / 4,401 / 5,429 / 4,380 / 3,291 req/s)."""

from __future__ import annotations

import copy
import json
import math
import statistics
from itertools import combinations
from pathlib import Path

import pytest
from scipy import stats

from lab.uncertainty import (
    WELCH_LOG, WELCH_RAW, cell_id, cell_summaries, compare_samples, converged,
    environment_differences, median_interval, needs_more, run_trust, steady_state, summarise,
)

RECORDED = [5814, 4401, 5429, 4380, 3291]
DATA = Path(__file__).resolve().parents[1] / "data" / "results" / "sweep"


# --- the interval of the median --------------------------------------------------------------

def test_order_statistic_interval_coverage_by_hand():
    # n = 3: [min, max] misses the median only when all three fall on one side: 2 * (1/2)^3.
    lo, hi, cover, k = median_interval([3, 1, 2])
    assert (lo, hi, k) == (1, 3, 1) and cover == pytest.approx(0.75)
    # n = 5: 1 - 2/32; n = 6: 1 - 2/64, the first n where [min, max] reaches 95%.
    assert median_interval(range(5))[2] == pytest.approx(1 - 2 / 32)
    assert median_interval(range(6))[2] == pytest.approx(1 - 2 / 64)
    # n = 9: [x(2), x(8)] misses with 2 * (C(9,0) + C(9,1)) / 2^9 = 20/512; [x(3), x(7)] would
    # miss with 2 * (1 + 9 + 36) / 512 = 92/512 (82%), too little.
    lo, hi, cover, k = median_interval(range(1, 10))
    assert (lo, hi, k) == (2, 8, 2) and cover == pytest.approx(1 - 20 / 512)
    # n = 20: the tabulated ranks 6 and 15, coverage 95.86%.
    lo, hi, cover, k = median_interval(range(1, 21))
    assert (lo, hi) == (6, 15)
    assert cover == pytest.approx(1 - 2 * sum(math.comb(20, i) for i in range(6)) / 2 ** 20)
    assert cover == pytest.approx(0.9586, abs=1e-4)
    with pytest.raises(ValueError):
        median_interval([1])


def test_summarise_recorded_repeats():
    s = summarise(RECORDED)
    assert s["n"] == 5 and s["median"] == 4401 and s["mean"] == pytest.approx(4663)
    assert s["ci95"] == [3291, 5814]
    assert s["ci_half_width_pct"] == pytest.approx((5814 - 3291) / 2 / 4401 * 100)  # 28.7%
    mean = sum(RECORDED) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in RECORDED) / 4)
    assert s["cv"] == pytest.approx(sd / mean) and s["cv"] == pytest.approx(0.2129, abs=1e-4)
    assert s["coverage"] == pytest.approx(0.9375)
    assert "order-statistic" in s["method"] and "93.8%" in s["method"] and "n >= 6" in s["method"]


def test_summarise_small_and_empty():
    assert summarise([]) is None and summarise([None]) is None
    one = summarise([1234.0])
    assert one["n"] == 1 and one["median"] == 1234 and one["ci95"] is None
    assert one["ci_half_width_pct"] is None and one["cv"] is None
    three = summarise([100, 120, 110])
    assert three["ci95"] == [100, 120] and three["coverage"] == pytest.approx(0.75)
    assert three["ci_half_width_pct"] == pytest.approx(10 / 110 * 100)
    same = summarise([50, 50, 50])
    assert same["ci95"] == [50, 50] and same["ci_half_width_pct"] == 0 and same["cv"] == 0


def test_bootstrap_is_seeded_and_falls_back():
    a = summarise(RECORDED, interval="bootstrap")
    b = summarise(RECORDED, interval="bootstrap")
    assert a == b and a["method"].startswith("bootstrap BCa, 10,000 resamples, seed 0, 95%")
    assert 3291 <= a["ci95"][0] <= a["median"] <= a["ci95"][1] <= 5814
    # Two equal values: BCa has no jackknife spread to work with.
    tie = summarise([7, 7], interval="bootstrap")
    assert tie["ci95"] == [7, 7] and "BCa" not in tie["method"]
    with pytest.raises(ValueError):
        summarise([1, 2], interval="jackknife")


# --- cells, convergence ------------------------------------------------------------------------

def _run(rid, arch, repeat, rps, status="complete", **validity):
    v = {"trusted": True, "untrusted_reasons": [], "server_failed": False, "server_reasons": []}
    v.update(validity)
    v["valid"] = v["trusted"] and not v["server_failed"]
    return {"id": rid, "status": status, "requests_per_sec": rps,
            "params": {"arch": arch, "connections": 200, "repeat": repeat, "duration_s": 10},
            "latency_ms": {"p50": rps / 100, "p99": rps / 10} if rps else {}, "validity": v}


def test_cell_summaries_schema3():
    runs = [
        _run("preforked-c200-1", "preforked", 1, 5000.0),
        _run("epoll-c200-1", "epoll", 1, 7000.0),
        _run("preforked-c200-2", "preforked", 2, 3000.0, server_failed=True,
             server_reasons=["errors 4% exceed 1%"]),
        _run("preforked-c200-3", "preforked", 3, 9000.0, trusted=False,
             untrusted_reasons=["host busy"]),
        _run("preforked-c200-4", "preforked", 4, None, status="failed", trusted=False),
    ]
    cells = cell_summaries(runs)
    assert [c["cell"] for c in cells] == ["preforked-c200", "epoll-c200"]
    pre = cells[0]
    assert pre["params"] == {"arch": "preforked", "connections": 200, "duration_s": 10}
    assert pre["runs"] == ["preforked-c200-1", "preforked-c200-2", "preforked-c200-3",
                           "preforked-c200-4"]
    # The server-failed run is a result and counts; the untrusted and the failed one do not.
    assert pre["n_trusted"] == 2 and pre["n_server_failed"] == 1
    assert pre["requests_per_sec"]["median"] == 4000 and pre["requests_per_sec"]["ci95"] == [3000, 5000]
    assert pre["latency_p99_ms"]["median"] == 400
    assert pre["target_ci_pct"] is None and pre["converged"] is None
    assert cells[1]["n_trusted"] == 1 and cells[1]["requests_per_sec"]["ci95"] is None
    targeted = cell_summaries(runs, target_ci_pct=30)
    # preforked: (5000 - 3000) / 2 / 4000 = 25% <= 30%; epoll has one run and never converges.
    assert [c["converged"] for c in targeted] == [True, False]
    assert all(set(c) == {"cell", "params", "runs", "n_trusted", "n_server_failed",
                          "requests_per_sec", "latency_p50_ms", "latency_p99_ms",
                          "target_ci_pct", "converged"} for c in targeted)


def test_cell_summaries_old_result():
    data = json.loads((DATA / "20250101T100000" / "result.json").read_text())
    cells = cell_summaries(data["runs"])
    assert len(cells) == 9 and cells[0]["cell"] == "preforked-c100"
    poll = {c["cell"]: c for c in cells}["poll-c1000"]
    # Its second repeat was judged invalid (13% timeouts): before schema 3, valid is trusted.
    assert poll["n_trusted"] == 1 and poll["n_server_failed"] == 0
    assert poll["requests_per_sec"]["median"] == 600
    assert run_trust({"status": "complete", "requests_per_sec": 1.0,
                      "validity": {"valid": False, "reasons": ["x"]}}) == (False, False)


def test_cell_id():
    assert cell_id("preforked-c200-3") == "preforked-c200"
    assert cell_id("epoll-c2000-r1000-12") == "epoll-c2000-r1000"
    assert cell_id("poll-c1000-r1") == "poll-c1000"


def test_convergence_on_recorded_repeats():
    first3 = summarise(RECORDED[:3])  # 4,401 5,429 5,814: half width 706.5 / 5,429 = 13.0%
    assert first3["ci_half_width_pct"] == pytest.approx(706.5 / 5429 * 100)
    assert not converged(first3, 10) and converged(first3, 15)
    assert needs_more(first3, 10, max_repeats=6, runs_so_far=3)
    assert not needs_more(first3, 10, max_repeats=6, runs_so_far=6)  # the cap wins
    assert not needs_more(first3, 15, max_repeats=6, runs_so_far=3)
    assert not needs_more(first3, None, max_repeats=6, runs_so_far=3)  # no target: fixed repeats
    # Two more repeats widen it to 28.7%: noisier than the first three suggested.
    assert needs_more(summarise(RECORDED), 10, max_repeats=6, runs_so_far=5)
    # Fewer than two trusted runs never converge, whatever the target.
    assert not converged(summarise([5000]), 100) and not converged(None, 100)
    assert needs_more(summarise([5000]), 100, max_repeats=3, runs_so_far=1)
    assert needs_more(None, 100, max_repeats=3, runs_so_far=2)


# --- steady state --------------------------------------------------------------------------------

def test_steady_series():
    s = steady_state([[t, 100 * t] for t in range(13)], 2, 1, 0.1)
    assert s["window"] == [2, 11] and s["window_s"] == 9 and s["points"] == 10
    assert s["requests_per_sec"] == pytest.approx(100) and s["halves_rps"] == [100, 100]
    assert s["drift"] == 0 and s["stable"] and s["reason"] is None and s["stalls"] == []


def test_drifting_series():
    # 100 req/s for 6 s, then 50: halves 100 and 50, drift 0.5, overall 900 / 12 = 75.
    series = [[t, 100 * t if t <= 6 else 600 + 50 * (t - 6)] for t in range(13)]
    s = steady_state(series, 0, 0, 0.1)
    assert s["halves_rps"] == pytest.approx([100, 50]) and s["drift"] == pytest.approx(0.5)
    assert s["requests_per_sec"] == pytest.approx(75)
    assert not s["stable"] and "drift 50.0%" in s["reason"]
    assert steady_state(series, 0, 0, 0.6)["stable"]
    # A middle between samples is interpolated: window [0, 11], middle 5.5 -> 550 requests,
    # then 850 at 11 s: halves 550 / 5.5 and 300 / 5.5.
    s = steady_state(series[:12], 0, 0, 0.1)
    assert s["halves_rps"] == pytest.approx([100, 300 / 5.5])


def test_stalled_series():
    counts = [0, 100, 200, 300, 400, 500, 500, 600, 700, 800, 900]
    s = steady_state(list(enumerate(counts)), 1, 1, 0.5)
    assert s["stalls"] == [[5, 6]] and not s["stable"] and "no progress" in s["reason"]
    # The same stall inside the trimmed warm-up does not count.
    counts = [0, 100, 100, 200, 300, 400, 500, 600, 700, 800, 900]
    s = steady_state(list(enumerate(counts)), 3, 0, 0.1)
    assert s["stalls"] == [] and s["stable"]


def test_too_short_and_few_points():
    s = steady_state([[0, 0], [1, 100], [2, 200], [3, 300]], 2, 2, 0.1)
    assert not s["stable"] and "too short" in s["reason"] and s["requests_per_sec"] is None
    assert s["window_s"] == 0
    s = steady_state([[0, 0], [1, 100], [2, 200], [3, 300]], 1, 1, 0.1)
    assert not s["stable"] and "at least 3" in s["reason"] and s["points"] == 2
    assert s["requests_per_sec"] == pytest.approx(100)
    s = steady_state([], 1, 1, 0.1)
    assert not s["stable"] and s["reason"] == "no samples"
    s = steady_state([[0, 0], [1, 100], [2, 50], [3, 150], [4, 250]], 0, 0, 0.9)
    assert not s["stable"] and "backwards" in s["reason"]


# --- comparing two cells -------------------------------------------------------------------------

def test_welch_on_logs_by_hand():
    # log(req/s) of A: ln 1000 + {0, .1, .2}; of B: ln 1000 + {.5, .6, .7}. Difference of log
    # means 0.5; each variance 0.01; se = sqrt(0.01/3 * 2); Welch's df = 4 (equal variances
    # and sizes); t = 0.5 / se = 6.124.
    a = [1000 * math.exp(x) for x in (0, 0.1, 0.2)]
    b = [1000 * math.exp(x) for x in (0.5, 0.6, 0.7)]
    c = compare_samples(a, b)
    se = math.sqrt(0.01 / 3 * 2)
    t = 0.5 / se
    # Student's t with 4 degrees of freedom: F(t) = 1/2 + 3/4 * u * (1 - u^2 / 3), u = t / sqrt(4 + t^2)
    u = t / math.sqrt(4 + t * t)
    p = 2 * (1 - (0.5 + 0.75 * u * (1 - u * u / 3)))
    assert c["p_value"] == pytest.approx(p, rel=1e-9) and c["p_value"] == pytest.approx(0.0036, abs=1e-4)
    assert c["verdict"] == "faster" and c["test"] == WELCH_LOG
    t975_4 = 2.776  # t-table, 4 degrees of freedom, two-sided 95%
    lo, hi = c["ratio_ci95"]
    assert lo == pytest.approx(math.exp(0.5 - t975_4 * se), rel=1e-4)
    assert hi == pytest.approx(math.exp(0.5 + t975_4 * se), rel=1e-4)
    assert c["ratio_of_medians"] == pytest.approx(math.exp(0.5))
    assert c["smallest_detectable_ratio"] == pytest.approx(math.exp(t975_4 * se), rel=1e-4)
    # The other way round: slower, the interval inverted.
    r = compare_samples(b, a)
    assert r["verdict"] == "slower" and r["p_value"] == pytest.approx(c["p_value"])
    assert r["ratio_ci95"] == pytest.approx([1 / hi, 1 / lo])


def test_unequal_variances_df_by_hand():
    # Logs {0, .2} against {1, 1.1, 1.2}: variances 0.02 and 0.01, se^2 = 0.01 + 0.01/3;
    # Welch-Satterthwaite df = se^4 / (0.01^2/1 + (0.01/3)^2/2) = (4/300)^2 / (19/180000) = 32/19.
    a = [math.exp(x) for x in (0, 0.2)]
    b = [math.exp(x) for x in (1, 1.1, 1.2)]
    c = compare_samples(a, b)
    se2 = 0.01 + 0.01 / 3
    df = se2 ** 2 / (0.01 ** 2 + (0.01 / 3) ** 2 / 2)
    assert df == pytest.approx(32 / 19)
    t = 1.0 / math.sqrt(se2)
    assert c["p_value"] == pytest.approx(2 * stats.t.sf(t, df))
    ref = stats.ttest_ind([1, 1.1, 1.2], [0, 0.2], equal_var=False)
    assert c["p_value"] == pytest.approx(ref.pvalue)


def test_three_against_three_has_power_where_ranks_do_not():
    a, b = [1000, 1010, 990], [1500, 1520, 1490]
    # Completely separated, yet the exact two-sided Mann-Whitney U cannot go below 2/20.
    assert stats.mannwhitneyu(b, a, method="exact").pvalue == pytest.approx(0.1)
    c = compare_samples(a, b)
    assert c["verdict"] == "faster" and c["p_value"] < 0.001
    assert c["ratio_of_medians"] == pytest.approx(1.5)
    assert c["ratio_ci95"][0] > 1.4 and c["ratio_ci95"][1] < 1.6


def test_same_and_a_against_a():
    c = compare_samples(RECORDED, RECORDED)
    assert c["verdict"] == "within noise" and c["p_value"] == pytest.approx(1.0)
    assert c["ratio_of_medians"] == 1 and c["ratio_ci95"][0] < 1 < c["ratio_ci95"][1]
    flat = compare_samples([100, 100, 100], [100, 100])
    assert flat["verdict"] == "within noise" and flat["p_value"] == 1.0
    assert flat["ratio_ci95"] == [1.0, 1.0]
    apart = compare_samples([100, 100], [200, 200])
    assert apart["verdict"] == "faster" and apart["p_value"] == 0.0
    # Every split of the recorded cell into 3 and 2: one cell against itself is never "different".
    for left in combinations(range(5), 3):
        xa = [RECORDED[i] for i in left]
        xb = [RECORDED[i] for i in range(5) if i not in left]
        assert compare_samples(xa, xb)["verdict"] == "within noise"


def test_too_few_and_non_positive():
    c = compare_samples([5000], [6000, 6100])
    assert c["verdict"] == "too few runs" and c["p_value"] is None and c["ratio_ci95"] is None
    assert c["ratio_of_medians"] == pytest.approx(6050 / 5000)
    assert compare_samples([], [])["ratio_of_medians"] is None
    z = compare_samples([0.0, 10.0, 5.0], [100.0, 110.0, 105.0])
    assert z["test"] == WELCH_RAW and z["ratio_ci95"] is None and z["verdict"] == "faster"
    assert z["p_value"] == pytest.approx(stats.ttest_ind([100, 110, 105], [0, 10, 5], equal_var=False).pvalue)


# --- environments --------------------------------------------------------------------------------

def test_environment_differences():
    env = json.loads((DATA / "20250101T100000" / "result.json").read_text())["environment"]
    assert environment_differences(env, copy.deepcopy(env)) == []
    other = copy.deepcopy(env)
    other.update(cores=2, kernel="6.9.1", compose_version="2.30.0", provenance_varies=True)
    other["images"]["server"] = "sha256:9999"
    other["constraints"] = {"ZL_SERVER_CPUSET": "0", "ZL_NOFILE": "20000",
                            "ZL_SYSCTL_SOMAXCONN": "4096"}
    env2 = copy.deepcopy(env)
    env2["constraints"] = {"ZL_SERVER_CPUSET": "0-1", "ZL_NOFILE": "20000"}
    lines = environment_differences(env2, other)
    text = "\n".join(lines)
    assert "cores differs: A 8, B 2" in text
    assert "kernel differs: A 6.8.0-test, B 6.9.1" in text
    assert "Compose version differs: A 2.29.0, B 2.30.0" in text
    assert "image of server differs: A sha256:1111, B sha256:9999" in text
    assert "constraint ZL_SERVER_CPUSET differs: A 0-1, B 0" in text
    assert "constraint ZL_SYSCTL_SOMAXCONN differs: A (not recorded), B 4096" in text
    assert "ZL_NOFILE" not in text and "CPU model" not in text
    assert "B's own runs span" in text
    assert len(lines) == 7
