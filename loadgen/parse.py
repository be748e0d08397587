"""Turn what wrk2, Debian's wrk and oha print into one tool result (docs/architecture.md).

Every figure the tools print is kept. Output that is not a report raises ParseError whose
message says what the tool reported instead.
"""
import json
import math
import re

ERROR_KINDS = ("connect", "read", "write", "timeout")
# A line the wrapper appends to wrk/wrk2 output: the JSON the generated Lua script's done() wrote.
SCRIPT_REPORT_PREFIX = "# loadgen script report: "
# A line the wrapper writes before each oha process's JSON (one process per request kind).
OHA_HEADER = re.compile(r"^# oha (?P<kind>\w+):", re.M)
# A line the agent appends after an oha process's output: its latency from every request
# (loadgen.perrequest).
PER_REQUEST_PREFIX = "# loadgen per-request latency: "

# How a result's latency was measured (`latency_source`), the most exact first: from every
# request; from the tool's own histogram (wrk2's printed spectrum, Debian wrk's read by the
# script at fine percentiles); rebuilt from the few percentiles the tool printed.
PER_REQUEST, HISTOGRAM, PRINTED = LATENCY_SOURCES = (
    "per-request", "histogram", "reconstructed from printed percentiles")
# Whether it is the latency of a closed loop, or of an open loop measured from when each
# request was due (wrk2, oha -q --latency-correction) (`latency_kind`).
CLOSED_LOOP, OPEN_LOOP = "closed-loop", "open-loop corrected"
MIXED_KIND = "mixed"  # a merge of both kinds


class ParseError(ValueError):
    """The text is not a tool report; the message says what the tool printed instead."""


def parse_output(text, tool=None):
    """The tool result of a raw output. tool is 'wrk', 'wrk2' or 'oha', or None to guess it."""
    if tool not in (None, "wrk", "wrk2", "oha"):
        raise ValueError(f"unknown tool {tool!r}")
    if tool is None:
        tool = guess_tool(text)
    return parse_oha(text) if tool == "oha" else parse_wrk(text, tool)


def guess_tool(text):
    stripped = "\n".join(l for l in text.splitlines() if not OHA_HEADER.match(l)).lstrip()
    if stripped.startswith("{") or "Usage: oha" in text:
        return "oha"
    if "HdrHistogram" in text or "Thread calibration" in text or "Throughput MUST" in text \
            or re.search(r"^wrk 4\.0\.0 ", text, re.M):
        return "wrk2"
    return "wrk"


def empty_result(tool):
    return {"tool": tool, "threads": None, "connections": None, "duration_s": None,
            "requests": 0, "requests_per_sec": 0.0, "bytes_read": 0,
            "errors": dict.fromkeys(ERROR_KINDS, 0), "non_2xx_3xx": 0,
            "latency": None, "uncorrected_latency": None, "requests_by_kind": None,
            "latency_source": None, "latency_kind": None}


def _source_of(latency):
    """HISTOGRAM when a latency object has a spectrum, PRINTED with percentiles only, None
    without either."""
    if not latency:
        return None
    if latency.get("spectrum"):
        return HISTOGRAM
    return PRINTED if any(v is not None for v in (latency.get("percentiles_ms") or {}).values()) \
        else None


