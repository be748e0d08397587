"""Find wrk, wrk2 and oha, build their command lines from a LoadSpec, and run them.

Every run is bounded (duration plus a margin), keeps the tools' raw stdout and stderr, and
can be stopped early with SIGINT, after which the tools still print their report.
A tool is judged by what it did, not only by what it printed (judge_tools): a non-zero exit,
a signal we did not send, an oha process (one per request kind) without a report, or a
report shorter than the asked duration fails the run with the tool's own last words.
Each run also says what the generator measured of itself (RunOutcome.measures): when its
tool really started and ended, the CPU time it used and the CPUs it could use.
"""
import functools
import json
import os
import re
import shutil
import signal
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass, field

import sh

from . import cpu
from .lua import POST_BODY, REPORT_ENV, render_script
from .parse import PER_REQUEST_PREFIX, SCRIPT_REPORT_PREFIX, ParseError, parse_output
from .perrequest import read_oha_requests

# Every exit status and signal is an outcome to report, not a Python exception.
_ANY_EXIT = list(range(-64, 256))
STOP_GRACE_S = 5.0
# A run that was not stopped must report at least its asked duration less the larger of
# these (a 2 s run at least 1 s, a 30 s run at least 27 s): wrk and oha report the time they
# ran, a little over -d/-z; much less means the tool gave up half-way.
SHORT_RUN_SLACK_S = 1.0
SHORT_RUN_FRACTION = 0.10
# How we end a tool on a stop or a timeout: SIGINT (then SIGKILL after STOP_GRACE_S). A tool
# that dies by one of these, or exits with the shell's status for them, ended as asked.
_OUR_SIGNALS = (signal.SIGINT, signal.SIGKILL)
# oha writes its per-request file after its run, one row at a time: about 10-20 us a request
# measured on a 2-core host; the hard timeout allows this much, for the asked rate or, in
# closed mode, for OHA_CLOSED_RATE_BOUND requests a second.
OHA_WRITE_S_PER_REQUEST = 50e-6
OHA_CLOSED_RATE_BOUND = 20_000
# What oha prints on stderr once its report is out, before it writes the per-request file.
OHA_STORING = "Storing results to"


# ---------------------------------------------------------------- finding the tools

def _run_quietly(path, *args):
    try:
        with cpu.spawned():  # a run's CPU figure is not taken while this child lives
            p = sh.Command(path)(*args, _ok_code=_ANY_EXIT, _tty_out=False, _timeout=10,
                                 _err_to_out=True, _return_cmd=True)
        return p.process.stdout.decode("utf-8", "replace")
    except (sh.CommandNotFound, sh.TimeoutException, OSError):
        return ""


def wrk_flavour(path):
    """('wrk2' or 'wrk', version) from `wrk -v`: wrk2 says 'wrk 4.0.0' and lists --rate,
    Debian's says 'wrk debian/4.1.0-...'."""
    text = _run_quietly(path, "-v")
    m = re.match(r"wrk (\S+)", text)
    if not m:
        return None, None
    return ("wrk2" if "--rate" in text else "wrk"), m.group(1)


def oha_version(path):
    m = re.search(r"oha (\S+)", _run_quietly(path, "--version"))
    return m.group(1) if m else None


def _candidates(tool):
    env = {"wrk": "WRK", "wrk2": "WRK2", "oha": "OHA"}[tool]
    paths = [os.environ.get(env)]
    paths += [shutil.which(name) for name in ({"wrk2": ("wrk2", "wrk")}.get(tool, (tool,)))]
    return [p for p in paths if p]


@functools.lru_cache(maxsize=None)
def find_tool(tool):
    """(path, version) of a usable binary for tool, or (None, None). wrk2 comes from $WRK2 or
    `wrk2` on PATH (or a `wrk` that turns out to be wrk2); oha from $OHA or PATH."""
    for path in _candidates(tool):
        if tool == "oha":
            version = oha_version(path)
            if version:
                return path, version
        else:
            flavour, version = wrk_flavour(path)
            if flavour == tool:
                return path, version
    return None, None


def detect_tools():
    """{"wrk": version or None, "wrk2": ..., "oha": ...}"""
    return {tool: find_tool(tool)[1] for tool in ("wrk", "wrk2", "oha")}


