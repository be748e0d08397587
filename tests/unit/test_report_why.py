"""lab.report.why and lab.report.evidence_plots on a recorded result whose runs carry evidence
blocks in the shape lab/evidence.py writes (tests/data/results/why/20250401T100000):

- forking at 20: 490, 500, 480 req/s; 1.01 processes created per request, system CPU 5.7-5.9 s
  of 10 s of CPU (median 58%), 350 page faults and one Redis connection per request;
- iterative at 300 with a backlog of 10: 1,480, 1,512, 1,600 listen overflows in the server's
  network namespace and 390, 399, 420 SYN retransmits in the generator's (the client resends the
  SYN the full queue dropped), p99 2.80-2.82 s;
- poll at 1,000: runs recorded before evidence was;
- threaded at 100, 1,000 and 3,000: a thread per request, 101, 1,001, 3,001 alive; at 3,000
  the server fails (12% timeouts) with 40,000 listen overflows, 9,000 SYN retransmits.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lab.report.cells import group_cells
from lab.report.load import load_result
from lab.report.why import (OVERFLOW_PER_REQUEST, TASKS_PER_REQUEST, CellWhy, evidence_missing,
                            explain_cell, explain_collapse, findings_of)

pytestmark = pytest.mark.timeout(300)

WHY = Path(__file__).resolve().parents[1] / "data" / "results" / "why" / "20250401T100000"


@pytest.fixture(scope="module")
def cells():
    return group_cells(load_result(WHY).runs)


def cell(cells, arch, conc):
    (c,) = [c for c in cells if c.arch == arch and c.connections == conc]
    return c


def edited(tmp_path, edit):
    """The recorded result, copied and edited (edit(doc) changes the runs in place)."""
    dest = tmp_path / WHY.name
    shutil.copytree(WHY, dest)
    doc = json.loads((dest / "result.json").read_text())
    edit(doc)
    (dest / "result.json").write_text(json.dumps(doc))
    return group_cells(load_result(dest).runs)


def run_of(doc, run_id):
    (r,) = [r for r in doc["runs"] if r["id"] == run_id]
    return r


def test_forking_creates_a_process_per_request(cells):
    why = explain_cell(cell(cells, "forking", 20))
    assert isinstance(why, CellWhy)
    assert why.dominant.claim == "a fork per request"
    # created = 1.01 x requests in every repeat; system 5.8 of 10 s of CPU in the median repeat
    assert "1.01 processes created per request" in why.dominant.measurement
    assert "system CPU 58% of the server's" in why.dominant.measurement
    assert "350 page faults per request" in why.dominant.measurement
    assert "tasks.created" in why.dominant.source
    assert why.text.startswith("a fork per request: 1.01 processes")
    assert "median of 3 repeats" in why.text
    # the lean variant's forked child opens its own Redis connection: named, not dominant
    assert "a Redis connection per request" in [f.claim for f in why.findings]


def test_iterative_overflows_its_accept_queue(cells):
    why = explain_cell(cell(cells, "iterative", 300))
    assert why.dominant.claim == "the 10-entry accept queue overflowed"
    m = why.dominant.measurement
    assert "1,512 listen overflows and 399 SYN retransmits in the window" in m  # the medians
    assert "p99 2.8 s ~ the 1 s/3 s SYN retry" in m
    assert why.dominant.weight == max(f.weight for f in why.findings)


def test_threaded_creates_a_thread_per_request(cells):
    why = explain_cell(cell(cells, "threaded", 1000))
    assert why.dominant.claim == "a thread created per request"
    assert "1.00 threads created per request" in why.dominant.measurement
    assert "up to 1,001 alive at once" in why.dominant.measurement


def test_a_failed_server_is_said_beside_its_cause(cells):
    why = explain_cell(cell(cells, "threaded", 3000))
    assert why.dominant.claim == "the 1024-entry accept queue overflowed"
    assert "The server failed in 3 of 3 repeats" in why.text
    failure = [f for f in why.findings if f.claim.startswith("the server failed")]
    assert failure and failure[0].weight == 0.0


def test_no_evidence_no_why(cells):
    c = cell(cells, "poll", 1000)
    assert explain_cell(c) is None
    assert evidence_missing(c) == "no evidence recorded"
    assert evidence_missing(cell(cells, "forking", 20)) is None


def test_missing_evidence_is_said_not_guessed(tmp_path):
    def edit(doc):
        del run_of(doc, "forking-c20-1")["evidence"]
        run_of(doc, "forking-c20-2")["evidence"]["services"]["server"] = {
            "available": False, "reason": "not on this host (another node, or it has stopped)"}
    c = cell(edited(tmp_path, edit), "forking", 20)
    why = explain_cell(c)
    # the one repeat left speaks alone, and the text says the others had none
    assert "1.01 processes created per request" in why.text and "median of" not in why.text
    assert "No evidence in 2 of 3 repeats" in why.text


def test_nothing_fires_says_the_figures_and_claims_nothing(tmp_path):
    def edit(doc):
        for r in doc["runs"]:
            if r["params"]["arch"] == "forking":
                srv = r["evidence"]["services"]["server"]
                srv["tasks"]["created"] = 0
                srv["per_s"].pop("tasks_created")
                srv["net"]["active_opens"] = 0
                srv["per_s"].pop("active_opens")
                srv["cpu"].update(user_s=6.0, system_s=2.0, total_s=8.0, cores=0.8)
    why = explain_cell(cell(edited(tmp_path, edit), "forking", 20))
    assert why.dominant is None and why.findings == []
    assert why.text.startswith("no dominant cost in the evidence: 0.80 cores")


@pytest.mark.parametrize("figures, claim, fires", [
    ({"tasks_per_request": TASKS_PER_REQUEST, "new_processes_seen": 5}, "a fork per request", True),
    ({"tasks_per_request": TASKS_PER_REQUEST * 0.98, "new_processes_seen": 5},
     "a fork per request", False),
    ({"tasks_per_request": 1.0, "new_threads_seen": 5, "max_processes": 2},
     "a thread created per request", True),
    ({"overflow_share": OVERFLOW_PER_REQUEST, "listen_overflows": 10}, "the accept queue overflowed",
     True),
    ({"overflow_share": OVERFLOW_PER_REQUEST / 2, "listen_overflows": 5},
     "the accept queue overflowed", False),
    ({"cores": 0.99, "max_processes": 2}, "one core saturated", True),
    ({"cores": 0.85, "max_processes": 2}, "one core saturated", False),
    ({"cores": 1.9, "max_processes": 17, "cpus": 2}, "all 2 cores saturated", True),
    ({"fds_max": 3000, "system_share": 0.2}, "poll scans every descriptor on each call", True),
])
def test_rule_thresholds(figures, claim, fires):
    arch = "poll" if "fds_max" in figures else "forking"
    found = [f.claim for f in findings_of(figures, arch, backlog=None)]
    assert (claim in found) is fires


def test_collapse_explained_by_what_moved(cells):
    found = explain_collapse(cells)
    text = found[("threaded", ())]
    assert text.startswith("collapses at 3,000 connections (the server failed: errors:")
    assert "against 1,000" in text and "requests/s 1,700 -> 900" in text
    # the three figures that moved most, furthest first
    assert "listen overflows 0 -> 40,000" in text and "SYN retransmits 0 -> 9,000" in text
    assert text.index("listen overflows") < text.index("SYN retransmits")
    assert ("forking", ()) not in found  # one level: no collapse


def test_collapse_without_evidence_before_it_says_so(tmp_path):
    def edit(doc):
        for r in doc["runs"]:
            if r["id"].startswith("threaded-c1000-"):
                del r["evidence"]
    text = explain_collapse(edited(tmp_path, edit))[("threaded", ())]
    assert "no evidence at 1,000 to compare" in text and "listen overflows" not in text


def test_evidence_plots_render_files(cells, tmp_path):
    from lab.report.evidence_plots import render_evidence
    mine = [c for c in cells if c.arch in ("threaded", "poll")]
    plots = render_evidence(mine, tmp_path)
    assert set(plots) == {"threaded"}  # poll has no evidence
    focus, overview = plots["threaded"]
    for p in (focus, overview):
        assert p.png.stat().st_size > 5000 and p.svg.stat().st_size > 5000
    svg = overview.svg.read_text()
    for unit in ("cores (CPU-seconds per second)", "ms of CPU per request", "switches per request",
                 "tasks created per request", "count in the measured window",
                 "descriptors open (max in the window)", "concurrency (connections, log scale)"):
        assert unit in svg
    assert "the server failed" in svg and "(at 3,000)" in svg
    assert "tasks created per request" in focus.svg.read_text()


def test_collapse_of_a_server_that_exited_says_so(tmp_path):
    src = WHY.parents[1] / "collapse" / "20250301T100000"
    dest = tmp_path / "c"
    shutil.copytree(src, dest)
    doc = json.loads((dest / "result.json").read_text())
    doc.pop("cells")
    for r in doc["runs"]:
        if r["params"]["arch"] == "preforked" and r["params"]["connections"] == 3000:
            r.update(status="failed", requests_per_sec=None,
                     error="generator loadgen-1 failed: wrk exited with 1; the server had exited "
                           "(code 137, SIGKILL): Killed")
    (dest / "result.json").write_text(json.dumps(doc))
    text = explain_collapse(group_cells(load_result(dest).runs))[("preforked", ())]
    # recorded before evidence was: what moved cannot be said, only the figure and the failure
    assert text.startswith("collapses at 3,000 connections (the server exited under the load in "
                           "4 of 4 runs), against 1,000")
    assert text.endswith("no evidence at 1,000 and 3,000 to compare")
