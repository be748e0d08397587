"""Self-contained HTML pages: CSS inline, plots as base64 PNG, no external reference of any kind."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from lab.validity import error_count

from .baseline import WIDE, ArticleTable
from .cells import Cell, variant_label
from .load import Result, Run
from .plots import PlotFile
from .score import SCORE_DEFINITION, Score

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; vertical-align: top; }
th { background: #f1f1f1; } td.l, th.l { text-align: left; }
tr.invalid td { background: #fdecec; } tr.nofig td, tr.changed td { background: #fff7e0; }
.badge { display: inline-block; padding: 0 .4em; border-radius: .3em; font-size: .85em; }
.ok { background: #e3f4e3; color: #185c18; } .bad { background: #fbd5d5; color: #8a1010; }
.muted { color: #777; } .big { font-size: 1.5em; font-weight: 600; }
s { color: #a33; } figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; } .def { background: #f7f7fb; padding: .8em 1em;
border-left: 4px solid #88a; } details { margin: .8em 0; } summary { cursor: pointer; font-weight: 600; }
.grid { display: flex; flex-wrap: wrap; gap: .5em; } .grid figure { width: 48%; margin: 0; }
code { background: #f3f3f3; padding: 0 .2em; } .nw { white-space: nowrap; }
"""


def esc(value) -> str:
    return escape("" if value is None else str(value))


