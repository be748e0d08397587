"""Exact latency from every request (loadgen.perrequest), how each result labels its latency
(latency_source, latency_kind), and merges through full histograms."""
import json
import math
import random
import sqlite3

import pytest

from loadgen.merge import (decode_histogram, encode_histogram, merge_results, new_histogram,
                           weakest_source)
from loadgen.parse import (CLOSED_LOOP, HISTOGRAM, MIXED_KIND, OPEN_LOOP, PER_REQUEST,
                           PER_REQUEST_PREFIX, PRINTED, parse_output)
from loadgen.perrequest import read_oha_requests, to_us

from fixture_files import FIXTURES, load  # tests/unit/fixture_files.py

# oha 1.16's table, as `oha --db-url FILE` creates it
OHA_SCHEMA = """CREATE TABLE oha (
    url TEXT NOT NULL, start REAL NOT NULL, start_latency_correction REAL, end REAL NOT NULL,
    duration REAL NOT NULL, status INTEGER NOT NULL, len_bytes INTEGER NOT NULL,
    run INTEGER NOT NULL)"""


def oha_file(path, durations, corrected_by=None):
    """A per-request file as oha writes it, one row per latency (seconds), and the `duration`
    column it holds. With corrected_by, each request was due that much (seconds) before it was
    sent, and its latency counts from when it was due."""
    conn = sqlite3.connect(path)
    conn.execute(OHA_SCHEMA)
    rows = []
    for i, latency in enumerate(durations):
        due = i * 0.001
        start = due + (corrected_by[i] if corrected_by else 0.0)
        end = due + latency
        rows.append((start, due if corrected_by else None, end,
                     end - due if corrected_by else end - start))
    conn.executemany("INSERT INTO oha VALUES ('/', ?, ?, ?, ?, 200, 48, 7)", rows)
    conn.commit()
    conn.close()
    return [r[3] for r in rows]


def direct_percentile(durations_s, p):
    """What the merge reports for percentile p of these durations: an HdrHistogram of the same
    precision (whole microseconds, 3 digits), read at p, no higher than the largest value."""
    h = new_histogram()
    for d in durations_s:
        h.record_value(to_us(d))
    return min(max(durations_s) * 1000.0, h.get_value_at_percentile(p) / 1000.0)


def lognormal(n, seed, mu=-6.5, sigma=0.8):
    rnd = random.Random(seed)
    return [rnd.lognormvariate(mu, sigma) for _ in range(n)]


def oha_raw(kind, doc, per_request, args="-z 2s -c 2"):
    return (f"# oha {kind}: --no-tui --output-format json {args} http://x/\n"
            + json.dumps(doc) + "\nStoring results to /tmp/x.db\n"
            + PER_REQUEST_PREFIX + json.dumps(per_request) + "\n")


def fixture_doc(name="oha_closed.json"):
    return json.loads((FIXTURES / "oha" / name).read_text())


# ---------------------------------------------------------------- reading oha's file

def test_the_file_gives_exact_count_mean_stdev_and_extremes(tmp_path):
    durations = oha_file(tmp_path / "a.db", lognormal(3000, 1))
    got = read_oha_requests(tmp_path / "a.db", "static")
    assert got["kind"] == "static" and got["count"] == 3000
    lat = got["latency"]
    mean = sum(durations) / len(durations)
    assert lat["mean_ms"] == pytest.approx(mean * 1000, rel=1e-9)
    assert lat["stdev_ms"] == pytest.approx(
        math.sqrt(sum((d - mean) ** 2 for d in durations) / len(durations)) * 1000, rel=1e-6)
    assert lat["max_ms"] == max(durations) * 1000 and lat["min_ms"] == min(durations) * 1000
    h = decode_histogram(lat["histogram"])
    assert h.get_total_count() == 3000
    for p in (50, 90, 99, 99.9):
        assert h.get_value_at_percentile(p) / 1000 >= direct_percentile(durations, p) - 1e-9
    assert got["uncorrected_latency"] is None  # no latency correction: no second figure


def test_with_latency_correction_the_uncorrected_latency_comes_from_the_send_time(tmp_path):
    durations = lognormal(500, 2)
    late = [0.010 if i % 10 == 0 else 0.0 for i in range(500)]  # one request in ten sent late
    oha_file(tmp_path / "c.db", durations, corrected_by=late)
    got = read_oha_requests(tmp_path / "c.db")
    assert got["latency"]["mean_ms"] == pytest.approx(sum(durations) / 500 * 1000, rel=1e-9)
    sent = [d - l for d, l in zip(durations, late)]
    assert got["uncorrected_latency"]["count"] == 500
    assert got["uncorrected_latency"]["mean_ms"] == pytest.approx(sum(sent) / 500 * 1000, rel=1e-9)


def test_an_empty_or_foreign_file(tmp_path):
    conn = sqlite3.connect(tmp_path / "empty.db")
    conn.execute(OHA_SCHEMA)
    conn.close()
    assert read_oha_requests(tmp_path / "empty.db")["count"] == 0
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    with pytest.raises(sqlite3.Error):
        read_oha_requests(tmp_path / "junk.db")


# ---------------------------------------------------------------- parsing the raw output

def test_oha_with_its_per_request_line_has_exact_latency(tmp_path):
    doc = fixture_doc()  # 2800 answers
    durations = oha_file(tmp_path / "a.db", lognormal(2800, 3))
    per_request = read_oha_requests(tmp_path / "a.db", "static")
    r = parse_output(oha_raw("static", doc, per_request), "oha")
    assert r["latency_source"] == PER_REQUEST and r["latency_kind"] == CLOSED_LOOP
    assert r["requests"] == 2800
    lat = r["latency"]
    assert lat["percentiles_ms"]["50"] == pytest.approx(2.71552)  # what oha printed is kept
    assert lat["histogram"] and len(lat["spectrum"]) > 20
    assert lat["stdev_ms"] == per_request["latency"]["stdev_ms"]  # oha prints none
    m = merge_results([r])
    for key, p in (("50", 50), ("90", 90), ("99", 99), ("99.9", 99.9), ("99.99", 99.99)):
        assert m["latency"]["percentiles_ms"][key] == direct_percentile(durations, p)
    assert m["latency_source"] == PER_REQUEST and m["latency_kind"] == CLOSED_LOOP


