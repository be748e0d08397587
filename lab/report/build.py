"""`build_report`: results in, report dir out: report.html, one page per run under runs/,
score.json with each cell's summary, PNG and SVG plots under plots/."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from .baseline import load_article_table
from .cells import group_cells, variant_label
from .html import Links, render_report, render_run, render_runs_index, run_page_name, write
from .load import load_results, result_dirs
from .plots import plot_latency_run, render_all
from .score import SCORE_DEFINITION, score


def default_out(paths: list[Path] | None, first_result: Path) -> Path:
    """`<run dir>/report/`; for a directory holding several results, that directory's report/."""
    if paths and len(paths) >= 1:
        base = Path(paths[0])
        base = base.parent if base.is_file() else base
        if len(paths) == 1 and len(result_dirs(base)) > 1:
            return base / "report"
    return first_result / "report"


def cell_json(c) -> dict:
    return {"arch": c.arch, "connections": c.connections, "variant": variant_label(c.variant),
            "requests_per_sec": c.stat("requests_per_sec"),
            "latency_p50_ms": c.stat("latency_p50_ms"), "latency_p99_ms": c.stat("latency_p99_ms"),
            "converged": c.converged, "target_ci_pct": c.target_ci_pct,
            "server_failed": c.server_failed,
            "server_failed_runs": [r.id for r in c.server_failed_runs],
            "untrusted_runs": [{"run": r.id, "result": r.result_id, "reasons": r.untrusted_reasons}
                               for r in c.untrusted_runs]}


def _score_entry(s) -> dict:
    to_json = getattr(s, "to_json", None)
    if to_json is not None:
        return to_json()
    return {
        "variant": variant_label(s.variant),
        "overall": s.overall,
        "levels": [{"connections": lv.connections, "tau_b": lv.tau, "ours": lv.ours,
                    "article": lv.article, "note": lv.note,
                    "unresolved_pairs": [list(p) for p in lv.unresolved],
                    "server_failed": sorted(lv.failed)} for lv in s.levels],
        "collapse": [{"arch": c.arch, "ours": c.ours, "ours_by_server_failure": c.ours_by_failure,
                      "ours_peak": list(c.ours_peak) if c.ours_peak else None,
                      "article_same_levels": c.article_same_levels,
                      "article_full_table": c.article_full} for c in s.collapses]}


def score_json(scores, cells=()) -> dict:
    return {"definition": SCORE_DEFINITION, "variants": [_score_entry(s) for s in scores],
            "cells": [cell_json(c) for c in cells]}


def _optional(module: str, name: str, problems: list[str]):
    """A function of a module that explains the figures (why, evidence_plots): the report is
    built without it, and says so, when it cannot be imported."""
    try:
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)
    except Exception as e:  # noqa: BLE001 - any failure there leaves the rest of the report
        problems.append(f"lab.report.{module}.{name} unavailable: {type(e).__name__}: {e}")
        return None


def _call(fn, problems: list[str], default, *args):
    if fn is None:
        return default
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - shown on the page; the figures still stand
        problems.append(f"{fn.__module__}.{fn.__name__} failed: {type(e).__name__}: {e}")
        print(f"report: {problems[-1]}", file=sys.stderr)
        return default


def explanations(cells, out: Path) -> dict:
    """The why of each cell, what changed at each collapse and the evidence plots, from the
    modules that compute them, each optional."""
    problems: list[str] = []
    explain_cell = _optional("why", "explain_cell", problems)
    explain_collapse = _optional("why", "explain_collapse", problems)
    render_evidence = _optional("evidence_plots", "render_evidence", problems)
    whys = {}
    before = len(problems)
    for c in cells:
        why = _call(explain_cell, problems, None, c)
        if len(problems) > before:
            break  # the first failure says it; the other cells would repeat it
        if why is not None:
            whys[id(c)] = why
    return {"whys": whys,
            "collapse_whys": _call(explain_collapse, problems, {}, cells) or {},
            "evidence_plots": _call(render_evidence, problems, {}, cells,
                                    out / "plots" / "evidence") or {},
            "problems": problems}


def build_report(paths: list[Path] | None = None, out: Path | None = None,
                 results_root: Path | None = None, run_plots: bool = True) -> Path:
    """Build the report of the given result dirs (or the latest); returns the main page's path.

    `run_plots=False` leaves out each run's latency spectrum plot (its page says so): the
    slowest part of a large sweep's report, and nothing the main page shows.
    """
    paths = [Path(p) for p in paths] if paths else None
    results = load_results(paths, results_root)
    out = Path(out) if out else default_out(paths, results[0].path)
    table = load_article_table()
    cells = group_cells([r for res in results for r in res.runs])
    scores = score(cells, table)
    plots = render_all(results, cells, table, out / "plots")
    explained = explanations(cells, out)
    write(out / "score.json", json.dumps(score_json(scores, cells), indent=1) + "\n")
    run_links = Links(out, out / "runs")
    for c in cells:
        why = explained["whys"].get(id(c))
        for r in c.runs:
            plot = plot_latency_run(r, out / "plots" / "runs") if run_plots else None
            write(out / "runs" / run_page_name(r), render_run(r, c, plot, run_links, why=why,
                                                                 plots_drawn=run_plots))
    write(out / "runs" / "index.html", render_runs_index(cells, run_links))
    return write(out / "report.html",
                 render_report(results, cells, scores, plots, table, links=Links(out, out),
                               **explained))
