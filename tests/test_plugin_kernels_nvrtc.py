"""Every device-only kernel source compiles for the Jetson architectures with NVRTC 12 (no GPU, no nvcc)."""

import re

import pytest
from nvrtc_compile import Nvrtc, compile_kernel_file, find_cuda_include_dir

from jetson_detect.errors import JetsonDetectError
from jetson_detect.plugin import KERNEL_DIR

JETSON_ARCHS = ("sm_53", "sm_62", "sm_72", "sm_87")
KERNEL_FILES = sorted(KERNEL_DIR.glob("*.cu"))


@pytest.fixture(scope="module")
def nvrtc():
    try:
        compiler = Nvrtc()
    except JetsonDetectError as exc:
        pytest.skip("NVRTC missing ({}); CI installs nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12".format(exc))
    if find_cuda_include_dir() is None:
        pytest.skip("cuda_fp16.h missing; CI installs nvidia-cuda-runtime-cu12")
    return compiler


def test_kernel_folder_holds_the_decode_nms_kernels():
    assert KERNEL_DIR / "yolo_decode_nms.cu" in KERNEL_FILES


@pytest.mark.parametrize("arch", JETSON_ARCHS)
@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: p.name)
def test_kernel_source_compiles_for_jetson_arch(nvrtc, path, arch):
    result = compile_kernel_file(path, arch, nvrtc)
    assert result.ok, result.log
    assert "error" not in result.log.lower(), result.log


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: p.name)
def test_kernel_source_is_device_only(path):
    source = path.read_text()
    includes = re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', source, flags=re.M)
    assert set(includes) <= {"cuda_fp16.h"}
    assert "<<<" not in source
    assert "cub/" not in source and "cooperative_groups" not in source
