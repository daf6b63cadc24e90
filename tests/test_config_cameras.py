"""``cameras:`` in the config: one entry per camera, per-camera overrides, one-line errors naming the camera and the
key; a bad config makes the service exit 78 (the unit's RestartPreventExitStatus) instead of a restart loop."""

import subprocess
import sys
from pathlib import Path

import pytest

from jetson_detect.app.config import camera_alarms, load_config, validate_config
from jetson_detect.app.service import watch_cameras
from jetson_detect.errors import EXIT_BAD_CONFIG, JetsonDetectError

REPO = Path(__file__).resolve().parents[1]
ROI = [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]


def cameras_config(cameras, **alarms):
    alarms = dict({"enabled": True, "rules": {"fire": {}, "smoke": {"min_confidence": 0.5}}}, **alarms)
    return validate_config({"detect_fps": 4, "alarms": alarms, "cameras": cameras})


def test_the_example_config_loads_with_its_three_cameras():
    config = load_config(str(REPO / "configs" / "multicam.example.yaml"))
    assert [c["name"] for c in watch_cameras(config)] == ["front", "yard", "garage"]
    assert [c["detect_fps"] for c in watch_cameras(config)] == [5.0, 2.0, 5.0]


def test_camera_entries_inherit_rate_and_rules_and_override_their_own():
    config = cameras_config([
        {"name": "front", "source": "rtsp://10.0.0.2/live"},
        {"name": "yard", "source": "rtsp://10.0.0.3/live", "detect_fps": 2, "roi": ROI, "snapshots": False,
         "outputs": ["yard.mp4"], "clip": {"enabled": True, "fps": 5}},
        {"name": "shed", "source": "/dev/video1", "rules": {"smoke": {"window": 8}}},
    ])
    front, yard, shed = watch_cameras(config)
    assert (front["detect_fps"], yard["detect_fps"], shed["detect_fps"]) == (4, 2, 4)
    assert front["alarms"] == config["alarms"]
    assert yard["outputs"] == ["yard.mp4"] and front["outputs"] == []
    assert {name: rule["roi"] for name, rule in yard["alarms"]["rules"].items()} == {
        "fire": [[float(x), float(y)] for x, y in ROI], "smoke": [[float(x), float(y)] for x, y in ROI]}
    assert yard["alarms"]["snapshots"] is False and front["alarms"]["snapshots"] is True
    assert (yard["alarms"]["clip"]["enabled"], yard["alarms"]["clip"]["fps"]) == (True, 5)
    assert front["alarms"]["clip"] == config["alarms"]["clip"]
    assert list(shed["alarms"]["rules"]) == ["smoke"] and shed["alarms"]["rules"]["smoke"]["window"] == 8
    assert validate_config(config) == config  # a validated config validates again unchanged (flag overrides)


def test_without_cameras_the_source_is_camera_cam0_at_the_top_level_rate():
    config = validate_config({"source": "rtsp://cam/live", "detect_fps": 3})
    assert [(c["name"], c["source"], c["detect_fps"]) for c in watch_cameras(config)] == [
        ("cam0", "rtsp://cam/live", 3)]


@pytest.mark.parametrize("cameras, message", [
    ([{"name": "a", "source": "x.mp4"}, {"name": "a", "source": "y.mp4"}],
     "config: cameras.a.name: 'a' is used by two cameras; give each its own name"),
    ([{"name": "front door", "source": "x.mp4"}],
     "config: cameras[0].name: 'front door' is not allowed; expected a unique name of 1 to 64 letters, digits, "
     "'_' or '-'"),
    ([{"name": "front"}],
     "config: cameras.front.source: must not be empty; expected a source URI (csi://0, /dev/video0, rtsp://..., "
     "a file)"),
    ([{"name": "front", "source": "x.mp4", "detect_fps": 0}],
     "config: cameras.front.detect_fps: 0 is out of range; expected detections per second from 0.1 to 120, or null "
     "for the top-level detect_fps"),
    ([{"name": "front", "source": "x.mp4", "fps": 5}],
     "config: cameras.front.fps: unknown key; allowed keys: name, source, detect_fps, roi, rules, outputs, "
     "snapshots, clip"),
    ([{"name": "front", "source": "x.mp4", "rules": {"fire": {"window": 0}}}],
     "config: cameras.front.rules.fire.window: 0 is out of range; expected an integer M from 1 to 1000"),
    ([{"name": "front", "source": "x.mp4", "roi": [[0, 0], [2, 0], [1, 1]]}],
     "config: cameras.front.roi: point [2, 0] is not allowed; expected null or a list of at least 3 [x, y] points, "
     "x and y fractions from 0 to 1"),
    ([{"name": "front", "source": "x.mp4", "clip": {"seconds": 3}}],
     "config: cameras.front.clip.seconds: unknown key; allowed keys: enabled, before_s, after_s, fps, max_width"),
    (["rtsp://10.0.0.2/live"],
     "config: cameras[0]: 'rtsp://10.0.0.2/live' is not a mapping; allowed keys: name, source, detect_fps, roi, "
     "rules, outputs, snapshots, clip"),
])
def test_a_bad_camera_entry_is_one_line_naming_the_camera_and_the_key(cameras, message):
    with pytest.raises(JetsonDetectError) as caught:
        cameras_config(cameras)
    assert str(caught.value) == message


def test_cameras_and_a_top_level_source_together_are_refused():
    with pytest.raises(JetsonDetectError, match="^config: cameras: given together with source/camera"):
        validate_config({"source": "csi://0", "cameras": [{"name": "a", "source": "x.mp4"}]})


def test_camera_alarms_without_overrides_are_the_top_level_section():
    config = cameras_config([{"name": "front", "source": "x.mp4"}])
    assert camera_alarms(config, config["cameras"][0]) == config["alarms"]


@pytest.mark.parametrize("text, fragment", [
    ("cameras:\n  - {name: front, source: x.mp4, detect_fps: fast}\n", "cameras.front.detect_fps: 'fast' (str)"),
    ("model: {precision: fp64}\n", "model.precision: 'fp64' is not allowed"),
])
def test_the_service_exits_78_with_one_line_on_a_bad_config(tmp_path, text, fragment):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    done = subprocess.run([sys.executable, "-m", "jetson_detect", "--config", str(path)], cwd=str(tmp_path),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == EXIT_BAD_CONFIG, done.stderr.decode()
    assert len(lines) == 1 and lines[0].startswith("error: {}: ".format(path)) and fragment in lines[0]
