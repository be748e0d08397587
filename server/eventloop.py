"""The event loop of the poll and epoll servers: one thread, non-blocking sockets, and a
non-blocking Redis link whose replies hiredis' Reader parses. Commands of every client whose
request completed in one loop iteration go to Redis in one write; Redis answers in order.

The poller (poll.py or epoll.py) is the only part that differs between the two servers.
"""
import collections
import errno
import os
import socket
import time

import hiredis

from server.app import App
from server.redis_link import CONNECT_TIMEOUT as REDIS_CONNECT_TIMEOUT
from server.redis_link import IO_TIMEOUT as REDIS_REPLY_TIMEOUT
from server.runtime import (ACCEPT_EXHAUSTED, LINGER_BYTES, LINGER_SECONDS, ServerStop, announce, listen,
                            log_error, stop_on_signals)

READ = 0x001    # POLLIN == EPOLLIN
WRITE = 0x004   # POLLOUT == EPOLLOUT
RECV_SIZE = 65536
ACCEPT_BATCH = 64
REDIS_RETRY_DELAY = 0.1


class Client:
    __slots__ = ("fd", "conn", "deadline", "out", "waiting", "draining", "drained")

    def __init__(self, fd, conn, deadline):
        self.fd = fd
        self.conn = conn
        self.deadline = deadline
        self.out = None         # response bytes not yet written
        self.waiting = False    # its RedisCall is with Redis
        self.draining = False   # answered early; reading what is left before closing
        self.drained = 0


