# The article's own C servers (ZeroHTTPd), from a checkout the user built with its own Makefile
# (`make images ZEROHTTPD=/path/to/zerohttpd`): the seven binaries, named after their
# architecture, with the public/ and templates/ they open relative to their working directory.
# Nothing here compiles them; a binary that cannot run on this base is refused below.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN useradd --create-home --uid 10001 --user-group zerolab
COPY zerohttpd-check.sh zerohttpd-entrypoint.sh /usr/local/bin/
COPY checkout/ /opt/zerohttpd/
# Fail the build, not a run, when a binary needs a C library this base lacks (or a newer one).
RUN sh /usr/local/bin/zerohttpd-check.sh /opt/zerohttpd

WORKDIR /opt/zerohttpd
USER zerolab
ENV ZL_ARCH=preforked ZL_SERVER_PORT=8000
EXPOSE 8000
ENTRYPOINT ["sh", "/usr/local/bin/zerohttpd-entrypoint.sh"]
