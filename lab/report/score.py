"""Reproduction score: how well our order of architectures agrees with the article's."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from .baseline import ArticleTable
from .cells import Cell, arch_order, variants

SCORE_DEFINITION = (
    "Each cell's figure is the median requests/second of its trusted repeats. Untrusted runs "
    "(the measurement itself failed: a busy host, a generator at its limit, a tool or check that "
    "failed) are left out, and a cell with no trusted run has no figure. Runs in which the server "
    "failed (errors, timeouts, saturation) are results and count. At each concurrency level we take the "
    "architectures that have both our figure and a number in the article's table (empty cells and "
    "\"wide variations\" do not count) and compare every pair of them: a pair is concordant when "
    "both sources rank the two the same way, discordant when they rank them oppositely, and tied "
    "when either source gives the two the same figure. Kendall's tau-b for the level is "
    "(concordant - discordant) / sqrt((pairs - ties in ours) x (pairs - ties in the article's)): "
    "+1 is the article's order exactly, -1 its reverse, 0 no agreement. Levels with fewer than two "
    "such architectures, or where one source ties all of them, are not scored. The overall score "
    "is the plain mean of tau over the scored levels. A pair of architectures whose 95% intervals "
    "overlap is counted by its medians like any other, and reported as unresolved: our order of "
    "the two is not known. An architecture's collapse point is the lowest concurrency above its "
    "peak (its highest figure; the lowest level of the peak on a tie) at which its figure falls "
    "below half of that peak, or at which the server failed in at least half of the trusted "
    "repeats; the peak is taken over the levels where it did not fail. We compute it from our "
    "figures and from the article's at the same levels, and from the article's whole table for "
    "reference."
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


def _peak(series: dict[int, float | None], failed: set[int]) -> tuple[int, float] | None:
    """(level, figure) of the highest figure, on levels where the server did not fail if any."""
    figures = {c: v for c, v in series.items() if v is not None}
    sound = {c: v for c, v in figures.items() if c not in failed} or figures
    if not sound:
        return None
    top = max(sound.values())
    return min(c for c in sound if sound[c] == top), top


def collapse_point(series: dict[int, float | None], failed: set[int] | frozenset = frozenset()
                   ) -> int | None:
    """Lowest concurrency after the peak where the figure is below half the peak, or where the
    server failed (`failed`); None if never. A failed level is the collapse even without a
    figure; the peak is taken over the levels where the server did not fail."""
    peak = _peak(series, set(failed))
    if peak is None:
        return None
    peak_level, top = peak
    for c in sorted(set(series) | set(failed)):
        if c <= peak_level:
            continue
        v = series.get(c)
        if c in failed or (v is not None and v < top / 2):
            return c
    return None


def _overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


@dataclass
class LevelScore:
    connections: int
    ours: dict[str, float]
    article: dict[str, int]
    tau: float | None
    note: str = ""
    unresolved: list[tuple[str, str]] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)

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
    ours_by_failure: bool = False  # our collapse is a level where the server failed

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
        scored: dict[str, Cell] = {}
        for c in cells:
            if c.connections != conc:
                continue
            fig, art = c.figure, table.number(c.arch, conc)
            if fig is not None and art is not None:
                ours[c.arch], article[c.arch], scored[c.arch] = fig, art, c
        archs = sorted(ours, key=arch_order)
        tau = kendall_tau_b([ours[a] for a in archs], [article[a] for a in archs])
        if len(archs) < 2:
            note = f"not scored: {len(archs)} architecture(s) with both figures"
        elif tau is None:
            note = "not scored: all tied in one source"
        else:
            note = ""
        unresolved = [(a, b) for i, a in enumerate(archs) for b in archs[i + 1:]
                      if _overlap(scored[a].interval, scored[b].interval)]
        failed = {a for a in archs if scored[a].server_failed}
        levels.append(LevelScore(conc, ours, article, tau, note, unresolved, failed))

    collapses = []
    for arch in sorted({c.arch for c in cells}, key=arch_order):
        mine = [c for c in cells if c.arch == arch]
        failed = {c.connections for c in mine if c.server_failed}
        ours_series = {c.connections: c.figure for c in mine
                       if c.figure is not None or c.connections in failed}
        same = {lv: n for lv in ours_series
                if (n := table.number(arch, lv)) is not None}
        ours = collapse_point(ours_series, failed)
        collapses.append(CollapseRow(
            arch=arch,
            ours=ours,
            article_same_levels=collapse_point(same),
            article_full=collapse_point(table.numeric_series(arch)),
            ours_peak=_peak(ours_series, failed),
            ours_by_failure=ours is not None and ours in failed,
        ))
    return Score(variant=variant, levels=levels, collapses=collapses)


def score(cells: list[Cell], table: ArticleTable) -> list[Score]:
    """One score per variant (usually one: the whole sweep)."""
    return [score_variant(cells, table, v) for v in variants(cells)]
