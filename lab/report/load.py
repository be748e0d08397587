"""Reads result dirs (`results/<scenario>/<result-id>/`): result.json and stats.csv."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_RESULTS_ROOT = Path(__file__).resolve().parents[2] / "results"


@dataclass
class Run:
    result_id: str
    scenario: str
    id: str
    index: int
    status: str
    params: dict
    requests_per_sec: float | None
    latency_ms: dict
    latency_spectrum: list | None
    valid: bool
    reasons: list[str]
    raw: dict = field(repr=False, default_factory=dict)

    @property
    def arch(self) -> str:
        return str(self.params.get("arch"))

    @property
    def connections(self) -> int:
        return int(self.params.get("connections") or 0)

    @property
    def repeat(self) -> int:
        return int(self.params.get("repeat") or 0)

    @property
    def label(self) -> str:
        return f"{self.arch} c={self.connections} r{self.repeat}"


@dataclass
class StatRow:
    run_id: str
    t_s: float
    service: str
    container: str
    cpu_percent: float | None


@dataclass
class Result:
    path: Path
    data: dict
    runs: list[Run]
    stats: list[StatRow]

    @property
    def result_id(self) -> str:
        return str(self.data.get("result_id") or self.path.name)

    @property
    def scenario(self) -> str:
        return str(self.data.get("scenario") or self.path.parent.name)

    @property
    def environment(self) -> dict:
        return self.data.get("environment") or {}


def _run_validity(raw: dict) -> tuple[bool, list[str]]:
    """A run counts only when it completed, was judged valid, and has a figure."""
    v = raw.get("validity") or {}
    reasons = [str(r) for r in v.get("reasons") or []]
    status = raw.get("status")
    ok = bool(v.get("valid")) and status == "complete"
    if status != "complete":
        reasons.insert(0, f"status {status}")
    if raw.get("error"):
        reasons.append(f"error: {raw['error']}")
    if raw.get("requests_per_sec") is None:
        ok = False
        if status == "complete":
            reasons.append("no requests/second figure")
    if not ok and not reasons:
        reasons.append("marked invalid")
    return ok, reasons


def _run(raw: dict, data: dict, result_id: str) -> Run:
    valid, reasons = _run_validity(raw)
    rps = raw.get("requests_per_sec")
    return Run(
        result_id=result_id,
        scenario=str(data.get("scenario")),
        id=str(raw.get("id")),
        index=int(raw.get("index") or 0),
        status=str(raw.get("status")),
        params=dict(raw.get("params") or {}),
        requests_per_sec=float(rps) if rps is not None else None,
        latency_ms=dict(raw.get("latency_ms") or {}),
        latency_spectrum=raw.get("latency_spectrum"),
        valid=valid,
        reasons=reasons,
        raw=raw,
    )


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def read_stats(path: Path) -> list[StatRow]:
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            t = _float(r.get("t_s"))
            if t is None:
                continue
            rows.append(StatRow(
                run_id=r.get("run_id") or "",
                t_s=t,
                service=r.get("service") or "",
                container=r.get("container") or r.get("service") or "",
                cpu_percent=_float(r.get("cpu_percent")),
            ))
    return rows


def load_result(path: Path) -> Result:
    path = Path(path)
    if path.is_file():
        path = path.parent
    data = json.loads((path / "result.json").read_text())
    result_id = str(data.get("result_id") or path.name)
    runs = [_run(r, data, result_id) for r in data.get("runs") or []]
    # Runs never started carry no figures; they belong to the plan, not to the results.
    runs = [r for r in runs if r.status != "pending"]
    return Result(path=path, data=data, runs=runs, stats=read_stats(path / "stats.csv"))


def result_dirs(path: Path) -> list[Path]:
    """A result dir itself, or every result dir below a directory (a scenario's, or results/)."""
    path = Path(path)
    if path.is_file() and path.name == "result.json":
        return [path.parent]
    if (path / "result.json").is_file():
        return [path]
    if path.is_dir():
        found = sorted({p.parent for p in path.rglob("result.json")})
        if found:
            return found
    raise FileNotFoundError(f"no result.json in or below {path}")


def find_latest(results_root: Path | None = None) -> Path:
    """The newest results/*/*/result.json (by modification time; it is rewritten after each run)."""
    root = Path(results_root or DEFAULT_RESULTS_ROOT)
    candidates = list(root.glob("*/*/result.json"))
    if not candidates:
        raise FileNotFoundError(f"no results in {root}/*/*/result.json")
    return max(candidates, key=lambda p: (p.stat().st_mtime, str(p))).parent


def load_results(paths: list[Path] | None = None, results_root: Path | None = None) -> list[Result]:
    if not paths:
        dirs = [find_latest(results_root)]
    else:
        dirs = []
        for p in paths:
            for d in result_dirs(Path(p)):
                if d not in dirs:
                    dirs.append(d)
    return [load_result(d) for d in dirs]
