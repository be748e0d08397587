"""lab.report.compare on the recorded sweep: a verdict per shared cell from both sides' repeats
(Welch's t-test on log(req/s)), cells only on one side, and what differs between the two
results' environments and parameters, said before any figure.

tests/data/results/sweep/ holds two results of one sweep (preforked, threaded, poll at 100,
1,000 and 3,000 connections, two repeats each); A's poll at 1,000 has one invalid repeat.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from rich.console import Console
from scipy import stats

from lab.report import compare_results
from lab.report.__main__ import main
from lab.report.compare import TOO_FEW, compare
from lab.report.load import load_results
from lab.uncertainty import WELCH_LOG

pytestmark = pytest.mark.timeout(120)

DATA = Path(__file__).resolve().parents[1] / "data" / "results" / "sweep"
A = DATA / "20250101T100000"
B = DATA / "20250102T100000"


@contextmanager
def edited_copy(src, dest):
    """Copies the result folder src to dest and yields its result.json as a dict to edit."""
    shutil.copytree(src, dest)
    path = dest / "result.json"
    data = json.loads(path.read_text())
    yield data
    path.write_text(json.dumps(data))


def rows_of(comp):
    return {(r.arch, r.connections): r for r in comp.rows}


def test_verdicts_on_the_recorded_sweep():
    comp = compare(load_results([A]), load_results([B]))
    rows = rows_of(comp)
    assert len(rows) == 9 and comp.environment_differences == [] and comp.parameter_differences == []
    # preforked at 3,000: 980 and 1,020 against 1,180 and 1,220, well apart for their spread.
    r = rows[("preforked", 3000)]
    assert (r.a, r.b, r.n_a, r.n_b) == (1000, 1200, 2, 2) and r.verdict == "faster"
    la, lb = [math.log(x) for x in (980, 1020)], [math.log(x) for x in (1180, 1220)]
    ref = stats.ttest_ind(lb, la, equal_var=False)
    assert r.p_value == pytest.approx(ref.pvalue) and r.p_value < 0.05
    assert r.ratio == pytest.approx(1.2) and r.change_pct == pytest.approx(20)
    assert r.ratio_ci95[0] > 1
    # preforked at 100: +15% but A's two repeats are 1,950 and 2,050: not shown to differ.
    assert rows[("preforked", 100)].verdict == "within noise"
    assert rows[("preforked", 100)].ratio_ci95[0] < 1 < rows[("preforked", 100)].ratio_ci95[1]
    # poll at 1,000: A's invalid 3,000 req/s is left out, so A has one trusted repeat.
    p = rows[("poll", 1000)]
    assert p.verdict == TOO_FEW and p.n_a == 1 and p.a == 600 and p.p_value is None
    assert p.a_note == "1/2 trusted"
    assert comp.counts() == {"within noise": 7, "faster": 1, TOO_FEW: 1}


def test_a_against_itself_is_within_noise():
    comp = compare(load_results([A]), load_results([A]))
    verdicts = {r.verdict for r in comp.rows}
    assert verdicts == {"within noise", TOO_FEW}
    assert all(r.p_value in (None, pytest.approx(1.0)) for r in comp.rows)


def test_files_console_and_cli(tmp_path):
    console = Console(record=True, width=120)
    html = compare_results(A, B, tmp_path / "cmp", console=console)
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["test"] == WELCH_LOG and data["alpha"] == 0.05
    assert data["environment_differences"] == [] and data["verdicts"]["faster"] == 1
    cell = {(c["arch"], c["connections"]): c for c in data["cells"]}[("preforked", 3000)]
    assert cell["verdict"] == "faster" and len(cell["ratio_ci95"]) == 2
    out = console.export_text()
    assert "faster" in out and "within noise" in out and "+20.0%" in out and "too few runs" in out
    assert "Warning" not in out
    text = html.read_text()
    assert "B/A [95% CI]" in text and "verdict" in text and "faster" in text and "×1.20 [" in text
    assert "Welch" in text
    # Self-contained: no reference leaves the page.
    assert not re.search(r"""(?:src|href)=["']?(?!data:|#)""", text)
    assert "http://" not in text and "https://" not in text
    assert main(["compare", str(A), str(B), "--out", str(tmp_path / "c2")]) == 0
    assert (tmp_path / "c2" / "compare.html").is_file()


