"""Merge the tool results of several generators into one.

Counts are summed. Latency percentiles come from one HdrHistogram built by adding each
generator's histogram: the full one it carries (`latency.histogram`, e.g. oha's built from every
request), else one rebuilt from its spectrum: percentiles of parts cannot be averaged into the
percentile of the whole.
"""
import math

from hdrh.histogram import HdrHistogram

from .parse import (ERROR_KINDS, LATENCY_SOURCES, MIXED_KIND, empty_result, percentile_key,
                    percentile_rows)

# Microsecond resolution, up to one hour, three significant digits (as wrk2 records).
LOWEST_US, HIGHEST_US, DIGITS = 1, 3_600_000_000, 3
REPORTED = (50, 75, 90, 99, 99.9, 99.99, 99.999)


def merge_results(results):
    """One tool result from the results of several generators (a list of tool result dicts),
    plus "generators", "latency_ms" (p50, p90, p99, p99_9, max, mean) and "spectrum"."""
    results = [r for r in results if r is not None]
    if not results:
        raise ValueError("no results to merge")
    tools = {r["tool"] for r in results}
    m = empty_result(tools.pop() if len(tools) == 1 else "+".join(sorted(tools)))
    m["generators"] = len(results)
    for key in ("threads", "connections"):
        values = [r.get(key) for r in results]
        m[key] = sum(values) if all(v is not None for v in values) else None
    m["duration_s"] = max((r["duration_s"] or 0.0) for r in results)
    for key in ("requests", "bytes_read", "non_2xx_3xx"):
        m[key] = sum(r.get(key) or 0 for r in results)
    # each generator's rate is over its own duration; the offered load is their sum
    m["requests_per_sec"] = sum(r.get("requests_per_sec") or 0.0 for r in results)
    m["errors"] = {k: sum((r.get("errors") or {}).get(k, 0) for r in results) for k in ERROR_KINDS}
    kinds = [r.get("requests_by_kind") for r in results]
    if all(k is not None for k in kinds):
        m["requests_by_kind"] = {}
        for k in kinds:
            for name, n in k.items():
                m["requests_by_kind"][name] = m["requests_by_kind"].get(name, 0) + n
    m["latency"] = merge_latency([(r.get("latency"), r["requests"]) for r in results])
    m["latency_source"] = weakest_source(r.get("latency_source") for r in results)
    kinds_of_latency = {r.get("latency_kind") for r in results} - {None}
    m["latency_kind"] = (kinds_of_latency.pop() if len(kinds_of_latency) == 1
                         else MIXED_KIND if kinds_of_latency else None)
    uncorrected = [(r.get("uncorrected_latency"), r["requests"]) for r in results]
    if all(u is not None for u, _ in uncorrected):
        m["uncorrected_latency"] = merge_latency(uncorrected)
    # what result.json records for a run: its summary figures and its merged spectrum
    m["latency_ms"] = latency_summary(m["latency"])
    m["spectrum"] = m["latency"]["spectrum"] if m["latency"] else None
    return m


def weakest_source(sources):
    """The least exact of some `latency_source` labels (None ones, of results without latency,
    left out): a merge is only as exact as its least exact part."""
    known = [s for s in sources if s is not None]
    if not known:
        return None
    rank = {s: i for i, s in enumerate(LATENCY_SOURCES)}  # most exact first
    return max(known, key=lambda s: rank.get(s, len(LATENCY_SOURCES)))


def new_histogram():
    """An empty histogram of microseconds as every merge uses."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def encode_histogram(h):
    """HdrHistogram's own compressed, base64 encoding (V2), as text: a few kB at most."""
    return h.encode().decode("ascii")


def decode_histogram(text):
    """The histogram encode_histogram wrote; ValueError when text is not one."""
    try:
        return HdrHistogram.decode(text.encode("ascii") if isinstance(text, str) else text)
    except Exception as exc:  # hdrh raises several kinds for a corrupt payload
        raise ValueError(f"not an encoded HdrHistogram: {exc}") from None


def latency_from_histogram(h, mean_ms=None, stdev_ms=None, max_ms=None, min_ms=None,
                           percentiles_ms=None):
    """A latency object from a full histogram: its spectrum and its encoding, the exact mean,
    stdev, max and min when known (else the histogram's), and percentiles_ms as given (e.g. what
    the tool printed) or read from the histogram at REPORTED."""
    top = max_ms if max_ms is not None else h.get_max_value() / 1000.0
    lat = {"mean_ms": mean_ms if mean_ms is not None else h.get_mean_value() / 1000.0,
           "stdev_ms": stdev_ms if stdev_ms is not None else h.get_stddev() / 1000.0,
           "max_ms": top,
           "percentiles_ms": percentiles_ms if percentiles_ms is not None
           else {percentile_key(p): min(top, h.get_value_at_percentile(p) / 1000.0)
                 for p in REPORTED},
           "spectrum": spectrum_of(h), "histogram": encode_histogram(h)}
    if min_ms is not None:
        lat["min_ms"] = min_ms
    return lat


