"""Blocking Redis links for the architectures that block: they send a RedisCall's commands in one
write and read its replies. The event loops have their own non-blocking link (eventloop.py).

Every link has `for_client()`, the link one client connection uses, and `release(link)` once
that client is served: a process's own connection and the threads' pool serve every client;
RedisPerClient (faithful threads) opens one per client and closes it with the client."""
import socket

import hiredis

from server.timeouts import timeval
from server.variant import variant_of

CONNECT_TIMEOUT = 1.0  # redis-py's pool (threads), the event loops' link
IO_TIMEOUT = 2.0  # bounds connect() too on a RedisConnection; a reply in the event loops
# Packed once: a forked child connects once and pays every call it makes in copied pages.
_IO_TIMEVAL = timeval(IO_TIMEOUT)
# Replies larger than this take several reads; a larger buffer costs every call a bigger
# allocation (pages a forked child then touches for nothing).
REPLY_RECV_SIZE = 8192


class RedisUnavailable(Exception):
    pass


class RedisConnection:
    """One connection owned by one process (iterative server, a forked or preforked child), or
    by one client (faithful threads). It connects on first use and again after any failure;
    with `lookup_once`, to the address redis_address() keeps for the host."""

    def __init__(self, host, port, lookup_once=False):
        self._host = host
        self._port = port
        self._lookup_once = lookup_once
        self._sock = None
        self._reader = None

    def connect_now(self):
        """Connect before the first command (faithful: as ZeroHTTPd does when a process or a
        client starts); a failure is left to the first command, which tries again."""
        if self._sock is None:
            try:
                self._connect()
            except OSError:
                return False
        return True

    def for_client(self):
        return self

    def release(self, link):
        pass

    def call(self, commands, count):
        sock = self._sock
        try:
            if sock is None:
                sock = self._connect()
            sock.sendall(commands)
            reader = self._reader
            replies = []
            while len(replies) < count:
                reply = reader.gets()
                if reply is False:
                    data = sock.recv(REPLY_RECV_SIZE)
                    if not data:
                        raise ConnectionError("redis closed the connection")
                    reader.feed(data)
                else:
                    replies.append(reply)
            return replies
        except (OSError, hiredis.ProtocolError) as error:
            self.close()
            raise RedisUnavailable(str(error)) from None

    def _connect(self):
        # A plain connect(): create_connection() would run getaddrinfo through the idna codec,
        # an import that every forked child would pay again. The kernel applies the send
        # timeout to a blocking connect.
        host = redis_address(self._host) if self._lookup_once else self._host
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _IO_TIMEVAL)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _IO_TIMEVAL)
            sock.connect((host, self._port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            if self._lookup_once:
                forget_address(self._host)
            raise
        self._sock = sock
        self._reader = hiredis.Reader()
        return sock

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class RedisPool:
    """Connections shared by threads: a thread-safe redis-py pool (hiredis parses the replies)."""

    def __init__(self, host, port):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._errors = (redis.RedisError, OSError)
        # No retries: a failed call answers 503 at once and the next one reconnects.
        self._pool = redis.ConnectionPool(host=host, port=port, protocol=2,
                                          socket_connect_timeout=CONNECT_TIMEOUT,
                                          socket_timeout=IO_TIMEOUT, retry=Retry(NoBackoff(), 0))

    def for_client(self):
        return self

    def release(self, link):
        pass

    def call(self, commands, count):
        pool = self._pool
        try:
            conn = pool.get_connection()
        except self._errors as error:
            raise RedisUnavailable(str(error)) from None
        try:
            conn.send_packed_command((commands,), check_health=False)
            return [conn.read_response() for _ in range(count)]
        except self._errors as error:
            conn.disconnect()
            raise RedisUnavailable(str(error)) from None
        finally:
            pool.release(conn)

    def close(self):
        self._pool.disconnect()


class RedisPerClient:
    """faithful threads (ZeroHTTPd's threaded and prethreaded servers): every client connection
    gets a Redis connection of its own, opened as the client is taken up and closed with it."""

    def __init__(self, host, port):
        self._host = host
        self._port = port

    def for_client(self):
        link = RedisConnection(self._host, self._port, lookup_once=True)
        link.connect_now()
        return link

    def release(self, link):
        link.close()

    def close(self):
        pass


# Host name -> IPv4 address, for the variant that looks Redis up once (ZeroHTTPd takes an
# address). The forking server fills it before any fork, so that a child connects to the address
# without a lookup of its own (a child that fails forgets it for itself only: the parent keeps
# it, which holds as long as Redis keeps its address, as it does for a server's life in the lab).
_ADDRESSES = {}


def redis_address(host):
    """`host`'s IPv4 address, looked up on first use; the name itself when the lookup fails (the
    connect then fails as it would)."""
    address = _ADDRESSES.get(host)
    if address is None:
        try:
            address = _ADDRESSES[host] = socket.gethostbyname(host)
        except OSError:
            return host
    return address


def forget_address(host):
    """After a failed connect: look the name up again next time (Redis may have moved)."""
    _ADDRESSES.pop(host, None)


def process_redis(config):
    """The one connection of a process that serves its clients one at a time (iterative, a
    forking or preforked child); faithful connects it now, to the address looked up once."""
    variant = variant_of(config.variant)
    link = RedisConnection(config.redis_host, config.redis_port, variant.lookup_once)
    if variant.connect_early:
        link.connect_now()
    return link


def threads_redis(config):
    """What the threads of one process share: a pool (lean) or a connection per client
    (faithful)."""
    if variant_of(config.variant).redis_per_client:
        return RedisPerClient(config.redis_host, config.redis_port)
    return RedisPool(config.redis_host, config.redis_port)
