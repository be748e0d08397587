"""What the server and the kernel did during a run's measured window, read from outside every
process: cgroup v1 files, /proc/<pid>/... of the containers' processes, and their network
namespace's counters through /proc/<pid>/net. Nothing runs in a container and no process is
signalled or entered.

A target is a docker container id (cgroupfs or systemd driver), a cgroup path relative to the v1
hierarchies (``/docker/<id>``), or a process tree given by its root pid (``1234`` or
``"pid:1234"``): its cgroups are used where they hold that tree alone, its descendants otherwise.

Every tick (``every_s``): CPU (cpuacct), throttling (cpu.stat), page faults (memory.stat), tasks
alive (pids.current, tasks, cgroup.procs), the newest pid the container's pid namespace handed
out (tasks created), TCP counters (netstat, snmp, sockstat) and the accept queue of listening
sockets (the head of /proc/<pid>/net/tcp), open descriptors (the size of /proc/<pid>/fd) while
there are few processes, /proc/stat (softirq, forks). Less often, as a budget of the sampler's own
CPU allows, the per-task pass: /proc/<tid>/status of every task (context switches), and the
descriptors of many processes. stop() returns a compact, JSON-serialisable dict; every figure
says where it comes from or why it is missing.
"""
from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

USER_HZ = os.sysconf("SC_CLK_TCK")
RESERVED_PIDS = 300          # the kernel's pid allocator restarts here after wrapping
BUDGET_CORES = 0.004         # the sampler's own CPU, as a share of one core
MAX_FIRST_PASS_S = 0.03      # a first per-task pass that would cost more waits for budget
MAX_START_TASKS = 4096       # reading every task's start time at the start costs ~7 us each
LISTENERS_KEPT = 4           # listening ports reported per service, the busiest first
MIN_OTHER_SOCKETS = 32       # fewer sockets than this besides the listeners: see _accept_queues
FDS_EVERY_TICK = 16          # up to this many processes, descriptors are counted every tick
BIRTH_LOOKS = 4              # more looks for a new task when a tick's listing found none

NETSTAT_FIELDS = {           # (table, kernel name) -> name in the output
    ("TcpExt", "ListenOverflows"): "listen_overflows",
    ("TcpExt", "ListenDrops"): "listen_drops",
    ("TcpExt", "TCPTimeouts"): "tcp_timeouts",
    ("TcpExt", "TCPSynRetrans"): "syn_retrans",
    ("Tcp", "PassiveOpens"): "passive_opens",
    ("Tcp", "ActiveOpens"): "active_opens",
    ("Tcp", "AttemptFails"): "attempt_fails",
    ("Tcp", "EstabResets"): "estab_resets",
    ("Tcp", "OutRsts"): "out_rsts",
    ("Tcp", "RetransSegs"): "retrans_segs",
}
TCP_STATES = {"01": "established", "02": "syn_sent", "03": "syn_recv", "04": "fin_wait1",
              "05": "fin_wait2", "06": "time_wait", "07": "close", "08": "close_wait",
              "09": "last_ack", "0A": "listen", "0B": "closing", "0C": "new_syn_recv"}
SERIES_COLUMNS = ["t", "cpu_cores", "tasks", "fds", "time_wait", "accept_queue",
                  "listen_overflows", "syn_retrans"]


# ------------------------------------------------------------------ parsers (recorded text)

def parse_keyed(text: str) -> dict[str, int]:
    """Lines of `name value`: cpuacct.stat, cpu.stat, memory.stat."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


_COLUMNS: dict[str, list[tuple[int, str]]] = {}   # a table's header line -> wanted columns


def net_counters(netstat: str, snmp: str) -> dict[str, int]:
    """The TCP counters this module reports, by their output name. Only the wanted columns are
    read (TcpExt alone has over a hundred), found once per header line."""
    out = {}
    for text in (netstat, snmp):
        lines = text.splitlines()
        for header, values in zip(lines[::2], lines[1::2]):
            columns = _COLUMNS.get(header)
            if columns is None:
                table = header[:header.find(":")]
                names = header.split()
                columns = [(names.index(k), o) for (t, k), o in NETSTAT_FIELDS.items()
                           if t == table and k in names]
                _COLUMNS[header] = columns
            if columns:
                nums = values.split()
                for i, name in columns:
                    out.setdefault(name, int(nums[i]))
    return out


def parse_sockstat(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/sockstat(6): `TCP: inuse 3 orphan 5 tw 657 alloc 13 mem 236` per protocol."""
    out = {}
    for line in text.splitlines():
        proto, _, rest = line.partition(":")
        words = rest.split()
        out[proto] = {k: int(v) for k, v in zip(words[::2], words[1::2]) if v.isdigit()}
    return out


def parse_tcp_line(line: str) -> dict | None:
    """One socket of /proc/net/tcp or tcp6. For a LISTEN socket (state 0A) rx_queue is the accept
    queue's current length; tx_queue is 0 (the backlog itself is not in this file)."""
    parts = line.split()
    if len(parts) < 10 or not parts[0].endswith(":") or ":" not in parts[4]:
        return None
    local = parts[1]
    tx, rx = parts[4].split(":")
    return {"local_port": int(local.rsplit(":", 1)[1], 16), "state": parts[3],
            "tx_queue": int(tx, 16), "rx_queue": int(rx, 16), "inode": int(parts[9])}


