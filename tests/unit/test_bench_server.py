"""bench/bench_server.py: the C figure each Python figure is compared with, and both variants
side by side."""
import importlib.util
import io
import os

import pytest
from rich.console import Console

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("bench_server", os.path.join(ROOT, "bench", "bench_server.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def run(arch, implementation, connections, rps, requests=1000, variant=None):
    return {"arch": arch, "implementation": implementation, "connections": connections,
            "requests_per_sec": rps, "requests": requests,
            "variant": variant or ("lean" if implementation == "python" else None)}


def test_a_c_server_measured_in_the_run_is_preferred_to_the_shared_figure():
    runs = [run("forking", "python", 20, 700.0), run("forking", "c", 20, 1500.0)]
    assert bench.c_reference(runs, "forking", 20) == (1500.0, "measured")
    assert bench.c_reference(runs, "forking", 200) == (578, "shared/README.md")


def test_a_c_server_that_stalled_or_exited_counts_as_a_stall():
    runs = [run("threaded", "c", 200, None, 0), run("threaded", "c", 1000, 10.0, 0)]
    assert bench.c_reference(runs, "threaded", 200) == (None, "measured")
    assert bench.c_reference(runs, "threaded", 1000) == (None, "measured")


def test_c_binaries_are_the_executables_named_after_an_architecture(tmp_path):
    for name, mode in (("forking", 0o755), ("preforked", 0o644), ("notes", 0o755)):
        (tmp_path / name).write_text("#!/bin/sh\n")
        os.chmod(tmp_path / name, mode)
    assert bench.c_binaries(str(tmp_path), bench.ARCHITECTURES) == {"forking": str(tmp_path / "forking")}


def test_the_variants_of_an_architecture_are_printed_side_by_side_beside_c():
    runs = [run("preforked", "python", 20, 1200.0, variant="faithful"),
            run("preforked", "python", 20, 3000.0, variant="lean"),
            run("preforked", "c", 20, 2000.0),
            run("preforked", "python", 200, None, 0, variant="faithful"),
            run("preforked", "python", 200, 2500.0, variant="lean")]
    out = io.StringIO()
    bench.print_table(runs, [20, 200], Console(file=out, width=200))
    lines = out.getvalue().splitlines()
    header = next(line for line in lines if "c=20" in line)
    assert header.index("c=20") < header.index("c=200")
    second = lines[lines.index(header) + 1]
    assert second.index("faithful") < second.index("lean")
    row = next(line for line in lines if line.startswith("│ preforked"))
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    # c=20: faithful, lean, C (this run's), faithful x C, lean x C; then c=200.
    assert cells[1:6] == ["1,200", "3,000", "2,000", "0.60", "1.50"]
    assert cells[6:11] == ["stalled", "2,500", "1,864*", "", "1.34"]


@pytest.mark.parametrize("variants", ["fast", "lean,fast", ","])
def test_unknown_variants_are_refused(variants, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--variants", variants])
    assert exit_info.value.code == 2
    assert "--variants: one or more of lean, faithful" in capsys.readouterr().err


def test_rank_agreement_with_the_article_and_between_faithful_and_c():
    # the article at 200: preforked 2,300 > forking 330 > iterative 7 (lab/report/article_table.csv)
    runs = [run("iterative", "python", 200, 100.0, variant="faithful"),
            run("forking", "python", 200, 300.0, variant="faithful"),
            run("preforked", "python", 200, 900.0, variant="faithful"),
            run("iterative", "c", 200, 500.0), run("forking", "c", 200, None, 0),
            run("preforked", "c", 200, 2000.0)]
    rows = dict(bench.rank_agreement(runs, [200]))
    assert rows["Python faithful vs article"][200] == (pytest.approx(1.0), 3)
    # a stall ranks last: C's order is preforked > iterative > forking
    assert rows["C servers (this run) vs article"][200] == (pytest.approx(1 / 3), 3)
    assert rows["Python faithful vs C servers"][200] == (pytest.approx(1 / 3), 3)
    out = io.StringIO()
    bench.print_rank_agreement(bench.rank_agreement(runs, [200]), [200], Console(file=out, width=200))
    assert "+1.00 (n=3)" in out.getvalue() and "Python faithful vs C servers" in out.getvalue()