# ---------------------------------------------------------------- command lines

@dataclass
class Command:
    argv: list
    kind: str | None = None  # the request kind of an oha process
    env: dict = field(default_factory=dict)
    db_path: str | None = None  # where an oha process writes every request (--db-url)


def wrk_threads(threads, connections):
    """wrk silently drops connections % threads: use the most threads up to the asked number
    that divide the connections, so every asked connection is opened."""
    return max(t for t in range(1, min(threads, connections) + 1) if connections % t == 0)


def split_by_weight(total, weights):
    """total divided in proportion to weights, each part at least 1 (largest remainder)."""
    wsum = float(sum(weights))
    parts = [max(1, int(total * w / wsum)) for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (total * weights[i] / wsum) - parts[i],
                   reverse=True)
    i = 0
    while sum(parts) < total:
        parts[order[i % len(order)]] += 1
        i += 1
    while sum(parts) > total:  # only when the minimum of 1 pushed it over
        j = max(range(len(parts)), key=lambda k: parts[k])
        parts[j] -= 1
    return parts


def kind_path(kind, spec):
    return spec.static_path if kind == "static" else "/guestbook"


def build_commands(spec, tool_path, script_path=None, report_path=None, db_dir=None):
    """The command line(s) that run spec: one wrk/wrk2 process driven by the Lua script, or
    one oha process per request kind with the connections (and rate) split by weight, each
    writing every request to db_dir/oha-KIND.db when db_dir is given."""
    base = spec.url.rstrip("/")
    if spec.tool in ("wrk", "wrk2"):
        argv = [tool_path, "-t", str(wrk_threads(spec.threads, spec.connections)),
                "-c", str(spec.connections), "-d", f"{int(spec.duration_s)}s",
                "--timeout", f"{int(spec.timeout_s)}s"]
        # wrk2: -U prints the uncorrected spectrum too (and implies -L)
        argv += ["-R", str(spec.rate), "-U"] if spec.tool == "wrk2" else ["--latency"]
        if script_path:
            argv += ["-s", script_path]
        env = {REPORT_ENV: report_path} if report_path else {}
        return [Command(argv + [base + "/"], env=env)]
    kinds = spec.kinds()
    weights = [spec.mix[k] for k in kinds]
    conns = split_by_weight(spec.connections, weights)
    rates = split_by_weight(spec.rate, weights) if spec.rate is not None else [None] * len(kinds)
    commands = []
    for kind, c, rate in zip(kinds, conns, rates):
        argv = [tool_path, "--no-tui", "--output-format", "json", "-z", f"{int(spec.duration_s)}s",
                "-c", str(c), "-t", f"{int(spec.timeout_s)}s", "--disable-keepalive",
                "--worker-threads", str(spec.threads)]
        if rate is not None:
            argv += ["-q", str(rate), "--latency-correction"]
        if kind == "guestbook_post":
            argv += ["-m", "POST", "-T", "application/x-www-form-urlencoded", "-d", POST_BODY]
        db_path = os.path.join(db_dir, f"oha-{kind}.db") if db_dir else None
        if db_path:
            argv += ["--db-url", db_path]
        commands.append(Command(argv + [base + kind_path(kind, spec)], kind=kind, db_path=db_path))
    return commands


def tool_threads(spec, commands=None):
    """The threads the tool runs the load on: wrk's -t, or oha's --worker-threads in each of
    its processes (one per request kind)."""
    if spec.tool == "oha":
        return spec.threads * (len(commands) if commands else len(spec.kinds()))
    return wrk_threads(spec.threads, spec.connections)


def hard_timeout_s(spec):
    """How long a run may take before it is killed: wrk2 runs up to 2 s over -d, opening
    thousands of connections takes a while, and oha writes its per-request file after its run."""
    limit = spec.duration_s + 15 + 0.1 * spec.duration_s + spec.connections / 1000.0
    if spec.tool == "oha":
        limit += spec.duration_s * (spec.rate or OHA_CLOSED_RATE_BOUND) * OHA_WRITE_S_PER_REQUEST
    return limit


# ---------------------------------------------------------------- running

MEASURES = ("tool_started_at", "tool_started_last_at", "tool_ended_at", "tool_exited_at",
            "tool_wall_s", "tool_cpu_s", "usable_cpus", "cpu_limits", "cpu_share")


