# The system under test: the server/ package on Debian's python3. Its Python dependencies come
# from the host-built wheelhouse (wheels/ in the build context), each checked against the hashes of
# the lock file (wheels/requirements.txt); nothing reaches PyPI here.
# Layers go from the least to the most often changed: apt, wheels, code.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
RUN useradd --create-home --uid 10001 --user-group zerolab

COPY wheels/ /wheels/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links /wheels --no-cache-dir \
        --disable-pip-version-check --require-hashes -r /wheels/requirements.txt
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8

ENV ZL_ARCH=preforked ZL_VARIANT=lean ZL_WORKERS=4 ZL_BACKLOG=128 ZL_READ_TIMEOUT=5
EXPOSE 8000
# exec: the server is PID 1 and receives SIGTERM from `docker stop` itself.
CMD exec python3 -m server --arch "$ZL_ARCH" --variant "$ZL_VARIANT" --workers "$ZL_WORKERS" \
    --backlog "$ZL_BACKLOG" --read-timeout "$ZL_READ_TIMEOUT" --redis-host redis --host 0.0.0.0 --port 8000
WORKDIR /app

# The code last, so that a change to it rebuilds only these layers.
COPY server/ /app/server/
# Compiled once here: the unprivileged user cannot write __pycache__ at run time.
RUN python3 -m compileall -q /app/server
USER zerolab
