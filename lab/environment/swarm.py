"""A run's services as a Docker Swarm stack, on the swarm the Docker client points at.

The same images and agent protocol as on Compose. What differs, and is recorded with every
result: CPU sets become CPU-count limits (Swarm cannot pin), and services are placed by node
labels rather than on this machine.
"""
from __future__ import annotations

import os
import subprocess
import time

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
        for task in self._tasks("loadgen"):
            ports = (task.get("Status", {}).get("PortStatus") or {}).get("Ports") or []
            port = next((p["PublishedPort"] for p in ports if p.get("TargetPort") == AGENT_PORT), None)
            if port is None:
                raise RuntimeError(f"generator task {task['ID'][:12]} publishes no agent port")
            urls.append(f"http://{self._node_address(task['NodeID'], here)}:{port}")
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
        nodes = [{"id": n.id, "hostname": n.attrs["Description"]["Hostname"],
                  "address": n.attrs["Status"].get("Addr"), "role": n.attrs["Spec"].get("Role"),
                  "labels": n.attrs["Spec"].get("Labels") or {}} for n in self.client.nodes.list()]
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
        return {"engine": "swarm", "docker_version": version.get("Version"),
                "docker_api_version": version.get("ApiVersion"), "images": self.image_ids(),
                "nodes": nodes, "placement": placement,
                "constraints": {"enforced": enforced, "not_enforced": not_enforced}}

    # ------------------------------------------------------------ helpers

    def _check_swarm(self) -> None:
        info = self.client.info().get("Swarm") or {}
        if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
            raise RuntimeError("ENGINE=swarm needs the Docker client to point at a swarm manager "
                               "(docker swarm init, or DOCKER_HOST of a manager)")
        labels = [n.attrs["Spec"].get("Labels") or {} for n in self.client.nodes.list()]
        for label, role in ((SERVER_LABEL, "the server and Redis"), (LOAD_LABEL, "the generators")):
            if not any(lbl.get(label) == "true" for lbl in labels):
                raise RuntimeError(f"no node is labelled {label}=true for {role}: "
                                   f"docker node update --label-add {label}=true <node>")

    def _tasks(self, service: str) -> list[dict]:
        try:
            svc = self.client.services.get(f"{self.project}_{service}")
        except NotFound:
            return []
        return [t for t in svc.tasks() if t.get("DesiredState") == "running"]

    def _node_address(self, node_id: str, here: str | None) -> str:
        """`here`: this machine's node name (client.info()["Name"])."""
        node = self.client.nodes.get(node_id)
        if node.attrs["Description"]["Hostname"] == here:
            return "127.0.0.1"  # this machine's own tasks
        return node.attrs["Status"]["Addr"]

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
