"""poll: one thread, non-blocking sockets, select.poll (level-triggered)."""
import select

from server.eventloop import EventLoop


class PollPoller:
    edge = False

    def __init__(self):
        self._poll = select.poll()
        self.register = self._poll.register
        self.modify = self._poll.modify
        self.forget = self._poll.unregister

    def poll(self, timeout):
        return self._poll.poll(timeout * 1000.0)


def run(config):
    EventLoop(config, PollPoller()).run()
