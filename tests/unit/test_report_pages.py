"""lab.report's pages: a large sweep's main page stays small, every run has a page of its own,
several servers are set side by side, cells are grouped by server, and the explaining modules
(lab.report.why, evidence_plots) are optional.

The large sweep is generated from the recorded result tests/data/results/collapse/20250301T100000
(schema 3): its runs are the templates (spectrum, latency, verdicts) of 420 runs: Python faithful,
Python lean and the C servers (impl zerohttpd, no variant) x the seven architectures x five
levels x four repeats, each with evidence in the shape lab.evidence records.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest

from lab.report import build_report
from lab.report import build as build_module
from lab.report.baseline import ARCHS
from lab.report.cells import cell_params, group_cells, impl_label, variant_keys
from lab.report.load import Run, load_result
from lab.report.plots import ARCH_COLORS, FAILED_COLOR, arch_color

pytestmark = pytest.mark.timeout(600)

C = Path(__file__).resolve().parents[1] / "data" / "results" / "collapse" / "20250301T100000"
SERVERS = [{"impl": "python", "variant": "faithful"}, {"impl": "python", "variant": "lean"},
           {"impl": "zerohttpd", "variant": None, "workers": None, "backlog": None}]
LEVELS = [20, 200, 1000, 3000, 8000]
REPEATS = 4
# The main page's bound. It holds every cell (its repeats as links, its interval, its why) but
# no run's own detail and no image: 420 runs come to about 0.3 MB (measured), so 1 MB leaves
# room for longer reasons and whys while staying a page a browser opens at once.
MAIN_PAGE_BOUND = 1_000_000


def evidence(rps: float, arch: str, connections: int, window: float = 10.0) -> dict:
    """An evidence record in lab.evidence's shape, its figures scaled by the load."""
    forking = arch in ("forking", "iterative")
    created = int(rps * window) if forking else 4
    server = {
        "available": True, "containers": 1,
        "cpu": {"user_s": round(0.3 * window, 2), "system_s": round(0.5 * window, 2),
                "total_s": round(0.8 * window, 2), "cores": 0.8, "periods": 100,
                "throttled_periods": 3, "throttled_s": 0.1, "softirq_s": 0.2, "softirq_cpus": [0]},
        "page_faults": {"minor": int(rps * window * (250 if forking else 1)), "major": 0},
        "context_switches": {"voluntary": int(rps * window * 2), "involuntary": int(rps * 0.5),
                             "tasks_counted": 8, "covered_s": window, "lower_bound": True},
        "tasks": {"max_alive": min(connections, 100) + 2, "max_processes": 3, "created": created,
                  "new_processes_seen": 2, "new_threads_seen": 0},
        "fds": {"max_sum": connections + 10, "max_per_process": connections + 5, "last_sum": 12},
        "net": {"listen_overflows": max(0, connections - 1000), "listen_drops": 0,
                "syn_retrans": 0, "passive_opens": int(rps * window), "active_opens": 0,
                "estab_resets": 0, "out_rsts": 0, "time_wait_max": 50, "time_wait_end": 40,
                "sockets_inuse_max": connections, "netns": "net:[4026532]",
                "accept_queue": {"8000": {"max": min(connections, 128), "mean": 3.0}},
                "accept_queue_unread": 0},
        "per_s": {"voluntary": rps * 2, "involuntary": rps * 0.05, "minor": rps * 250,
                  "tasks_created": created / window, "passive_opens": rps},
        "series": {"t": [0, 1, 2], "cpu_cores": [0.7, 0.8, 0.8]},
    }
    sources = {"cpu": "cgroup cpuacct.usage (total), cpuacct.stat (user, system)",
               "throttling": "cgroup cpu.stat", "page_faults": "cgroup memory.stat total_pgfault",
               "context_switches": "/proc/<tid>/status of every task, per pass",
               "tasks_created": "the newest pid of its own pid namespace",
               "tasks": "pids.current", "fds": "size of /proc/<pid>/fd",
               "net": "/proc/<pid>/net/netstat (TcpExt), snmp (Tcp)",
               "time_wait": "/proc/<pid>/net/sockstat tw", "accept_queue": "rx_queue of LISTEN"}
    return {"window_s": window, "every_s": 1.0, "samples": 11, "sources": sources,
            "services": {"server": server,
                         "loadgen": {"available": False, "reason": "on another node"}},
            "machine": {"processes_created": created + 10, "context_switches": int(rps * 30),
                        "source": "/proc/stat processes, ctxt: the whole machine"},
            "per_task_pass": {"passes": 4, "cpu_s": 0.01, "every_s": 3.0, "budget_cores": 0.004},
            "sampler_cpu_s": 0.05, "sampler_cpu_share": 0.005}


