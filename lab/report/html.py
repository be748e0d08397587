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
from .load import RECONSTRUCTED, Result, Run
from .plots import PlotFile, cell_latency_kind, latency_label
from .score import SCORE_DEFINITION, Score

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; vertical-align: top; }
th { background: #f1f1f1; } td.l, th.l { text-align: left; }
tr.invalid td, tr.failed td { background: #fdecec; } tr.nofig td, tr.changed td { background: #fff7e0; }
tr.excluded td { background: #f3f3f3; color: #555; }
.badge { display: inline-block; padding: 0 .4em; border-radius: .3em; font-size: .85em; }
.ok { background: #e3f4e3; color: #185c18; } .bad { background: #fbd5d5; color: #8a1010; }
.warn { background: #fff0c2; color: #6b4d00; } .gone { background: #e6e6e6; color: #444; }
.failrun { color: #c00000; font-weight: 600; }
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
    """Trusted, server failed (a result, marked) or untrusted (excluded), with the reasons."""
    if not run.trusted:
        return ("<span class='badge gone'>untrusted: excluded</span> "
                + esc("; ".join(run.untrusted_reasons)))
    if run.server_failed:
        return ("<span class='badge bad'>server failed</span> "
                + esc("; ".join(run.server_reasons or ["server failed"])))
    return "<span class='badge ok'>trusted</span>"


def fmt_pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def fmt_interval(stat: dict | None, digits: int = 0) -> str:
    """"lo – hi (±h%)" of a SUMMARY, with the interval's real coverage when it is below 95%
    (the widest interval of fewer than six repeats); "—" without an interval."""
    if not stat or not stat.get("ci95"):
        return "<span class=muted>— (n &lt; 2)</span>" if stat else "—"
    lo, hi = stat["ci95"]
    text = f"<span class=nw>{fmt_num(lo, digits)} – {fmt_num(hi, digits)}</span>"
    if stat.get("ci_half_width_pct") is not None:
        text += f" <span class=nw>(±{stat['ci_half_width_pct']:.1f}%)</span>"
    coverage = stat.get("coverage")
    if coverage is not None and coverage < 0.95 - 1e-9:
        text += (f" <span class='muted nw' title=\"{esc(stat.get('method') or '')}\">"
                 f"covers {coverage * 100:.0f}%</span>")
    return text


def fmt_stat(stat: dict | None, digits: int = 0) -> str:
    """Median [interval] of a SUMMARY in one cell."""
    if not stat:
        return "—"
    return f"<b>{fmt_num(stat['median'], digits)}</b><br>{fmt_interval(stat, digits)}"


def convergence_badge(cell: Cell) -> str:
    half = (cell.stat("requests_per_sec") or {}).get("ci_half_width_pct")
    target = cell.target_ci_pct
    if cell.converged is False:
        now = f"±{half:.1f}%" if half is not None else "no interval"
        aim = f" &gt; target ±{target:g}%" if target is not None else ""
        return f"<span class='badge warn'>not converged: {now}{aim}</span>"
    if cell.converged is True and target is not None:
        return f"<span class='badge ok'>converged: within ±{target:g}%</span>"
    return ""


def failure_badge(cell: Cell) -> str:
    failed = cell.server_failed_runs
    if not failed:
        return ""
    cls = "bad" if cell.server_failed else "warn"
    return (f"<span class='badge {cls}'>server failed in {len(failed)}/{len(cell.trusted_runs)}: "
            f"{esc('; '.join(cell.failure_reasons))}</span>")


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
        "ours: median (req/s)", "95% interval", "n", "CV", "repeats (req/s)", "article (req/s)",
        "ours / article", "status"]
    rows = []
    for c in cells:
        art_html, art = _article_cell(table_, c.arch, c.connections)
        rps = c.stat("requests_per_sec")
        fig = c.figure
        ratio = "—"
        if fig is not None and art:
            ratio = f"{fig / art:.2f}×"
            if c.interval:
                ratio += (f"<br><span class='muted nw'>{c.interval[0] / art:.2f}–"
                          f"{c.interval[1] / art:.2f}</span>")
        repeats = []
        for r in c.runs:
            v = fmt_num(r.requests_per_sec)
            if not r.trusted:
                repeats.append(f"<s class=nw title=\"{esc('; '.join(r.untrusted_reasons))}\">{v}</s>")
            elif r.server_failed:
                repeats.append(f"<span class='nw failrun' title=\"server failed: "
                               f"{esc('; '.join(r.server_reasons))}\">{v}&#x2717;</span>")
            else:
                repeats.append(f"<span class=nw>{v}</span>")
        status = [b for b in (failure_badge(c), convergence_badge(c)) if b]
        excluded = c.untrusted_runs
        if excluded:
            status.append(f"<span class='badge gone'>{len(excluded)} untrusted, excluded</span> "
                          + "<br>".join(f"r{r.repeat}: {esc('; '.join(r.untrusted_reasons))}"
                                        for r in excluded))
        if not status:
            status.append("<span class='badge ok'>trusted</span>")
        cls = ("nofig" if fig is None else "failed" if c.server_failed
               else "invalid" if c.server_failed_runs else "")
        cv = rps.get("cv") if rps else None
        rows.append(([esc(c.arch), fmt_num(c.connections)]
                     + ([esc(c.variant_label)] if show_variant else [])
                     + [f"<b>{fmt_num(fig)}</b>", fmt_interval(rps), esc(rps["n"]) if rps else "0",
                        fmt_pct(cv), ", ".join(repeats) or "—", art_html, ratio,
                        "<br>".join(status)], cls))
    return table(headers, rows, left={-1})


def latency_table(cells: list[Cell]) -> str:
    show_variant = any(c.variant for c in cells)
    headers = ["architecture", "concurrency"] + (["variant"] if show_variant else []) + [
        "latency kind", "p50 ms: median, 95% interval", "p99 ms: median, 95% interval",
        "source of the runs' latency", "status"]
    rows = []
    for c in cells:
        runs = c.trusted_runs
        sources = sorted({r.latency_source for r in runs})
        source = "<br>".join(
            f"<b>{esc(x)}</b>" if x == RECONSTRUCTED else esc(x) for x in sources) or "—"
        rows.append(([esc(c.arch), fmt_num(c.connections)]
                     + ([esc(c.variant_label)] if show_variant else [])
                     + [esc(cell_latency_kind(c)), fmt_stat(c.stat("latency_p50_ms"), 1),
                        fmt_stat(c.stat("latency_p99_ms"), 1), source, failure_badge(c)],
                     "failed" if c.server_failed else ""))
    return table(headers, rows, left={-5, -2, -1})


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
            ours = " &gt; ".join(
                f"{esc(a)} ({fmt_num(lv.ours[a])}"
                + (", <span class=failrun>server failed</span>" if a in lv.failed else "") + ")"
                for a in lv.order("ours"))
            art = " &gt; ".join(f"{esc(a)} ({fmt_num(lv.article[a])})" for a in lv.order("article"))
            unresolved = ", ".join(f"{esc(a)}–{esc(b)}" for a, b in lv.unresolved) or "none"
            rows.append(([fmt_num(lv.connections), ours or "—", art or "—", fmt_tau(lv.tau),
                          unresolved, esc(lv.note)], "" if lv.tau is not None else "nofig"))
        parts.append(table(["concurrency", "our order", "article's order", "tau-b",
                            "our order unresolved (intervals overlap)", "note"], rows,
                           left={1, 2, 4, 5}))
        rows = []
        for c in s.collapses:
            peak = f"{fmt_num(c.ours_peak[1])} at {fmt_num(c.ours_peak[0])}" if c.ours_peak else "—"
            agree = ("<span class='badge ok'>same</span>" if c.agrees
                     else "<span class='badge bad'>differs</span>")
            ours = fmt_num(c.ours) if c.ours else "none seen"
            if c.ours_by_failure:
                ours += " <span class=failrun>(server failed)</span>"
            rows.append(([esc(c.arch), peak, ours,
                          fmt_num(c.article_same_levels) if c.article_same_levels else "none seen",
                          agree,
                          fmt_num(c.article_full) if c.article_full else "none seen"], ""))
        parts.append("<p>Collapse points (levels measured: per architecture, those with a figure "
                     "or where the server failed):</p>")
        parts.append(table(["architecture", "our peak (req/s at concurrency)", "our collapse",
                            "article's collapse, same levels", "agreement",
                            "article's collapse, whole table"], rows))
    return "\n".join(parts)


def _server_side(run: Run) -> str:
    """The server's own count over the steady window, and how far the tool's figure is from it."""
    side = run.server_side
    if not side or side.get("requests_per_sec") is None:
        return "—"
    text = fmt_num(side["requests_per_sec"])
    d = side.get("disagreement")
    if d is not None:
        text += (f"<br><span class=muted>{abs(d) * 100:.1f}% from the tool's"
                 + (", explained" if side.get("disagreement_explained") else "") + "</span>")
    if side.get("stable") is False:
        text += (f"<br><span class='badge warn' title=\"{esc(side.get('reason') or '')}\">"
                 "unstable</span>")
    return text


def runs_table(runs: list[Run]) -> str:
    rows = []
    for r in runs:
        lat = r.latency_ms
        n_err = error_count(r.raw.get("errors") or {})
        rows.append(([f"<span class=nw>{esc(r.id)}</span>", esc(r.result_id), esc(r.arch), fmt_num(r.connections),
                      esc(r.repeat), esc(r.status), fmt_num(r.requests_per_sec), _server_side(r),
                      fmt_num(lat.get("p50"), 1), fmt_num(lat.get("p99"), 1),
                      fmt_num(lat.get("p99_9"), 1), esc(latency_label(r)), fmt_num(n_err),
                      validity_badge(r)],
                     "" if r.valid else "failed" if r.trusted else "excluded"))
    return table(["run", "result", "architecture", "concurrency", "repeat", "status", "req/s",
                  "server-side req/s", "p50 ms", "p99 ms", "p99.9 ms", "latency", "errors",
                  "verdict"], rows, left={1, 2, -3, -1})


def excluded_table(runs: list[Run]) -> str:
    rows = [([f"<span class=nw>{esc(r.id)}</span>", esc(r.result_id), esc(r.arch),
              fmt_num(r.connections), esc(r.repeat), fmt_num(r.requests_per_sec),
              "<br>".join(esc(x) for x in r.untrusted_reasons)], "excluded") for r in runs]
    return table(["run", "result", "architecture", "concurrency", "repeat", "req/s (not used)",
                  "why it cannot be trusted"], rows, left={1, 2, -1})


def failures_table(runs: list[Run]) -> str:
    rows = [([f"<span class=nw>{esc(r.id)}</span>", esc(r.result_id), esc(r.arch),
              fmt_num(r.connections), esc(r.repeat), fmt_num(r.requests_per_sec),
              fmt_num(error_count(r.raw.get("errors") or {})),
              "<br>".join(esc(x) for x in r.server_reasons or ["server failed"])], "failed")
            for r in runs]
    return table(["run", "result", "architecture", "concurrency", "repeat", "req/s (counted)",
                  "errors", "how the server failed"], rows, left={1, 2, -1})


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
        rows += [([esc(k), esc(res.data.get(k))], "")
                 for k in ("schema_version", "started_at", "finished_at", "status")]
        if res.statistics:
            rows.append((["statistics", _env_value(res.statistics)], ""))
        if "cells" not in res.data:
            rows.append((["cell summaries", "computed by the report (the result stores none)"], ""))
        parts.append(f"<h3>{esc(res.scenario)} / {esc(res.result_id)}</h3>")
        parts.append(table(["", "value"], rows, left={1}))
    return "\n".join(parts)


def render_report(results: list[Result], cells: list[Cell], scores: list[Score],
                  plots: dict[str, list[PlotFile]], table_: ArticleTable) -> str:
    runs = [r for c in cells for r in c.runs]
    untrusted = [r for r in runs if not r.trusted]
    failed = [r for r in runs if r.trusted and r.server_failed]
    unconverged = [c for c in cells if c.converged is False]
    scenarios = sorted({res.scenario for res in results})
    title = f"zerolab report: {', '.join(scenarios)}"
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body = [f"<h1>{esc(title)}</h1>",
            "<p class=muted>Results: " + ", ".join(
                f"{esc(res.scenario)}/{esc(res.result_id)} ({esc(res.data.get('status'))})"
                for res in results) + f". {len(runs)} runs: {len(runs) - len(untrusted)} trusted "
            f"({len(failed)} with the server failing), {len(untrusted)} untrusted. "
            f"Generated {esc(now)}.</p>"]
    body.append("<p>Every figure is the median of a cell's trusted repeats with the interval "
                "that holds the true median with 95% probability (with fewer than six repeats "
                "no interval reaches 95%: [min, max] is shown with the probability it really "
                "has), the number of repeats n and their coefficient of variation (CV).</p>")
    if failed:
        body.append(f"<p><span class='badge bad'>{len(failed)} run(s) where the server failed"
                    "</span> (errors, timeouts, saturation) are results: they count in their "
                    "cell's figures, are marked in red in the tables and plots, and a level where "
                    "the server failed is its collapse point. <a href=\"#failures\">List</a>.</p>")
    if untrusted:
        body.append(f"<p><span class='badge gone'>{len(untrusted)} untrusted run(s)</span> "
                    "(the measurement itself cannot be trusted) are left out of every figure and "
                    "of the score, and listed with their reasons. "
                    "<a href=\"#untrusted\">List</a>.</p>")
    if unconverged:
        body.append(f"<p><span class='badge warn'>{len(unconverged)} cell(s) did not converge"
                    "</span>: their interval stayed wider than its target.</p>")
    body.append("<h2>Reproduction score</h2>")
    body.append(score_section(scores))
    body.append("<h2>Requests/second</h2>")
    body.append("<p>Solid lines: our figure (median of trusted repeats) with its interval as a "
                "bar; small dots: each repeat; hollow red markers: the server failed (a result); "
                "grey crosses: untrusted runs (excluded); dashed lines with hollow circles: the "
                "article's table over the same range of concurrency. The architectures are "
                "shifted slightly sideways so that their bars do not overlap.</p>")
    body += [image(p) for p in plots.get("throughput", [])]
    body.append("<h2>Per cell: ours against the article</h2>")
    body.append("<p>Struck-through repeats are untrusted and left out; red ones (&#x2717;) are "
                "runs in which the server failed, counted. Hover for the reasons. The article's "
                "\"wide variations\" and empty cells have no ratio; under a ratio, the same for "
                "the ends of our interval.</p>")
    body.append(cells_table(cells, table_))
    body.append("<h2>Latency</h2>")
    body.append("<p>A closed-loop latency (each connection waits for its answer before sending "
                "again) and an open-loop latency corrected for coordinated omission (wrk2, oha at "
                "a fixed rate) are different quantities: they never share an axis, and every "
                "label says which one it is. A latency <b>reconstructed from printed "
                "percentiles</b> (the tool printed a few percentiles, not its histogram) is "
                "marked as such.</p>")
    body += [image(p) for p in plots.get("latency_cells", [])]
    body.append(latency_table(cells))
    body.append("<p>Percentile spectra, HdrHistogram-style: percentile on a log scale of "
                "1/(1-p), so each \"nine\" gets the same width. Built from each run's recorded "
                "latency spectrum, or from its p50/p90/p99/p99.9 when there is no spectrum "
                "(hollow points).</p>")
    body += [image(p) for p in plots.get("latency_overlay", [])]
    if plots.get("latency_run"):
        body.append(f"<details><summary>Each run ({len(plots['latency_run'])})</summary><div class=grid>")
        body += [image(p) for p in plots["latency_run"]]
        body.append("</div></details>")
    body.append("<h2 id=failures>Runs where the server failed</h2>")
    body.append(failures_table(failed) if failed else "<p class=muted>None.</p>")
    body.append("<h2 id=untrusted>Untrusted runs, left out</h2>")
    body.append(excluded_table(untrusted) if untrusted else "<p class=muted>None.</p>")
    body.append("<h2>CPU of each container</h2>")
    body.append("<p>100% is one core. A container flat at its cpuset's limit was saturated.</p>")
    body += [image(p) for p in plots.get("cpu", [])] or ["<p class=muted>No stats.csv samples.</p>"]
    body.append("<h2>All runs</h2>")
    body.append(runs_table(runs))
    body.append("<h2>Environment</h2>")
    body.append(environment_section(results))
    return page(title, "\n".join(body))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
