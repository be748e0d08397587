"""Plots of each architecture's evidence against concurrency: what its server and kernel did at
each level (lab/evidence.py, read through lab.report.why.run_figures).

Per architecture: one figure of the panels that explain it (forking: processes created per
request and system CPU; iterative: listen overflows and SYN retransmits beside the p99; poll and
epoll: descriptors; threaded: threads per request), and one of every panel. Each point is the
median over the cell's trusted repeats with evidence, its bar their min-max; a level where the
server failed in most repeats is drawn hollow in red on a red band.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from .cells import Cell, arch_order, variant_label
from matplotlib.ticker import FuncFormatter

from .plots import (FAILED_COLOR, PlotFile, _concurrency_axis, _save, _slug, arch_color, plt)
from .score import level_failed
from .why import run_figures, server_evidence

MINMAX_NOTE = "point: median of trusted repeats; bar: min-max"
SYN_RETRIES_S = (1.0, 3.0)   # Linux resends an unanswered SYN after 1 s, then 3 s


def _short(v, _pos=None) -> str:
    return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"


@dataclass(frozen=True)
class Line:
    key: str          # a run_figures key
    label: str
    scale: float = 1.0
    style: str = "-"
    color: str | None = None   # None: the architecture's colour


@dataclass(frozen=True)
class Panel:
    name: str
    title: str
    ylabel: str
    lines: tuple[Line, ...]
    log: bool = False          # counts spanning decades (overflows, descriptors)


PANELS = {p.name: p for p in (
    Panel("cpu_split", "CPU split", "cores (CPU-seconds per second)", (
        Line("user_cores", "user", color="#1f77b4"),
        Line("system_cores", "system", color="#d62728"),
        Line("softirq_cores", "softirq (all work on its CPUs)", style="--", color="#9467bd"))),
    Panel("system_share", "System CPU share", "system CPU, % of the server's user + system", (
        Line("system_share", "system share", scale=100),)),
    Panel("cpu_per_request", "CPU time per request", "ms of CPU per request", (
        Line("cpu_ms_per_request", "CPU per request"),)),
    Panel("context_switches", "Context switches per request", "switches per request", (
        Line("voluntary_per_request", "voluntary"),
        Line("involuntary_per_request", "involuntary", style="--"))),
    Panel("tasks_created", "Processes/threads created per request",
          "tasks created per request", (Line("tasks_per_request", "created per request"),)),
    Panel("tasks_alive", "Processes/threads alive at once", "tasks alive (max in the window)", (
        Line("max_alive", "alive at once"),), log=True),
    Panel("overflows", "Listen overflows and SYN retransmits", "count in the measured window", (
        Line("listen_overflows", "listen overflows", color="#d62728"),
        Line("syn_retrans", "SYN retransmits", style="--", color="#ff7f0e")), log=True),
    Panel("p99", "p99 latency", "p99 latency (s)", (
        Line("p99_ms", "p99", scale=0.001),), log=True),
    Panel("descriptors", "Descriptors open", "descriptors open (max in the window)", (
        Line("fds_max", "descriptors"),), log=True),
)}

# The panels that explain each architecture, first in its own figure.
FOCUS = {
    "iterative": ("overflows", "p99"),
    "forking": ("tasks_created", "system_share"),
    "preforked": ("tasks_alive", "cpu_split"),
    "threaded": ("tasks_created", "tasks_alive"),
    "prethreaded": ("context_switches", "cpu_split"),
    "poll": ("descriptors", "cpu_per_request"),
    "epoll": ("descriptors", "cpu_per_request"),
}
OVERVIEW = ("cpu_split", "cpu_per_request", "context_switches", "tasks_created", "tasks_alive",
            "overflows", "descriptors")


def _level_figures(cell: Cell) -> list[dict[str, float]]:
    """run_figures of the cell's trusted runs that carry the server's evidence."""
    return [run_figures(r) for r in cell.trusted_runs if server_evidence(r)[0] is not None]


def _draw_panel(ax, panel: Panel, rows: list[tuple[Cell, list[dict]]], marker: str,
                tag: str) -> bool:
    """One panel's lines for one variant of an architecture; False when it has no point."""
    drawn = False
    for line in panel.lines:
        color = line.color or arch_color(rows[0][0].arch)
        pts = []
        for cell, figures in rows:
            values = [f[line.key] * line.scale for f in figures if line.key in f]
            if values:
                pts.append((cell, statistics.median(values), min(values), max(values)))
        if not pts:
            continue
        drawn = True
        xs = [c.connections for c, *_ in pts]
        ys = [m for _, m, _, _ in pts]
        ax.plot(xs, ys, line.style, color=color, lw=1.8, label=line.label + tag, zorder=3)
        ax.errorbar(xs, ys, yerr=[[m - lo for _, m, lo, _ in pts], [hi - m for _, m, _, hi in pts]],
                    fmt="none", ecolor=color, elinewidth=1.1, capsize=3, zorder=4)
        for (cell, m, _, _), x in zip(pts, xs):
            if level_failed(cell):
                ax.plot(x, m, marker, ms=8, mfc="white", mec=FAILED_COLOR, mew=2, zorder=6)
            else:
                ax.plot(x, m, marker, ms=5, color=color, zorder=5)
    return drawn


