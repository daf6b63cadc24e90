"""Alarms that confirm on a track: N of M with a median confidence, updates, ends, stationary tracks, listeners."""

import json
import os

import numpy as np

from jetson_detect.app.alarms import (
    EVENTS_FILE,
    AlarmEngine,
    AlarmObserver,
    AlarmRule,
    StationaryRule,
    TrackAlarmEngine,
)
from jetson_detect.app.config import validate_config
from jetson_detect.app.tracker import TrackedDetections, Tracker
from jetson_detect.math.nms import Detections

W, H = 640, 480
FPS = 4.0


def rule(**over):
    values = dict(class_name="fire", class_id=0, min_confidence=0.5, min_area_px=0.0, roi=None, raise_after=3,
                  window=5, clear_after_s=2.0, cooldown_s=10.0)
    values.update(over)
    return AlarmRule(**values)


def tracked(*items):
    """items: (track_id, score, x1, y1, x2, y2), all fire."""
    if not items:
        return TrackedDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32),
                                 np.zeros(0, np.int64))
    arr = np.array(items, np.float64)
    return TrackedDetections(arr[:, 2:6].astype(np.float32), arr[:, 1].astype(np.float32),
                             np.zeros(len(arr), np.int32), arr[:, 0].astype(np.int64))


def run(engine, frames):
    return [(index, c.kind, c.track_id) for index, frame in enumerate(frames)
            for c in engine.update(frame, W, H, index / FPS)]


def fire(track_id, score, x=100):
    return (track_id, score, x, 100, x + 80, 180)


def test_a_track_raises_when_seen_in_n_of_m_frames_with_median_over_the_threshold():
    frames = [tracked(fire(7, 0.3)), tracked(fire(7, 0.9)), tracked(fire(7, 0.8))]
    assert run(TrackAlarmEngine([rule()]), frames) == [(2, "raise", 7)]


def test_a_few_high_scores_do_not_raise_a_track_whose_median_stays_low():
    frames = [tracked(fire(1, s)) for s in (0.3, 0.9, 0.3, 0.3, 0.95, 0.3, 0.3, 0.9)]
    assert run(TrackAlarmEngine([rule()]), frames) == []


def test_two_tracks_of_one_class_each_raise_and_end_on_their_own():
    both = tracked(fire(1, 0.9, x=10), fire(2, 0.9, x=400))
    frames = [both] * 3 + [tracked(fire(2, 0.9, x=400))] * 12
    assert run(TrackAlarmEngine([rule()]), frames) == [(2, "raise", 1), (2, "raise", 2), (10, "clear", 1)]


def test_updates_follow_the_track_on_a_confidence_rise_and_every_n_seconds():
    scores = [0.6, 0.6, 0.6, 0.62, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]
    frames = [tracked(fire(3, s)) for s in scores]
    engine = TrackAlarmEngine([rule()], updates=(1.5, 0.1))
    assert run(engine, frames) == [(2, "raise", 3), (4, "update", 3), (10, "update", 3)]


def test_a_track_lost_and_found_again_within_cooldown_does_not_raise_twice():
    frames = [tracked(fire(1, 0.9))] * 3 + [tracked()] * 9 + [tracked(fire(2, 0.9, x=104))] * 4
    assert run(TrackAlarmEngine([rule(cooldown_s=60.0)]), frames) == [(2, "raise", 1), (10, "clear", 1)]


def test_a_stationary_track_says_so_once_then_stays_quiet_and_its_place_does_not_raise_again():
    stationary = StationaryRule(max_move_px=5.0, max_move_fraction=0.0, after_s=2.0, suppress=True)
    engine = TrackAlarmEngine([rule(cooldown_s=0.0)], updates=(1.0, 0.05), stationary=stationary)
    lamp = [tracked(fire(1, 0.6 + 0.01 * i, x=100 + (i % 2))) for i in range(20)]
    later = [tracked()] * 9 + [tracked(fire(2, 0.9, x=102))] * 6
    changes = run(engine, lamp + later)
    assert changes[:3] == [(2, "raise", 1), (6, "update", 1), (8, "update", 1)]
    assert changes[3:] == [(27, "clear", 1)]  # stationary from t=2 s (frame 8): no more updates, no new raise


