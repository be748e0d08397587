"""PNG and SVG plots of a set of results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from .baseline import ARCHS, ArticleTable  # noqa: E402
from .cells import Cell, arch_order, impl_label, impl_order, variants  # noqa: E402
from .load import Result, Run  # noqa: E402

_PALETTE = plt.get_cmap("tab10").colors
SERVICE_COLORS = {"server": "#d62728", "redis": "#1f77b4", "loadgen": "#2ca02c"}
_VARIANT_MARKERS = "osD^vP*X"
# Line styles of our variants (servers); dashed is the article's alone.
_VARIANT_STYLES = ["-", "-.", ":", (0, (6, 1, 1, 1, 1, 1)), (0, (1, 3))]
ARTICLE_LABEL = "article (published table)"

# Percentiles shown on the "nines" axis: 1/(1-p).
NINES = [(0.0, "0%"), (0.5, "50%"), (0.9, "90%"), (0.99, "99%"), (0.999, "99.9%"),
         (0.9999, "99.99%"), (0.99999, "99.999%"), (0.999999, "99.9999%")]


# One colour per architecture, the same in every plot; no red (the server failing is red) and
# no grey (untrusted runs are grey).
ARCH_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
OTHER_COLORS = ["#bcbd22", "#393b79", "#637939"]  # servers that are none of the seven


def arch_color(arch: str):
    if arch in ARCHS:
        return ARCH_COLORS[ARCHS.index(arch) % len(ARCH_COLORS)]
    return OTHER_COLORS[sum(map(ord, arch)) % len(OTHER_COLORS)]


@dataclass
class PlotFile:
    name: str
    title: str
    png: Path
    svg: Path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "plot"


def _save(fig, out_dir: Path, name: str, title: str) -> PlotFile:
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    # No metadata: keeps the SVG free of external namespace references beyond the SVG's own.
    fig.savefig(svg, bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return PlotFile(name=name, title=title, png=png, svg=svg)


def _thousands(x, _pos=None) -> str:
    return f"{x:,.0f}"


def _concurrency_axis(ax, levels: list[int]) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(levels))
    ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.xaxis.set_minor_locator(NullLocator())
    if len(levels) > 7:
        plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    lo, hi = min(levels), max(levels)
    pad = (hi / lo) ** 0.04 if hi > lo else 1.5
    ax.set_xlim(lo / pad, hi * pad)
    ax.set_xlabel("concurrency (connections, log scale)")
    ax.grid(True, which="major", alpha=0.3)


def _article_series(table: ArticleTable, arch: str, lo: int, hi: int) -> dict[int, int]:
    return {c: v for c, v in table.numeric_series(arch).items() if lo <= c <= hi}


FAILED_COLOR = "#d00000"
UNTRUSTED_COLOR = "0.45"
INTERVAL_NOTE = "bar: interval of the median, 95% ([min, max] below 6 repeats)"


def _dodge(i: int, n: int) -> float:
    """A small factor spreading the architectures apart on the log axis, so bars do not overlap."""
    # At most ±10% in all, however many series: a point must stay at its own level.
    step = min(0.035, 0.2 / (n - 1)) if n > 1 else 0.0
    return (1 + step) ** (i - (n - 1) / 2)


def _cell_peak(cells: list[Cell]) -> float:
    """The highest figure over cells where the server did not fail (all cells if it always did)."""
    sound = [c.figure for c in cells if c.figure is not None and not c.server_failed]
    figures = sound or [c.figure for c in cells if c.figure is not None]
    return max(figures) if figures else 1.0


def _legend(fig, axes: list, handles: list, compact: bool) -> None:
    """Outside the axes, never over the data: to the right, or below them in two columns for
    a compact plot (half a page wide, where a legend to the right would shrink the axes)."""
    if compact:
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2,
                   fontsize=8.5, frameon=False)
    else:
        axes[-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                        fontsize=9, frameon=False)


def plot_throughput(cells: list[Cell], table: ArticleTable, out_dir: Path,
                    normalised: bool = False, name: str | None = None,
                    title: str | None = None, compact: bool = False) -> PlotFile | None:
    """Our medians with their intervals, every repeat, and the article's curves.

    A cell where the server failed is drawn hollow with a red edge, and each server-failed
    repeat as a red ring: they are results. Untrusted runs are grey crosses, outside the line.
    """
    cells = [c for c in cells if c.runs]
    if not cells:
        return None
    levels = sorted({c.connections for c in cells})
    lo, hi = levels[0], levels[-1]
    var_list = variants(cells)
    fig, ax = plt.subplots(figsize=(6.4, 4.0) if compact else (10, 5.6))
    archs = sorted({c.arch for c in cells}, key=arch_order)
    series = [(var, arch) for var in var_list for arch in archs]
    seen = {"failed_cell": False, "failed_run": False, "untrusted": False, "unconverged": False}
    for si, (var, arch) in enumerate(series):
        marker = _VARIANT_MARKERS[var_list.index(var) % len(_VARIANT_MARKERS)]
        mine = sorted((c for c in cells if c.arch == arch and c.variant == var),
                      key=lambda c: c.connections)
        if not mine:
            continue
        shift = _dodge(si, len(series))
        peak = _cell_peak(mine) if normalised else 1.0
        color = arch_color(arch)
        pts = [c for c in mine if c.figure is not None]
        style = _VARIANT_STYLES[var_list.index(var) % len(_VARIANT_STYLES)]
        ax.plot([c.connections * shift for c in pts], [c.figure / peak for c in pts], ls=style,
                color=color, lw=2, zorder=3)
        for c in pts:
            x, y = c.connections * shift, c.figure / peak
            if c.interval:
                lo_ci, hi_ci = (v / peak for v in c.interval)
                ax.errorbar([x], [y], yerr=[[max(0.0, y - lo_ci)], [max(0.0, hi_ci - y)]],
                            fmt="none", ecolor=color, elinewidth=1.5, capsize=4, capthick=1.5,
                            zorder=4)
            if c.server_failed:
                seen["failed_cell"] = True
                ax.plot(x, y, marker, ms=9, mfc="white", mec=FAILED_COLOR, mew=2.2, zorder=6)
            else:
                ax.plot(x, y, marker, ms=6, color=color, zorder=5)
            if c.converged is False:
                seen["unconverged"] = True
                ax.plot(x, y, "s", ms=15, mfc="none", mec="0.25", mew=1.0, zorder=5)
        for c in mine:
            for r in c.runs:
                if r.requests_per_sec is None:
                    continue
                x, y = c.connections * shift, r.requests_per_sec / peak
                if not r.trusted:
                    if not normalised:
                        seen["untrusted"] = True
                        ax.plot(x, y, "x", color=UNTRUSTED_COLOR, ms=8, mew=1.8, zorder=2)
                elif r.server_failed:
                    seen["failed_run"] = True
                    ax.plot(x, y, "o", ms=6, mfc="none", mec=FAILED_COLOR, mew=1.4, zorder=5)
                elif not normalised:
                    ax.plot(x, y, ".", color=color, alpha=0.45, ms=5, zorder=2)
    for arch in archs:
        art = _article_series(table, arch, lo, hi)
        if not art:
            continue
        peak = max(art.values()) if normalised else 1.0
        ax.plot(list(art), [v / peak for v in art.values()], "--", marker="o", ms=4,
                mfc="none", color=arch_color(arch), lw=1.4, alpha=0.8, zorder=1)
    _concurrency_axis(ax, levels)
    if normalised:
        ax.set_ylabel("throughput, fraction of own peak (1 = peak)")
        ax.axhline(0.5, color="0.5", lw=0.8, ls=":")
        ax.text(lo, 0.5, " half of peak (collapse)", va="bottom", fontsize=8, color="0.4")
        ax.set_ylim(bottom=0)
        title = title or "Requests/second normalised to each architecture's own peak"
    else:
        ax.set_ylabel("throughput (requests/second)")
        ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
        ax.set_ylim(bottom=0)
        title = title or "Requests/second against concurrency"
    ax.set_title(title)
    handles = [Line2D([], [], color=arch_color(a), lw=2, label=a) for a in archs]
    handles += [Line2D([], [], color="k", lw=2, marker="o", ms=5,
                       label="ours: median of trusted repeats"),
                Line2D([], [], color="k", lw=0, marker="|", ms=12, mew=1.5, label=INTERVAL_NOTE),
                Line2D([], [], color="k", lw=1.4, ls="--", marker="o", ms=4, mfc="none",
                       label=ARTICLE_LABEL)]
    if not normalised:
        handles.append(Line2D([], [], color="k", ls="", marker=".", alpha=0.45, label="a repeat"))
    if seen["failed_cell"]:
        handles.append(Line2D([], [], ls="", marker="o", ms=9, mfc="white", mec=FAILED_COLOR,
                              mew=2.2, label="server failed in most repeats"))
    if seen["failed_run"]:
        handles.append(Line2D([], [], ls="", marker="o", ms=6, mfc="none", mec=FAILED_COLOR,
                              mew=1.4, label="repeat where the server failed"))
    if seen["untrusted"]:
        handles.append(Line2D([], [], color=UNTRUSTED_COLOR, ls="", marker="x", mew=1.8,
                              label="untrusted run (excluded)"))
    if seen["unconverged"]:
        handles.append(Line2D([], [], ls="", marker="s", ms=11, mfc="none", mec="0.25",
                              label="interval wider than its target"))
    if len(var_list) > 1:
        handles += [Line2D([], [], color="0.3", ls=_VARIANT_STYLES[i % len(_VARIANT_STYLES)],
                           marker=_VARIANT_MARKERS[i % 8], label=impl_label(v))
                    for i, v in enumerate(var_list)]
    _legend(fig, [ax], handles, compact)
    name = name or ("throughput-normalised" if normalised else "throughput")
    return _save(fig, out_dir, name, title)


def cell_latency_kind(cell: Cell) -> str:
    """The latency kind of a cell's trusted runs ("mixed: ..." if they differ)."""
    kinds = sorted({r.latency_kind for r in (cell.trusted_runs or cell.runs)})
    return kinds[0] if len(kinds) == 1 else "mixed: " + " + ".join(kinds)


