"""What the architectures share: the listening socket, the startup line, stop signals, serving
one connection with blocking sockets, and child processes."""
import ctypes
import errno
import os
import signal
import socket
import sys
import time
import traceback

from server.protocol import CLOSE
from server.redis_link import RedisUnavailable
from server.timeouts import set_read_timeout, set_write_timeout

# Enough for any request head the protocol accepts (HEAD_LIMIT) in one read; bodies take a few.
# Larger buffers cost every read a bigger allocation, which a forked child pays in pages.
RECV_SIZE = 8192
LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
    sock.bind((config.host, config.port))
    sock.listen(config.backlog)
    # Accepted sockets inherit the send timeout: a client that stops reading cannot hold a
    # worker longer than the read timeout.
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
    print(f"listening on {config.host}:{sock.getsockname()[1]} arch={config.arch}", flush=True)


def log_error(context):
    print(f"zerolab server: {context}", file=sys.stderr)
    traceback.print_exc(file=sys.stderr)
    sys.stderr.flush()


def serve_connection(sock, app, redis, read_timeout):
    """Serve one connection on a blocking socket: read the request within `read_timeout`,
    ask Redis when the route needs it, send the response with one sendall, close."""
    try:
        conn = app.connection()
        deadline = time.monotonic() + read_timeout
        set_read_timeout(sock, read_timeout)
        answer = conn.receive(sock.recv(RECV_SIZE))
        while answer is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            set_read_timeout(sock, remaining)
            answer = conn.receive(sock.recv(RECV_SIZE))
        if answer.__class__ is not bytes:
            try:
                replies = redis.call(answer.commands, answer.replies)
            except RedisUnavailable:
                replies = None
            answer = answer.finish(replies)
        if answer is not CLOSE:
            sock.sendall(answer)
            if conn.linger:
                linger(sock)
    except OSError:
        pass  # reset, broken pipe, timeout: the client is gone, the worker goes on
    except Exception:
        log_error("unexpected error while serving a connection")
    finally:
        sock.close()


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
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    # Looked up once here: a CDLL attribute is created on first access, which every forked
    # child would otherwise repeat (and pay in copied pages).
    _prctl = _libc.prctl
except (OSError, AttributeError):
    _libc = _prctl = None


def die_with_parent():
    """Ask the kernel to SIGKILL this process if its parent dies, so no child outlives a
    server that was killed without a chance to stop them."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def trim_heap():
    """Give the C heap's free memory back to the system: fewer pages for each fork to copy
    and each child's exit to tear down."""
    if _libc is not None:
        try:
            _libc.malloc_trim(0)
        except AttributeError:  # not glibc
            pass


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
    accepted = _accept(sock.accept)
    return None if accepted is None else accepted[0]


def accept_fd(sock):
    """accept() for a process that only hands the connection over (the forking parent): the
    bare descriptor, without building a socket object around it; None as for accept()."""
    accepted = _accept(sock._accept)
    return None if accepted is None else accepted[0]


def _accept(method):
    try:
        return method()
    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
        return None
    except OSError as error:
        if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            time.sleep(0.01)
            return None
        if error.errno == errno.EINVAL:  # listening socket shut down: stopping
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
