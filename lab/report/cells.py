"""Groups runs into cells: one architecture at one concurrency under one set of other parameters."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field

from .baseline import ARCHS
from .load import Run, normalised_raw

# Parameters that never split cells: the cell's own coordinates, the repeat number, and
# placement details that do not change what is measured.
NOT_VARIANT = {"arch", "connections", "repeat", "cpusets"}


@dataclass
class Cell:
    """The runs of one cell and its summary (median, 95% interval, n, CV of each figure).

    The figures use the trusted runs, server-failed ones included: a server that failed is a
    result. Untrusted runs are kept only to be listed.
    """
    arch: str
    connections: int
    variant: tuple[tuple[str, str], ...]
    runs: list[Run] = field(default_factory=list)
    _summary: dict | None = field(default=None, repr=False)
    _summarised: bool = field(default=False, repr=False)

    @property
    def trusted_runs(self) -> list[Run]:
        return [r for r in self.runs if r.trusted]

    @property
    def untrusted_runs(self) -> list[Run]:
        return [r for r in self.runs if not r.trusted]

    @property
    def server_failed_runs(self) -> list[Run]:
        return [r for r in self.runs if r.trusted and r.server_failed]

    @property
    def valid_runs(self) -> list[Run]:
        """The runs behind the cell's figure (its trusted runs)."""
        return self.trusted_runs

    @property
    def summary(self) -> dict:
        """The result's summary of this cell when it covers exactly these runs; otherwise (a
        cell gathered from several results, or edited runs) one computed from them."""
        if not self._summarised:
            self._summary = self._stored() or self._computed()
            self._summarised = True
        return self._summary or {}

    def _stored(self) -> dict | None:
        entries = {id(r.stored_cell): r.stored_cell for r in self.runs}
        if len(entries) != 1:
            return None
        (entry,) = entries.values()
        if entry is None or sorted(entry.get("runs") or []) != sorted(r.id for r in self.runs):
            return None
        return entry

    def _computed(self) -> dict | None:
        from lab.uncertainty import cell_summaries
        if not self.runs:
            return None
        # One cell whatever the runs' ids and incidental params (two results of one sweep repeat
        # the same ids; placement may differ between them).
        name = f"{self.arch}-c{self.connections}"
        params = {"arch": self.arch, "connections": self.connections}
        raws = [dict(normalised_raw(r), id=f"{name}-{i}", params=params)
                for i, r in enumerate(self.runs)]
        targets = {(r.stored_cell or {}).get("target_ci_pct") for r in self.runs}
        target = targets.pop() if len(targets) == 1 else None
        (found,) = cell_summaries(raws, target_ci_pct=target)
        label = name + (f" ({self.variant_label})" if self.variant else "")
        return dict(found, cell=label, runs=[r.id for r in self.runs])

    def stat(self, key: str) -> dict | None:
        """A SUMMARY of the cell: requests_per_sec, latency_p50_ms or latency_p99_ms."""
        value = self.summary.get(key)
        return value if isinstance(value, dict) and value.get("median") is not None else None

    @property
    def figure(self) -> float | None:
        """Median requests/second over the trusted repeats; None when none is."""
        s = self.stat("requests_per_sec")
        return float(s["median"]) if s else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """95% interval of the median requests/second; None with fewer than two repeats."""
        s = self.stat("requests_per_sec")
        ci = s.get("ci95") if s else None
        return (float(ci[0]), float(ci[1])) if ci else None

    @property
    def converged(self) -> bool | None:
        """Whether the interval reached the cell's target; None when there was no target."""
        return self.summary.get("converged")

    @property
    def target_ci_pct(self) -> float | None:
        return self.summary.get("target_ci_pct")

    @property
    def server_failed(self) -> bool:
        """At least half of the trusted repeats were server failures, so the cell's median is
        one: at this load the server cannot be counted on."""
        trusted = self.trusted_runs
        return bool(trusted) and 2 * len(self.server_failed_runs) >= len(trusted)

    @property
    def failure_reasons(self) -> list[str]:
        out: list[str] = []
        for r in self.server_failed_runs:
            for reason in r.server_reasons or ["server failed"]:
                if reason not in out:
                    out.append(reason)
        return out

    @property
    def spread(self) -> float | None:
        """(max - min) / mean over trusted repeats; None with fewer than two."""
        values = [r.requests_per_sec for r in self.trusted_runs if r.requests_per_sec is not None]
        if len(values) < 2:
            return None
        mean = statistics.fmean(values)
        return (max(values) - min(values)) / mean if mean else None

    @property
    def variant_label(self) -> str:
        return variant_label(self.variant)

    @property
    def impl_label(self) -> str:
        return impl_label(self.variant)


