"""The runtime package must run on the Jetson Nano's Python 3.6 (JetPack 4.6)."""

import shutil
import subprocess

import pytest

from conftest import ROOT


@pytest.mark.skipif(shutil.which("vermin") is None, reason="vermin is a dev tool: pip install -e '.[dev]'")
def test_jetson_detect_needs_nothing_newer_than_python_3_6():
    result = subprocess.run(["vermin", "--no-tips", "--violations", "--target=3.6-", "jetson_detect"],
                            cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
