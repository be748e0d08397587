"""A multi-node Docker Swarm on this one machine, to test the lab's Swarm engine across nodes.

Each node is a container of zerolab/swarm-node (docker/swarm-node.Dockerfile) running its own
Docker Engine, on a network of the test bed's own. Node 2 runs the server and Redis
(zerolab.server=true), every other node the generators (zerolab.load=true). Node 1 is the
manager: losing the server's node (or any node but the first) leaves the swarm managed, as a
real swarm whose manager is not the measured machine would be. The lab's
images are loaded into every node (`docker save | docker load`: the nodes reach no registry).
The controller reaches the manager at DOCKER_HOST=tcp://<node 1>:2375, without TLS: this is a
test bed on one machine, not a way to run a real swarm (on real machines, point DOCKER_HOST at
your own manager).

Everything it makes is named zlswarm-* and labelled io.zerolab.swarmlab=<name>, so `down`
(and `lab cleanup`) find all of it, also after a failure.

    python -m lab.swarmlab up [--nodes 3]    prints the DOCKER_HOST to use
    python -m lab.swarmlab status
    python -m lab.swarmlab stop-node N | start-node N
    python -m lab.swarmlab down
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, NotFound

from lab.cleanup import HARNESS_LABEL, LAB_LABEL, LAB_LABEL_VALUE  # HARNESS_LABEL's value: the test bed's name
NAME = "zlswarm"
NODE_IMAGE = "zerolab/swarm-node:latest"
LAB_IMAGES = ("zerolab/redis:latest", "zerolab/server:latest", "zerolab/loadgen:latest")
DAEMON_PORT = 2375
SERVER_LABEL, LOAD_LABEL = "zerolab.server", "zerolab.load"
SERVER_NODE = 2   # the node labelled for the server and Redis; the others for the generators
# The host's hard limit on open files is 20,000 here: the nodes' daemons get what Docker gives,
# and containers in them ask for no more than that.
NODE_FLAGS = dict(cap_add=["ALL"], cap_drop=["SYS_RESOURCE"],
                  security_opt=["seccomp=unconfined", "apparmor=unconfined"], cgroupns="host",
                  # /run on tmpfs: a node stopped and started again finds no stale pid files
                  tmpfs={"/run": ""})


class SwarmLabError(RuntimeError):
    """The test bed could not be brought up or removed; the message names the node and why."""


class SwarmLab:
    def __init__(self, name: str = NAME, client: docker.DockerClient | None = None):
        self.name = name
        self.client = client or docker.from_env(timeout=120)
        self.network_name = f"{name}-net"

    # ------------------------------------------------------------ names and addresses

    def node_name(self, index: int) -> str:
        return f"{self.name}-node{index}"

    def nodes(self) -> list:
        """The node containers, in node order (1 is the manager)."""
        found = self.client.containers.list(all=True, filters={"label": f"{HARNESS_LABEL}={self.name}"})
        return sorted(found, key=lambda c: int(c.labels.get(f"{HARNESS_LABEL}.node", 0)))

    def address(self, container) -> str:
        container.reload()
        net = (container.attrs["NetworkSettings"]["Networks"] or {}).get(self.network_name) or {}
        if not net.get("IPAddress"):
            raise SwarmLabError(f"node {container.name} has no address on {self.network_name} "
                                f"(state {container.status})")
        return net["IPAddress"]

    def docker_host(self) -> str:
        """DOCKER_HOST of the manager (node 1)."""
        nodes = self.nodes()
        if not nodes:
            raise SwarmLabError(f"no test bed {self.name} is up: python -m lab.swarmlab up")
        return f"tcp://{self.address(nodes[0])}:{DAEMON_PORT}"

    def node_client(self, container, timeout: int = 60) -> docker.DockerClient:
        return docker.DockerClient(base_url=f"tcp://{self.address(container)}:{DAEMON_PORT}", timeout=timeout)

    # ------------------------------------------------------------ up

    def up(self, nodes: int = 3, images: tuple[str, ...] = LAB_IMAGES, timeout_s: float = 180) -> dict:
        """N nodes, a swarm across them, labels set, images loaded. Whatever fails on the way
        removes what was made and raises naming the step. Returns seconds per step."""
        if nodes < 2:
            raise SwarmLabError(f"nodes={nodes}: a server node and at least one load node are needed")
        if self.nodes():
            raise SwarmLabError(f"test bed {self.name} exists already: python -m lab.swarmlab down first")
        for image in (NODE_IMAGE, *images):
            try:
                self.client.images.get(image)
            except docker.errors.ImageNotFound:
                fix = "make swarm-lab builds it" if image == NODE_IMAGE else "make images first"
                raise SwarmLabError(f"image {image} not found: {fix}") from None
        seconds: dict[str, float] = {}
        t = time.monotonic()
        try:
            self._start_nodes(nodes)
            containers = self.nodes()
            self._wait_daemons(containers, time.monotonic() + timeout_s)
            seconds["daemons"] = round(time.monotonic() - t, 1)
            t = time.monotonic()
            self._form_swarm(containers)
            seconds["swarm"] = round(time.monotonic() - t, 1)
            t = time.monotonic()
            self._load_images(containers, images)
            seconds["images"] = round(time.monotonic() - t, 1)
        except BaseException:
            self.down()
            raise
        seconds["total"] = round(sum(seconds.values()), 1)
        return seconds

    def _labels(self, index: int | None = None) -> dict[str, str]:
        labels = {HARNESS_LABEL: self.name, LAB_LABEL: LAB_LABEL_VALUE}
        if index is not None:
            labels[f"{HARNESS_LABEL}.node"] = str(index)
        return labels

    def _start_nodes(self, n: int) -> None:
        self.client.networks.create(self.network_name, driver="bridge", labels=self._labels())
        for i in range(1, n + 1):
            name = self.node_name(i)
            # /var/lib/docker on a volume (the host's disk): overlay2 works there, not on the
            # node's own overlay root.
            volume = self.client.volumes.create(name, labels=self._labels(i))
            self.client.containers.run(
                NODE_IMAGE, ["--storage-driver=overlay2", f"--cgroup-parent=/{name}"],
                name=name, hostname=name, detach=True, network=self.network_name,
                labels=self._labels(i), **NODE_FLAGS,
                volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                         volume.name: {"bind": "/var/lib/docker", "mode": "rw"}})

    def _wait_daemons(self, containers: list, deadline: float) -> None:
        for c in containers:
            while True:
                c.reload()
                if c.status != "running":
                    raise SwarmLabError(f"node {c.name} {c.status}: {self._tail(c)}")
                try:
                    self.node_client(c, timeout=5).ping()
                    break
                except (DockerException, OSError, SwarmLabError):
                    if time.monotonic() > deadline:
                        raise SwarmLabError(f"node {c.name}: its Docker Engine did not answer: {self._tail(c)}") from None
                    time.sleep(0.3)

    def _form_swarm(self, containers: list) -> None:
        manager, workers = containers[0], containers[1:]
        server = containers[SERVER_NODE - 1].name
        mc = self.node_client(manager)
        mc.swarm.init(advertise_addr=self.address(manager), listen_addr=f"0.0.0.0:2377")
        token = mc.swarm.attrs["JoinTokens"]["Worker"]
        for w in workers:
            self.node_client(w).swarm.join(remote_addrs=[f"{self.address(manager)}:2377"], join_token=token,
                                           advertise_addr=self.address(w), listen_addr="0.0.0.0:2377")
        self.wait_ready([c.name for c in containers])
        for node in mc.nodes.list():
            hostname = node.attrs["Description"]["Hostname"]
            spec = dict(node.attrs["Spec"])
            label = SERVER_LABEL if hostname == server else LOAD_LABEL
            spec["Labels"] = {**(spec.get("Labels") or {}), label: "true"}
            node.update(spec)

    def wait_ready(self, hostnames: list[str], timeout_s: float = 90) -> None:
        """Until the manager sees each of these nodes ready."""
        mc = self.node_client(self.nodes()[0])
        deadline = time.monotonic() + timeout_s
        while True:
            states = {n.attrs["Description"]["Hostname"]: n.attrs["Status"]["State"] for n in mc.nodes.list()}
            waiting = [h for h in hostnames if states.get(h) != "ready"]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise SwarmLabError(f"nodes not ready after {timeout_s:g} s: "
                                    + ", ".join(f"{h} ({states.get(h, 'not joined')})" for h in waiting))
            time.sleep(0.5)

    def _load_images(self, containers: list, images: tuple[str, ...]) -> None:
        """One `docker save` of every image, loaded by every node at once."""
        if not images:
            return
        with tempfile.TemporaryDirectory(prefix=f"{self.name}-") as tmp:
            archive = Path(tmp) / "images.tar"
            out = subprocess.run(["docker", "save", "-o", str(archive), *images], capture_output=True,
                                 text=True, timeout=600)
            if out.returncode != 0:
                raise SwarmLabError(f"docker save {' '.join(images)} failed: {out.stderr.strip()}")

            def load(c) -> None:
                out = subprocess.run(["docker", "-H", f"tcp://{self.address(c)}:{DAEMON_PORT}", "load", "-q",
                                      "-i", str(archive)], capture_output=True, text=True, timeout=900)
                if out.returncode != 0:
                    raise SwarmLabError(f"node {c.name}: docker load failed: {out.stderr.strip()}")
            with concurrent.futures.ThreadPoolExecutor(len(containers)) as pool:
                for f in [pool.submit(load, c) for c in containers]:
                    f.result()

    # ------------------------------------------------------------ one node down and back

    def stop_node(self, index: int) -> None:
        """The node's container stopped: its engine and every task on it end, as a machine that
        goes away. Its state stays on its volume for start_node()."""
        self.client.containers.get(self.node_name(index)).stop(timeout=5)

    def start_node(self, index: int, timeout_s: float = 120) -> None:
        """The node back, and ready in the swarm again."""
        c = self.client.containers.get(self.node_name(index))
        c.start()
        self._wait_daemons([c], time.monotonic() + timeout_s)
        self.wait_ready([c.name], timeout_s)

    # ------------------------------------------------------------ status and down

    def status(self) -> list[dict]:
        rows = []
        swarm_nodes: dict[str, dict] = {}
        nodes = self.nodes()
        if nodes:
            try:
                for n in self.node_client(nodes[0], timeout=5).nodes.list():
                    swarm_nodes[n.attrs["Description"]["Hostname"]] = n.attrs
            except (DockerException, SwarmLabError, OSError):
                pass
        for c in nodes:
            attrs = swarm_nodes.get(c.name) or {}
            spec = attrs.get("Spec") or {}
            rows.append({"node": c.name, "container": c.status,
                         "address": (c.attrs["NetworkSettings"]["Networks"].get(self.network_name) or {}).get("IPAddress"),
                         "swarm": (attrs.get("Status") or {}).get("State", "-"), "role": spec.get("Role", "-"),
                         "labels": ",".join(k for k, v in (spec.get("Labels") or {}).items() if v == "true")})
        return rows

    def down(self) -> list[str]:
        """Removes the nodes (and with them every swarm task and the swarm itself), their
        volumes, the network and the cgroups the nodes' engines made. Returns what could not be
        removed, with the reason."""
        selector = {"label": f"{HARNESS_LABEL}={self.name}"}
        failed: list[str] = []
        for c in self.client.containers.list(all=True, filters=selector):
            try:
                c.remove(force=True, v=True)
            except NotFound:
                pass
            except APIError as exc:
                failed.append(f"container {c.name}: {exc.explanation or exc}")
        for v in self.client.volumes.list(filters=selector):
            try:
                v.remove(force=True)
            except NotFound:
                pass
            except APIError as exc:
                failed.append(f"volume {v.name}: {exc.explanation or exc}")
        for n in self.client.networks.list(filters=selector):
            try:
                n.remove()
            except NotFound:
                pass
            except APIError as exc:
                failed.append(f"network {n.name}: {exc.explanation or exc}")
        failed += remove_node_cgroups(self.name)
        return failed

    def _tail(self, container) -> str:
        try:
            return container.logs(tail=5).decode(errors="replace").strip() or "no output"
        except DockerException:
            return "no output"


def remove_node_cgroups(name: str, root: Path = Path("/sys/fs/cgroup")) -> list[str]:
    """The nodes' engines put their containers under /<name>-nodeN in every hierarchy of the
    host (cgroupns=host); a node removed by force leaves those directories, empty, behind."""
    failed = []
    for top in sorted(root.glob(f"*/{name}-node*")):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + [top]:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                failed.append(f"cgroup {d}: {exc.strerror}")
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.swarmlab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default=NAME, help="prefix of the test bed's containers, network, volumes")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start N nodes, form the swarm, load the lab's images")
    up.add_argument("--nodes", type=int, default=3)
    sub.add_parser("down", help="remove everything the test bed made")
    sub.add_parser("status", help="the nodes, their addresses and swarm state")
    for verb in ("stop-node", "start-node"):
        sub.add_parser(verb, help=f"{verb.split('-')[0]} node N (1 is the manager)").add_argument("index", type=int)
    args = parser.parse_args(argv)
    lab = SwarmLab(args.name)
    try:
        if args.command == "up":
            seconds = lab.up(args.nodes)
            print(f"test bed {args.name}: {args.nodes} nodes up in {seconds['total']} s ({seconds})")
            print(f"export DOCKER_HOST={lab.docker_host()}")
        elif args.command == "down":
            failed = lab.down()
            for line in failed:
                print(f"not removed: {line}", file=sys.stderr)
            return 1 if failed else 0
        elif args.command == "status":
            rows = lab.status()
            if not rows:
                print(f"no test bed {args.name} is up")
            for r in rows:
                print(f"{r['node']:<16} {r['container']:<8} {r['address'] or '-':<15} {r['swarm']:<8} "
                      f"{r['role']:<8} {r['labels']}")
            if rows:
                print(f"export DOCKER_HOST={lab.docker_host()}")
        elif args.command == "stop-node":
            lab.stop_node(args.index)
        elif args.command == "start-node":
            lab.start_node(args.index)
    except (SwarmLabError, DockerException) as exc:
        print(f"swarmlab: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
