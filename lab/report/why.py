"""A short generated "why" for each cell: the dominant cost its evidence shows, and what moved
at an architecture's collapse point."""

from __future__ import annotations

from dataclasses import dataclass, field

from .cells import Cell


@dataclass(frozen=True)
class Finding:
    claim: str
    measurement: str
    source: str
    weight: float


@dataclass(frozen=True)
class CellWhy:
    text: str
    findings: list[Finding] = field(default_factory=list)
    dominant: Finding | None = None


def explain_cell(cell: Cell) -> CellWhy | None:
    """The cell's "why" from its trusted runs' evidence; None when none of them has evidence."""
    return None


def explain_collapse(cells: list[Cell]) -> dict[tuple[str, tuple], str]:
    """(arch, variant) -> what changed at the architecture's collapse point."""
    return {}
