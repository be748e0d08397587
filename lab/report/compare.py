"""Two results cell by cell: change in percent, and whether it exceeds the noise between repeats."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .cells import Cell, arch_order, group_cells, variant_keys, variant_label
from .html import render_compare, write
from .load import Result, load_results

NO_REPEATS = "no repeats: noise unknown"


@dataclass
class CompareRow:
    arch: str
    connections: int
    variant: tuple
    a: float | None
    b: float | None
    a_note: str
    b_note: str
    change_pct: float | None
    exceeds: bool | None
    verdict: str


@dataclass
class Noise:
    a: float | None  # largest (max-min)/mean among A's repeated cells
    b: float | None
    a_cell: str = ""
    b_cell: str = ""

    @property
    def value(self) -> float | None:
        known = [v for v in (self.a, self.b) if v is not None]
        return max(known) if known else None


@dataclass
class Comparison:
    a_paths: list[Path]
    b_paths: list[Path]
    noise: Noise
    rows: list[CompareRow] = field(default_factory=list)

    NOISE_DEFINITION = (
        "Each cell's figure is the median requests/second of its valid repeats. The noise is the "
        "largest relative spread (max - min) / mean among the valid repeats of any one cell, "
        "taken over every cell of A and of B. A change counts as beyond the noise when "
        "|B - A| / A is larger than that spread. Without any repeated cell the noise is unknown "
        "and no change is judged."
    )

    @property
    def a_label(self) -> str:
        return ", ".join(p.name for p in self.a_paths)

    @property
    def b_label(self) -> str:
        return ", ".join(p.name for p in self.b_paths)

    @property
    def noise_text(self) -> str:
        n = self.noise
        if n.value is None:
            return NO_REPEATS
        parts = []
        for side, v, where in (("A", n.a, n.a_cell), ("B", n.b, n.b_cell)):
            parts.append(f"{side} {v * 100:.1f}% ({where})" if v is not None else f"{side} no repeats")
        return f"±{n.value * 100:.1f}% (largest of {'; '.join(parts)})"

    def to_json(self) -> dict:
        return {
            "a": [str(p) for p in self.a_paths], "b": [str(p) for p in self.b_paths],
            "noise_definition": self.NOISE_DEFINITION,
            "noise": {"a": self.noise.a, "b": self.noise.b, "value": self.noise.value,
                      "a_cell": self.noise.a_cell, "b_cell": self.noise.b_cell,
                      "text": self.noise_text},
            "cells": [dict(asdict(r), variant=variant_label(r.variant)) for r in self.rows],
        }


def _largest_spread(cells: list[Cell]) -> tuple[float | None, str]:
    best, where = None, ""
    for c in cells:
        s = c.spread
        if s is not None and (best is None or s > best):
            best, where = s, f"{c.arch} at {c.connections:,}"
    return best, where


def _note(cell: Cell | None) -> str:
    if cell is None:
        return "not run"
    n_valid, n = len(cell.valid_runs), len(cell.runs)
    return f"{n_valid}/{n} valid" + (f", spread {cell.spread * 100:.1f}%" if cell.spread is not None else "")


def compare(a: list[Result], b: list[Result]) -> Comparison:
    a_runs = [r for res in a for r in res.runs]
    b_runs = [r for res in b for r in res.runs]
    keys = variant_keys(a_runs + b_runs)
    a_cells = {(c.arch, c.connections, c.variant): c for c in group_cells(a_runs, keys)}
    b_cells = {(c.arch, c.connections, c.variant): c for c in group_cells(b_runs, keys)}
    na, wa = _largest_spread(list(a_cells.values()))
    nb, wb = _largest_spread(list(b_cells.values()))
    noise = Noise(a=na, b=nb, a_cell=wa, b_cell=wb)
    comp = Comparison([res.path for res in a], [res.path for res in b], noise)
    order = list(a_cells) + [k for k in b_cells if k not in a_cells]
    order.sort(key=lambda k: (k[2], arch_order(k[0]), k[1]))
    for key in order:
        ca, cb = a_cells.get(key), b_cells.get(key)
        fa = ca.figure if ca else None
        fb = cb.figure if cb else None
        change = exceeds = None
        if fa is None or fb is None:
            verdict = "only in A" if cb is None else "only in B" if ca is None else "no valid figure"
        else:
            change = (fb - fa) / fa * 100 if fa else None
            if change is None:
                verdict = "A is zero"
            elif noise.value is None:
                verdict = NO_REPEATS
            else:
                exceeds = abs(change) > noise.value * 100
                verdict = "beyond noise" if exceeds else "within noise"
        comp.rows.append(CompareRow(key[0], key[1], key[2], fa, fb, _note(ca), _note(cb),
                                    change, exceeds, verdict))
    return comp


def print_comparison(comp: Comparison, console: Console | None = None) -> None:
    console = console or Console()
    show_variant = any(r.variant for r in comp.rows)
    t = Table(title=f"A = {comp.a_label}   B = {comp.b_label}")
    t.add_column("architecture")
    t.add_column("concurrency", justify="right")
    if show_variant:
        t.add_column("variant")
    for name in ("A req/s", "B req/s", "change"):
        t.add_column(name, justify="right")
    t.add_column("beyond noise?")
    for r in comp.rows:
        change = "—" if r.change_pct is None else f"{r.change_pct:+.1f}%"
        style = "bold red" if r.exceeds else ("green" if r.exceeds is False else "dim")
        t.add_row(r.arch, f"{r.connections:,}", *([variant_label(r.variant)] if show_variant else []),
                  "—" if r.a is None else f"{r.a:,.0f}", "—" if r.b is None else f"{r.b:,.0f}",
                  change, f"[{style}]{r.verdict}[/]")
    console.print(t)
    console.print(f"noise: {comp.noise_text}")


def compare_results(a: Path, b: Path, out: Path | None = None,
                    console: Console | None = None) -> Path:
    """Compare result A with result B; prints a table, writes compare.html and compare.json."""
    ra, rb = load_results([Path(a)]), load_results([Path(b)])
    comp = compare(ra, rb)
    print_comparison(comp, console)
    out = Path(out) if out else rb[0].path / f"compare-{Path(a).resolve().name}"
    write(out / "compare.json", json.dumps(comp.to_json(), indent=1) + "\n")
    return write(out / "compare.html", render_compare(comp))
