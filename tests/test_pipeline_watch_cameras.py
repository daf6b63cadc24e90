"""The unattended watch with ``cameras:``: one alarm rule state per camera, events naming their camera, the
cameras' alarm state in ``Pipeline.status()``, and the command line's cameras replacing the file's."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from jetson_detect.app.config import validate_config
from jetson_detect.app.pipeline import Camera, Pipeline
from jetson_detect.app.service import run_watch
from jetson_detect.cli import build_parser
from jetson_detect.commands.run import config_from_args, main
from jetson_detect.errors import JetsonDetectError
from jetson_detect.math.nms import Detections
from jetson_detect.video.sinks import Sink
from jetson_detect.video.sources import FrameSource

REPO = Path(__file__).resolve().parents[1]


class RedIsFire(object):
    """A fire box wherever the frame is red, nothing elsewhere (one frame at a time)."""

    names = ["fire", "smoke"]

    def detect(self, image_bgr):
        if image_bgr[0, 0, 2] < 128:
            return Detections.empty()
        height, width = image_bgr.shape[:2]
        return Detections(np.array([[0, 0, width / 2, height / 2]], np.float32), np.array([0.9], np.float32),
                          np.array([0], np.int32))


def write_video(path, bgr, frames=8):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 64))
    for _ in range(frames):
        writer.write(np.full((64, 96, 3), bgr, np.uint8))
    writer.release()
    return str(path)


def test_each_camera_keeps_its_own_alarm_state_and_its_events_name_it(tmp_path):
    hot = write_video(tmp_path / "hot.avi", (0, 0, 255))
    cold = write_video(tmp_path / "cold.avi", (40, 40, 40))
    events = tmp_path / "events"
    config = validate_config({
        "save_json": str(tmp_path / "dets.jsonl"),
        "cameras": [{"name": "kitchen", "source": cold}, {"name": "barn", "source": hot}],
        "alarms": {"enabled": True, "events_dir": str(events), "rules": {"fire": {"raise_after": 2, "window": 3}},
                   "storage": {"min_free_mb": 0}},
        "telemetry": {"enabled": False}})
    summary = run_watch(config, RedIsFire(), note=lambda message: None)
    kitchen, barn = summary["cameras"]
    assert (kitchen["name"], kitchen["alarms"]["active"], barn["name"], barn["alarms"]["active"]) == (
        "kitchen", [], "barn", ["fire"])
    assert summary["alarms"] == {"active": ["fire"], "events": 1, "pending_events": 0}
    raised = [json.loads(line) for line in (events / "events.jsonl").read_text().splitlines()]
    assert [(e["event"], e["camera"], e["frame"]) for e in raised] == [("raise", "barn", 1)]
    assert "-barn-" in raised[0]["id"] and (events / raised[0]["snapshot"]).is_file()
    lines = [json.loads(line) for line in (tmp_path / "dets.jsonl").read_text().splitlines()]
    assert sorted((r["camera"], r["frame"]) for r in lines) == sorted(
        [("kitchen", i) for i in range(8)] + [("barn", i) for i in range(8)])


def run_args(*argv):
    return build_parser("run").parse_args(list(argv))


def test_several_sources_on_the_command_line_replace_the_config_cameras():
    config = config_from_args(run_args("--config", str(REPO / "configs" / "multicam.example.yaml"),
                                       "--source", "a.mp4", "--source", "b.mp4", "--detect-fps", "2"))
    assert [(c["name"], c["source"]) for c in config["cameras"]] == [("cam0", "a.mp4"), ("cam1", "b.mp4")]
    assert (config["source"], config["detect_fps"]) == (None, 2.0)
    one = config_from_args(run_args("--config", str(REPO / "configs" / "multicam.example.yaml"), "--camera", "1"))
    assert (one["cameras"], one["camera"], one["source"]) == ([], 1, None)


class Frames(FrameSource):
    name = "frames://"

    def __init__(self, count):
        self.left = count

    def read(self):
        self.left -= 1
        return np.zeros((8, 8, 3), np.uint8) if self.left >= 0 else None


class StatusReadingSink(Sink):
    """As the web app does: gets the pipeline before the first frame and reads its status from frames."""

    name = "status"

    def __init__(self):
        self.pipeline = None
        self.seen = []

    def attach_pipeline(self, pipeline):
        self.pipeline = pipeline

    def write(self, result):
        self.seen.append([(c["name"], c["frames"]) for c in self.pipeline.status()["cameras"]])


def test_a_sink_with_attach_pipeline_gets_the_pipeline_and_reads_its_status():
    sink = StatusReadingSink()
    Pipeline(RedIsFire(), [Camera("only", Frames(2))], [sink], note=lambda message: None).run()
    assert sink.seen == [[("only", 0)], [("only", 1)]]


def test_a_detect_fps_flag_out_of_range_is_refused_in_one_line():
    for value in ("0.0", "nan", "500.0"):
        with pytest.raises(JetsonDetectError, match=r"^--detect-fps {}: must be from 0.1 to 120".format(value)):
            main(run_args("--source", "x.mp4", "--detect-fps", value))