def plot_latency_by_concurrency(cells: list[Cell], out_dir: Path, name: str | None = None,
                                title: str | None = None, compact: bool = False
                                ) -> PlotFile | None:
    """Median p50 and p99 latency per cell with their intervals, one panel per latency kind:
    a closed-loop latency and an open-loop corrected one never share an axis."""
    cells = [c for c in cells if c.stat("latency_p99_ms") or c.stat("latency_p50_ms")]
    if not cells:
        return None
    kinds = sorted({cell_latency_kind(c) for c in cells})
    size = (6.4 * len(kinds), 4.0) if compact else (7.5 * len(kinds) + 2.5, 5.2)
    fig, axes = plt.subplots(1, len(kinds), figsize=size, squeeze=False)
    var_list = variants(cells)
    archs = sorted({c.arch for c in cells}, key=arch_order)
    series = [(var, arch) for var in var_list for arch in archs]
    reconstructed = False
    for ax, kind in zip(axes[0], kinds):
        mine = [c for c in cells if cell_latency_kind(c) == kind]
        values = []
        for si, (var, arch) in enumerate(series):
            row = sorted((c for c in mine if c.arch == arch and c.variant == var),
                         key=lambda c: c.connections)
            if not row:
                continue
            color = arch_color(arch)
            shift = _dodge(si, len(series))
            for key, ls, lw in (("latency_p99_ms", "-", 2.0), ("latency_p50_ms", ":", 1.5)):
                pts = [(c, c.stat(key)) for c in row if c.stat(key)]
                if not pts:
                    continue
                xs = [c.connections * shift for c, _ in pts]
                ys = [st["median"] for _, st in pts]
                values += ys
                ax.plot(xs, ys, ls=ls, color=color, lw=lw, zorder=3)
                for (c, st), x, y in zip(pts, xs, ys):
                    if st.get("ci95"):
                        lo_ci, hi_ci = st["ci95"]
                        ax.errorbar([x], [y], yerr=[[max(0.0, y - lo_ci)], [max(0.0, hi_ci - y)]],
                                    fmt="none", ecolor=color, elinewidth=1.2, capsize=3, zorder=4)
                    rec = any(r.latency_reconstructed for r in c.trusted_runs)
                    reconstructed |= rec
                    if c.server_failed:
                        ax.plot(x, y, "o", ms=8, mfc="white", mec=FAILED_COLOR, mew=2, zorder=6)
                    else:
                        marker = _VARIANT_MARKERS[var_list.index(var) % len(_VARIANT_MARKERS)]
                        ax.plot(x, y, "D" if rec else marker, ms=5, color=color,
                                mfc="white" if rec else color, zorder=5)
        _concurrency_axis(ax, sorted({c.connections for c in mine}))
        _latency_yscale(ax, values)
        ax.set_ylabel(f"latency (ms), {kind}")
        ax.set_title(f"{kind} latency", fontsize=11)
    title = title or ("Latency against concurrency: median p99 (solid) and p50 (dotted) of "
                      "trusted repeats")
    fig.suptitle(title, fontsize=11)
    handles = [Line2D([], [], color=arch_color(a), lw=2, label=a) for a in archs]
    handles += [Line2D([], [], color="k", lw=2, label="p99"),
                Line2D([], [], color="k", lw=1.5, ls=":", label="p50"),
                Line2D([], [], color="k", lw=0, marker="|", ms=12, mew=1.5, label=INTERVAL_NOTE)]
    if reconstructed:
        handles.append(Line2D([], [], color="k", ls="", marker="D", mfc="white",
                              label="a repeat reconstructed from printed percentiles"))
    if any(c.server_failed for c in cells):
        handles.append(Line2D([], [], ls="", marker="o", ms=8, mfc="white", mec=FAILED_COLOR,
                              mew=2, label="server failed in most repeats"))
    if len(var_list) > 1:
        handles += [Line2D([], [], color="0.3", ls="", marker=_VARIANT_MARKERS[i % 8],
                           label=impl_label(v)) for i, v in enumerate(var_list)]
    _legend(fig, list(axes[0]), handles, compact)
    return _save(fig, out_dir, name or "latency-by-concurrency", title)


