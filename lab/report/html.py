"""What each page's template gets (the view-model), and the Jinja2 environment that renders it.

The HTML itself lives in templates/ (autoescaped). Pages are self-contained: CSS inline, no
script, and no reference outside the report's own directory.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from lab.validity import error_count

from .baseline import ArticleTable
from matplotlib.colors import to_hex

from .cells import Cell, arch_order, impl_label, impl_order, variants
from .load import RECONSTRUCTED, Result, Run
from .plots import PlotFile, arch_color, cell_latency_kind
from .score import SCORE_DEFINITION, Score


# --- formatting, as template filters -------------------------------------------------------------

def fmt_num(value, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}"


def fmt_tau(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3f}"


def fmt_pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def slug(text) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "x"


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("lab.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"], default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=fmt_num, tau=fmt_tau, pct=fmt_pct, slug=slug)
    env.globals.update(error_count=lambda run: error_count(run.raw.get("errors") or {}),
                       reconstructed=RECONSTRUCTED, score_definition=SCORE_DEFINITION)
    return env


ENV = _environment()


def render(template: str, **context) -> str:
    return ENV.get_template(template).render(**context)


# --- links: what a page refers to, relative to where it is ---------------------------------------

def run_page_name(run: Run) -> str:
    """The run's page under runs/: two results of one sweep repeat the same run ids."""
    return slug(f"{run.result_id}-{run.id}") + ".html"


@dataclass
class Links:
    """How a page in `page_dir` reaches the report's files: plots and run pages by a path
    relative to it, so the report can be moved or opened from disk as a whole."""
    report_dir: Path
    page_dir: Path

    def _rel(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.page_dir)).as_posix()

    def plot_src(self, plot: PlotFile) -> str:
        return self._rel(plot.svg)

    def plot_href(self, plot: PlotFile, kind: str) -> str:
        return self._rel(plot.png if kind == "png" else plot.svg)

    def run_href(self, run: Run) -> str:
        return self._rel(self.report_dir / "runs" / run_page_name(run))

    def href(self, name: str) -> str:
        return self._rel(self.report_dir / name)


# --- the main page ------------------------------------------------------------------------------

@dataclass
class CellRow:
    cell: Cell
    article: int | str | None
    ratio: float | None
    ratio_interval: tuple[float, float] | None
    css: str
    latency_kind: str
    latency_sources: list[str]
    why: object | None = None


def cell_row(c: Cell, table_: ArticleTable, why=None) -> CellRow:
    article = table_.value(c.arch, c.connections)
    number = table_.number(c.arch, c.connections)
    ratio = c.figure / number if c.figure is not None and number else None
    ratio_interval = ((c.interval[0] / number, c.interval[1] / number)
                      if ratio is not None and c.interval else None)
    css = ("nofig" if c.figure is None else "failed" if c.server_failed
           else "invalid" if c.server_failed_runs else "")
    return CellRow(c, article, ratio, ratio_interval, css, cell_latency_kind(c),
                   sorted({r.latency_source for r in c.trusted_runs}), why)


@dataclass
class ScoreView:
    """A score with what another module may add to it later (intervals, a paragraph)."""
    score: Score

    def __getattr__(self, name):
        return getattr(self.score, name)

    @property
    def label(self) -> str:
        return impl_label(self.score.variant)

    @property
    def overall_interval(self):
        return getattr(self.score, "overall_interval", None)

    @property
    def paragraph(self) -> str:
        return getattr(self.score, "paragraph", "") or ""

    @property
    def has_tau_intervals(self) -> bool:
        return any(getattr(lv, "tau_interval", None) for lv in self.score.levels)


def _env_value(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v if not isinstance(v, (dict, list)) else json.dumps(v)}"
                         for k, v in value.items()) or "—"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "—"
    return "" if value is None else str(value)


def environment_rows(res: Result) -> list[tuple[str, str]]:
    rows = [(k, _env_value(v)) for k, v in res.environment.items()]
    rows += [(k, _env_value(res.data.get(k)))
             for k in ("schema_version", "started_at", "finished_at", "status")]
    if res.statistics:
        rows.append(("statistics", _env_value(res.statistics)))
    if "cells" not in res.data:
        rows.append(("cell summaries", "computed by the report (the result stores none)"))
    return rows


