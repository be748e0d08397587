"""lab.report: the article's table, the score, plots and the HTML report, from recorded results
(compare: test_compare.py).

tests/data/results/sweep/ holds two recorded results of one sweep (schema 1, before runs were
judged trusted or server-failed): preforked, threaded and poll at 100, 1,000 and 3,000
connections, two repeats each. In A (20250101T100000) poll's second repeat at 1,000 is invalid
(13% timeouts) and reports 3,000 req/s; B (20250102T100000) is a later run of the same sweep.

tests/data/results/collapse/20250301T100000 (C) is a schema 3 result of the same three
architectures and levels, three repeats each, with the controller's cell summaries (target
interval ±5%):
- threaded at 3,000: 1,100, then 1,050 and 900 with the server failing (12% and 15% errors);
- poll at 1,000: 1,150, 1,200, 1,100, and one untrusted run (generator-bound) at 3,000 req/s;
- preforked at 3,000: 1,500, 1,450, 1,550, and a failed run (the generator failed);
- poll at 3,000: 300, 250, 360 (±18%, not converged); threaded at 1,000 r2 has a latency
  reconstructed from printed percentiles.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import statistics
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

import pytest

from lab.report import build_report
from lab.report.__main__ import main
from lab.report.baseline import TABLE_PATH, WIDE, load_article_table
from lab.report.cells import group_cells
from lab.report.load import (CLOSED_LOOP, OPEN_LOOP, RECONSTRUCTED, find_latest, load_result,
                             load_results, result_dirs)
from lab.report.plots import (FAILED_COLOR, latency_points, plot_cpu, plot_latency_by_concurrency,
                              plot_latency_overlay, plot_throughput)
from lab.report.score import collapse_point, kendall_tau_b, score

pytestmark = pytest.mark.timeout(120)

DATA = Path(__file__).resolve().parents[1] / "data" / "results"
SWEEP = DATA / "sweep"
A = SWEEP / "20250101T100000"
B = SWEEP / "20250102T100000"
C = DATA / "collapse" / "20250301T100000"


@pytest.fixture(scope="module")
def table():
    return load_article_table()


@pytest.fixture(scope="module")
def cells_a():
    return group_cells(load_result(A).runs)


@pytest.fixture(scope="module")
def cells_c():
    return group_cells(load_result(C).runs)


def cell(cells, arch, conc):
    (c,) = [c for c in cells if c.arch == arch and c.connections == conc]
    return c


@contextmanager
def edited_copy(src, dest):
    """Copies the result folder src to dest and yields its result.json as a dict, to be edited
    in the with block; the edited document is written back at its end."""
    shutil.copytree(src, dest)
    path = dest / "result.json"
    data = json.loads(path.read_text())
    yield data
    path.write_text(json.dumps(data))


# --- the article's table ---------------------------------------------------------------------

@pytest.mark.parametrize("arch, conc, expected", [
    ("iterative", 20, 7), ("forking", 20, 112), ("epoll", 20, 2050),
    ("iterative", 300, None),  # the article ran iterative only up to 200
    ("epoll", 500, 2212), ("poll", 2500, 490),
    ("forking", 3000, 280), ("preforked", 3000, 1900), ("threaded", 3000, 1250),
    ("prethreaded", 3000, 2502), ("poll", 3000, WIDE), ("epoll", 3000, 2138),
    ("forking", 5000, WIDE), ("preforked", 5000, 1600), ("threaded", 5000, 1100),
    ("prethreaded", 5000, 2519), ("poll", 5000, None), ("epoll", 5000, 2235),
    ("forking", 8000, None), ("preforked", 8000, 1200), ("threaded", 8000, WIDE),
    ("prethreaded", 8000, 2451), ("poll", 8000, None), ("epoll", 8000, 2100),
    ("preforked", 10000, WIDE), ("threaded", 10000, None), ("prethreaded", 10000, 2200),
    ("epoll", 10000, 2200),
    ("preforked", 11000, None), ("prethreaded", 11000, 2200), ("epoll", 11000, 2122),
    ("prethreaded", 15000, 532), ("epoll", 15000, 1281),
])
def test_article_table_cells(table, arch, conc, expected):
    assert table.value(arch, conc) == expected


def test_article_table_shape_and_wide_variations_never_a_number(table):
    assert table.archs == ("iterative", "forking", "preforked", "threaded", "prethreaded",
                           "poll", "epoll")
    assert table.levels[0] == 20 and table.levels[-1] == 15000 and len(table.levels) == 24
    assert table.number("poll", 3000) is None
    assert 3000 not in table.numeric_series("poll")
    assert TABLE_PATH.read_text().count("wide variations") >= 5
    wide = [(a, c) for a in table.archs for c, v in table.cells[a].items() if v == WIDE]
    assert sorted(wide) == sorted([("poll", 3000), ("forking", 5000), ("threaded", 8000),
                                   ("preforked", 10000)])


# --- the score ---------------------------------------------------------------------------------

def test_kendall_tau_b_by_hand():
    assert kendall_tau_b([1, 2, 3], [10, 20, 30]) == 1.0
    assert kendall_tau_b([1, 2, 3], [30, 20, 10]) == -1.0
    # x = 1,2,2,3 against y = 1,2,3,4: 6 pairs, one tied in x (the two 2s), the other five
    # concordant, none discordant: tau-b = 5 / sqrt((6-1) * (6-0)) = 5 / sqrt(30).
    assert kendall_tau_b([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30))
    assert kendall_tau_b([1], [1]) is None
    assert kendall_tau_b([5, 5], [1, 2]) is None  # one side all tied: undefined


def test_score_on_recorded_sweep_by_hand(cells_a, table):
    # Our figures (median of valid repeats) and the article's, by level:
    #   100:  ours preforked 2000, threaded 1900, poll 2100; article 2200, 1700, 2150.
    #         pairs: pf/th concordant (2000>1900, 2200>1700); pf/poll discordant (2000<2100 but
    #         2200>2150); th/poll concordant (1900<2100, 1700<2150). tau = (2-1)/3 = 1/3.
    #   1000: ours 2400, 1500, 600; article 2300, 1700, 1150: same order, tau = 3/3 = 1.
    #         (poll's invalid repeat of 3,000 req/s is left out; with it the median would be
    #         1,800, above threaded, and tau would drop to 1/3.)
    #   3000: poll is "wide variations" in the article, so only preforked and threaded count:
    #         ours 1000 < 1100, article 1900 > 1250: one discordant pair, tau = -1.
    #   overall = (1/3 + 1 - 1) / 3 = 1/9.
    (s,) = score(cells_a, table)
    taus = {lv.connections: lv.tau for lv in s.levels}
    assert taus[100] == pytest.approx(1 / 3)
    assert taus[1000] == pytest.approx(1.0)
    assert taus[3000] == pytest.approx(-1.0)
    assert s.overall == pytest.approx(1 / 9)
    lv3000 = [lv for lv in s.levels if lv.connections == 3000][0]
    assert set(lv3000.ours) == {"preforked", "threaded"}
    assert lv3000.order("ours") == ["threaded", "preforked"]
    assert lv3000.order("article") == ["preforked", "threaded"]


def test_invalid_runs_of_old_results_are_untrusted_and_left_out_of_the_score(cells_a, table,
                                                                             tmp_path):
    c = cell(cells_a, "poll", 1000)
    assert len(c.runs) == 2 and len(c.trusted_runs) == 1
    bad = [r for r in c.runs if not r.trusted][0]
    assert bad.requests_per_sec == 3000 and any("timeouts" in x for x in bad.untrusted_reasons)
    assert not bad.server_failed  # schema 1 never says the server failed
    assert c.figure == 600
    # Counting it anyway would change the level's tau: the exclusion is what the score sees.
    d = tmp_path / "r"
    with edited_copy(A, d) as data:
        run = [r for r in data["runs"] if r["id"] == bad.id][0]
        run["validity"] = {"valid": True, "reasons": []}
    (s,) = score(group_cells(load_result(d).runs), table)
    assert [lv.tau for lv in s.levels if lv.connections == 1000][0] == pytest.approx(1 / 3)


def test_level_with_fewer_than_two_architectures_is_skipped(table):
    runs = [r for r in load_result(A).runs if r.arch == "poll" or r.connections != 3000]
    runs = [r for r in runs if not (r.connections == 3000 and r.arch != "poll")]
    (s,) = score(group_cells(runs), table)
    lv = [lv for lv in s.levels if lv.connections == 3000][0]
    assert lv.tau is None and "not scored" in lv.note
    assert s.overall == pytest.approx((1 / 3 + 1) / 2)


def test_collapse_points(cells_a, table):
    assert collapse_point({}) is None
    assert collapse_point({100: 1000, 200: 600, 300: 499}) == 300
    assert collapse_point({100: 1000, 200: 500}) is None  # exactly half is not below half
    assert collapse_point({100: 300, 200: 1000, 300: 100}) == 300  # only after the peak
    (s,) = score(cells_a, table)
    rows = {c.arch: c for c in s.collapses}
    # preforked peaks at 2,400 (1,000) and falls to 1,000 < 1,200 at 3,000.
    assert rows["preforked"].ours == 3000
    # threaded peaks at 1,900 (100); 1,100 at 3,000 is still above 950.
    assert rows["threaded"].ours is None
    # poll peaks at 2,100 (100); 600 at 1,000 is below 1,050.
    assert rows["poll"].ours == 1000
    # The article at the same levels: poll 2,150 -> 1,150 (not below 1,075) -> wide variations.
    assert rows["poll"].article_same_levels is None
    # Over the whole table poll falls to 900 < 1,125 at 1,500.
    assert rows["poll"].article_full == 1500
    assert collapse_point(table.numeric_series("prethreaded")) == 12000
    assert collapse_point(table.numeric_series("epoll")) == 15000
    assert collapse_point(table.numeric_series("preforked")) is None  # 1,200 is exactly half


def test_collapse_point_at_a_level_where_the_server_failed():
    # A failure after the peak is the collapse, whatever its figure, and even without one.
    assert collapse_point({100: 1000, 200: 900, 300: 800}, {200}) == 200
    assert collapse_point({100: 1000, 200: None}, {200}) == 200
    # The peak is taken where the server did not fail: a failed run's figure is no peak.
    assert collapse_point({100: 1000, 200: 1500, 300: 900}, {200}) == 200
    # A failure before the peak is shown, not a collapse.
    assert collapse_point({100: 900, 200: 1000, 300: 950}, {100}) is None


# --- loading -----------------------------------------------------------------------------------

def test_result_dirs_and_latest(tmp_path):
    assert result_dirs(A) == [A]
    assert result_dirs(A / "result.json") == [A]
    assert result_dirs(SWEEP) == [A, B]
    root = tmp_path / "results"
    shutil.copytree(SWEEP, root / "sweep")
    os.utime(root / "sweep" / A.name / "result.json", (2e9, 2e9))
    os.utime(root / "sweep" / B.name / "result.json", (1e9, 1e9))
    assert find_latest(root) == root / "sweep" / A.name
    with pytest.raises(FileNotFoundError):
        find_latest(tmp_path / "empty")


def test_old_results_read_as_trusted_or_not_and_get_computed_summaries():
    res = load_result(A)
    assert res.schema_version == 1 and "cells" not in res.data
    runs = {r.id: r for r in res.runs}
    ok, bad = runs["preforked-c100-r0"], runs["poll-c1000-r1"]
    assert ok.trusted and ok.valid and not ok.server_failed and ok.untrusted_reasons == []
    assert not bad.trusted and not bad.server_failed and bad.reasons == bad.untrusted_reasons
    assert ok.latency_kind == CLOSED_LOOP and ok.latency_source == "histogram"
    assert runs["threaded-c3000-r0"].latency_source == "printed percentiles"  # no spectrum
    # Summaries computed by lab.uncertainty, as the controller now stores them.
    assert ok.stored_cell["runs"] == ["preforked-c100-r0", "preforked-c100-r1"]
    c = cell(group_cells(res.runs), "preforked", 100)
    assert c.summary is ok.stored_cell
    assert c.figure == 2000 and c.interval == (1950, 2050) and c.converged is None
    assert c.stat("requests_per_sec")["n"] == 2
    assert c.stat("latency_p99_ms")["median"] == pytest.approx((107.53 + 105.0) / 2, abs=5)


def test_schema_3_fields_are_read(cells_c):
    res = load_result(C)
    assert res.schema_version == 3 and res.statistics["order"] == "round-robin"
    runs = {r.id: r for r in res.runs}
    failed = runs["threaded-c3000-1"]
    assert failed.trusted and failed.server_failed and not failed.valid
    assert "12.0%" in failed.server_reasons[0] and failed.untrusted_reasons == []
    bound = runs["poll-c1000-1"]
    assert not bound.trusted and "generator-bound" in bound.untrusted_reasons[0]
    broken = runs["preforked-c3000-3"]
    assert not broken.trusted and broken.untrusted_reasons[0] == "status failed"
    assert runs["threaded-c1000-2"].latency_source == RECONSTRUCTED
    assert runs["threaded-c1000-2"].latency_reconstructed
    assert failed.latency_kind == CLOSED_LOOP
    assert failed.server_side["requests_per_sec"] == pytest.approx(1039.5)
    # The controller's summary is the cell's, as stored.
    c = cell(cells_c, "threaded", 3000)
    assert c.summary == runs["threaded-c3000-0"].stored_cell == res.data["cells"][5]
    assert c.figure == 1050 and c.interval == (900, 1100) and c.converged is False


def test_stored_summaries_are_used_and_match_computed_ones(tmp_path, cells_c):
    d = tmp_path / "stored"
    with edited_copy(C, d) as data:
        entry = [e for e in data["cells"] if e["cell"] == "preforked-c100"][0]
        entry["requests_per_sec"]["median"] = 1234.0
    assert cell(group_cells(load_result(d).runs), "preforked", 100).figure == 1234
    # A result still running lists its pending runs in its cells: the summary still applies.
    d = tmp_path / "running"
    with edited_copy(C, d) as data:
        entry = [e for e in data["cells"] if e["cell"] == "preforked-c100"][0]
        entry["requests_per_sec"]["median"] = 1234.0
        entry["runs"].append("preforked-c100-3")
        data["runs"].append({"id": "preforked-c100-3", "index": 99, "status": "pending",
                             "params": dict(data["runs"][0]["params"], repeat=3)})
    assert cell(group_cells(load_result(d).runs), "preforked", 100).figure == 1234
    d = tmp_path / "computed"
    with edited_copy(C, d) as data:
        del data["cells"]
    computed = group_cells(load_result(d).runs)
    for a, b in zip(cells_c, computed):
        assert (a.arch, a.connections) == (b.arch, b.connections)
        assert a.figure == b.figure and a.interval == b.interval
        assert a.stat("latency_p99_ms") == b.stat("latency_p99_ms")


def test_cells_across_results_are_summarised_over_all_their_runs():
    runs = [r for res in load_results([SWEEP]) for r in res.runs]
    c = cell(group_cells(runs), "threaded", 1000)
    assert len(c.runs) == 4 and c.stat("requests_per_sec")["n"] == 4
    assert c.figure == pytest.approx(statistics.median(
        [r.requests_per_sec for r in c.runs if r.trusted]))
    assert c.summary["runs"] == [r.id for r in c.runs]


def test_pending_runs_are_not_results(tmp_path):
    d = tmp_path / "r"
    with edited_copy(A, d) as data:
        data["runs"][0]["status"] = "pending"
    assert len(load_result(d).runs) == len(data["runs"]) - 1


def test_latency_points_spectrum_and_fallback():
    runs = {r.id: r for r in load_result(A).runs}
    ps, vs, source = latency_points(runs["preforked-c100-r0"])
    assert source == "spectrum" and max(ps) < 1.0 and vs == sorted(vs)
    ps, vs, source = latency_points(runs["threaded-c3000-r0"])  # recorded without a spectrum
    assert source == "percentiles" and ps == [0.5, 0.9, 0.99, 0.999]
    r = runs["preforked-c100-r0"]
    r.latency_spectrum = [[v, p * 100, n] for v, p, n in r.latency_spectrum]  # percent, not fraction
    assert max(latency_points(r)[0]) == pytest.approx(0.9999)


def test_cpu_plot_lays_runs_end_to_end(tmp_path):
    res = load_result(A)
    # Each run's sampler restarts t_s at 0 (as lab.stats records it).
    assert [s.t_s for s in res.stats if s.run_id == "threaded-c100-r0"][0] == 0
    p = plot_cpu(res, tmp_path)
    assert p.png.stat().st_size > 10_000 and p.svg.stat().st_size > 10_000


# --- the HTML report ---------------------------------------------------------------------------

class Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "poster", "data", "xlink:href"):
                self.refs.append(value or "")


def refs_of(text):
    """A Refs parser fed with the whole of text."""
    parser = Refs()
    parser.feed(text)
    return parser


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    html = build_report([A], out)
    return out, html


def test_report_files_exist_and_are_not_empty(report):
    out, html = report
    assert html == out / "report.html"
    for name in ("throughput", "throughput-normalised", "latency-c100", "latency-c1000",
                 "latency-c3000", "cpu-20250101T100000"):
        png, svg = out / "plots" / f"{name}.png", out / "plots" / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert svg.stat().st_size > 5_000 and "<svg" in svg.read_text()
    assert len(list((out / "plots" / "runs").glob("*.png"))) == 18
    assert json.loads((out / "score.json").read_text())["variants"][0]["overall"] == \
        pytest.approx(1 / 9)


def assert_self_contained(page: Path, out: Path) -> None:
    """Every reference of the page is an anchor or a file of the report itself: no scheme, no
    absolute path, nothing outside the report's directory, nothing missing."""
    text = page.read_text()
    parser = refs_of(text)
    for ref in parser.refs:
        assert ":" not in ref and not ref.startswith("/"), (page, ref)
        target = ref.split("#")[0]
        if target:
            path = (page.parent / target).resolve()
            assert path.is_relative_to(out.resolve()) and path.is_file(), (page, ref)
    assert "http://" not in text and "https://" not in text
    assert "url(" not in text and "@import" not in text
    assert "script" not in parser.tags and "link" not in parser.tags and "iframe" not in parser.tags


