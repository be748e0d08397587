"""Two results cell by cell: is B faster, slower, or within the noise of A, from both sides' repeats.

Before any figure, what differs between the two results' environments (cores, CPU, kernel,
images, constraints, Docker and Compose) and between their runs' parameters is printed and
written, since a change there can explain any verdict below it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.uncertainty import WELCH_LOG, compare_samples, environment_differences, run_trust, summarise

from .cells import NOT_VARIANT, Cell, arch_order, group_cells, variant_keys, variant_label
from .html import render, write
from .load import Result, load_results

ALPHA = 0.05
TOO_FEW = "too few runs"
NO_REPEATS = TOO_FEW  # the verdict of a cell without repeats on either side
ONLY_A, ONLY_B, NO_FIGURE = "only in A", "only in B", "no trusted figure"
CHANGED = ("faster", "slower")


@dataclass
class CompareRow:
    arch: str
    connections: int
    variant: tuple
    a: float | None              # median req/s of A's trusted repeats
    b: float | None
    a_note: str
    b_note: str
    change_pct: float | None     # (B / A - 1) * 100, from the medians
    verdict: str                 # faster | slower | within noise | too few runs | only in A | ...
    ratio: float | None = None   # median B / median A
    ratio_ci95: list | None = None
    p_value: float | None = None
    smallest_detectable_ratio: float | None = None
    n_a: int = 0
    n_b: int = 0
    a_summary: dict | None = None
    b_summary: dict | None = None

    @property
    def changed(self) -> bool:
        return self.verdict in CHANGED


@dataclass
class Comparison:
    a_paths: list[Path]
    b_paths: list[Path]
    environment_differences: list[str] = field(default_factory=list)
    parameter_differences: list[str] = field(default_factory=list)
    rows: list[CompareRow] = field(default_factory=list)
    alpha: float = ALPHA

    DEFINITION = (
        "Each side's figure is the median requests/second of a cell's trusted repeats (runs whose "
        "server failed are results and count). B is called faster or slower than A when Welch's "
        "t-test on log(req/s) of the two sides' repeats gives p < 0.05, two-sided: noise on "
        "throughput is multiplicative, so it is compared on the log scale, without assuming both "
        "cells equally noisy. The interval is that test's 95% interval of the ratio B / A "
        "(of geometric means, the ratio of medians when log(req/s) is symmetric); a verdict of "
        "faster or slower is exactly an interval that excludes 1. \"Smallest detectable\" is the "
        "ratio that would just have been significant with this noise and these repeats. A side "
        "with fewer than two trusted repeats gives no verdict (too few runs)."
    )

    @property
    def a_label(self) -> str:
        return ", ".join(p.name for p in self.a_paths)

    @property
    def b_label(self) -> str:
        return ", ".join(p.name for p in self.b_paths)

    @property
    def only_in_a(self) -> list[str]:
        return [_cell_label(r) for r in self.rows if r.verdict == ONLY_A]

    @property
    def only_in_b(self) -> list[str]:
        return [_cell_label(r) for r in self.rows if r.verdict == ONLY_B]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.verdict] = out.get(r.verdict, 0) + 1
        return out

    def to_json(self) -> dict:
        return {
            "a": [str(p) for p in self.a_paths], "b": [str(p) for p in self.b_paths],
            "test": WELCH_LOG, "alpha": self.alpha, "definition": self.DEFINITION,
            "environment_differences": self.environment_differences,
            "parameter_differences": self.parameter_differences,
            "only_in_a": self.only_in_a, "only_in_b": self.only_in_b,
            "verdicts": self.counts(),
            "cells": [dict(asdict(r), variant=variant_label(r.variant)) for r in self.rows],
        }


def _cell_label(r: CompareRow) -> str:
    v = variant_label(r.variant)
    return f"{r.arch} at {r.connections:,}" + (f" ({v})" if v else "")


def _trusted_values(cell: Cell | None) -> list[float]:
    if cell is None:
        return []
    return [float(r.raw["requests_per_sec"]) for r in cell.runs if run_trust(r.raw)[0]]


def _note(cell: Cell | None, summary: dict | None) -> str:
    if cell is None:
        return "not run"
    n_trusted = sum(1 for r in cell.runs if run_trust(r.raw)[0])
    failed = sum(1 for r in cell.runs if run_trust(r.raw)[1])
    note = f"{n_trusted}/{len(cell.runs)} trusted"
    if failed:
        note += f", {failed} server failed"
    if summary and summary.get("cv") is not None:
        note += f", CV {summary['cv'] * 100:.1f}%"
    return note


def _env_differences(a: list[Result], b: list[Result]) -> list[str]:
    out: list[str] = []
    if a and b:
        out += environment_differences(a[0].environment, b[0].environment)
    for side, results in (("A", a), ("B", b)):
        for other in results[1:]:
            for line in environment_differences(results[0].environment, other.environment):
                out.append(f"within {side}, {other.result_id} against {results[0].result_id}: "
                           + line.replace(": A ", ": ").replace(", B ", " against "))
    return out


def _norm(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _param_differences(a_runs, b_runs, keys: list[str]) -> list[str]:
    """Parameters other than the cell's coordinates whose values differ between A and B: the
    cells are matched without them, so each is named."""
    def values(runs) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for r in runs:
            for k, v in r.params.items():
                if k not in NOT_VARIANT and k not in keys:
                    out.setdefault(k, set()).add(_norm(v))
        return out

    va, vb = values(a_runs), values(b_runs)
    out = []
    for k in sorted(set(va) | set(vb)):
        if va.get(k) != vb.get(k):
            out.append(f"{k}: A {', '.join(sorted(va.get(k, {'(not set)'})))}, "
                       f"B {', '.join(sorted(vb.get(k, {'(not set)'})))}")
    return out


def _keys(a_runs, b_runs) -> list[str]:
    # A parameter splits cells when it varies within one side; one that only differs between
    # the sides is what is being compared (a backlog, a duration) and is named instead.
    return sorted(set(variant_keys(a_runs)) | set(variant_keys(b_runs)))


def differences(a: list[Result], b: list[Result]) -> Comparison:
    """The comparison's header alone: what differs between the environments and between the
    runs' parameters, before any figure is compared."""
    a_runs = [r for res in a for r in res.runs]
    b_runs = [r for res in b for r in res.runs]
    return Comparison([res.path for res in a], [res.path for res in b],
                      environment_differences=_env_differences(a, b),
                      parameter_differences=_param_differences(a_runs, b_runs, _keys(a_runs, b_runs)))


