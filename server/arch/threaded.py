"""Threaded: a new thread per accepted connection; threads share a thread-safe Redis pool."""
import threading

from server.app import App
from server.redis_link import RedisPool
from server.runtime import (THREAD_STACK_SIZE, ServerStop, accept, announce, join_threads, listen,
                            serve_connection, stop_on_signals)


def run(config):
    app = App(config.root)
    pool = RedisPool(config.redis_host, config.redis_port)
    sock = listen(config)
    threading.stack_size(THREAD_STACK_SIZE)
    stop_on_signals()
    announce(sock, config)
    try:
        while True:
            client = accept(sock)
            if client is not None:
                threading.Thread(target=serve_connection, daemon=True,
                                 args=(client, app, pool, config.read_timeout)).start()
    except ServerStop:
        pass
    finally:
        sock.close()
        join_threads()
        pool.close()
