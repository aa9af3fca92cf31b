"""The test configuration itself: a parametrized test that collects zero cases fails instead of passing silently."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
EMPTY = """import pytest


@pytest.mark.parametrize("name", [])  # e.g. sorted() of a manifest with no entries
def test_each_entry(name):
    pass
"""


def test_empty_parameter_set_is_a_collection_error(tmp_path, pytestconfig):
    assert pytestconfig.getini("empty_parameter_set_mark") == "fail_at_collect"
    (tmp_path / "test_empty.py").write_text(EMPTY)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-c", str(PYPROJECT), "--rootdir", str(tmp_path),
                             "-p", "no:cacheprovider", str(tmp_path / "test_empty.py")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0, result.stdout
    assert "Empty parameter set in 'test_each_entry'" in result.stdout