def no_measures():
    return dict.fromkeys(MEASURES)


@dataclass
class RunOutcome:
    raw_output: str
    result: dict | None
    error: str | None
    commands: list
    stopped: bool = False
    # what the generator measured of itself (MEASURES; see measures_of)
    measures: dict = field(default_factory=no_measures)


@dataclass
class ProcessWatch:
    """What the agent saw of one tool process, in wall-clock seconds (time.time())."""
    started_at: float | None = None   # just before it was started
    exited_at: float | None = None    # when it was seen to end (after its output was read)
    reported_at: float | None = None  # oha: when it said it writes its per-request file
    cpu_at_report: dict | None = None  # oha: its CPU time then ({"user", "system"})
    pid: int | None = None


@dataclass
class ToolExit:
    """How one tool process ended: exit_code is its status, or minus the signal that killed it."""
    name: str            # "wrk", "wrk2", or "oha KIND" for one process of an oha mix
    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    kind: str | None = None  # the request kind of an oha process


def min_duration_s(asked_s):
    """The shortest reported duration that counts as a whole run of asked_s seconds."""
    return asked_s - max(SHORT_RUN_SLACK_S, SHORT_RUN_FRACTION * asked_s)


def last_words(stdout, stderr, lines=3, width=300):
    """What a tool said last: its last non-empty stderr lines, else its last stdout lines."""
    for text in (stderr, stdout):
        said = [l.strip() for l in (text or "").splitlines() if l.strip()]
        if said:
            return " | ".join(said[-lines:])[-width:]
    return "it printed nothing"


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _exit_problem(e, signalled):
    """Why e's exit fails the run, or None. signalled: we sent SIGINT (and maybe SIGKILL)."""
    code = e.exit_code
    if code is None or code == 0:
        return None
    if signalled and (-code in _OUR_SIGNALS or code - 128 in _OUR_SIGNALS):
        return None
    if code < 0:
        how = f"was killed by {_signal_name(-code)}"
        if -code in _OUR_SIGNALS:
            how += " (not sent by the agent)"
    else:
        how = f"exited with status {code}"
    return f"{e.name} {how}: {last_words(e.stdout, e.stderr)}"


def _short_problem(name, result, asked_s):
    reported = result.get("duration_s") if result else None
    if reported is None or reported >= min_duration_s(asked_s):
        return None
    return (f"{name} stopped early: it reports {reported:.2f} s of the {asked_s:g} s asked "
            f"(at least {min_duration_s(asked_s):g} s expected)")


def judge_tools(spec, exits, stopped_by_us=False):
    """Problems (a list of strings, empty when none) with how the tools of one run ended:
    - a tool that exited non-zero, or died by a signal the agent did not send (stopped_by_us:
      the agent sent SIGINT, then maybe SIGKILL, on a stop or a timeout);
    - an oha process (one per request kind) that printed no parsable report, naming its kind;
    - a tool whose report is short of the asked duration (min_duration_s), unless stopped_by_us.
    A wrk/wrk2 output that does not parse is the caller's to report (with the whole output)."""
    problems = []
    for e in exits:
        problem = _exit_problem(e, stopped_by_us)
        if problem:  # its last words say more than a parse error would
            problems.append(problem)
            continue
        printed = e.stdout + e.stderr
        try:
            result = parse_output(printed, spec.tool)
        except ParseError as exc:
            if spec.tool == "oha":
                problems.append(f"oha {e.kind} printed nothing" if not printed.strip()
                                else f"oha {e.kind} printed no report: {exc}")
            continue
        if not stopped_by_us:
            problem = _short_problem(e.name, result, spec.duration_s)
            if problem:
                problems.append(problem)
    return problems



