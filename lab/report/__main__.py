"""`python -m lab.report build [RUN_DIR ...] [--out DIR]` | `python -m lab.report compare A B [--out DIR]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import build_report, compare_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.report")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="HTML report and plots (default: the latest results)")
    p.add_argument("runs", nargs="*", type=Path, help="result dirs, or dirs holding several")
    p.add_argument("--out", type=Path, help="default: <run dir>/report/")
    p = sub.add_parser("compare", help="two results cell by cell")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--out", type=Path, help="default: <B>/compare-<A>/")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(f"report: {build_report(args.runs or None, args.out)}")
        else:
            print(f"comparison: {compare_results(args.a, args.b, args.out)}")
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
