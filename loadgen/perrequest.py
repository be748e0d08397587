"""Exact latency from oha's per-request file.

oha prints nine percentiles; with `--db-url FILE` it also writes every request that got an
answer (any status; not connection errors, timeouts or the requests cut off at the deadline:
the same requests its percentiles count) to an SQLite table `oha`:
    url TEXT, start REAL, start_latency_correction REAL (NULL without correction), end REAL,
    duration REAL, status INTEGER, len_bytes INTEGER, run INTEGER
in seconds from the run's start. `duration` is oha's latency: `end - start_latency_correction`
(the time the request was due) with `--latency-correction`, else `end - start`.

The file is read with SQLite doing the counting (rows are grouped by whole microseconds), so
the agent's memory stays bounded however many requests there were; the caller deletes it.
"""
import math
import sqlite3

from .merge import encode_histogram, new_histogram

TABLE = "oha"

# Latency in whole microseconds, rounded half up (the same in SQLite and in Python).
_US = "CAST({expr} * 1000000.0 + 0.5 AS INTEGER)"


def to_us(seconds):
    """A duration in seconds as the whole microseconds the histogram records."""
    return int(seconds * 1000000.0 + 0.5)


def _latency(conn, expr):
    """({"count", "mean_ms", "stdev_ms", "min_ms", "max_ms", "histogram"} of expr over the
    table, how many rows have a start_latency_correction)."""
    count, total, squares, low, high, corrected = conn.execute(
        f"SELECT COUNT(*), SUM({expr}), SUM(({expr}) * ({expr})), MIN({expr}), MAX({expr}), "
        f"COUNT(start_latency_correction) FROM {TABLE}").fetchone()
    if not count:
        return {"count": 0}, 0
    h = new_histogram()
    # one row per distinct microsecond value, streamed: a few thousand rows, not one per request
    for us, n in conn.execute(f"SELECT {_US.format(expr=expr)} AS us, COUNT(*) FROM {TABLE} "
                              f"GROUP BY us"):
        h.record_value(max(0, us), n)
    mean = total / count
    variance = max(0.0, squares / count - mean * mean)
    return {"count": count, "mean_ms": mean * 1000.0, "stdev_ms": math.sqrt(variance) * 1000.0,
            "min_ms": low * 1000.0, "max_ms": high * 1000.0,
            "histogram": encode_histogram(h)}, corrected


def read_oha_requests(path, kind=None):
    """What one oha process's per-request file says of its latency:
    {"kind", "count", "latency": {...}, "uncorrected_latency": {...} | None}
    (latency: the `duration` oha reports; uncorrected_latency, with --latency-correction only:
    `end - start`, from when each request was really sent). Raises sqlite3.Error for a file
    that is not oha's (or was cut short before its table was committed)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        latency, corrected = _latency(conn, "duration")
        uncorrected = _latency(conn, '("end" - start)')[0] if corrected else None
    finally:
        conn.close()
    return {"kind": kind, "count": latency["count"], "latency": latency,
            "uncorrected_latency": uncorrected}
