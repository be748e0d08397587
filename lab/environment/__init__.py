"""Where a run's services live: Compose on this machine, or a Swarm stack across several."""
from __future__ import annotations

from typing import Callable

ENGINES = ("compose", "swarm")


def environment_factory(engine: str) -> Callable:
    """A function (run, project) -> environment for the chosen engine."""
    if engine == "compose":
        from lab.environment.compose import ComposeEnvironment as environment
    elif engine == "swarm":
        from lab.environment.swarm import SwarmEnvironment as environment
    else:
        raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    return lambda run, project: environment(project, run.variables(), generators=run.generators)