def compare(a: list[Result], b: list[Result], alpha: float = ALPHA) -> Comparison:
    a_runs = [r for res in a for r in res.runs]
    b_runs = [r for res in b for r in res.runs]
    keys = _keys(a_runs, b_runs)
    comp = differences(a, b)
    comp.alpha = alpha
    a_cells = {(c.arch, c.connections, c.variant): c for c in group_cells(a_runs, keys)}
    b_cells = {(c.arch, c.connections, c.variant): c for c in group_cells(b_runs, keys)}
    order = list(a_cells) + [k for k in b_cells if k not in a_cells]
    order.sort(key=lambda k: (k[2], arch_order(k[0]), k[1]))
    for key in order:
        ca, cb = a_cells.get(key), b_cells.get(key)
        xa, xb = _trusted_values(ca), _trusted_values(cb)
        sa, sb = summarise(xa), summarise(xb)
        row = CompareRow(key[0], key[1], key[2], sa and sa["median"], sb and sb["median"],
                         _note(ca, sa), _note(cb, sb), None, "", n_a=len(xa), n_b=len(xb),
                         a_summary=sa, b_summary=sb)
        if ca is None or cb is None:
            row.verdict = ONLY_A if cb is None else ONLY_B
        elif not xa or not xb:
            row.verdict = NO_FIGURE
        else:
            c = compare_samples(xa, xb, alpha)
            row.verdict = c["verdict"]
            row.ratio, row.ratio_ci95 = c["ratio_of_medians"], c["ratio_ci95"]
            row.p_value, row.smallest_detectable_ratio = c["p_value"], c["smallest_detectable_ratio"]
            row.change_pct = (row.ratio - 1) * 100 if row.ratio is not None else None
        comp.rows.append(row)
    return comp