def latency_summary(latency):
    """The `latency_ms` block of result.json from a latency object."""
    if latency is None:
        return {"p50": None, "p90": None, "p99": None, "p99_9": None, "max": None, "mean": None}
    pct = latency.get("percentiles_ms") or {}
    return {"p50": pct.get("50"), "p90": pct.get("90"), "p99": pct.get("99"),
            "p99_9": pct.get("99.9"), "max": latency.get("max_ms"), "mean": latency.get("mean_ms")}


def histogram_from_latency(latency, count_hint=0):
    """An HdrHistogram (microseconds) of a latency object: the full one it carries
    (`histogram`), else one rebuilt from its spectrum when it has one, else from its
    percentiles with count_hint samples. Each spectrum row's new counts are recorded at that
    row's value, as HdrHistogram's own percentile output reports them."""
    if latency and latency.get("histogram"):
        return decode_histogram(latency["histogram"])
    h = new_histogram()
    rows = spectrum_rows(latency, count_hint)
    previous = 0
    for value_ms, _, total in rows:
        n = total - previous
        if n > 0:
            h.record_value(_us(value_ms), n)
            previous = total
    return h


def spectrum_rows(latency, count_hint=0):
    if not latency:
        return []
    if latency.get("spectrum"):
        return latency["spectrum"]
    if not count_hint:
        return []
    points = [(value, float(key)) for key, value in
              sorted((latency.get("percentiles_ms") or {}).items(), key=lambda kv: float(kv[0]))
              if value is not None]
    return percentile_rows(points, count_hint, latency.get("max_ms"))


def _us(value_ms):
    return min(HIGHEST_US, max(0, int(round(value_ms * 1000.0))))


def merge_latency(parts):
    """One latency object from (latency, request count) pairs."""
    parts = [(lat, n) for lat, n in parts if lat is not None]
    if not parts:
        return None
    merged = new_histogram()
    weighted = []  # (samples, mean, stdev) for an exact pooled mean and stdev
    for lat, n in parts:
        h = histogram_from_latency(lat, n)
        merged.add(h)
        samples = h.get_total_count()
        if samples:
            weighted.append((samples, lat.get("mean_ms"), lat.get("stdev_ms")))
    total = merged.get_total_count()
    if total == 0:
        return {"mean_ms": None, "stdev_ms": None,
                "max_ms": max((lat.get("max_ms") or 0.0) for lat, _ in parts),
                "percentiles_ms": {}, "spectrum": None}
    mean, stdev = _pooled(weighted)
    if mean is None:
        mean = merged.get_mean_value() / 1000.0
    if stdev is None:
        stdev = merged.get_stddev() / 1000.0
    maxima = [lat.get("max_ms") for lat, _ in parts if lat.get("max_ms") is not None]
    top = max(maxima) if maxima else merged.get_max_value() / 1000.0
    # a bucket's upper bound can pass the largest value recorded; no sample lies above it
    return {"mean_ms": mean, "stdev_ms": stdev, "max_ms": top,
            "percentiles_ms": {percentile_key(p): min(top, merged.get_value_at_percentile(p) / 1000.0)
                               for p in REPORTED},
            "spectrum": spectrum_of(merged), "histogram": encode_histogram(merged)}


def _pooled(weighted):
    """Mean and stdev of the union of groups, from each group's size, mean and stdev."""
    if not weighted or any(m is None for _, m, _ in weighted):
        return None, None
    n = sum(c for c, _, _ in weighted)
    mean = sum(c * m for c, m, _ in weighted) / n
    if any(s is None for _, _, s in weighted):
        return mean, None
    second = sum(c * (s * s + m * m) for c, m, s in weighted) / n
    return mean, math.sqrt(max(0.0, second - mean * mean))


def spectrum_of(h, ticks_per_half_distance=5):
    """[[value_ms, percentile (0..1), total_count], ...] as wrk2 prints it."""
    rows = []
    for item in h.get_percentile_iterator(ticks_per_half_distance):
        rows.append([item.value_iterated_to / 1000.0,
                     item.percentile_level_iterated_to / 100.0,
                     item.total_count_to_this_value])
    return rows