def test_report_html_needs_no_network(report):
    out, html = report
    assert refs_of(html.read_text()).refs, "the plots are referenced as files"
    for page in [html, *(out / "runs").glob("*.html")]:
        assert_self_contained(page, out)
    # The pages' plots carry no reference outside themselves either.
    for svg in (out / "plots").rglob("*.svg"):
        assert not re.search(r"""(?:href|src)=["'](?!#|data:)""", svg.read_text()), svg


def test_report_html_contents(report):
    out, html = report
    text = html.read_text()
    parser = refs_of(text)
    images = [r for r in parser.refs if r.startswith("plots/") and r.endswith(".svg")]
    # throughput x2, each architecture's throughput and latency, latency against concurrency,
    # latency per level, CPU; each run's spectrum is on its own page
    assert len(set(images)) == 2 + 3 * 2 + 1 + 3 + 1
    assert "Reproduction score" in text and "Kendall" in text
    assert "+0.111" in text  # overall score
    assert "+0.333" in text and "-1.000" in text
    assert "timeouts" in text  # the untrusted run listed with its reason, linked to its page
    assert 'href="runs/20250101T100000-poll-c1000-r1.html"' in text
    page = (out / "runs" / "20250101T100000-poll-c1000-r1.html").read_text()
    assert "untrusted: excluded" in page and "timeouts" in page
    assert "1,950 – 2,050" in text  # preforked at 100: its two repeats, the interval of n = 2
    assert "computed by the report" in text  # schema 1 stores no summaries
    assert "wide variations" in text
    assert "0.91×" in text  # preforked at 100: 2,000 / 2,200
    assert "0.52×" in text  # poll at 1,000: 600 / 1,150 (the invalid repeat left out)
    assert "Test CPU @ 3.0GHz" in text and "sha256:1111" in text  # environment block


