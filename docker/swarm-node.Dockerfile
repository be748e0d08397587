# A Docker Engine in a container: one node of the multi-node test bed (lab/swarmlab.py,
# `make swarm-lab`). Debian's docker.io, with what its daemon needs for bridge and overlay
# networks (iptables, iproute2). Built only on request (IMAGES=swarm-node), not by `make images`.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        docker.io iptables iproute2 procps tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

# The daemon listens on its unix socket for `docker` inside the node and, without TLS, on
# port 2375 of the test bed's own network for the controller on the host: a local test bed
# only, never a machine on a real network (--tls=false says so, and spares the 15 s the daemon
# otherwise waits to warn). Static tini, which the engine mounts into containers, is the
# `init: true` of the stack's generators. More daemon flags come as the command's arguments.
VOLUME /var/lib/docker
EXPOSE 2375
ENTRYPOINT ["dockerd", "--host=unix:///var/run/docker.sock", "--host=tcp://0.0.0.0:2375", \
            "--tls=false", "--init-path=/usr/bin/tini-static"]
