"""The hostile-output catalogue: outputs that would destroy inputs, full disks, and input files that are not images.

Classes covered here (each case names its input, the exit code and the words of its one-line error):

1. An output that is an input: ``--save-dir`` equal to or inside the source folder (also as ``./x`` vs ``x``),
   ``--save-json``/``--output`` equal to the source or the weights (also through a symlink or a hard link),
   ``--save-dir`` holding the source video, ``convert x.pt -o x.pt``, ``export-onnx -o`` the weights, ``build
   --out`` the weights, ``eval --save-json`` an image.
2. Two outputs that are one file: the same path given twice, two inputs with one annotated name (a glob over two
   folders). ``photo.jpg`` and ``photo.png`` in one folder stay two annotated files (each keeps its name).
3. A full disk: the file-mode JSON-lines log exits 2 with one line (real tmpfs); a ``--save-dir`` video cut short
   exits 2, not 0 (real tmpfs); ``export-onnx`` and ``convert`` leave no partial file (injected ENOSPC, real
   tmpfs); every whole-file writer is atomic.
4. Image inputs that are not images: a FIFO, a character device, a folder named ``x.jpg``, a 0-byte ``.jpg``, a
   truncated PNG, a float32 TIFF, a 5000x1 image: each skipped with its reason and counted, never opened when not
   a regular file; the run goes on. ``eval`` and the INT8 calibration refuse a FIFO among their images with one
   line instead of hanging on it.
5. Atomic writes: a failed write keeps the old file and leaves no temporary; a device target (``/dev/null``) is
   written through, never replaced by a regular file.

Elsewhere, same classes: the JSON-lines rules (append, torn line, lock, short writes, ENOSPC, degrade) and broken
videos in tests/test_video_sinks.py; hooks (bad command at start, bounded output, children holding pipes) in
tests/test_alarms_outputs.py.
"""

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from jetson_detect import cli
from jetson_detect.atomic_write import atomic_output, atomic_write_bytes
from jetson_detect.errors import JetsonDetectError
from jetson_detect.output_paths import check_outputs
from jetson_detect.video.sources import ImageFilesSource, open_source

