"""The CI files stay true to the project: lint-clean, and naming only scenarios that exist."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab.scenario import ARCHITECTURES, ROOT, available_scenarios

pytestmark = pytest.mark.timeout(120)
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_workflows_pass_actionlint():
    actionlint = Path(sys.executable).parent / "actionlint"
    out = subprocess.run([str(actionlint), *map(str, WORKFLOWS)], cwd=ROOT, capture_output=True,
                         text=True, timeout=100)
    assert out.returncode == 0, out.stdout + out.stderr


def test_scenario_matrix_names_existing_scenarios():
    workflow = yaml.safe_load((ROOT / ".github/workflows/scenarios.yml").read_text())
    matrix = workflow["jobs"]["scenario"]["strategy"]["matrix"]["scenario"]
    missing = sorted(set(matrix) - set(available_scenarios()))
    assert not missing, f"scenarios.yml names scenarios with no file in scenarios/: {missing}"
    # Every architecture has its short run in the matrix.
    archs = set(ARCHITECTURES)
    assert archs <= {name.split("-")[0] for name in matrix}


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci/run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()
