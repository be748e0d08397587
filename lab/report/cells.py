"""Groups runs into cells: one architecture at one concurrency under one set of other parameters."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field

from .baseline import ARCHS
from .load import Run

# Parameters that never split cells: the cell's own coordinates, the repeat number, and
# placement details that do not change what is measured.
NOT_VARIANT = {"arch", "connections", "repeat", "cpusets"}


@dataclass
class Cell:
    arch: str
    connections: int
    variant: tuple[tuple[str, str], ...]
    runs: list[Run] = field(default_factory=list)

    @property
    def valid_runs(self) -> list[Run]:
        return [r for r in self.runs if r.valid]

    @property
    def figure(self) -> float | None:
        """Median requests/second over the valid repeats; None when none is valid."""
        values = [r.requests_per_sec for r in self.valid_runs]
        return statistics.median(values) if values else None

    @property
    def spread(self) -> float | None:
        """(max - min) / mean over valid repeats; None with fewer than two."""
        values = [r.requests_per_sec for r in self.valid_runs]
        if len(values) < 2:
            return None
        mean = statistics.fmean(values)
        return (max(values) - min(values)) / mean if mean else None

    @property
    def variant_label(self) -> str:
        return variant_label(self.variant)


def variant_label(variant: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{k}={v}" for k, v in variant)


def _norm(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def variant_keys(runs: list[Run]) -> list[str]:
    """Parameters that take more than one value within some architecture x concurrency pair.

    A parameter that differs only between architectures (say, workers) describes the
    architecture, not a second experiment, so it does not split the sweep.
    """
    seen: dict[tuple[str, int], dict[str, set[str]]] = {}
    for r in runs:
        per = seen.setdefault((r.arch, r.connections), {})
        for k, v in r.params.items():
            if k not in NOT_VARIANT:
                per.setdefault(k, set()).add(_norm(v))
    keys = {k for per in seen.values() for k, vals in per.items() if len(vals) > 1}
    return sorted(keys)


def arch_order(arch: str) -> tuple[int, str]:
    return (ARCHS.index(arch) if arch in ARCHS else len(ARCHS), arch)


def group_cells(runs: list[Run], keys: list[str] | None = None) -> list[Cell]:
    keys = variant_keys(runs) if keys is None else keys
    cells: dict[tuple, Cell] = {}
    for r in runs:
        variant = tuple((k, _norm(r.params.get(k))) for k in keys)
        key = (r.arch, r.connections, variant)
        if key not in cells:
            cells[key] = Cell(arch=r.arch, connections=r.connections, variant=variant)
        cells[key].runs.append(r)
    for c in cells.values():
        c.runs.sort(key=lambda r: (r.repeat, r.result_id, r.index))
    return sorted(cells.values(), key=lambda c: (c.variant, arch_order(c.arch), c.connections))


def variants(cells: list[Cell]) -> list[tuple]:
    out: list[tuple] = []
    for c in cells:
        if c.variant not in out:
            out.append(c.variant)
    return out
