"""Threaded: a new thread per accepted connection; Redis as threads_redis() gives it (a shared pool,
or a connection per client)."""
import threading

from server.app import App
from server.redis_link import threads_redis
from server.runtime import (THREAD_STACK_SIZE, ServerStop, accept, announce, join_threads, listen,
                            serve_connection, stop_on_signals)


def run(config):
    app = App(config.root, config.variant)
    redis = threads_redis(config)
    sock = listen(config)
    threading.stack_size(THREAD_STACK_SIZE)
    stop_on_signals()
    announce(sock, config)
    try:
        while True:
            client = accept(sock)
            if client is not None:
                threading.Thread(target=serve_connection, daemon=True,
                                 args=(client, app, redis, config.read_timeout)).start()
    except ServerStop:
        pass
    finally:
        sock.close()
        join_threads()
        redis.close()
