"""Forking: a new process per accepted connection, exiting after it; the parent only accepts and
reaps its children."""
import _signal
import gc
import os
import signal
import socket

import hiredis

from server.app import App
from server.redis_link import RedisUnavailable, process_redis
from server.resp import encode_command
from server.runtime import (ServerStop, accept_fd, announce, listen, reap, serve_descriptor,
                            stop_children, stop_on_signals)

WARM_UP_ROUNDS = 20
_PING = encode_command(b"PING")
_SIG_BLOCK = int(signal.SIG_BLOCK)
_SIG_UNBLOCK = int(signal.SIG_UNBLOCK)
_SIGCHLD = (int(signal.SIGCHLD),)


def run(config):
    app = App(config.root, config.variant)
    sock = listen(config)
    listening_fd = sock.fileno()
    children = set()
    parent = os.getpid()
    # Reap as soon as a child exits, so no zombie waits for the next connection.
    signal.signal(signal.SIGCHLD, lambda signum, frame: reap(children))
    stop_on_signals()
    _warm_up(app, config)
    # Objects created so far are shared with every child: keep the collector off them so it
    # does not copy their pages in each child.
    gc.collect()
    gc.freeze()
    announce(sock, config)
    try:
        while True:
            fd = accept_fd(sock)
            if fd is None:
                continue
            # SIGCHLD held until the pid is recorded: a child that exits at once cannot be
            # reaped before it is known, and a stale pid is never signalled later. (_signal's
            # own call: signal's wrapper turns every mask into a set of enums, objects whose
            # pages each fork would then copy back.)
            _signal.pthread_sigmask(_SIG_BLOCK, _SIGCHLD)
            try:
                pid = os.fork()
                if pid == 0:
                    _child(listening_fd, fd, app, config)
                children.add(pid)
            finally:
                _signal.pthread_sigmask(_SIG_UNBLOCK, _SIGCHLD)
            os.close(fd)
    except ServerStop:
        pass
    finally:
        sock.close()
        if os.getpid() == parent:  # not a child that a signal caught right after the fork
            stop_children(children)


class _Replies:
    """A stand-in for Redis during the warm-up: an empty guestbook, whichever commands the
    variant sends."""

    REPLIES = {b"LRANGE": [], b"INCR": 0, b"INCRBY": 0, b"GET": b"0", b"RPUSH": 1}

    def call(self, commands, count):
        reader = hiredis.Reader()
        reader.feed(commands)
        return [self.REPLIES[reader.gets()[0]] for _ in range(count)]


def _warm_up(app, config):
    """Serve a few requests over a socket pair before accepting any, so that what a child
    runs is already specialized, cached and allocated here, shared rather than copied."""
    # A real Redis connection, if one is available, for its code path alone: PING changes
    # nothing, and the connection is closed before the first child is forked. Made as a child
    # makes it, so that an address looked up once (faithful) is looked up here, not per child.
    link = process_redis(config)
    try:
        for _ in range(WARM_UP_ROUNDS):
            link.call(_PING, 1)
            link.close()  # each child connects: so does every round
    except RedisUnavailable:
        pass
    finally:
        link.close()
    redis = _Replies()
    for _ in range(WARM_UP_ROUNDS):
        ours, theirs = socket.socketpair()
        with theirs:
            theirs.sendall(b"GET /guestbook HTTP/1.0\r\nHost: warm-up\r\n\r\n")
            serve_descriptor(ours.detach(), app, redis, config.read_timeout)
            while theirs.recv(65536):
                pass


def _child(listening_fd, fd, app, config):
    # Signal handlers stay as inherited, to spare every child the syscalls: SIGTERM/SIGINT
    # raise ServerStop here too, which ends in the os._exit below; SIGCHLD never comes, as the
    # child has no children. No PR_SET_PDEATHSIG either (ctypes is not loaded here): a child
    # whose parent was killed still ends within its timeouts, with its one connection.
    try:
        gc.disable()
        os.close(listening_fd)  # the parent's socket object stays, unused: the child exits
        # Never the parent's Redis socket: a fresh connection for this child alone.
        redis = process_redis(config)
        serve_descriptor(fd, app, redis, config.read_timeout)
    finally:  # exiting closes the Redis connection too
        os._exit(0)
