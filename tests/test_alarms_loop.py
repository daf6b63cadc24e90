"""The whole loop with alarms on a fire/smoke video made from ../shared/data/fire_smoke: events and snapshots.

Three detectors: a label oracle (the dataset's own boxes, frame by frame: exercises pipeline + alarms without a
model), the COCO YOLOv5n through the CPU backend with a 'person' rule on COCO frames (a real model, now), and the
project's fire/smoke model once weights/fire_smoke_yolov5n.* ships. A last test runs the real run command with
``--config`` once the lead has wired it.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from jetson_detect.app import pipeline
from jetson_detect.app.alarms import EVENTS_FILE, create_alarm_observer
from jetson_detect.app.config import apply_overrides, load_config, validate_config
from jetson_detect.app.service import ServiceNotifier, run_watch
from jetson_detect.backends.detector import create_detector
from jetson_detect.math.nms import Detections

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIRE_SMOKE = SHARED / "data" / "fire_smoke"
COCO = SHARED / "data" / "coco64"
FRAME_W, FRAME_H = 320, 240
QUIET, SEGMENT = 6, 8


def label_classes(label_path):
    return {int(line.split()[0]) for line in label_path.read_text().splitlines() if line.strip()}


def images_with_only(root, class_id, count, exclude_class=None):
    """The first ``count`` images whose labels contain ``class_id`` and nothing else (or not ``exclude_class``)."""
    found = []
    for label in sorted((root / "labels").glob("*.txt")):
        classes = label_classes(label)
        if class_id in classes and (classes == {class_id} if exclude_class is None else exclude_class not in classes):
            image = root / "images" / (label.stem + ".jpg")
            if image.exists():
                found.append(image)
        if len(found) == count:
            return found
    raise AssertionError("not enough images of class {} under {}".format(class_id, root))


def images_without(root, class_id, count):
    """COCO images with no object of ``class_id`` (or no labels at all)."""
    found = []
    for image in sorted((root / "images").glob("*.jpg")):
        label = root / "labels" / (image.stem + ".txt")
        if not label.exists() or class_id not in label_classes(label):
            found.append(image)
        if len(found) == count:
            return found
    raise AssertionError("not enough images without class {}".format(class_id))


def large_people(count):
    """COCO images with a labelled person covering more than a tenth of the picture."""
    found = []
    for label in sorted((COCO / "labels").glob("*.txt")):
        rows = [line.split() for line in label.read_text().splitlines() if line.strip()]
        if any(r[0] == "0" and float(r[3]) * float(r[4]) > 0.1 for r in rows):
            found.append(COCO / "images" / (label.stem + ".jpg"))
        if len(found) == count:
            return found
    raise AssertionError("not enough large people in coco64")


def write_video(path, images):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (FRAME_W, FRAME_H))
    for image in images:
        writer.write(cv2.resize(cv2.imread(str(image)), (FRAME_W, FRAME_H)))
    writer.release()
    return path


@pytest.fixture(scope="module")
def fire_smoke_script():
    """Quiet COCO frames (no person), fire frames, quiet, smoke frames, quiet: the images behind each frame."""
    quiet = images_without(COCO, 0, 3 * QUIET)
    fire = images_with_only(FIRE_SMOKE, 0, SEGMENT)
    smoke = images_with_only(FIRE_SMOKE, 1, SEGMENT)
    return quiet[:QUIET] + fire + quiet[QUIET:2 * QUIET] + smoke + quiet[2 * QUIET:]


@pytest.fixture(scope="module")
def fire_smoke_video(tmp_path_factory, fire_smoke_script):
    return write_video(tmp_path_factory.mktemp("video") / "fire_smoke.mp4", fire_smoke_script)


class LabelOracle(object):
    """A stand-in detector that returns the dataset's labelled boxes for each successive frame (files never drop)."""

    names = ["fire", "smoke"]
    input_size = 320
    backend_name = "labels"

    def __init__(self, images):
        self.images = list(images)
        self.calls = 0

    def detect(self, image_bgr):
        label = self.images[self.calls].parent.parent / "labels" / (self.images[self.calls].stem + ".txt")
        self.calls += 1
        if label.parent.parent != FIRE_SMOKE or not label.exists():
            return Detections.empty()
        rows = np.array([[float(v) for v in line.split()] for line in label.read_text().splitlines() if line.strip()],
                        np.float32)
        height, width = image_bgr.shape[:2]
        cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
        return Detections(boxes, np.full(len(rows), 0.9, np.float32), rows[:, 0].astype(np.int32))


def alarm_config(events_dir, rules):
    return validate_config({"alarms": {
        "enabled": True, "events_dir": str(events_dir), "rules": rules,
        "rule_defaults": {"raise_after": 3, "window": 5, "clear_after_s": 0.0, "cooldown_s": 0.0,
                          "min_confidence": 0.25},
        "storage": {"min_free_mb": 0}}})


def run_loop(detector, video, config, extra_observers=()):
    observer = create_alarm_observer(config, detector.names)
    try:
        summary = pipeline.run_pipeline(detector, str(video), [], observers=[observer] + list(extra_observers),
                                        note=lambda message: None, handle_signals=False)
    finally:
        observer.close()
    return summary