def synthetic_sweep(dest: Path) -> Path:
    """A result of 420 runs from the recorded one's runs, written to dest; returns its dir."""
    data = json.loads((C / "result.json").read_text())
    templates = [r for r in data["runs"] if r["status"] == "complete"]
    runs = []
    for s, server in enumerate(SERVERS):
        for a, arch in enumerate(ARCHS):
            peak = 2400 - 250 * a + 300 * s
            for li, conns in enumerate(LEVELS):
                for rep in range(REPEATS):
                    i = len(runs)
                    run = copy.deepcopy(templates[i % len(templates)])
                    # Collapse past the middle level; noise of a few percent between repeats.
                    rps = peak * (1.0 if li < 3 else 0.35) * (1 + 0.01 * ((i * 7) % 5 - 2))
                    run.update(id=f"{server['impl']}-{server['variant']}-{arch}-c{conns}-{rep}",
                               index=i, requests_per_sec=round(rps, 1),
                               requests=int(rps * 10),
                               params=dict(run["params"], arch=arch, connections=conns,
                                           repeat=rep, **server),
                               evidence=evidence(rps, arch, conns),
                               timeline=[["preparing", 0.0], ["verifying", 1.2],
                                         ["measuring", 3.0], ["recording", 13.1],
                                         ["complete", 13.4]],
                               start_skew_s=0.0012,
                               host_health={"available": True, "busy": False,
                                            "steal_share": 0.0})
                    runs.append(run)
    data.update(runs=runs, result_id="20250401T100000")
    del data["cells"]  # summaries computed by the report, as for a result of several
    out = dest / "sweep" / "20250401T100000"
    out.mkdir(parents=True)
    (out / "result.json").write_text(json.dumps(data))
    return out


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    src = synthetic_sweep(tmp_path_factory.mktemp("large"))
    out = src / "report"
    # Each run's own spectrum plot is the slow part of a large report and not on the main
    # page; test_every_run_has_a_page_with_its_plot draws them for the small result.
    html = build_report([src], out, run_plots=False)
    return src, out, html


def test_main_page_of_a_large_sweep_stays_small(large):
    _src, out, html = large
    size = html.stat().st_size
    print(f"main page of 420 runs: {size:,} bytes")
    assert size < MAIN_PAGE_BOUND, size
    text = html.read_text()
    assert "base64" not in text and "<svg" not in text  # plots are files beside it
    refs = re.findall(r'(?:src|href)="([^"#][^"]*)"', text)
    assert refs and all(not r.startswith(("/", "data:")) and ":" not in r for r in refs)
    assert all((out / r).is_file() for r in refs), [r for r in refs if not (out / r).is_file()]
    assert len(list((out / "runs").glob("*.html"))) == 420 + 1
    assert "420 runs: " in text


def test_the_main_page_begins_with_the_score_then_servers_then_architectures(large):
    _src, _out, html = large
    text = html.read_text()
    order = [text.index(x) for x in ('<h2 id="score">', '<h2 id="side-by-side">',
                                     '<h2 id="throughput">', '<h2 id="arch-iterative">',
                                     '<h2 id="arch-epoll">', '<h2 id="latency">')]
    assert order == sorted(order)
    assert text.index("<h2") == text.index('<h2 id="score">')


def test_side_by_side_puts_every_server_beside_the_article(large):
    _src, out, html = large
    text = html.read_text()
    part = text[text.index('<h2 id="side-by-side">'):text.index('<h2 id="throughput">')]
    for header in ("Python faithful (req/s)", "Python lean (req/s)", "C (zerohttpd) (req/s)",
                   "article (req/s)"):
        assert header in part
    assert part.index("Python faithful") < part.index("Python lean") < part.index("C (zerohttpd)")
    assert 'src="plots/side-by-side.svg"' in part
    assert part.count("<tr><td") == 7 * len(LEVELS)  # one row per architecture and level
    assert "covers" in part  # each figure with its interval (four repeats: a 87.5% interval)
    svg = (out / "plots" / "side-by-side.svg").read_text()
    assert "article (published table)" in svg and "C (zerohttpd)" in svg


def test_one_section_per_architecture_with_its_plots_cells_and_collapse(large):
    _src, _out, html = large
    text = html.read_text()
    for arch in ARCHS:
        start = text.index(f'<h2 id="arch-{arch}">')
        part = text[start:text.index("<h2", start + 10)]
        assert f'src="plots/throughput-{arch}.svg"' in part
        assert f'src="plots/latency-{arch}.svg"' in part
        assert "Collapse (Python faithful)" in part and "Collapse (C (zerohttpd))" in part
        assert part.count('<tr id="cell-') == len(SERVERS) * len(LEVELS)
        assert 'href="runs/20250401T100000-python-faithful-' in part  # repeats link to runs


def test_every_run_has_a_page(large):
    _src, out, _html = large
    page = (out / "runs" / "20250401T100000-zerohttpd-None-forking-c200-1.html").read_text()
    for section in ("Verdict", "Figures", "Latency spectrum", "Evidence", "Timeline",
                    "Generators and host", "Parameters"):
        assert f">{section}" in page
    assert "cgroup cpuacct.usage" in page and "<code>tasks.created</code>" in page
    assert "not available: on another node" in page  # a service without evidence says why
    assert "1.2 ms" in page  # start skew
    assert "measuring" in page and "10.100" in page  # timeline: measured for 10.1 s
    assert 'href="../report.html#cell-forking-200-impl_zerohttpd"' in page


