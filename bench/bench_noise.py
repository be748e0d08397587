"""How noisy one cell is on this host, and how often the lab's comparison is fooled by it.

Measures a reference cell (default preforked at 200 connections, article profile, 10 s) N times,
interleaved with a second cell (default epoll at 200), through the real runner, then prints and
writes for each cell its coefficient of variation and the interval of its median; the share of
A-versus-A comparisons (every split of the reference cell's repeats into two halves) that
`compare_samples` calls different, against the alpha it promises; whether the reference and the
second cell can be told apart; and what the lab itself used of the host while measuring
(`host_health`, when the result carries it).

Usage: bench_noise.py [--repeats 6] [--duration 10] [--reference preforked:200]
                      [--second epoll:200] [--backlog N] [--wait]
Writes results/bench-noise.json (results/bench-noise-backlog<N>.json with --backlog) and keeps
the result itself under results/bench/ for `make compare`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich import box  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from lab.uncertainty import cell_id, compare_samples, run_trust, summarise  # noqa: E402

ALPHA = 0.05


def parse_cell(text: str) -> tuple[str, int]:
    """"preforked:200" -> ("preforked", 200)."""
    arch, _, conns = text.partition(":")
    if not arch or not conns.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected ARCH:CONNECTIONS, e.g. preforked:200")
    return arch, int(conns)


def scenario_data(name: str, reference: tuple[str, int], second: tuple[str, int], repeats: int,
                  duration_s: int, warmup_s: int, backlog: int | None, profile: str) -> dict:
    archs = list(dict.fromkeys([reference[0], second[0]]))
    conns = list(dict.fromkeys([reference[1], second[1]]))
    server = {"arch": reference[0], "workers": 100}
    if backlog is not None:
        server["backlog"] = backlog
    return {
        "name": name, "server": server, "constraints": {"profile": profile},
        "repeats": repeats, "order": "round-robin",
        "load": {"tool": "wrk", "connections": reference[1], "duration_s": duration_s,
                 "warmup_s": warmup_s, "timeout_s": 10, "mix": {"guestbook_get": 1}},
        "sweep": {"arch": archs, "connections": conns},
    }


def select_runs(runs: list, wanted: list[tuple[str, int]]) -> list:
    """The plan's runs of the wanted cells only (a sweep of two architectures at two levels has
    four), in the plan's round order, renumbered."""
    keep = [r for r in runs if (r.arch, r.connections) in wanted]
    return [replace(r, index=i) for i, r in enumerate(keep, start=1)]


# --- analysis (pure, on result.json run entries) -----------------------------------------------