def listeners_in(text: str) -> tuple[dict[int, int], int, bool]:
    """The LISTEN sockets at the head of a /proc/net/tcp(6) text: {port: accept queue}, how many
    sockets listen, and whether the text went past them (the kernel lists listening sockets
    first). A last line without its newline is left for the next read."""
    queues: dict[int, int] = {}
    count = 0
    for line in text.split("\n")[:-1]:
        sock = parse_tcp_line(line)
        if sock is None:
            continue
        if sock["state"] != "0A":
            return queues, count, True
        count += 1
        queues[sock["local_port"]] = queues.get(sock["local_port"], 0) + sock["rx_queue"]
    return queues, count, False


def count_tcp_states(text: str) -> dict[str, int]:
    """A whole /proc/net/tcp(6) counted by state (costly on a busy namespace: tests and checks)."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        sock = parse_tcp_line(line)
        if sock:
            name = TCP_STATES.get(sock["state"], sock["state"])
            counts[name] = counts.get(name, 0) + 1
    return counts


def parse_status(text: str) -> dict:
    """/proc/<tid>/status: the task's own context switches, its pid in each namespace, and which
    CPUs it may use."""
    out: dict = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "voluntary_ctxt_switches":
            out["voluntary"] = int(value)
        elif key == "nonvoluntary_ctxt_switches":
            out["involuntary"] = int(value)
        elif key == "NSpid":
            out["nspid"] = [int(x) for x in value.split()]
        elif key == "Tgid":
            out["tgid"] = int(value)
        elif key == "Cpus_allowed_list":
            out["cpus"] = parse_cpu_list(value.strip())
    return out


def parse_pid_stat(text: str) -> dict[str, int]:
    """/proc/<pid>/stat: faults and CPU ticks, own and of reaped children, and the start time."""
    rest = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses

    def field(n: int) -> int:  # numbered as in proc(5): rest starts at field 3, the state
        return int(rest[n - 3])
    return {"ppid": field(4), "minflt": field(10), "cminflt": field(11), "majflt": field(12),
            "cmajflt": field(13), "utime": field(14), "stime": field(15), "cutime": field(16),
            "cstime": field(17), "starttime": field(22)}


def parse_proc_stat(text: str) -> dict:
    """/proc/stat: softirq ticks per CPU, forks since boot (`processes`), context switches."""
    out: dict = {"softirq": {}}
    for line in text.splitlines():
        if line.startswith("cpu") and not line.startswith("cpu "):
            name, *v = line.split()
            out["softirq"][int(name[3:])] = int(v[6])
        elif line.startswith("processes "):
            out["processes"] = int(line.split()[1])
        elif line.startswith("ctxt "):
            out["ctxt"] = int(line.split()[1])
    return out


def parse_cpu_list(text: str) -> list[int]:
    """`0-2,5` -> [0, 1, 2, 5]"""
    cpus: list[int] = []
    for part in filter(None, text.strip().split(",")):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def pid_advance(prev: int, new: int, pid_max: int) -> int:
    """Pids handed out from after `prev` up to `new`, across one wrap of the allocator."""
    if new >= prev:
        return new - prev
    return (pid_max - 1 - prev) + (new - RESERVED_PIDS + 1)


def behind(last_pid: int, pid: int, pid_max: int) -> int:
    """How many allocations ago `pid` was handed out, if it is recent (the allocator is cyclic)."""
    return (last_pid - pid) % pid_max


# ------------------------------------------------------------------ reading /proc and /sys

def read_text(path, chunk: int = 65536) -> str:
    """A whole file of /proc or /sys (os-level reads: these files are read thousands of times)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        parts = []
        while True:
            data = os.read(fd, chunk)
            if not data:
                break
            parts.append(data)
        return b"".join(parts).decode("ascii", "replace")
    finally:
        os.close(fd)


def read_listeners(path: str) -> tuple[dict[int, int], int]:
    """The listening sockets of a /proc/<pid>/net/tcp(6) ({port: accept queue}, how many), reading
    only the head of the file: the kernel formats sockets as they are read, so a whole file of
    15,000 sockets costs tens of ms. After the last listener the kernel still looks for the next
    socket of the namespace: see _Watch._accept_queues."""
    fd = os.open(path, os.O_RDONLY)
    try:
        text = ""
        while True:
            data = os.read(fd, 512)  # the kernel formats about as many sockets as fit
            if not data:
                queues, count, _ = listeners_in(text + "\n")
                return queues, count
            text += data.decode("ascii", "replace")
            queues, count, done = listeners_in(text)
            if done:
                return queues, count
    finally:
        os.close(fd)


def cgroup_mounts(mounts: str | None = None) -> dict[str, Path]:
    """Each cgroup v1 controller's mount point (`cpu,cpuacct` mounted together counts for both)."""
    text = mounts if mounts is not None else read_text("/proc/self/mounts")
    found: dict[str, Path] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[2] != "cgroup":
            continue
        for opt in parts[3].split(","):
            if opt in ("cpu", "cpuacct", "memory", "pids"):
                found.setdefault(opt, Path(parts[1]))
    return found