def test_environment_warning_comes_first(tmp_path):
    b = tmp_path / "b"
    with edited_copy(B, b) as data:
        data["environment"]["cores"] = 2
        data["environment"]["images"]["server"] = "sha256:9999"
        data["environment"]["constraints"]["server_cpuset"] = "0"
    console = Console(record=True, width=160)
    html = compare_results(A, b, tmp_path / "cmp", console=console)
    out = console.export_text()
    assert "Warning: the environments differ" in out
    for line in ("cores differs: A 8, B 2", "image of server differs: A sha256:1111, B sha256:9999",
                 "constraint server_cpuset differs: A 0-1, B 0"):
        assert line in out and line in html.read_text()
    assert out.index("Warning") < out.index("preforked")
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert len(data["environment_differences"]) == 3
    assert html.read_text().index("environments differ") < html.read_text().index("<table>")


def test_parameters_that_differ_are_named_and_cells_still_match(tmp_path):
    b = tmp_path / "b"
    with edited_copy(B, b) as data:
        for r in data["runs"]:
            r["params"]["backlog"] = 4096
    comp = compare(load_results([A]), load_results([b]))
    assert comp.parameter_differences == ["backlog: A 1024, B 4096"]
    assert len(comp.rows) == 9 and not comp.only_in_a and not comp.only_in_b


def test_cells_on_one_side_are_listed(tmp_path):
    b = tmp_path / "b"
    with edited_copy(B, b) as data:
        data["runs"] = [r for r in data["runs"] if r["params"]["arch"] != "poll"]
        extra = json.loads(json.dumps(data["runs"][0]))
        extra["id"], extra["params"]["arch"] = "epoll-c100-r0", "epoll"
        data["runs"].append(extra)
    comp = compare(load_results([A]), load_results([b]))
    assert comp.only_in_a == ["poll at 100", "poll at 1,000", "poll at 3,000"]
    assert comp.only_in_b == ["epoll at 100"]
    console = Console(record=True, width=160)
    compare_results(A, b, tmp_path / "cmp", console=console)
    assert "only in A: poll at 100, poll at 1,000, poll at 3,000" in console.export_text()


def test_without_repeats_no_verdict(tmp_path):
    one = []
    for src in (A, B):
        d = tmp_path / src.name
        with edited_copy(src, d) as data:
            data["runs"] = [r for r in data["runs"] if r["params"]["repeat"] == 0]
        one.append(d)
    comp = compare(load_results([one[0]]), load_results([one[1]]))
    assert {r.verdict for r in comp.rows} == {TOO_FEW}
    assert all(r.ratio is not None and r.ratio_ci95 is None for r in comp.rows)


def test_trust_of_schema3_runs(tmp_path):
    """An untrusted repeat is left out; a server-failed one is a result and counts."""
    b = tmp_path / "b"
    with edited_copy(B, b) as data:
        data["schema_version"] = 3
        for r in data["runs"]:
            r["validity"] = {"trusted": True, "untrusted_reasons": [], "server_failed": False,
                             "server_reasons": [], "valid": True, "reasons": []}
            if r["id"] == "preforked-c100-r1":
                r["validity"].update(trusted=False, untrusted_reasons=["host busy"], valid=False)
            if r["id"] == "threaded-c100-r1":
                r["validity"].update(server_failed=True, server_reasons=["errors 3%"], valid=False)
    rows = rows_of(compare(load_results([A]), load_results([b])))
    assert rows[("preforked", 100)].n_b == 1 and rows[("preforked", 100)].verdict == TOO_FEW
    assert rows[("threaded", 100)].n_b == 2
    assert "1 server failed" in rows[("threaded", 100)].b_note
