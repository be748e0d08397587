"""A run's services on this machine, through docker-compose.yml and one compose project per run.

`docker compose` (v2) is used where it exists, Debian's `docker-compose` 1.29 otherwise; both
read the same files. Compose starts and stops things; the Docker SDK inspects them (health,
ports, image ids) and sweeps whatever a failed `down` left behind.
"""
from __future__ import annotations

import functools
import json
import os
import platform
import re
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Optional

import docker
import docker.errors

from lab.cleanup import PROJECT_LABEL
from lab.plan import SERVER_VARIABLES
from lab.environment import TeardownError
from lab.scenario import ROOT

SERVICES = ("redis", "server", "loadgen")  # in start order
AGENT_PORT = 9100
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
# Compose lowercases project names and drops other characters; accepting only names it keeps
# as they are means the label always equals the name we were given.
PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


# The server image of each implementation (ZL_SERVER_IMPL), with what to do when it is missing.
SERVER_IMAGES = {
    "python": ("ZL_SERVER_IMAGE", "zerolab/server", "run `make images` first"),
    "zerohttpd": ("ZL_ZEROHTTPD_IMAGE", "zerolab/zerohttpd",
                  "run `make images ZEROHTTPD=/path/to/zerohttpd` (a checkout of the article's "
                  "servers built with its own `make all`)"),
}


def replicas(generators: int) -> dict[str, int]:
    """Containers (tasks) per service of a run with `generators` load generators."""
    return {"redis": 1, "server": 1, "loadgen": generators}


class ComposeError(RuntimeError):
    """An environment that could not be brought up (the message names the service and why)."""


@functools.lru_cache(maxsize=None)
def compose_command() -> tuple[str, ...]:
    """`docker compose` when the v2 plugin answers, else `docker-compose`: the one place that picks."""
    try:
        if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20).returncode == 0:
            return ("docker", "compose")
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        if subprocess.run(["docker-compose", "version"], capture_output=True, timeout=20).returncode == 0:
            return ("docker-compose",)
    except (OSError, subprocess.SubprocessError):
        pass
    raise ComposeError("neither `docker compose` nor `docker-compose` works on this machine")


