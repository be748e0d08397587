"""Reproduction score: how well our order of architectures agrees with the article's."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import numpy as np

from .baseline import ArticleTable
from .cells import Cell, arch_order, variants
from .load import Run

BOOTSTRAP_RESAMPLES = 2000   # resamples of the repeats behind each tau-b interval
BOOTSTRAP_SEED = 20250101    # fixed: the same results give the same interval
INTERVAL_PERCENTILES = (2.5, 97.5)

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
    "reference. A run that ended because the server exited under the load counts as a server "
    "failure there. How well tau-b is known: each cell's trusted repeats are resampled with "
    "replacement (2,000 times, a fixed seed), each resample's medians ranked and tau-b taken "
    "per level as above; the interval is the 2.5th to 97.5th percentile of those tau-b, and "
    "the overall score's interval that of their mean over the scored levels. With few repeats "
    "a resampled median takes only the observed values, so the interval is only as wide as "
    "the repeats disagree: with three repeats each it understates the uncertainty."
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


SERVER_EXITED = "the server had exited"   # lab.runner's words for a server gone under load


def server_exited(run: Run) -> bool:
    """A run that failed because the server exited under the load: no figure, and no fault of
    the measurement: the server's failure."""
    return run.status == "failed" and SERVER_EXITED in str(run.raw.get("error") or "")


def level_failed(cell: Cell) -> bool:
    """The server failed in at least half of the cell's completed repeats (trusted ones and
    those that ended with the server gone)."""
    exited = sum(server_exited(r) for r in cell.runs)
    total = len(cell.trusted_runs) + exited
    return total > 0 and 2 * (len(cell.server_failed_runs) + exited) >= total


def arch_series(cells: list[Cell]) -> tuple[dict[int, float | None], set[int]]:
    """One architecture's cells (of one variant) as collapse_point reads them: {level: figure}
    over the levels with a figure or a failure, and the levels where the server failed."""
    failed = {c.connections for c in cells if level_failed(c)}
    series = {c.connections: c.figure for c in cells
              if c.figure is not None or c.connections in failed}
    return series, failed


def _overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def _interval_json(iv: tuple[float, float] | None) -> list[float] | None:
    return [round(iv[0], 4), round(iv[1], 4)] if iv else None


def _ranked(figures: dict, archs: list[str]) -> str:
    return " > ".join(f"{a} {figures[a]:,.0f}" for a in archs)


@dataclass
class LevelScore:
    connections: int
    ours: dict[str, float]
    article: dict[str, int]
    tau: float | None
    note: str = ""
    unresolved: list[tuple[str, str]] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)
    # 95% bootstrap interval of tau over the cells' repeats; None when not scored
    tau_interval: tuple[float, float] | None = None
    repeats: tuple[int, int] | None = None   # fewest and most trusted repeats of its cells
    undefined_resamples: int = 0             # resamples whose tau was undefined (all tied)

    def order(self, source: str) -> list[str]:
        figures = self.ours if source == "ours" else self.article
        return sorted(figures, key=lambda a: (-figures[a], arch_order(a)))

    @property
    def orders_match(self) -> bool:
        return self.order("ours") == self.order("article")

    def to_json(self) -> dict:
        return {"connections": self.connections, "tau_b": self.tau,
                "tau_b_interval": _interval_json(self.tau_interval),
                "repeats_per_cell": list(self.repeats) if self.repeats else None,
                "undefined_resamples": self.undefined_resamples,
                "ours": self.ours, "article": self.article, "note": self.note,
                "order_ours": self.order("ours"), "order_article": self.order("article"),
                "unresolved_pairs": [list(p) for p in self.unresolved],
                "server_failed": sorted(self.failed)}


@dataclass
class CollapseRow:
    arch: str
    ours: int | None
    article_same_levels: int | None
    article_full: int | None
    ours_peak: tuple[int, float] | None
    ours_by_failure: bool = False  # our collapse is a level where the server failed
    article_peak_same_levels: tuple[int, float] | None = None
    article_peak_full: tuple[int, float] | None = None

    @property
    def agrees(self) -> bool:
        return self.ours == self.article_same_levels

    @property
    def peak_agrees(self) -> bool | None:
        """Both peak at the same level (of the levels both have); None when either has none."""
        if self.ours_peak is None or self.article_peak_same_levels is None:
            return None
        return self.ours_peak[0] == self.article_peak_same_levels[0]

    def to_json(self) -> dict:
        return {"arch": self.arch, "ours": self.ours, "ours_by_server_failure": self.ours_by_failure,
                "ours_peak": list(self.ours_peak) if self.ours_peak else None,
                "article_same_levels": self.article_same_levels,
                "article_full_table": self.article_full,
                "article_peak_same_levels": (list(self.article_peak_same_levels)
                                             if self.article_peak_same_levels else None),
                "article_peak_full_table": (list(self.article_peak_full)
                                            if self.article_peak_full else None),
                "collapse_agrees": self.agrees, "peak_agrees": self.peak_agrees}


