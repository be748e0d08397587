"""The parsers on every recorded output of wrk2, Debian's wrk and oha (tests/fixtures/)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadgen.parse import (ParseError, byte_count, guess_tool, metric, parse_output,
                           percentile_key, time_ms)

from fixture_files import FIXTURES, load  # tests/unit/fixture_files.py

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("token, ms", [
    ("2.49ms", 2.49), ("827.91us", 0.82791), ("5.33s", 5330.0), ("1.50m", 90_000.0),
    ("0.00us", 0.0), ("1h", 3_600_000.0)])
def test_time_units(token, ms):
    assert time_ms(token) == pytest.approx(ms)


def test_nan_is_none():
    assert time_ms("-nanus") is None
    assert metric("-nan") is None


@pytest.mark.parametrize("token, value", [("1.92k", 1920), ("293.77", 293.77), ("2.5M", 2.5e6)])
def test_metric_counts(token, value):
    assert metric(token) == pytest.approx(value)


@pytest.mark.parametrize("token, value", [
    ("0.00B", 0), ("340.08KB", round(340.08 * 1024)), ("27.24MB", round(27.24 * 1024 ** 2)),
    ("1.50GB", round(1.5 * 1024 ** 3))])
def test_byte_units_are_binary(token, value):
    assert byte_count(token) == value


def test_percentile_keys():
    assert [percentile_key(p) for p in ("50.000", "99.900", "99.990", "100.000", "75")] == \
        ["50", "99.9", "99.99", "100", "75"]


def test_wrk2_calibrated_run_with_spectrum():
    r = load("wrk2/wrk2_preforked_c20_R1000_latency.txt")
    assert r["tool"] == "wrk2"
    assert (r["threads"], r["connections"]) == (1, 20)
    assert r["requests"] == 11961 and r["duration_s"] == 12.0
    assert r["requests_per_sec"] == 996.74
    assert r["bytes_read"] == round(33.92 * 1024 ** 2)
    assert r["transfer_per_sec_bytes"] == round(2.83 * 1024 ** 2)
    assert r["errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    assert r["non_2xx_3xx"] == 0
    assert r["calibration"] == [{"mean_latency_ms": 2.625, "rate_sampling_interval_ms": 10}]
    lat = r["latency"]
    assert lat["mean_ms"] == 2.491 and lat["stdev_ms"] == 2.014 and lat["max_ms"] == 20.496
    assert lat["percentiles_ms"] == {"50": 2.05, "75": 2.87, "90": 4.43, "99": 11.59, "99.9": 16.14,
                                     "99.99": 20.51, "99.999": 20.51, "100": 20.51}
    assert len(lat["spectrum"]) == 57
    assert lat["spectrum"][0] == [0.405, 0.0, 1]
    assert lat["spectrum"][-1] == [20.511, 1.0, 1900]  # latency counts only after calibration
    assert r["thread_stats"]["req_per_sec"] == {"avg": 1060.0, "stdev": 177.65, "max": 2200.0,
                                                "within_stdev_pct": 83.24}
    assert r["uncorrected_latency"] is None


def test_wrk2_overload_has_corrected_and_uncorrected_spectra():
    r = load("wrk2/wrk2_preforked_c100_R5000_overload_u_latency.txt")
    assert (r["threads"], r["connections"], r["requests"]) == (2, 100, 27872)
    assert len(r["calibration"]) == 2
    assert r["calibration"][1] == {"mean_latency_ms": 2541.904, "rate_sampling_interval_ms": 8691}
    c, u = r["latency"], r["uncorrected_latency"]
    assert c["percentiles_ms"]["50"] == 5330.0  # "5.33s " with a trailing space
    assert c["mean_ms"] == 5344.355 and c["max_ms"] == 7315.456
    assert c["spectrum"][-1] == [7319.551, 1.0, 4071]
    assert u["percentiles_ms"]["99"] == 105.28
    assert u["mean_ms"] == 35.67 and u["stdev_ms"] == 24.883 and u["max_ms"] == 161.28
    assert u["spectrum"][0] == [0.331, 0.0, 1] and u["spectrum"][-1] == [161.407, 1.0, 4071]
    assert r["thread_stats"]["req_per_sec"]["avg"] is None  # "-nan"
    assert r["thread_stats"]["latency_ms"]["avg"] == 5340.0


def test_wrk2_run_where_every_connection_died():
    r = load("wrk2/wrk2_iterative_c50_R2000_errors.txt")
    assert r["requests"] == 0 and r["requests_per_sec"] == 0.0 and r["bytes_read"] == 0
    assert r["errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 300}
    assert r["duration_s"] == 12.26
    assert r["latency"]["mean_ms"] is None and r["latency"]["stdev_ms"] is None
    assert r["latency"]["max_ms"] == 0.0
    assert r["latency"]["spectrum"] == [[0.0, 1.0, 0]]
    assert r["calibration"][0]["mean_latency_ms"] == pytest.approx(9223372036854776.0)


def test_wrk2_short_run_without_latency_flags():
    r = load("wrk2/wrk2_preforked_static_short_nolatency.txt", "wrk2")
    assert r["tool"] == "wrk2"
    assert (r["threads"], r["connections"], r["requests"]) == (1, 10, 1993)
    assert r["bytes_read"] == round(1.33 * 1024 ** 2)
    assert r["transfer_per_sec_bytes"] == round(340.08 * 1024)
    assert r["latency"] == {"mean_ms": 1.47, "stdev_ms": 1.12, "max_ms": 17.65,
                            "percentiles_ms": {}, "spectrum": None}
    assert r["calibration"] is None


def test_debian_wrk_latency_distribution():
    r = load("wrk/wrk_preforked_c20_latency.txt")
    assert r["tool"] == "wrk"
    assert (r["threads"], r["connections"], r["requests"]) == (1, 20, 9600)
    assert r["duration_s"] == 5.02 and r["requests_per_sec"] == 1911.39
    assert r["bytes_read"] == round(27.24 * 1024 ** 2)
    assert r["latency"]["percentiles_ms"] == {"50": 10.58, "75": 16.1, "90": 21.98, "99": 38.35}
    assert r["latency"]["spectrum"] is None
    assert r["thread_stats"]["req_per_sec"]["avg"] == 1920.0


def test_debian_wrk_non_2xx():
    r = load("wrk/wrk_static_404_latency.txt")
    assert r["requests"] == 4834 and r["non_2xx_3xx"] == 4834
    assert r["bytes_read"] == round(783.78 * 1024)
    assert r["latency"]["percentiles_ms"]["50"] == pytest.approx(0.786)


def test_debian_wrk_stopped_early_still_reports():
    r = load("wrk/wrk_sigint_after_2s.txt")
    assert r["duration_s"] == 2.0 and r["requests"] == 3833 and r["threads"] == 2


def test_wrk_socket_errors_line():
    text = (FIXTURES / "wrk/wrk_preforked_c20_latency.txt").read_text().replace(
        "Requests/sec:", "  Socket errors: connect 3, read 1,200, write 0, timeout 7\nRequests/sec:"
    ).replace("read 1,200", "read 1200")
    r = parse_output(text)
    assert r["errors"] == {"connect": 3, "read": 1200, "write": 0, "timeout": 7}


def test_script_report_line_adds_kinds_and_fine_percentiles():
    report = {"requests_by_kind": {"guestbook_get": 6000, "static": 3601},
              "latency": {"min": 500, "max": 93750, "mean": 11090.5, "stdev": 9180.25,
                          "percentiles": [[0, 500], [50, 10580], [90, 21980], [99, 38350],
                                          [99.9, 61000], [99.99, 90000], [100, 0]]},
              "summary": {"duration_us": 5020000, "requests": 9600}}
    text = (FIXTURES / "wrk/wrk_preforked_c20_latency.txt").read_text()
    r = parse_output(text + "# loadgen script report: " + json.dumps(report) + "\n")
    assert r["requests_by_kind"] == {"guestbook_get": 6000, "static": 3601}
    lat = r["latency"]
    assert lat["mean_ms"] == pytest.approx(11.0905) and lat["max_ms"] == 93.75
    assert lat["percentiles_ms"]["99.9"] == 61.0 and lat["percentiles_ms"]["75"] == 16.1
    # percentile(100) answers 0 in Debian's wrk: the max closes the spectrum instead
    assert lat["spectrum"][-1] == [93.75, 1.0, 9600]
    assert lat["spectrum"][1] == [10.58, 0.5, 4800]


def test_oha_closed_run():
    r = load("oha/oha_closed.json")
    assert r["tool"] == "oha"
    assert r["requests"] == 2800 and r["bytes_read"] == 135098
    assert r["requests_per_sec"] == pytest.approx(2800 / 2.001069487)
    assert r["aborted_at_deadline"] == 4
    assert r["errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    lat = r["latency"]
    assert lat["percentiles_ms"]["50"] == pytest.approx(2.71552)
    assert lat["percentiles_ms"]["99.9"] == pytest.approx(12.81812)
    assert lat["max_ms"] == pytest.approx(15.683079)
    assert lat["spectrum"][-1][1:] == [1.0, 2800]


def test_oha_open_run_and_non_2xx():
    assert load("oha/oha_open.json")["requests"] == 1200
    r = load("oha/oha_404.json")
    assert r["requests"] == 4050 and r["non_2xx_3xx"] == 4050 and r["status_codes"] == {"404": 4050}


def test_oha_mix_of_three_processes_merges_with_kinds():
    r = load("oha/oha_mix_3kinds_raw.txt")
    assert r["tool"] == "oha" and r["generators"] == 3
    assert r["requests_by_kind"] == {"guestbook_get": 572, "guestbook_post": 380, "static": 452}
    assert r["requests"] == 1400


@pytest.mark.parametrize("name, tool, message", [
    ("wrk/wrk_refused.txt", None, "could not connect to 127.0.0.1:1: Connection refused"),
    ("wrk/wrk_version.txt", None, "usage text"),
    ("wrk2/wrk2_version.txt", None, "usage text"),
    ("wrk2/wrk2_no_rate.txt", None, "Throughput MUST be specified"),
    ("oha/oha_refused.json", None, "oha could not connect: Connection refused"),
    ("oha/oha_usage.txt", None, "unexpected argument '--bogus'"),
])
def test_not_a_report_says_what_the_tool_reported(name, tool, message):
    with pytest.raises(ParseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(name, tool)


@pytest.mark.parametrize("text, message", [
    ("", "printed nothing"),
    ("hello world\nthis is not wrk\n", "not a wrk report"),
    ("Running 10s test @ http://x/\n  2 threads and 10 connections\n", "incomplete wrk report"),
])
def test_garbage_and_truncated_output(text, message):
    with pytest.raises(ParseError, match=message):
        parse_output(text)


def test_guess_tool():
    assert guess_tool((FIXTURES / "wrk2/wrk2_preforked_c20_R1000_latency.txt").read_text()) == "wrk2"
    assert guess_tool((FIXTURES / "wrk/wrk_preforked_c20_latency.txt").read_text()) == "wrk"
    assert guess_tool((FIXTURES / "oha/oha_closed.json").read_text()) == "oha"


def test_cli_prints_the_result_json():
    out = subprocess.run([sys.executable, "-m", "loadgen", "parse",
                          str(FIXTURES / "wrk2/wrk2_preforked_c20_R1000_latency.txt")],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["requests"] == 11961 and r["latency"]["percentiles_ms"]["99.9"] == 16.14


def test_cli_fails_with_the_tools_message():
    out = subprocess.run([sys.executable, "-m", "loadgen", "parse",
                          str(FIXTURES / "wrk/wrk_refused.txt")],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "Connection refused" in out.stderr and out.stdout == ""


def test_cli_names_a_file_it_cannot_read(tmp_path):
    missing = tmp_path / "no-such-output.txt"
    out = subprocess.run([sys.executable, "-m", "loadgen", "parse", str(missing)],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert str(missing) in out.stderr and "Traceback" not in out.stderr
