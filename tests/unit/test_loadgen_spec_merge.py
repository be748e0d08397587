"""LoadSpec validation and splitting, command lines, the Lua script, and the histogram merge."""
import math

import pytest

from loadgen.lua import REPORT_ENV, percentile_levels, render_script
from loadgen.merge import latency_summary, merge_results
from loadgen.parse import empty_result
from loadgen.spec import LoadSpec, SpecError, divide
from loadgen.tools import build_commands, split_by_weight, wrk_threads
from loadgen.verify import visitor_count_step

from fixture_files import load  # tests/unit/fixture_files.py

URL = "http://server:8000"


def spec(**kw):
    base = {"tool": "wrk", "url": URL, "connections": 10, "threads": 2, "duration_s": 5}
    base.update(kw)
    return LoadSpec(**base)


# ---------------------------------------------------------------- LoadSpec

def test_round_trip_through_dict():
    s = spec(tool="oha", mode="open", rate=300, mix={"guestbook_get": 2, "static": 1})
    assert LoadSpec.from_dict(s.to_dict()) == s
    assert s.kinds() == ["guestbook_get", "static"]


@pytest.mark.parametrize("changes, field", [
    ({"tool": "ab"}, "tool"),
    ({"mode": "half-open"}, "mode"),
    ({"url": "server:8000"}, "url"),
    ({"url": "http://server:8000/guestbook"}, "url"),
    ({"connections": 0}, "connections"),
    ({"threads": 20}, "threads"),
    ({"duration_s": 0}, "duration_s"),
    ({"duration_s": 2.5}, "duration_s"),
    ({"timeout_s": -1}, "timeout_s"),
    ({"tool": "oha", "mode": "open"}, "rate"),
    ({"rate": 100}, "rate"),
    ({"mode": "open", "rate": 100}, "mode"),          # Debian's wrk has no rate
    ({"tool": "wrk2"}, "mode"),                       # wrk2 always needs a rate
    ({"mix": {"guestbook_get": 0}}, "mix"),
    ({"mix": {"guestbok_get": 1}}, "mix.guestbok_get"),
    ({"mix": {"static": -1}}, "mix.static"),
    ({"static_path": "index.html"}, "static_path"),
    ({"tool": "oha", "connections": 2, "threads": 1,
      "mix": {"guestbook_get": 1, "guestbook_post": 1, "static": 1}}, "connections"),
])
def test_validation_names_the_field(changes, field):
    with pytest.raises(SpecError) as err:
        spec(**changes)
    assert err.value.field == field
    assert str(err.value).startswith(field + ":")


def test_unknown_key_is_named():
    with pytest.raises(SpecError, match="conections: unknown field"):
        LoadSpec.from_dict({"tool": "wrk", "conections": 3})


def test_divide_gives_the_remainder_to_the_first():
    assert divide(10, 3) == [4, 3, 3]
    assert divide(2500, 2) == [1250, 1250]
    assert divide(7, 7) == [1] * 7


def test_split_divides_connections_and_rate():
    parts = spec(tool="wrk2", mode="open", connections=101, threads=4, rate=2003).split(3)
    assert [p.connections for p in parts] == [34, 34, 33]
    assert [p.rate for p in parts] == [668, 668, 667]
    assert sum(p.connections for p in parts) == 101 and sum(p.rate for p in parts) == 2003
    assert all(p.threads == 4 and p.duration_s == 5 and p.tool == "wrk2" for p in parts)


def test_split_keeps_threads_within_connections():
    parts = spec(connections=3, threads=2).split(2)
    assert [(p.connections, p.threads) for p in parts] == [(2, 2), (1, 1)]


def test_split_closed_mode_has_no_rate():
    assert all(p.rate is None for p in spec().split(4))


def test_split_refuses_more_generators_than_connections():
    with pytest.raises(SpecError, match="connections: 3 cannot be split over 4"):
        spec(connections=3, threads=1).split(4)
    with pytest.raises(SpecError) as err:
        spec(tool="oha", mode="open", connections=10, rate=2).split(3)
    assert err.value.field == "rate"


# ---------------------------------------------------------------- command lines

