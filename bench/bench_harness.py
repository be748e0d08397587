"""Seconds the lab adds to every run: wall time minus warm-up and measured duration.

Runs a small scenario several times through the real runner and prints, per run, the wall time,
the overhead and where it went (the phases each run records in its timeline). The first run
brings the environment up; the others reuse it (a fresh server container and an empty Redis
each), which is what a sweep pays per run. The teardown is timed once, at the end.
Usage: bench_harness.py [--runs N] [--arch ARCH[,ARCH...]] [--generators N]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from lab.environment import environment_factory  # noqa: E402
from lab.facts import host_facts  # noqa: E402
from lab.lock import ControllerLock  # noqa: E402
from lab.plan import plan_runs, scenario_digest  # noqa: E402
from lab.progress import Progress  # noqa: E402
from lab.results import ResultStore, write_atomically  # noqa: E402
from lab.runner import run_plan  # noqa: E402
from lab.scenario import ROOT, validate_scenario  # noqa: E402

TARGET_S = 3.0  # harness seconds per run once the environment is up


class TimedProgress(Progress):
    """Progress that also notes when each run started and ended."""

    def __init__(self, console):
        super().__init__(console)
        self.walls: dict[str, float] = {}
        self._started: dict[str, float] = {}
        self.last_done = 0.0

    def run_started(self, run, phase):
        self._started[run.id] = time.monotonic()
        super().run_started(run, phase)

    def run_done(self, run, fields):
        self.last_done = time.monotonic()
        self.walls[run.id] = self.last_done - self._started[run.id]
        super().run_done(run, fields)


def phase_seconds(timeline: list) -> dict[str, float]:
    """Seconds spent in each state of a run's timeline ([state, seconds since start] pairs)."""
    out: dict[str, float] = {}
    for (state, t), (_, t_next) in zip(timeline, timeline[1:]):
        out[state] = round(out.get(state, 0.0) + t_next - t, 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--arch", default="preforked,epoll",
                        help="architectures, alternated over the runs (the server restarts with each)")
    parser.add_argument("--generators", type=int, default=1)
    args = parser.parse_args()
    console = Console()
    archs = args.arch.split(",")
    repeats = -(-args.runs // len(archs))
    scenario = validate_scenario({
        "name": "bench-harness", "server": {"arch": archs[0], "workers": 100},
        "constraints": {"profile": "article"}, "generators": args.generators, "repeats": repeats,
        "load": {"tool": "wrk", "connections": 50, "duration_s": 5, "warmup_s": 1},
        **({"sweep": {"arch": archs}} if len(archs) > 1 else {}),
    }, "bench-harness")
    runs = sorted(plan_runs(scenario), key=lambda r: (r.repeat, r.index))[:args.runs]
    facts = host_facts()
    with ControllerLock("bench-harness"), tempfile.TemporaryDirectory() as tmp:
        store = ResultStore.create(Path(tmp), scenario.model_dump(mode="json"), scenario_digest(scenario),
                                   runs, facts | {"engine": "compose"})
        progress = TimedProgress(console)
        status = run_plan(store, runs, environment_factory("compose"), progress)
        teardown_s = time.monotonic() - progress.last_done
        doc = store.doc
    entries = {e["id"]: e for e in doc["runs"]}
    table = Table("run", "wall s", "warm-up + load s", "overhead s", "preparing", "verifying",
                  "warm-up", "measuring", "recording", "status", title="harness overhead per run")
    rows = []
    for run in runs:
        wall, entry = progress.walls.get(run.id), entries[run.id]
        if wall is None:
            continue
        measured = run.warmup_s + run.duration_s
        phases = phase_seconds(entry.get("timeline") or [])
        rows.append({"run": run.id, "wall_s": round(wall, 2), "measured_s": measured,
                     "overhead_s": round(wall - measured, 2), "phases_s": phases,
                     "environment_reused": (entry.get("start_state") or {}).get("environment_reused"),
                     "preparing_s": (entry.get("start_state") or {}).get("seconds"),
                     "status": entry["status"]})
        table.add_row(run.id, f"{wall:.1f}", f"{measured:g}", f"{wall - measured:.1f}",
                      *(f"{phases.get(p, 0):.2f}" for p in ("preparing", "verifying", "warming_up",
                                                             "measuring", "recording")),
                      entry["status"])
    console.print(table)
    if not rows:
        return 1
    reused = [r["overhead_s"] for r in rows if r["environment_reused"]]
    summary = {"first_run_overhead_s": rows[0]["overhead_s"], "teardown_s": round(teardown_s, 2),
               "reused_runs": len(reused),
               "median_overhead_reused_s": round(statistics.median(reused), 2) if reused else None,
               "mean_overhead_reused_s": round(statistics.mean(reused), 2) if reused else None,
               "target_s": TARGET_S}
    console.print(f"first run (environment up) {summary['first_run_overhead_s']:.1f} s of overhead; "
                  f"teardown {teardown_s:.1f} s")
    if reused:
        console.print(f"runs in a reused environment: median {summary['median_overhead_reused_s']:.2f} s, "
                      f"mean {summary['mean_overhead_reused_s']:.2f} s of overhead per run "
                      f"(target at most {TARGET_S:g} s)")
    out = ROOT / "results" / "bench-harness.json"
    out.parent.mkdir(exist_ok=True)
    write_atomically(out, json.dumps({"runs": rows, **summary, "environment": facts}, indent=2))
    console.print(f"written {out.relative_to(ROOT)}")
    return 0 if status == "complete" else 1


if __name__ == "__main__":
    sys.exit(main())
