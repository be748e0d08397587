"""The event loop of the poll and epoll servers: one thread, non-blocking sockets, and
non-blocking Redis links whose replies hiredis' Reader parses, all in the one poll/epoll set:
- lean: one Redis connection for every client (RedisChannel). Commands of every client whose
  request completed in one loop iteration go to Redis in one write; Redis answers in order.
- faithful: as ZeroHTTPd, each client whose request needs Redis gets a connection of its own
  (ClientRedis): connected without blocking, one command at a time, closed once the answer is
  ready. Static files go out with sendfile, as far as the client's socket takes them each time.

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
from server.redis_link import forget_address, redis_address
from server.resp import RedisCall
from server.runtime import (ACCEPT_EXHAUSTED, LINGER_BYTES, LINGER_SECONDS, ServerStop, announce, listen,
                            log_error, stop_on_signals)
from server.variant import variant_of

READ = 0x001    # POLLIN == EPOLLIN
WRITE = 0x004   # POLLOUT == EPOLLOUT
ERROR = 0x008 | 0x010   # POLLERR | POLLHUP == EPOLLERR | EPOLLHUP
RECV_SIZE = 65536
ACCEPT_BATCH = 64
REDIS_RETRY_DELAY = 0.1


class Client:
    __slots__ = ("fd", "conn", "deadline", "out", "file", "sent", "waiting", "redis", "draining",
                 "drained")

    def __init__(self, fd, conn, deadline):
        self.fd = fd
        self.conn = conn
        self.deadline = deadline
        self.out = None         # response bytes not yet written (b"" while a file follows)
        self.file = None        # a FileResponse whose body goes out with sendfile
        self.sent = 0           # bytes of that file sent so far
        self.waiting = False    # its RedisCall is with Redis
        self.redis = None       # faithful: its own Redis connection, while it has one
        self.draining = False   # answered early; reading what is left before closing
        self.drained = 0


class EventLoop:
    def __init__(self, config, poller):
        self.config = config
        self.poller = poller
        self.edge = poller.edge
        self.app = App(config.root, config.variant)
        self.timeout = config.read_timeout
        self.clients = {}
        # (deadline, client) in the order they were set, one queue per length of timeout (the
        # read timeout; LINGER_SECONDS after an early answer), so each queue's earliest deadline
        # is at its left.
        self.deadlines = collections.deque()
        self.lingers = collections.deque()
        # Redis sockets in the poll/epoll set, by descriptor: what handles their events.
        self.links = {}
        links = ClientRedis if variant_of(config.variant).redis_per_client else RedisChannel
        self.redis = links(self, config.redis_host, config.redis_port)
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
        redis_deadline = self.redis.next_deadline()
        if redis_deadline:
            timeout = min(timeout, max(0.0, redis_deadline - self.now))
        events = self.poller.poll(timeout)
        self.now = time.monotonic()
        clients = self.clients
        links = self.links
        for fd, mask in events:
            if fd == self.listen_fd:
                self.accept_clients()
            else:
                client = clients.get(fd)
                if client is None:
                    link = links.get(fd)
                    if link is not None:
                        try:
                            link.on_event(mask)
                        except Exception:
                            log_error("unexpected error on a Redis connection")
                            link.fail()
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
        if answer.__class__ is RedisCall:
            client.waiting = True
            self.redis.submit(client, answer)
        else:
            self.send(client, answer)

    def deliver(self, client, answer):
        """The answer to a client whose RedisCall finished (or failed): the response, or the
        next RedisCall."""
        if client.fd < 0:
            return
        if answer.__class__ is RedisCall:
            self.redis.submit(client, answer)
            return
        client.waiting = False
        self.send(client, answer)

    def send(self, client, data):
        if data.__class__ is not bytes:
            self.send_file(client, data)
            return
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
        if client.file is not None:
            client.out = b""  # still writing: the file follows its head
            self.write_file(client)
            return
        client.out = None
        self.finish_client(client)

    def send_file(self, client, response):
        """A FileResponse: its head, then sendfile from the open file; what the socket does not
        take now goes when it is writable again."""
        client.file = response
        client.sent = 0
        client.out = memoryview(response.head)
        self.write_client(client)
        if client.out is not None and client.fd >= 0:
            self.set_deadline(client)
            self.poller.modify(client.fd, WRITE)

    def write_file(self, client):
        response = client.file
        size = response.size
        while client.sent < size:
            try:
                sent = os.sendfile(client.fd, response.fd, client.sent, size - client.sent)
            except BlockingIOError:
                return
            except OSError:
                self.close_client(client)
                return
            if sent == 0:  # the file shrank after its stat: the response ends short
                self.close_client(client)
                return
            client.sent += sent
        response.close()
        client.file = None
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
        if client.file is not None:
            client.file.close()
            client.file = None
        if client.redis is not None:
            client.redis.close()

    def expire(self):
        """Drop clients past their deadline (silent, slow, or not reading their answer)."""
        now = self.now
        for queue in (self.deadlines, self.lingers):
            while queue and queue[0][0] <= now:
                deadline, client = queue.popleft()
                if client.fd >= 0 and client.deadline == deadline and not client.waiting:
                    self.close_client(client)
        self.redis.expire(now)

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
        self.loop.links[self.fd] = self
        self.loop.poller.register(self.fd, READ if self.connected else WRITE)
        return True

    def next_deadline(self):
        return self.deadline

    def expire(self, now):
        if self.deadline and self.deadline <= now:
            self.fail()

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
            del self.loop.links[self.fd]
            self.loop.poller.forget(self.fd)
            self.sock.close()
        self.sock = None
        self.fd = -1
        self.connected = False
        self.reader = None
        self.out = b""
        self.deadline = 0.0


class ClientRedis:
    """faithful: Redis as ZeroHTTPd's poll and epoll servers reach it: a connection for each
    client whose request needs Redis (ClientRedisLink), in the same poll/epoll set as the
    clients. Every link waits at most REDIS_REPLY_TIMEOUT to connect, and as long for each
    reply; then its client gets the 503 page."""

    def __init__(self, loop, host, port):
        self.loop = loop
        self.host = host
        self.port = port
        # (deadline, link) in the order set: one length of timeout, so the earliest is first.
        self.deadlines = collections.deque()

    def submit(self, client, call):
        link = client.redis
        if link is None:
            link = ClientRedisLink(self, client)
            if not link.connect():
                forget_address(self.host)
                self.loop.deliver(client, call.finish(None))
                return
        link.start(call)

    def address(self):
        # The name is looked up once (a blocking step; ZeroHTTPd takes an IPv4 address), again
        # after a failed connect.
        return (redis_address(self.host), self.port)

    def watch(self, link):
        link.deadline = self.loop.now + REDIS_REPLY_TIMEOUT
        self.deadlines.append((link.deadline, link))

    def flush(self):
        pass  # every link writes its command as soon as it can

    def next_deadline(self):
        deadlines = self.deadlines
        while deadlines and deadlines[0][1].deadline != deadlines[0][0]:
            deadlines.popleft()  # a link that moved on or closed since
        return deadlines[0][0] if deadlines else 0.0

    def expire(self, now):
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, link = deadlines.popleft()
            if link.deadline == deadline:
                link.fail()

    def close(self):
        for link in list(self.loop.links.values()):
            link.close()
        self.deadlines.clear()


class ClientRedisLink:
    """One client's own non-blocking Redis connection (faithful): connect, then for each
    RedisCall of its request write the commands, read the replies and go on with the next
    call, round trip after round trip; closed when the answer is ready, or when it fails (its
    client then gets the call's 503)."""

    __slots__ = ("redis", "loop", "client", "call", "sock", "fd", "connected", "reader", "out",
                 "replies", "deadline", "events")

    def __init__(self, redis, client):
        self.redis = redis
        self.loop = redis.loop
        self.client = client
        self.call = None
        self.sock = None
        self.fd = -1
        self.connected = False
        self.reader = None
        self.out = b""
        self.replies = []
        self.deadline = 0.0
        self.events = 0  # what the poller watches it for

    def connect(self):
        try:
            address = self.redis.address()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            error = sock.connect_ex(address)
        except OSError:
            return False
        if error not in (0, errno.EINPROGRESS):
            sock.close()
            return False
        self.sock = sock
        self.fd = sock.fileno()
        self.connected = error == 0
        self.reader = hiredis.Reader()
        self.client.redis = self
        self.loop.links[self.fd] = self
        # Watched for writing until connected, and while a command waits to go out.
        self.events = WRITE
        self.loop.poller.register(self.fd, WRITE)
        self.redis.watch(self)
        return True

    def start(self, call):
        self.call = call
        self.replies = []
        self.out = call.commands
        if self.connected:
            self.write()

    def on_event(self, mask):
        if not self.connected:
            if not mask & (WRITE | ERROR):
                return  # not about this connect (a descriptor number reused within one wake-up)
            if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                forget_address(self.redis.host)
                self.fail()
                return
            self.connected = True
        if self.out:
            if mask & (WRITE | ERROR):
                self.write()
            return
        if mask & (READ | ERROR):
            self.read()

    def write(self):
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.fail()
            return
        self.out = self.out[sent:]
        if self.out:
            self.watch_for(WRITE)
        else:  # the whole command is out: wait for its replies
            self.watch_for(READ)
            self.redis.watch(self)

    def watch_for(self, events):
        if self.events != events:
            self.events = events
            self.loop.poller.modify(self.fd, events)

    def read(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            except OSError:
                self.fail()
                return
            if not data:
                self.fail()
                return
            self.reader.feed(data)
            if not self.loop.edge:
                break
        replies = self.replies
        call = self.call
        try:
            while len(replies) < call.replies:
                reply = self.reader.gets()
                if reply is False:
                    return  # more to come
                replies.append(reply)
        except hiredis.ProtocolError:
            self.fail()
            return
        answer = call.finish(replies)
        if answer.__class__ is RedisCall:  # the next round trip, on this same connection
            self.start(answer)
            return
        self.close()
        self.loop.deliver(self.client, answer)

    def fail(self):
        """The connection failed or timed out: the client gets its call's 503."""
        call = self.call
        self.close()
        if call is not None:
            self.loop.deliver(self.client, call.finish(None))

    def close(self):
        if self.sock is None:
            return
        del self.loop.links[self.fd]
        self.loop.poller.forget(self.fd)
        self.sock.close()
        self.sock = None
        self.fd = -1
        self.deadline = 0.0
        self.client.redis = None
