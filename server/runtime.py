"""What the architectures share: the listening socket, the startup line, stop signals, serving
one connection with blocking sockets, and child processes."""
import errno
import os
import signal
import socket
import sys
import time

from server.protocol import CLOSE
from server.redis_link import RedisUnavailable
from server.resp import RedisCall
from server.timeouts import set_read_timeout, set_write_timeout

# Enough for any request head the protocol accepts (HEAD_LIMIT) in one read; bodies take a few.
# Larger buffers cost every read a bigger allocation, which a forked child pays in pages.
RECV_SIZE = 8192
LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# accept() errors that mean the process or the kernel is out of resources for now, not that the
# listener is broken: skip this accept and try again later.
ACCEPT_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# Worker threads only run serve_connection(): a stack far smaller than the usual 8 MiB lets
# hundreds of them fit (threaded and prethreaded servers).
THREAD_STACK_SIZE = 512 * 1024


class ServerStop(BaseException):
    """Raised by the SIGTERM/SIGINT handler: unwinds whatever blocks (accept, poll, a read)."""


def _raise_stop(signum, frame):
    raise ServerStop(signum)


def stop_on_signals():
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_stop)


def listen(config):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
        sock.listen(config.backlog)
    except OSError as error:  # address in use, unknown host, no permission: say so, no traceback
        sock.close()
        raise SystemExit(f"zerolab server: cannot listen on {config.host}:{config.port}: "
                         f"{error.strerror or error}") from None
    # Accepted sockets inherit both timeouts, so serving a connection starts with no setsockopt:
    # a client that sends nothing or stops reading cannot hold a worker past the read timeout.
    # On the listening socket itself the read timeout also bounds a blocking accept(), which
    # then comes back empty (EAGAIN) now and then while no client comes.
    set_read_timeout(sock, config.read_timeout)
    set_write_timeout(sock, config.read_timeout)
    return sock


def raise_nofile_limit():
    """Up to the hard limit: a thousand concurrent clients need more than the usual 1,024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def announce(sock, config):
    print(f"listening on {config.host}:{sock.getsockname()[1]} arch={config.arch} variant={config.variant}",
          flush=True)


def log_error(context):
    import traceback  # only on the rare unexpected error: not a module every child carries

    print(f"zerolab server: {context}", file=sys.stderr)
    traceback.print_exc(file=sys.stderr)
    sys.stderr.flush()


def serve_connection(sock, app, redis, read_timeout):
    """Serve one connection on a blocking socket accepted from listen()'s socket, whose timeouts
    it inherits: read the request within `read_timeout`, ask Redis when the route needs it
    (through `redis.for_client()`, released at the end), send the response with one sendall
    (or its head and sendfile), close."""
    link = None
    try:
        link = redis.for_client()
        conn = app.connection()
        deadline = time.monotonic() + read_timeout  # the first read's timeout came from listen()
        _answer(sock, conn, conn.receive(sock.recv(RECV_SIZE)), deadline, link)
    except OSError:
        pass  # reset, broken pipe, timeout: the client is gone, the worker goes on
    except Exception:
        log_error("unexpected error while serving a connection")
    finally:
        sock.close()
        if link is not None:
            redis.release(link)


def serve_descriptor(fd, app, redis, read_timeout):
    """serve_connection() for a process that serves one connection and then exits (a forked
    child), on the bare descriptor: os.read and os.write, where a socket object, its methods
    and its setup would cost each child pages copied from its parent. A request that takes
    more than one read, or an early answer that has to linger, goes on through a socket
    object, as serve_connection(). `redis` is the child's own link."""
    sock = None
    try:
        conn = app.connection()
        deadline = time.monotonic() + read_timeout
        answer = conn.receive(os.read(fd, RECV_SIZE))
        if answer is None or conn.linger:
            sock = socket.socket(fileno=fd)
            _answer(sock, conn, answer, deadline, redis)
            return
        answer = _ask_redis(answer, redis)
        if answer.__class__ is not bytes:
            send_file(fd, answer)
            return
        while answer:  # os.write may take part of it: the rest goes in the next write
            answer = answer[os.write(fd, answer):]
    except OSError:
        pass
    except Exception:
        log_error("unexpected error while serving a connection")
    finally:
        if sock is None:
            os.close(fd)
        else:
            sock.close()