def _answers(agent_url: str) -> bool:
    """The agent's unauthenticated health answer (no token needed, and it reveals nothing)."""
    try:
        with urllib.request.urlopen(f"{agent_url}/health", timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


class ComposeEnvironment:
    """One compose project: redis, server and N loadgen replicas with the scenario's constraints."""

    def __init__(self, project: str, variables: dict[str, str], generators: int = 1,
                 root: Path = ROOT, agent_token: Optional[str] = None) -> None:
        if not PROJECT_NAME.match(project):
            raise ValueError(f"compose project name {project!r}: use lowercase letters, digits, '-' and '_'")
        if generators < 1:
            raise ValueError(f"generators={generators}: at least one load generator is needed")
        self.project = project
        self.variables = {k: str(v) for k, v in variables.items()}
        self.generators = generators
        self.agent_token = agent_token  # kept out of `variables`, which results record
        self.root = Path(root)
        self.impl = self.variables.get("ZL_SERVER_IMPL") or "python"
        if self.impl not in ("python", "zerohttpd", "image"):
            raise ValueError(f"ZL_SERVER_IMPL={self.impl!r}: use python, zerohttpd or image")
        # The server service as its implementation has it: image, init, health check.
        self.files = [self.root / "docker-compose.yml", self.root / "compose" / "publish-agents.yml",
                      self.root / "compose" / f"server-{self.impl}.yml"]
        self.command_file: Optional[Path] = None
        if self.impl == "image" and self.variables.get("ZL_SERVER_COMMAND"):
            overrides = Path(tempfile.gettempdir()) / "zerolab-compose"
            self.command_file = overrides / f"{project}.server-command.yml"
            self.files.append(self.command_file)
        self._client: Optional[docker.DockerClient] = None

    # -- context manager: whatever happens inside, the project is removed ------------------------
    def __enter__(self) -> "ComposeEnvironment":
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    # -- compose ---------------------------------------------------------------------------------
    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker.from_env(timeout=60)
        return self._client

    def _env(self) -> dict[str, str]:
        # Only the scenario's variables reach compose: a stray ZL_* or COMPOSE_* in the caller's
        # shell must not change what is measured.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("ZL_") and k not in ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME")}
        env.update(self.variables)
        if self.agent_token:
            env["ZL_AGENT_TOKEN"] = self.agent_token
        return env

    def _write_command_file(self) -> None:
        """The server's command (impl: image) as an override: a list keeps every word as the
        scenario gave it, which no variable in a compose file can."""
        if self.command_file is None:
            return
        command = json.loads(self.variables["ZL_SERVER_COMMAND"])
        self.command_file.parent.mkdir(parents=True, exist_ok=True)
        text = "# Written by lab/environment/compose.py for this environment: the server's command.\n"
        text += 'version: "2.4"\nservices:\n  server:\n    command: ' + json.dumps(command) + "\n"
        self.command_file.write_text(text)

    def _compose(self, *args: str, timeout_s: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        self._write_command_file()
        cmd = [*compose_command(), "-p", self.project]
        for f in self.files:
            cmd += ["-f", str(f)]
        cmd += list(args)
        proc = subprocess.run(cmd, cwd=self.root, env=self._env(), capture_output=True, text=True,
                              timeout=timeout_s)
        if check and proc.returncode != 0:
            raise ComposeError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n"
                                    f"{(proc.stderr or proc.stdout).strip()[-3000:]}")
        return proc

    def up(self, timeout_s: float = 120) -> None:
        """Starts the project and returns once every container is healthy; raises naming the culprit."""
        deadline = time.monotonic() + timeout_s
        self._check_images()
        try:
            self._compose("up", "-d", "--no-build", "--scale", f"loadgen={self.generators}",
                          timeout_s=timeout_s)
        except subprocess.TimeoutExpired:
            raise ComposeError(f"compose up of {self.project} took more than {timeout_s:g} s; "
                                    + self._health_report()) from None
        except ComposeError as exc:
            # Compose stops at the first dependency that never became healthy: say which and why.
            raise ComposeError(f"{exc}\n{self._health_report()}") from None
        self._wait_healthy(deadline, timeout_s)

    def restart_server(self, variables: dict[str, str]) -> None:
        """A new server container with the run's options (architecture, workers, backlog, read
        timeout); Redis and the generators stay as they are.

        The Docker SDK clones the old container's configuration (same image id, name, labels,
        limits, sysctls, network and alias) with the server's variables replaced: compose's own
        `up --force-recreate` does the same in 2-3 s of CLI here, the SDK in well under one, and
        compose's `down` still finds the clone by its labels."""
        self.variables.update({k: str(v) for k, v in variables.items()})
        found = self.containers().get("server") or []
        if len(found) != 1:
            raise ComposeError(f"{self.project}: expected one server container, found {len(found)}")
        old = found[0]
        attrs = old.attrs
        config = {k: v for k, v in attrs["Config"].items() if k != "Hostname"}  # a new one's own
        config["Image"] = attrs["Image"]  # the environment's image, even if rebuilt since
        config["Env"] = [e for e in config.get("Env") or [] if e.split("=", 1)[0] not in SERVER_VARIABLES]
        config["Env"] += [f"{k}={self.variables[k]}" for k in SERVER_VARIABLES if k in self.variables]
        config["HostConfig"] = attrs["HostConfig"]
        config["NetworkingConfig"] = {"EndpointsConfig": {
            name: {"Aliases": [a for a in (net.get("Aliases") or []) if a != old.id[:12]]}
            for name, net in attrs["NetworkSettings"]["Networks"].items()}}
        # Killed, not stopped: it is discarded, and the end of its PID 1 ends every process of
        # its namespace (forked children included) at once.
        old.remove(v=True, force=True)
        created = self.client.api.create_container_from_config(config, name=old.name)
        self.client.api.start(created["Id"])

    def server_identity(self) -> dict:
        """The server container now: which one, since when, and its state."""
        found = self.containers().get("server") or []
        if not found:
            return {"state": "missing"}
        c = found[0]
        state = c.attrs["State"]
        identity = {"container": c.name, "id": c.id[:12], "started_at": state.get("StartedAt"),
                    "state": state.get("Status"), "pid": state.get("Pid")}
        if state.get("Status") in ("exited", "dead"):
            identity["exit_code"] = state.get("ExitCode")
            try:
                identity["log_tail"] = c.logs(tail=10).decode(errors="replace").strip()
            except docker.errors.APIError:
                pass
        return identity

    def leftovers(self) -> list[str]:
        """Containers and networks of this project that already exist (an earlier controller's)."""
        label = {"label": f"{PROJECT_LABEL}={self.project}"}
        return ([f"container {c.name}" for c in self.client.containers.list(all=True, filters=label)]
                + [f"network {n.name}" for n in self.client.networks.list(filters=label)])

    def _check_images(self) -> None:
        """Every image present before compose starts: compose would try a registry for a missing
        one, and the lab runs only images built or brought on this machine."""
        tag = self.variables.get("ZL_TAG") or "latest"
        missing = []
        for service in SERVICES:
            if service == "server" and self.impl == "image":
                ref, fix = self.variables.get("ZL_SERVER_IMAGE_REF") or "", (
                    "build or pull it on this machine first (server.image is used as written; the "
                    "shipped zerolab/nginx comes with `make images`)")
            elif service == "server":
                variable, repo, fix = SERVER_IMAGES[self.impl]
                ref = f"{self.variables.get(variable) or repo}:{tag}"
            else:
                ref = f"{self.variables.get(f'ZL_{service.upper()}_IMAGE') or f'zerolab/{service}'}:{tag}"
                fix = "run `make images` first"
            try:
                self.client.images.get(ref)
            except docker.errors.ImageNotFound:
                missing.append(f"image {ref} not found: {fix}")
        if missing:
            raise ComposeError("; ".join(missing))

    def _wait_healthy(self, deadline: float, timeout_s: float) -> None:
        """Every container running (none exited or unhealthy) and every generator's agent
        answering. Docker's own health checks are not waited for: they run inside the containers,
        on the measured CPUs, so they are rare (every 30 s); the runner checks the server and Redis
        through an agent before each run instead."""
        expected = replicas(self.generators)
        while True:
            by_service = self.containers()
            pending = []
            for service, count in expected.items():
                found = by_service.get(service, [])
                if len(found) != count:
                    pending.append(f"{service}: {len(found)} of {count} containers")
                for c in found:
                    state = c.attrs["State"]
                    health = (state.get("Health") or {}).get("Status")
                    if state["Status"] in ("exited", "dead") or health == "unhealthy":
                        raise ComposeError(self._describe_failure(service, c))
                    if state["Status"] != "running":
                        pending.append(f"{c.name}: {state['Status']}")
            if not pending:
                pending = [f"agent {url}: not answering" for url in self.agent_urls() if not _answers(url)]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise ComposeError(f"{self.project} not ready after {timeout_s:g} s: "
                                        f"{'; '.join(pending)}\n{self._health_report()}")
            time.sleep(0.2)

    def _describe_failure(self, service: str, c) -> str:
        state = c.attrs["State"]
        log = (state.get("Health") or {}).get("Log") or []
        last = log[-1]["Output"].strip() if log else "no healthcheck ran"
        try:
            tail = c.logs(tail=15).decode(errors="replace").strip()
        except docker.errors.APIError:
            tail = ""
        what = (f"exited with code {state.get('ExitCode')}" if state["Status"] in ("exited", "dead")
                else f"is {(state.get('Health') or {}).get('Status') or state['Status']}")
        return (f"service {service} ({c.name}) {what}; last healthcheck: {last[-800:]}"
                + (f"\nits last output:\n{tail}" if tail else ""))

    def _health_report(self) -> str:
        """Every container that is not healthy, with its last healthcheck and output."""
        try:
            lines = [self._describe_failure(service, c)
                     for service, found in self.containers().items() for c in found
                     if (c.attrs["State"].get("Health") or {}).get("Status") != "healthy"]
        except docker.errors.DockerException as exc:
            return f"(could not inspect the containers: {exc})"
        return "\n".join(lines) or "(no container of the project is unhealthy)"

    def down(self) -> None:
        """Removes the project's containers, networks and volumes; safe to call any number of
        times. Raises TeardownError naming whatever is still there afterwards (a network another
        container holds, a container the engine will not remove)."""
        interrupted: Optional[BaseException] = None
        try:
            self._compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout_s=180, check=False)
        except KeyboardInterrupt as exc:  # finish the sweep, then let the interrupt go on
            interrupted = exc
        except (subprocess.SubprocessError, OSError, ComposeError):
            pass
        reasons: dict[str, str] = {}
        remaining = self._sweep(reasons)
        if self.command_file is not None:
            self.command_file.unlink(missing_ok=True)
        if remaining:
            error = TeardownError(f"compose project {self.project}: still there after compose down "
                                  "and the sweep", remaining, reasons)
            if interrupted is None:
                raise error
            interrupted.add_note(str(error))  # the interrupt goes on, its traceback says what is left
        if interrupted is not None:
            raise interrupted

    def _sweep(self, reasons: dict[str, str]) -> list[str]:
        """Whatever still carries the project's label once compose is done (a killed `up`, say);
        returns what is still there then, and why the engine refused it in `reasons`."""
        label = {"label": f"{PROJECT_LABEL}={self.project}"}
        kinds = (("container", lambda: self.client.containers.list(all=True, filters=label),
                  lambda c: c.remove(force=True, v=True)),
                 ("network", lambda: self.client.networks.list(filters=label), lambda n: n.remove()),
                 ("volume", lambda: self.client.volumes.list(filters=label), lambda v: v.remove(force=True)))
        for kind, listing, remove in kinds:
            for obj in listing():
                try:
                    remove(obj)
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as exc:
                    reasons[f"{kind} {obj.name}"] = str(exc.explanation or exc)
        return [f"{kind} {obj.name}" for kind, listing, _ in kinds for obj in listing()]

    # -- inspection ------------------------------------------------------------------------------
    def containers(self) -> dict[str, list]:
        """The project's containers per service, in replica order."""
        found = self.client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"})
        by_service: dict[str, list] = {}
        for c in found:
            by_service.setdefault(c.labels.get(SERVICE_LABEL, "?"), []).append(c)
        for group in by_service.values():
            group.sort(key=lambda c: int(c.labels.get(NUMBER_LABEL) or 0))
        return by_service

    def agent_urls(self) -> list[str]:
        """http://127.0.0.1:PORT of every load-generator agent, in replica order."""
        urls = []
        for c in self.containers().get("loadgen", []):
            bindings = (c.attrs["NetworkSettings"].get("Ports") or {}).get(f"{AGENT_PORT}/tcp") or []
            ports = [b["HostPort"] for b in bindings if b.get("HostIp") in ("127.0.0.1", "")]
            if not ports:
                raise ComposeError(f"{c.name} has no port {AGENT_PORT} published on 127.0.0.1 "
                                        "(is compose/publish-agents.yml in use?)")
            urls.append(f"http://127.0.0.1:{ports[0]}")
        return urls

    def image_ids(self) -> dict[str, str]:
        """The image id each service runs (sha256:...)."""
        return {service: found[0].attrs["Image"] for service, found in self.containers().items() if found}

    def compose_version(self) -> str:
        """e.g. `docker-compose 1.29.2` or `docker compose 2.27.0`."""
        cmd = compose_command()
        out = subprocess.run([*cmd, "version", "--short"], capture_output=True, text=True, timeout=20)
        return f"{' '.join(cmd)} {out.stdout.strip() or 'unknown'}"

    def describe(self) -> dict:
        """What the engine knows, for result.json's environment."""
        info = self.client.info()
        return {
            "engine": "compose",
            "docker_version": self.client.version().get("Version"),
            "compose_version": self.compose_version(),
            "images": self.image_ids(),
            "nodes": [info.get("Name") or platform.node()],
            "cores": info.get("NCPU"),
            "constraints": dict(sorted(self.variables.items())),
        }
