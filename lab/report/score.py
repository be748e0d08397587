"""Reproduction score: how well our order of architectures agrees with the article's."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from .baseline import ArticleTable
from .cells import Cell, arch_order, variants

SCORE_DEFINITION = (
    "Each cell's figure is the median requests/second of its valid repeats; invalid runs are "
    "left out, and a cell with no valid run has no figure. At each concurrency level we take the "
    "architectures that have both our figure and a number in the article's table (empty cells and "
    "\"wide variations\" do not count) and compare every pair of them: a pair is concordant when "
    "both sources rank the two the same way, discordant when they rank them oppositely, and tied "
    "when either source gives the two the same figure. Kendall's tau-b for the level is "
    "(concordant - discordant) / sqrt((pairs - ties in ours) x (pairs - ties in the article's)): "
    "+1 is the article's order exactly, -1 its reverse, 0 no agreement. Levels with fewer than two "
    "such architectures, or where one source ties all of them, are not scored. The overall score "
    "is the plain mean of tau over the scored levels. An architecture's collapse point is the "
    "lowest concurrency above its peak (its highest figure; the lowest level of the peak on a tie) "
    "at which its figure falls below half of that peak; we compute it from our figures and from "
    "the article's at the same levels, and from the article's whole table for reference."
)


def kendall_tau_b(xs: list[float], ys: list[float]) -> float | None:
    """Kendall's tau-b; None when undefined (fewer than two items, or one side all tied)."""
    n = len(xs)
    if n != len(ys) or n < 2:
        return None
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx = xs[i] - xs[j]
            dy = ys[i] - ys[j]
            if dx == 0:
                ties_x += 1
            if dy == 0:
                ties_y += 1
            if dx == 0 or dy == 0:
                continue
            if (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    pairs = n * (n - 1) // 2
    denom = math.sqrt((pairs - ties_x) * (pairs - ties_y))
    if denom == 0:
        return None
    return (concordant - discordant) / denom


def collapse_point(series: dict[int, float]) -> int | None:
    """Lowest concurrency after the peak where the figure is below half the peak; None if never."""
    if not series:
        return None
    levels = sorted(series)
    peak = max(series.values())
    peak_level = min(c for c in levels if series[c] == peak)
    for c in levels:
        if c > peak_level and series[c] < peak / 2:
            return c
    return None


@dataclass
class LevelScore:
    connections: int
    ours: dict[str, float]
    article: dict[str, int]
    tau: float | None
    note: str = ""

    def order(self, source: str) -> list[str]:
        figures = self.ours if source == "ours" else self.article
        return sorted(figures, key=lambda a: (-figures[a], arch_order(a)))


@dataclass
class CollapseRow:
    arch: str
    ours: int | None
    article_same_levels: int | None
    article_full: int | None
    ours_peak: tuple[int, float] | None

    @property
    def agrees(self) -> bool:
        return self.ours == self.article_same_levels


@dataclass
class Score:
    variant: tuple
    levels: list[LevelScore]
    collapses: list[CollapseRow]

    @property
    def scored(self) -> list[LevelScore]:
        return [lv for lv in self.levels if lv.tau is not None]

    @property
    def overall(self) -> float | None:
        taus = [lv.tau for lv in self.scored]
        return statistics.fmean(taus) if taus else None


def score_variant(cells: list[Cell], table: ArticleTable, variant: tuple = ()) -> Score:
    cells = [c for c in cells if c.variant == variant]
    levels: list[LevelScore] = []
    for conc in sorted({c.connections for c in cells}):
        ours: dict[str, float] = {}
        article: dict[str, int] = {}
        for c in cells:
            if c.connections != conc:
                continue
            fig, art = c.figure, table.number(c.arch, conc)
            if fig is not None and art is not None:
                ours[c.arch], article[c.arch] = fig, art
        archs = sorted(ours, key=arch_order)
        tau = kendall_tau_b([ours[a] for a in archs], [article[a] for a in archs])
        if len(archs) < 2:
            note = f"not scored: {len(archs)} architecture(s) with both figures"
        elif tau is None:
            note = "not scored: all tied in one source"
        else:
            note = ""
        levels.append(LevelScore(conc, ours, article, tau, note))

    collapses = []
    for arch in sorted({c.arch for c in cells}, key=arch_order):
        ours_series = {c.connections: c.figure for c in cells
                       if c.arch == arch and c.figure is not None}
        same = {lv: n for lv in ours_series
                if (n := table.number(arch, lv)) is not None}
        peak = None
        if ours_series:
            top = max(ours_series.values())
            peak = (min(c for c in ours_series if ours_series[c] == top), top)
        collapses.append(CollapseRow(
            arch=arch,
            ours=collapse_point(ours_series),
            article_same_levels=collapse_point(same),
            article_full=collapse_point(table.numeric_series(arch)),
            ours_peak=peak,
        ))
    return Score(variant=variant, levels=levels, collapses=collapses)


def score(cells: list[Cell], table: ArticleTable) -> list[Score]:
    """One score per variant (usually one: the whole sweep)."""
    return [score_variant(cells, table, v) for v in variants(cells)]