def test_a_moving_track_is_not_stationary():
    stationary = StationaryRule(max_move_px=5.0, max_move_fraction=0.0, after_s=1.0, suppress=True)
    engine = TrackAlarmEngine([rule()], stationary=stationary)
    frames = [tracked(fire(1, 0.9, x=100 + 10 * i)) for i in range(12)]
    flags = [c.stationary for i, f in enumerate(frames) for c in engine.update(f, W, H, i / FPS)]
    assert flags == [False]


def test_class_rule_updates_when_confidence_rises():
    engine = AlarmEngine([rule()], updates=(0.0, 0.1))
    frames = [Detections(np.array([[100, 100, 180, 180]], np.float32), np.array([s], np.float32),
                         np.array([0], np.int32)) for s in (0.6, 0.6, 0.6, 0.65, 0.75)]
    assert [(i, c.kind) for i, f in enumerate(frames) for c in engine.update(f, W, H, i / FPS)] == [
        (2, "raise"), (4, "update")]


class Clock(object):
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def observer_for(tmp_path, clock, camera):
    section = validate_config({"alarms": {
        "enabled": True, "events_dir": str(tmp_path), "confirm": "track", "snapshots": False,
        "update_every_s": 0, "update_min_rise": 0.1, "storage": {"min_free_mb": 0},
        "rules": {"fire": {"raise_after": 2, "window": 3, "clear_after_s": 1.0, "min_confidence": 0.5}}}})
    return AlarmObserver(section["alarms"], ["fire", "smoke"], clock=clock, wall_clock=lambda: 1767225600.0 + clock.t,
                         camera=camera)


def plain(score, x=40):
    return Detections(np.array([[x, 30, x + 60, 90]], np.float32), np.array([score], np.float32),
                      np.array([0], np.int32))


def test_listeners_see_new_update_end_with_camera_track_and_times_in_the_log_order(tmp_path):
    clock = Clock()
    observer = observer_for(tmp_path, clock, "garage")
    heard = []
    observer.add_listener(heard.append)
    image = np.zeros((120, 160, 3), np.uint8)
    tracker = Tracker()
    for index, det in enumerate([plain(0.6), plain(0.6), plain(0.8, 42)] + [Detections.empty()] * 6):
        observer(image, tracker.update(det), index, {})
        clock.t += 0.25
    observer.close()
    with open(os.path.join(str(tmp_path), EVENTS_FILE)) as handle:
        logged = [json.loads(line) for line in handle]
    assert heard == logged
    assert [(e["type"], e["camera"], e["class"], e["track_id"], e["frame"]) for e in heard] == [
        ("new", "garage", "fire", 1, 1), ("update", "garage", "fire", 1, 2), ("end", "garage", "fire", 1, 6)]
    new, update, end = heard
    assert len({new["id"], update["id"], end["id"]}) == 3
    assert update["alarm_id"] == end["alarm_id"] == new["id"]
    assert new["start_time"] == update["start_time"] == end["start_time"] == "2026-01-01T00:01:40.250Z"
    assert new["end_time"] is None and end["end_time"] == "2026-01-01T00:01:41.500Z"
    assert update["confidence"] == 0.8 and end["max_confidence"] == 0.8 and update["box"] == [42, 30, 102, 90]


def test_track_confirm_without_a_pipeline_tracker_tracks_by_itself(tmp_path):
    clock = Clock()
    observer = observer_for(tmp_path, clock, "cam0")
    heard = []
    observer.add_listener(heard.append)
    for index in range(3):
        observer(np.zeros((120, 160, 3), np.uint8), plain(0.7), index, {})
        clock.t += 0.25
    observer.close()
    assert [(e["type"], e["track_id"]) for e in heard] == [("new", 1)]


def test_a_failing_listener_does_not_stop_the_others_or_the_log(tmp_path):
    clock = Clock()
    observer = observer_for(tmp_path, clock, "cam0")

    def broken(event):
        raise RuntimeError("listener bug")

    heard = []
    observer.add_listener(broken)
    observer.add_listener(heard.append)
    for index in range(3):
        observer(np.zeros((120, 160, 3), np.uint8), plain(0.7), index, {})
    observer.close()
    assert [e["type"] for e in heard] == ["new"]