def fmt_num(value, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return esc(value)
    return f"{value:,.{digits}f}"


def fmt_tau(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3f}"


def page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def table(headers: list[str], rows: list[tuple[list[str], str]], left: set[int] = frozenset()) -> str:
    """headers are plain text; each row is (already escaped cells, row class).

    The first column and those in `left` are text, aligned left; the rest are figures.
    """
    def cls_of(i: int) -> str:
        return " class=l" if i == 0 or i in left or i - len(headers) in left else ""

    head = "".join(f"<th{cls_of(i)}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = []
    for cells, cls in rows:
        tds = "".join(f"<td{cls_of(i)}>{c}</td>" for i, c in enumerate(cells))
        body.append(f"<tr{f' class={cls}' if cls else ''}>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def image(plot: PlotFile, caption: str | None = None) -> str:
    data = base64.b64encode(plot.png.read_bytes()).decode("ascii")
    cap = esc(caption or plot.title)
    return (f"<figure><img alt=\"{esc(plot.title)}\" src=\"data:image/png;base64,{data}\">"
            f"<figcaption>{cap} <span class=muted>({esc(plot.png.name)}, {esc(plot.svg.name)})"
            f"</span></figcaption></figure>")


def validity_badge(run: Run) -> str:
    if run.valid:
        return "<span class='badge ok'>valid</span>"
    return "<span class='badge bad'>INVALID</span> " + esc("; ".join(run.reasons))


def _article_cell(table_: ArticleTable, arch: str, conc: int) -> tuple[str, int | None]:
    v = table_.value(arch, conc)
    if v is None:
        return "<span class=muted>empty</span>", None
    if v == WIDE:
        return "<em>wide variations</em>", None
    return fmt_num(v), v  # type: ignore[return-value]


def cells_table(cells: list[Cell], table_: ArticleTable) -> str:
    show_variant = any(c.variant for c in cells)
    headers = ["architecture", "concurrency"] + (["variant"] if show_variant else []) + [
        "ours (req/s)", "repeats (req/s)", "article (req/s)", "ours / article", "validity"]
    rows = []
    for c in cells:
        art_html, art = _article_cell(table_, c.arch, c.connections)
        fig = c.figure
        ratio = f"{fig / art:.2f}×" if fig is not None and art else "—"
        repeats = []
        for r in c.runs:
            v = fmt_num(r.requests_per_sec)
            repeats.append(f"<span class=nw>{v}</span>" if r.valid
                           else f"<s class=nw title=\"{esc('; '.join(r.reasons))}\">{v}</s>")
        invalid = [r for r in c.runs if not r.valid]
        flags = f"{len(c.valid_runs)}/{len(c.runs)} valid"
        if invalid:
            flags = "<span class='badge bad'>" + flags + "</span> " + "<br>".join(
                f"r{r.repeat}: {esc('; '.join(r.reasons))}" for r in invalid)
        else:
            flags = "<span class='badge ok'>" + flags + "</span>"
        cls = "nofig" if fig is None else ("invalid" if invalid else "")
        rows.append(([esc(c.arch), fmt_num(c.connections)]
                     + ([esc(c.variant_label)] if show_variant else [])
                     + [fmt_num(fig), ", ".join(repeats) or "—", art_html, ratio, flags], cls))
    return table(headers, rows, left={-1})


def score_section(scores: list[Score]) -> str:
    parts = [f"<p class=def>{esc(SCORE_DEFINITION)}</p>"]
    for s in scores:
        if s.variant:
            parts.append(f"<h3>Variant: {esc(variant_label(s.variant))}</h3>")
        overall = s.overall
        parts.append(f"<p>Overall score: <span class=big>{fmt_tau(overall)}</span> "
                     f"<span class=muted>(mean of {len(s.scored)} scored level(s) out of "
                     f"{len(s.levels)})</span></p>")
        rows = []
        for lv in s.levels:
            ours = " &gt; ".join(f"{esc(a)} ({fmt_num(lv.ours[a])})" for a in lv.order("ours"))
            art = " &gt; ".join(f"{esc(a)} ({fmt_num(lv.article[a])})" for a in lv.order("article"))
            rows.append(([fmt_num(lv.connections), ours or "—", art or "—", fmt_tau(lv.tau),
                          esc(lv.note)], "" if lv.tau is not None else "nofig"))
        parts.append(table(["concurrency", "our order", "article's order", "tau-b", "note"], rows,
                           left={1, 2, 4}))
        rows = []
        for c in s.collapses:
            peak = f"{fmt_num(c.ours_peak[1])} at {fmt_num(c.ours_peak[0])}" if c.ours_peak else "—"
            agree = ("<span class='badge ok'>same</span>" if c.agrees
                     else "<span class='badge bad'>differs</span>")
            rows.append(([esc(c.arch), peak, fmt_num(c.ours) if c.ours else "none seen",
                          fmt_num(c.article_same_levels) if c.article_same_levels else "none seen",
                          agree,
                          fmt_num(c.article_full) if c.article_full else "none seen"], ""))
        parts.append("<p>Collapse points (levels measured: per architecture, those with a figure):</p>")
        parts.append(table(["architecture", "our peak (req/s at concurrency)", "our collapse",
                            "article's collapse, same levels", "agreement",
                            "article's collapse, whole table"], rows))
    return "\n".join(parts)


def runs_table(runs: list[Run]) -> str:
    rows = []
    for r in runs:
        lat = r.latency_ms
        n_err = error_count(r.raw.get("errors") or {})
        rows.append(([f"<span class=nw>{esc(r.id)}</span>", esc(r.result_id), esc(r.arch), fmt_num(r.connections),
                      esc(r.repeat), esc(r.status), fmt_num(r.requests_per_sec),
                      fmt_num(lat.get("p50"), 1), fmt_num(lat.get("p99"), 1),
                      fmt_num(lat.get("p99_9"), 1), fmt_num(n_err), validity_badge(r)],
                     "" if r.valid else "invalid"))
    return table(["run", "result", "architecture", "concurrency", "repeat", "status", "req/s",
                  "p50 ms", "p99 ms", "p99.9 ms", "errors", "validity"], rows, left={1, 2, -1})


def _env_value(value) -> str:
    if isinstance(value, dict):
        return "<br>".join(f"{esc(k)}: {esc(v if not isinstance(v, (dict, list)) else json.dumps(v))}"
                           for k, v in value.items()) or "—"
    if isinstance(value, list):
        return esc(", ".join(map(str, value))) or "—"
    return esc(value)


def environment_section(results: list[Result]) -> str:
    parts = []
    for res in results:
        env = res.environment
        rows = [([esc(k), _env_value(v)], "") for k, v in env.items()]
        rows += [([esc(k), esc(res.data.get(k))], "") for k in ("started_at", "finished_at", "status")]
        parts.append(f"<h3>{esc(res.scenario)} / {esc(res.result_id)}</h3>")
        parts.append(table(["", "value"], rows, left={1}))
    return "\n".join(parts)


def render_report(results: list[Result], cells: list[Cell], scores: list[Score],
                  plots: dict[str, list[PlotFile]], table_: ArticleTable) -> str:
    runs = [r for c in cells for r in c.runs]
    n_invalid = sum(not r.valid for r in runs)
    scenarios = sorted({res.scenario for res in results})
    title = f"zerolab report: {', '.join(scenarios)}"
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body = [f"<h1>{esc(title)}</h1>",
            "<p class=muted>Results: " + ", ".join(
                f"{esc(res.scenario)}/{esc(res.result_id)} ({esc(res.data.get('status'))})"
                for res in results) + f". {len(runs)} runs, {n_invalid} invalid. Generated {esc(now)}.</p>"]
    if n_invalid:
        body.append(f"<p><span class='badge bad'>{n_invalid} invalid run(s)</span> are shown in the "
                    "tables and plots, marked, and left out of every figure and of the score.</p>")
    body.append("<h2>Reproduction score</h2>")
    body.append(score_section(scores))
    body.append("<h2>Requests/second</h2>")
    body.append("<p>Solid lines: our figure (median of valid repeats); dots: each valid repeat; "
                "grey crosses: invalid runs; dashed lines: the article's table over the same range "
                "of concurrency.</p>")
    body += [image(p) for p in plots.get("throughput", [])]
    body.append("<h2>Per cell: ours against the article</h2>")
    body.append("<p>Struck-through repeats are invalid (hover for the reason). The article's "
                "\"wide variations\" and empty cells have no ratio.</p>")
    body.append(cells_table(cells, table_))
    body.append("<h2>Latency</h2>")
    body.append("<p>HdrHistogram-style: percentile on a log scale of 1/(1-p), so each \"nine\" gets "
                "the same width. Built from each run's recorded latency spectrum, or from its "
                "p50/p90/p99/p99.9 when there is no spectrum.</p>")
    body += [image(p) for p in plots.get("latency_overlay", [])]
    if plots.get("latency_run"):
        body.append(f"<details><summary>Each run ({len(plots['latency_run'])})</summary><div class=grid>")
        body += [image(p) for p in plots["latency_run"]]
        body.append("</div></details>")
    body.append("<h2>CPU of each container</h2>")
    body.append("<p>100% is one core. A container flat at its cpuset's limit was saturated.</p>")
    body += [image(p) for p in plots.get("cpu", [])] or ["<p class=muted>No stats.csv samples.</p>"]
    body.append("<h2>All runs</h2>")
    body.append(runs_table(runs))
    body.append("<h2>Environment</h2>")
    body.append(environment_section(results))
    return page(title, "\n".join(body))


def render_compare(comparison) -> str:
    c = comparison
    title = f"zerolab comparison: {c.a_label} → {c.b_label}"
    noise = c.noise_text
    show_variant = any(r.variant for r in c.rows)
    rows = []
    for r in c.rows:
        if r.exceeds is None:
            verdict = "<span class=muted>" + esc(r.verdict) + "</span>"
        elif r.exceeds:
            verdict = "<span class='badge bad'>" + esc(r.verdict) + "</span>"
        else:
            verdict = "<span class='badge ok'>" + esc(r.verdict) + "</span>"
        change = "—" if r.change_pct is None else f"{r.change_pct:+.1f}%"
        rows.append(([esc(r.arch), fmt_num(r.connections)]
                     + ([esc(variant_label(r.variant))] if show_variant else [])
                     + [fmt_num(r.a), esc(r.a_note), fmt_num(r.b), esc(r.b_note), change, verdict],
                     "" if r.exceeds is not True else "changed"))
    headers = ["architecture", "concurrency"] + (["variant"] if show_variant else []) + [
        "A req/s", "A repeats", "B req/s", "B repeats", "change", "beyond noise?"]
    left = {-5, -3, -1}
    body = [f"<h1>{esc(title)}</h1>",
            f"<p>A: {esc(', '.join(map(str, c.a_paths)))}<br>B: {esc(', '.join(map(str, c.b_paths)))}</p>",
            f"<p class=def>{esc(c.NOISE_DEFINITION)}</p>",
            f"<p>Noise: <b>{esc(noise)}</b></p>", table(headers, rows, left=left)]
    return page(title, "\n".join(body))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