@dataclass
class Score:
    variant: tuple
    levels: list[LevelScore]
    collapses: list[CollapseRow]
    overall_interval: tuple[float, float] | None = None
    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = BOOTSTRAP_SEED

    @property
    def scored(self) -> list[LevelScore]:
        return [lv for lv in self.levels if lv.tau is not None]

    @property
    def overall(self) -> float | None:
        taus = [lv.tau for lv in self.scored]
        return statistics.fmean(taus) if taus else None

    @property
    def highest_common(self) -> LevelScore | None:
        """The highest level both sources rank (two architectures or more with both figures)."""
        scored = self.scored
        return scored[-1] if scored else None

    @property
    def order_matches(self) -> bool | None:
        """Whether our order at the highest common level is the article's."""
        lv = self.highest_common
        return lv.orders_match if lv else None

    @property
    def featured(self) -> LevelScore | None:
        """The level the paragraph leads with: the one ranking the most architectures (the
        highest of those)."""
        scored = self.scored
        return max(scored, key=lambda lv: (len(lv.ours), lv.connections)) if scored else None

    @property
    def paragraph(self) -> str:
        """One paragraph a reader can check by hand against the tables."""
        lv = self.featured
        if lv is None:
            return ("No concurrency level has two architectures with both our figure and a number "
                    "in the article's table: nothing is scored.")
        parts = [f"At {lv.connections:,} connections the article ranks "
                 f"{_ranked(lv.article, lv.order('article'))}; we rank "
                 f"{_ranked(lv.ours, lv.order('ours'))} (req/s; tau-b {lv.tau:+.2f}"
                 + _interval_words(lv.tau_interval, lv.repeats) + ")."]
        if lv.unresolved:
            pairs = ", ".join(f"{a}/{b}" for a, b in lv.unresolved)
            parts.append(f"Our intervals overlap for {pairs}: our order of "
                         f"{'that pair' if len(lv.unresolved) == 1 else 'those pairs'} "
                         "is not known.")
        if lv.failed:
            parts.append(f"The server failed there for {', '.join(sorted(lv.failed))}.")
        top = self.highest_common
        if top is not None and top is not lv:
            parts.append(f"At the highest level both rank, {top.connections:,}, the orders "
                         + ("match" if top.orders_match else
                            f"differ (article {' > '.join(top.order('article'))}, ours "
                            f"{' > '.join(top.order('ours'))})") + ".")
        elif top is not None:
            parts.append("It is the highest level both rank; the orders "
                         + ("match." if top.orders_match else "differ."))
        levels = ", ".join(f"{x.connections:,}" for x in self.scored)
        overall = self.overall
        parts.append(f"Over the {len(self.scored)} scored level"
                     f"{'s' if len(self.scored) != 1 else ''} ({levels}) the mean tau-b is "
                     f"{overall:+.2f}" + _interval_words(self.overall_interval, None) + ".")
        shapes = [_shape_words(c) for c in self.collapses]
        shapes = [x for x in shapes if x]
        if shapes:
            parts.append("Peaks and collapses, ours against the article's at the same levels: "
                         + "; ".join(shapes) + ".")
        return " ".join(parts)

    def to_json(self) -> dict:
        """Everything of the score, the keys score.json had and the new ones."""
        from .cells import variant_label
        top = self.highest_common
        return {"variant": variant_label(self.variant), "overall": self.overall,
                "overall_interval": _interval_json(self.overall_interval),
                "bootstrap": {"resamples": self.resamples, "seed": self.seed,
                              "percentiles": list(INTERVAL_PERCENTILES)},
                "levels": [lv.to_json() for lv in self.levels],
                "collapse": [c.to_json() for c in self.collapses],
                "highest_common_level": top.connections if top else None,
                "order_matches_at_highest_common_level": self.order_matches,
                "paragraph": self.paragraph}


def _interval_words(iv: tuple[float, float] | None, repeats: tuple[int, int] | None) -> str:
    if iv is None:
        return ""
    words = f", 95% bootstrap interval {iv[0]:+.2f} to {iv[1]:+.2f}"
    if repeats:
        lo, hi = repeats
        words += f" over {lo if lo == hi else f'{lo}-{hi}'} repeat{'s' if hi != 1 else ''} per cell"
    return words


def _shape_words(c: CollapseRow) -> str:
    if c.ours_peak is None:
        return ""

    def where(peak, collapse) -> str:
        text = f"peaks at {peak[0]:,}" if peak else "no peak"
        return text + (f", collapses at {collapse:,}" if collapse else ", no collapse")
    ours = where(c.ours_peak, c.ours) + (" (server failed)" if c.ours_by_failure else "")
    if c.article_peak_same_levels is None:
        return f"{c.arch} {ours} (article: no figures at our levels)"
    return f"{c.arch} {ours} (article: {where(c.article_peak_same_levels, c.article_same_levels)})"