def latency_points(run: Run) -> tuple[list[float], list[float], str]:
    """(percentiles as fractions, latency in ms, source) for a run; p = 1 cannot sit on the axis."""
    spectrum = run.latency_spectrum or []
    pts = []
    if spectrum:
        scale = 100.0 if max(row[1] for row in spectrum) > 1.0 else 1.0
        pts = [(row[1] / scale, row[0]) for row in spectrum if row[1] / scale < 1.0]
        source = "spectrum"
    if not pts:
        lat = run.latency_ms
        pts = [(p, lat[k]) for p, k in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99_9"))
               if lat.get(k) is not None]
        source = "percentiles"
    pts.sort()
    return [p for p, _ in pts], [v for _, v in pts], source


def _nines_axis(ax, max_p: float) -> None:
    ax.set_xscale("log")
    ticks = [(1 / (1 - p), lab) for p, lab in NINES if p <= max(max_p, 0.99) + 1e-12]
    ax.xaxis.set_major_locator(FixedLocator([t for t, _ in ticks]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: dict(
        (round(t), lab) for t, lab in ticks).get(round(x), "")))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(1, ticks[-1][0] * 1.5)
    ax.set_xlabel("percentile (log scale of 1/(1-p))")
    ax.set_ylabel("latency (ms)")
    ax.grid(True, alpha=0.3)


