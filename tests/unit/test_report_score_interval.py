"""lab.report.score: the bootstrap interval of tau-b over the repeats, the collapse of a server that
exited under load, the shape comparison and the paragraph, on tests/data/results/collapse/
20250301T100000 (C; see test_report.py): preforked, threaded and poll at 100, 1,000 and 3,000,
three repeats each."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lab.report.baseline import load_article_table
from lab.report.cells import group_cells
from lab.report.load import load_result
from lab.report.score import (BOOTSTRAP_RESAMPLES, _tau_b_rows, kendall_tau_b, score,
                              score_variant)

pytestmark = pytest.mark.timeout(120)

C = Path(__file__).resolve().parents[1] / "data" / "results" / "collapse" / "20250301T100000"


@pytest.fixture(scope="module")
def table():
    return load_article_table()


def edited(tmp_path, edit):
    dest = tmp_path / C.name
    shutil.copytree(C, dest)
    doc = json.loads((dest / "result.json").read_text())
    doc.pop("cells", None)  # the summaries are recomputed from the edited runs
    edit(doc)
    (dest / "result.json").write_text(json.dumps(doc))
    return group_cells(load_result(dest).runs)


def set_rps(doc, run_id, rps):
    (r,) = [r for r in doc["runs"] if r["id"] == run_id]
    r["requests_per_sec"] = rps


def overlapping(doc):
    """At 1,000 threaded's repeats straddle preforked's: 1,500, 2,500, 2,450 against 2,400,
    2,350, 2,450. The medians (2,450 against 2,400) put threaded first, against the article's
    order (preforked 2,300 > threaded 1,700 > poll 1,150)."""
    for i, rps in enumerate([1500, 2500, 2450]):
        set_rps(doc, f"threaded-c1000-{i}", rps)
    for i, rps in enumerate([2400, 2350, 2450]):
        set_rps(doc, f"preforked-c1000-{i}", rps)


def level(s, conc):
    (lv,) = [lv for lv in s.levels if lv.connections == conc]
    return lv


def test_vectorised_tau_b_is_kendall_tau_b():
    rng = np.random.default_rng(1)
    ours = rng.integers(0, 4, size=(200, 4)).astype(float)  # many ties, some all tied
    article = [4.0, 3.0, 3.0, 1.0]
    got = _tau_b_rows(ours, article)
    for row, tau in zip(ours, got):
        want = kendall_tau_b(list(row), article)
        assert (np.isnan(tau) and want is None) or tau == pytest.approx(want)


def test_interval_contains_the_point_and_is_reproducible(tmp_path, table):
    cells = edited(tmp_path, overlapping)
    (s,) = score(cells, table)
    lv = level(s, 1000)
    # ours: threaded 2,450 > preforked 2,400 > poll 1,150: one discordant pair of three
    assert lv.tau == pytest.approx(1 / 3)
    lo, hi = lv.tau_interval
    assert lo <= lv.tau <= hi and lo < hi
    # a resample where threaded draws 1,500 twice puts preforked first again: tau +1
    assert hi == pytest.approx(1.0) and lo == pytest.approx(1 / 3)
    assert lv.repeats == (3, 3)
    lo_all, hi_all = s.overall_interval
    assert lo_all <= s.overall <= hi_all
    # the fixed seed: the same results give the same interval; another seed draws others
    (again,) = score(cells, table)
    assert level(again, 1000).tau_interval == lv.tau_interval
    assert again.overall_interval == s.overall_interval
    other = score_variant(cells, table, (), resamples=BOOTSTRAP_RESAMPLES, seed=7)
    assert other.levels[0].tau_interval is not None


def test_interval_is_a_point_when_every_repeat_is_equal(tmp_path, table):
    def edit(doc):
        medians = {}
        for r in doc["runs"]:
            key = (r["params"]["arch"], r["params"]["connections"])
            if r.get("requests_per_sec") is not None:
                medians.setdefault(key, r["requests_per_sec"])
        for r in doc["runs"]:
            key = (r["params"]["arch"], r["params"]["connections"])
            if r.get("requests_per_sec") is not None:
                r["requests_per_sec"] = medians[key]
    (s,) = score(edited(tmp_path, edit), table)
    for lv in s.scored:
        assert lv.tau_interval == (pytest.approx(lv.tau), pytest.approx(lv.tau))
    assert s.overall_interval == (pytest.approx(s.overall), pytest.approx(s.overall))


def test_a_server_that_exited_under_load_is_the_collapse(tmp_path, table):
    def edit(doc):
        # preforked at 3,000: every repeat ended with the server gone (no figure at all)
        for r in doc["runs"]:
            if r["params"]["arch"] == "preforked" and r["params"]["connections"] == 3000:
                r.update(status="failed", requests_per_sec=None, failed_in="measuring",
                         error="generator loadgen-1 failed: wrk exited with 1; the server had "
                               "exited (code 137, SIGKILL): Killed",
                         validity={"trusted": False, "untrusted_reasons": ["failed"],
                                   "server_failed": False, "server_reasons": []})
    (s,) = score(edited(tmp_path, edit), table)
    rows = {r.arch: r for r in s.collapses}
    # as a gap it would leave preforked without a collapse (2,400 at 1,000 is its peak)
    assert rows["preforked"].ours == 3000 and rows["preforked"].ours_by_failure


def test_shape_and_paragraph_by_hand(tmp_path, table):
    (s,) = score(edited(tmp_path, overlapping), table)
    rows = {r.arch: r for r in s.collapses}
    # threaded peaks at 2,450 (1,000) and fails at 3,000; the article peaks at 100 (1,700 at
    # 1,000 < 2,200 at 100... of the levels both have) and never halves there
    assert rows["threaded"].ours_peak == (1000, 2450) and rows["threaded"].ours == 3000
    assert rows["threaded"].article_peak_same_levels[0] == 100
    assert rows["threaded"].peak_agrees is False
    # the highest level both rank is 3,000: preforked 1,500 > threaded 900... the medians
    top = s.highest_common
    assert top.connections == 3000 and s.order_matches == top.orders_match
    p = s.paragraph
    assert p.startswith("At 1,000 connections the article ranks preforked 2,300 > threaded "
                        "1,700 > poll 1,150; we rank threaded 2,450 > preforked 2,400 > poll "
                        "1,150 (req/s; tau-b +0.33, 95% bootstrap interval +0.33 to +1.00 over "
                        "3 repeats per cell).")
    assert "Our intervals overlap for preforked/threaded" in p
    assert "Over the 3 scored levels (100, 1,000, 3,000) the mean tau-b is" in p
    assert "threaded peaks at 1,000, collapses at 3,000 (server failed)" in p


def test_to_json_keeps_the_old_keys_and_adds_the_new(tmp_path, table):
    (s,) = score(edited(tmp_path, overlapping), table)
    data = json.loads(json.dumps(s.to_json()))
    assert {"variant", "overall", "levels", "collapse"} <= set(data)
    assert data["overall_interval"] == [round(x, 4) for x in s.overall_interval]
    assert data["bootstrap"] == {"resamples": 2000, "seed": s.seed, "percentiles": [2.5, 97.5]}
    lv = [x for x in data["levels"] if x["connections"] == 1000][0]
    assert {"tau_b", "ours", "article", "note", "unresolved_pairs", "server_failed"} <= set(lv)
    assert lv["tau_b_interval"] == [pytest.approx(1 / 3, abs=1e-4), 1.0]
    assert lv["repeats_per_cell"] == [3, 3]
    row = data["collapse"][0]
    assert {"arch", "ours", "ours_by_server_failure", "ours_peak", "article_same_levels",
            "article_full_table", "article_peak_same_levels", "peak_agrees"} <= set(row)
    assert data["paragraph"] == s.paragraph
