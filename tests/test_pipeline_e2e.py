"""The whole loop on a real video (coco64 + fire_smoke frames written with OpenCV) through the CPU backend, watched
over HTTP: MJPEG frames decode, a headless Chromium shows them, and SIGTERM ends the process cleanly.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from jetson_detect.app.pipeline import Pipeline
from jetson_detect.video.sinks import HttpSink, JsonlSink
from jetson_detect.video.sources import OpenCVSource

from conftest import video_frames

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WEIGHTS = SHARED / "weights" / "yolov5n.wts"
ARTIFACTS = REPO / "artifacts"
FRAME_W, FRAME_H = 640, 480
IMAGES_PER_SET = 12


def quiet(_message):
    pass


@pytest.fixture(scope="module")
def detector():
    try:
        from jetson_detect.backends.detector import create_detector
    except ImportError as exc:
        pytest.skip("CPU detector not available yet: {}".format(exc))
    return create_detector(weights=str(WEIGHTS), backend="onnxruntime", img_size=320)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """An .mp4 of COCO and fire/smoke photos, each resized to 640x480."""
    paths = (sorted((SHARED / "data" / "coco64" / "images").glob("*.jpg"))[:IMAGES_PER_SET]
             + sorted((SHARED / "data" / "fire_smoke" / "images").glob("*.jpg"))[:IMAGES_PER_SET])
    return write_video([cv2.resize(cv2.imread(str(p)), (FRAME_W, FRAME_H)) for p in paths],
                       tmp_path_factory.mktemp("video") / "coco_fire.mp4")


@pytest.fixture(scope="module")
def bright_video(tmp_path_factory):
    """The same photos less the dark ones (a night fire is close to the web page's #111111 background, so a
    screenshot of it could not tell the image from the page): at least 60 grey levels from the page on average."""
    paths = (sorted((SHARED / "data" / "coco64" / "images").glob("*.jpg"))[:IMAGES_PER_SET]
             + sorted((SHARED / "data" / "fire_smoke" / "images").glob("*.jpg"))[:IMAGES_PER_SET])
    frames = [cv2.resize(cv2.imread(str(p)), (FRAME_W, FRAME_H)) for p in paths]
    return write_video([f for f in frames if np.abs(f.astype(np.float32) - 17).mean() >= 60],
                       tmp_path_factory.mktemp("video") / "bright.mp4")


def write_video(frames, path):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (FRAME_W, FRAME_H))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path




def read_mjpeg_part(response):
    while True:
        line = response.readline()
        if not line:
            raise EOFError("stream ended")
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
            response.readline()
            return response.read(length)


def start_in_thread(pipeline):
    outcome = {}

    def target():
        try:
            outcome["summary"] = pipeline.run()
        except BaseException as exc:  # surfaced by the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def test_loop_serves_decodable_mjpeg_and_logs_what_the_detector_finds(detector, video, tmp_path):
    log = tmp_path / "dets.jsonl"
    http = HttpSink("http://127.0.0.1:0", note=quiet)
    stream = urllib.request.urlopen(http.url + "stream.mjpg", timeout=10)
    pipeline = Pipeline(detector, OpenCVSource(str(video), str(video)), [http, JsonlSink(str(log))], note=quiet)
    thread, outcome = start_in_thread(pipeline)
    jpegs = [read_mjpeg_part(stream) for _ in range(3)]
    thread.join(60)
    stream.close()
    assert "error" not in outcome and outcome["summary"]["frames"] == 2 * IMAGES_PER_SET

    for jpeg in jpegs:
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (FRAME_H, FRAME_W, 3)

    records = [json.loads(line) for line in log.read_text().splitlines()]
    frames = video_frames(video)
    assert [r["frame"] for r in records] == list(range(len(frames)))
    for record, frame in zip(records, frames):  # the loop reports exactly what detect() finds on the same frame
        expected = detector.detect(frame)
        assert [d["class_id"] for d in record["detections"]] == [int(c) for c in expected.class_ids]
        got_boxes = np.array([d["box"] for d in record["detections"]], np.float32).reshape(-1, 4)
        np.testing.assert_allclose(got_boxes, expected.boxes, atol=0.01)
    assert sum(len(r["detections"]) for r in records) > 0


def test_a_real_capture_that_ends_mid_stream_is_reopened_and_detection_goes_on(detector, video):
    notes = []
    frames = 2 * IMAGES_PER_SET
    # A live source whose stream ends is reconnected: here the file ends and is opened again, again and again
    # (as live, capture runs ahead of detection and drops stale frames, so more than two passes are read).
    source = OpenCVSource(str(video), str(video), live=True)
    pipeline = Pipeline(detector, source, [], note=notes.append, max_frames=2 * frames + 3, reconnect_backoff_s=0.01)
    summary = pipeline.run()
    assert summary["frames"] == 2 * frames + 3
    assert summary["reconnects"] >= 2
    assert notes.count("source {}: reconnected".format(video)) == summary["reconnects"]


def test_headless_chromium_shows_the_live_frames(detector, bright_video, tmp_path):
    video = bright_video
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    http = HttpSink("http://127.0.0.1:0", token="t0k3n", note=quiet)
    # live=True on a file makes the source reopen it at its end, so the stream keeps going while Chromium loads
    source = OpenCVSource(str(video), str(video), live=True)
    pipeline = Pipeline(detector, source, [http], note=quiet, reconnect_backoff_s=0.01)
    thread, outcome = start_in_thread(pipeline)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "web_view_chromium.png"
    if shot.exists():
        shot.unlink()
    try:
        deadline = time.monotonic() + 30
        while pipeline.stats.frames < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run",
                        "--user-data-dir={}".format(tmp_path / "chromium-profile"), "--window-size=800,600",
                        "--timeout=4000", "--screenshot={}".format(shot), http.url],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=True)
    finally:
        pipeline.stop()
        thread.join(10)
    assert "error" not in outcome
    screenshot = cv2.imread(str(shot))
    assert screenshot is not None and screenshot.shape[:2] == (600, 800)
    left = (800 - FRAME_W) // 2  # the page centres the image; the page background is #111111
    shown = screenshot[:FRAME_H, left:left + FRAME_W].astype(np.float32)
    assert np.abs(screenshot[:FRAME_H, left + FRAME_W + 10:].astype(np.float32) - 17).max() <= 2
    differences = [np.abs(shown - frame.astype(np.float32)).mean() for frame in video_frames(video)]
    assert min(differences) < 20  # one video frame (plus drawn boxes and JPEG loss) fills the image element
    assert np.abs(shown - 17).mean() > 40


def test_sigterm_exits_zero_within_two_seconds_with_a_complete_jsonl(detector, tmp_path):
    """``python -m jetson_detect`` with the web view and the JSON-lines log, stopped the way systemd stops it."""
    # A long video, so the run is mid-stream when the signal comes.
    long_video = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(long_video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (320, 240))
    sample = cv2.resize(cv2.imread(str(SHARED / "data" / "coco64" / "images" / "000000000009.jpg")), (320, 240))
    for _ in range(600):
        writer.write(sample)
    writer.release()
    log = tmp_path / "dets.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "jetson_detect", "--source", str(long_video), "--weights", str(WEIGHTS),
               "--backend", "onnxruntime", "--img-size", "320", "--output", "http://127.0.0.1:0",
               "--save-json", str(log)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not log.exists() or log.read_text().count("\n") < 3):
            assert process.poll() is None, process.stdout.read().decode()
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = process.wait(timeout=10)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read().decode()
    assert code == 0, output
    assert took < 2.0
    assert "SIGTERM received; stopping" in output
    lines = log.read_text().split("\n")
    assert lines[-1] == ""  # ends with a newline: no half-written line
    records = [json.loads(line) for line in lines[:-1]]
    assert 3 <= len(records) < 600
    assert [r["frame"] for r in records] == list(range(len(records)))
