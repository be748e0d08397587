"""Iterative: one process accepts a connection, serves it completely, then accepts the next."""
from server.app import App
from server.redis_link import process_redis
from server.runtime import ServerStop, accept, announce, listen, serve_connection, stop_on_signals


def run(config):
    app = App(config.root, config.variant)
    redis = process_redis(config)
    sock = listen(config)
    stop_on_signals()
    announce(sock, config)
    try:
        while True:
            client = accept(sock)
            if client is not None:
                serve_connection(client, app, redis, config.read_timeout)
    except ServerStop:
        pass
    finally:
        sock.close()
        redis.close()
