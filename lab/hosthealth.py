"""What else used the machine while a run was measured, read from outside every process.

Sources: /proc/stat (per CPU: busy, steal and softirq time), each container's cgroup v1
cpuacct.usage_percpu (its CPU time on each CPU), and the controller's own CPU time. The busy time
of the measured CPUs that no container of the run accounts for is other work: another tenant, the
Docker engine, the controller. Two reads per run, so it costs nothing measurable.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

CGROUP_CPUACCT = Path("/sys/fs/cgroup/cpuacct")
USER_HZ = os.sysconf("SC_CLK_TCK")
MAX_OTHER_CORES = 0.10   # other work above a tenth of a core on the measured CPUs
MAX_STEAL_SHARE = 0.05   # the hypervisor took more than 5% of the measured CPUs


def read_proc_stat(path: Path = Path("/proc/stat")) -> dict[int, dict[str, int]]:
    """Per CPU, in USER_HZ ticks: busy (user, nice, system), softirq (irq and softirq), steal."""
    cpus: dict[int, dict[str, int]] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *values = line.split()
        v = [int(x) for x in values] + [0] * 10
        user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
        cpus[int(name[3:])] = {"busy": user + nice + system, "softirq": irq + softirq, "steal": steal}
    return cpus


def container_percpu_ns(container_id: str, root: Path = CGROUP_CPUACCT) -> list[int] | None:
    """A container's CPU time per CPU, in ns (cgroup v1 with the cgroupfs driver), or None."""
    for candidate in (root / "docker" / container_id, root / "system.slice" / f"docker-{container_id}.scope"):
        try:
            return [int(x) for x in (candidate / "cpuacct.usage_percpu").read_text().split()]
        except OSError:
            continue
    return None


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class HostMonitor:
    """start() when the measured window opens, stop() when it closes."""

    def __init__(self, measured_cpus: set[int], container_ids: list[str]):
        self.measured = sorted(measured_cpus)
        self.container_ids = list(container_ids)

    def _snapshot(self) -> dict:
        return {"t": time.monotonic(), "stat": read_proc_stat(), "own": own_cpu_s(),
                "containers": {cid: container_percpu_ns(cid) for cid in self.container_ids}}

    def start(self) -> "HostMonitor":
        self.first = self._snapshot()
        return self

    def stop(self) -> dict:
        last = self._snapshot()
        return assess(self.first, last, self.measured)


def assess(first: dict, last: dict, measured: list[int]) -> dict:
    """Shares of the window, in cores; `busy` when other work or steal passed its threshold."""
    window = max(1e-6, last["t"] - first["t"])
    cpus = [c for c in measured if c in first["stat"] and c in last["stat"]]
    if not cpus:
        return {"available": False, "reason": "no measured CPU found in /proc/stat"}

    def ticks(kind: str) -> float:
        return sum(last["stat"][c][kind] - first["stat"][c][kind] for c in cpus) / USER_HZ

    busy_s, steal_s, softirq_s = ticks("busy"), ticks("steal"), ticks("softirq")
    containers_s, unreadable = 0.0, 0
    for cid, before in first["containers"].items():
        after = last["containers"].get(cid)
        if before is None or after is None:
            unreadable += 1
            continue
        containers_s += sum(after[c] - before[c] for c in cpus if c < len(after) and c < len(before)) / 1e9
    out = {"available": unreadable == 0, "window_s": round(window, 3), "measured_cpus": cpus,
           "source": "/proc/stat and cgroup v1 cpuacct.usage_percpu",
           "busy_cores": round(busy_s / window, 4), "containers_cores": round(containers_s / window, 4),
           "softirq_cores": round(softirq_s / window, 4),
           "steal_share": round(steal_s / (window * len(cpus)), 4),
           "lab_cpu_share": round((last["own"] - first["own"]) / window, 4)}
    if unreadable:
        out["reason"] = f"{unreadable} container(s) without readable cpuacct: other work unknown"
        out["other_cpu_share_on_measured_cpus"] = None
        out["busy"] = out["steal_share"] > MAX_STEAL_SHARE
        return out
    # cgroup time and /proc/stat ticks are sampled at slightly different moments: small negatives
    # are rounding, not negative work.
    other = max(0.0, busy_s - containers_s) / window
    out["other_cpu_share_on_measured_cpus"] = round(other, 4)
    reasons = []
    if other > MAX_OTHER_CORES:
        reasons.append(f"{other:.2f} of a core of other work on CPUs {','.join(map(str, cpus))}")
    if out["steal_share"] > MAX_STEAL_SHARE:
        reasons.append(f"steal {out['steal_share']:.0%}")
    out["busy"] = bool(reasons)
    if reasons:
        out["reason"] = "; ".join(reasons)
    return out


def keep_off(cpus: set[int]) -> set[int] | None:
    """Moves every thread of this process off `cpus` (when another CPU remains); returns the
    previous affinity to restore, or None when nothing changed."""
    allowed = os.sched_getaffinity(0)
    rest = allowed - set(cpus)
    if not cpus or not rest or rest == allowed:
        return None
    set_process_affinity(rest)
    return allowed


def set_process_affinity(cpus: set[int]) -> None:
    """sched_setaffinity applies to one thread: apply it to each, and new threads inherit it."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # a thread that has just ended
            pass
