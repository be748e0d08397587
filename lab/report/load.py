"""Reads result dirs (`results/<scenario>/<result-id>/`): result.json and stats.csv."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_RESULTS_ROOT = Path(__file__).resolve().parents[2] / "results"


RECONSTRUCTED = "reconstructed from printed percentiles"
CLOSED_LOOP = "closed-loop"
OPEN_LOOP = "open-loop corrected"


@dataclass
class Run:
    """One run as the report sees it.

    Two kinds of "invalid" are kept apart. An untrusted run (`trusted` false) measured
    something other than the server (a busy host, a generator at its limit, a failed tool): it
    is left out of every figure and listed with its reasons. A server-failed run (`server_failed`)
    is the server doing badly (errors, timeouts, saturation): it is a result, counted in its
    cell's figures and marked wherever it is shown.
    """
    result_id: str
    scenario: str
    id: str
    index: int
    status: str
    params: dict
    requests_per_sec: float | None
    latency_ms: dict
    latency_spectrum: list | None
    trusted: bool
    untrusted_reasons: list[str]
    server_failed: bool = False
    server_reasons: list[str] = field(default_factory=list)
    latency_source: str = ""
    latency_kind: str = CLOSED_LOOP
    server_side: dict = field(default_factory=dict)
    raw: dict = field(repr=False, default_factory=dict)
    # The result's summary of this run's cell (its `cells` entry, or one computed for it).
    stored_cell: dict | None = field(repr=False, default=None)

    @property
    def valid(self) -> bool:
        """Trusted and the server did not fail: the old single verdict."""
        return self.trusted and not self.server_failed

    @property
    def reasons(self) -> list[str]:
        return self.untrusted_reasons + self.server_reasons

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

    @property
    def latency_reconstructed(self) -> bool:
        return self.latency_source == RECONSTRUCTED


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

    @property
    def schema_version(self) -> int:
        return int(self.data.get("schema_version") or 1)

    @property
    def statistics(self) -> dict:
        return self.data.get("statistics") or {}


def run_validity(raw: dict) -> dict:
    """The run's verdict in the schema 3 shape: trusted, untrusted_reasons, server_failed,
    server_reasons. Results before schema 3 carry only valid/reasons: their valid is taken as
    trusted, and none of their runs is a server failure."""
    v = raw.get("validity") or {}
    status = raw.get("status")
    if "trusted" in v:
        trusted = bool(v.get("trusted"))
        untrusted = [str(r) for r in v.get("untrusted_reasons") or []]
        failed = bool(v.get("server_failed"))
        server = [str(r) for r in v.get("server_reasons") or []]
    else:
        trusted = bool(v.get("valid"))
        untrusted = [str(r) for r in v.get("reasons") or []]
        failed, server = False, []
    if status != "complete":
        trusted, failed, server = False, False, []
        untrusted.insert(0, f"status {status}")
    if raw.get("error") and not any(str(raw["error"]) in r for r in untrusted):
        untrusted.append(f"error: {raw['error']}")
    if raw.get("requests_per_sec") is None and status == "complete" and trusted and not failed:
        # A server that failed may have no figure and still be a result; anything else without
        # one has nothing to show.
        trusted = False
        untrusted.append("no requests/second figure")
    if not trusted and not untrusted:
        untrusted.append("marked invalid")
    return {"trusted": trusted, "untrusted_reasons": untrusted, "server_failed": failed,
            "server_reasons": server, "valid": trusted and not failed,
            "reasons": untrusted + server}


def latency_labels(raw: dict) -> tuple[str, str]:
    """(source, kind) of a run's latency. Before schema 3 neither was recorded: a run with a
    spectrum had the tool's histogram, one without only its printed percentiles, and an open
    mode run came from wrk2 or oha, which correct for coordinated omission."""
    source = raw.get("latency_source")
    if not source:
        source = "histogram" if raw.get("latency_spectrum") else "printed percentiles"
    kind = raw.get("latency_kind")
    if not kind:
        kind = OPEN_LOOP if (raw.get("params") or {}).get("mode") == "open" else CLOSED_LOOP
    return str(source), str(kind)


def _run(raw: dict, data: dict, result_id: str) -> Run:
    v = run_validity(raw)
    rps = raw.get("requests_per_sec")
    source, kind = latency_labels(raw)
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
        trusted=v["trusted"],
        untrusted_reasons=v["untrusted_reasons"],
        server_failed=v["server_failed"],
        server_reasons=v["server_reasons"],
        latency_source=source,
        latency_kind=kind,
        server_side=dict(raw.get("server_side") or {}),
        raw=raw,
    )


def normalised_raw(run: Run) -> dict:
    """The run's entry with its verdict in the schema 3 shape, as lab.uncertainty reads it."""
    v = {"trusted": run.trusted, "untrusted_reasons": list(run.untrusted_reasons),
         "server_failed": run.server_failed, "server_reasons": list(run.server_reasons),
         "valid": run.valid, "reasons": run.reasons}
    return dict(run.raw, id=run.id, params=run.params, status=run.status,
                requests_per_sec=run.requests_per_sec, validity=v)


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
    summaries = data.get("cells")
    if summaries is None:
        # Before schema 3 the controller stored no summaries: compute them the way it does now.
        from lab.uncertainty import cell_summaries
        summaries = cell_summaries([normalised_raw(r) for r in runs])
    # A result still running lists its pending runs in its cells; they add nothing to a figure.
    shown = {r.id for r in runs}
    summaries = [dict(e, runs=[rid for rid in e.get("runs") or [] if rid in shown])
                 for e in summaries or []]
    by_run = {rid: entry for entry in summaries for rid in entry["runs"]}
    for r in runs:
        r.stored_cell = by_run.get(r.id)
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