def _latency_yscale(ax, values: list[float]) -> None:
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 100:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y:,.0f}" if y >= 1 else f"{y:g}"))
    else:
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(_thousands))


def run_status(run: Run) -> str:
    if not run.trusted:
        return "UNTRUSTED (excluded): " + "; ".join(run.untrusted_reasons)
    if run.server_failed:
        return "SERVER FAILED (a result): " + "; ".join(run.server_reasons or ["server failed"])
    return "trusted"


def latency_label(run: Run) -> str:
    """What the run's latency is: its kind and where it comes from."""
    return f"{run.latency_kind} latency, {run.latency_source}"


def plot_latency_run(run: Run, out_dir: Path) -> PlotFile | None:
    ps, vs, source = latency_points(run)
    if not ps:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    marked = source == "percentiles" or run.latency_reconstructed
    ax.plot([1 / (1 - p) for p in ps], vs, "--" if run.server_failed else "-",
            marker="o" if marked else None, mfc="white", ms=5,
            color=arch_color(run.arch) if run.trusted else UNTRUSTED_COLOR, lw=2)
    _nines_axis(ax, max(ps))
    ax.set_ylabel(f"latency (ms), {run.latency_kind}")
    _latency_yscale(ax, vs)
    title = f"Latency by percentile: {run.label} ({run.result_id})"
    ax.set_title(title, fontsize=10)
    # Status under the axes, wrapped, so long reasons never sit on the curve.
    points = ("the run's spectrum" if source == "spectrum"
              else "its p50/p90/p99/p99.9 only")
    caption = textwrap.fill(f"{run_status(run)}. {latency_label(run).capitalize()}; points from "
                            f"{points}.", width=95)
    ax.text(0.0, -0.2, caption, transform=ax.transAxes, va="top", ha="left", fontsize=8,
            color="0.3" if run.valid else "#b00")
    return _save(fig, out_dir, _slug(f"latency-{run.result_id}-{run.id}"), title)


