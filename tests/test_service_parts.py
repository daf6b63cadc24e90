"""ServiceParts: one config gives the loop its alarm observer, telemetry and systemd notifications."""

import socket
from pathlib import Path

import numpy as np
import pytest

from jetson_detect.app.config import load_config
from jetson_detect.app.service import ServiceNotifier, ServiceParts, filter_classes
from jetson_detect.errors import JetsonDetectError
from jetson_detect.math.nms import Detections

REPO = Path(__file__).resolve().parents[1]


def fire_smoke_config(tmp_path):
    config = load_config(str(REPO / "configs" / "fire_smoke.yaml"))
    config["alarms"]["events_dir"] = str(tmp_path / "events")
    config["alarms"]["storage"]["min_free_mb"] = 0
    config["alarms"]["clip"]["enabled"] = False
    config["telemetry"]["interval_s"] = 0.1
    return config


def test_parts_from_the_fire_smoke_config_alarm_report_and_notify(tmp_path):
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(1.0)
    parts = ServiceParts(fire_smoke_config(tmp_path), ["fire", "smoke"],
                         notifier=ServiceNotifier(socket_value=path, watchdog_s=1000.0))
    fire = Detections(np.array([[10, 10, 60, 60]], np.float32), np.array([0.8], np.float32), np.array([0], np.int32))
    frame = np.zeros((120, 160, 3), np.uint8)
    for index in range(3):
        for observer in parts.observers:
            observer(frame, fire, index, {})
    parts.alarms.flush()
    stats = parts.extra_stats()
    parts.close()
    assert stats["alarms"] == {"active": ["fire"], "events": 1, "pending_events": 0}
    assert stats["telemetry"]["source"] in ("jtop", "proc")
    assert isinstance(stats["telemetry_line"], str) and stats["telemetry_line"]
    assert (tmp_path / "events" / "events.jsonl").read_text().count("\n") == 1
    assert [server.recv(4096) for _ in range(3)] == [b"READY=1\nSTATUS=processing frames", b"WATCHDOG=1",
                                                     b"STOPPING=1"]
    server.close()


def test_parts_refuse_a_model_without_the_alarm_classes(tmp_path):
    with pytest.raises(JetsonDetectError, match=r"^config: alarms.rules.fire: class 'fire' is not in the model; "
                                                r"allowed values: person, car$"):
        ServiceParts(fire_smoke_config(tmp_path), ["person", "car"])


class TwoClassDetector(object):
    names = ["fire", "smoke"]
    input_size = 320

    def detect(self, image_bgr):
        return Detections(np.array([[0, 0, 10, 10], [5, 5, 20, 20]], np.float32), np.array([0.9, 0.8], np.float32),
                          np.array([1, 0], np.int32))

    def infer(self, batch):
        return [self.detect(None)] * len(batch)


def test_detection_classes_keeps_only_the_named_classes():
    config = load_config(str(REPO / "configs" / "fire_smoke.yaml"))
    config["detection"]["classes"] = ["fire"]
    detector = filter_classes(TwoClassDetector(), config)
    kept = detector.detect(np.zeros((4, 4, 3), np.uint8))
    assert kept.class_ids.tolist() == [0] and kept.scores.tolist() == pytest.approx([0.8])
    assert [d.class_ids.tolist() for d in detector.infer(np.zeros((2, 3, 32, 32), np.float32))] == [[0], [0]]
    assert detector.names == ["fire", "smoke"] and detector.input_size == 320


def test_no_class_list_leaves_the_detector_alone():
    config = load_config(str(REPO / "configs" / "fire_smoke.yaml"))
    inner = TwoClassDetector()
    assert filter_classes(inner, config) is inner


def test_unknown_class_in_the_list_names_the_model_classes():
    config = load_config(str(REPO / "configs" / "fire_smoke.yaml"))
    config["detection"]["classes"] = ["flame"]
    with pytest.raises(JetsonDetectError, match=r"^config: detection.classes: class 'flame' is not in the model; "
                                                r"allowed values: fire, smoke$"):
        filter_classes(TwoClassDetector(), config)
