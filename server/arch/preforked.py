"""Preforked: a master forks N children that each block in accept() on the inherited listening
socket. The master only supervises (after gunicorn's arbiter): signals are queued and wake its
loop through a pipe; it reaps and replaces children that die, and on SIGTERM/SIGINT stops them
all and exits."""
import gc
import os
import select
import signal

from server.app import App
from server.redis_link import process_redis
from server.runtime import (STOP_SIGNALS, ServerStop, accept, announce, die_with_parent, listen,
                            prepare_die_with_parent, reap, reset_child_signals, serve_connection,
                            stop_children, stop_on_signals)


class Arbiter:
    def __init__(self, config):
        self.config = config
        self.app = App(config.root, config.variant)
        self.sock = None
        self.children = set()
        self.signals = []
        self.wake_r = self.wake_w = -1

    def run(self):
        self.sock = listen(self.config)
        self.setup_signals()
        prepare_die_with_parent()
        gc.freeze()
        try:
            self.manage_children()
            announce(self.sock, self.config)
            while True:
                self.wait()
                while self.signals:
                    sig = self.signals.pop(0)
                    if sig in STOP_SIGNALS:
                        return
                reap(self.children)
                self.manage_children()
        finally:
            self.stop()

    def setup_signals(self):
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        for sig in (*STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(sig, self.queue_signal)

    def queue_signal(self, signum, frame):
        self.signals.append(signum)

    def wait(self):
        """Sleep until a signal arrives (or a second passes)."""
        try:
            ready, _, _ = select.select([self.wake_r], [], [], 1.0)
            if ready:
                while os.read(self.wake_r, 4096):
                    pass
        except (BlockingIOError, InterruptedError):
            pass

    def manage_children(self):
        while len(self.children) < self.config.workers:
            self.spawn_child()

    def spawn_child(self):
        pid = os.fork()
        if pid == 0:
            self.child_main()
        self.children.add(pid)

    def child_main(self):
        try:
            signal.set_wakeup_fd(-1)
            reset_child_signals()
            stop_on_signals()
            die_with_parent()
            os.close(self.wake_r)
            os.close(self.wake_w)
            # Each child owns its Redis connection, opened after the fork.
            redis = process_redis(self.config)
            app, sock, timeout = self.app, self.sock, self.config.read_timeout
            while True:
                client = accept(sock)
                if client is not None:
                    serve_connection(client, app, redis, timeout)
        except ServerStop:
            pass
        finally:
            os._exit(0)

    def stop(self):
        # The handlers stay: a second SIGTERM only queues, it cannot cut the shutdown short.
        if self.sock is not None:
            self.sock.close()
        stop_children(self.children)


def run(config):
    Arbiter(config).run()