@dataclass
class ArchSection:
    """One architecture: its plots beside its evidence plots, its cells with their why, and its
    collapse point explained (one per variant)."""
    arch: str
    color: str
    plots: list[PlotFile]
    evidence_plots: list[PlotFile]
    rows: list[CellRow]
    collapses: list[dict]
    has_evidence: bool


def arch_sections(cells: list[Cell], rows: list[CellRow], scores: list[Score],
                  plots: dict[str, list[PlotFile]], evidence_plots: dict,
                  collapse_whys: dict) -> list[ArchSection]:
    out = []
    for arch in sorted({c.arch for c in cells}, key=arch_order):
        collapses = [{"label": impl_label(s.variant), "row": row,
                      "why": collapse_whys.get((arch, s.variant))}
                     for s in scores for row in s.collapses if row.arch == arch]
        out.append(ArchSection(
            arch=arch, color=to_hex(arch_color(arch)), plots=plots.get(f"arch:{arch}", []),
            evidence_plots=list(evidence_plots.get(arch) or []),
            rows=[r for r in rows if r.cell.arch == arch], collapses=collapses,
            has_evidence=any(r.raw.get("evidence") for c in cells if c.arch == arch
                             for r in c.runs)))
    return out


def side_by_side(cells: list[Cell], table_: ArticleTable,
                 plots: dict[str, list[PlotFile]]) -> dict | None:
    """Per architecture and concurrency, every server (variant) beside the article: only when
    the results hold more than one."""
    groups = sorted(variants(cells), key=impl_order)
    if len(groups) < 2:
        return None
    by_key = {(c.arch, c.connections, c.variant): c for c in cells}
    rows = [{"arch": arch, "connections": conc, "article": table_.value(arch, conc),
             "cells": [by_key.get((arch, conc, g)) for g in groups]}
            for arch in sorted({c.arch for c in cells}, key=arch_order)
            for conc in sorted({c.connections for c in cells if c.arch == arch})]
    return {"labels": [impl_label(g) for g in groups], "rows": rows,
            "plot": (plots.get("side_by_side") or [None])[0]}


def report_context(results: list[Result], cells: list[Cell], scores: list[Score],
                   plots: dict[str, list[PlotFile]], table_: ArticleTable,
                   links: Links, whys: dict | None = None, collapse_whys: dict | None = None,
                   evidence_plots: dict | None = None, problems: list[str] | None = None) -> dict:
    """whys: id(cell) -> CellWhy; collapse_whys: (arch, variant) -> sentence; evidence_plots:
    arch -> plots (lab.report.why and evidence_plots, when they are there)."""
    whys = whys or {}
    runs = [r for c in cells for r in c.runs]
    untrusted = [r for r in runs if not r.trusted]
    failed = [r for r in runs if r.trusted and r.server_failed]
    scenarios = sorted({res.scenario for res in results})
    rows = [cell_row(c, table_, whys.get(id(c))) for c in cells]
    return dict(
        title=f"zerolab report: {', '.join(scenarios)}",
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        results=results, runs=runs, failed_runs=failed, untrusted_runs=untrusted,
        counts={"runs": len(runs), "trusted": len(runs) - len(untrusted), "failed": len(failed),
                "untrusted": len(untrusted),
                "unconverged": sum(1 for c in cells if c.converged is False)},
        scores=[ScoreView(s) for s in scores],
        cell_rows=rows, any_why=bool(whys),
        arch_sections=arch_sections(cells, rows, scores, plots, evidence_plots or {},
                                    collapse_whys or {}),
        side_by_side=side_by_side(cells, table_, plots),
        show_variant=any(c.variant for c in cells),
        plots=plots, problems=problems or [],
        environments=[{"label": f"{res.scenario} / {res.result_id}", "rows": environment_rows(res)}
                      for res in results],
        plot_src=links.plot_src, plot_href=links.plot_href, run_href=links.run_href,
        runs_href=links.href("runs/index.html"), cell_anchor=cell_anchor,
    )


