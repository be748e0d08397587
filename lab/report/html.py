"""What each page's template gets (the view-model), and the Jinja2 environment that renders it.

The HTML itself lives in templates/ (autoescaped). Pages are self-contained: CSS inline, no
script, and no reference outside the report's own directory.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from lab.validity import error_count

from .baseline import ArticleTable
from .cells import Cell, variant_label
from .load import RECONSTRUCTED, Result, Run
from .plots import PlotFile, cell_latency_kind
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

@dataclass
class Links:
    """How a page reaches plots and run pages. `inline` embeds the plots as data URIs."""
    inline: bool = True

    def plot_src(self, plot: PlotFile) -> str:
        data = base64.b64encode(plot.png.read_bytes()).decode("ascii")
        return f"data:image/png;base64,{data}"

    def plot_href(self, plot: PlotFile, kind: str) -> str | None:
        return None

    def run_href(self, run: Run) -> str | None:
        return None


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
        return variant_label(self.score.variant)

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


def report_context(results: list[Result], cells: list[Cell], scores: list[Score],
                   plots: dict[str, list[PlotFile]], table_: ArticleTable,
                   links: Links | None = None, whys: dict | None = None) -> dict:
    links = links or Links()
    whys = whys or {}
    runs = [r for c in cells for r in c.runs]
    untrusted = [r for r in runs if not r.trusted]
    failed = [r for r in runs if r.trusted and r.server_failed]
    scenarios = sorted({res.scenario for res in results})
    return dict(
        title=f"zerolab report: {', '.join(scenarios)}",
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        results=results, runs=runs, failed_runs=failed, untrusted_runs=untrusted,
        counts={"runs": len(runs), "trusted": len(runs) - len(untrusted), "failed": len(failed),
                "untrusted": len(untrusted),
                "unconverged": sum(1 for c in cells if c.converged is False)},
        scores=[ScoreView(s) for s in scores],
        cell_rows=[cell_row(c, table_, whys.get(id(c))) for c in cells],
        show_variant=any(c.variant for c in cells),
        plots=plots,
        environments=[{"label": f"{res.scenario} / {res.result_id}", "rows": environment_rows(res)}
                      for res in results],
        plot_src=links.plot_src, plot_href=links.plot_href, run_href=links.run_href,
        run_variant=lambda r: "",
    )


def render_report(results: list[Result], cells: list[Cell], scores: list[Score],
                  plots: dict[str, list[PlotFile]], table_: ArticleTable, **kw) -> str:
    return render("report.html.j2", **report_context(results, cells, scores, plots, table_, **kw))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