def test_failed_and_unfinished_runs_do_not_break_the_report(tmp_path, table):
    d = tmp_path / "r"
    with edited_copy(A, d) as data:
        data["status"] = "interrupted"
        failed = data["runs"][0]
        failed.update(status="failed", requests_per_sec=None, requests=None, latency_ms=None,
                      latency_spectrum=None, validity=None, error="agent loadgen-1 unreachable")
        data["runs"][1].update(status="pending", requests_per_sec=None, latency_ms=None)
    (d / "stats.csv").unlink()
    text = build_report([d], tmp_path / "out").read_text()
    assert "agent loadgen-1 unreachable" in text and "status failed" in text
    assert "No stats.csv samples" in text
    # preforked at 100 lost both repeats: no figure there, and 100 is scored on the other two.
    (s,) = score(group_cells(load_result(d).runs), table)
    assert set([lv for lv in s.levels if lv.connections == 100][0].ours) == {"threaded", "poll"}


def test_report_of_a_whole_sweep_goes_into_its_dir(tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(SWEEP, sweep)
    html = build_report([sweep], None, run_plots=False)  # where it goes, not what it draws
    assert html == sweep / "report" / "report.html"
    text = html.read_text()
    assert "20250101T100000" in text and "20250102T100000" in text
    assert "36 runs: 35 trusted (0 with the server failing), 1 untrusted" in text


def test_default_out_is_the_run_dir_and_latest_is_used(tmp_path, monkeypatch):
    root = tmp_path / "results"
    shutil.copytree(SWEEP, root / "sweep")
    os.utime(root / "sweep" / B.name / "result.json", (2e9, 2e9))
    from lab.report import load
    monkeypatch.setattr(load, "DEFAULT_RESULTS_ROOT", root)
    html = build_report(None, None)
    assert html == root / "sweep" / B.name / "report" / "report.html"


def test_cli_build(tmp_path):
    assert main(["build", str(A), "--out", str(tmp_path / "r")]) == 0
    assert "Reproduction score" in (tmp_path / "r" / "report.html").read_text()
    assert len(list((tmp_path / "r" / "runs").glob("*.html"))) == 18 + 1  # each run, the list
    assert main(["build", str(tmp_path / "nothing")]) == 1


# --- schema 3: the two kinds of invalid, intervals, latency kinds ---------------------------

@pytest.fixture(scope="module")
def report_c(tmp_path_factory):
    out = tmp_path_factory.mktemp("report_c")
    return out, build_report([C], out).read_text()


def test_server_failed_cell_counts_and_is_the_collapse_point(cells_c, table):
    c = cell(cells_c, "threaded", 3000)
    assert [r.repeat for r in c.server_failed_runs] == [1, 2] and c.server_failed
    # The failed repeats are results: the median of 1,100, 1,050 and 900.
    assert c.figure == 1050
    (s,) = score(cells_c, table)
    rows = {r.arch: r for r in s.collapses}
    # 1,050 is above half of threaded's peak (1,900 at 100): only the failure makes 3,000 its
    # collapse; left out as before, the level would be a gap and no collapse would be seen.
    assert rows["threaded"].ours == 3000 and rows["threaded"].ours_by_failure
    assert rows["poll"].ours == 3000 and not rows["poll"].ours_by_failure  # 300 < 1,050
    lv = [lv for lv in s.levels if lv.connections == 3000][0]
    assert lv.ours["threaded"] == 1050 and lv.failed == {"threaded"}


def test_server_failed_runs_are_plotted_and_marked(cells_c, table, tmp_path):
    p = plot_throughput(cells_c, table, tmp_path)
    svg = p.svg.read_text()
    assert FAILED_COLOR in svg  # the hollow red markers
    assert "server failed in most repeats" in svg and "repeat where the server failed" in svg
    assert "untrusted run (excluded)" in svg and "interval wider than its target" in svg
    assert "bar: interval of the median" in svg and "article (published table)" in svg


def test_untrusted_runs_are_excluded_and_listed(cells_c, report_c):
    c = cell(cells_c, "poll", 1000)
    assert [r.repeat for r in c.untrusted_runs] == [1] and c.figure == 1150
    assert c.stat("requests_per_sec")["n"] == 3
    _out, text = report_c
    listed = text[text.index('id="untrusted"'):text.index('<h2 id="cpu">')]
    assert "poll-c1000-1" in listed and "generator-bound" in listed
    assert "preforked-c3000-3" in listed and "wrk exited with 1" in listed
    failures = text[text.index('id="failures"'):text.index('id="untrusted"')]
    assert "threaded-c3000-1" in failures and "threaded-c3000-2" in failures
    assert "poll-c1000-1" not in failures
    assert "29 runs: 27 trusted (2 with the server failing), 2 untrusted" in text


def test_intervals_n_cv_and_convergence_in_the_tables(report_c):
    out, text = report_c
    # The cells are in their architecture's section.
    cells_part = text[text.index('<h2 id="arch-'):text.index('<h2 id="latency">')]
    for header in ("95% interval", "<th>n</th>", "<th>CV</th>"):
        assert header in cells_part
    assert "1,980 – 2,050" in cells_part and "(±1.8%)" in cells_part  # preforked at 100
    assert "covers 75%" in cells_part  # three repeats: [min, max] is a 75% interval
    assert "not converged: ±18.3% &gt; target ±5%" in cells_part  # poll at 3,000
    assert "server failed in 2/3: errors: 1260" in cells_part
    assert "1,050&#x2717;" in cells_part  # a failed repeat, counted and marked
    assert '<s class="nw"' in cells_part  # the untrusted one struck through
    assert "0.91×" in cells_part and "0.90–0.93" in cells_part  # ratio and its interval
    latency = text[text.index('<h2 id="latency">'):text.index('id="failures"')]
    assert "p99 ms: median, 95% interval" in latency and "5,200.0 – 5,300.0" in latency
    assert "reconstructed from printed percentiles" in latency
    assert '3,000 <span class="failrun">(server failed)</span>' in text  # threaded's collapse
    data = json.loads((out / "score.json").read_text())
    cells = {(c["arch"], c["connections"]): c for c in data["cells"]}
    assert cells[("threaded", 3000)]["server_failed"] is True
    assert cells[("poll", 3000)]["requests_per_sec"]["ci95"] == [250, 360]
    assert cells[("poll", 1000)]["untrusted_runs"][0]["run"] == "poll-c1000-1"
    collapse = {c["arch"]: c for c in data["variants"][0]["collapse"]}
    assert collapse["threaded"]["ours"] == 3000 and collapse["threaded"]["ours_by_server_failure"]


def test_report_c_needs_no_network(report_c):
    out, _text = report_c
    for page in [out / "report.html", *(out / "runs").glob("*.html")]:
        assert_self_contained(page, out)


def test_latency_kinds_never_share_an_axis(tmp_path):
    d = tmp_path / "r"
    with edited_copy(C, d) as data:
        for r in data["runs"]:
            if r["params"]["arch"] == "poll":
                r["latency_kind"] = OPEN_LOOP
    cells = group_cells(load_result(d).runs)
    svg = plot_latency_overlay(cells, 1000, tmp_path / "p").svg.read_text()
    assert "closed-loop latency" in svg and "open-loop corrected latency" in svg
    assert "latency (ms), open-loop corrected" in svg and "latency (ms), closed-loop" in svg
    assert "points: reconstructed from printed percentiles" in svg
    svg = plot_latency_by_concurrency(cells, tmp_path / "p").svg.read_text()
    assert "closed-loop latency" in svg and "open-loop corrected latency" in svg
    assert "reconstructed from printed percentiles" in svg
    # One kind only: one panel, still named.
    svg = plot_latency_overlay(group_cells(load_result(C).runs), 1000, tmp_path / "q").svg.read_text()
    assert "closed-loop latency" in svg and "open-loop" not in svg