def plot_latency_overlay(cells: list[Cell], connections: int, out_dir: Path) -> PlotFile | None:
    """Every run's percentile spectrum at one concurrency; one panel per latency kind."""
    mine = sorted((c for c in cells if c.connections == connections),
                  key=lambda c: (c.variant, arch_order(c.arch)))
    drawn = [(c, r, latency_points(r)) for c in mine for r in c.runs]
    drawn = [(c, r, pts) for c, r, pts in drawn if pts[0]]
    if not drawn:
        return None
    kinds = sorted({r.latency_kind for _c, r, _p in drawn})
    fig, axes = plt.subplots(1, len(kinds), figsize=(7.5 * len(kinds) + 2.5, 5), squeeze=False)
    marked_sources: set[str] = set()
    for ax, kind in zip(axes[0], kinds):
        all_v, max_p = [], 0.0
        for c, r, (ps, vs, source) in drawn:
            if r.latency_kind != kind:
                continue
            all_v += vs
            max_p = max(max_p, max(ps))
            xs = [1 / (1 - p) for p in ps]
            marked = source == "percentiles" or r.latency_reconstructed
            if marked:
                marked_sources.add(r.latency_source if r.latency_reconstructed
                                   else "printed percentiles only")
            style = dict(marker="o" if marked else None, ms=4, mfc="white")
            if not r.trusted:
                ax.plot(xs, vs, ls=":", color=UNTRUSTED_COLOR, lw=1.5, **style)
            else:
                ax.plot(xs, vs, ls="--" if r.server_failed else "-", color=arch_color(c.arch),
                        lw=1.7, alpha=0.9, **style)
        _nines_axis(ax, max_p)
        ax.set_ylabel(f"latency (ms), {kind}")
        _latency_yscale(ax, all_v)
        ax.set_title(f"{kind} latency", fontsize=11)
    handles = []
    for c in mine:
        label = c.arch + (f" ({c.impl_label})" if c.variant else "")
        if label not in [h.get_label() for h in handles]:
            handles.append(Line2D([], [], color=arch_color(c.arch), lw=2, label=label))
    handles.append(Line2D([], [], color="k", lw=1.7, label="trusted run"))
    runs = [r for _c, r, _p in drawn]
    if any(r.trusted and r.server_failed for r in runs):
        handles.append(Line2D([], [], color="k", ls="--", lw=1.7, label="server failed (a result)"))
    if any(not r.trusted for r in runs):
        handles.append(Line2D([], [], color=UNTRUSTED_COLOR, ls=":", lw=1.5,
                              label="untrusted run (excluded)"))
    for source in sorted(marked_sources):
        handles.append(Line2D([], [], color="k", ls="", marker="o", ms=4, mfc="white",
                              label=f"points: {source}"))
    title = f"Latency by percentile at concurrency {connections:,}, all runs"
    fig.suptitle(title, fontsize=11)
    axes[0][-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9,
                       frameon=False)
    return _save(fig, out_dir, f"latency-c{connections}", title)


