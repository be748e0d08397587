"""Prethreaded: N threads started up front; an accept mutex lets one of them at a time block in
accept(), the others wait on the mutex. Redis as threads_redis() gives it (a shared pool, or a
connection per client)."""
import signal
import socket
import threading

from server.app import App
from server.redis_link import threads_redis
from server.runtime import (THREAD_STACK_SIZE, ServerStop, accept, announce, join_threads, listen,
                            serve_connection, stop_on_signals)


def run(config):
    app = App(config.root, config.variant)
    redis = threads_redis(config)
    sock = listen(config)
    accept_mutex = threading.Lock()
    stopping = threading.Event()

    def worker():
        while not stopping.is_set():
            with accept_mutex:
                if stopping.is_set():
                    return
                client = accept(sock)
            if client is not None:
                serve_connection(client, app, redis, config.read_timeout)

    threading.stack_size(THREAD_STACK_SIZE)
    for _ in range(config.workers):
        threading.Thread(target=worker, daemon=True).start()
    stop_on_signals()
    announce(sock, config)
    try:
        while True:
            signal.pause()
    except ServerStop:
        pass
    finally:
        stopping.set()
        # Wakes the thread blocked in accept() (Linux answers it EINVAL); the rest see the flag.
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        join_threads()
        sock.close()
        redis.close()
