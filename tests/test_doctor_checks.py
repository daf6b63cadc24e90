"""doctor: runs here, one OK/WARN/FAIL line per check with a fix, exit code 1 only when something failed."""

import argparse
import importlib
import os
import sys
from pathlib import Path

import pytest

from jetson_detect.backends import engine_cache, gpu_arch, tensorrt_builder
from jetson_detect.commands import doctor
from jetson_detect.commands.doctor import FAIL, OK, WARN, Check
from jetson_detect.errors import JetsonDetectError

REPO = Path(__file__).resolve().parents[1]
CHECK_NAMES = ["Python", "NumPy", "OpenCV", "pip OpenCV vs JetPack", "TensorRT", "CUDA for Python",
               "YoloDecodeNMS plugin", "GPU", "cameras", "DISPLAY", "jtop (jetson-stats)", "free disk",
               "engine cache"]


def run_doctor(capsys, *argv):
    parser = argparse.ArgumentParser()
    doctor.add_arguments(parser)
    code = doctor.main(parser.parse_args(list(argv)))
    return code, capsys.readouterr().out.splitlines()


def real_module(name):
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    return module if getattr(module, "__file__", None) else None


def test_doctor_prints_one_line_per_check_and_a_consistent_exit_code(capsys):
    code, lines = run_doctor(capsys, "--config", str(REPO / "configs" / "fire_smoke.yaml"))
    checks = lines[1:-1]
    assert [line.split(":")[0][5:] for line in checks] == CHECK_NAMES
    assert all(line[:5] in ("OK   ", "WARN ", "FAIL ") for line in checks)
    assert all("; fix: " in line for line in checks if not line.startswith("OK"))
    failed = sum(line.startswith("FAIL") for line in checks)
    assert lines[-1].startswith("{} failed, ".format(failed))
    assert code == (1 if failed else 0)
    assert lines[-1].endswith("exit code {}".format(code))