def _timeline(result: Result) -> tuple[dict[str, float], list[tuple[str, float, float]]]:
    """Offsets putting runs one after another, and each run's span on that axis.

    t_s is used as it is when it already grows across runs; when each run restarts its
    clock, runs are laid end to end in the order they appear.
    """
    order: list[str] = []
    span: dict[str, list[float]] = {}
    for s in result.stats:
        if s.run_id not in span:
            order.append(s.run_id)
            span[s.run_id] = [s.t_s, s.t_s]
        span[s.run_id][0] = min(span[s.run_id][0], s.t_s)
        span[s.run_id][1] = max(span[s.run_id][1], s.t_s)
    monotonic = all(span[b][0] >= span[a][1] for a, b in zip(order, order[1:]))
    offsets, spans, cursor = {}, [], 0.0
    for rid in order:
        lo, hi = span[rid]
        off = 0.0 if monotonic else cursor - lo
        offsets[rid] = off
        spans.append((rid, lo + off, hi + off))
        cursor = hi + off + 1.0
    return offsets, spans


def plot_cpu(result: Result, out_dir: Path) -> PlotFile | None:
    rows = [s for s in result.stats if s.cpu_percent is not None]
    if not rows:
        return None
    offsets, spans = _timeline(result)
    fig, ax = plt.subplots(figsize=(11, 4.8))
    containers = sorted({(s.service, s.container) for s in rows})
    run_order = {rid: i for i, (rid, _a, _b) in enumerate(spans)}
    for k, (service, container) in enumerate(containers):
        pts = sorted((run_order[s.run_id], s.t_s + offsets[s.run_id], s.cpu_percent)
                     for s in rows if s.container == container)
        xs, ys, last = [], [], None
        for i, t, v in pts:
            if last is not None and i != last:
                xs.append(float("nan"))  # a gap between runs: no sample was taken there
                ys.append(float("nan"))
            xs.append(t)
            ys.append(v)
            last = i
        color = SERVICE_COLORS.get(service, _PALETTE[(k + 3) % len(_PALETTE)])
        ax.plot(xs, ys, "-", lw=1.3, color=color,
                label=f"{container} ({service})" if container != service else service)
    runs = {r.id: r for r in result.runs}
    # Run labels sit in a band above the highest sample so they never cross a line.
    labelled = len(spans) <= 40
    top = max(s.cpu_percent for s in rows) * (1.75 if labelled else 1.1)
    for i, (rid, a, b) in enumerate(spans):
        if i % 2:
            ax.axvspan(a, b, color="0.92", zorder=0)
        run = runs.get(rid)
        if labelled:
            text = f"{run.arch} {run.connections:,}" if run else rid
            if run and not run.trusted:
                text += " (untrusted)"
            elif run and run.server_failed:
                text += " (server failed)"
            ax.text((a + b) / 2, top * 0.985, text, rotation=90, ha="center", va="top",
                    fontsize=7, color="#b00" if run and not run.valid else "0.35")
    ax.set_ylim(0, top)
    ax.set_xlim(spans[0][1], spans[-1][2])
    ax.set_xlabel("time (s), runs one after another; shaded bands alternate between runs")
    ax.set_ylabel("CPU % (100 = one core)")
    title = f"CPU of each container over time: {result.scenario} / {result.result_id}"
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    return _save(fig, out_dir, _slug(f"cpu-{result.result_id}"), title)


