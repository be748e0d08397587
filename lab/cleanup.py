"""Removes what runs left behind: the lab's own objects of compose projects and swarm stacks
whose name has a prefix.

Everything docker-compose.yml and compose/swarm-stack.yml create carries LAB_LABEL beside the
engine's project (or stack) label, and so do the nodes of the multi-node test bed beside its own
(HARNESS_LABEL). Only objects with both are touched: a project of the user's
own that happens to be called `zl...` is left alone. One object that cannot be removed does not
stop the others; the report says what went and what did not, with the reason.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import docker
from docker.errors import APIError, DockerException, NotFound

LAB_LABEL = "io.zerolab.lab"  # value "1" on every container, service, network and volume the lab creates
LAB_LABEL_VALUE = "1"
PROJECT_LABEL = "com.docker.compose.project"
STACK_LABEL = "com.docker.stack.namespace"
# The multi-node test bed's nodes, network and volumes (lab/swarmlab.py): value, its name.
HARNESS_LABEL = "io.zerolab.swarmlab"


def is_lab_object(labels: dict | None, prefix: str) -> bool:
    """True for an object the lab made (LAB_LABEL) of a project, stack or test bed named `prefix*`."""
    labels = labels or {}
    return labels.get(LAB_LABEL) == LAB_LABEL_VALUE and any(
        str(labels.get(k, "")).startswith(prefix) for k in (PROJECT_LABEL, STACK_LABEL, HARNESS_LABEL))


@dataclass
class CleanupReport:
    removed: list[str] = field(default_factory=list)               # "container zl-x_server_1", ...
    failed: list[tuple[str, str]] = field(default_factory=list)    # (what, why)

    @property
    def ok(self) -> bool:
        return not self.failed


def remove_leftovers(prefix: str, client: docker.DockerClient | None = None,
                     settle_s: float = 30.0) -> CleanupReport:
    """Services, containers, networks and volumes of the lab under projects and stacks named
    `prefix*`. Swarm removes a service's tasks in the background, so once a service has been
    removed, what could not be removed yet is tried again for up to `settle_s` seconds."""
    if not prefix:
        raise ValueError("an empty prefix would match every project")
    client = client or docker.from_env(timeout=60)
    report = CleanupReport()
    selector = {"label": f"{LAB_LABEL}={LAB_LABEL_VALUE}"}

    if _is_swarm_manager(client, report):
        for service in _listed(report.failed, "services", lambda: client.services.list(filters=selector)):
            if is_lab_object(service.attrs.get("Spec", {}).get("Labels"), prefix):
                _remove(report, f"service {service.name}", service.remove, report.failed)
    deadline = time.monotonic() + (settle_s if report.removed else 0)

    while True:
        failed: list[tuple[str, str]] = []
        containers = _listed(failed, "containers", lambda: client.containers.list(all=True, filters=selector))
        for container in containers:
            if is_lab_object(container.labels, prefix):
                # v=True: anonymous volumes go with their container
                _remove(report, f"container {container.name}",
                        lambda c=container: c.remove(force=True, v=True), failed)
        for network in _listed(failed, "networks", lambda: client.networks.list(filters=selector)):
            if is_lab_object(network.attrs.get("Labels"), prefix):
                _remove(report, f"network {network.name}", network.remove, failed)
        for volume in _listed(failed, "volumes", lambda: client.volumes.list(filters=selector)):
            if is_lab_object(volume.attrs.get("Labels"), prefix):
                _remove(report, f"volume {volume.name}", lambda v=volume: v.remove(force=True), failed)
        if not failed or time.monotonic() >= deadline:
            report.failed += failed
            return report
        time.sleep(1)


def _is_swarm_manager(client: docker.DockerClient, report: CleanupReport) -> bool:
    try:
        return bool((client.info().get("Swarm") or {}).get("ControlAvailable"))
    except DockerException as exc:
        report.failed.append(("services (is this a swarm manager?)", _reason(exc)))
        return False


def _listed(failed: list, kind: str, listing) -> list:
    """The objects `listing` returns; an error goes to `failed` and the cleanup goes on."""
    try:
        return listing()
    except DockerException as exc:
        failed.append((f"{kind} (could not list them)", _reason(exc)))
        return []


def _remove(report: CleanupReport, what: str, action, failed: list) -> None:
    """`action()` removes `what`: noted in report.removed, or with its reason in `failed`."""
    try:
        action()
    except NotFound:  # gone meanwhile (a swarm task, a concurrent cleanup): nothing left to do
        return
    except DockerException as exc:
        failed.append((what, _reason(exc)))
        return
    report.removed.append(what)


def _reason(exc: Exception) -> str:
    if isinstance(exc, APIError) and exc.explanation:
        return str(exc.explanation)
    return str(exc) or type(exc).__name__