def _answer(sock, conn, answer, deadline, redis):
    """Read until the request is complete or `deadline` passes, then answer it."""
    while answer is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        set_read_timeout(sock, remaining)
        answer = conn.receive(sock.recv(RECV_SIZE))
    answer = _ask_redis(answer, redis)
    if answer.__class__ is not bytes:
        send_file(sock.fileno(), answer)
    elif answer is not CLOSE:
        sock.sendall(answer)
        if conn.linger:
            linger(sock)


def _ask_redis(answer, redis):
    """The response for what the protocol answered: a RedisCall is carried out first, and the
    next one it leads to, round trip after round trip (a Redis that cannot be reached gives
    the route's own 503)."""
    while answer.__class__ is RedisCall:
        try:
            replies = redis.call(answer.commands, answer.replies)
        except RedisUnavailable:
            replies = None
        answer = answer.finish(replies)
    return answer


def send_file(fd, response):
    """A FileResponse on a blocking socket descriptor: its head, then the file with sendfile
    (the socket's send timeout bounds each call); the file is closed in any case."""
    try:
        head = response.head
        while head:
            head = head[os.write(fd, head):]
        offset, size = 0, response.size
        while offset < size:
            sent = os.sendfile(fd, response.fd, offset, size - offset)
            if sent == 0:
                break  # the file shrank after its stat: the response ends short, as it would in C
            offset += sent
    finally:
        response.close()


def linger(sock):
    """Close after an early answer without resetting: send FIN, then read and drop what the
    client still sends, for a bounded time."""
    sock.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + LINGER_SECONDS
    drained = 0
    while drained < LINGER_BYTES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        set_read_timeout(sock, remaining)
        data = sock.recv(RECV_SIZE)
        if not data:
            return
        drained += len(data)


# Child processes

_PR_SET_PDEATHSIG = 1
_libc = None


def _load_libc():
    """libc's prctl through ctypes, loaded on first use rather than at import: the forking
    server never needs it, and every mapping it holds costs each fork."""
    global _libc
    if _libc is None:
        import ctypes

        try:
            # Looked up here, in the parent: a CDLL attribute is created on first access,
            # which every child would otherwise repeat (and pay in copied pages).
            _libc = (ctypes.CDLL(None, use_errno=True).prctl,)
        except (OSError, AttributeError):
            _libc = (None,)
    return _libc


def prepare_die_with_parent():
    """Load what die_with_parent() calls, before forking the children that call it."""
    _load_libc()


def die_with_parent():
    """Ask the kernel to SIGKILL this process if its parent dies, so no child outlives a
    server that was killed without a chance to stop them."""
    prctl = _load_libc()[0]
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def reset_child_signals():
    for sig in (*STOP_SIGNALS, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def reap(children):
    """Collect every exited child without blocking; return their pids."""
    reaped = []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        children.discard(pid)
        reaped.append(pid)
    return reaped


def stop_children(children, grace=3.0):
    """SIGTERM every child, wait for them up to `grace` seconds, SIGKILL the rest."""
    for pid in list(children):
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while children and time.monotonic() < deadline:
        reap(children)
        if children:
            time.sleep(0.01)
    for pid in list(children):
        _kill(pid, signal.SIGKILL)
    while children:
        try:
            pid, _ = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        children.discard(pid)


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def accept(sock):
    """accept() that survives what a busy or shutting-down listener throws (EMFILE, aborted
    handshakes): None means nothing was accepted this time."""
    return _accept(sock.accept)


def accept_fd(sock):
    """accept() for a process that only hands the connection over (the forking parent): the
    bare descriptor, without building a socket object around it; None as for accept()."""
    return _accept(sock._accept)


def _accept(method):
    """method()'s connection (the first item of its result), or None."""
    try:
        return method()[0]
    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
        return None
    except OSError as error:
        # EINVAL: the listening socket was shut down, the server is stopping.
        if error.errno in ACCEPT_EXHAUSTED or error.errno == errno.EINVAL:
            time.sleep(0.01)
            return None
        raise


def join_threads(grace=2.0):
    """Give in-flight threads a moment to finish; daemon threads still running after it are
    dropped when the process exits."""
    import threading  # not at the top: a forked child would pay its after-fork hook

    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is threading.current_thread() or not thread.daemon:
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            thread.join(remaining)
        except RuntimeError:  # the stop signal interrupted its start()
            pass
