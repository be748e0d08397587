"""python -m loadgen parse FILE [--tool T] | agent [--host H] [--port P] | run --tool T --url U ..."""
import argparse
import json
import sys

from .parse import ParseError, parse_output


def _parse(args):
    try:
        with open(args.file, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        result = parse_output(text, args.tool)
    except ParseError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


def _agent(args):
    from .agent import AgentConfig, serve

    try:
        config = AgentConfig.from_env()
    except ValueError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 2
    serve(args.host, args.port, config)
    return 0


def _run(args):
    from .merge import latency_summary
    from .spec import LoadSpec, SpecError
    from .tools import run_load

    try:
        mix = json.loads(args.mix)
        spec = LoadSpec(tool=args.tool, mode=args.mode, url=args.url, connections=args.connections,
                        threads=args.threads, duration_s=args.duration, rate=args.rate,
                        timeout_s=args.timeout, mix=mix, static_path=args.static_path)
    except (SpecError, ValueError) as exc:
        print(f"bad load: {exc}", file=sys.stderr)
        return 2
    outcome = run_load(spec)
    if args.raw:
        sys.stderr.write(outcome.raw_output)
    if outcome.result is not None:
        # the tool result, its summary, and what the generator measured of itself
        json.dump(dict(outcome.result, latency_ms=latency_summary(outcome.result["latency"]),
                       **outcome.measures), sys.stdout, indent=2)
        print()
    if outcome.error:
        print(outcome.error, file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m loadgen")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parse", help="print the tool result JSON of a wrk2, wrk or oha output")
    p.add_argument("file")
    p.add_argument("--tool", choices=("wrk", "wrk2", "oha"), help="default: guessed from the text")
    p.set_defaults(func=_parse)
    a = sub.add_parser("agent", help="serve the generator agent's HTTP protocol (environment: "
                                     "ZL_AGENT_TOKEN, ZL_AGENT_TARGET, ZL_AGENT_REDIS; for tests "
                                     "only ZL_AGENT_TEST_START_DELAY_S)")
    a.add_argument("--host", default="0.0.0.0")
    a.add_argument("--port", type=int, default=9100)
    a.set_defaults(func=_agent)
    r = sub.add_parser("run", help="one local run; prints the tool result JSON")
    r.add_argument("--tool", choices=("wrk", "wrk2", "oha"), default="wrk")
    r.add_argument("--mode", choices=("closed", "open"), default="closed")
    r.add_argument("--url", required=True, help="the server's base URL, e.g. http://127.0.0.1:8000")
    r.add_argument("--connections", "-c", type=int, default=10)
    r.add_argument("--threads", "-t", type=int, default=2)
    r.add_argument("--duration", "-d", type=int, default=10, help="seconds")
    r.add_argument("--rate", "-R", type=int, default=None, help="requests/second (open mode)")
    r.add_argument("--timeout", type=int, default=2, help="seconds")
    r.add_argument("--mix", default='{"guestbook_get": 1}', help="JSON weights per request kind")
    r.add_argument("--static-path", default="/index.html")
    r.add_argument("--raw", action="store_true", help="also print the tool's raw output on stderr")
    r.set_defaults(func=_run)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
