"""`python -m lab ...`: the commands behind `make scenario`, `make verify`, `make report`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lab.environment import ENGINES
from lab.lock import ControllerBusy, ControllerLock
from lab.scenario import (ROOT, ScenarioError, available_scenarios, load_scenario, validate_scenario,
                          with_overrides)
from lab.validity import error_count

RESULTS_ROOT = ROOT / "results"
console = Console()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("scenario", help="run a scenario end to end")
    p.add_argument("name", nargs="?", default="", help="scenarios/<name>.yaml, or a path")
    p.add_argument("--engine", default="compose", choices=ENGINES)
    p.add_argument("--fresh", action="store_true", help="start a new result instead of resuming")
    p.add_argument("--results", type=Path, default=RESULTS_ROOT)
    p.add_argument("--accept-weaker-cpu-limits", action="store_true",
                   help="on Swarm, run a scenario with cpusets as CPU-count limits")
    p.add_argument("--duration", type=int, help="override load.duration_s (a short version of a scenario); "
                   "checked like the scenario's own value")
    p.add_argument("--repeats", type=int, help="override repeats: each cell this many times")
    p.add_argument("--generators", type=int, help="override generators (fewer, when a node is gone): "
                   "another measurement, so its results go under NAME-gN")

    p = sub.add_parser("validate", help="check scenario files without running anything")
    p.add_argument("names", nargs="*", help="default: every scenario")

    p = sub.add_parser("plan", help="print the run matrix of a scenario")
    p.add_argument("name")

    p = sub.add_parser("list", help="list the scenarios")

    p = sub.add_parser("tools", help="print the load generators a scenario uses (for make images)")
    p.add_argument("names", nargs="*", help="default: every scenario")

    p = sub.add_parser("verify", help="bring a scenario's environment up, check it, tear it down")
    p.add_argument("name", nargs="?", default="")

    p = sub.add_parser("report", help="HTML report and plots of results")
    p.add_argument("runs", nargs="*", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--check-in-browser", action="store_true",
                   help="load the report in Debian's headless Chromium, offline: fail on any console error "
                   "or failed load; writes screenshot.png beside it")

    p = sub.add_parser("compare", help="two results side by side")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--out", type=Path)

    p = sub.add_parser("cleanup", help="remove containers, networks and volumes left by runs")
    p.add_argument("--prefix", default="zl", help="compose project / stack name prefix")

    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ScenarioError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        return 2
    except ControllerBusy as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        return 3


def _require_name(name: str) -> None:
    if not name:
        raise ScenarioError("NAME", ["give a scenario: make scenario NAME=<name>; scenarios: "
                                     + ", ".join(available_scenarios())])


def cmd_list(args) -> int:
    for name in available_scenarios():
        s = load_scenario(name)
        console.print(f"[bold]{name}[/bold]  {s.description}")
    return 0


def cmd_validate(args) -> int:
    failures = 0
    for name in args.names or available_scenarios():
        try:
            load_scenario(name)
            console.print(f"[green]ok[/green] {name}")
        except ScenarioError as exc:
            failures += 1
            console.print(f"[red]{exc}[/red]", highlight=False)
    return 1 if failures else 0


def cmd_tools(args) -> int:
    """One line, the tools the scenarios' runs use: `make scenario` builds only those."""
    from lab.plan import plan_runs

    tools: set[str] = set()
    for name in args.names or available_scenarios():
        tools.update(r.tool for r in plan_runs(load_scenario(name)))
    print(" ".join(sorted(tools)))
    return 0


def cmd_plan(args) -> int:
    from lab.plan import plan_runs

    runs = plan_runs(present_servers(load_scenario(args.name)))
    table = Table("run", "arch", "connections", "rate", "tool", "duration", "generators")
    for r in runs:
        table.add_row(r.id, r.arch, str(r.connections), str(r.rate or ""), r.tool, f"{r.duration_s:g} s",
                      str(r.generators))
    console.print(table)
    return 0