def test_wrk_command_line():
    [c] = build_commands(spec(connections=100, threads=2, duration_s=10, timeout_s=2),
                         "/usr/bin/wrk", "/tmp/mix.lua", "/tmp/report.json")
    assert c.argv == ["/usr/bin/wrk", "-t", "2", "-c", "100", "-d", "10s", "--timeout", "2s",
                      "--latency", "-s", "/tmp/mix.lua", "http://server:8000/"]
    assert c.env == {REPORT_ENV: "/tmp/report.json"}


def test_wrk2_command_line_has_rate_and_both_spectra():
    [c] = build_commands(spec(tool="wrk2", mode="open", rate=2500, connections=50, threads=2),
                         "/opt/wrk2", "/tmp/mix.lua", "/tmp/r.json")
    assert c.argv[:7] == ["/opt/wrk2", "-t", "2", "-c", "50", "-d", "5s"]
    assert c.argv[c.argv.index("-R") + 1] == "2500"
    assert "-U" in c.argv and "--latency" not in c.argv


def test_wrk_threads_divide_connections():
    assert wrk_threads(2, 100) == 2
    assert wrk_threads(4, 6) == 3     # 6 % 4 would drop two connections
    assert wrk_threads(2, 51) == 1
    assert wrk_threads(8, 3) == 3


def test_split_by_weight():
    assert split_by_weight(10, [2, 1, 1]) == [5, 3, 2]
    assert sum(split_by_weight(7, [1, 1, 1])) == 7
    assert split_by_weight(3, [100, 1, 1]) == [1, 1, 1]   # every kind keeps one
    assert split_by_weight(1000, [1]) == [1000]


def test_oha_runs_one_process_per_kind():
    s = spec(tool="oha", mode="open", rate=400, connections=8, threads=1,
             mix={"guestbook_get": 2, "guestbook_post": 1, "static": 1}, static_path="/a.png")
    cmds = build_commands(s, "/bin/oha")
    assert [c.kind for c in cmds] == ["guestbook_get", "guestbook_post", "static"]
    conns = [int(c.argv[c.argv.index("-c") + 1]) for c in cmds]
    rates = [int(c.argv[c.argv.index("-q") + 1]) for c in cmds]
    assert conns == [4, 2, 2] and rates == [200, 100, 100]
    assert all("--latency-correction" in c.argv and "--no-tui" in c.argv for c in cmds)
    assert cmds[0].argv[-1] == "http://server:8000/guestbook"
    post = cmds[1].argv
    assert post[post.index("-m") + 1] == "POST" and "guest-remarks=" in post[post.index("-d") + 1]
    assert cmds[2].argv[-1] == "http://server:8000/a.png"
    assert cmds[0].argv[cmds[0].argv.index("--output-format") + 1] == "json"


def test_oha_closed_mode_has_no_rate():
    [c] = build_commands(spec(tool="oha"), "/bin/oha")
    assert "-q" not in c.argv and "--latency-correction" not in c.argv


# ---------------------------------------------------------------- Lua script

def test_script_draws_by_weight_and_writes_a_report():
    lua = render_script(spec(mix={"guestbook_get": 2, "guestbook_post": 1, "static": 1},
                             static_path="/zerolab.png"))
    assert "if r < 0.5 then" in lua and "elseif r < 0.75 then" in lua
    assert 'wrk.format("GET", "/zerolab.png")' in lua
    assert "application/x-www-form-urlencoded" in lua and "guest-remarks=" in lua
    assert f"os.getenv('{REPORT_ENV}')" in lua and "latency:percentile(p)" in lua
    assert "t:get('n3')" in lua and "threads[1]:get('first')" in lua


def test_script_with_one_kind_does_not_draw():
    lua = render_script(spec())
    assert "math.random()" not in lua.split("function request()")[1].split("end")[0]


def test_percentile_levels_are_fine_and_include_the_reported_ones():
    levels = percentile_levels()
    assert levels[0] == 0 and levels[-1] == 100
    for p in (50, 75, 90, 99, 99.9, 99.99, 99.999):
        assert p in levels
    assert len(levels) > 60


# ---------------------------------------------------------------- merge

def _result(values_ms, count, mean, stdev=0.0, kinds=None):
    """A result whose latency samples all sit at values_ms[i] with count[i] samples each."""
    r = empty_result("wrk")
    total, rows, running = sum(count), [], 0
    for v, n in zip(values_ms, count):
        running += n
        rows.append([v, running / total, running])
    r.update(threads=1, connections=10, duration_s=10.0, requests=total,
             requests_per_sec=total / 10.0, bytes_read=total * 100,
             errors={"connect": 1, "read": 2, "write": 0, "timeout": 3}, non_2xx_3xx=4,
             requests_by_kind=kinds)
    r["latency"] = {"mean_ms": mean, "stdev_ms": stdev, "max_ms": max(values_ms),
                    "percentiles_ms": {}, "spectrum": rows}
    return r


