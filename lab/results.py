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

SCHEMA_VERSION = 2
# A run's lifecycle, in order. A run ends complete, failed or interrupted; the active states say
# where a run was when its controller stopped. interrupted and pending runs are resumed.
RUN_STATES = ("pending", "preparing", "verifying", "warming_up", "measuring", "recording",
              "complete", "failed", "interrupted")
ACTIVE_STATES = ("preparing", "verifying", "warming_up", "measuring", "recording")
STATS_FIELDS = ["run_id", "t_s", "service", "container", "cpu_percent", "mem_bytes",
                "mem_limit_bytes", "net_rx_bytes", "net_tx_bytes", "pids"]
INDEX_FIELDS = ["result_dir", "scenario", "run_id", "arch", "connections", "mode", "tool", "rate",
                "repeat", "requests_per_sec", "p99_ms", "valid", "reasons", "started_at"]


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
               environment: dict) -> "ResultStore":
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
            "runs": [{"id": r.id, "index": r.index, "status": "pending", "params": r.params()}
                     for r in runs],
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
        self.save()
        if entry["status"] == "complete":
            self._append_index(entry)

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
        row = {
            "result_dir": str(self.dir), "scenario": self.doc["scenario"], "run_id": entry["id"],
            "arch": p["arch"], "connections": p["connections"], "mode": p["mode"], "tool": p["tool"],
            "rate": p.get("rate") or "", "repeat": p["repeat"],
            "requests_per_sec": entry.get("requests_per_sec"),
            "p99_ms": (entry.get("latency_ms") or {}).get("p99"),
            "valid": entry["validity"]["valid"], "reasons": "; ".join(entry["validity"]["reasons"]),
            "started_at": entry.get("started_at"),
        }
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        with self.index_path.open("a", newline="") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # parallel scenarios append to the same index
            if f.tell() == 0:
                csv.writer(f).writerow(INDEX_FIELDS)
            csv.DictWriter(f, fieldnames=INDEX_FIELDS).writerow(row)


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