def _not_a_report(text, tool):
    """The message for output that holds no report."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    if not lines:
        return f"{tool} printed nothing (killed before its report, or not started)"
    m = re.search(r"unable to connect to (\S+) (.+)", text)
    if m:
        return f"{tool} could not connect to {m.group(1)}: {m.group(2).strip()}"
    m = re.search(r"Throughput MUST be specified.*", text)
    if m:
        return f"wrk2 was started without a rate: {m.group(0).strip()}"
    if re.search(r"^\s*Usage: (wrk|oha)", text, re.M):
        first = lines[0]
        return f"{tool} printed its usage text instead of a report (bad command line): {first}"
    if re.search(r"^\s*error: ", text, re.M):
        return f"{tool} failed: {next(l for l in lines if l.startswith('error: '))}"
    head = " | ".join(lines[:2])
    return f"not a {tool} report; the output starts with: {head[:200]!r}"


# ---------------------------------------------------------------- wrk and wrk2 (text)

_TIME_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_METRIC = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}
_BINARY = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


def time_ms(token):
    """'2.49ms' -> 2.49, '5.33s' -> 5330.0, '-nanus' -> None."""
    m = re.fullmatch(r"(-?nan|-?[\d.]+)(us|ms|s|m|h)", token.strip())
    if not m:
        raise ParseError(f"not a time: {token!r}")
    return None if "nan" in m.group(1) else float(m.group(1)) * _TIME_MS[m.group(2)]


def metric(token):
    """'1.92k' -> 1920.0, '293.77' -> 293.77, '-nan' -> None."""
    m = re.fullmatch(r"(-?nan|-?[\d.]+)([kMG]?)", token.strip())
    if not m:
        raise ParseError(f"not a number: {token!r}")
    return None if "nan" in m.group(1) else float(m.group(1)) * _METRIC[m.group(2)]


def byte_count(token):
    """'27.24MB' -> bytes (wrk's units are powers of 1024)."""
    m = re.fullmatch(r"([\d.]+)(B|KB|MB|GB|TB)", token.strip())
    if not m:
        raise ParseError(f"not a byte count: {token!r}")
    return int(round(float(m.group(1)) * _BINARY[m.group(2)]))


def _nan_float(token):
    return None if "nan" in token else float(token)


def percentile_key(p):
    """50.0 -> '50', 99.9 -> '99.9': the keys of percentiles_ms."""
    return f"{float(p):.6f}".rstrip("0").rstrip(".")


def percentile_rows(points, count, max_ms=None):
    """Spectrum rows [value_ms, p/100, ceil(count*p/100)] from (value_ms, p in percent) points,
    then [max_ms, 1.0, count] when max_ms is given."""
    rows = [[value_ms, p / 100.0, int(math.ceil(count * p / 100.0))] for value_ms, p in points]
    if max_ms is not None:
        rows.append([max_ms, 1.0, count])
    return rows


_RE = {
    "running": re.compile(r"^Running (\S+) test @ (\S+)"),
    "threads": re.compile(r"^\s*(\d+) threads and (\d+) connections"),
    "calibration": re.compile(r"Thread calibration: mean lat\.: ([-\w.]+)ms, "
                              r"rate sampling interval: (\d+)ms"),
    "stat": re.compile(r"^\s*(Latency|Req/Sec)\s+(\S+)\s+(\S+)\s+(\S+)\s+([-\w.]+)%"),
    "dist": re.compile(r"^\s*Latency Distribution(.*)$"),
    "pct": re.compile(r"^\s*([\d.]+)%\s+(\S+)\s*$"),
    "spectrum": re.compile(r"^\s*([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\S+)\s*$"),
    "mean": re.compile(r"^#\[Mean\s*=\s*(\S+), StdDeviation\s*=\s*(\S+)\]"),
    "max": re.compile(r"^#\[Max\s*=\s*(\S+), Total count\s*=\s*(\d+)\]"),
    "buckets": re.compile(r"^#\[Buckets\s*=\s*(\d+), SubBuckets\s*=\s*(\d+)\]"),
    "summary": re.compile(r"^\s*(\d+) requests in (\S+), (\S+) read"),
    "socket": re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"),
    "non2xx": re.compile(r"Non-2xx or 3xx responses: (\d+)"),
    "rps": re.compile(r"^Requests/sec:\s+([-\w.]+)"),
    "transfer": re.compile(r"^Transfer/sec:\s+(\S+)"),
}


def parse_wrk(text, tool="wrk"):
    """The tool result of wrk2's or Debian wrk's report (plus an optional script report line)."""
    r = empty_result(tool)
    blocks, block, stats, calibration, script = {}, None, {}, [], None
    seen = set()
    for line in text.splitlines():
        if line.startswith(SCRIPT_REPORT_PREFIX):
            script = _script_report(line[len(SCRIPT_REPORT_PREFIX):])
            continue
        for name, rx in _RE.items():
            m = rx.search(line)
            if m:
                break
        else:
            continue
        seen.add(name)
        if name == "running":
            r["url"] = m.group(2)
        elif name == "threads":
            r["threads"], r["connections"] = int(m.group(1)), int(m.group(2))
        elif name == "calibration":
            calibration.append({"mean_latency_ms": _nan_float(m.group(1)),
                                "rate_sampling_interval_ms": int(m.group(2))})
        elif name == "stat":
            conv = time_ms if m.group(1) == "Latency" else metric
            stats[m.group(1)] = {"avg": conv(m.group(2)), "stdev": conv(m.group(3)),
                                 "max": conv(m.group(4)), "within_stdev_pct": _nan_float(m.group(5))}
        elif name == "dist":
            block = "uncorrected" if "Uncorrected" in m.group(1) else "corrected"
            blocks[block] = {"percentiles_ms": {}, "spectrum": None}
        elif block and name == "pct":
            blocks[block]["percentiles_ms"][percentile_key(m.group(1))] = time_ms(m.group(2))
        elif block and name == "spectrum":
            if blocks[block]["spectrum"] is None:
                blocks[block]["spectrum"] = []
            blocks[block]["spectrum"].append([float(m.group(1)), float(m.group(2)), int(m.group(3))])
        elif block and name == "mean":
            blocks[block]["mean"], blocks[block]["stdev"] = _nan_float(m.group(1)), _nan_float(m.group(2))
        elif block and name == "max":
            blocks[block]["max"], blocks[block]["count"] = _nan_float(m.group(1)), int(m.group(2))
        elif name == "summary":
            r["requests"] = int(m.group(1))
            r["duration_s"] = time_ms(m.group(2)) / 1000.0
            r["bytes_read"] = byte_count(m.group(3))
        elif name == "socket":
            r["errors"] = dict(zip(ERROR_KINDS, map(int, m.groups())))
        elif name == "non2xx":
            r["non_2xx_3xx"] = int(m.group(1))
        elif name == "rps":
            r["requests_per_sec"] = _nan_float(m.group(1)) or 0.0
        elif name == "transfer":
            r["transfer_per_sec_bytes"] = byte_count(m.group(1))
    missing = [n for n in ("threads", "summary", "rps") if n not in seen]
    if missing:
        if seen & {"threads", "running"}:
            raise ParseError(f"incomplete {tool} report (no {', '.join(missing)} line): "
                             f"the tool stopped before printing its summary")
        raise ParseError(_not_a_report(text, tool))
    r["thread_stats"] = {"latency_ms": stats.get("Latency"), "req_per_sec": stats.get("Req/Sec")}
    r["calibration"] = calibration or None
    r["latency"] = _latency(blocks.get("corrected"), stats.get("Latency"))
    if "uncorrected" in blocks:
        r["uncorrected_latency"] = _latency(blocks["uncorrected"], None)
    if script:
        _apply_script_report(r, script)
    r["latency_source"] = _source_of(r["latency"])
    r["latency_kind"] = OPEN_LOOP if tool == "wrk2" else CLOSED_LOOP  # wrk2 always has a rate
    return r


def _latency(block, thread_stat):
    """A latency object from a distribution block, falling back on the Thread Stats line."""
    block = block or {}
    ts = thread_stat or {}
    return {"mean_ms": block.get("mean", ts.get("avg")),
            "stdev_ms": block.get("stdev", ts.get("stdev")),
            "max_ms": block.get("max", ts.get("max")),
            "percentiles_ms": block.get("percentiles_ms", {}),
            "spectrum": block.get("spectrum")}


def _script_report(payload):
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise ParseError(f"the script report line is not JSON: {exc}") from None


def _apply_script_report(r, script):
    """Counts per request kind from the script, and for Debian wrk (no spectrum printed) its
    fine percentiles: those are what lets several generators' latencies merge."""
    kinds = script.get("requests_by_kind")
    if kinds is not None:
        r["requests_by_kind"] = {k: int(v) for k, v in kinds.items()}
    lat = script.get("latency") or {}
    if r["latency"]["spectrum"] is not None or not lat.get("percentiles"):
        return
    count = r["requests"]
    max_ms = lat["max"] / 1000.0
    points, pct = [], dict(r["latency"]["percentiles_ms"])
    for p, value_us in lat["percentiles"]:
        if p >= 100:  # Debian wrk's percentile(100) answers 0: the max stands for it
            continue
        points.append((value_us / 1000.0, p))
        if p in (99.9, 99.99) and percentile_key(p) not in pct:
            pct[percentile_key(p)] = value_us / 1000.0
    rows = percentile_rows(points, count, max_ms)
    r["latency"].update(mean_ms=lat["mean"] / 1000.0, stdev_ms=lat["stdev"] / 1000.0,
                        max_ms=max_ms, percentiles_ms=pct, spectrum=rows if count else None)


# ---------------------------------------------------------------- oha (JSON)

def parse_oha(text):
    """The tool result of one oha JSON report, or of several (one per request kind, each after
    a '# oha KIND:' line), merged. A '# oha KIND:' line with no report after it fails the
    whole output: a mix is never merged without one of its kinds."""
    from .merge import merge_results  # lazy: merge imports this module at module level

    docs, silent = _json_documents(text)
    if silent:
        raise ParseError("; ".join(f"oha {kind} printed no report" for kind in silent))
    if not docs:
        raise ParseError(_not_a_report(text, "oha"))
    results = []
    for kind, doc, args, per_request in docs:
        res = _oha_result(doc, per_request)
        res["latency_kind"] = OPEN_LOOP if {"-q", "--latency-correction"} <= set(args) \
            else CLOSED_LOOP
        if kind:
            res["requests_by_kind"] = {kind: res.pop("_sent")}
        res.pop("_sent", None)
        results.append(res)
    if all(r["requests"] == 0 for r in results) and all(r.get("_refused") for r in results):
        reasons = "; ".join(r["_refused"] for r in results)
        raise ParseError(f"oha could not connect: {reasons}")
    for r in results:
        r.pop("_refused", None)
    if len(results) == 1:
        return results[0]
    return merge_results(results)


def _json_documents(text):
    """([(kind or None, JSON object, the header's arguments, per-request latency or None)] for
    each object that starts a line, [kinds whose '# oha KIND:' line no object follows]).
    A per-request line belongs to the report before it, of the same kind."""
    decoder, docs, kind, args, pos, silent = json.JSONDecoder(), [], None, [], 0, []
    for line_match in re.finditer(r"^.*$", text, re.M):
        start = line_match.start()
        if start < pos:
            continue
        line = line_match.group(0)
        header = OHA_HEADER.match(line)
        if header:
            if kind:
                silent.append(kind)
            kind, args = header.group("kind"), line[header.end():].split()
        elif line.startswith(PER_REQUEST_PREFIX):
            try:
                per_request = json.loads(line[len(PER_REQUEST_PREFIX):])
            except ValueError:
                continue  # the printed percentiles stand for it
            if docs and docs[-1][3] is None and isinstance(per_request, dict) \
                    and per_request.get("kind") == docs[-1][0]:
                docs[-1] = docs[-1][:3] + (per_request,)
        elif line.startswith("{"):
            try:
                doc, end = decoder.raw_decode(text, start)
            except ValueError:
                continue
            if isinstance(doc, dict) and "summary" in doc:
                docs.append((kind, doc, args, None))
                kind, args = None, []
            pos = end
    if kind:
        silent.append(kind)
    return docs, silent


def _seconds_to_ms(v):
    return None if v is None else v * 1000.0


def _oha_error_kind(message):
    low = message.lower()
    if "timeout" in low or "timed out" in low:
        return "timeout"
    if "connect" in low or "refused" in low or "dns" in low:
        return "connect"
    if "write" in low or "broken pipe" in low:
        return "write"
    return "read"


def _oha_result(doc, per_request=None):
    """The tool result of one oha report; per_request: that process's latency from every
    request (loadgen.perrequest), used when it counts as many requests as the report."""
    s = doc["summary"]
    r = empty_result("oha")
    codes = {int(k): int(v) for k, v in (doc.get("statusCodeDistribution") or {}).items()}
    r["status_codes"] = {str(k): v for k, v in sorted(codes.items())}
    r["requests"] = sum(codes.values())
    r["non_2xx_3xx"] = sum(v for k, v in codes.items() if k > 399)  # wrk's definition
    r["duration_s"] = s["total"]
    r["requests_per_sec"] = r["requests"] / s["total"] if s["total"] else 0.0
    r["bytes_read"] = int(s.get("totalData") or 0)
    aborted, connect_messages = 0, []
    for message, n in (doc.get("errorDistribution") or {}).items():
        if message == "aborted due to deadline":
            aborted += n  # in flight when -z ran out, like the requests wrk leaves unfinished
            continue
        kind = _oha_error_kind(message)
        r["errors"][kind] += n
        if kind == "connect":
            connect_messages.append(f"{message} x{n}")
    r["aborted_at_deadline"] = aborted
    # sent = answered + failed after sending + cut off by the deadline; connect errors never sent
    r["_sent"] = r["requests"] + aborted + r["errors"]["read"] + r["errors"]["write"] \
        + r["errors"]["timeout"]
    r["_refused"] = ", ".join(connect_messages) if connect_messages else None
    pct = {percentile_key(k[1:]): _seconds_to_ms(v)
           for k, v in (doc.get("latencyPercentiles") or {}).items()}
    has_latency = r["requests"] > 0 and s.get("average") is not None
    r["latency"] = {"mean_ms": _seconds_to_ms(s.get("average")), "stdev_ms": None,
                    "max_ms": _seconds_to_ms(s.get("slowest")),
                    "min_ms": _seconds_to_ms(s.get("fastest")),
                    "percentiles_ms": pct if has_latency else {},
                    "spectrum": _oha_spectrum(pct, s, r["requests"]) if has_latency else None}
    r["latency_source"] = PRINTED if has_latency else None
    if has_latency and per_request and per_request.get("count") == r["requests"]:
        try:
            latency = _per_request_latency(per_request["latency"], pct)
            uncorrected = per_request.get("uncorrected_latency")
            uncorrected = _per_request_latency(uncorrected) if uncorrected else None
        except (KeyError, TypeError, ValueError):
            pass  # a damaged line: the printed percentiles stand for it
        else:
            r["latency"], r["uncorrected_latency"] = latency, uncorrected
            r["latency_source"] = PER_REQUEST
    return r


def _per_request_latency(stats, printed_pct=None):
    """A latency object from a per-request summary: the full histogram, its exact mean, stdev,
    min and max, and the percentiles oha printed (else read from the histogram)."""
    from .merge import decode_histogram, latency_from_histogram

    h = decode_histogram(stats["histogram"])
    return latency_from_histogram(h, mean_ms=stats.get("mean_ms"), stdev_ms=stats.get("stdev_ms"),
                                  max_ms=stats.get("max_ms"), min_ms=stats.get("min_ms"),
                                  percentiles_ms=printed_pct or None)


def _oha_spectrum(pct, summary, count):
    """oha prints only a few percentiles: a coarse spectrum from them, fastest and slowest."""
    rows = [[summary["fastest"] * 1000.0, 0.0, 1]]
    for key, value in sorted(pct.items(), key=lambda kv: float(kv[0])):
        if value is not None:
            p = float(key) / 100.0
            rows.append([value, p, max(1, int(math.ceil(count * p)))])
    rows.append([summary["slowest"] * 1000.0, 1.0, count])
    return rows