def run_load(spec, stop_event=None, workdir=None, keep_request_files=None):
    """Run spec's tool(s) to completion, to the hard timeout, or until stop_event is set.
    Never raises for a tool failure: the outcome carries the raw output and the error.
    oha's per-request files are read into the raw output and deleted, or moved into the
    folder keep_request_files when given (tests compare them with the result)."""
    path, _ = find_tool(spec.tool)
    if path is None:
        hint = {"wrk2": "put a wrk2 binary on PATH or set $WRK2",
                "oha": "put oha on PATH or set $OHA", "wrk": "install Debian's wrk"}[spec.tool]
        return RunOutcome("", None, f"{spec.tool} not found: {hint}", [])
    detect_tools()  # every version check is over before the run, so no other child runs beside it
    with tempfile.TemporaryDirectory(prefix="loadgen-", dir=workdir) as tmp:
        script = report = None
        if spec.tool in ("wrk", "wrk2"):
            script, report = os.path.join(tmp, "mix.lua"), os.path.join(tmp, "report.json")
            with open(script, "w") as f:
                f.write(render_script(spec))
        commands = build_commands(spec, path, script, report,
                                  db_dir=tmp if spec.tool == "oha" else None)
        usable, limits = cpu.usable_cpus(tool_threads(spec, commands))
        watches = [ProcessWatch() for _ in commands]
        with cpu.spawned(len(commands)):
            meter = cpu.ChildrenCpu(len(commands)).start()
            procs = [_start(c, w) for c, w in zip(commands, watches)]
            stopped, timed_out = _wait(procs, stop_event, time.monotonic() + hard_timeout_s(spec))
            children_cpu = meter.stop()
        per_request = _read_request_files(commands, keep_request_files)
        raw = _raw_output(spec, commands, procs, report, per_request)
    measures = measures_of(watches, children_cpu, usable, limits)
    exits = [ToolExit(f"oha {c.kind}" if c.kind else spec.tool, p.exit_code,
                      _text(p.process.stdout), _text(p.process.stderr), c.kind)
             for c, p in zip(commands, procs)]
    problems = judge_tools(spec, exits, stopped_by_us=stopped or timed_out)
    try:
        result = parse_output(raw, spec.tool)
    except ParseError as exc:
        result = None
        if not problems:  # a problem above already gives the tool's own words
            problems.append(str(exc))
    if result is not None and spec.tool == "oha":
        result["threads"], result["connections"] = spec.threads, spec.connections
    if timed_out:
        problems.insert(0, f"{spec.tool} did not finish within {hard_timeout_s(spec):.0f} s "
                           f"and was stopped")
    error = "; ".join(problems) or None
    return RunOutcome(raw, result, error, [c.argv for c in commands], stopped, measures)


def measures_of(watches, children_cpu, usable, limits):
    """What a generator measured of its own run (epoch seconds, CPU seconds):
    tool_started_at / tool_started_last_at: just before its first / last process started
    (oha runs one per request kind); tool_ended_at: when the last one ended its load (oha:
    when it printed its report, before writing its per-request file; otherwise its exit);
    tool_exited_at: when the last one exited; tool_wall_s: from start to end of the load;
    tool_cpu_s {"user", "system"}: the CPU time its processes used meanwhile (oha: each
    process's own up to its report, else RUSAGE_CHILDREN around the run, writing included);
    usable_cpus: the least of cpu_limits {"threads", "affinity", "quota"}; cpu_share:
    (user + system) / wall / usable_cpus."""
    m = no_measures()
    starts = [w.started_at for w in watches if w.started_at is not None]
    if not starts:
        return m
    exits = [w.exited_at for w in watches if w.exited_at is not None]
    ends = [w.reported_at or w.exited_at for w in watches]
    m.update(tool_started_at=min(starts), tool_started_last_at=max(starts),
             tool_exited_at=max(exits) if exits else None,
             tool_ended_at=max(ends) if None not in ends else None,
             usable_cpus=usable, cpu_limits=limits)
    if m["tool_ended_at"] is not None:
        m["tool_wall_s"] = max(0.0, m["tool_ended_at"] - m["tool_started_at"])
    tool_cpu = children_cpu
    if all(w.cpu_at_report for w in watches):  # oha, each process up to its report
        tool_cpu = {k: sum(w.cpu_at_report[k] for w in watches) for k in ("user", "system")}
    if tool_cpu is not None:
        m["tool_cpu_s"] = {k: round(v, 4) for k, v in tool_cpu.items()}
    m["cpu_share"] = cpu.cpu_share(m["tool_cpu_s"], m["tool_wall_s"], usable)
    if m["cpu_share"] is not None:
        m["cpu_share"] = round(m["cpu_share"], 4)
    return m