def test_merge_by_hand():
    # 900 requests at 1 ms on one generator, 100 at 100 ms on the other.
    a = _result([1.0], [900], mean=1.0, kinds={"guestbook_get": 900})
    b = _result([100.0], [100], mean=100.0, kinds={"guestbook_get": 60, "static": 40})
    m = merge_results([a, b])
    assert m["requests"] == 1000 and m["requests_per_sec"] == 100.0
    assert m["bytes_read"] == 100_000 and m["non_2xx_3xx"] == 8
    assert m["errors"] == {"connect": 2, "read": 4, "write": 0, "timeout": 6}
    assert m["connections"] == 20 and m["threads"] == 2 and m["duration_s"] == 10.0
    assert m["requests_by_kind"] == {"guestbook_get": 960, "static": 40}
    lat = m["latency"]
    # rank 500 and rank 900 are 1 ms requests; rank 990 is a 100 ms one
    assert lat["percentiles_ms"]["50"] == 1.0 and lat["percentiles_ms"]["90"] == 1.0
    assert lat["percentiles_ms"]["99"] == 100.0 and lat["max_ms"] == 100.0
    # averaging the two p99s would have said 50.5 ms
    assert lat["mean_ms"] == pytest.approx(10.9)
    assert lat["stdev_ms"] == pytest.approx(math.sqrt(1000.9 - 10.9 ** 2))
    assert m["latency_ms"] == {"p50": 1.0, "p90": 1.0, "p99": 100.0, "p99_9": 100.0,
                               "max": 100.0, "mean": pytest.approx(10.9)}
    assert m["spectrum"][-1][1:] == [1.0, 1000]


def test_merge_of_a_fixture_with_itself_keeps_its_percentiles():
    r = load("wrk2/wrk2_preforked_c20_R1000_latency.txt")
    m = merge_results([r, r])
    assert m["requests"] == 2 * 11961
    assert m["requests_per_sec"] == pytest.approx(2 * 996.74)
    for key, printed in (("50", 2.047), ("90", 4.427), ("99", 11.647)):
        assert m["latency"]["percentiles_ms"][key] == pytest.approx(printed, rel=2e-3)
    assert m["latency"]["spectrum"][-1][2] == 3800
    assert m["latency"]["mean_ms"] == 2.491 and m["latency"]["max_ms"] == 20.496


def test_merge_with_a_dead_generator_and_uncorrected_latency():
    dead = load("wrk2/wrk2_iterative_c50_R2000_errors.txt")
    over = load("wrk2/wrk2_preforked_c100_R5000_overload_u_latency.txt")
    m = merge_results([dead, over])
    assert m["requests"] == 27872 and m["errors"]["timeout"] == 300
    assert m["latency"]["mean_ms"] == 5344.355   # the dead run recorded no latency
    assert m["uncorrected_latency"] is None      # only one of them printed it
    both = merge_results([over, over])
    assert both["uncorrected_latency"]["percentiles_ms"]["50"] == pytest.approx(36.479, rel=2e-3)


def test_merge_without_spectrum_uses_percentiles_and_max():
    r = load("wrk/wrk_preforked_c20_latency.txt")
    m = merge_results([r])
    assert m["latency"]["percentiles_ms"]["50"] == pytest.approx(10.58, rel=2e-3)
    assert m["latency"]["max_ms"] == 93.75


def test_latency_summary_of_nothing():
    assert latency_summary(None)["p99"] is None


# ---------------------------------------------------------------- verify helper

def test_visitor_count_step_finds_the_one_changed_number():
    page = '<p>{n} visitors</p><p class="guest-entry">remark 42 - ann</p><b>2024</b>'
    assert visitor_count_step(page.format(n="38,377"), page.format(n="38,378")) == 1
    assert visitor_count_step(page.format(n="999"), page.format(n="1,000")) == 1
    assert visitor_count_step(page.format(n="5"), page.format(n="5")) is None
    assert visitor_count_step(page.format(n="5"), page.format(n="7")) == 2
