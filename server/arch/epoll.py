"""epoll: one thread, non-blocking sockets, select.epoll; level-triggered like the article, or
edge-triggered with --edge-triggered."""
import select

from server.eventloop import EventLoop


class EpollPoller:
    def __init__(self, edge):
        self.edge = edge
        self._epoll = select.epoll()
        self._flags = select.EPOLLET if edge else 0

    def register(self, fd, mask):
        self._epoll.register(fd, mask | self._flags)

    def modify(self, fd, mask):
        self._epoll.modify(fd, mask | self._flags)

    def forget(self, fd):
        # Closing the descriptor removes it from the epoll set: no epoll_ctl needed.
        pass

    def poll(self, timeout):
        return self._epoll.poll(timeout)


def run(config):
    EventLoop(config, EpollPoller(config.edge_triggered)).run()
