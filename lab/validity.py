"""What a run's figure is worth: pure rules over what a run measured.

Two kinds of verdict, kept apart because they mean opposite things:
- the measurement cannot be trusted (the generator was the bottleneck, the host was busy, the
  generators did not start together, the counts disagree, the throughput drifted): the figure
  says nothing about the server and is left out of every figure;
- the server did badly (errors, timeouts, an offered rate it could not keep up with): that is a
  result, often the most important one, and stays in the figures, marked.
"""
from __future__ import annotations

MAX_ERROR_SHARE = 0.01        # errors above 1% of requests
MIN_RATE_SHARE = 0.97         # open mode: achieved below 97% of the offered rate = saturated
MAX_GENERATOR_CPU = 0.90      # a generator above 90% of its usable CPUs measures itself
MAX_START_SKEW_SHARE = 0.02   # generators starting further apart than 2% of the duration
MIN_START_SKEW_S = 0.1        # ... or 0.1 s, whichever is larger


def error_count(errors: dict) -> int:
    return sum(int(errors.get(k) or 0) for k in ("connect", "read", "write", "timeout", "non_2xx_3xx"))


def max_start_skew_s(duration_s: float) -> float:
    return max(MIN_START_SKEW_S, MAX_START_SKEW_SHARE * duration_s)


def judge(*, mode: str, rate: int | None, connections: int, requests: int, errors: dict,
          requests_per_sec: float, generator_cpu: dict[str, float],
          guestbook_sent: int | None = None, visitor_count_delta: int | None = None,
          warmed_up: bool = False, warmup_errors: int = 0, duration_s: float | None = None,
          start_skew_s: float | None = None, steady: dict | None = None,
          host_health: dict | None = None) -> dict:
    untrusted: list[str] = []
    server: list[str] = []
    failed = error_count(errors)
    if requests <= 0:
        server.append("no request completed")
    if requests > 0 and failed > MAX_ERROR_SHARE * requests:
        timeouts = int(errors.get("timeout") or 0)
        server.append(f"errors: {failed} for {requests} requests ({failed / requests:.1%} > "
                      f"{MAX_ERROR_SHARE:.0%})" + (f", {timeouts} timeouts" if timeouts else ""))
    if mode == "open" and rate and requests_per_sec < MIN_RATE_SHARE * rate:
        server.append(f"saturated: achieved {requests_per_sec:,.0f} req/s, under "
                      f"{MIN_RATE_SHARE:.0%} of the offered {rate:,} req/s")
    for name, share in sorted(generator_cpu.items()):
        if share > MAX_GENERATOR_CPU:
            untrusted.append(f"generator-bound: {name} used {share:.0%} of the CPUs it can use (> "
                             f"{MAX_GENERATOR_CPU:.0%}), so the figure measures the generator")
    if guestbook_sent is not None and visitor_count_delta is not None:
        # Every guestbook GET the server handled raised the counter once; requests still in
        # flight at the end (one per connection at most) or answered with an error (a 503 when
        # Redis could not be reached, a dropped connection) may not have.
        low = guestbook_sent - connections - failed
        # Likewise a warm-up's last requests: at high concurrency the kernel goes on
        # retransmitting those the server had not accepted yet, seconds after the tool stopped:
        # one per connection, plus any the warm-up gave up on (its errors) and sent again.
        high = guestbook_sent + ((connections + warmup_errors) if warmed_up else 0)
        if not (max(0, low) <= visitor_count_delta <= high):
            untrusted.append(f"count mismatch: visitor_count rose by {visitor_count_delta}, but the "
                             f"generators sent {guestbook_sent} guestbook GETs over {connections} connections")
    if start_skew_s is not None and duration_s:
        limit = max_start_skew_s(duration_s)
        if start_skew_s > limit:
            untrusted.append(f"start skew: the generators' tools started {start_skew_s:.2f} s apart "
                             f"(> {limit:.2f} s for a {duration_s:g} s run)")
    if (steady is not None and steady.get("stable") is False and requests > 0 and not server
            and (steady.get("points") or 0) >= 3):
        # A collapsing server drifts too; that is its result, not a faulty measurement. A window
        # too short to hold three samples is not judged (server_side says why).
        untrusted.append(f"unstable: {steady.get('reason') or 'throughput drifted within the window'}")
    if host_health is not None and host_health.get("busy"):
        untrusted.append(f"host busy: {host_health.get('reason') or 'other work on the measured CPUs'}")
    return verdict(untrusted, server)


def verdict(untrusted: list[str], server: list[str]) -> dict:
    """The validity block result.json records (`valid` and `reasons` for older readers)."""
    return {"trusted": not untrusted, "untrusted_reasons": untrusted,
            "server_failed": bool(server), "server_reasons": server,
            "valid": not untrusted and not server, "reasons": untrusted + server}


def failed_run(reason: str) -> dict:
    """A run that produced no figure at all."""
    return verdict([reason], [])