def render_report(results: list[Result], cells: list[Cell], scores: list[Score],
                  plots: dict[str, list[PlotFile]], table_: ArticleTable, **kw) -> str:
    return render("report.html.j2", **report_context(results, cells, scores, plots, table_, **kw))


# --- a run's own page ----------------------------------------------------------------------------

# Which entry of an evidence `sources` map says where a figure comes from: (group, key prefix).
_EVIDENCE_SOURCE = [("cpu", "throttl", "throttling"), ("cpu", "periods", "throttling"),
                    ("cpu", "softirq", "softirq"), ("cpu", "", "cpu"),
                    ("page_faults", "", "page_faults"), ("context_switches", "", "context_switches"),
                    ("tasks", "created", "tasks_created"), ("tasks", "", "tasks"), ("fds", "", "fds"),
                    ("net", "time_wait", "time_wait"), ("net", "accept_queue", "accept_queue"),
                    ("net", "", "net")]
_EVIDENCE_GROUPS = ("cpu", "page_faults", "context_switches", "tasks", "fds", "net")


def _figure(value) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_figure(v)}" for k, v in value.items()) or "—"
    if isinstance(value, list):
        return ", ".join(_figure(v) for v in value) or "—"
    return str(value)


def _evidence_source(sources: dict, group: str, key: str) -> str:
    for g, prefix, name in _EVIDENCE_SOURCE:
        if g == group and key.startswith(prefix) and name in sources:
            return sources[name]
    return sources.get(group, "")


def evidence_view(evidence: dict | None) -> dict | None:
    """The run's evidence as rows: service, figure, value, per second, where it comes from."""
    if not evidence:
        return None
    if evidence.get("available") is False and "services" not in evidence:
        return {"available": False, "reason": evidence.get("reason") or "not recorded", "rows": [],
                "services": [], "about": []}
    shared = evidence.get("sources") or {}
    services = []
    order = {"server": 0, "redis": 1}
    for name, ev in sorted((evidence.get("services") or {}).items(),
                           key=lambda kv: (order.get(kv[0], 2), kv[0])):
        if not ev.get("available", True):
            services.append({"name": name, "available": False, "reason": ev.get("reason"),
                             "rows": [], "unavailable": {}})
            continue
        sources = dict(shared, **(ev.get("sources") or {}))
        per_s = ev.get("per_s") or {}
        rows = []
        for group in _EVIDENCE_GROUPS:
            for key, value in (ev.get(group) or {}).items():
                rate = (per_s.get("tasks_created" if (group, key) == ("tasks", "created") else key)
                        if group in ("context_switches", "page_faults", "tasks", "net") else None)
                rows.append({"figure": f"{group}.{key}", "value": _figure(value),
                             "per_s": _figure(rate) if rate is not None else "",
                             "source": _evidence_source(sources, group, key)})
        services.append({"name": name, "available": True, "rows": rows,
                         "unavailable": ev.get("unavailable") or {},
                         "containers": ev.get("containers")})
    machine = evidence.get("machine") or {}
    about = [("window (s)", _figure(evidence.get("window_s"))),
             ("samples, every (s)", f"{_figure(evidence.get('samples'))}, "
                                    f"{_figure(evidence.get('every_s'))}"),
             ("sampler CPU (s, share of a core)", f"{_figure(evidence.get('sampler_cpu_s'))}, "
                                                  f"{fmt_pct(evidence.get('sampler_cpu_share'), 2)}")]
    if machine:
        about.append(("whole machine: processes created, context switches",
                      f"{_figure(machine.get('processes_created'))}, "
                      f"{_figure(machine.get('context_switches'))} ({machine.get('source', '')})"))
    if evidence.get("sampler_errors"):
        about.append(("sampler errors", _figure(evidence["sampler_errors"])))
    return {"available": True, "services": services, "about": about}