def test_a_per_request_line_that_does_not_match_the_report_is_not_used(tmp_path):
    doc = fixture_doc()
    oha_file(tmp_path / "a.db", lognormal(100, 4))  # 100 rows, the report says 2800
    per_request = read_oha_requests(tmp_path / "a.db", "static")
    r = parse_output(oha_raw("static", doc, per_request), "oha")
    assert r["latency_source"] == PRINTED and "histogram" not in r["latency"]
    damaged = dict(per_request, count=2800, latency=dict(per_request["latency"], histogram="!!"))
    r = parse_output(oha_raw("static", doc, damaged), "oha")
    assert r["latency_source"] == PRINTED
    other_kind = dict(per_request, kind="guestbook_get", count=2800)
    assert parse_output(oha_raw("static", doc, other_kind), "oha")["latency_source"] == PRINTED
    garbled = oha_raw("static", doc, per_request).replace(PER_REQUEST_PREFIX + "{",
                                                          PER_REQUEST_PREFIX + "{{")
    assert parse_output(garbled, "oha")["requests"] == 2800


def test_an_open_oha_mix_is_corrected_and_merges_exactly(tmp_path):
    doc = fixture_doc("oha_open.json")  # 1200 answers
    raw, everything = "", []
    args = "-z 3s -c 2 -q 200 --latency-correction"
    for i, kind in enumerate(("guestbook_get", "static")):
        durations = lognormal(1200, 10 + i, mu=-7 + 2 * i)  # static much slower
        oha_file(tmp_path / f"{kind}.db", durations, corrected_by=[0.0] * 1200)
        everything += durations
        raw += oha_raw(kind, doc, read_oha_requests(tmp_path / f"{kind}.db", kind), args)
    r = parse_output(raw, "oha")
    assert r["latency_source"] == PER_REQUEST and r["latency_kind"] == OPEN_LOOP
    assert r["requests_by_kind"] == {"guestbook_get": 1200, "static": 1200}
    for key, p in (("50", 50), ("90", 90), ("99", 99), ("99.9", 99.9)):
        assert r["latency"]["percentiles_ms"][key] == direct_percentile(everything, p)
    assert r["uncorrected_latency"] is not None
    # the merged result carries its histogram: merging it again loses nothing
    again = merge_results([r, r])
    assert decode_histogram(again["latency"]["histogram"]).get_total_count() == 2 * 2400
    assert again["latency"]["percentiles_ms"] == r["latency"]["percentiles_ms"]


# ---------------------------------------------------------------- labels

@pytest.mark.parametrize("name, tool, source, kind", [
    ("wrk2/wrk2_preforked_c20_R1000_latency.txt", None, HISTOGRAM, OPEN_LOOP),
    ("wrk/wrk_preforked_c20_latency.txt", None, PRINTED, CLOSED_LOOP),  # no script report
    ("oha/oha_closed.json", None, PRINTED, CLOSED_LOOP),
    ("oha/oha_mix_3kinds_raw.txt", None, PRINTED, CLOSED_LOOP),
    # only a mean and a max, no distribution at all
    ("wrk2/wrk2_preforked_static_short_nolatency.txt", "wrk2", None, OPEN_LOOP),
])
def test_every_result_says_how_its_latency_was_measured(name, tool, source, kind):
    r = load(name, tool)
    assert (r["latency_source"], r["latency_kind"]) == (source, kind)


def test_debian_wrk_with_its_script_report_has_the_histogram():
    text = (FIXTURES / "wrk/wrk_preforked_c20_latency.txt").read_text()
    script = {"requests_by_kind": {"guestbook_get": 10},
              "latency": {"min": 100, "max": 93750, "mean": 10000, "stdev": 5000,
                          "percentiles": [[50, 10580], [99, 50000], [100, 0]]}}
    r = parse_output(text + "# loadgen script report: " + json.dumps(script) + "\n", "wrk")
    assert (r["latency_source"], r["latency_kind"]) == (HISTOGRAM, CLOSED_LOOP)


def test_the_merge_is_as_exact_as_its_least_exact_part():
    assert weakest_source([PER_REQUEST, HISTOGRAM]) == HISTOGRAM
    assert weakest_source([PER_REQUEST, PRINTED, HISTOGRAM]) == PRINTED
    assert weakest_source([None, PER_REQUEST]) == PER_REQUEST  # a generator without latency
    assert weakest_source([None]) is None
    wrk2 = load("wrk2/wrk2_preforked_c20_R1000_latency.txt")
    oha = load("oha/oha_open.json")
    m = merge_results([wrk2, wrk2])
    assert (m["latency_source"], m["latency_kind"]) == (HISTOGRAM, OPEN_LOOP)
    m = merge_results([wrk2, oha])  # oha without correction in its header: closed
    assert (m["latency_source"], m["latency_kind"]) == (PRINTED, MIXED_KIND)


def test_histogram_encoding_round_trips():
    h = new_histogram()
    for v in (1, 50, 1000, 123456):
        h.record_value(v, 3)
    back = decode_histogram(encode_histogram(h))
    assert back.get_total_count() == 12 and back.get_max_value() == h.get_max_value()
    with pytest.raises(ValueError):
        decode_histogram("not a histogram")
