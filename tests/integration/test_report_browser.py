"""The HTML report in a real browser: Debian's headless Chromium, offline, loads every page of a
report built from tests/data/results with no console error and no failed load, and its main view
shows something. A page with such faults is caught, so the check can fail."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lab.report.browser import CHROMEDRIVER, CHROMIUM, INSTALL_HINT, check_report
from lab.scenario import ROOT

RESULTS = ROOT / "tests" / "data" / "results" / "sweep"
# Building the plots takes about a minute on a busy two-core machine; the browser a few seconds.
BROWSER_MISSING = not (CHROMIUM.is_file() and CHROMEDRIVER.is_file())
pytestmark = [
    pytest.mark.timeout(420),
    pytest.mark.skipif(BROWSER_MISSING and not os.environ.get("ZL_REQUIRE_BROWSER"),
                       reason=f"no {CHROMIUM} or {CHROMEDRIVER} ({INSTALL_HINT}); with ZL_REQUIRE_BROWSER=1 "
                       "these tests fail instead"),
]


@pytest.fixture(scope="module")
def checked_report(tmp_path_factory):
    """`python -m lab report RESULTS --out DIR --check-in-browser`, as a reader runs it."""
    out = tmp_path_factory.mktemp("report")
    cli = subprocess.run([sys.executable, "-m", "lab", "report", str(RESULTS), "--out", str(out),
                          "--check-in-browser"], cwd=ROOT, capture_output=True, text=True, timeout=400,
                         env=os.environ | {"COLUMNS": "200"})
    return out, cli


def test_cli_checks_the_report_and_leaves_a_screenshot(checked_report):
    out, cli = checked_report
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "the report loads in Chromium with no error" in cli.stdout
    assert (out / "screenshot.png").stat().st_size > 0


def test_report_pages_load_offline_with_no_error(checked_report, tmp_path):
    out, _ = checked_report
    check = check_report(out / "report.html", tmp_path / "screenshot.png")
    assert check.pages_loaded[0] == out / "report.html"
    assert len(check.pages_loaded) == len(list(out.rglob("*.html")))
    assert check.console_errors == []
    assert check.failed_loads == []
    assert not check.blank, check.problems
    assert check.ok


def test_a_faulty_page_is_caught(tmp_path):
    """A console error, an uncaught exception, a missing plot beside the page and a reference to
    the network are all reported; a page that shows almost nothing is blank."""
    page = tmp_path / "report.html"
    page.write_text('<!doctype html><html><body><p>x</p><img src="plots/missing.png">'
                    '<img src="http://example.org/remote.png">'
                    '<script>console.error("deliberate error"); notDefined();</script></body></html>\n')
    check = check_report(page, tmp_path / "screenshot.png")
    assert not check.ok
    assert any("deliberate error" in m for m in check.console_errors), check.console_errors
    assert any("notDefined" in m for m in check.console_errors), check.console_errors
    assert any("plots/missing.png" in m and "ERR_FILE_NOT_FOUND" in m for m in check.failed_loads), \
        check.failed_loads
    assert any("example.org/remote.png" in m for m in check.failed_loads), check.failed_loads
    assert check.blank and (tmp_path / "screenshot.png").is_file()


def test_a_faulty_page_beside_the_report_is_caught(tmp_path):
    """Pages below the main one (per-run pages) are loaded too, each problem naming its page."""
    (tmp_path / "report.html").write_text("<!doctype html><html><body>" + "<h1>report</h1><p>figures</p>" * 40
                                          + "</body></html>\n")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "r1.html").write_text('<!doctype html><img src="../plots/r1.png">\n')
    check = check_report(tmp_path / "report.html", tmp_path / "screenshot.png")
    assert len(check.pages_loaded) == 2
    assert check.console_errors == []
    assert [m.split(":")[0] for m in check.failed_loads] == ["runs/r1.html"], check.failed_loads
