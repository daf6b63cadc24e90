"""Whole-package static checks: types (including type comments) and lint, as CI runs them."""

import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


def run(*command):
    return subprocess.run(list(command), cwd=str(ROOT), capture_output=True, text=True, timeout=600)


def test_mypy_passes_on_the_whole_package():
    pytest.importorskip("mypy")
    # setup.cfg has no [mypy] section: plain defaults for the whole package. The strict check of the modules that
    # call TensorRT, against tensorrt-stubs, is tests/test_trt_mypy.py (mypy.ini).
    result = run(sys.executable, "-m", "mypy", "--config-file", "setup.cfg", "--ignore-missing-imports",
                 "--follow-imports=silent", "jetson_detect")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is a dev tool: pip install -e '.[dev]'")
def test_ruff_is_clean():
    result = run("ruff", "check", "jetson_detect", "tests", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr
