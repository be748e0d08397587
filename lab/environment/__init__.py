"""Where a run's services live: Compose on this machine, or a Swarm stack across several."""
from __future__ import annotations

from typing import Callable

ENGINES = ("compose", "swarm")


class TeardownError(RuntimeError):
    """An environment's down() gave up with some of it still there: `remaining` names each
    object ("container zl-x_server_1", "network zl-x_lab", "service zl-x_server"); `reasons`
    says, for those it has one, why the engine would not remove it."""

    def __init__(self, message: str, remaining: list[str], reasons: dict[str, str] | None = None) -> None:
        self.remaining = list(remaining)
        self.reasons = {what: why for what, why in (reasons or {}).items() if what in self.remaining}
        listed = ", ".join(f"{what} ({self.reasons[what]})" if what in self.reasons else what
                           for what in self.remaining)
        super().__init__(f"{message}: {listed}")


def environment_factory(engine: str) -> Callable:
    """A function (run, project, agent_token=None) -> environment for the chosen engine."""
    if engine == "compose":
        from lab.environment.compose import ComposeEnvironment as environment
    elif engine == "swarm":
        from lab.environment.swarm import SwarmEnvironment as environment
    else:
        raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")

    def make(run, project, agent_token=None):
        return environment(project, run.variables(), generators=run.generators, agent_token=agent_token)
    return make