def _figure(arch: str, cells: list[Cell], names: tuple[str, ...], out_dir: Path, name: str,
            title: str) -> PlotFile | None:
    by_variant: dict[tuple, list[tuple[Cell, list[dict]]]] = {}
    for c in sorted(cells, key=lambda c: (c.variant, c.connections)):
        figures = _level_figures(c)
        if figures:
            by_variant.setdefault(c.variant, []).append((c, figures))
    if not by_variant:
        return None
    levels = sorted({c.connections for c in cells})
    failed = sorted({c.connections for c in cells if level_failed(c)})
    cols = 2 if len(names) > 1 else 1
    rows_n = -(-len(names) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(6.4 * cols, 3.9 * rows_n), squeeze=False)
    markers = "osD^vP*X"
    for ax, pname in zip(axes.flat, names):
        panel = PANELS[pname]
        drawn = False
        for vi, (variant, rows) in enumerate(by_variant.items()):
            tag = f" ({variant_label(variant)})" if len(by_variant) > 1 else ""
            drawn |= _draw_panel(ax, panel, rows, markers[vi % len(markers)], tag)
        for level in failed:   # where the server failed: a band, whatever the panel shows
            ax.axvspan(level / 1.06, level * 1.06, color=FAILED_COLOR, alpha=0.12, lw=0)
        _concurrency_axis(ax, levels)
        ax.set_title(panel.title, fontsize=10)
        ax.set_ylabel(panel.ylabel, fontsize=9)
        if not drawn:
            ax.text(0.5, 0.5, "not in the evidence", transform=ax.transAxes, ha="center",
                    va="center", color="0.4")
            continue
        if pname == "p99":
            for s in SYN_RETRIES_S:
                ax.axhline(s, color="0.5", ls=":", lw=1, label=f"SYN retry at {s:.0f} s")
        if panel.log and min(y for ln in ax.get_lines() for y in ln.get_ydata()) > 0:
            ax.set_yscale("log")
        elif panel.log:   # zeros (no overflow at all) stay on the axis
            ax.set_yscale("symlog", linthresh=1)
            ax.set_ylim(bottom=0)
        else:
            ax.set_ylim(bottom=0)
        if panel.log:
            ax.yaxis.set_major_formatter(FuncFormatter(_short))
            ax.yaxis.set_minor_formatter(FuncFormatter(_short))
        if len(panel.lines) > 1 or len(by_variant) > 1 or pname == "p99":
            # below the panel, off the data (matplotlib's "best" searches every point: slow)
            ax.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.22),
                      ncol=2)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    note = MINMAX_NOTE + (f"; red band, hollow red point: the server failed "
                          f"(at {', '.join(f'{x:,}' for x in failed)})" if failed else "")
    missing = [c.connections for c in cells if not _level_figures(c)]
    if missing:
        note += f"; no evidence at {', '.join(f'{x:,}' for x in sorted(set(missing)))}"
    fig.suptitle(f"{title}\n{note}", fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir, name, title)


def render_evidence(cells: list[Cell], out_dir: Path) -> dict[str, list[PlotFile]]:
    """{arch: [its focus figure, the figure of every panel]} for each architecture with
    evidence in at least one cell."""
    out_dir = Path(out_dir)
    out: dict[str, list[PlotFile]] = {}
    for arch in sorted({c.arch for c in cells}, key=arch_order):
        mine = [c for c in cells if c.arch == arch]
        plots = []
        focus = FOCUS.get(arch)
        if focus:
            p = _figure(arch, mine, focus, out_dir, f"evidence-{_slug(arch)}-focus",
                        f"{arch}: what explains it, against concurrency")
            if p:
                plots.append(p)
        p = _figure(arch, mine, OVERVIEW, out_dir, f"evidence-{_slug(arch)}",
                    f"{arch}: server and kernel evidence against concurrency")
        if p:
            plots.append(p)
        if plots:
            out[arch] = plots
    return out
