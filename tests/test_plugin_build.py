"""scripts/build_plugin.sh stops with a one-line reason when nvcc or TensorRT is missing."""

import subprocess
from pathlib import Path

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
        import pytest
        pytest.skip("TensorRT headers are installed on this machine")
    proc = run_script({"NVCC": str(fake_nvcc), "TENSORRT_ROOT": str(tmp_path / "trt")}, tmp_path)
    assert proc.returncode == 1
    assert "TensorRT headers (NvInfer.h) not found" in proc.stderr
    assert str(tmp_path / "trt" / "include") in proc.stderr
