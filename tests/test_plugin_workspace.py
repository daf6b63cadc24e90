"""The Python workspace layout mirrors the C launcher's, and its regions are aligned and disjoint."""

import ctypes
import shutil
import subprocess
import sys

import pytest

from jetson_detect.plugin import PLUGIN_DIR

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from ydn_workspace import ALIGN_BYTES, REGIONS, workspace_layout, workspace_size_bytes  # noqa: E402

CASES = [(1, 25200, 4096), (3, 6300, 4096), (2, 100, 8192), (1, 1, 1), (4, 25200, 1000)]


def test_regions_are_aligned_and_ordered():
    layout = workspace_layout(2, 25200, 4096)
    offsets = [layout[name] for name in REGIONS] + [layout["total"]]
    assert all(o % ALIGN_BYTES == 0 for o in offsets)
    assert offsets == sorted(offsets)


def test_nms_mask_is_one_bit_per_candidate_pair():
    layout = workspace_layout(1, 25200, 4096)
    assert layout["total"] - layout["mask"] == 4096 * 4096 // 8


@pytest.fixture(scope="module")
def launcher_library(tmp_path_factory):
    nvcc = shutil.which("nvcc")
    if not nvcc:
        pytest.skip("nvcc not installed: the C launcher cannot be built here")
    out = tmp_path_factory.mktemp("launcher") / "libydn_launch.so"
    proc = subprocess.run([nvcc, "-shared", "-Xcompiler", "-fPIC", "-arch=sm_75", "-I", str(PLUGIN_DIR),
                           str(PLUGIN_DIR / "yolo_decode_nms_launch.cu"), "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lib = ctypes.CDLL(str(out))
    lib.ydnWorkspaceSize.restype = ctypes.c_size_t
    lib.ydnWorkspaceSize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    return lib


@pytest.mark.parametrize("batch,positions,top_k", CASES)
def test_python_workspace_size_equals_the_launchers(launcher_library, batch, positions, top_k):
    assert workspace_size_bytes(batch, positions, top_k) == launcher_library.ydnWorkspaceSize(
        batch, positions, top_k)
