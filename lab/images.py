"""Whether an image is on this machine: the lab runs only images built or brought here."""
from __future__ import annotations

import docker
import docker.errors


def image_present(ref: str) -> bool:
    """True when `ref` (name:tag) is here. Without a reachable engine, True: bringing the
    environment up then fails and says why, which is the clearer message."""
    try:
        client = docker.from_env(timeout=30)
    except docker.errors.DockerException:
        return True
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.DockerException:
        return True
    finally:
        client.close()