def cmd_scenario(args) -> int:
    from lab.environment import environment_factory
    from lab.facts import host_facts
    from lab.plan import next_round, plan_runs, scenario_digest, statistics_block
    from lab.progress import Progress
    from lab.results import ResultStore
    from lab.runner import run_plan

    _require_name(args.name)
    scenario = with_overrides(load_scenario(args.name), f"scenario {args.name!r}", duration_s=args.duration,
                              repeats=args.repeats)
    if args.generators is not None and args.generators != scenario.generators:
        # Another measurement, under a name of its own: the scenario's unfinished result stays
        # the one its own command resumes.
        data = scenario.model_dump(mode="json") | {"generators": args.generators,
                                                   "name": f"{scenario.name}-g{args.generators}"}
        scenario = validate_scenario(data, f"scenario {args.name!r} with --generators {args.generators}")
    if args.accept_weaker_cpu_limits:
        scenario = scenario.model_copy(update={"accept_weaker_cpu_limits": True})
    if args.engine == "swarm":
        from lab.environment.swarm import check_swarm_constraints
        from lab.scenario import servers

        for server in servers(scenario):  # each server of a sweep over servers, as server:
            check_swarm_constraints(scenario.model_copy(update={"server": server}))
    left_out: list[str] = []
    scenario = present_servers(scenario, left_out)
    runs = plan_runs(scenario)
    digest = scenario_digest(scenario) + ("" if args.engine == "compose" else f"-{args.engine}")
    with ControllerLock(f"scenario {scenario.name}"):
        store = None if args.fresh else ResultStore.resumable(args.results, scenario.name, digest)
        if store is None:
            environment = host_facts() | {"engine": args.engine}
            store = ResultStore.create(args.results, scenario.model_dump(mode="json"), digest, runs,
                                       environment, statistics_block(scenario))
            for note in left_out:
                store.add_note(note)
        status = run_plan(store, runs, environment_factory(args.engine), Progress(console),
                          extend=lambda entries: next_round(scenario, entries), steady=scenario.steady_state)
    print_summary(store.doc)
    console.print(f"result: {store.dir / 'result.json'}")
    if store.doc.get("problems"):
        return 1
    return {"complete": 0, "interrupted": 130}.get(status, 1)


def present_servers(scenario, notes: list[str] | None = None):
    """The scenario less its optional servers whose image is not here, each said on the console
    (and added to `notes`, for the result)."""
    from lab.images import image_present
    from lab.plan import without_absent_servers

    scenario, left_out = without_absent_servers(scenario, image_present)
    for note in left_out:
        console.print(f"[yellow]note: {note}[/yellow]", highlight=False, soft_wrap=True)
    if notes is not None:
        notes += left_out
    return scenario


def print_summary(doc: dict) -> None:
    table = Table("run", "req/s", "p99 ms", "errors", "verdict", title=f"{doc['scenario']} ({doc['status']})")
    for r in doc["runs"]:
        if r["status"] != "complete":
            table.add_row(r["id"], "", "", "", f"[red]{r['status']}[/red] {r.get('error') or ''}")
            continue
        errors = error_count(r["errors"])
        p99 = (r.get("latency_ms") or {}).get("p99")
        table.add_row(r["id"], f"{r['requests_per_sec']:,.0f}", "" if p99 is None else f"{p99:,.1f}",
                      str(errors), verdict_text(r["validity"]))
    console.print(table)
    print_cells(doc)
    for note in doc.get("notes", []):
        console.print(f"note: {note}", highlight=False)
    for problem in doc.get("problems", []):
        console.print(f"[red]problem: {problem}[/red]", highlight=False)


def verdict_text(v: dict) -> str:
    """A run's validity in words: trusted or not, and whether the server failed (a result)."""
    trusted = v.get("trusted", v.get("valid"))
    if not trusted:
        return "[yellow]untrusted[/yellow]: " + "; ".join(v.get("untrusted_reasons") or v["reasons"])
    if v.get("server_failed"):
        return "[magenta]server failed[/magenta] (a result): " + "; ".join(v["server_reasons"])
    return "[green]trusted[/green]"


