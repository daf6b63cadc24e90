"""doctor: runs here, one OK/WARN/FAIL line per check with a fix, exit code 1 only when something failed."""

import argparse
import importlib
import sys
from pathlib import Path

import pytest

from jetson_detect.commands import doctor
from jetson_detect.commands.doctor import FAIL, OK, WARN, Check

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
                                       "fix: on an NVIDIA GPU install TensorRT 10.x (pip install tensorrt) for the "
                                       "TensorRT backend")
    if real_module("jtop") is None:
        assert by_name["jtop (jetson-stats)"].startswith("WARN jtop (jetson-stats): not installed")


def test_check_line_format():
    assert Check(OK, "NumPy", "1.19.5").line() == "OK   NumPy: 1.19.5"
    assert Check(FAIL, "GPU", "none", "install the driver").line() == "FAIL GPU: none; fix: install the driver"


@pytest.mark.parametrize("capability, expected", [((5, 3), False), ((6, 1), True), ((6, 2), False),
                                                   ((7, 2), True), ((8, 7), True)])
def test_int8_needs_compute_capability_61_but_not_tx2(capability, expected):
    assert doctor.int8_possible(capability) is expected


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
