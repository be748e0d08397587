"""Removes what runs left behind: compose projects and swarm stacks whose name has a prefix."""
from __future__ import annotations

import docker
from docker.errors import APIError, NotFound

PROJECT_LABEL = "com.docker.compose.project"
STACK_LABEL = "com.docker.stack.namespace"


def _owned(labels: dict | None, prefix: str) -> bool:
    labels = labels or {}
    return any(str(labels.get(k, "")).startswith(prefix) for k in (PROJECT_LABEL, STACK_LABEL))


def remove_leftovers(prefix: str) -> list[str]:
    """Services, containers, networks and volumes of projects named `prefix*`; returns what went."""
    client = docker.from_env()
    removed: list[str] = []
    try:
        services = client.services.list()
    except APIError:  # not a swarm manager: no services to look at
        services = []
    for service in services:
        if _owned(service.attrs.get("Spec", {}).get("Labels"), prefix):
            _try(service.remove, removed, f"service {service.name}")
    for container in client.containers.list(all=True):
        if _owned(container.labels, prefix):
            _try(lambda: container.remove(force=True, v=True), removed, f"container {container.name}")
    for network in client.networks.list():
        if _owned(network.attrs.get("Labels"), prefix):
            _try(network.remove, removed, f"network {network.name}")
    for volume in client.volumes.list():
        if _owned(volume.attrs.get("Labels"), prefix):
            _try(lambda: volume.remove(force=True), removed, f"volume {volume.name}")
    return removed


def _try(action, removed: list[str], what: str) -> None:
    try:
        action()
        removed.append(what)
    except NotFound:
        pass
