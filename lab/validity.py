"""Whether a run's figure can be trusted, and if not, why: pure rules over what a run measured."""
from __future__ import annotations

MAX_ERROR_SHARE = 0.01        # errors above 1% of requests
MIN_RATE_SHARE = 0.97         # open mode: achieved below 97% of the offered rate = saturated
MAX_GENERATOR_CPU = 0.90      # a generator above 90% of its cores measures itself


def error_count(errors: dict) -> int:
    return sum(int(errors.get(k) or 0) for k in ("connect", "read", "write", "timeout", "non_2xx_3xx"))


def judge(*, mode: str, rate: int | None, connections: int, requests: int, errors: dict,
          requests_per_sec: float, generator_cpu: dict[str, float],
          guestbook_sent: int | None = None, visitor_count_delta: int | None = None,
          warmed_up: bool = False) -> dict:
    reasons: list[str] = []
    if requests <= 0:
        reasons.append("no request completed")
    failed = error_count(errors)
    if requests > 0 and failed > MAX_ERROR_SHARE * requests:
        reasons.append(f"errors: {failed} for {requests} requests ({failed / requests:.1%} > "
                       f"{MAX_ERROR_SHARE:.0%})")
    if mode == "open" and rate and requests_per_sec < MIN_RATE_SHARE * rate:
        reasons.append(f"saturated: achieved {requests_per_sec:,.0f} req/s, under "
                       f"{MIN_RATE_SHARE:.0%} of the offered {rate:,} req/s")
    for name, share in sorted(generator_cpu.items()):
        if share > MAX_GENERATOR_CPU:
            reasons.append(f"generator-bound: {name} used {share:.0%} of its CPU (> "
                           f"{MAX_GENERATOR_CPU:.0%}), so the figure measures the generator")
    if guestbook_sent is not None and visitor_count_delta is not None:
        # Every guestbook GET the server handled raised the counter once; requests still in
        # flight at the end (one per connection at most) or answered with an error (a 503 when
        # Redis could not be reached, a dropped connection) may not have.
        low = guestbook_sent - connections - failed
        # Likewise a warm-up's last requests: at high concurrency the kernel goes on
        # retransmitting those the server had not accepted yet, seconds after the tool stopped.
        high = guestbook_sent + (connections if warmed_up else 0)
        if not (max(0, low) <= visitor_count_delta <= high):
            reasons.append(f"count mismatch: visitor_count rose by {visitor_count_delta}, but the "
                           f"generators sent {guestbook_sent} guestbook GETs over {connections} connections")
    return {"valid": not reasons, "reasons": reasons}
