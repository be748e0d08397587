"""Live progress on the console: which run of how many, its phase, elapsed time, req/s so far."""
from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text


class Progress:
    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.total = 0
        self.done = 0
        self.run = None
        self.phase_text = ""
        self.elapsed = 0.0
        self.duration = 0.0
        self.rate: float | None = None
        self.t0 = time.monotonic()
        self.live: Live | None = None

    # ------------------------------------------------------------ lifecycle

    def begin(self, total: int, done: int, result_dir: Path) -> None:
        self.total, self.done, self.t0 = total, done, time.monotonic()
        resumed = f" (resuming: {done} already done)" if done else ""
        self.console.print(f"[bold]{total} run(s)[/bold]{resumed}; results in {result_dir}")
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True)
        self.live.start()

    def end(self, status: str) -> None:
        if self.live:
            self.live.stop()
            self.live = None
        colour = {"complete": "green", "interrupted": "yellow"}.get(status, "red")
        self.console.print(f"[{colour}]{status}[/{colour}]: {self.done}/{self.total} run(s) finished "
                           f"in {time.monotonic() - self.t0:,.0f} s")

    def more(self, added: int, total: int) -> None:
        """Another round of repeats for the cells not yet known well enough."""
        self.total = total
        self.console.print(f"{added} more run(s): cells whose interval is still wider than the target")

    def note(self, text: str) -> None:
        self.console.print(text)

    # ------------------------------------------------------------ per run

    def run_started(self, run, phase: str) -> None:
        self.run, self.elapsed, self.duration, self.rate = run, 0.0, run.duration_s, None
        self.phase(phase)

    def phase(self, text: str) -> None:
        self.phase_text = text
        self._refresh()

    def measuring(self, elapsed: float, rate: float | None) -> None:
        self.elapsed = elapsed
        if rate is not None:
            self.rate = rate
        self._refresh()

    def run_done(self, run, fields: dict) -> None:
        self.done += 1
        line = Text(f"[{self.done}/{self.total}] {run.id}: ")
        if fields["status"] != "complete":
            line.append(f"{fields['status']}: {fields.get('error')}", style="red")
        else:
            line.append(f"{fields['requests_per_sec']:,.0f} req/s", style="bold")
            p99 = (fields.get("latency_ms") or {}).get("p99")
            if p99 is not None:
                line.append(f", p99 {p99:,.1f} ms")
            validity = fields["validity"]
            if not validity.get("trusted", validity["valid"]):
                line.append("  untrusted: " + "; ".join(validity.get("untrusted_reasons") or validity["reasons"]),
                            style="yellow")
            elif validity.get("server_failed"):
                line.append("  server failed (a result): " + "; ".join(validity["server_reasons"]),
                            style="magenta")
            else:
                line.append("  trusted", style="green")
            side = fields.get("server_side") or {}
            if side.get("disagreement_explained") is False:
                line.append(f"  (the server counted {side['requests_per_sec']:,.0f} req/s in its steady "
                            f"window: {side['disagreement']:.0%} off the tool's figure, more than "
                            "requests in flight explain)", style="yellow")
        self.console.print(line)

    # ------------------------------------------------------------ rendering

    def _refresh(self) -> None:
        if self.live:
            self.live.update(self._render())
        elif self.run is not None:
            self.console.print(f"{self.run.id}: {self.phase_text}")

    def _render(self) -> Table:
        table = Table.grid(padding=(0, 2))
        if self.run is None:
            table.add_row("starting")
            return table
        rate = f"{self.rate:,.0f} req/s so far" if self.rate is not None else ""
        clock = (f"{min(self.elapsed, self.duration):4.0f}/{self.duration:g} s"
                 if self.phase_text == "measuring" else "")
        table.add_row(f"run {self.done + 1}/{self.total}", self.run.id, self.phase_text, clock, rate,
                      f"total {time.monotonic() - self.t0:,.0f} s")
        return table
