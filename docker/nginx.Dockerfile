# nginx from Debian's package, serving the Python servers' own public/ (server/public/ in the build
# context): the ceiling every architecture is set beside. One worker process, no keep-alive and
# the article's listen backlog of 10 (docker/nginx.conf), so it does the same job under the same
# accept queue as the servers it is compared with: one request per connection, a file from disk.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /etc/nginx/sites-enabled/*
RUN useradd --create-home --uid 10001 --user-group zerolab

COPY nginx.conf /etc/nginx/zerolab.conf
COPY public/ /srv/public/

USER zerolab
# Fail the build, not a run, on a configuration nginx refuses; as the user it runs as, and
# without keeping the files the test leaves in /tmp.
RUN nginx -e stderr -t -c /etc/nginx/zerolab.conf && rm -rf /tmp/nginx*
EXPOSE 8000
# nginx is PID 1: it stops quickly on SIGTERM, as `docker stop` sends.
CMD ["nginx", "-e", "stderr", "-c", "/etc/nginx/zerolab.conf"]
