"""`python -m lab.report build [RUN_DIR ...] [--out DIR] [--check-in-browser]` |
`python -m lab.report compare A B [--out DIR]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import build_report, compare_results
from .browser import BrowserMissing, check_report, require_browser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.report")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="HTML report and plots (default: the latest results)")
    p.add_argument("runs", nargs="*", type=Path, help="result dirs, or dirs holding several")
    p.add_argument("--out", type=Path, help="default: <run dir>/report/")
    p.add_argument("--check-in-browser", action="store_true",
                   help="load it in Debian's headless Chromium, offline; fail on any console error or "
                   "failed load; writes screenshot.png beside it")
    p = sub.add_parser("compare", help="two results cell by cell")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--out", type=Path, help="default: <B>/compare-<A>/")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            if args.check_in_browser:
                require_browser()   # before the plots, which take a while
            out = build_report(args.runs or None, args.out)
            print(f"report: {out}")
            if args.check_in_browser:
                return check_in_browser(out)
        else:
            print(f"comparison: {compare_results(args.a, args.b, args.out)}")
    except (FileNotFoundError, BrowserMissing) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def check_in_browser(report_html: Path) -> int:
    check = check_report(report_html, report_html.parent / "screenshot.png")
    print(check.summary)
    for problem in check.problems:
        print(f"browser: {problem}", file=sys.stderr)
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main())