# --- the bootstrap ---------------------------------------------------------------------------

def _repeat_values(cell: Cell) -> list[float]:
    """The repeats behind the cell's figure: its trusted runs' requests/second."""
    return [r.requests_per_sec for r in cell.trusted_runs if r.requests_per_sec is not None]


def _tau_b_rows(ours: np.ndarray, article: list[float]) -> np.ndarray:
    """Kendall's tau-b of each row of `ours` (resamples x architectures) against `article`;
    NaN where undefined (as kendall_tau_b)."""
    b, n = ours.shape
    concordant = np.zeros(b)
    discordant = np.zeros(b)
    ties_x = np.zeros(b)
    ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx = ours[:, i] - ours[:, j]
            dy = article[i] - article[j]
            ties_x += dx == 0
            if dy == 0:
                ties_y += 1
                continue
            concordant += (dx != 0) & ((dx > 0) == (dy > 0))
            discordant += (dx != 0) & ((dx > 0) != (dy > 0))
    pairs = n * (n - 1) // 2
    denom = np.sqrt((pairs - ties_x) * (pairs - ties_y))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (concordant - discordant) / np.where(denom > 0, denom, 1),
                        np.nan)


def bootstrap_levels(levels: list[tuple[LevelScore, dict[str, list[float]]]],
                     resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
                     ) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
    """Resampled tau-b per scored level ({connections: array of `resamples`}, NaN where a
    resample ties one side entirely), and their mean over the levels per resample. Each cell's
    repeats are drawn with replacement, as many as it has, and their median taken."""
    rng = np.random.default_rng(seed)
    taus: dict[int, np.ndarray] = {}
    for lv, values in levels:
        if lv.tau is None:
            continue
        archs = sorted(lv.ours, key=arch_order)
        medians = np.empty((resamples, len(archs)))
        for k, arch in enumerate(archs):
            v = np.asarray(values[arch], dtype=float)
            draws = rng.integers(0, len(v), size=(resamples, len(v)))
            medians[:, k] = np.median(v[draws], axis=1)
        taus[lv.connections] = _tau_b_rows(medians, [float(lv.article[a]) for a in archs])
    if not taus:
        return taus, None
    stacked = np.vstack(list(taus.values()))
    # each resample's mean as the point estimate's (statistics.fmean: exactly rounded), so a
    # resample equal to the data gives exactly the point estimate
    mean = np.array([statistics.fmean(col[~np.isnan(col)]) if (~np.isnan(col)).any()
                     else np.nan for col in stacked.T])
    return taus, mean


def percentile_interval(values: np.ndarray) -> tuple[float, float] | None:
    """The 2.5th and 97.5th percentiles of the defined values; None when none is."""
    values = values[~np.isnan(values)]
    if not len(values):
        return None
    lo, hi = np.percentile(values, INTERVAL_PERCENTILES)
    return float(lo), float(hi)


# --- the score -------------------------------------------------------------------------------

def score_variant(cells: list[Cell], table: ArticleTable, variant: tuple = (),
                  resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Score:
    cells = [c for c in cells if c.variant == variant]
    levels: list[LevelScore] = []
    behind: list[tuple[LevelScore, dict[str, list[float]]]] = []
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
        values = {a: _repeat_values(scored[a]) or [ours[a]] for a in archs}
        counts = [len(v) for v in values.values()]
        lv = LevelScore(conc, ours, article, tau, note, unresolved, failed,
                        repeats=(min(counts), max(counts)) if counts else None)
        levels.append(lv)
        behind.append((lv, values))

    taus, mean = bootstrap_levels(behind, resamples, seed)
    for lv in levels:
        if lv.connections in taus:
            lv.tau_interval = percentile_interval(taus[lv.connections])
            lv.undefined_resamples = int(np.isnan(taus[lv.connections]).sum())
    overall_interval = percentile_interval(mean) if mean is not None else None

    collapses = []
    for arch in sorted({c.arch for c in cells}, key=arch_order):
        mine = [c for c in cells if c.arch == arch]
        ours_series, failed = arch_series(mine)
        same = {lv: n for lv in ours_series
                if (n := table.number(arch, lv)) is not None}
        full = table.numeric_series(arch)
        ours = collapse_point(ours_series, failed)
        collapses.append(CollapseRow(
            arch=arch,
            ours=ours,
            article_same_levels=collapse_point(same),
            article_full=collapse_point(full),
            ours_peak=_peak(ours_series, failed),
            ours_by_failure=ours is not None and ours in failed,
            article_peak_same_levels=_peak(same, set()),
            article_peak_full=_peak(full, set()),
        ))
    return Score(variant=variant, levels=levels, collapses=collapses,
                 overall_interval=overall_interval, resamples=resamples, seed=seed)


def score(cells: list[Cell], table: ArticleTable) -> list[Score]:
    """One score per variant (usually one: the whole sweep)."""
    return [score_variant(cells, table, v) for v in variants(cells)]