def read_events(events_dir):
    lines = (Path(events_dir) / EVENTS_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_label_oracle_loop_raises_and_clears_fire_then_smoke_with_snapshots(tmp_path, fire_smoke_video,
                                                                           fire_smoke_script):
    events_dir = tmp_path / "events"
    notify_path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(notify_path)
    server.settimeout(0.5)
    messages = []

    def listen():
        while True:
            try:
                messages.append(server.recv(4096).decode())
            except socket.timeout:
                return

    listener = threading.Thread(target=listen)
    listener.start()
    notifier = ServiceNotifier(socket_value=notify_path, watchdog_s=0.0)
    detector = LabelOracle(fire_smoke_script)
    summary = run_loop(detector, fire_smoke_video, alarm_config(events_dir, {"fire": {}, "smoke": {}}),
                       [notifier.observer])
    listener.join()
    server.close()
    assert summary["frames"] == len(fire_smoke_script) == detector.calls
    events = read_events(events_dir)
    fire_start, smoke_start = QUIET, 2 * QUIET + SEGMENT
    assert [(e["event"], e["class"], e["frame"]) for e in events] == [
        ("raise", "fire", fire_start + 2), ("clear", "fire", fire_start + SEGMENT),
        ("raise", "smoke", smoke_start + 2), ("clear", "smoke", smoke_start + SEGMENT)]
    for event in (events[0], events[2]):
        assert event["max_confidence"] == 0.9 and event["boxes"]
        snapshot = cv2.imread(str(events_dir / event["snapshot"]))
        assert snapshot is not None and snapshot.shape == (FRAME_H, FRAME_W, 3)
    assert messages[0] == "READY=1\nSTATUS=processing frames"
    assert messages[1:] == ["WATCHDOG=1"] * len(fire_smoke_script)


def cpu_detector(weights):
    return create_detector(weights=str(weights), backend="onnxruntime", img_size=320)


def test_coco_yolov5n_person_alarm_on_a_real_model(tmp_path):
    """The real CPU backend: COCO photos with people after photos without, rule 'person' (no fire model yet)."""
    detector = cpu_detector(SHARED / "weights" / "yolov5n.wts")
    video = write_video(tmp_path / "people.mp4", images_without(COCO, 0, QUIET) + large_people(SEGMENT))
    events_dir = tmp_path / "events"
    run_loop(detector, video, alarm_config(events_dir, {"person": {"min_confidence": 0.4}}))
    raises = [e for e in read_events(events_dir) if e["event"] == "raise"]
    assert raises, "no person alarm on {} frames of large people".format(SEGMENT)
    assert raises[0]["class"] == "person"
    assert QUIET + 2 <= raises[0]["frame"] < QUIET + SEGMENT
    assert (events_dir / raises[0]["snapshot"]).is_file()


def test_fire_smoke_model_raises_fire_on_the_fire_frames(tmp_path, fire_smoke_video):
    detector = cpu_detector(REPO / "weights" / "fire_smoke_yolov5n.pt")
    assert list(detector.names) == ["fire", "smoke"]
    events_dir = tmp_path / "events"
    run_loop(detector, fire_smoke_video, alarm_config(events_dir, {"fire": {}, "smoke": {}}))
    raises = [e for e in read_events(events_dir) if e["event"] == "raise"]
    fire = [e for e in raises if e["class"] == "fire"]
    assert fire and QUIET + 2 <= fire[0]["frame"] < QUIET + SEGMENT
    assert all((events_dir / e["snapshot"]).is_file() for e in raises)


def test_run_command_with_config_writes_events(tmp_path, fire_smoke_video):
    video = write_video(tmp_path / "people.mp4", images_without(COCO, 0, QUIET) + large_people(SEGMENT))
    config = tmp_path / "watch.yaml"
    config.write_text(
        "source: {video}\nmodel: {{weights: {weights}, backend: onnxruntime, img_size: 320}}\n"
        "alarms:\n  enabled: true\n  events_dir: {events}\n  storage: {{min_free_mb: 0}}\n"
        "  rules: {{person: {{min_confidence: 0.4, clear_after_s: 0, cooldown_s: 0}}}}\n"
        "telemetry: {{enabled: false}}\n".format(video=video, weights=SHARED / "weights" / "yolov5n.wts",
                                                  events=tmp_path / "events"))
    done = subprocess.run([sys.executable, "-m", "jetson_detect", "--config", str(config)], cwd=str(REPO),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stdout.decode()[-2000:]
    raises = [e for e in read_events(tmp_path / "events") if e["event"] == "raise"]
    assert raises and raises[0]["class"] == "person"
    assert (tmp_path / "events" / raises[0]["snapshot"]).is_file()


def test_run_watch_from_the_fire_smoke_config_writes_events(tmp_path, fire_smoke_video, fire_smoke_script):
    """run_watch: what the run command calls with a config (source and rules from the file, flags applied)."""
    config = load_config(str(REPO / "configs" / "fire_smoke.yaml"))
    config = apply_overrides(config, argparse.Namespace(source=str(fire_smoke_video), outputs=[],
                                                        events_dir=str(tmp_path / "events")))
    config["alarms"]["storage"]["min_free_mb"] = 0
    config["telemetry"]["log_every_s"] = 0
    summary = run_watch(config, LabelOracle(fire_smoke_script), note=lambda message: None)
    assert summary["frames"] == len(fire_smoke_script)
    raises = [e for e in read_events(tmp_path / "events") if e["event"] == "raise"]
    assert [e["class"] for e in raises] == ["fire", "smoke"]
    assert all((tmp_path / "events" / e["snapshot"]).is_file() for e in raises)
    assert all((tmp_path / "events" / e["clip"]).is_file() for e in raises)
