"""Kernel-side socket timeouts (SO_RCVTIMEO/SO_SNDTIMEO) on blocking sockets: one syscall per
read or write, where Python's settimeout() adds a poll() before each."""
import socket
import struct

_TIMEVAL = struct.Struct("ll")


def timeval(seconds):
    seconds = max(seconds, 0.001)
    return _TIMEVAL.pack(int(seconds), int((seconds % 1) * 1_000_000))


def set_read_timeout(sock, seconds):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(seconds))


def set_write_timeout(sock, seconds):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(seconds))