from conftest import fill_disk

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WTS = SHARED / "weights" / "yolov5n.wts"
PT = SHARED / "weights" / "yolov5n.pt"
BUS = SHARED / "images" / "bus.jpg"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """tmp/images/{a.jpg,b.png}, tmp/clips/v.mp4 (a copy), tmp/w.wts and tmp/x.pt (links to the shared weights)."""
    (tmp_path / "images").mkdir()
    shutil.copy(str(BUS), str(tmp_path / "images" / "a.jpg"))
    cv2.imwrite(str(tmp_path / "images" / "b.png"), np.zeros((64, 64, 3), np.uint8))
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "v.mp4").write_bytes(b"a video the user keeps")
    (tmp_path / "w.wts").symlink_to(WTS)
    (tmp_path / "x.pt").symlink_to(PT)
    (tmp_path / "two" / "p").mkdir(parents=True)
    (tmp_path / "two" / "q").mkdir(parents=True)
    shutil.copy(str(BUS), str(tmp_path / "two" / "p" / "photo.jpg"))
    shutil.copy(str(BUS), str(tmp_path / "two" / "q" / "photo.jpg"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(folder):
    return {str(p): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


W = ["--weights", "w.wts"]
REFUSED = [  # (case, argv, words of the one-line error)
    ("save-dir is the source folder", ["--source", "images", "--save-dir", "./images"] + W,
     "--save-dir ./images is the --source folder images"),
    ("save-dir inside the source folder", ["--source", "images/", "--save-dir", "images/annotated"] + W,
     "--save-dir images/annotated is inside the --source folder images/"),
    ("save-json is the source image", ["--source", "images/a.jpg", "--save-json", "./images/a.jpg"] + W,
     "--save-json ./images/a.jpg is the same file as --source images/a.jpg"),
    ("save-json is the weights (symlink)", ["--source", "images", "--save-json", str(WTS)] + W,
     "is the same file as --weights w.wts"),
    ("--output is the source video", ["--source", "clips/v.mp4", "--output", "clips/../clips/v.mp4"] + W,
     "--output clips/../clips/v.mp4 is the same file as --source clips/v.mp4"),
    ("save-dir holds the source video", ["--source", "clips/v.mp4", "--save-dir", "clips"] + W,
     "--save-dir (annotated clips/v.mp4) clips/v.mp4 is the same file as --source clips/v.mp4"),
    ("one output given twice", ["--source", "images", "--save-json", "d.jsonl", "--output", "./d.jsonl"] + W,
     "--save-json d.jsonl and --output ./d.jsonl are the same output file"),
    ("two inputs, one annotated name", ["--source", "two/*/photo.jpg", "--save-dir", "out"] + W,
     "are the same output file: one would overwrite the other"),
    ("convert x.pt -o x.pt", ["convert", "x.pt", "-o", "./x.pt"],
     "-o/--out ./x.pt is the same file as checkpoint x.pt"),
    ("export-onnx -o the weights", ["export-onnx", "--weights", "w.wts", "-o", str(WTS)],
     "-o/--out {} is the same file as --weights w.wts".format(WTS)),
    ("build --out the weights", ["build", "--weights", "w.wts", "--out", "w.wts"],
     "--out w.wts is the same file as --weights w.wts"),
    ("eval --save-json an image", ["eval", "--images", "images", "--labels", "labels", "--save-json",
                                   "images/./a.jpg"] + W,
     "--save-json images/./a.jpg is the same file as --images images/a.jpg"),
    ("build --timing-cache is the engine", ["build", "--weights", "w.wts", "--out", "e.engine", "--timing-cache",
                                            "e.engine"], "--out e.engine and --timing-cache e.engine are the same"),
]


@pytest.mark.parametrize("case, argv, words", REFUSED, ids=[c[0] for c in REFUSED])
def test_an_output_that_would_destroy_an_input_is_refused_before_any_work(workspace, capsys, case, argv, words):
    before = snapshot(workspace)
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("error: ") and words in err[0]
    assert snapshot(workspace) == before  # nothing written, nothing destroyed


def test_check_outputs_compares_files_not_spellings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("data").mkdir()
    Path("data/in.jpg").write_bytes(b"x")
    os.link("data/in.jpg", "hard.jpg")
    Path("alias").symlink_to("data")
    refused = [
        ([("out", "data/in.jpg")], []), ([("out", "./data/../data/in.jpg")], []), ([("out", "hard.jpg")], []),
        ([("out", "alias/in.jpg")], []), ([], [("dir", "alias")]), ([], [("dir", "alias/sub/deeper")]),
        ([("out", "data")], []),
    ]
    for outputs, output_dirs in refused:
        with pytest.raises(JetsonDetectError):
            check_outputs([("--source", "data"), ("--source", "data/in.jpg")], outputs, output_dirs)
    check_outputs([("--source", "data"), ("--camera", "csi://0"), ("--source", "0"), ("--source", "/dev/video0")],
                  [("out", "data2/in.jpg"), ("web", "http://0.0.0.0:8080"), ("x", None)], [("dir", "datax")])


def test_photo_jpg_and_photo_png_in_one_folder_stay_two_annotated_files_and_bad_files_are_skipped(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(str(BUS), str(folder / "photo.jpg"))
    cv2.imwrite(str(folder / "photo.png"), cv2.imread(str(BUS))[::2, ::2])
    os.mkfifo(str(folder / "pipe.jpg"))  # opening it would hang the run
    (folder / "folder.jpg").mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    result = subprocess.run([sys.executable, "-m", "jetson_detect", "--source", str(folder), "--weights", str(WTS),
                             "--img-size", "320", "--save-dir", str(out), "--save-json", str(log), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120,
                            cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["photo.jpg", "photo.png"]
    assert [json.loads(line)["source"] for line in log.read_text().splitlines()] == ["photo.jpg", "photo.png"]
    for name in ("pipe.jpg", "folder.jpg", "empty.jpg"):
        assert "skipping {}".format(folder / name) in result.stderr



@pytest.fixture
def full_tmpfs(tiny_tmpfs):
    """``tiny_tmpfs``, filled up."""
    fill_disk(tiny_tmpfs)
    return tiny_tmpfs



def test_file_mode_on_a_full_disk_exits_2_with_one_line(full_tmpfs):
    log = full_tmpfs / "dets.jsonl"
    result = subprocess.run([sys.executable, "-m", "jetson_detect", "--source", str(BUS), "--weights", str(WTS),
                             "--img-size", "320", "--save-json", str(log)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=120, cwd=str(ROOT),
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    err = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert err == ["error: detection log {}: cannot write (No space left on device); it ends at its last whole "
                   "line: free some space".format(log)]
    assert log.read_bytes() == b""


def test_convert_on_a_full_disk_exits_2_and_leaves_no_partial_file(full_tmpfs, capsys):
    code = cli.main(["convert", str(PT), "-o", str(full_tmpfs / "y.wts")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: {}: cannot write the .wts file (No space left on device); nothing was "
                                 "written: free some space or choose another disk".format(full_tmpfs / "y.wts")]
    assert os.listdir(str(full_tmpfs)) == ["filler"]


def test_export_onnx_on_a_full_disk_exits_2_and_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    real_write = os.write

    def full_after_4096_bytes(fd, data):
        if os.fstat(fd).st_size >= 4096:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data[:4096]))

    monkeypatch.setattr(os, "write", full_after_4096_bytes)
    code = cli.main(["export-onnx", "--weights", str(WTS), "--img-size", "320", "-o", str(tmp_path / "m.onnx")])
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: {}: cannot write the ONNX file (No space left on device); nothing was "
                                 "written: free some space or choose another disk".format(tmp_path / "m.onnx")]
    assert os.listdir(str(tmp_path)) == []


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "engine.bin"
    path.write_bytes(b"old engine")
    path.chmod(0o640)

    def enospc(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(JetsonDetectError, match="engine.bin: cannot write the engine"):
        atomic_write_bytes(str(path), b"new engine", "the engine", write=enospc)
    with pytest.raises(KeyError):
        with atomic_output(str(path), "the engine") as handle:
            handle.write(b"half")
            raise KeyError("a bug mid-write")
    assert os.listdir(str(tmp_path)) == ["engine.bin"] and path.read_bytes() == b"old engine"
    atomic_write_bytes(str(path), b"new engine", "the engine")
    assert path.read_bytes() == b"new engine" and path.stat().st_mode & 0o777 == 0o640


def bad_image_folder(folder):
    """Each kind of file an image folder must survive, and one good image last: {name: words of its reason}."""
    folder.mkdir()
    os.mkfifo(str(folder / "a_fifo.jpg"))
    (folder / "b_device.jpg").symlink_to("/dev/zero")  # reading it would never end
    (folder / "c_folder.jpg").mkdir()
    (folder / "d_empty.jpg").write_bytes(b"")
    png = cv2.imencode(".png", cv2.imread(str(BUS)))[1].tobytes()
    (folder / "e_truncated.png").write_bytes(png[:len(png) // 2])
    cv2.imwrite(str(folder / "f_float.tif"), np.random.default_rng(0).random((40, 30)).astype(np.float32))
    cv2.imwrite(str(folder / "g_wide.png"), np.zeros((1, 5000, 3), np.uint8))
    shutil.copy(str(BUS), str(folder / "z_good.jpg"))
    return {"a_fifo.jpg": "not a regular file (a FIFO); never opened",
            "b_device.jpg": "not a regular file (a device or socket); never opened",
            "c_folder.jpg": "not a regular file (a folder); never opened",
            "d_empty.jpg": "empty file (0 bytes)",
            "e_truncated.png": "not a decodable 8-bit image",
            "f_float.tif": "not a decodable 8-bit image",
            "g_wide.png": "degenerate 5000x1 image (one side over 64 times the other)"}


def test_every_unusable_image_file_is_skipped_with_its_reason_and_counted(tmp_path):
    expected = bad_image_folder(tmp_path / "in")
    source = open_source(str(tmp_path / "in"))
    assert isinstance(source, ImageFilesSource)
    source.open()
    frames = []

    def read_all():
        while True:
            image = source.read()
            if image is None:
                return
            frames.append(image)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    reader.join(30)
    assert not reader.is_alive(), "reading the folder hung (a FIFO or device opened?)"
    assert [f.shape for f in frames] == [(0, 0, 3)] * 7 + [(1080, 810, 3)]
    assert source.failed == 7
    assert len(source.failures) == len(expected)
    for (path, reason), (name, words) in zip(source.failures, sorted(expected.items())):
        assert os.path.basename(path) == name and reason.startswith(words)


def test_an_atomic_write_to_a_device_writes_through_it_and_never_replaces_it(tmp_path):
    atomic_write_bytes("/dev/null", b"an engine nobody keeps", "the engine")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with pytest.raises(JetsonDetectError, match="cannot write the engine \\(it is a folder\\); give a file path"):
        atomic_write_bytes(str(tmp_path), b"x", "the engine")


def test_eval_and_int8_calibration_refuse_a_fifo_among_their_images_without_opening_it(tmp_path, capsys):
    from jetson_detect.backends.calibrator import CalibrationBatches
    folder = tmp_path / "images"
    folder.mkdir()
    os.mkfifo(str(folder / "pipe.jpg"))  # opening it for reading would hang until a writer comes
    with pytest.raises(JetsonDetectError, match=r"pipe\.jpg: cannot be read as a colour image"):
        CalibrationBatches([str(folder / "pipe.jpg")], 32, 1).batch(0)
    (tmp_path / "dets").mkdir()
    (tmp_path / "dets" / "pipe.json").write_text('{"detections": []}')
    (tmp_path / "dets" / "pipe.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # a label for it: eval refuses none matching
    code = cli.main(["eval", "--images", str(folder), "--labels", str(tmp_path / "dets"), "--from-json",
                     str(tmp_path / "dets")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: {}: cannot read this image; remove it from the evaluation folder".format(
        folder / "pipe.jpg")]


def test_file_mode_video_cut_short_by_a_full_disk_exits_2_not_0(full_tmpfs, tmp_path):
    source = tmp_path / "yard.avi"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    noise = np.random.default_rng(0)
    for _ in range(20):
        writer.write(noise.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    writer.release()
    filler = full_tmpfs / "filler"
    filler.write_bytes(b"\0" * (filler.stat().st_size - 48 * 1024))  # 48 KiB left: the video opens, then fills it
    out = full_tmpfs / "out"
    result = subprocess.run([sys.executable, "-m", "jetson_detect", "--source", str(source), "--weights", str(WTS),
                             "--img-size", "320", "--save-dir", str(out), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=120, cwd=str(ROOT),
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    err = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(err) == 1 and err[0].startswith("error: video {}: ".format(out / "yard.mp4"))
    assert err[0].endswith("it is not playable: check the free space and run again")