class EventLoop:
    def __init__(self, config, poller):
        self.config = config
        self.poller = poller
        self.edge = poller.edge
        self.app = App(config.root)
        self.timeout = config.read_timeout
        self.clients = {}
        # (deadline, client) in the order they were set, one queue per length of timeout (the
        # read timeout; LINGER_SECONDS after an early answer), so each queue's earliest deadline
        # is at its left.
        self.deadlines = collections.deque()
        self.lingers = collections.deque()
        self.redis = RedisChannel(self, config.redis_host, config.redis_port)
        self.now = time.monotonic()
        self.sock = None

    def run(self):
        self.sock = listen(self.config)
        self.sock.setblocking(False)
        self.listen_fd = self.sock.fileno()
        self.poller.register(self.listen_fd, READ)
        stop_on_signals()
        announce(self.sock, self.config)
        try:
            while True:
                self.tick()
        except ServerStop:
            pass
        finally:
            self.close_all()

    def tick(self):
        timeout = 1.0
        for queue in (self.deadlines, self.lingers):
            if queue:
                timeout = min(timeout, max(0.0, queue[0][0] - self.now))
        if self.redis.deadline:
            timeout = min(timeout, max(0.0, self.redis.deadline - self.now))
        events = self.poller.poll(timeout)
        self.now = time.monotonic()
        clients = self.clients
        redis_fd = self.redis.fd
        for fd, mask in events:
            if fd == self.listen_fd:
                self.accept_clients()
            elif fd == redis_fd:
                self.redis.on_event(mask)
                redis_fd = self.redis.fd
            else:
                client = clients.get(fd)
                if client is None:
                    continue
                try:
                    if client.out is not None:
                        self.write_client(client)
                    elif client.draining:
                        self.drain_client(client)
                    else:
                        self.read_client(client)
                except Exception:
                    log_error("unexpected error while serving a connection")
                    self.close_client(client)
        self.redis.flush()
        self.expire()

    # Clients

    def accept_clients(self):
        accept = self.sock._accept   # raw fds: no socket object per connection
        register = self.poller.register
        clients = self.clients
        deadline = self.now + self.timeout
        new_connection = self.app.connection
        limit = 1 << 30 if self.edge else ACCEPT_BATCH
        for _ in range(limit):
            try:
                fd, _ = accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:
                if error.errno in ACCEPT_EXHAUSTED:
                    return
                raise
            os.set_blocking(fd, False)
            client = Client(fd, new_connection(), deadline)
            clients[fd] = client
            register(fd, READ)
            self.deadlines.append((deadline, client))

    def read_client(self, client):
        if client.waiting:
            # Data or EOF after a complete request: stop listening until the answer is ready.
            self.poller.modify(client.fd, 0)
            return
        while True:
            try:
                data = os.read(client.fd, RECV_SIZE)
            except BlockingIOError:
                return
            except OSError:
                self.close_client(client)
                return
            answer = client.conn.receive(data)
            if answer is not None:
                break
            if not self.edge:
                return
        if answer.__class__ is bytes:
            self.send(client, answer)
        else:
            client.waiting = True
            self.redis.submit(client, answer)

    def deliver(self, client, answer):
        """The answer to a client whose RedisCall finished (or failed)."""
        if client.fd < 0:
            return
        client.waiting = False
        self.send(client, answer)

    def send(self, client, data):
        if not data:
            self.close_client(client)
            return
        try:
            sent = os.write(client.fd, data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close_client(client)
            return
        if sent == len(data):
            self.finish_client(client)
            return
        client.out = memoryview(data)[sent:]
        self.set_deadline(client)
        self.poller.modify(client.fd, WRITE)

    def write_client(self, client):
        out = client.out
        while out:
            try:
                sent = os.write(client.fd, out)
            except BlockingIOError:
                client.out = out
                return
            except OSError:
                self.close_client(client)
                return
            out = out[sent:]
        client.out = None
        self.finish_client(client)

    def finish_client(self, client):
        if not client.conn.linger:
            self.close_client(client)
            return
        # Answered before the whole request was read: FIN first, then read and drop the rest,
        # so the client sees the answer rather than a reset.
        try:
            sock = socket.socket(fileno=client.fd)
            try:
                sock.shutdown(socket.SHUT_WR)
            finally:
                sock.detach()
        except OSError:
            self.close_client(client)
            return
        client.out = None
        client.draining = True
        client.deadline = self.now + LINGER_SECONDS
        self.lingers.append((client.deadline, client))
        self.poller.modify(client.fd, READ)

    def drain_client(self, client):
        while True:
            try:
                data = os.read(client.fd, RECV_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            client.drained += len(data)
            if not data or client.drained > LINGER_BYTES:
                self.close_client(client)
                return
            if not self.edge:
                return

    def set_deadline(self, client):
        client.deadline = self.now + self.timeout
        self.deadlines.append((client.deadline, client))

    def close_client(self, client):
        fd = client.fd
        if fd < 0:
            return
        client.fd = -1
        del self.clients[fd]
        self.poller.forget(fd)
        os.close(fd)

    def expire(self):
        """Drop clients past their deadline (silent, slow, or not reading their answer)."""
        now = self.now
        for queue in (self.deadlines, self.lingers):
            while queue and queue[0][0] <= now:
                deadline, client = queue.popleft()
                if client.fd >= 0 and client.deadline == deadline and not client.waiting:
                    self.close_client(client)
        redis = self.redis
        if redis.deadline and redis.deadline <= now:
            redis.fail()

    def close_all(self):
        for client in list(self.clients.values()):
            self.close_client(client)
        self.redis.close()
        if self.sock is not None:
            self.sock.close()


class RedisChannel:
    """One non-blocking connection to Redis, opened when first needed and again after a
    failure. A request that cannot reach Redis gets the 503 page from its RedisCall."""

    def __init__(self, loop, host, port):
        self.loop = loop
        self.host = host
        self.port = port
        self.sock = None
        self.fd = -1
        self.connected = False
        self.reader = None
        self.queue = []                       # commands for the next write
        self.out = b""                        # written partially, waiting for WRITE
        self.waiting = collections.deque()    # (client, call) in the order sent
        self.replies = []                     # replies so far for waiting[0]
        self.deadline = 0.0                   # no progress by then: give up the connection
        self.retry_at = 0.0

    def submit(self, client, call):
        if self.sock is None and not self.connect():
            self.loop.deliver(client, call.finish(None))
            return
        self.queue.append(call.commands)
        self.waiting.append((client, call))

    def connect(self):
        now = self.loop.now
        if now < self.retry_at:
            return False
        self.retry_at = now + REDIS_RETRY_DELAY
        try:
            # A name is looked up here, the one blocking step (an IPv4 literal comes back as is).
            address = (socket.gethostbyname(self.host), self.port)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            error = sock.connect_ex(address)
        except OSError:
            return False
        if error not in (0, errno.EINPROGRESS):
            sock.close()
            return False
        self.sock = sock
        self.fd = sock.fileno()
        self.reader = hiredis.Reader()
        self.connected = error == 0
        self.deadline = now + REDIS_CONNECT_TIMEOUT
        self.loop.poller.register(self.fd, READ if self.connected else WRITE)
        return True

    def flush(self):
        """Send every command queued during this loop iteration in one write."""
        if not self.queue or not self.connected:
            return
        data = b"".join(self.queue)
        self.queue.clear()
        if not self.deadline:
            self.deadline = self.loop.now + REDIS_REPLY_TIMEOUT
        if self.out:
            self.out += data
        else:
            self.write(data)

    def write(self, data):
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.fail()
            return
        was_blocked = bool(self.out)
        self.out = data[sent:]
        if self.out and not was_blocked:
            self.loop.poller.modify(self.fd, READ | WRITE)
        elif was_blocked and not self.out:
            self.loop.poller.modify(self.fd, READ)

    def on_event(self, mask):
        if not self.connected:
            if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.fail()
                return
            self.connected = True
            self.deadline = 0.0
            self.loop.poller.modify(self.fd, READ)
            self.flush()
            return
        if mask & WRITE and self.out:
            self.write(self.out)
            if self.sock is None:
                return
        if mask & ~WRITE:
            self.read()

    def read(self):
        reader = self.reader
        while True:
            try:
                data = self.sock.recv(262144)
            except BlockingIOError:
                break
            except OSError:
                self.fail()
                return
            if not data:
                self.fail()
                return
            reader.feed(data)
            if not self.loop.edge:
                break
        waiting = self.waiting
        replies = self.replies
        deliver = self.loop.deliver
        try:
            while True:
                reply = reader.gets()
                if reply is False:
                    break
                if not waiting:
                    raise hiredis.ProtocolError("a reply nobody asked for")
                replies.append(reply)
                client, call = waiting[0]
                if len(replies) == call.replies:
                    waiting.popleft()
                    self.replies = []
                    deliver(client, call.finish(replies))
                    replies = self.replies
        except hiredis.ProtocolError:
            self.fail()
            return
        self.deadline = self.loop.now + REDIS_REPLY_TIMEOUT if waiting else 0.0

    def fail(self):
        """The connection is gone: every request still waiting gets its 503."""
        waiting = self.waiting
        self.waiting = collections.deque()
        self.queue.clear()
        self.replies = []
        self.close()
        for client, call in waiting:
            self.loop.deliver(client, call.finish(None))

    def close(self):
        if self.sock is not None:
            self.loop.poller.forget(self.fd)
            self.sock.close()
        self.sock = None
        self.fd = -1
        self.connected = False
        self.reader = None
        self.out = b""
        self.deadline = 0.0