def test_plots_are_readable(tmp_path):
    """Units on every axis, the article's curves named, the marks explained, each
    architecture's colour the same everywhere and never the failure red."""
    out = tmp_path / "r"
    build_report([C], out, run_plots=False)
    for svg in (out / "plots").glob("*.svg"):
        text = svg.read_text()
        if svg.name.startswith(("throughput", "side-by-side")):
            assert "article (published table)" in text, svg.name
            assert "requests/second" in text or "fraction of own peak" in text
            assert "concurrency (connections, log scale)" in text
        if svg.name.startswith("latency"):
            assert "latency (ms)" in text, svg.name
    svg = (out / "plots" / "throughput-threaded.svg").read_text()
    assert "server failed in most repeats" in svg and "untrusted" not in svg
    assert arch_color("threaded") in svg  # its own colour, in its own plot as in the overview
    assert arch_color("threaded") in (out / "plots" / "throughput.svg").read_text()
    assert len(set(ARCH_COLORS)) == len(ARCHS) and FAILED_COLOR not in ARCH_COLORS
    assert "#d62728" not in ARCH_COLORS and arch_color("nginx") not in ARCH_COLORS


def run_of(arch: str, conns: int, repeat: int = 0, **params) -> Run:
    return Run("r", "s", f"{arch}-{conns}-{repeat}-{params}", 0, "complete",
               dict(arch=arch, connections=conns, repeat=repeat, **params), 1000.0, {}, None,
               True, [])


def test_cells_group_servers_by_impl():
    runs = [run_of("forking", 20, impl="python", variant="faithful", workers=None),
            run_of("forking", 20, variant="lean"),  # before impl was recorded: Python
            run_of("forking", 20, impl="python", variant="lean", repeat=1),
            run_of("forking", 20, impl="zerohttpd", variant=None, workers=None, backlog=None),
            run_of("preforked", 20, impl="python", variant="lean", workers=16),
            run_of("preforked", 20, impl="zerohttpd", variant=None, workers=None)]
    assert variant_keys(runs) == ["impl", "variant"]  # workers: absent is not another value
    cells = group_cells(runs)
    labels = [(c.arch, c.impl_label, len(c.runs)) for c in cells]
    assert labels == [("forking", "Python faithful", 1), ("forking", "Python lean", 2),
                      ("preforked", "Python lean", 1),
                      ("forking", "C (zerohttpd)", 1), ("preforked", "C (zerohttpd)", 1)]
    assert dict(cells[-1].variant) == {"impl": "zerohttpd"}  # the C servers have no variant
    assert cell_params(runs[1])["impl"] == "python"
    # Python alone, lean by default and named lean: nothing splits the sweep.
    assert variant_keys([run_of("poll", 20), run_of("poll", 20, impl="python")]) == []
    # Python lean against the C servers: the variant is still named.
    assert impl_label((("impl", "python"), ("variant", "lean"))) == "Python lean"
    assert variant_keys([run_of("poll", 20), run_of("poll", 20, impl="zerohttpd")]) == \
        ["impl", "variant"]


def test_report_builds_when_the_explaining_modules_fail(tmp_path, monkeypatch):
    def broken(*_args):
        raise RuntimeError("broken on purpose")

    real = build_module.importlib.import_module

    def without_evidence_plots(name, *args):
        if name.endswith(".evidence_plots"):
            raise ImportError("no module")
        return real(name, *args)

    import lab.report.why as why
    monkeypatch.setattr(why, "explain_cell", broken)
    monkeypatch.setattr(build_module.importlib, "import_module", without_evidence_plots)
    d = tmp_path / "r"
    shutil.copytree(C, d)
    text = build_report([d], tmp_path / "out", run_plots=False).read_text()
    assert "explanations missing" in text and "broken on purpose" in text
    assert "evidence_plots.render_evidence unavailable" in text
    assert "Reproduction score" in text and '<h2 id="arch-poll">' in text


def test_run_page_without_evidence_or_plot_says_so(tmp_path):
    out = tmp_path / "r"
    build_report([C], out, run_plots=False)
    page = (out / "runs" / "20250301T100000-poll-c1000-1.html").read_text()
    assert "untrusted: excluded" in page and "generator-bound" in page
    assert "carries no evidence" in page
    assert "built without each run's plot" in page


def test_every_run_has_a_page_with_its_plot(tmp_path):
    out = tmp_path / "r"
    build_report([C], out)
    runs = load_result(C).runs
    for r in runs:
        page = out / "runs" / f"{r.result_id}-{r.id}.html"
        assert page.is_file(), page
    page = (out / "runs" / "20250301T100000-threaded-c3000-1.html").read_text()
    assert 'src="../plots/runs/latency-20250301T100000-threaded-c3000-1.svg"' in page
    assert "server failed" in page and "12.0%" in page
    index = (out / "runs" / "index.html").read_text()
    assert index.count('href="20250301T100000-') == len(runs)
