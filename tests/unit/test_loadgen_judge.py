"""How a tool ended judges its run (loadgen.tools.judge_tools), on the recorded outputs in
tests/fixtures/: exit statuses, signals, oha processes without a report, short reports."""
import re
import signal

import pytest

from loadgen.parse import ParseError, parse_output
from loadgen.spec import LoadSpec
from loadgen.tools import ToolExit, judge_tools, last_words, min_duration_s

from fixture_files import FIXTURES  # tests/unit/fixture_files.py

MIX3 = {"guestbook_get": 1, "guestbook_post": 1, "static": 1}


def text(name):
    return (FIXTURES / name).read_text()


def spec(tool="wrk", duration_s=5, **kw):
    base = {"tool": tool, "url": "http://server:8000", "connections": 10, "threads": 2,
            "duration_s": duration_s}
    if tool == "wrk2":
        base.update(mode="open", rate=1000)
    base.update(kw)
    return LoadSpec(**base)


def wrk_exit(code, stdout="", stderr="", tool="wrk"):
    return ToolExit(tool, code, stdout, stderr)


def oha_parts():
    """{kind: that oha process's own output} from the raw output of a three-kind mix."""
    raw = text("oha/oha_mix_3kinds_raw.txt")
    pieces = re.split(r"^# oha (\w+):.*\n", raw, flags=re.M)[1:]
    return dict(zip(pieces[::2], pieces[1::2]))


def oha_exits(outputs, codes=None):
    codes = codes or {}
    return [ToolExit(f"oha {k}", codes.get(k, 0), out, "", k) for k, out in outputs.items()]


# ---------------------------------------------------------------- the thresholds

@pytest.mark.parametrize("asked, least", [(1, 0), (2, 1), (5, 4), (10, 9), (30, 27), (60, 54)])
def test_a_short_run_may_lose_a_second_a_long_one_a_tenth(asked, least):
    assert min_duration_s(asked) == pytest.approx(least)


def test_last_words_prefer_stderr_and_keep_the_last_lines():
    assert last_words("report\nlines\n", "warning\n\nerror: it broke\n") == "warning | error: it broke"
    assert last_words("a\nb\nc\nd\n", "") == "b | c | d"
    assert last_words("", "") == "it printed nothing"


# ---------------------------------------------------------------- wrk and wrk2

def test_a_whole_report_and_exit_0_is_fine():
    out = text("wrk/wrk_preforked_c20_latency.txt")  # 5.02 s
    assert judge_tools(spec(duration_s=5), [wrk_exit(0, out)]) == []
    wrk2 = text("wrk2/wrk2_preforked_c20_R1000_latency.txt")  # 12.00 s
    assert judge_tools(spec("wrk2", duration_s=12), [wrk_exit(0, wrk2, tool="wrk2")]) == []


def test_a_non_zero_exit_fails_with_the_tools_words_even_after_a_whole_report():
    out = text("wrk/wrk_preforked_c20_latency.txt")
    [problem] = judge_tools(spec(duration_s=5), [wrk_exit(1, out, "wrk: out of memory\n")])
    assert problem == "wrk exited with status 1: wrk: out of memory"


def test_a_refused_connection_names_the_exit_status_and_what_wrk_said():
    [problem] = judge_tools(spec(), [wrk_exit(1, "", text("wrk/wrk_refused.txt"))])
    assert problem == ("wrk exited with status 1: "
                       "unable to connect to 127.0.0.1:1 Connection refused")


def test_a_signal_we_did_not_send_fails_the_run():
    out = text("wrk/wrk_preforked_c20_latency.txt")
    [problem] = judge_tools(spec(duration_s=5), [wrk_exit(-signal.SIGSEGV, out)])
    assert problem.startswith("wrk was killed by SIGSEGV: ")
    assert "Transfer/sec" in problem  # its last lines
    # SIGINT is ours only when the agent sent it
    [problem] = judge_tools(spec(duration_s=5), [wrk_exit(-signal.SIGINT, out)])
    assert "killed by SIGINT (not sent by the agent)" in problem


@pytest.mark.parametrize("code", [0, -signal.SIGINT, -signal.SIGKILL, 128 + signal.SIGINT])
def test_the_end_we_asked_for_is_no_problem(code):
    out = text("wrk/wrk_sigint_after_2s.txt")  # stopped after 2 s of a 20 s run
    assert judge_tools(spec(duration_s=20), [wrk_exit(code, out)], stopped_by_us=True) == []


def test_after_our_sigint_other_failures_still_count():
    out = text("wrk/wrk_sigint_after_2s.txt")
    [segv] = judge_tools(spec(duration_s=20), [wrk_exit(-signal.SIGSEGV, out)], stopped_by_us=True)
    assert "killed by SIGSEGV" in segv
    [status] = judge_tools(spec(duration_s=20), [wrk_exit(3, out, "bad\n")], stopped_by_us=True)
    assert status == "wrk exited with status 3: bad"


