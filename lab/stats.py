"""Samples `docker stats` of every container once a second while a run is measured.

One streaming reader per container: a one-shot stats call waits for two samples (~2 s), so it
cannot keep a one-second cadence for several containers.
"""
from __future__ import annotations

import threading
import time


def cpu_percent(sample: dict) -> float | None:
    """CPU use as `docker stats` computes it: 100 per fully used core."""
    try:
        cpu, pre = sample["cpu_stats"], sample["precpu_stats"]
        cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
        system_delta = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
        cores = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or [1])
    except (KeyError, TypeError):
        return None
    if system_delta <= 0 or cpu_delta < 0:
        return None
    return round(cpu_delta / system_delta * cores * 100.0, 2)


def _network(sample: dict) -> tuple[int, int]:
    nets = sample.get("networks") or {}
    return (sum(n.get("rx_bytes", 0) for n in nets.values()),
            sum(n.get("tx_bytes", 0) for n in nets.values()))


class StatsSampler:
    """Collects one row per container per second between start() and stop()."""

    def __init__(self, containers: dict[str, list], run_id: str):
        self.containers = containers  # service -> [docker Container]
        self.run_id = run_id
        self.rows: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._streams: list = []
        self._t0 = 0.0
        self._stopped_rows = False

    def start(self) -> "StatsSampler":
        self._t0 = time.monotonic()
        for service, containers in self.containers.items():
            for container in containers:
                t = threading.Thread(target=self._follow, args=(service, container), daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def stop(self) -> list[dict]:
        self._stop.set()
        for stream in list(self._streams):
            try:
                stream.close()
            except Exception:  # the stream may already be closed by the daemon
                pass
        # The readers end at their next sample at the latest; what they add after this is
        # dropped, so nothing waits for them.
        for t in self._threads:
            t.join(timeout=0.05)
        with self._lock:
            self._stopped_rows = True
            return sorted(self.rows, key=lambda r: (r["t_s"], r["service"], r["container"]))

    def _follow(self, service: str, container) -> None:
        try:
            stream = container.stats(stream=True, decode=True)
            self._streams.append(stream)
            for sample in stream:
                if self._stop.is_set():
                    break
                rx, tx = _network(sample)
                mem = sample.get("memory_stats") or {}
                row = {
                    "run_id": self.run_id, "t_s": round(time.monotonic() - self._t0, 2),
                    "service": service, "container": container.name,
                    "cpu_percent": cpu_percent(sample), "mem_bytes": mem.get("usage"),
                    "mem_limit_bytes": mem.get("limit"), "net_rx_bytes": rx, "net_tx_bytes": tx,
                    "pids": (sample.get("pids_stats") or {}).get("current"),
                }
                with self._lock:
                    if not self._stopped_rows:
                        self.rows.append(row)
        except Exception:
            # A container that went away ends its own series; the run goes on.
            return


def busiest_share(rows: list[dict], service: str, cores_of: dict[str, int],
                  start_s: float, end_s: float) -> dict[str, float]:
    """Mean CPU of each container of `service` over a window, as a share (0-1) of its own cores."""
    per: dict[str, list[float]] = {}
    for row in rows:
        if row["service"] == service and start_s <= row["t_s"] <= end_s and row["cpu_percent"] is not None:
            per.setdefault(row["container"], []).append(row["cpu_percent"])
    return {name: sum(v) / len(v) / 100.0 / max(1, cores_of.get(name, 1)) for name, v in per.items() if v}
