"""The command line, as a user runs it: outputs written, bad input answered in one line, never a traceback."""

import json
import shutil
import subprocess
import sys

import onnx
import pytest

from conftest import PT, ROOT, SHARED, WTS

pytestmark = pytest.mark.shared


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "jetson_detect", *map(str, args)], cwd=str(cwd),
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2
    err = result.stderr.strip().splitlines()
    assert err and err[-1].startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in err[-1]


def test_run_on_an_image_writes_the_json_lines_log(tmp_path):
    out = tmp_path / "bus.jsonl"
    result = cli("--source", SHARED / "images" / "bus.jpg", "--weights", WTS, "--save-json", out,
                 "--save-dir", tmp_path / "annotated", "--backend", "onnxruntime")
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text().strip())
    assert (record["source"], record["frame"], record["width"], record["height"]) == ("bus.jpg", 0, 810, 1080)
    assert sorted(d["class_name"] for d in record["detections"]) == ["bus", "person", "person", "person"]
    assert set(record["detections"][0]) == {"class_id", "class_name", "confidence", "box"}
    assert (tmp_path / "annotated" / "bus.jpg").stat().st_size > 10000


def test_an_unreadable_image_in_a_folder_is_reported_and_skipped(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(SHARED / "images" / "zidane.jpg", folder / "a.jpg")
    (folder / "b.jpg").write_bytes(b"not a jpeg")
    shutil.copy(SHARED / "images" / "bus.jpg", folder / "c.jpg")
    out = tmp_path / "log.jsonl"
    result = cli("--source", folder, "--weights", WTS, "--save-json", out, "--img-size", 320)
    assert result.returncode == 0, result.stderr
    assert "skipping" in result.stderr and "b.jpg" in result.stderr
    assert [json.loads(line)["source"] for line in out.read_text().splitlines()] == ["a.jpg", "c.jpg"]


def test_convert_writes_the_tensorrtx_wts(tmp_path):
    out = tmp_path / "yolov5n.wts"
    result = cli("convert", PT, "-o", out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == WTS.read_bytes()


def test_gen_wts_script_writes_the_same_file(tmp_path):
    out = tmp_path / "from_script.wts"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_wts.py"), "-w", str(PT), "-o", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == WTS.read_bytes()


def test_gen_wts_script_refuses_a_broken_checkpoint_in_one_line(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a zip")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_wts.py"), "-w", str(broken)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "broken.pt" in result.stderr


def test_export_onnx_writes_a_valid_model(tmp_path):
    out = tmp_path / "yolov5n.onnx"
    result = cli("export-onnx", "--weights", WTS, "--img-size", 320, "-o", out)
    assert result.returncode == 0, result.stderr
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["decoded"]


def test_missing_weights_file(tmp_path):
    assert_one_line_error(cli("--source", SHARED / "images" / "bus.jpg", "--weights", tmp_path / "none.wts"),
                          "none.wts", "no such weights file")


def test_truncated_wts_names_the_file_and_says_regenerate(tmp_path):
    cut = tmp_path / "cut.wts"
    data = WTS.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert_one_line_error(cli("--source", SHARED / "images" / "bus.jpg", "--weights", cut), "cut.wts",
                          "regenerate")


def test_yaml_whose_nc_disagrees_names_the_tensor(tmp_path):
    cfg = tmp_path / "two.yaml"
    cfg.write_text((ROOT / "configs" / "models" / "yolov5n.yaml").read_text().replace("nc: 80", "nc: 2"))
    assert_one_line_error(cli("--source", SHARED / "images" / "bus.jpg", "--weights", WTS, "--cfg", cfg),
                          "model.24.m.0.bias", "nc=2", "nc=80")


def test_missing_source(tmp_path):
    assert_one_line_error(cli("--source", tmp_path / "nothing.mp4", "--weights", WTS), "nothing.mp4")


def test_bad_image_size_is_refused():
    assert_one_line_error(cli("--source", SHARED / "images" / "bus.jpg", "--weights", WTS, "--img-size", 100),
                          "--img-size 100")


def test_unwritable_json_log_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(cli("--source", SHARED / "images" / "bus.jpg", "--weights", WTS, "--img-size", 320,
                              "--save-json", blocker / "sub" / "log.jsonl"), "log.jsonl")


def test_debug_shows_the_traceback_instead(tmp_path):
    result = cli("--source", SHARED / "images" / "bus.jpg", "--weights", tmp_path / "none.wts", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_help_lists_every_command():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("run", "build", "convert", "export-onnx", "eval", "doctor"):
        assert command in result.stdout


def test_eval_of_the_reference_detections_prints_the_table():
    result = cli("eval", "--images", SHARED / "data" / "coco64" / "images", "--labels",
                 SHARED / "data" / "coco64" / "labels", "--from-json", SHARED / "reference" / "yolov5n" / "coco64")
    assert result.returncode == 0, result.stderr
    overall = [line for line in result.stdout.splitlines() if line.startswith("all ")][0].split()
    assert overall[1:3] == ["64", "542"]
    assert 0 < float(overall[4]) < float(overall[3]) < 1