def proc_cgroups(pid: int) -> dict[str, str]:
    """The cgroup v1 path of `pid` per controller, from /proc/<pid>/cgroup."""
    out = {}
    for line in read_text(f"/proc/{pid}/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(","):
            if c:
                out[c] = path
    return out


def ancestry_reaches(pid: int, root: int) -> bool:
    for _ in range(64):
        if pid == root:
            return True
        if pid <= 1:
            return False
        try:
            pid = parse_pid_stat(read_text(f"/proc/{pid}/stat"))["ppid"]
        except (OSError, ValueError):
            return False
    return False


def tree_tasks(root: int) -> tuple[set[int], set[int]]:
    """(tids, pids) of `root` and its descendants, through /proc/<pid>/task/<tid>/children."""
    tids: set[int] = set()
    pids: set[int] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        pids.add(pid)
        tids.update(threads)
        for tid in threads:
            try:
                todo.extend(int(c) for c in read_text(f"/proc/{pid}/task/{tid}/children").split())
            except OSError:
                pass
    return tids, pids


def fd_count(pid: int, by_size: bool) -> int:
    """Open descriptors of a process: since Linux 6.2 the size of /proc/<pid>/fd says it without
    listing thousands of entries."""
    if by_size:
        return os.stat(f"/proc/{pid}/fd").st_size
    return len(os.listdir(f"/proc/{pid}/fd"))


def _fd_size_is_count() -> bool:
    """Before Linux 6.2 the size of /proc/<pid>/fd is 0."""
    try:
        return os.stat("/proc/self/fd").st_size > 0
    except OSError:
        return False


def last_pid() -> int:
    """The pid the controller's namespace (the host's) handed out last: /proc/loadavg."""
    return int(read_text("/proc/loadavg").split()[-1])


def pid_max() -> int:
    try:
        return int(read_text("/proc/sys/kernel/pid_max"))
    except OSError:
        return 32768


# ------------------------------------------------------------------ targets

CONTAINER_ID = re.compile(r"[0-9a-f]{12,64}")


@dataclass
class Target:
    """One container (or cgroup, or process tree) as the sampler reads it."""
    name: str
    kind: str                                  # container | cgroup | pid
    cgroups: dict[str, Path] = field(default_factory=dict)   # controller -> its directory
    root_pid: int | None = None                # the tree's root (kind pid)
    missing: dict[str, str] = field(default_factory=dict)    # controller -> why not read
    reason: str | None = None                  # why nothing at all can be read

    @property
    def available(self) -> bool:
        return self.reason is None


def resolve(spec, mounts: dict[str, Path] | None = None) -> Target:
    """A container id, a docker Container (its .id), a cgroup path, or a root pid -> Target."""
    mounts = cgroup_mounts() if mounts is None else mounts
    spec = getattr(spec, "id", spec)
    if isinstance(spec, int) or (isinstance(spec, str) and spec.startswith("pid:")):
        return _resolve_pid(int(str(spec).removeprefix("pid:")), mounts)
    spec = str(spec)
    if not mounts:
        return Target(spec, "cgroup", reason="no cgroup v1 hierarchy mounted here (cgroup v2 is "
                                             "not read by this sampler)")
    if spec.startswith("/"):
        kind, candidates = "cgroup", [spec.strip("/")]
    elif CONTAINER_ID.fullmatch(spec):
        kind, candidates = "container", [f"docker/{spec}", f"system.slice/docker-{spec}.scope"]
    else:
        return Target(spec, "cgroup", reason=f"not a container id, cgroup path or pid: {spec!r}")
    target = Target(spec[:12] if kind == "container" else spec, kind)
    for controller, mount in mounts.items():
        for rel in candidates:
            if (mount / rel).is_dir():
                target.cgroups[controller] = mount / rel
                break
        else:
            target.missing[controller] = f"no {controller} cgroup at {candidates[0]}"
    if not target.cgroups:
        target.reason = ("not on this host (another node, or it has stopped): no cgroup "
                         f"{candidates[0]}")
    return target


def _resolve_pid(pid: int, mounts: dict[str, Path]) -> Target:
    target = Target(f"pid:{pid}", "pid", root_pid=pid)
    try:
        paths = proc_cgroups(pid)
    except OSError:
        target.reason = f"no process {pid} on this host"
        return target
    for controller, mount in mounts.items():
        rel = paths.get(controller, "/")
        if rel == "/":
            target.missing[controller] = f"process {pid} is in the root {controller} cgroup"
            continue
        path = mount / rel.strip("/")
        try:
            members = [int(p) for p in read_text(path / "cgroup.procs").split()]
        except OSError:
            target.missing[controller] = f"{path} is not readable"
            continue
        if len(members) > 1000 or not all(ancestry_reaches(m, pid) for m in members):
            target.missing[controller] = f"{controller} cgroup {rel} also holds other processes"
            continue
        target.cgroups[controller] = path
    return target


# ------------------------------------------------------------------ one target, sampled

class _PerTask:
    """Counters read per task (or per process) in passes: what each one did since the first pass,
    or since it was created. Tasks that end between passes lose what they did after their last."""

    def __init__(self):
        self.base: dict[int, tuple] = {}
        self.last: dict[int, tuple] = {}
        self.first_pass = True

    def update(self, values: dict[int, tuple]) -> None:
        for key, v in values.items():
            if key not in self.base:
                self.base[key] = v if self.first_pass else tuple(0 for _ in v)
            elif any(a < b for a, b in zip(v, self.last.get(key, v))):
                self.base[key] = tuple(0 for _ in v)   # a reused pid: another task
            self.last[key] = v
        self.first_pass = False

    def totals(self, keys=None) -> list[int]:
        keys = self.last.keys() if keys is None else keys
        sums = None
        for key in keys:
            d = [a - b for a, b in zip(self.last[key], self.base[key])]
            sums = d if sums is None else [s + x for s, x in zip(sums, d)]
        return sums or []


class _Births:
    """Tasks created in a container's own pid namespace: the namespace hands pids out in order, so
    the pid of its newest task, followed from sample to sample, counts every process and thread
    created, even those that ended between samples. The newest one is found through host pids,
    allocated in the same order: among the tasks not seen before, the one the host handed out
    last."""

    def __init__(self, host_pid_max: int):
        self.pid_max = host_pid_max
        self.ns: str | None = None
        self.newest_ns_pid: int | None = None
        self.created = 0
        self.reason: str | None = None

    def _ns_pid(self, tid: int) -> tuple[str, int] | None:
        try:
            nspid = parse_status(read_text(f"/proc/{tid}/status")).get("nspid") or []
            ns = os.readlink(f"/proc/{tid}/ns/pid")
        except OSError:
            return None
        if len(nspid) < 2:
            return ns, -1
        return ns, nspid[-1]

    def start(self, tids: set[int], host_last: int) -> None:
        if len(tids) > MAX_START_TASKS:
            self.reason = f"{len(tids)} tasks at the start: too many to find the newest cheaply"
            return
        starts = []
        for tid in tids:
            try:
                starts.append((parse_pid_stat(read_text(f"/proc/{tid}/stat"))["starttime"],
                               -behind(host_last, tid, self.pid_max), tid))
            except (OSError, ValueError):
                pass
        for *_, tid in sorted(starts, reverse=True):
            got = self._ns_pid(tid)
            if got is None:
                continue
            if got[1] < 0:
                self.reason = ("it shares the controller's pid namespace (see "
                               "machine.processes_created)")
                return
            self.ns, self.newest_ns_pid = got
            return
        self.reason = "no task to start from"

    def update(self, new_tids: set[int], host_last: int) -> bool:
        """Follows the newest of `new_tids` (tasks not seen before); False when none could be
        read (all ended already) or none is newer than the one followed."""
        if self.reason or not new_tids:
            return False
        for tid in sorted(new_tids, key=lambda t: behind(host_last, t, self.pid_max))[:4]:
            got = self._ns_pid(tid)
            if got is None:
                continue  # ended meanwhile: the next newest
            ns, ns_pid = got
            if ns != self.ns:
                continue  # a task of another namespace (the root of a test's tree)
            advance = pid_advance(self.newest_ns_pid, ns_pid, self.pid_max)
            if ns_pid == self.newest_ns_pid or advance > self.pid_max // 2:
                return False  # counted already (seen by an earlier look)
            self.created += advance
            self.newest_ns_pid = ns_pid
            return True
        return False


class _Watch:
    """Samples of one target."""

    def __init__(self, target: Target, host_pid_max: int, fd_by_size: bool, listen: bool):
        self.target = target
        self.fd_by_size = fd_by_size
        self.listen = listen
        self.snaps: list[dict] = []
        self.prev_tids: set[int] = set()
        self.tids: set[int] = set()
        self.pids: set[int] = set()
        self.new_processes = self.new_threads = 0
        self.births = _Births(host_pid_max)
        self.ctxt = _PerTask()
        self.proc_stat = _PerTask()          # faults and CPU per process, where no cgroup says
        self._alive_procs: set[int] = set()
        self.fd_max_sum = self.fd_max_one = 0
        self.fd_last_sum: int | None = None
        self.passes: list[float] = []
        self.cpus: list[int] | None = None
        self.net_pid: int | None = None
        self.listeners: dict[str, tuple[list[int], int]] = {}   # tcp|tcp6 -> (ports, sockets)
        self.gone: str | None = None
        c = target.cgroups
        self.task_dir = next((c[k] for k in ("pids", "cpuacct", "cpu", "memory") if k in c), None)
        self.procs_need_stat = "memory" not in c or "cpuacct" not in c

    # ---- every tick
    def _list_tasks(self) -> None:
        if self.task_dir is not None:
            # cgroup.procs read on both sides of tasks: a process that ended between two reads
            # would otherwise pass for a thread
            before = read_text(self.task_dir / "cgroup.procs")
            self.tids = {int(x) for x in read_text(self.task_dir / "tasks").split()}
            after = read_text(self.task_dir / "cgroup.procs")
            self.pids = {int(x) for x in before.split()} | {int(x) for x in after.split()}
        else:
            self.tids, self.pids = tree_tasks(self.target.root_pid)

    def light(self, t: float, net_cache: dict) -> dict:
        snap: dict = {"t": t}
        c = self.target.cgroups
        try:
            self._list_tasks()
        except OSError as exc:
            self.gone = f"its tasks could not be read: {exc.strerror}"
            self.tids, self.pids = set(), set()
        host_last = last_pid()  # after the listing: every task listed is behind it
        snap["tasks"] = len(self.tids)
        snap["processes"] = len(self.pids)
        if "cpuacct" in c:
            stat = parse_keyed(read_text(c["cpuacct"] / "cpuacct.stat"))
            snap["cpu_user"] = stat.get("user", 0) / USER_HZ
            snap["cpu_system"] = stat.get("system", 0) / USER_HZ
            snap["cpu_ns"] = int(read_text(c["cpuacct"] / "cpuacct.usage"))
        if "cpu" in c:
            s = parse_keyed(read_text(c["cpu"] / "cpu.stat"))
            snap["throttle"] = (s.get("nr_periods", 0), s.get("nr_throttled", 0),
                                s.get("throttled_time", 0))
        if "memory" in c:
            m = parse_keyed(read_text(c["memory"] / "memory.stat"))
            snap["faults"] = (m.get("total_pgfault", m.get("pgfault", 0)),
                              m.get("total_pgmajfault", m.get("pgmajfault", 0)))
        if "pids" in c:
            snap["pids_current"] = int(read_text(c["pids"] / "pids.current"))
        # tasks created: the new ones since the last tick, and the namespace's newest pid
        new = self.tids - self.prev_tids
        if self.snaps:
            for tid in new:
                if tid in self.pids:
                    self.new_processes += 1
                else:
                    self.new_threads += 1
            found = self.births.update(new, host_last)
            if not found and self.listen and self.task_dir and self.births.reason is None:
                self._look_again()  # the server's only: the others create nothing under load
        else:
            self.births.start(self.tids, host_last)
        self.prev_tids = self.tids
        if len(self.pids) <= FDS_EVERY_TICK:  # a few processes: cheap enough every tick
            snap["fds"] = self._count_fds()
        if self.cpus is None:
            self._find_cpus()
        net = self._net(net_cache)
        if net:
            snap["net"] = net
        self.snaps.append(snap)
        return snap

    def _look_again(self) -> None:
        """Short-lived tasks (a thread per connection lives a fraction of a millisecond) may all
        have ended when the tasks are listed: a few more looks, milliseconds apart, find one of
        them far more often, and each one found brings the count of tasks created up to date."""
        for _ in range(BIRTH_LOOKS):
            time.sleep(0.004)
            tids = {int(x) for x in read_text(self.task_dir / "tasks").split()}
            fresh = tids - self.tids
            self.tids = self.tids | fresh   # not new again at the next tick
            if fresh and self.births.update(fresh, last_pid()):
                return

    def _net(self, cache: dict) -> dict | None:
        """The network namespace's counters, read once per tick per namespace."""
        for attempt in range(2):
            pid = self.net_pid
            if pid is None or attempt:
                pid = self.target.root_pid or (min(self.pids) if self.pids else None)
                self.net_pid = pid
            if pid is None:
                return None
            try:
                ns = os.readlink(f"/proc/{pid}/ns/net")
                key = (ns, self.listen)
                if key not in cache:
                    base = f"/proc/{pid}/net/"
                    sock = parse_sockstat(read_text(base + "sockstat"))
                    sock6 = parse_sockstat(read_text(base + "sockstat6"))
                    entry = {"ns": ns, "counters": net_counters(read_text(base + "netstat"),
                                                                read_text(base + "snmp")),
                             "time_wait": sock.get("TCP", {}).get("tw", 0),
                             "inuse": sock.get("TCP", {}).get("inuse", 0)
                             + sock6.get("TCP6", {}).get("inuse", 0)}
                    if self.listen:
                        entry["listen"] = self._accept_queues(
                            base, sock.get("TCP", {}).get("inuse", 0),
                            sock6.get("TCP6", {}).get("inuse", 0), entry["time_wait"])
                    cache[key] = entry
                return cache[key]
            except OSError:
                self.net_pid = None
        return None

    def _accept_queues(self, base: str, inuse4: int, inuse6: int, tw: int) -> dict | None:
        """{port: accept queue length} of the namespace's listening sockets, or None when not
        read this tick. The kernel lists sockets from one hash table shared by every namespace:
        after the listeners it walks that table until it meets another socket of this namespace,
        all of it (over 10 ms on a busy host) when there is none. So the head is read when the
        namespace has sockets enough to stop that walk early; with listeners alone (sockstat's
        counts, accept queues included, equal to the listeners) every queue is empty."""
        queues: dict[int, int] = {}
        for name, inuse in (("tcp", inuse4), ("tcp6", inuse6)):
            if inuse == 0:
                continue   # no socket of this family: nothing listens on it
            known = self.listeners.get(name)
            others = inuse + tw - (known[1] if known else 0)
            if known and others <= 0:
                queues.update({p: 0 for p in known[0]})
                continue
            if others < MIN_OTHER_SOCKETS:
                return None
            found, count = read_listeners(base + name)
            self.listeners[name] = (sorted(found), count)
            for port, q in found.items():
                queues[port] = queues.get(port, 0) + q
        return queues

    # ---- the per-task pass
    def heavy_size(self) -> int:
        per_process = (1 if self.procs_need_stat else 0) + (len(self.pids) > FDS_EVERY_TICK)
        return len(self.tids) + len(self.pids) * per_process

    def _count_fds(self) -> int:
        total = 0
        for pid in self.pids:
            try:
                n = fd_count(pid, self.fd_by_size)
            except OSError:
                continue  # ended since the processes were listed
            total += n
            self.fd_max_one = max(self.fd_max_one, n)
        self.fd_last_sum = total
        self.fd_max_sum = max(self.fd_max_sum, total)
        return total

    def heavy(self, t: float) -> None:
        switches = {}
        for tid in self.tids:
            try:
                s = parse_status(read_text(f"/proc/{tid}/status"))
                switches[tid] = (s["voluntary"], s["involuntary"])
            except (OSError, KeyError):
                pass  # ended since the tasks were listed
        self.ctxt.update(switches)
        if len(self.pids) > FDS_EVERY_TICK:
            self._count_fds()
        if self.procs_need_stat:
            stats = {}
            for pid in self.pids:
                try:
                    s = parse_pid_stat(read_text(f"/proc/{pid}/stat"))
                except (OSError, ValueError):
                    continue
                stats[pid] = (s["minflt"] + s["cminflt"], s["majflt"] + s["cmajflt"],
                              s["utime"] + s["cutime"], s["stime"] + s["cstime"])
            self.proc_stat.update(stats)
            self._alive_procs = set(stats)
        self.passes.append(t)

    def _find_cpus(self) -> None:
        pid = self.target.root_pid or (min(self.pids) if self.pids else None)
        if pid is not None:
            try:
                self.cpus = parse_status(read_text(f"/proc/{pid}/status")).get("cpus")
            except OSError:
                pass

    # ---- the window
    def summary(self, proc_first: dict, proc_last: dict, window: float) -> dict:
        """This target's figures over the window, with `sources` and `unavailable` (why not)."""
        t = self.target
        if not t.available:
            return {"available": False, "reason": t.reason}
        if len(self.snaps) < 2:
            return {"available": False, "reason": self.gone or "fewer than two samples"}
        a, b = self.snaps[0], self.snaps[-1]
        out: dict = {"available": True}
        unavailable: dict[str, str] = {}
        src: dict[str, str] = {}
        stat_pass = self.procs_need_stat and len(self.passes) >= 2
        alive = self.proc_stat.totals(self._alive_procs) if stat_pass else []

        if "cpu_ns" in a and "cpu_ns" in b:
            cpu = {"user_s": b["cpu_user"] - a["cpu_user"],
                   "system_s": b["cpu_system"] - a["cpu_system"],
                   "total_s": (b["cpu_ns"] - a["cpu_ns"]) / 1e9}
            src["cpu"] = "cgroup cpuacct.usage (total), cpuacct.stat (user, system)"
        elif alive:
            cpu = {"user_s": alive[2] / USER_HZ, "system_s": alive[3] / USER_HZ,
                   "total_s": (alive[2] + alive[3]) / USER_HZ}
            src["cpu"] = ("/proc/<pid>/stat utime+cutime, stime+cstime of the processes alive at "
                          "the last pass")
        else:
            cpu = {}
            unavailable["cpu"] = t.missing.get("cpuacct", "no cpuacct cgroup")
        if cpu:
            cpu["cores"] = cpu["total_s"] / window
        if "throttle" in a and "throttle" in b:
            cpu.update(periods=b["throttle"][0] - a["throttle"][0],
                       throttled_periods=b["throttle"][1] - a["throttle"][1],
                       throttled_s=(b["throttle"][2] - a["throttle"][2]) / 1e9)
            src["throttling"] = "cgroup cpu.stat"
        if self.cpus:
            cpu["softirq_s"] = sum(proc_last["softirq"].get(c, 0) - proc_first["softirq"].get(c, 0)
                                   for c in self.cpus) / USER_HZ
            cpu["softirq_cpus"] = self.cpus
            src["softirq"] = ("/proc/stat softirq of the CPUs it may use (Cpus_allowed_list): all "
                              "work on them, not its alone")
        if cpu:
            out["cpu"] = cpu

        if "faults" in a and "faults" in b:
            major = b["faults"][1] - a["faults"][1]
            out["page_faults"] = {"minor": b["faults"][0] - a["faults"][0] - major, "major": major}
            src["page_faults"] = "cgroup memory.stat total_pgfault, total_pgmajfault"
        elif alive:
            out["page_faults"] = {"minor": alive[0], "major": alive[1]}
            src["page_faults"] = ("/proc/<pid>/stat minflt+cminflt, majflt+cmajflt of the "
                                  "processes alive at the last pass (processes ended unreaped "
                                  "by them are lost)")
        else:
            unavailable["page_faults"] = t.missing.get("memory", "no memory cgroup")

        if len(self.passes) >= 2:
            vol, invol = self.ctxt.totals() or [0, 0]
            out["context_switches"] = {"voluntary": vol, "involuntary": invol,
                                       "tasks_counted": len(self.ctxt.last),
                                       "covered_s": self.passes[-1] - self.passes[0],
                                       "lower_bound": True}
            src["context_switches"] = ("/proc/<tid>/status of every task, per pass: a task's "
                                       "switches after the last pass that saw it are lost")
        else:
            unavailable["context_switches"] = "under two per-task passes within the CPU budget"

        tasks = {"max_alive": max(s.get("pids_current", s["tasks"]) for s in self.snaps),
                 "max_processes": max(s["processes"] for s in self.snaps),
                 "new_processes_seen": self.new_processes, "new_threads_seen": self.new_threads}
        if "pids" in t.cgroups:
            try:
                tasks["peak_since_created"] = int(read_text(t.cgroups["pids"] / "pids.peak"))
            except (OSError, ValueError):
                pass
        if self.births.reason is None:
            tasks["created"] = self.births.created
            src["tasks_created"] = ("the newest pid of its own pid namespace, followed between "
                                    "samples: every process and thread, ended ones included")
        else:
            unavailable["tasks_created"] = self.births.reason
        src["tasks"] = ("pids.current; tasks and cgroup.procs compared between samples "
                        "(new_*_seen, lower bounds)" if self.task_dir
                        else "the process tree, /proc/<pid>/task/<tid>/children")
        out["tasks"] = tasks

        if self.fd_last_sum is not None:
            out["fds"] = {"max_sum": self.fd_max_sum, "max_per_process": self.fd_max_one,
                          "last_sum": self.fd_last_sum}
            how = "size of /proc/<pid>/fd" if self.fd_by_size else "/proc/<pid>/fd entries"
            src["fds"] = (f"{how} of each process, each sample (up to {FDS_EVERY_TICK} processes, "
                          "else per pass)")
        else:
            unavailable["fds"] = "no per-task pass within the CPU budget"

        if "net" in a and "net" in b and a["net"]["ns"] == b["net"]["ns"]:
            ca, cb = a["net"]["counters"], b["net"]["counters"]
            net = {k: cb[k] - ca[k] for k in cb if k in ca}
            tw = [s["net"]["time_wait"] for s in self.snaps if "net" in s]
            net.update(time_wait_max=max(tw), time_wait_end=tw[-1],
                       sockets_inuse_max=max(s["net"]["inuse"] for s in self.snaps if "net" in s),
                       netns=b["net"]["ns"])
            src["net"] = "/proc/<pid>/net/netstat (TcpExt), snmp (Tcp) of its network namespace"
            src["time_wait"] = "/proc/<pid>/net/sockstat tw (= state 06 lines of tcp, tcp6)"
            if self.listen:
                net["accept_queue"], net["accept_queue_unread"] = self._queues()
                src["accept_queue"] = ("rx_queue of the LISTEN lines heading /proc/<pid>/net/tcp, "
                                       "tcp6 (unread: under "
                                       f"{MIN_OTHER_SOCKETS} other sockets, see docs)")
            out["net"] = net
        else:
            unavailable["net"] = "no process to read its network namespace through"

        for controller, why in t.missing.items():
            unavailable.setdefault(f"cgroup {controller}", why)
        out["unavailable"] = unavailable
        out["sources"] = src
        return out

    def _queues(self) -> tuple[dict, int]:
        """Per listening port, max and mean accept queue over the samples that read it: the
        busiest ports, those that ever held a connection (or all, when none did)."""
        ports: dict[int, list[int]] = {}
        unread = 0
        for s in self.snaps:
            listen = s.get("net", {}).get("listen")
            unread += listen is None
            for port, q in (listen or {}).items():
                ports.setdefault(port, []).append(q)
        busy = [p for p in ports if max(ports[p])] or list(ports)
        busy = sorted(busy, key=lambda p: (-max(ports[p]), p))[:LISTENERS_KEPT]
        return {str(p): {"max": max(ports[p]), "mean": sum(ports[p]) / len(ports[p])}
                for p in busy}, unread

    def rows(self) -> list[list]:
        """At most one point a second: the first sample nearest each whole second (ticks come a
        little late on a busy host), each point a delta from the one before; the last sample,
        taken when the window closes, ends the last point."""
        kept = self.snaps[:1]
        for s in self.snaps[1:]:
            if round(s["t"]) > round(kept[-1]["t"]):
                kept.append(s)
        last = self.snaps[-1]
        if len(kept) > 1 and kept[-1] is not last:
            if last["t"] - kept[-1]["t"] < 0.5:
                kept[-1] = last
            else:
                kept.append(last)
        rows = []
        for prev, s in zip(kept, kept[1:]):
            dt = max(1e-6, s["t"] - prev["t"])
            cores = ((s["cpu_ns"] - prev["cpu_ns"]) / 1e9 / dt
                     if "cpu_ns" in s and "cpu_ns" in prev else None)
            net, pnet = s.get("net"), prev.get("net")
            same_ns = bool(net and pnet and net["ns"] == pnet["ns"])
            row = [s["t"], cores, s.get("pids_current", s["tasks"]), s.get("fds"),
                   net["time_wait"] if net else None,
                   sum(net["listen"].values()) if net and net.get("listen") is not None else None]
            for key in ("listen_overflows", "syn_retrans"):
                row.append(net["counters"].get(key, 0) - pnet["counters"].get(key, 0)
                           if same_ns else None)
            rows.append(row)
        return rows


# ------------------------------------------------------------------ the sampler

class EvidenceSampler:
    """start() when the measured window opens, stop() when it closes; samples in between on a
    thread of its own every `every_s` seconds.

    containers: service -> [container id | docker Container | cgroup path | root pid].
    listen_services: the services whose listening sockets' accept queues are followed.
    budget_cores: the sampler's own CPU it aims to stay under; the per-task pass (context
    switches; descriptors of many processes) is spaced out to fit, and says how often it ran."""

    def __init__(self, containers: dict[str, list], every_s: float = 1.0,
                 budget_cores: float = BUDGET_CORES, listen_services=("server",)):
        self.every_s = float(every_s)
        self.budget = float(budget_cores)
        mounts = cgroup_mounts()
        host_max = pid_max()
        by_size = _fd_size_is_count()
        self.services = {service: [_Watch(resolve(spec, mounts), host_max, by_size,
                                          service in listen_services) for spec in specs]
                         for service, specs in containers.items()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._cpu = self._pass_cpu = 0.0
        self._tokens = 0.0
        self._passes = 0
        self._per_item = 15e-6   # a first guess at one /proc file read, replaced once measured
        self._last_refill = 0.0
        self._proc: list[dict] = []
        self._errors: list[str] = []

    def _watches(self) -> list[_Watch]:
        return [w for group in self.services.values() for w in group if w.target.available]

    def _tick(self) -> None:
        c0 = time.thread_time()
        t = time.monotonic() - self._t0
        cache: dict = {}
        for w in self._watches():
            try:
                w.light(t, cache)
            except OSError as exc:  # the container ended: what was sampled stays
                w.gone = w.gone or f"stopped being readable at {t:.1f} s: {exc.strerror}"
            except (ValueError, KeyError, IndexError) as exc:  # a file cut short: the next tick
                self._errors.append(f"{type(exc).__name__}: {exc}"[:200])
        proc = parse_proc_stat(read_text("/proc/stat"))
        proc["t"] = t
        self._proc.append(proc)
        light = time.thread_time() - c0
        # The per-task pass when the budget allows: the budget accrues with time, every tick's
        # light reads spend it, a pass spends it when it has as much as the pass should cost.
        # The first pass is made at once for a base, unless it would cost too much by itself.
        self._tokens += self.budget * (t - self._last_refill) - light
        self._last_refill = t
        size = sum(w.heavy_size() for w in self._watches())
        cost = size * self._per_item
        if self._tokens >= cost if self._passes else cost <= MAX_FIRST_PASS_S:
            h0 = time.thread_time()
            for w in self._watches():
                w.heavy(t)
            spent = time.thread_time() - h0
            self._passes += 1
            self._pass_cpu += spent
            self._tokens -= spent
            if size:
                self._per_item = max(1e-6, spent / size)
        self._cpu += time.thread_time() - c0

    def _safe_tick(self) -> None:
        """A tick that fails (a file read as the kernel rewrote it, say) is noted, not fatal."""
        try:
            self._tick()
        except Exception as exc:  # noqa: BLE001 - the evidence must never fail the run
            self._errors.append(f"{type(exc).__name__}: {exc}"[:200])

    def _run(self) -> None:
        k = 1
        while not self._stop.wait(max(0.0, self._t0 + k * self.every_s - time.monotonic())):
            self._safe_tick()
            # a late tick (a busy host) is not caught up with a burst of others
            k = max(k + 1, int((time.monotonic() - self._t0) / self.every_s) + 1)

    def start(self) -> "EvidenceSampler":
        self._t0 = time.monotonic()
        self._safe_tick()
        self._thread = threading.Thread(target=self._run, name="evidence", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._safe_tick()
        c0 = time.thread_time()
        if len(self._proc) < 2:
            return {"available": False, "window_s": 0.0, "sampler_cpu_s": round(self._cpu, 4),
                    "reason": "; ".join(self._errors[:3]) or "fewer than two samples"}
        first, last = self._proc[0], self._proc[-1]
        window = max(1e-6, last["t"] - first["t"])
        services = {service: _service_summary(watches, first, last, window)
                    for service, watches in self.services.items()}
        out = {"window_s": window, "every_s": self.every_s, "samples": len(self._proc),
               "services": services, "sources": _shared_sources(services),
               "machine": {"processes_created": last["processes"] - first["processes"],
                           "context_switches": last["ctxt"] - first["ctxt"],
                           "source": "/proc/stat processes, ctxt: the whole machine"},
               "per_task_pass": {"passes": self._passes, "cpu_s": self._pass_cpu,
                                 "every_s": window / max(1, self._passes - 1),
                                 "budget_cores": self.budget}}
        if self._errors:
            out["sampler_errors"] = {"count": len(self._errors), "first": self._errors[0]}
        self._cpu += time.thread_time() - c0
        out["sampler_cpu_s"] = self._cpu
        out["sampler_cpu_share"] = self._cpu / window
        return _rounded(out)


def _service_summary(watches: list[_Watch], first: dict, last: dict, window: float) -> dict:
    """One service: its containers' figures added up (a service usually has one)."""
    if not watches:
        return {"available": False, "reason": "no container of this service on this host"}
    parts = [w.summary(first, last, window) for w in watches]
    ok = [(w, p) for w, p in zip(watches, parts) if p["available"]]
    if not ok:
        return {"available": False, "reason": "; ".join(sorted({p["reason"] for p in parts}))}
    out = ok[0][1] if len(ok) == 1 else _added([p for _, p in ok])
    out["containers"] = len(watches)
    if len(ok) < len(watches):
        out["missing_containers"] = [p["reason"] for p in parts if not p["available"]]
    out["per_s"] = _rates(out, window)
    out["series"] = _columns(_added_rows([w.rows() for w, _ in ok]))
    if not out["unavailable"]:
        del out["unavailable"]
    return out


def _shared_sources(services: dict) -> dict:
    """Sources said once for all services; a service keeps in its own `sources` only those that
    differ (a process tree rather than a container, say)."""
    shared: dict[str, str] = {}
    for ev in services.values():
        for k, v in ev.get("sources", {}).items():
            shared.setdefault(k, v)
    for ev in services.values():
        if "sources" in ev:
            own = {k: v for k, v in ev["sources"].items() if shared.get(k) != v}
            if own:
                ev["sources"] = own
            else:
                del ev["sources"]
    return shared


def _added(parts: list[dict]) -> dict:
    """Figures of several containers of one service: counts added, maxima of each added (an upper
    bound of the service's), non-numbers from the first."""
    out = {"available": True, "sources": parts[0]["sources"],
           "unavailable": {k: v for p in parts for k, v in p["unavailable"].items()}}
    for group in ("cpu", "page_faults", "context_switches", "tasks", "fds", "net"):
        found = [p[group] for p in parts if group in p]
        merged: dict = {}
        for d in found:
            for k, v in d.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    merged.setdefault(k, v)
                else:
                    merged[k] = merged.get(k, 0) + v
        if found:
            out[group] = merged
    return out


def _added_rows(all_rows: list[list[list]]) -> list[list]:
    """Points of the same ticks added up (every container is sampled in each tick)."""
    by_t: dict[float, list] = {}
    for rows in all_rows:
        for row in rows:
            acc = by_t.setdefault(row[0], [row[0]] + [None] * (len(row) - 1))
            for col, v in enumerate(row[1:], 1):
                if v is not None:
                    acc[col] = v if acc[col] is None else acc[col] + v
    return [by_t[t] for t in sorted(by_t)]


def _columns(rows: list[list]) -> dict[str, list]:
    """Rows as columns, leaving out those with nothing in them and, past two points, those that
    never change (their value is the figures' max)."""
    out = {}
    for i, name in enumerate(SERIES_COLUMNS):
        col = [round(v, 2) if isinstance(v, float) else v for v in (r[i] for r in rows)]
        if all(v is None for v in col) or (i and len(col) > 2 and len(set(col)) == 1):
            continue
        out[name] = col
    return out


def _rates(out: dict, window: float) -> dict:
    """Per second of the window (context switches: of the span their passes covered); zeros left
    out."""
    rates = {}
    for group, keys in (("context_switches", ("voluntary", "involuntary")),
                        ("page_faults", ("minor", "major")), ("tasks", ("created",)),
                        ("net", tuple(NETSTAT_FIELDS.values()))):
        span = out.get(group, {}).get("covered_s") or window
        for k in keys:
            v = out.get(group, {}).get(k)
            if v and not isinstance(v, bool):
                rates["tasks_created" if group == "tasks" else k] = v / max(1e-6, span)
    return rates


def _rounded(value):
    """Short figures: a compact record for every run."""
    if isinstance(value, float):
        return round(value, 4) if abs(value) < 10 else round(value, 1)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