def test_doctor_here_warns_about_the_missing_jetson_parts(capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    _, lines = run_doctor(capsys)
    by_name = {line.split(":")[0][5:]: line for line in lines[1:-1]}
    assert by_name["DISPLAY"].startswith("WARN DISPLAY: not set")
    assert "--output http://0.0.0.0:8080" in by_name["DISPLAY"]
    if not doctor.is_jetson():
        assert by_name["pip OpenCV vs JetPack"].startswith("OK   pip OpenCV vs JetPack: not a Jetson")
    if real_module("tensorrt") is None:
        assert by_name["TensorRT"] == ("WARN TensorRT: not installed; the CPU backend (ONNX Runtime) will be used; "
                                       "fix: on an NVIDIA GPU install TensorRT 10.x from NVIDIA's tar or deb package "
                                       "and set TENSORRT_ROOT (pip's tensorrt wheels have no headers, and the plugin "
                                       "build needs them)")
    if real_module("jtop") is None:
        assert by_name["jtop (jetson-stats)"].startswith("WARN jtop (jetson-stats): not installed")


def test_check_line_format():
    assert Check(OK, "NumPy", "1.19.5").line() == "OK   NumPy: 1.19.5"
    assert Check(FAIL, "GPU", "none", "install the driver").line() == "FAIL GPU: none; fix: install the driver"


@pytest.mark.parametrize("capability, expected", [((5, 3), False), ((6, 0), False), ((6, 1), True), ((6, 2), False),
                                                   ((7, 2), True), ((7, 5), True), ((8, 7), True), ((9, 0), True)])
def test_int8_needs_compute_capability_61_but_not_tx2(capability, expected):
    assert gpu_arch.int8_supported(capability) is expected


@pytest.mark.parametrize("capability", [(5, 3), (6, 0), (6, 1), (6, 2), (7, 2), (8, 6), (8, 7), (9, 0)])
def test_doctor_and_the_builder_agree_on_int8(monkeypatch, capability):
    monkeypatch.setattr(doctor, "gpu_info", lambda: ("GPU", capability))
    doctor_says_int8 = doctor.check_gpu(False).level == OK
    try:
        tensorrt_builder.check_int8_supported(engine_cache.GpuInfo("GPU", capability))
        builder_builds_int8 = True
    except JetsonDetectError:
        builder_builds_int8 = False
    assert doctor_says_int8 is builder_builds_int8


@pytest.mark.parametrize("model, capability", [("NVIDIA Jetson Nano Developer Kit", (5, 3)),
                                               ("NVIDIA Jetson TX2", (6, 2)), ("NVIDIA Jetson Xavier NX", (7, 2)),
                                               ("NVIDIA Jetson AGX Orin", (8, 7))])
def test_jetson_boards_come_from_the_one_architecture_table(monkeypatch, model, capability):
    monkeypatch.setattr(doctor, "jetson_model", lambda: model)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    assert doctor.gpu_info() == (model, capability)


def test_broken_numpy_on_aarch64_is_detected_without_importing_it(monkeypatch):
    monkeypatch.setattr(doctor.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(doctor, "numpy_version_without_import", lambda: "1.19.5")
    monkeypatch.setenv("OPENBLAS_CORETYPE", "")  # so that monkeypatch restores the variable doctor sets
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    monkeypatch.setattr(doctor, "_try_import", lambda name: pytest.fail("numpy must not be imported"))
    assert doctor.check_numpy().line() == (
        "FAIL NumPy: 1.19.5 on aarch64 without OPENBLAS_CORETYPE: 'import numpy' dies with \"Illegal instruction\"; "
        "fix: pip3 install --user 'numpy>=1.19,!=1.19.5' (1.19.4 on Python 3.6), or export OPENBLAS_CORETYPE=ARMV8 "
        "(already set in the service unit)")
    assert os.environ["OPENBLAS_CORETYPE"] == "ARMV8"  # the checks after it may import NumPy now


@pytest.mark.parametrize("machine, version, environ, crashes", [
    ("aarch64", "1.19.5", {}, True), ("aarch64", "1.19.5", {"OPENBLAS_CORETYPE": "ARMV8"}, False),
    ("aarch64", "1.19.4", {}, False), ("x86_64", "1.19.5", {}, False), ("aarch64", None, {}, False)])
def test_only_the_broken_combination_is_refused(machine, version, environ, crashes):
    assert doctor.numpy_would_crash(machine, version, environ) is crashes


def test_numpy_version_is_read_from_its_version_file():
    import numpy
    assert doctor.numpy_version_without_import() == numpy.__version__


def test_plugin_advice_off_a_jetson_names_tensorrt_root(monkeypatch):
    monkeypatch.setattr(doctor, "find_plugin_library", lambda: None)
    assert "TENSORRT_ROOT=/path/to/TensorRT-10.x" in doctor.check_plugin(False).fix
    assert "TENSORRT_ROOT" not in doctor.check_plugin(True).fix


def test_nano_gpu_is_fp16_only(monkeypatch):
    monkeypatch.setattr(doctor, "gpu_info", lambda: ("NVIDIA Jetson Nano Developer Kit", (5, 3)))
    assert doctor.check_gpu(True).line() == (
        "WARN GPU: NVIDIA Jetson Nano Developer Kit, compute capability 5.3: FP16 yes, INT8 no; "
        "fix: build engines with --precision fp16 (INT8 needs compute capability 6.1+)")


def test_pip_opencv_shadowing_jetpack_fails_with_uninstall_fix(monkeypatch):
    monkeypatch.setattr(doctor, "pip_opencv_dists", lambda: ["opencv_python-4.8.0.74"])
    result = doctor.check_opencv_shadowing(True)
    assert result.level == FAIL
    assert result.fix == "pip3 uninstall opencv_python"
    assert "shadows JetPack's OpenCV" in result.found


def test_tensorrt_stubs_namespace_is_not_taken_for_tensorrt(monkeypatch, tmp_path):
    if real_module("tensorrt") is not None:
        pytest.skip("a real TensorRT is installed here")
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.pyi").write_text("")  # what tensorrt-stubs installs: no library
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    assert doctor._try_import("tensorrt") == (None, "only a namespace package (type stubs?) named tensorrt")


def test_unwritable_engine_cache_fails(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = doctor.check_writable("engine cache", str(blocker / "engines"))
    assert (result.level, result.fix) == (FAIL, "point it at a folder")
    assert doctor.check_writable("engine cache", str(tmp_path / "new" / "engines")).line() == (
        "OK   engine cache: {} writable (will be created)".format(tmp_path / "new" / "engines"))


def test_low_disk_fails_below_the_configured_floor(tmp_path):
    result = doctor.check_disk(str(tmp_path), min_free_mb=1e12)
    assert result.level == FAIL
    assert result.fix == "free space or lower alarms.storage.min_free_mb (1000000000000)"


def test_a_crashing_check_becomes_a_fail_line(monkeypatch):
    def broken(jetson):
        raise ValueError("boom")

    monkeypatch.setattr(doctor, "check_cameras", broken)
    results = doctor.run_checks(None)
    cameras = [r for r in results if r.name == "cameras"][0]
    assert cameras.line() == "FAIL cameras: check crashed: ValueError: boom; fix: report this as a bug"
    assert len(results) == len(CHECK_NAMES)


def test_no_camera_is_a_warning_with_the_file_source_fix(monkeypatch):
    monkeypatch.setattr(doctor.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    result = doctor.check_cameras(False)
    assert result.level == WARN
    assert result.fix.endswith("or use --source FILE|rtsp://...")


def test_plugin_found_where_the_loader_looks(monkeypatch, tmp_path):
    if real_module("tensorrt") is not None:
        pytest.skip("a real TensorRT would try to load the stand-in library")
    library = tmp_path / "libyolo_decode_nms.so"
    library.write_bytes(b"\x7fELF")
    monkeypatch.setenv("JETSON_DETECT_PLUGIN", str(library))
    assert doctor.check_plugin().line() == "OK   YoloDecodeNMS plugin: {} (not loaded: no TensorRT)".format(library)


def test_the_nano_numpy_recipe_is_the_same_everywhere(tmp_path):
    """setup.py, the unit, the installer's environment file, README's Nano steps and doctor's fix agree."""
    import re
    import subprocess

    from packaging.specifiers import SpecifierSet

    setup_py = (REPO / "setup.py").read_text()
    numpy_spec = re.search(r'"numpy([^"]*)"', setup_py).group(1)
    assert doctor.BROKEN_NUMPY not in SpecifierSet(numpy_spec) and "1.19.4" in SpecifierSet(numpy_spec)
    assert "'numpy{}'".format(numpy_spec) in doctor.NUMPY_FIX
    unit = (REPO / "systemd" / "jetson-detect.service").read_text().splitlines()
    assert "Environment=" + doctor.OPENBLAS_FIX in unit
    subprocess.run(["bash", str(REPO / "scripts" / "install_service.sh"), "--root", str(tmp_path)], check=True,
                   stdout=subprocess.DEVNULL)
    env_file = (tmp_path / "etc" / "default" / "jetson-detect").read_text().splitlines()
    assert [line for line in env_file if line.startswith("OPENBLAS_CORETYPE")] == []  # the unit's value stands
    assert any(doctor.OPENBLAS_FIX in line for line in env_file)
    nano = (REPO / "README.md").read_text().split("## Jetson Nano", 1)[1]
    assert "export " + doctor.OPENBLAS_FIX in nano and "'pip>=19.3,<22'" in nano
