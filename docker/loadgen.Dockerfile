# A load generator: Debian's wrk, oha built on the host when asked for (oha/oha in the build
# context, empty otherwise), wrk2 when the user supplied one (wrk2/wrk2), and the loadgen/ package
# whose agent the controller drives over HTTP. Python dependencies come from the host-built
# wheelhouse only, each checked against the hashes of the lock file (requirements.txt).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# libssl3 and libgcc-s1 for wrk2 and oha, which are not Debian packages.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv wrk libssl3 libgcc-s1 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
RUN useradd --create-home --uid 10001 --user-group zerolab

COPY wheels/ /wheels/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links /wheels --no-cache-dir \
        --disable-pip-version-check --require-hashes -r /wheels/requirements.txt
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8

# Empty unless TOOLS asked build-images.sh for oha (or it was built before).
COPY oha/ /usr/local/bin/
# Empty unless WRK2 was given to build-images.sh; after oha so that adding it keeps oha's layer.
COPY wrk2/ /usr/local/bin/
# Fail the build, not a run, when a binary built elsewhere does not work on this base.
RUN if [ -e /usr/local/bin/oha ]; then \
        out="$(oha --version 2>&1 || true)"; \
        case "$out" in "oha "*) ;; *) echo "oha does not run in this image: $out" >&2; exit 1 ;; esac; \
    fi \
 && if [ -e /usr/local/bin/wrk2 ]; then \
        out="$(wrk2 -v 2>&1 || true)"; \
        case "$out" in *"wrk 4.0.0"*) ;; *) echo "wrk2 does not run in this image: $out" >&2; exit 1 ;; esac; \
    fi

EXPOSE 9100
CMD ["python3", "-m", "loadgen", "agent", "--port", "9100"]
WORKDIR /app

# The code last, so that a change to it rebuilds only these layers.
COPY loadgen/ /app/loadgen/
RUN python3 -m compileall -q /app/loadgen
USER zerolab
