"""The article's published table (requests/second per architecture and concurrency)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from lab.scenario import ARCHITECTURES as ARCHS
WIDE = "wide variations"
TABLE_PATH = Path(__file__).with_name("article_table.csv")

# A cell is an int, WIDE, or absent (the article left it empty).
Value = int | str


@dataclass
class ArticleTable:
    archs: tuple[str, ...]
    levels: list[int]
    cells: dict[str, dict[int, Value]] = field(default_factory=dict)

    def value(self, arch: str, concurrency: int) -> Value | None:
        return self.cells.get(arch, {}).get(concurrency)

    def number(self, arch: str, concurrency: int) -> int | None:
        """The figure when the article gives a number; None when empty or "wide variations"."""
        v = self.value(arch, concurrency)
        return v if isinstance(v, int) else None

    def numeric_series(self, arch: str) -> dict[int, int]:
        return {c: v for c, v in sorted(self.cells.get(arch, {}).items()) if isinstance(v, int)}


def _parse(text: str) -> Value | None:
    text = text.strip()
    if not text:
        return None
    if text == WIDE:
        return WIDE
    return int(text.replace(",", ""))


def load_article_table(path: Path | None = None) -> ArticleTable:
    path = path or TABLE_PATH
    with open(path, newline="") as f:
        rows = [line for line in f if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(rows)
    archs = tuple(name for name in reader.fieldnames or () if name != "concurrency")
    table = ArticleTable(archs=archs, levels=[], cells={a: {} for a in archs})
    for row in reader:
        level = int(row["concurrency"].replace(",", ""))
        table.levels.append(level)
        for arch in archs:
            v = _parse(row.get(arch) or "")
            if v is not None:
                table.cells[arch][level] = v
    return table
