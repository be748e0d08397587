"""A run's services as a Docker Swarm stack, on the swarm the Docker client points at.

The same images and agent protocol as on Compose. What differs, and is recorded with every
result: CPU sets become CPU-count limits (Swarm cannot pin), and services are placed by node
labels rather than on this machine. Across nodes, every run also records which node ran what,
the CPU limit each task got, each node's clock offset to the controller (from its agent's wall
clock) and the generators' start skew with those offsets taken out; a node that goes away
fails the run naming it (node_trouble()), and no new environment starts while the generators
would have fewer nodes than the swarm has (bring the node back, or ask for fewer generators).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from urllib.parse import urlsplit

import docker
from docker.errors import APIError, NotFound

from lab.cleanup import STACK_LABEL
from lab.environment import TeardownError
from lab.environment.compose import AGENT_PORT, SERVICES, replicas
from lab.scenario import ROOT, Scenario, ScenarioError, parse_cpuset, resolved_constraints

STACK_FILE = ROOT / "compose" / "swarm-stack.yml"
# Seconds after `docker stack rm` past which a task container still running is removed by force
# (the services' stop_grace_period is 10 s).
STRAGGLER_GRACE_S = 30
SERVER_LABEL, LOAD_LABEL = "zerolab.server", "zerolab.load"
CLOCK_SAMPLES = 5      # health round trips per agent; the shortest one gives the clock offset
# Seconds a lost generator's node is given to be marked down by the manager (its heartbeat
# period is 5 s), so that the failure can say what Swarm saw.
NODE_DOWN_WAIT_S = 30


def check_swarm_constraints(scenario: Scenario) -> None:
    """Refuse CPU pinning Swarm cannot give, unless the scenario accepts CPU-count limits; and a
    server other than the lab's own, whose image, command and health check only Compose takes
    (compose/server-<impl>.yml) so far."""
    if scenario.server.impl != "python":
        raise ScenarioError(f"scenario {scenario.name!r} on Swarm", [
            f"server.impl: {scenario.server.impl} runs on Compose only (ENGINE=compose); the stack "
            "file has the lab's Python server alone"])
    cpusets = resolved_constraints(scenario)["cpusets"]
    if cpusets and not scenario.accept_weaker_cpu_limits:
        pinned = ", ".join(f"{svc}={cpus}" for svc, cpus in sorted(cpusets.items()))
        raise ScenarioError(f"scenario {scenario.name!r} on Swarm", [
            f"constraints.cpusets ({pinned}): Swarm cannot pin services to CPUs; set "
            "accept_weaker_cpu_limits: true in the scenario (or pass --accept-weaker-cpu-limits) to run "
            "with limits of the same number of CPUs instead, or run it on Compose"])


class SwarmEnvironment:
    engine = "swarm"

    def __init__(self, project: str, variables: dict[str, str], generators: int = 1,
                 agent_token: str | None = None):
        self.project = project
        self.variables = dict(variables)
        self.generators = generators
        self.agent_token = agent_token  # kept out of `variables`, which results record
        self.client = docker.from_env()
        # This machine's engine (a unix socket) reaches its own tasks on 127.0.0.1; a remote
        # manager (DOCKER_HOST=tcp://...) means every task is reached on its node's address.
        self.local = not str(self.client.api.base_url).startswith(("http://", "https://"))
        self.agents: dict[str, dict] = {}  # agent url -> {"task", "node", "node_id"}
        # Service -> node ids its tasks ran on once the stack was up: Swarm stops listing the
        # tasks of a node it has marked down (restart condition none: it shuts them down).
        self.task_nodes: dict[str, list[str]] = {}
        self._engines: dict[str, docker.DockerClient | None] = {}  # node id -> its engine, see _node_engine()

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> "SwarmEnvironment":
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def stack_variables(self) -> dict[str, str]:
        """CPU sets as Swarm can have them: each task may use as many CPUs as its set holds, and
        tasks that share a set share its reservation (server and Redis on one core reserve half
        a core each), so reservations never exceed what the sets hold."""
        v = dict(self.variables)
        v["ZL_GENERATORS"] = str(self.generators)
        tasks = replicas(self.generators)
        sharing: dict[str, int] = {}
        for service in SERVICES:
            cpuset = v.get(f"ZL_{service.upper()}_CPUSET")
            if cpuset:
                sharing[cpuset] = sharing.get(cpuset, 0) + tasks[service]
        for service in SERVICES:
            cpuset = v.get(f"ZL_{service.upper()}_CPUSET")
            if cpuset:
                n = len(parse_cpuset(cpuset))
                v[f"ZL_{service.upper()}_CPUS"] = str(n)
                v[f"ZL_{service.upper()}_CPUS_RESERVED"] = f"{int(n / sharing[cpuset] * 100) / 100:g}"
        return v

    def up(self, timeout_s: float = 180) -> None:
        self._check_swarm()
        env = os.environ | self.stack_variables()
        if self.agent_token:
            env["ZL_AGENT_TOKEN"] = self.agent_token
        out = subprocess.run(
            ["docker", "stack", "deploy", "--resolve-image", "never", "-c", str(STACK_FILE), self.project],
            env=env, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"docker stack deploy {self.project} failed: {out.stderr.strip() or out.stdout.strip()}")
        self._wait_running(timeout_s)

    def down(self, timeout_s: float = 120) -> None:
        """Removes the stack and returns once none of its services, containers (on this node) and
        networks remain, removing what Swarm leaves behind (a network whose containers are gone).
        A Ctrl-C meanwhile does not abandon it: the wait goes on to its end, then the interrupt
        is raised. Raises TeardownError naming what is still there after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        interrupted: BaseException | None = None
        removed_at: float | None = None
        remaining, reasons = [f"stack {self.project} (not looked at)"], {}
        while True:
            try:
                if removed_at is None:
                    self._stack_rm()
                    removed_at = time.monotonic()
                remaining, reasons = self._remove_stragglers(
                    force=time.monotonic() - removed_at > STRAGGLER_GRACE_S)
                if not remaining or time.monotonic() >= deadline:
                    break
                time.sleep(1)
            except KeyboardInterrupt as exc:  # finish the bounded wait, then let the interrupt go on
                interrupted = exc
                if time.monotonic() >= deadline:
                    break
        if remaining:
            error = TeardownError(f"stack {self.project}: still there {timeout_s:g} s after docker stack rm",
                                  remaining, reasons)
            if interrupted is None:
                raise error
            interrupted.add_note(str(error))  # the interrupt goes on, its traceback says what is left
        if interrupted is not None:
            raise interrupted

    def _stack_rm(self) -> None:
        """`docker stack rm`: removes the services and asks for the networks, which Swarm refuses
        while tasks still use them; _remove_stragglers() finishes the job."""
        try:
            subprocess.run(["docker", "stack", "rm", self.project], capture_output=True, text=True, timeout=60)
        except (subprocess.SubprocessError, OSError):
            pass  # the stragglers' pass removes the services itself

    def _remove_stragglers(self, force: bool = False) -> tuple[list[str], dict[str, str]]:
        """One look at what is left of the stack: services are removed, containers whose service
        is gone and which no longer run (with `force`, also those still running) are removed,
        networks once no container of the stack is left. Returns what is still there and, for
        some, why the engine refused to remove it."""
        label = {"label": f"{STACK_LABEL}={self.project}"}
        reasons: dict[str, str] = {}
        try:
            manager = bool((self.client.info().get("Swarm") or {}).get("ControlAvailable"))
            services = self.client.services.list(filters=label) if manager else []
            containers = self.client.containers.list(all=True, filters=label)
            networks = self.client.networks.list(filters=label)
        except docker.errors.DockerException as exc:
            return [f"stack {self.project} (could not be looked at: {exc})"], {}

        def attempt(what: str, action) -> bool:
            try:
                action()
            except NotFound:
                return True
            except APIError as exc:
                reasons[what] = str(exc.explanation or exc)
                return False
            return True

        remaining = [f"service {s.name}" for s in services
                     if not attempt(f"service {s.name}", s.remove)]
        # Swarm stops a removed service's tasks (with their grace period) and removes their
        # containers itself; what it has stopped and left, or still runs well past the grace
        # period, is removed here.
        live = {s.name for s in services}
        for c in containers:
            what = f"container {c.name}"
            stopped = force or c.status in ("created", "exited", "dead")
            owner = c.labels.get("com.docker.swarm.service.name")
            if not (stopped and owner not in live and attempt(what, lambda c=c: c.remove(force=True, v=True))):
                remaining.append(what)
        for n in networks:
            what = f"network {n.name}"
            if containers or not attempt(what, n.remove):
                remaining.append(what)
        return remaining, reasons

    def restart_server(self, variables: dict[str, str]) -> None:
        """A new server task with the run's options; Redis and the generators stay."""
        self.variables.update({k: str(v) for k, v in variables.items()})
        from lab.plan import SERVER_VARIABLES

        # Not detached: it returns once the old task is gone and the new one runs, so nothing
        # can reach the old server afterwards.
        cmd = ["docker", "service", "update", "--force", "--quiet"]
        for key in SERVER_VARIABLES:
            if key in self.variables:
                cmd += ["--env-add", f"{key}={self.variables[key]}"]
        out = subprocess.run([*cmd, f"{self.project}_server"], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"restarting {self.project}_server failed: {out.stderr.strip() or out.stdout.strip()}")

    def server_identity(self) -> dict:
        """The running server task: which one, on which node, since when."""
        tasks = self._tasks("server")
        running = [t for t in tasks if t["Status"]["State"] == "running"]
        if not running:
            failed = [t for t in tasks if t["Status"]["State"] in ("failed", "rejected", "complete")]
            if failed:
                status = failed[0]["Status"]
                return {"state": "exited", "exit_code": (status.get("ContainerStatus") or {}).get("ExitCode"),
                        "log_tail": status.get("Err") or status.get("Message")}
            return {"state": tasks[0]["Status"]["State"] if tasks else "missing"}
        t = running[0]
        return {"task": t["ID"][:12], "id": ((t["Status"].get("ContainerStatus") or {}).get("ContainerID") or t["ID"])[:12],
                "node": t.get("NodeID"), "started_at": t["Status"].get("Timestamp"), "state": "running"}

    def leftovers(self) -> list[str]:
        """Services of this stack that already exist (an earlier controller's)."""
        try:
            services = self.client.services.list(filters={"label": f"{STACK_LABEL}={self.project}"})
        except APIError:
            return []
        return [f"service {s.name}" for s in services]

    # ------------------------------------------------------------ what the runner reads

    def agent_urls(self) -> list[str]:
        urls = []
        here = self.client.info().get("Name")
        self.agents = {}
        self.task_nodes = {s: [t["NodeID"] for t in self._tasks(s)] for s in SERVICES}
        for task in self._tasks("loadgen"):
            ports = (task.get("Status", {}).get("PortStatus") or {}).get("Ports") or []
            port = next((p["PublishedPort"] for p in ports if p.get("TargetPort") == AGENT_PORT), None)
            if port is None:
                raise RuntimeError(f"generator task {task['ID'][:12]} publishes no agent port")
            url = f"http://{self._node_address(task['NodeID'], here)}:{port}"
            self.agents[url] = {"task": task["ID"][:12], "node_id": task["NodeID"],
                                "node": self._hostname(task["NodeID"])}
            urls.append(url)
        return urls

    def containers(self) -> dict[str, list]:
        """Containers on this node, per service (stats of other nodes need their own engine)."""
        found: dict[str, list] = {s: [] for s in SERVICES}
        for c in self.client.containers.list(filters={"label": f"{STACK_LABEL}={self.project}"}):
            service = c.labels.get("com.docker.swarm.service.name", "").removeprefix(f"{self.project}_")
            if service in found:
                found[service].append(c)
        return found

    def image_ids(self) -> dict[str, str]:
        ids = {}
        for service in SERVICES:
            spec = self.client.services.get(f"{self.project}_{service}").attrs["Spec"]
            image = spec["TaskTemplate"]["ContainerSpec"]["Image"]
            try:
                ids[service] = self.client.images.get(image).id
            except NotFound:
                ids[service] = image
        return ids

    def describe(self) -> dict:
        if not self.agents:
            self.agent_urls()
        nodes = self.node_facts()
        names = {n["id"]: n["hostname"] for n in nodes}
        placement = {s: sorted(names.get(t["NodeID"], t["NodeID"]) for t in self._tasks(s)) for s in SERVICES}
        v = self.stack_variables()
        enforced = [f"{s}: at most {v[f'ZL_{s.upper()}_CPUS']} CPU(s), {v[f'ZL_{s.upper()}_CPUS_RESERVED']} "
                    "reserved per task (deploy.resources)" for s in SERVICES if f"ZL_{s.upper()}_CPUS" in v]
        enforced += [f"{s}: memory {v[f'ZL_{s.upper()}_MEM']}" for s in SERVICES if f"ZL_{s.upper()}_MEM" in v]
        enforced += ["sysctls: somaxconn, ip_local_port_range, tcp_tw_reuse"]
        not_enforced = [f"{s}: cpuset {v[f'ZL_{s.upper()}_CPUSET']} (Swarm cannot pin CPUs)"
                        for s in SERVICES if v.get(f"ZL_{s.upper()}_CPUSET")]
        not_enforced.append(f"nofile {v.get('ZL_NOFILE', '')}: stack services keep the engine's default limit")
        version = self.client.version()
        # Said per node: each applies the limits itself (each run's cpu_limits_applied reads
        # them back per task).
        not_enforced += [f"{node}: {s} cpuset {v[f'ZL_{s.upper()}_CPUSET']} given as a limit of "
                         f"{v[f'ZL_{s.upper()}_CPUS']} CPU(s)"
                         for s in SERVICES if v.get(f"ZL_{s.upper()}_CPUSET") for node in sorted(set(placement[s]))]
        return {"engine": "swarm", "docker_version": version.get("Version"),
                "docker_api_version": version.get("ApiVersion"), "images": self.image_ids(),
                "nodes": nodes, "placement": placement,
                "clock_offsets_s": self.clock_offsets(),
                "constraints": {"enforced": enforced, "not_enforced": not_enforced}}

    # ------------------------------------------------------------ across nodes

    def node_facts(self) -> list[dict]:
        """Each node: its labels, state, cores, memory and Docker version as Swarm knows them,
        and its kernel, which Swarm does not know: the manager's engine says its own, an agent
        says that of its node."""
        info = self.client.info()
        kernels = {info.get("Name"): info.get("KernelVersion")}
        for url, agent in self.agents.items():
            answer = self._health(url)
            if answer and answer.get("kernel"):
                kernels[agent["node"]] = answer["kernel"]
        # The server's node has no agent: Redis, beside the server, says its machine's kernel.
        redis_os = (self._agent_get("/redis/info") or {}).get("os") or ""
        for t in self._tasks("redis"):
            if len(redis_os.split()) >= 2:
                kernels.setdefault(self._hostname(t["NodeID"]), redis_os.split()[1])
        facts = []
        for n in self.client.nodes.list():
            d = n.attrs["Description"]
            facts.append({"id": n.id, "hostname": d["Hostname"], "address": self._address(n),
                          "role": n.attrs["Spec"].get("Role"), "labels": n.attrs["Spec"].get("Labels") or {},
                          "state": n.attrs["Status"].get("State"),
                          "cores": (d.get("Resources") or {}).get("NanoCPUs", 0) / 1e9,
                          "memory_bytes": (d.get("Resources") or {}).get("MemoryBytes"),
                          "docker_version": (d.get("Engine") or {}).get("EngineVersion"),
                          "kernel": kernels.get(d["Hostname"])})
        return facts

    def clock_offsets(self) -> dict[str, dict]:
        """Per node with an agent: its wall clock minus the controller's, in seconds, from the
        health answer with the shortest round trip (offset = agent time - the request's
        midpoint, within +- half that round trip)."""
        offsets: dict[str, dict] = {}
        for url, agent in self.agents.items():
            best = None
            for _ in range(CLOCK_SAMPLES):
                t0 = time.time()
                answer = self._health(url)
                t1 = time.time()
                if answer and "time" in answer and (best is None or t1 - t0 < best[1]):
                    best = (answer["time"] - (t0 + t1) / 2, t1 - t0)
            if best is not None:
                mine = {"offset_s": round(best[0], 6), "uncertainty_s": round(best[1] / 2, 6)}
                known = offsets.get(agent["node"])
                if known is None or mine["uncertainty_s"] < known["uncertainty_s"]:
                    offsets[agent["node"]] = mine
        return offsets

    def run_facts(self, generators: list[dict]) -> dict:
        """What a run across nodes records beside its figures: the node of every task, the CPU
        limit each task got as its node applied it, the clock offsets measured now, and the
        generators' start skew with those offsets taken out."""
        names = {n.id: n.attrs["Description"]["Hostname"] for n in self.client.nodes.list()}
        offsets = self.clock_offsets()
        by_agent = {g.get("agent"): g for g in generators}
        tasks = []
        for service in SERVICES:
            for t in self._tasks(service):
                limits = ((t.get("Spec") or {}).get("Resources") or {}).get("Limits") or {}
                entry = {"service": service, "task": t["ID"][:12], "node": names.get(t["NodeID"], t["NodeID"]),
                         "cpus_limit": limits.get("NanoCPUs", 0) / 1e9 or None}
                entry["applied"] = self._applied_limits(t, by_agent)
                tasks.append(entry)
        starts = []
        for g in generators:
            node = (self.agents.get(g.get("agent")) or {}).get("node")
            g_offset = (offsets.get(node) or {}).get("offset_s")
            if g.get("tool_started_at") is not None and g_offset is not None:
                starts.append(g["tool_started_at"] - g_offset)
        skew = max(starts) - min(starts) if len(starts) == len(generators) and starts else None
        return {"placement": {"tasks": tasks,
                              "generators": [{"agent": g.get("agent"),
                                              "node": (self.agents.get(g.get("agent")) or {}).get("node")}
                                             for g in generators]},
                "clock_offsets_s": offsets,
                "start_skew_across_nodes_s": None if skew is None else round(skew, 6),
                "cpu_limits_applied": {f"{e['service']} {e['task']}": e["applied"] for e in tasks}}

    def _applied_limits(self, task: dict, by_agent: dict) -> dict:
        """A generator's limits as its agent read them inside the task (cgroup quota, affinity);
        another task's from its container, when it runs on the engine this controller talks to."""
        for url, agent in self.agents.items():
            if agent["task"] == task["ID"][:12] and (by_agent.get(url) or {}).get("cpu_limits"):
                return {"source": "the agent, inside the task", **by_agent[url]["cpu_limits"]}
        container_id = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        engine = self._node_engine(task["NodeID"])
        try:
            host = engine.containers.get(container_id).attrs["HostConfig"] if engine and container_id else None
        except docker.errors.DockerException:
            host = None
        if host is None:
            return {"source": "not read back: the engine of the task's node does not answer where the "
                              "manager's does (same port and TLS)"}
        quota, period = host.get("CpuQuota") or 0, host.get("CpuPeriod") or 0
        return {"source": "the container, as its node's engine created it",
                "cpus": (host.get("NanoCpus") or 0) / 1e9 or (quota / period if quota and period else None),
                "cpuset": host.get("CpusetCpus") or None}

    def _node_engine(self, node_id: str) -> docker.DockerClient | None:
        """The engine of a node: the manager's own, or one reached as the manager is (its
        address, the same port and TLS settings); None when it does not answer."""
        if node_id not in self._engines:
            engine = None
            if (self.client.info().get("Swarm") or {}).get("NodeID") == node_id:
                engine = self.client
            elif not self.local:
                kwargs = docker.utils.kwargs_from_env()
                port = urlsplit(self.client.api.base_url).port
                kwargs["base_url"] = f"tcp://{self._address(self.client.nodes.get(node_id))}:{port}"
                try:
                    engine = docker.DockerClient(timeout=10, **kwargs)
                    engine.ping()
                except docker.errors.DockerException:
                    engine = None
            self._engines[node_id] = engine
        return self._engines[node_id]

    def node_trouble(self, agent_url: str | None = None) -> str | None:
        """A sentence naming the nodes of this stack that are gone, or None. A node is suspect
        when the agent at `agent_url` (one that failed) does not answer (its node), or when no
        agent can reach the server any more (the server's node); a suspect node is given a while
        to be marked down by the manager, so that the sentence says what Swarm saw."""
        # silent: the node of an agent that no longer answers, lost even before Swarm sees it
        silent = []
        if agent_url and self._health(agent_url) is None:
            silent.append((self.agents.get(agent_url) or {}).get("node") or agent_url)
        suspects = list(silent)
        if not silent and not self._server_answers():  # a server that merely crashed is its run's result
            suspects += [self._hostname(n) for n in self.task_nodes.get("server", [])]
        deadline = time.monotonic() + (NODE_DOWN_WAIT_S if suspects else 0)
        while True:
            try:
                nodes = {n.id: n.attrs for n in self.client.nodes.list()}
                used = ({t["NodeID"] for s in SERVICES for t in self._tasks(s)}
                        | {n for found in self.task_nodes.values() for n in found})
            except docker.errors.DockerException as exc:
                return f"the swarm manager ({self.client.api.base_url}) cannot be reached: {exc}"
            lost = [f"node {a['Description']['Hostname']} ({self._roles(a)}) is {a['Status'].get('State')}"
                    for node_id, a in nodes.items() if node_id in used and a["Status"].get("State") != "ready"]
            if lost or time.monotonic() >= deadline:
                break
            time.sleep(1)
        for suspect in silent:
            if not any(f"node {suspect} " in line for line in lost):
                lost.append(f"node {suspect} does not answer (Swarm still says it is ready)")
        return "; ".join(lost) or None

    def _server_answers(self) -> bool:
        """Whether any generator's agent still gets an answer from the server."""
        return any((self._agent_get("/probe", url, timeout_s=5) or {}).get("ok") for url in self.agents)

    # ------------------------------------------------------------ helpers

    def _check_swarm(self) -> None:
        info = self.client.info().get("Swarm") or {}
        if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
            raise RuntimeError("ENGINE=swarm needs the Docker client to point at a swarm manager "
                               "(docker swarm init, or DOCKER_HOST of a manager)")
        nodes = self.client.nodes.list()
        labels = [n.attrs["Spec"].get("Labels") or {} for n in nodes]
        for label, role in ((SERVER_LABEL, "the server and Redis"), (LOAD_LABEL, "the generators")):
            if not any(lbl.get(label) == "true" for lbl in labels):
                raise RuntimeError(f"no node is labelled {label}=true for {role}: "
                                   f"docker node update --label-add {label}=true <node>")
        self._check_nodes_ready(nodes)

    def _check_nodes_ready(self, nodes: list) -> None:
        """No environment on a swarm that has lost the server's node, nor one whose generators
        would share fewer nodes than the swarm has for them: that would be another measurement."""
        def labelled(label):
            return [n for n in nodes if (n.attrs["Spec"].get("Labels") or {}).get(label) == "true"]

        def ready(n):
            return n.attrs["Status"].get("State") == "ready" and n.attrs["Spec"].get("Availability") == "active"

        def named(found):
            return ", ".join(f"{n.attrs['Description']['Hostname']} ({n.attrs['Status'].get('State')}, "
                             f"{n.attrs['Spec'].get('Availability')})" for n in found)
        servers = labelled(SERVER_LABEL)
        if not any(ready(n) for n in servers):
            raise RuntimeError(f"no node for the server and Redis is ready: {named(servers)}; bring it "
                               "back, then run the same command again to resume")
        load = labelled(LOAD_LABEL)
        gone = [n for n in load if not ready(n)]
        usable = len(load) - len(gone)
        if gone and usable < self.generators:
            raise RuntimeError(
                f"generator node {named(gone)} is not ready: the {self.generators} generators would "
                f"share {usable} node(s); bring it back and run the same command again to resume, "
                f"or run with --generators {max(1, usable)} (a result of its own)")

    def _tasks(self, service: str) -> list[dict]:
        try:
            svc = self.client.services.get(f"{self.project}_{service}")
        except NotFound:
            return []
        return [t for t in svc.tasks() if t.get("DesiredState") == "running"]

    def _node_address(self, node_id: str, here: str | None) -> str:
        """`here`: the engine's own node name (client.info()["Name"])."""
        node = self.client.nodes.get(node_id)
        if self.local and node.attrs["Description"]["Hostname"] == here:
            return "127.0.0.1"  # this machine's own tasks
        return self._address(node)

    @staticmethod
    def _address(node) -> str | None:
        """A node's address; a manager may report 0.0.0.0 there, its manager address is right."""
        addr = node.attrs["Status"].get("Addr")
        if not addr or addr == "0.0.0.0":
            addr = ((node.attrs.get("ManagerStatus") or {}).get("Addr") or "").rpartition(":")[0] or addr
        return addr

    def _hostname(self, node_id: str) -> str:
        try:
            return self.client.nodes.get(node_id).attrs["Description"]["Hostname"]
        except NotFound:
            return node_id

    @staticmethod
    def _roles(attrs: dict) -> str:
        labels = attrs["Spec"].get("Labels") or {}
        roles = [role for label, role in ((SERVER_LABEL, "server and Redis"), (LOAD_LABEL, "generators"))
                 if labels.get(label) == "true"]
        return ", ".join(roles) or "no lab label"

    def _health(self, url: str) -> dict | None:
        """The agent's full health answer (kernel, wall clock), or None when it does not answer."""
        return self._agent_get("/health", url)

    def _agent_get(self, path: str, url: str | None = None, timeout_s: float = 3) -> dict | None:
        """GET `path` of the agent at `url` (default: the first one) with the environment's
        token; None when it does not answer."""
        url = url or next(iter(self.agents), None)
        if url is None:
            return None
        headers = {"Authorization": f"Bearer {self.agent_token}"} if self.agent_token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{url}{path}", headers=headers),
                                        timeout=timeout_s) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def _wait_running(self, timeout_s: float) -> None:
        """Swarm holds a task in 'starting' until its healthcheck passes, then 'running'."""
        want = replicas(self.generators)
        deadline = time.monotonic() + timeout_s
        pending_since: float | None = None
        while True:
            tasks = {s: self._tasks(s) for s in SERVICES}
            states = {s: [t["Status"]["State"] for t in tasks[s]] for s in SERVICES}
            if all(states[s].count("running") >= n for s, n in want.items()):
                return
            failed = [(s, t) for s in SERVICES for t in tasks[s]
                      if t["Status"]["State"] in ("failed", "rejected", "shutdown", "complete")]
            if failed:
                s, t = failed[0]
                raise RuntimeError(f"{s} task {t['Status']['State']}: {t['Status'].get('Err') or t['Status'].get('Message')}")
            # A task the scheduler cannot place says why (no node with the label, not enough
            # CPUs or memory); waiting longer will not change that.
            unplaced = [(s, t) for s in SERVICES for t in tasks[s]
                        if t["Status"]["State"] == "pending" and t["Status"].get("Err")]
            pending_since = (pending_since or time.monotonic()) if unplaced else None
            if unplaced and time.monotonic() - pending_since > 15:
                s, t = unplaced[0]
                raise RuntimeError(f"{s} task cannot be placed: {t['Status']['Err']}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"stack {self.project} not ready after {timeout_s:g} s: {states}")
            time.sleep(1)
