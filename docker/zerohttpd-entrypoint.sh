#!/bin/sh
# Starts one of the article's C servers as they need it: from the checkout's root (they open
# public/ and templates/ relative to the working directory), their port on the command line, and
# Redis as an IPv4 address (they parse it with inet_pton, so a name does not work; the port is
# fixed at 6379 in their sources). ZL_ARCH names the server, ZL_SERVER_PORT its port.
set -eu
cd /opt/zerohttpd
arch="${ZL_ARCH:-}"
case " iterative forking preforked threaded prethreaded poll epoll " in
    *" $arch "*) ;;
    *) echo "zerohttpd: ZL_ARCH='$arch' is none of iterative forking preforked threaded prethreaded poll epoll" >&2
       exit 2 ;;
esac
host="${ZL_REDIS_HOST:-redis}"
# The network's DNS may need a moment after the container starts.
ip=""
tries=0
while :; do
    set -- $(getent ahostsv4 "$host" 2>/dev/null) ""
    ip="$1"
    [ -n "$ip" ] && break
    tries=$((tries + 1))
    if [ "$tries" -ge 100 ]; then
        echo "zerohttpd: cannot resolve $host to an IPv4 address" >&2
        exit 1
    fi
    sleep 0.1
done
echo "zerohttpd: ./$arch ${ZL_SERVER_PORT:-8000} $ip (Redis $host)" >&2
# Their one line per request goes nowhere, as the lab's own servers log nothing per request:
# docker's log pipe would otherwise cost CPU on every request. Errors (stderr) are kept.
exec "./$arch" "${ZL_SERVER_PORT:-8000}" "$ip" >/dev/null