def _start(command, watch):
    """Start one tool process (in the background), noting in watch when it started and ended,
    and for oha when it printed its report and how much CPU it had used by then."""
    env = dict(os.environ, **command.env)
    options = {}

    def done(_cmd, _success, _exit_code):
        watch.exited_at = time.time()

    if command.db_path:
        def on_stderr(line):
            if watch.reported_at is None and line.startswith(OHA_STORING):
                watch.reported_at = time.time()
                watch.cpu_at_report = cpu.process_cpu_s(watch.pid) if watch.pid else None

        options = {"_err": on_stderr, "_tee": "err"}  # stderr is still kept
    watch.started_at = time.time()
    proc = sh.Command(command.argv[0])(*command.argv[1:], _bg=True, _bg_exc=False, _env=env,
                                       _ok_code=_ANY_EXIT, _tty_out=False, _done=done, **options)
    watch.pid = proc.pid
    # reaped as soon as it exits, so that done() notes the time to the millisecond (the polls
    # in _wait are 0.1 s apart)
    threading.Thread(target=_reap, args=(proc,), name=f"reap-{proc.pid}", daemon=True).start()
    return proc


def _reap(proc):
    try:
        proc.wait()
    except Exception:  # _wait reaps it too, and reports how it ended
        pass


def _read_request_files(commands, keep_in=None):
    """{kind: its per-request latency} from each oha process's file; a file that is missing
    or unreadable (oha killed while writing it) is left out, and its printed percentiles stand
    for it. The files are moved into keep_in when given."""
    found = {}
    for c in commands:
        if not c.db_path or not os.path.exists(c.db_path):
            continue
        try:
            found[c.kind] = read_oha_requests(c.db_path, c.kind)
        except sqlite3.Error:
            pass
        if keep_in:
            shutil.move(c.db_path, os.path.join(keep_in, os.path.basename(c.db_path)))
    return found


def _alive(procs):
    return [p for p in procs if p.is_alive()]


def _wait(procs, stop_event, deadline):
    """(stopped early, timed out). SIGINT first, so the tools print what they measured."""
    stopped = timed_out = False
    while _alive(procs):
        if stop_event is not None and stop_event.is_set():
            stopped = True
            break
        if time.monotonic() > deadline:
            timed_out = True
            break
        time.sleep(0.1)
    if stopped or timed_out:
        signal_all(procs, signal.SIGINT)
        grace = time.monotonic() + STOP_GRACE_S
        while _alive(procs) and time.monotonic() < grace:
            time.sleep(0.05)
        signal_all(procs, signal.SIGKILL)
    for p in procs:
        p.wait()
    return stopped, timed_out


def signal_all(procs, sig):
    for p in _alive(procs):
        try:
            p.signal(sig)
        except ProcessLookupError:
            pass


def _text(data):
    return data.decode("utf-8", "replace") if data else ""


def _printed(proc):
    """A process's stdout then its stderr, as text (oha's JSON ends without a line break, and
    its stderr has a line when it writes its per-request file)."""
    stderr = _text(proc.process.stderr)
    return (_line_ended(_text(proc.process.stdout)) if stderr else _text(proc.process.stdout)) + stderr


def _line_ended(text):
    """text with a final newline, unless it is empty or already has one."""
    return text if text.endswith("\n") or not text else text + "\n"


def _raw_output(spec, commands, procs, report_path, per_request=None):
    """What the tools printed, in a form `python -m loadgen parse` reads back; after each oha
    process's output, its latency from every request when its file was read."""
    if spec.tool == "oha":
        parts = []
        for c, p in zip(commands, procs):
            parts.append(f"# oha {c.kind}: {' '.join(c.argv[1:])}\n")
            parts.append(_line_ended(_printed(p)))
            if c.kind in (per_request or {}):
                parts.append(PER_REQUEST_PREFIX + json.dumps(per_request[c.kind]) + "\n")
        return "".join(parts)
    raw = _printed(procs[0])
    if report_path and os.path.exists(report_path):
        with open(report_path) as f:
            line = f.read().strip()
        if line:
            raw = _line_ended(raw) + SCRIPT_REPORT_PREFIX + line + "\n"
    return raw

