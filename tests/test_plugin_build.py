"""scripts/build_plugin.sh: a one-line reason when nvcc or TensorRT is missing, and a library that registers its
creator on load when both are there (NVIDIA's real headers; nvcc itself, or tests/plugin_driver/fake_nvcc.py)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plugin_builds import DRIVER_DIR, TENSORRT_SOURCES, build_stub_nvinfer, cuda_include_dirs

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_plugin.sh"


def run_script(env_extra, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    env.update(env_extra)
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env)


def test_missing_nvcc_is_named(tmp_path):
    proc = run_script({"NVCC": str(tmp_path / "no-nvcc")}, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("build_plugin: nvcc not found")


def test_missing_tensorrt_headers_are_named(tmp_path):
    fake_nvcc = tmp_path / "nvcc"
    fake_nvcc.write_text("#!/bin/sh\necho 'Cuda compilation tools, release 10.2, V10.2.300'\n")
    fake_nvcc.chmod(0o755)
    if any((Path(d) / "NvInfer.h").is_file() for d in ("/usr/include/aarch64-linux-gnu",
                                                       "/usr/include/x86_64-linux-gnu", "/usr/include")):
        pytest.skip("TensorRT headers are installed on this machine")
    proc = run_script({"NVCC": str(fake_nvcc), "TENSORRT_ROOT": str(tmp_path / "trt")}, tmp_path)
    assert proc.returncode == 1
    assert "TensorRT headers (NvInfer.h) not found" in proc.stderr
    assert str(tmp_path / "trt" / "include") in proc.stderr


def fake_nvcc(tmp_path: Path, release: str) -> dict:
    wrapper = tmp_path / "nvcc"
    wrapper.write_text("#!/bin/sh\nexec '{}' '{}' \"$@\"\n".format(sys.executable, DRIVER_DIR / "fake_nvcc.py"))
    wrapper.chmod(0o755)
    return {"NVCC": str(wrapper), "FAKE_NVCC_RELEASE": release,
            "FAKE_NVCC_CUDA_INCLUDES": os.pathsep.join(cuda_include_dirs())}


NVCC_KINDS = [("8.2.1", "fake nvcc 10.2", "-std=c++14"), ("11.1.0", "fake nvcc 12.9", "-std=c++17"),
              ("11.1.0", "nvcc", None)]


@pytest.mark.shared
@pytest.mark.parametrize("release, nvcc, std", NVCC_KINDS, ids=["8.2.1 V2", "11.1 V3", "11.1 real nvcc"])
def test_build_script_builds_a_library_that_registers_on_load(tmp_path, release, nvcc, std):
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    if nvcc == "nvcc" and shutil.which("nvcc") is None:
        pytest.skip("nvcc not installed")
    trt = tmp_path / "trt"
    (trt / "lib").mkdir(parents=True)
    (trt / "include").symlink_to(TENSORRT_SOURCES / release / "include")
    build_stub_nvinfer(release, trt / "lib")
    output = tmp_path / "out" / "libyolo_decode_nms.so"
    env = {"CUDA_ARCH": "53" if std else "75", "TENSORRT_ROOT": str(trt), "OUTPUT": str(output)}
    env.update(fake_nvcc(tmp_path, nvcc.split()[-1]) if std else {"NVCC": shutil.which("nvcc") or ""})
    build = run_script(env, tmp_path)
    assert build.returncode == 0, build.stderr
    command = build.stdout.splitlines()[0].split()
    assert (std is None or std in command) and "-lnvinfer" in command
    assert build.stdout.splitlines()[-1].startswith("built {} for sm_{}".format(output, env["CUDA_ARCH"]))
    probe = ("import ctypes; ctypes.CDLL({!r}); print(ctypes.CDLL('libnvinfer.so').stubRegisteredCount())"
             .format(str(output)))
    load = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={"LD_LIBRARY_PATH": str(trt / "lib"), "PATH": "/usr/bin:/bin"})
    assert load.stdout.splitlines() == ["1"], load.stderr