# --- output --------------------------------------------------------------------------------------

def _fmt_ratio(r: CompareRow) -> str:
    if r.ratio is None:
        return "—"
    text = f"×{r.ratio:.2f}"
    if r.ratio_ci95:
        text += f" [{r.ratio_ci95[0]:.2f}, {r.ratio_ci95[1]:.2f}]"
    return text


def _fmt_p(p: float | None) -> str:
    return "—" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _fmt_side(value: float | None, n: int) -> str:
    return "—" if value is None else f"{value:,.0f} ({n})"


def _style(verdict: str) -> str:
    return {"faster": "bold green", "slower": "bold red", "within noise": ""}.get(verdict, "dim")


def print_warnings(comp: Comparison, console: Console) -> None:
    if comp.environment_differences:
        console.print("[bold yellow]Warning: the environments differ, so a change below may come "
                      "from them and not from what was changed:[/]")
        for line in comp.environment_differences:
            console.print(f"  - {escape(line)}")
    if comp.parameter_differences:
        console.print("[yellow]Run parameters that differ between A and B (cells matched "
                      "without them):[/]")
        for line in comp.parameter_differences:
            console.print(f"  - {escape(line)}")


def _fmt_ci_pct(r: CompareRow) -> str:
    if not r.ratio_ci95:
        return "—"
    lo, hi = ((x - 1) * 100 for x in r.ratio_ci95)
    return f"{lo:+.0f}%…{hi:+.0f}%"


def print_comparison(comp: Comparison, console: Console | None = None) -> None:
    console = console or Console()
    show_variant = any(r.variant for r in comp.rows)
    t = Table(title=f"A = {comp.a_label}   B = {comp.b_label}", box=box.SIMPLE_HEAD,
              padding=(0, 1, 0, 0), pad_edge=False)
    t.add_column("arch", no_wrap=True)
    t.add_column("conns", justify="right", no_wrap=True)
    if show_variant:
        t.add_column("variant")
    for name in ("A (n)", "B (n)", "change", "95% CI", "p"):
        t.add_column(name, justify="right", no_wrap=True)
    t.add_column("verdict", no_wrap=True)
    for r in comp.rows:
        change = "—" if r.change_pct is None else f"{r.change_pct:+.1f}%"
        style = _style(r.verdict)
        t.add_row(r.arch, f"{r.connections:,}", *([variant_label(r.variant)] if show_variant else []),
                  _fmt_side(r.a, r.n_a), _fmt_side(r.b, r.n_b), change, _fmt_ci_pct(r),
                  _fmt_p(r.p_value), f"[{style}]{r.verdict}[/]" if style else r.verdict)
    console.print(t)
    counts = comp.counts()
    console.print("verdicts: " + ", ".join(f"{v} {n}" for v, n in counts.items())
                  + f"  ({WELCH_LOG}, two-sided, alpha {comp.alpha:g})")
    for side, cells in (("A", comp.only_in_a), ("B", comp.only_in_b)):
        if cells:
            console.print(f"only in {side}: {', '.join(cells)}")


def render_compare(c: Comparison) -> str:
    rows = [{"row": r, "variant": variant_label(r.variant), "ratio": _fmt_ratio(r),
             "p": _fmt_p(r.p_value)} for r in c.rows]
    return render("compare.html.j2", title=f"zerolab comparison: {c.a_label} → {c.b_label}",
                  c=c, rows=rows, show_variant=any(r.variant for r in c.rows))


def compare_results(a: Path, b: Path, out: Path | None = None,
                    console: Console | None = None) -> Path:
    """Compare result A with result B: the environments' differences first, then a verdict per
    shared cell; prints a table, writes compare.html and compare.json."""
    console = console or Console()
    ra, rb = load_results([Path(a)]), load_results([Path(b)])
    print_warnings(differences(ra, rb), console)
    comp = compare(ra, rb)
    print_comparison(comp, console)
    out = Path(out) if out else rb[0].path / f"compare-{Path(a).resolve().name}"
    write(out / "compare.json", json.dumps(comp.to_json(), indent=1) + "\n")
    return write(out / "compare.html", render_compare(comp))