def test_a_report_short_of_the_asked_duration_fails_when_we_did_not_stop_it():
    out = text("wrk/wrk_sigint_after_2s.txt")  # "3833 requests in 2.00s"
    [problem] = judge_tools(spec(duration_s=20), [wrk_exit(0, out)])
    assert problem == ("wrk stopped early: it reports 2.00 s of the 20 s asked "
                       "(at least 18 s expected)")
    assert judge_tools(spec(duration_s=3), [wrk_exit(0, out)]) == []  # 2 s of 3: within 1 s
    short = text("wrk2/wrk2_preforked_static_short_nolatency.txt")  # 4.00 s
    [problem] = judge_tools(spec("wrk2", duration_s=10), [wrk_exit(0, short, tool="wrk2")])
    assert problem.startswith("wrk2 stopped early: it reports 4.00 s of the 10 s asked")


def test_an_unparsable_wrk_output_is_left_to_the_caller():
    # exit 0 and no report: the parse error of the whole output (with the script line) says it
    assert judge_tools(spec(), [wrk_exit(0, "Running 5s test @ http://x/\n")]) == []


# ---------------------------------------------------------------- oha, one process per kind

def test_a_whole_oha_mix_is_fine():
    assert judge_tools(spec("oha", duration_s=2, mix=MIX3), oha_exits(oha_parts())) == []


def test_an_oha_kind_that_printed_nothing_is_named():
    parts = oha_parts()
    parts["guestbook_post"] = ""
    [problem] = judge_tools(spec("oha", duration_s=2, mix=MIX3), oha_exits(parts))
    assert problem == "oha guestbook_post printed nothing"


def test_an_oha_kind_that_printed_no_report_is_named_with_its_words():
    parts = oha_parts()
    parts["static"] = text("oha/oha_usage.txt")
    [problem] = judge_tools(spec("oha", duration_s=2, mix=MIX3), oha_exits(parts))
    assert problem.startswith("oha static printed no report: ")
    assert "unexpected argument '--bogus'" in problem
    parts = oha_parts()
    parts["guestbook_get"] = text("oha/oha_refused.json")
    [problem] = judge_tools(spec("oha", duration_s=2, mix=MIX3), oha_exits(parts))
    assert problem.startswith("oha guestbook_get printed no report: oha could not connect")


def test_an_oha_kind_that_exited_non_zero_is_named():
    parts = oha_parts()
    exits = oha_exits(parts, codes={"static": 2})
    exits[2].stderr = "error: too many open files\n"
    [problem] = judge_tools(spec("oha", duration_s=2, mix=MIX3), exits)
    assert problem == "oha static exited with status 2: error: too many open files"


def test_an_oha_kind_that_stopped_early_is_named():
    parts = oha_parts()
    parts["static"] = text("oha/oha_sigint.json")  # total 1.99 s
    problems = judge_tools(spec("oha", duration_s=20, mix=MIX3), oha_exits(parts))
    assert len(problems) == 3 and all("stopped early" in p for p in problems)
    assert problems[2].startswith("oha static stopped early: it reports 1.99 s of the 20 s")
    assert judge_tools(spec("oha", duration_s=20, mix=MIX3), oha_exits(parts),
                       stopped_by_us=True) == []


# ---------------------------------------------------------------- the whole raw output

def test_a_raw_mix_output_with_a_silent_kind_does_not_parse():
    raw = text("oha/oha_mix_3kinds_raw.txt")
    head = re.search(r"^# oha static:.*\n", raw, re.M)
    silent = raw[:head.end()]  # the static process printed nothing
    with pytest.raises(ParseError, match="^oha static printed no report$"):
        parse_output(silent, "oha")
    middle = re.search(r"^# oha guestbook_post:.*\n", raw, re.M)
    next_head = re.search(r"^# oha static:", raw, re.M)
    without_post = raw[:middle.end()] + raw[next_head.start():]
    with pytest.raises(ParseError, match="oha guestbook_post printed no report"):
        parse_output(without_post, "oha")


REFUSED = """Running 2s test @ http://127.0.0.1:9/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  0 requests in 2.10s, 0.00B read
  Socket errors: connect 0, read 0, write 54314, timeout 0
Requests/sec:      0.00
Transfer/sec:       0.00B
"""


def test_refused_connections_are_the_servers_not_the_tools():
    """A server whose queue is full refuses connections under load as a closed port does (a
    refused non-blocking connect shows as a write error): the run's figures say so, and the
    lab judges the server by them (lab/validity.py), not the tool's end."""
    assert judge_tools(spec(duration_s=2), [wrk_exit(0, REFUSED)]) == []
