"""SIGTERM, SIGINT and SIGHUP stop a file run and the model-loading phase as cleanly as the live loop: exit 0, the
JSON lines whole, the annotated video finalised and playable. Real processes, real signals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WTS = SHARED / "weights" / "yolov5n.wts"
PT = SHARED / "weights" / "yolov5n.pt"  # read and built at 640: over a second, the window for the signal
FRAMES = 400


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """A video long enough that the run is mid-stream when the signal comes."""
    path = tmp_path_factory.mktemp("signals") / "long.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (320, 240))
    sample = cv2.resize(cv2.imread(str(SHARED / "data" / "fire_smoke" / "images" / "fire-image_0.jpg")), (320, 240))
    for _ in range(FRAMES):
        writer.write(sample)
    writer.release()
    return path


def start(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "jetson_detect"] + [str(a) for a in args], cwd=str(cwd), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(process, signum, wait_for):
    """Send ``signum`` once ``wait_for()`` holds; the exit code and everything the process printed."""
    try:
        deadline = time.monotonic() + 120
        while not wait_for():
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read().decode()
            time.sleep(0.02)
        process.send_signal(signum)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    return code, process.stdout.read().decode()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_stops_a_file_run_with_whole_json_lines_and_a_playable_video(long_video, tmp_path, signum):
    log = tmp_path / "dets.jsonl"
    process = start(["--source", long_video, "--weights", WTS, "--backend", "onnxruntime", "--img-size", 320,
                     "--quiet", "--save-json", log, "--save-dir", tmp_path / "annotated"], tmp_path)
    code, output = finish(process, signum, lambda: log.exists() and log.read_text().count("\n") >= 3)
    assert code == 0, output
    assert "{} received; stopping".format(signal.Signals(signum).name) in output
    assert "Traceback" not in output
    text = log.read_text()
    assert text.endswith("\n")  # no half-written line
    records = [json.loads(line) for line in text.splitlines()]
    assert 3 <= len(records) < FRAMES
    assert [r["frame"] for r in records] == list(range(len(records)))
    capture = cv2.VideoCapture(str(tmp_path / "annotated" / "long.mp4"))  # finalised: it opens and plays
    played = 0
    while capture.read()[0]:
        played += 1
    capture.release()
    assert played == len(records)


# The run command in a real process, with the model build standing for a TensorRT build (minutes on a Nano): it
# says so and then blocks, so the signal certainly comes while the model is loading.
SLOW_BUILD = """
import sys, time
from jetson_detect import cli
from jetson_detect.backends import detector

def slow_build(*args, **kwargs):
    print("building the engine", file=sys.stderr, flush=True)
    time.sleep(120)

detector.create_detector = slow_build
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigterm_while_the_model_loads_exits_zero_at_once_before_anything_is_written(long_video, tmp_path):
    log = tmp_path / "dets.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen([sys.executable, "-c", SLOW_BUILD, "--source", str(long_video), "--weights", str(WTS),
                                "--save-json", str(log)], cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    lines = []

    def loading():
        lines.append(process.stdout.readline().decode())
        return lines[-1].startswith("building the engine")

    start = time.monotonic()
    code, output = finish(process, signal.SIGTERM, loading)
    output = "".join(lines) + output
    assert code == 0, output
    assert time.monotonic() - start < 60  # it did not wait for the build
    assert "SIGTERM received while loading the model; stopping" in output
    assert "frames," not in output and not log.exists()
