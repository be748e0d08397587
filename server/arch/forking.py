"""Forking: a new process per accepted connection, exiting after it; the parent only accepts and
reaps its children."""
import gc
import os
import signal

from server.app import App
from server.redis_link import RedisConnection
from server.runtime import (ServerStop, accept, announce, die_with_parent, listen, reap,
                            serve_connection, stop_children, stop_on_signals)


def run(config):
    app = App(config.root)
    sock = listen(config)
    children = set()
    parent = os.getpid()
    # Reap as soon as a child exits, so no zombie waits for the next connection.
    signal.signal(signal.SIGCHLD, lambda signum, frame: reap(children))
    stop_on_signals()
    # Objects created so far are shared with every child: keep the collector off them so it
    # does not copy their pages in each child.
    gc.freeze()
    announce(sock, config)
    try:
        while True:
            client = accept(sock)
            if client is None:
                continue
            # SIGCHLD held until the pid is recorded: a child that exits at once cannot be
            # reaped before it is known, and a stale pid is never signalled later.
            signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGCHLD,))
            try:
                pid = os.fork()
                if pid == 0:
                    _child(sock, client, app, config)
                children.add(pid)
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGCHLD,))
            client.close()
    except ServerStop:
        pass
    finally:
        sock.close()
        if os.getpid() == parent:  # not a child that a signal caught right after the fork
            stop_children(children)


def _child(listening, client, app, config):
    # Signal handlers stay as inherited, to spare every child the syscalls: SIGTERM/SIGINT
    # raise ServerStop here too, which ends in the os._exit below; SIGCHLD never comes, as the
    # child has no children.
    try:
        die_with_parent()
        gc.disable()
        listening.close()
        # Never the parent's Redis socket: a fresh connection for this child alone.
        redis = RedisConnection(config.redis_host, config.redis_port)
        serve_connection(client, app, redis, config.read_timeout)
    finally:  # exiting closes the Redis connection too
        os._exit(0)