def timeline_rows(timeline: list | None) -> list[tuple[str, float, float | None]]:
    """(state, entered at s, lasted s) of each state the run went through."""
    rows = []
    entries = [(str(e[0]), float(e[1])) for e in timeline or [] if len(e) >= 2]
    for i, (state, t) in enumerate(entries):
        nxt = entries[i + 1][1] if i + 1 < len(entries) else None
        rows.append((state, t, None if nxt is None else nxt - t))
    return rows


def generator_rows(run: Run) -> list[dict]:
    shares = run.raw.get("generator_cpu_share") or {}
    rows = []
    for g in run.raw.get("generators") or []:
        who = str(g.get("node") or g.get("agent"))
        result = g.get("result") or {}
        rows.append({"agent": g.get("agent"), "node": g.get("node"),
                     "cpu_share": shares.get(who, g.get("cpu_share")),
                     "requests_per_sec": result.get("requests_per_sec"),
                     "requests": result.get("requests")})
    return rows


def run_context(run: Run, cell: Cell | None, plot: PlotFile | None, links: Links,
                why=None, plots_drawn: bool = True) -> dict:
    raw = run.raw
    figures = [("requests/second (the tool's)", fmt_num(run.requests_per_sec, 1)),
               ("requests", fmt_num(raw.get("requests"))),
               ("duration (s)", fmt_num(raw.get("duration_s"), 2)),
               ("errors", _figure(raw.get("errors") or {})),
               ("latency kind, source", f"{run.latency_kind}, {run.latency_source}")]
    figures += [(f"latency {k} (ms)", fmt_num(v, 2)) for k, v in run.latency_ms.items()]
    side = run.server_side
    if side:
        figures += [("server's own count: requests/second over the steady window",
                     fmt_num(side.get("requests_per_sec"), 1)),
                    ("steady window (s), drift, stable",
                     f"{_figure(side.get('window_s'))}, {_figure(side.get('drift'))}, "
                     f"{_figure(side.get('stable'))}" + (f" ({side['reason']})"
                                                         if side.get("reason") else "")),
                    ("tool against the server's count",
                     "—" if side.get("disagreement") is None else
                     f"{side['disagreement'] * 100:.1f}% apart"
                     + (", explained by requests in flight" if side.get("disagreement_explained")
                        else ""))]
    host = raw.get("host_health")
    return dict(
        title=f"zerolab run {run.id} ({run.result_id})", run=run, cell=cell, plot=plot, why=why,
        params=[(k, _figure(v)) for k, v in run.params.items()], figures=figures,
        evidence=evidence_view(raw.get("evidence")), plots_drawn=plots_drawn,
        timeline=timeline_rows(raw.get("timeline")),
        host_health=[(k, _figure(v)) for k, v in host.items()] if isinstance(host, dict) else [],
        generators=generator_rows(run),
        generator_cpu_source=raw.get("generator_cpu_source"),
        start_skew_s=raw.get("start_skew_s"),
        provenance=[(k, _figure(v)) for k, v in (raw.get("provenance") or {}).items()],
        report_href=links.href("report.html"), runs_href=links.href("runs/index.html"),
        cell_anchor=cell_anchor(cell) if cell else None,
        plot_src=links.plot_src, plot_href=links.plot_href, run_href=links.run_href)


def cell_anchor(c: Cell) -> str:
    return slug(f"cell-{c.arch}-{c.connections}-{c.variant_label}")


def render_run(run: Run, cell: Cell | None, plot: PlotFile | None, links: Links, **kw) -> str:
    return render("run.html.j2", **run_context(run, cell, plot, links, **kw))


def render_runs_index(cells: list[Cell], links: Links) -> str:
    label = {id(r): c.impl_label for c in cells for r in c.runs}
    return render("runs.html.j2", title="zerolab runs", runs=[r for c in cells for r in c.runs],
                  show_variant=any(c.variant for c in cells),
                  report_href=links.href("report.html"), plot_src=links.plot_src,
                  plot_href=links.plot_href, run_href=links.run_href,
                  run_variant=lambda r: label.get(id(r), ""))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
