"""Results on disk: result.json (rewritten atomically after every run), stats.csv, index.csv.

A stop at any moment leaves a readable result.json that keeps every finished run and marks the
others, and a later invocation of the same scenario resumes where it stopped.
"""
from __future__ import annotations

import csv
import fcntl
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import yaml

from lab.plan import RunPlan
from lab.uncertainty import cell_summaries

SCHEMA_VERSION = 3
# A run's lifecycle, in order. A run ends complete, failed or interrupted; the active states say
# where a run was when its controller stopped. interrupted and pending runs are resumed.
RUN_STATES = ("pending", "preparing", "verifying", "warming_up", "measuring", "recording",
              "complete", "failed", "interrupted")
ACTIVE_STATES = ("preparing", "verifying", "warming_up", "measuring", "recording")
STATS_FIELDS = ["run_id", "t_s", "service", "container", "cpu_percent", "mem_bytes",
                "mem_limit_bytes", "net_rx_bytes", "net_tx_bytes", "pids"]
INDEX_FIELDS = ["result_dir", "scenario", "run_id", "arch", "connections", "mode", "tool", "rate",
                "repeat", "requests_per_sec", "p99_ms", "valid", "reasons", "started_at",
                "trusted", "server_failed", "cell", "cell_n", "cell_median_rps", "cell_ci_lo_rps",
                "cell_ci_hi_rps", "cell_ci_coverage", "cell_converged"]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def derive_status(runs: list[dict]) -> str:
    """The result's status from its runs' states, never assumed: running while a run is active,
    complete when all are, interrupted while any is still to do, failed when the rest failed."""
    states = [r["status"] for r in runs]
    unknown = sorted(set(states) - set(RUN_STATES))
    if unknown:
        raise ValueError(f"unknown run state(s) {', '.join(unknown)}")
    if any(s in ACTIVE_STATES for s in states):
        return "running"
    if all(s == "complete" for s in states):
        return "complete"
    if any(s in ("pending", "interrupted") for s in states):
        return "interrupted"
    return "failed"


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultStore:
    """One result directory: results/<scenario>/<result-id>/."""

    def __init__(self, directory: Path, document: dict):
        self.dir = directory
        self.doc = document
        self.index_path = directory.parent.parent / "index.csv"

    # -------------------------------------------------------------- creation and resume

    @classmethod
    def create(cls, results_root: Path, scenario: dict, digest: str, runs: list[RunPlan],
               environment: dict, statistics: dict | None = None) -> "ResultStore":
        name = scenario["name"]
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        directory = results_root / name / stamp
        n = 1
        while directory.exists():
            n += 1
            directory = results_root / name / f"{stamp}-{n}"
        directory.mkdir(parents=True)
        write_atomically(directory / "scenario.yaml", yaml.safe_dump(scenario, sort_keys=False))
        doc = {
            "schema_version": SCHEMA_VERSION, "scenario": name, "scenario_digest": digest,
            "result_id": directory.name, "started_at": now_iso(), "finished_at": None,
            "status": "running", "environment": environment,
            "statistics": statistics or {},
            "runs": [{"id": r.id, "index": r.index, "status": "pending", "params": r.params()}
                     for r in runs],
            "cells": [],
        }
        store = cls(directory, doc)
        store.save()
        return store

    @classmethod
    def resumable(cls, results_root: Path, name: str, digest: str) -> "ResultStore | None":
        """The newest unfinished result of this same scenario, if any."""
        base = results_root / name
        if not base.is_dir():
            return None
        for directory in sorted((d for d in base.iterdir() if d.is_dir()), reverse=True):
            path = directory / "result.json"
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if doc.get("scenario_digest") != digest:
                return None  # the scenario changed since: start afresh
            # Judged by the runs, not the recorded status: a controller killed mid-run never
            # wrote one.
            if any(r["status"] != "complete" for r in doc["runs"]):
                return cls(directory, doc)
            return None
        return None

    def pending(self) -> list[str]:
        return [r["id"] for r in self.doc["runs"] if r["status"] != "complete"]

    # -------------------------------------------------------------- updates

    def save(self) -> None:
        self.doc["status"] = derive_status(self.doc["runs"])
        text = json.dumps(_finite(self.doc), indent=2, default=_jsonable, allow_nan=False)
        write_atomically(self.dir / "result.json", text)

    def run_entry(self, run_id: str) -> dict:
        for entry in self.doc["runs"]:
            if entry["id"] == run_id:
                return entry
        raise KeyError(run_id)

    def record_run(self, run_id: str, fields: dict) -> None:
        entry = self.run_entry(run_id)
        entry.update(fields)
        if entry["status"] in ("complete", "failed"):
            self.doc["cells"] = cell_summaries(self.doc["runs"],
                                               (self.doc.get("statistics") or {}).get("target_ci_pct"))
        self.save()
        if entry["status"] == "complete":
            self._append_index(entry)

    def add_runs(self, runs: list[RunPlan]) -> None:
        """More runs for this result (another round of repeats), pending."""
        known = {e["id"] for e in self.doc["runs"]}
        for r in runs:
            if r.id in known:
                raise ValueError(f"run {r.id} exists already")
            self.doc["runs"].append({"id": r.id, "index": r.index, "status": "pending", "params": r.params()})
        self.save()

    def cell_of(self, run_id: str) -> dict | None:
        for cell in self.doc.get("cells") or []:
            if run_id in cell["runs"]:
                return cell
        return None

    def add_note(self, text: str) -> None:
        """Something the reader of this result should know (leftovers removed, say)."""
        self.doc.setdefault("notes", []).append(f"{now_iso()} {text}")
        self.save()

    def add_problem(self, text: str) -> None:
        """A failure outside any run (an environment not created or not removed)."""
        self.doc.setdefault("problems", []).append(f"{now_iso()} {text}")
        self.save()

    def append_stats(self, rows: list[dict]) -> None:
        if not rows:
            return
        path = self.dir / "stats.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=STATS_FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())

    def finish(self) -> str:
        """Closes this controller's work on the result: a run it left active is interrupted
        (what it has is kept); returns the status the runs' states give."""
        for entry in self.doc["runs"]:
            if entry["status"] in ACTIVE_STATES:
                entry["status"] = "interrupted"
                entry["error"] = entry.get("error") or "the controller stopped during this run"
        self.doc["finished_at"] = now_iso()
        self.save()
        return self.doc["status"]

    def _append_index(self, entry: dict) -> None:
        p = entry["params"]
        v = entry["validity"]
        cell = self.cell_of(entry["id"]) or {}
        rps = cell.get("requests_per_sec") or {}
        ci = rps.get("ci95") or [None, None]
        row = {
            "result_dir": str(self.dir), "scenario": self.doc["scenario"], "run_id": entry["id"],
            "arch": p["arch"], "connections": p["connections"], "mode": p["mode"], "tool": p["tool"],
            "rate": p.get("rate") or "", "repeat": p["repeat"],
            "requests_per_sec": entry.get("requests_per_sec"),
            "p99_ms": (entry.get("latency_ms") or {}).get("p99"),
            "valid": v["valid"], "reasons": "; ".join(v["reasons"]),
            "started_at": entry.get("started_at"),
            "trusted": v.get("trusted", v["valid"]), "server_failed": v.get("server_failed", False),
            # The cell as known once this run was recorded: its median and interval so far.
            "cell": cell.get("cell"), "cell_n": rps.get("n"), "cell_median_rps": rps.get("median"),
            "cell_ci_lo_rps": ci[0], "cell_ci_hi_rps": ci[1], "cell_ci_coverage": rps.get("coverage"),
            "cell_converged": cell.get("converged"),
        }
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        with self.index_path.open("a+", newline="") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # parallel scenarios append to the same index
            f.seek(0)
            header = f.readline().strip()
            if header and header != ",".join(INDEX_FIELDS):
                _widen_index(f)
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                csv.writer(f).writerow(INDEX_FIELDS)
            csv.DictWriter(f, fieldnames=INDEX_FIELDS).writerow(_finite(row))


def _widen_index(f) -> None:
    """An index written with fewer columns gets today's header, its rows kept (new columns empty)."""
    f.seek(0)
    rows = list(csv.DictReader(f))
    f.seek(0)
    f.truncate()
    writer = csv.DictWriter(f, fieldnames=INDEX_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


def _finite(value):
    """NaN and infinities (a tool's `-nan`, an `inf` percentile row) become null: JSON has neither."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _jsonable(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)