def half_splits(n: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every split of n repeats into two halves (sizes n//2 and the rest), each once: with n
    even a split and its mirror give the same verdict, so the first half holds repeat 0."""
    k = n // 2
    out = []
    for left in combinations(range(n), k):
        if n % 2 == 0 and 0 not in left:
            continue
        right = tuple(i for i in range(n) if i not in left)
        out.append((left, right))
    return out


def a_versus_a(values: list[float], alpha: float = ALPHA) -> dict:
    """compare_samples on every split of one cell's repeats: each "faster" or "slower" is a false
    positive. The splits share their repeats, so the rate is a description of this sample, not
    an independent estimate; with few repeats it moves in steps of 1/len(splits)."""
    n = len(values)
    if n < 4:
        return {"splits": 0, "false_positives": None, "rate": None, "alpha": alpha,
                "note": f"{n} trusted repeat(s): halves of at least 2 need 4"}
    results = []
    for left, right in half_splits(n):
        c = compare_samples([values[i] for i in left], [values[i] for i in right], alpha)
        results.append({"a": list(left), "b": list(right), "verdict": c["verdict"],
                        "p_value": c["p_value"]})
    fp = sum(1 for r in results if r["verdict"] in ("faster", "slower"))
    first, second = values[: n // 2], values[n // 2:]
    in_time = compare_samples(first, second, alpha)
    return {"splits": len(results), "false_positives": fp, "rate": fp / len(results),
            "alpha": alpha, "results": results,
            "first_half_vs_second_half": {"verdict": in_time["verdict"], "p_value": in_time["p_value"],
                                          "ratio_of_medians": in_time["ratio_of_medians"]}}


def _run_row(e: dict) -> dict:
    trusted, failed = run_trust(e)
    side = e.get("server_side") or {}
    host = e.get("host_health") or {}
    v = e.get("validity") or {}
    return {"id": e.get("id"), "cell": cell_id(e.get("id", "")), "status": e.get("status"),
            "trusted": trusted, "server_failed": failed,
            "reasons": v.get("untrusted_reasons", v.get("reasons")) or [],
            "requests_per_sec": e.get("requests_per_sec"),
            "server_requests_per_sec": side.get("requests_per_sec"), "drift": side.get("drift"),
            "stable": side.get("stable"),
            "lab_cpu_share": host.get("lab_cpu_share"),
            "other_cpu_share": host.get("other_cpu_share_on_measured_cpus"),
            "steal_share": host.get("steal_share"), "host_busy": host.get("busy")}


def _spread(values: list[float]) -> dict | None:
    return {"mean": statistics.fmean(values), "max": max(values)} if values else None


def _r2(xs: list[float], ys: list[float]) -> float | None:
    """Squared Pearson correlation: the share of the repeats' variance that moves with x."""
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return statistics.correlation(xs, ys) ** 2


def noise_sources(rows: list[dict]) -> dict:
    """What the host did during the reference cell's runs, and how much of its spread goes with
    it. The runs carry host_health (the lab's own CPU time, other work on the measured CPUs,
    steal) from schema 3 on; without it the lab's share is unknown."""
    complete = [r for r in rows if r["status"] == "complete" and r["requests_per_sec"] is not None]
    trusted = [r for r in complete if r["trusted"]]
    out = {
        "cv_all_complete": (summarise([r["requests_per_sec"] for r in complete]) or {}).get("cv"),
        "cv_trusted": (summarise([r["requests_per_sec"] for r in trusted]) or {}).get("cv"),
        "left_out_as_untrusted": [f"{r['id']}: {'; '.join(r['reasons'])}" for r in complete if not r["trusted"]],
    }
    with_host = [r for r in complete if r["lab_cpu_share"] is not None]
    if not with_host:
        out.update(host_health_available=False,
                   lab_share="unknown: the runs carry no host_health (the lab's own CPU time "
                             "during the measured window is not recorded)")
        return out
    rps = [r["requests_per_sec"] for r in with_host]
    lab = [r["lab_cpu_share"] for r in with_host]
    other = [r["other_cpu_share"] for r in with_host if r["other_cpu_share"] is not None]
    steal = [r["steal_share"] for r in with_host if r["steal_share"] is not None]
    out.update(
        host_health_available=True, runs_with_host_health=len(with_host),
        lab_cpu_cores=_spread(lab), other_cpu_cores_on_measured=_spread(other),
        steal_share=_spread(steal), host_busy_runs=sum(1 for r in with_host if r["host_busy"]),
        r2_rps_vs_lab_cpu=_r2(lab, rps),
        r2_rps_vs_other_cpu=_r2(other, rps) if len(other) == len(rps) else None,
    )
    r2 = [x for x in (out["r2_rps_vs_lab_cpu"], out["r2_rps_vs_other_cpu"]) if x is not None]
    out["lab_share"] = (
        f"the controller used {out['lab_cpu_cores']['mean']:.3f} of a core on average "
        f"(at most {out['lab_cpu_cores']['max']:.3f}) while measuring; "
        + (f"at most {max(r2):.0%} of the repeats' variance moves with the lab's or other work's "
           f"CPU (R², {len(rps)} runs: a correlation, not a cause)" if r2 else
           "too few runs or no variation to relate it to the spread"))
    return out


def analyse(doc: dict, reference: str, second: str, alpha: float = ALPHA) -> dict:
    rows = [_run_row(e) for e in doc.get("runs") or []]
    cells = {}
    for name in (reference, second):
        mine = [r for r in rows if r["cell"] == name]
        values = [r["requests_per_sec"] for r in mine if r["trusted"]]
        server = [r["server_requests_per_sec"] for r in mine
                  if r["trusted"] and r["server_requests_per_sec"] is not None]
        drifts = [r["drift"] for r in mine if r["drift"] is not None]
        cells[name] = {"runs": len(mine), "values": values, "requests_per_sec": summarise(values),
                       "server_requests_per_sec": summarise(server),
                       "drift_within_runs": _spread(drifts)}
    ref_values = cells[reference]["values"]
    between = compare_samples(ref_values, cells[second]["values"], alpha)
    return {"reference": reference, "second": second, "runs": rows, "cells": cells,
            "a_versus_a": a_versus_a(ref_values, alpha), "reference_vs_second": between,
            "noise_sources": noise_sources([r for r in rows if r["cell"] == reference])}


# --- output ------------------------------------------------------------------------------------

def _f(value, fmt: str = ",.0f") -> str:
    return "—" if value is None else format(value, fmt)


def print_analysis(a: dict, console: Console) -> None:
    t = Table("run", "req/s", "server req/s", "drift", "trusted", "lab CPU", "other CPU", "steal",
              title="runs, in the order they ran (CPU in cores, during the measured window)",
              box=box.SIMPLE_HEAD)
    t.columns[0].no_wrap = True
    reasons = []
    for r in a["runs"]:
        trust = "yes" if r["trusted"] else "no"
        if r["server_failed"]:
            trust += ", server failed"
        if r["reasons"]:
            reasons.append(f"{r['id']}: {'; '.join(r['reasons'])}")
        t.add_row(r["id"], _f(r["requests_per_sec"]), _f(r["server_requests_per_sec"]),
                  _f(r["drift"], ".1%"), trust, _f(r["lab_cpu_share"], ".3f"),
                  _f(r["other_cpu_share"], ".3f"), _f(r["steal_share"], ".1%"))
    console.print(t)
    for line in reasons:
        console.print(f"  {line}", highlight=False)
    t = Table("cell", "n", "median", "CV", "interval", "±", "coverage", "server CV", "drift in runs",
              title="noise per cell (req/s of trusted runs; interval of the median)",
              box=box.SIMPLE_HEAD)
    t.columns[0].no_wrap = t.columns[4].no_wrap = True
    for name, c in a["cells"].items():
        s = c["requests_per_sec"] or {}
        ss = c["server_requests_per_sec"] or {}
        ci = s.get("ci95")
        d = c["drift_within_runs"]
        half = s.get("ci_half_width_pct")
        t.add_row(name, str(s.get("n", 0)), _f(s.get("median")), _f(s.get("cv"), ".1%"),
                  "—" if not ci else f"{ci[0]:,.0f}–{ci[1]:,.0f}",
                  "—" if half is None else f"{half:.1f}%",
                  _f(s.get("coverage"), ".1%"), _f(ss.get("cv"), ".1%"),
                  "—" if not d else f"{d['mean']:.1%} (max {d['max']:.1%})")
    console.print(t)
    aa = a["a_versus_a"]
    if aa["rate"] is None:
        console.print(f"A versus A: not computed ({aa['note']})")
    else:
        console.print(f"A versus A ({a['reference']} split into halves, {aa['splits']} splits): "
                      f"{aa['false_positives']} called different, a false-positive rate of "
                      f"{aa['rate']:.0%} against the promised {aa['alpha']:.0%}")
        h = aa["first_half_vs_second_half"]
        console.print(f"  first half against second half (drift over time): {h['verdict']}"
                      f", p {_f(h['p_value'], '.3f')}, ratio {_f(h['ratio_of_medians'], '.3f')}")
    b = a["reference_vs_second"]
    ci = b["ratio_ci95"]
    console.print(f"{a['second']} against {a['reference']}: {b['verdict']}"
                  + (f", ×{b['ratio_of_medians']:.2f}" if b["ratio_of_medians"] else "")
                  + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
                  + (f", p {b['p_value']:.3f}" if b["p_value"] is not None else "")
                  + (f"; smallest ratio detectable at this noise ×{b['smallest_detectable_ratio']:.2f}"
                     if b.get("smallest_detectable_ratio") else ""))
    n = a["noise_sources"]
    console.print(f"spread of {a['reference']}: CV {_f(n['cv_trusted'], '.1%')} over its trusted runs, "
                  f"{_f(n['cv_all_complete'], '.1%')} over every complete one "
                  f"({len(n['left_out_as_untrusted'])} left out as untrusted)")
    console.print(f"the lab's share: {n['lab_share']}")


# --- main --------------------------------------------------------------------------------------

def acquire(lock, wait: bool, console: Console) -> bool:
    from lab.lock import ControllerBusy

    while True:
        try:
            lock.acquire()
            return True
        except ControllerBusy as exc:
            if not wait:
                console.print(f"[red]{exc}[/red]")
                return False
            console.print(f"waiting for the host: {exc}".split(". One controller")[0])
            time.sleep(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=6, help="runs of each cell (default 6)")
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per run")
    parser.add_argument("--reference", type=parse_cell, default=("preforked", 200), metavar="ARCH:CONNS")
    parser.add_argument("--second", type=parse_cell, default=("epoll", 200), metavar="ARCH:CONNS")
    parser.add_argument("--backlog", type=int, help="listen() backlog of both servers (default: the article's 10)")
    parser.add_argument("--profile", default="article")
    parser.add_argument("--alpha", type=float, default=ALPHA)
    parser.add_argument("--results", type=Path, help="where the result is kept (default results/bench)")
    parser.add_argument("--out", type=Path, help="default results/bench-noise.json")
    parser.add_argument("--wait", action="store_true", help="wait for another controller to finish")
    args = parser.parse_args(argv)
    console = Console()
    if args.reference == args.second:
        parser.error("--second must name another cell than --reference")

    from lab.environment import environment_factory
    from lab.facts import host_facts
    from lab.lock import ControllerLock
    from lab.plan import plan_runs, scenario_digest, statistics_block
    from lab.progress import Progress
    from lab.results import ResultStore, write_atomically
    from lab.runner import run_plan
    from lab.scenario import ROOT, ScenarioError, validate_scenario

    name = "bench-noise" + (f"-backlog{args.backlog}" if args.backlog is not None else "")
    try:
        scenario = validate_scenario(scenario_data(name, args.reference, args.second, args.repeats,
                                                   args.duration, args.warmup, args.backlog,
                                                   args.profile), name)
    except ScenarioError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    runs = select_runs(plan_runs(scenario), [args.reference, args.second])
    reference = f"{args.reference[0]}-c{args.reference[1]}"
    second = f"{args.second[0]}-c{args.second[1]}"
    lock = ControllerLock(name)
    if not acquire(lock, args.wait, console):
        return 3
    try:
        store = ResultStore.create(args.results or ROOT / "results" / "bench",
                                   scenario.model_dump(mode="json"), scenario_digest(scenario), runs,
                                   host_facts() | {"engine": "compose"}, statistics_block(scenario))
        status = run_plan(store, runs, environment_factory("compose"), Progress(console),
                          steady=scenario.steady_state)
    finally:
        lock.release()
    doc = store.doc
    analysis = analyse(doc, reference, second, args.alpha)
    print_analysis(analysis, console)
    out = args.out or ROOT / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, json.dumps({
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {"repeats": args.repeats, "duration_s": args.duration, "warmup_s": args.warmup,
                     "reference": reference, "second": second, "backlog": args.backlog,
                     "profile": args.profile, "alpha": args.alpha, "order": "interleaved, round-robin"},
        "result_dir": str(store.dir), "status": status, "environment": doc.get("environment"),
        **analysis}, indent=1, default=str) + "\n")
    console.print(f"written {out}; the result: {store.dir}")
    return 0 if status == "complete" else 1


if __name__ == "__main__":
    sys.exit(main())
