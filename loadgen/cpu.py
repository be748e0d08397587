"""What a generator can say of its own CPU: the CPU time its tool processes used, and how many
CPUs they could use (their threads, the CPU affinity, a CFS quota).

It reads only this process, its children and its own cgroup, so it works the same in a local
container and on another Swarm node, where the controller sees no docker stats.
"""
import os
import resource
import threading

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"


def affinity_cpus():
    """How many CPUs this process (and the tools it starts, which inherit it) may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cgroup_paths(proc_cgroup, version):
    """This process's cgroup path(s) from /proc/self/cgroup: for v2 the '0::' line, for v1 the
    line whose controllers include cpu."""
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return ["/"]
    paths = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if version == 2 and controllers == "":
            paths.append(path)
        elif version == 1 and "cpu" in controllers.split(","):
            paths.append(path)
    return paths or ["/"]


def _ancestors(mount, path):
    """mount/path and each folder above it up to mount itself (those that exist). In a
    container the mount is often the container's own cgroup while the path names it as the
    host sees it: then only the mount itself exists."""
    folders, parts = [], [p for p in path.split("/") if p]
    for i in range(len(parts), -1, -1):
        folder = os.path.join(mount, *parts[:i])
        if os.path.isdir(folder):
            folders.append(folder)
    return folders


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def quota_cpus(root=CGROUP_ROOT, proc_cgroup=PROC_CGROUP):
    """The CFS quota in CPUs (quota / period, the smallest along the cgroup's ancestors), or
    None when there is none: cgroup v2 `cpu.max` ("max 100000" or "150000 100000"), else v1
    `cpu.cfs_quota_us` (-1: none) over `cpu.cfs_period_us`."""
    limits = []
    if os.path.exists(os.path.join(root, "cgroup.controllers")):  # v2, unified
        for path in _cgroup_paths(proc_cgroup, 2):
            for folder in _ancestors(root, path):
                text = _read(os.path.join(folder, "cpu.max"))
                if text:
                    quota, _, period = text.partition(" ")
                    if quota != "max" and period:
                        limits.append(int(quota) / int(period))
    else:  # v1: the cpu controller's own hierarchy
        mounts = [m for m in (os.path.join(root, "cpu"), os.path.join(root, "cpu,cpuacct"))
                  if os.path.isdir(m)]
        for mount in mounts[:1]:
            for path in _cgroup_paths(proc_cgroup, 1):
                for folder in _ancestors(mount, path):
                    quota = _read(os.path.join(folder, "cpu.cfs_quota_us"))
                    period = _read(os.path.join(folder, "cpu.cfs_period_us"))
                    if quota and period and int(quota) > 0 and int(period) > 0:
                        limits.append(int(quota) / int(period))
    return min(limits) if limits else None


def usable_cpus(threads, root=CGROUP_ROOT, proc_cgroup=PROC_CGROUP):
    """(usable CPUs, {"threads", "affinity", "quota"}): the least of the tool's threads, the
    CPUs this process may run on, and the CFS quota (None: no quota)."""
    limits = {"threads": threads, "affinity": affinity_cpus(),
              "quota": quota_cpus(root, proc_cgroup)}
    usable = min(v for v in limits.values() if v is not None)
    return usable, limits


def cpu_share(cpu_s, wall_s, usable):
    """(user + system) / wall / usable CPUs, or None when a figure is missing or zero."""
    if cpu_s is None or not wall_s or not usable or wall_s <= 0:
        return None
    return (cpu_s["user"] + cpu_s["system"]) / wall_s / usable


_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid):
    """{"user", "system"} seconds a live process (all its threads) has used so far, from
    /proc/<pid>/stat; None when it cannot be read."""
    text = _read(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    try:  # fields 14 and 15 of stat(5); the first after ")" is field 3
        return {"user": int(fields[11]) * _TICK_S, "system": int(fields[12]) * _TICK_S}
    except (IndexError, ValueError):
        return None


# The children this process has started through spawned() and not yet reaped, and how many it
# has started in all: a delta of RUSAGE_CHILDREN counts every child reaped meanwhile, so it
# is one run's CPU only when no other child was started or still running around that run.
_lock = threading.Lock()
_started = 0
_live = 0


class spawned:
    """with spawned(n): around starting and reaping n child processes (any thread)."""

    def __init__(self, n=1):
        self.n = n

    def __enter__(self):
        global _started, _live
        with _lock:
            _started += self.n
            _live += self.n
        return self

    def __exit__(self, *exc):
        global _live
        with _lock:
            _live -= self.n
        return False


def _children_times():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime, ru.ru_stime


class ChildrenCpu:
    """The CPU time of the own children one run starts and reaps, from RUSAGE_CHILDREN deltas:
    inside their `with spawned(own)` block, start() before the first is started and stop()
    once all are reaped. cpu_s stays None when any other child was started or still running
    meanwhile."""

    def __init__(self, own):
        self.own = own
        self.cpu_s = None
        self._before = self._started = None
        self._clean = False

    def start(self):
        with _lock:
            self._started, self._clean = _started, _live == self.own
            self._before = _children_times()
        return self

    def stop(self):
        with _lock:
            user, system = _children_times()
            clean = self._clean and _started == self._started and _live == self.own
        if clean:
            self.cpu_s = {"user": max(0.0, user - self._before[0]),
                          "system": max(0.0, system - self._before[1])}
        return self.cpu_s
