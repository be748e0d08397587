"""Seconds the lab adds to every run: wall time minus warm-up and measured duration.

Runs a small scenario a few times through the real runner (compose up, verification, warm-up,
load, stats, teardown) and prints, per run, the wall time and the overhead.
Usage: bench_harness.py [--runs N] [--arch ARCH] [--generators N]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from lab.environment import environment_factory  # noqa: E402
from lab.facts import host_facts  # noqa: E402
from lab.plan import plan_runs, scenario_digest  # noqa: E402
from lab.progress import Progress  # noqa: E402
from lab.results import ResultStore, write_atomically  # noqa: E402
from lab.runner import run_plan  # noqa: E402
from lab.scenario import ROOT, validate_scenario  # noqa: E402

TARGET_S = 15.0


class TimedProgress(Progress):
    """Progress that also notes when each run started and ended."""

    def __init__(self, console):
        super().__init__(console)
        self.walls: dict[str, float] = {}
        self._started: dict[str, float] = {}

    def run_started(self, run, phase):
        self._started[run.id] = time.monotonic()
        super().run_started(run, phase)

    def run_done(self, run, fields):
        self.walls[run.id] = time.monotonic() - self._started[run.id]
        super().run_done(run, fields)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--arch", default="preforked")
    parser.add_argument("--generators", type=int, default=1)
    args = parser.parse_args()
    console = Console()
    scenario = validate_scenario({
        "name": "bench-harness", "server": {"arch": args.arch, "workers": 100},
        "constraints": {"profile": "article"}, "generators": args.generators, "repeats": args.runs,
        "load": {"tool": "wrk", "connections": 50, "duration_s": 5, "warmup_s": 1},
    }, "bench-harness")
    runs = plan_runs(scenario)
    facts = host_facts()
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore.create(Path(tmp), scenario.model_dump(mode="json"), scenario_digest(scenario),
                                   runs, facts | {"engine": "compose"})
        progress = TimedProgress(console)
        status = _run(store, runs, progress)
        doc = store.doc
    table = Table("run", "wall s", "warm-up + load s", "overhead s", "status", title="harness overhead per run")
    rows = []
    for entry, run in zip(doc["runs"], runs):
        wall = progress.walls.get(run.id)
        if wall is None:
            continue
        measured = run.warmup_s + run.duration_s
        rows.append({"run": run.id, "wall_s": round(wall, 2), "measured_s": measured,
                     "overhead_s": round(wall - measured, 2), "status": entry["status"]})
        table.add_row(run.id, f"{wall:.1f}", f"{measured:g}", f"{wall - measured:.1f}", entry["status"])
    console.print(table)
    if rows:
        mean = sum(r["overhead_s"] for r in rows) / len(rows)
        console.print(f"mean overhead {mean:.1f} s per run (target at most {TARGET_S:g} s)")
        out = ROOT / "results" / "bench-harness.json"
        out.parent.mkdir(exist_ok=True)
        write_atomically(out, json.dumps({"runs": rows, "mean_overhead_s": round(mean, 2),
                                          "target_s": TARGET_S, "environment": facts}, indent=2))
        console.print(f"written {out.relative_to(ROOT)}")
    return 0 if status == "complete" else 1


def _run(store, runs, progress) -> str:
    return run_plan(store, runs, environment_factory("compose"), progress)


if __name__ == "__main__":
    sys.exit(main())
