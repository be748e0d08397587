"""The recorded tool outputs in tests/fixtures/, shared by the loadgen unit tests.

A plain module, imported as `from fixture_files import ...` (pytest puts this folder on sys.path)."""
from pathlib import Path

from loadgen.parse import parse_output

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def load(name, tool=None):
    return parse_output((FIXTURES / name).read_text(), tool)