def variant_label(variant: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{k}={v}" for k, v in variant)


IMPL_NAMES = {"python": "Python", "zerohttpd": "C (zerohttpd)", "image": "image"}


def impl_label(variant: tuple[tuple[str, str], ...]) -> str:
    """A reader's name for the server behind a variant: "Python faithful", "C (zerohttpd)";
    any other parameter that splits cells follows as k=v."""
    params = dict(variant)
    impl = params.pop("impl", None)
    words = [IMPL_NAMES.get(impl, impl)] if impl else []
    if "variant" in params:
        words.append(params.pop("variant"))
    rest = variant_label(tuple(params.items()))
    name = " ".join(words)
    return f"{name} ({rest})" if name and rest else name or rest


def impl_order(variant: tuple[tuple[str, str], ...]) -> tuple:
    """Python faithful, Python lean, other Python, the C servers, images, anything else."""
    params = dict(variant)
    impl = params.get("impl", "python")
    impls = ["python", "zerohttpd", "image"]
    variants = ["faithful", "lean"]
    v = params.get("variant", "")
    return (impls.index(impl) if impl in impls else len(impls),
            variants.index(v) if v in variants else len(variants), variant)


def _norm(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def cell_params(run: Run) -> dict:
    """The run's parameters as cells compare them. A run without `impl` (recorded before there
    were other servers) is the Python server, and a Python run without `variant` the lean one
    (its default). A null parameter is one the server does not have (the C servers have no
    variant, workers or backlog of ours): it is left out rather than compared as a value."""
    params = {k: v for k, v in run.params.items() if v is not None}
    params.setdefault("impl", "python")
    if params["impl"] == "python":
        params.setdefault("variant", "lean")
    return params


def variant_keys(runs: list[Run]) -> list[str]:
    """Parameters that take more than one value within some architecture x concurrency pair.

    A parameter that differs only between architectures (say, workers) describes the
    architecture, not a second experiment, so it does not split the sweep; nor does one that
    some runs lack (the C servers' workers). Once servers are compared, a Python run's variant
    is always named, even when only one was run.
    """
    seen: dict[tuple[str, int], dict[str, set[str]]] = {}
    for r in runs:
        per = seen.setdefault((r.arch, r.connections), {})
        for k, v in cell_params(r).items():
            if k not in NOT_VARIANT:
                per.setdefault(k, set()).add(_norm(v))
    keys = {k for per in seen.values() for k, vals in per.items() if len(vals) > 1}
    if "impl" in keys:
        keys.add("variant")
    return sorted(keys)


def arch_order(arch: str) -> tuple[int, str]:
    return (ARCHS.index(arch) if arch in ARCHS else len(ARCHS), arch)


def group_cells(runs: list[Run], keys: list[str] | None = None) -> list[Cell]:
    keys = variant_keys(runs) if keys is None else keys
    cells: dict[tuple, Cell] = {}
    for r in runs:
        params = cell_params(r)
        variant = tuple((k, _norm(params[k])) for k in keys if k in params)
        key = (r.arch, r.connections, variant)
        if key not in cells:
            cells[key] = Cell(arch=r.arch, connections=r.connections, variant=variant)
        cells[key].runs.append(r)
    for c in cells.values():
        c.runs.sort(key=lambda r: (r.repeat, r.result_id, r.index))
    return sorted(cells.values(), key=lambda c: (impl_order(c.variant), arch_order(c.arch),
                                                 c.connections))


def variants(cells: list[Cell]) -> list[tuple]:
    out: list[tuple] = []
    for c in cells:
        if c.variant not in out:
            out.append(c.variant)
    return out
