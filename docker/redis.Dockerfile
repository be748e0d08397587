# Redis from Debian's package, without persistence: the guestbook's counter and remarks live in
# memory for the length of a run.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

# The package's own unprivileged user.
USER redis
WORKDIR /var/lib/redis
EXPOSE 6379
# maxclients follows the open-files limit compose sets (Redis keeps 32 descriptors for itself),
# capped so that an unlimited container does not make Redis allocate for a million clients.
CMD ["sh", "-c", "n=$(ulimit -n); m=$((n - 32)); [ \"$m\" -gt 100000 ] && m=100000; exec redis-server --save '' --appendonly no --protected-mode no --bind 0.0.0.0 --port 6379 --maxclients \"$m\""]
