"""bench/bench_server.py's choice of the C figure each Python figure is compared with."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("bench_server", os.path.join(ROOT, "bench", "bench_server.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def run(arch, implementation, connections, rps, requests=1000):
    return {"arch": arch, "implementation": implementation, "connections": connections,
            "requests_per_sec": rps, "requests": requests}


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