def plot_side_by_side(cells: list[Cell], table: ArticleTable, out_dir: Path) -> PlotFile | None:
    """One panel per architecture: each server (Python faithful, Python lean, the C servers...)
    with its interval, and the article's published figures, against concurrency."""
    cells = [c for c in cells if c.figure is not None]
    var_list = sorted(variants(cells), key=impl_order)
    if len(var_list) < 2:
        return None
    archs = sorted({c.arch for c in cells}, key=arch_order)
    ncol = min(3, len(archs))
    nrow = -(-len(archs) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol + 2.8, 3.6 * nrow), squeeze=False)
    levels = sorted({c.connections for c in cells})
    failed_seen = False
    for ax, arch in zip(axes.flat, archs):
        color = arch_color(arch)
        for i, var in enumerate(var_list):
            row = sorted((c for c in cells if c.arch == arch and c.variant == var),
                         key=lambda c: c.connections)
            if not row:
                continue
            shift = _dodge(i, len(var_list))
            xs = [c.connections * shift for c in row]
            ax.plot(xs, [c.figure for c in row], ls=_VARIANT_STYLES[i % len(_VARIANT_STYLES)],
                    marker=_VARIANT_MARKERS[i % len(_VARIANT_MARKERS)], ms=5, color=color, lw=1.8,
                    zorder=3)
            for c, x in zip(row, xs):
                if c.interval:
                    ax.errorbar([x], [c.figure], yerr=[[max(0.0, c.figure - c.interval[0])],
                                                       [max(0.0, c.interval[1] - c.figure)]],
                                fmt="none", ecolor=color, elinewidth=1.2, capsize=3, zorder=4)
                if c.server_failed:
                    failed_seen = True
                    ax.plot(x, c.figure, "o", ms=9, mfc="none", mec=FAILED_COLOR, mew=2, zorder=6)
        art = _article_series(table, arch, levels[0], levels[-1])
        if art:
            ax.plot(list(art), list(art.values()), "--", marker="o", ms=4, mfc="none", color="k",
                    lw=1.2, alpha=0.7, zorder=2)
        _concurrency_axis(ax, sorted({c.connections for c in cells if c.arch == arch}) or levels)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
        ax.set_ylabel("throughput (requests/second)")
        ax.set_title(arch, fontsize=11, color=color)
    for ax in list(axes.flat)[len(archs):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color="0.3", ls=_VARIANT_STYLES[i % len(_VARIANT_STYLES)],
                      marker=_VARIANT_MARKERS[i % len(_VARIANT_MARKERS)], lw=1.8,
                      label=impl_label(v)) for i, v in enumerate(var_list)]
    handles += [Line2D([], [], color="k", ls="--", marker="o", mfc="none", ms=4, lw=1.2,
                       label=ARTICLE_LABEL),
                Line2D([], [], color="k", lw=0, marker="|", ms=12, mew=1.5, label=INTERVAL_NOTE)]
    if failed_seen:
        handles.append(Line2D([], [], ls="", marker="o", ms=9, mfc="none", mec=FAILED_COLOR,
                              mew=2, label="server failed in most repeats"))
    title = "Servers side by side: median requests/second of trusted repeats, per architecture"
    fig.suptitle(title, fontsize=12)
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=9,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _save(fig, out_dir, "side-by-side", title)


def render_all(results: list[Result], cells: list[Cell], table: ArticleTable,
               out_dir: Path) -> dict[str, list[PlotFile]]:
    """Every plot of the main page: "throughput", "latency_cells", "latency_overlay", "cpu",
    "side_by_side", and per architecture "arch:<name>" (its throughput and latency)."""
    out_dir = Path(out_dir)
    plots: dict[str, list[PlotFile]] = {"throughput": [], "latency_cells": [],
                                        "latency_overlay": [], "cpu": [], "side_by_side": []}

    def add(key: str, plot: PlotFile | None) -> None:
        if plot:
            plots.setdefault(key, []).append(plot)

    for normalised in (False, True):
        add("throughput", plot_throughput(cells, table, out_dir, normalised=normalised))
    add("side_by_side", plot_side_by_side(cells, table, out_dir))
    add("latency_cells", plot_latency_by_concurrency(cells, out_dir))
    for arch in sorted({c.arch for c in cells}, key=arch_order):
        mine = [c for c in cells if c.arch == arch]
        add(f"arch:{arch}", plot_throughput(
            mine, table, out_dir, name=_slug(f"throughput-{arch}"),
            title=f"{arch}: requests/second against concurrency", compact=True))
        add(f"arch:{arch}", plot_latency_by_concurrency(
            mine, out_dir, name=_slug(f"latency-{arch}"),
            title=f"{arch}: latency, median p99 (solid) and p50 (dotted)", compact=True))
    for conc in sorted({c.connections for c in cells}):
        add("latency_overlay", plot_latency_overlay(cells, conc, out_dir))
    for res in results:
        add("cpu", plot_cpu(res, out_dir))
    return plots


__all__ = ["PlotFile", "render_all", "plot_throughput", "plot_side_by_side", "plot_latency_by_concurrency",
           "plot_latency_run", "plot_latency_overlay", "plot_cpu", "latency_points", "arch_color",
           "cell_latency_kind", "latency_label", "run_status"]