def print_cells(doc: dict) -> None:
    """Per cell: the median of its trusted runs with the interval, and how well it is known."""
    cells = doc.get("cells") or []
    if not cells or all(len(c["runs"]) < 2 for c in cells):
        return
    target = (doc.get("statistics") or {}).get("target_ci_pct")
    table = Table("cell", "req/s (median)", "interval", "± %", "CV", "n", "p99 ms (median)", "",
                  title="cells" + (f" (target ±{target:g}%)" if target else ""))
    for c in cells:
        rps, p99 = c.get("requests_per_sec"), c.get("latency_p99_ms")
        if not rps:
            table.add_row(c["cell"], "", "", "", "", f"0/{len(c['runs'])}", "", "[yellow]no trusted run[/yellow]")
            continue
        ci = rps.get("ci95")
        interval = f"{ci[0]:,.0f}–{ci[1]:,.0f} ({rps['coverage'] * 100:.0f}%)" if ci and rps.get("coverage") else (
            f"{ci[0]:,.0f}–{ci[1]:,.0f}" if ci else "")
        half = rps.get("ci_half_width_pct")
        flag = ""
        if c.get("converged") is False:
            flag = "[yellow]not converged[/yellow]"
        if c.get("n_server_failed"):
            flag += f" [magenta]{c['n_server_failed']} server-failed[/magenta]"
        table.add_row(c["cell"], f"{rps['median']:,.0f}", interval, "" if half is None else f"{half:.1f}",
                      "" if rps.get("cv") is None else f"{rps['cv'] * 100:.0f}%",
                      f"{rps['n']}/{len(c['runs'])}", "" if not p99 else f"{p99['median']:,.1f}", flag)
    console.print(table)


def cmd_verify(args) -> int:
    """Brings up each environment the scenario's plan needs (one per server image: a sweep over
    servers has several), checks it with tests/infra and tears it down."""
    import os

    from lab.environment import environment_factory
    from lab.environment.infra_checks import environments_of, infra_expectation, run_infra_checks
    from lab.plan import plan_runs
    from lab.runner import compose_project_name

    _require_name(args.name)
    scenario = load_scenario(args.name)
    firsts = environments_of(plan_runs(present_servers(scenario)))
    prefix = os.environ.get("ZL_PROJECT_PREFIX", "zl")
    failed = []
    with ControllerLock(f"verify {args.name}"):
        for i, run in enumerate(firsts, 1):
            project = compose_project_name(f"{prefix}-verify-{scenario.name}-e{i}")
            console.print(f"environment {i} of {len(firsts)}: {run.impl} server, as for {run.cell}",
                          highlight=False)
            with environment_factory("compose")(run, project) as env:
                env.up()
                code = run_infra_checks(env, infra_expectation(run))
            if code:
                failed.append(f"{run.cell} ({code})")
    console.print("[green]environment verified[/green]" if not failed
                  else f"[red]checks failed: {', '.join(failed)}[/red]", highlight=False)
    return 1 if failed else 0


def cmd_report(args) -> int:
    from lab.report import build_report

    if args.check_in_browser:
        from lab.report.browser import BrowserMissing, require_browser

        try:
            require_browser()   # before the plots, which take a while
        except BrowserMissing as exc:
            console.print(f"[red]{exc}[/red]", highlight=False)
            return 1
    out = build_report(args.runs or None, args.out)
    console.print(f"report: {out}")
    return check_in_browser(out) if args.check_in_browser else 0


def check_in_browser(report_html: Path) -> int:
    from rich.markup import escape

    from lab.report.browser import check_report

    check = check_report(report_html, report_html.parent / "screenshot.png")
    console.print(check.summary, highlight=False)
    for problem in check.problems:
        console.print(f"[red]browser: {escape(problem)}[/red]", highlight=False, soft_wrap=True)
    if check.ok:
        console.print("[green]the report loads in Chromium with no error[/green]")
    return 0 if check.ok else 1


def cmd_compare(args) -> int:
    from lab.report import compare_results

    out = compare_results(args.a, args.b, args.out)
    console.print(f"comparison: {out}")
    return 0


def cmd_cleanup(args) -> int:
    """Removes the lab's objects under projects and stacks named PREFIX*; exits 1 when something
    could not be removed (each one is printed with the reason)."""
    from rich.markup import escape

    from lab.cleanup import remove_leftovers

    report = remove_leftovers(args.prefix)
    for what in report.removed:
        console.print(f"removed {escape(what)}", highlight=False, soft_wrap=True)
    for what, why in report.failed:
        console.print(f"[red]could not remove {escape(what)}: {escape(why)}[/red]", highlight=False,
                      soft_wrap=True)
    if not report.removed and not report.failed:
        console.print(f"nothing of the lab left under {escape(args.prefix)}*", highlight=False)
    return 0 if report.ok else 1


COMMANDS = {"cleanup": cmd_cleanup, "scenario": cmd_scenario, "validate": cmd_validate, "plan": cmd_plan, "list": cmd_list,
            "tools": cmd_tools,
            "verify": cmd_verify, "report": cmd_report, "compare": cmd_compare}

if __name__ == "__main__":
    sys.exit(main())
