"""Alarm rules on scripted detection sequences: N of M, clear after quiet time, cooldown, ROI, area, confidence."""

import numpy as np
import pytest

from jetson_detect.app.alarms import AlarmEngine, AlarmRule, point_in_polygon, qualifying, rules_from_config
from jetson_detect.app.config import validate_config
from jetson_detect.errors import JetsonDetectError
from jetson_detect.math.nms import Detections

W, H = 640, 480
FIRE, SMOKE = 0, 1


def rule(**over):
    values = dict(class_name="fire", class_id=FIRE, min_confidence=0.5, min_area_px=0.0, roi=None, raise_after=3,
                  window=5, clear_after_s=2.0, cooldown_s=10.0)
    values.update(over)
    return AlarmRule(**values)


def dets(*items):
    """items: (class_id, score, x1, y1, x2, y2)."""
    if not items:
        return Detections.empty()
    arr = np.array(items, np.float32)
    return Detections(arr[:, 2:6], arr[:, 1], arr[:, 0].astype(np.int32))


FIRE_BOX = (FIRE, 0.9, 100, 100, 200, 200)


def run(engine, frames, fps=4.0):
    """Feed scripted frames (one Detections per frame) at ``fps``; return [(frame, kind, class)]."""
    out = []
    for index, frame in enumerate(frames):
        for change in engine.update(frame, W, H, index / fps):
            out.append((index, change.kind, change.rule.class_name))
    return out


def test_raises_on_the_frame_where_n_of_last_m_is_reached():
    seen, none = dets(FIRE_BOX), dets()
    frames = [seen, none, seen, none, none, seen, seen]
    # window of 5: after frame 5 the last five are [seen, none, none, seen] + ... only 2; frame 6 makes 3 of 5
    assert run(AlarmEngine([rule()]), frames) == [(6, "raise", "fire")]


def test_n_hits_spread_wider_than_m_frames_never_raise():
    seen, none = dets(FIRE_BOX), dets()
    frames = [seen, none, none, seen, none, none, seen, none, none] * 3
    assert run(AlarmEngine([rule()]), frames) == []


def test_single_frame_rule_raises_immediately():
    assert run(AlarmEngine([rule(raise_after=1, window=1)]), [dets(), dets(FIRE_BOX)]) == [(1, "raise", "fire")]


def test_clears_after_quiet_time_and_stays_raised_while_seen():
    seen, none = dets(FIRE_BOX), dets()
    frames = [seen] * 30 + [none] * 25  # at 4 fps: last seen t=7.25 s, clear_after_s=2 → clear at t=9.25 s (frame 37)
    assert run(AlarmEngine([rule()]), frames) == [(2, "raise", "fire"), (37, "clear", "fire")]


def test_cooldown_suppresses_a_new_raise_until_it_has_passed():
    seen, none = dets(FIRE_BOX), dets()
    # raise at frame 2 (t=0.5), clear at frame 17 (t=4.25); fire again from frame 30 satisfies 3 of 5 at frame 32
    # (t=8.0), but the 10 s cooldown only ends at t=10.5 (frame 42)
    frames = [seen] * 10 + [none] * 20 + [seen] * 20
    assert run(AlarmEngine([rule()]), frames) == [(2, "raise", "fire"), (17, "clear", "fire"), (42, "raise", "fire")]


def test_zero_cooldown_raises_again_right_after_a_clear():
    seen, none = dets(FIRE_BOX), dets()
    frames = [seen] * 5 + [none] * 25 + [seen] * 5
    assert run(AlarmEngine([rule(cooldown_s=0.0)]), frames) == [
        (2, "raise", "fire"), (12, "clear", "fire"), (32, "raise", "fire")]


def test_low_confidence_does_not_count():
    frames = [dets((FIRE, 0.49, 100, 100, 200, 200))] * 10
    assert run(AlarmEngine([rule(min_confidence=0.5)]), frames) == []


def test_small_boxes_do_not_count():
    small = dets((FIRE, 0.9, 0, 0, 19, 20))  # 380 px²
    big = dets((FIRE, 0.9, 0, 0, 20, 20))  # 400 px²
    assert run(AlarmEngine([rule(min_area_px=400.0)]), [small] * 10) == []
    assert run(AlarmEngine([rule(min_area_px=400.0)]), [big] * 3) == [(2, "raise", "fire")]


def test_roi_counts_only_boxes_whose_centre_is_inside():
    bottom_half = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]
    top = dets((FIRE, 0.9, 100, 50, 200, 150))  # centre y = 100 px = 0.21 of 480
    bottom = dets((FIRE, 0.9, 100, 300, 200, 400))  # centre y = 350 px = 0.73
    assert run(AlarmEngine([rule(roi=bottom_half)]), [top] * 10) == []
    assert run(AlarmEngine([rule(roi=bottom_half)]), [bottom] * 3) == [(2, "raise", "fire")]


def test_other_classes_do_not_count_and_each_class_has_its_own_state():
    smoke_rule = rule(class_name="smoke", class_id=SMOKE, raise_after=2, window=2)
    smoke = dets((SMOKE, 0.9, 0, 0, 50, 50))
    both = dets(FIRE_BOX, (SMOKE, 0.9, 0, 0, 50, 50))
    assert run(AlarmEngine([rule(), smoke_rule]), [smoke, smoke, both, both, both]) == [
        (1, "raise", "smoke"), (4, "raise", "fire")]


def test_qualifying_returns_only_the_boxes_that_passed():
    frame = dets((FIRE, 0.9, 0, 0, 100, 100), (FIRE, 0.3, 0, 0, 100, 100), (SMOKE, 0.95, 0, 0, 100, 100),
                 (FIRE, 0.8, 0, 0, 5, 5))
    hits = qualifying(frame, rule(min_area_px=100.0), W, H)
    assert hits.scores.tolist() == pytest.approx([0.9])
    assert hits.boxes.tolist() == [[0, 0, 100, 100]]


def test_point_in_polygon_concave_shape():
    l_shape = [[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]]
    assert point_in_polygon(0.5, 1.5, l_shape)
    assert not point_in_polygon(1.5, 1.5, l_shape)
    assert point_in_polygon(1.5, 0.5, l_shape)


def test_rules_from_config_resolve_class_ids_from_model_names():
    config = validate_config({"alarms": {"enabled": True, "rules": {"smoke": {"min_area_px": 400}}}})
    rules = rules_from_config(config["alarms"], ["fire", "smoke"])
    assert [(r.class_name, r.class_id, r.min_area_px) for r in rules] == [("smoke", 1, 400.0)]
    with pytest.raises(JetsonDetectError, match=r"alarms.rules.smoke: class 'smoke' is not in the model; "
                                                r"allowed values: person, car$"):
        rules_from_config(config["alarms"], ["person", "car"])


def test_after_a_clear_a_new_raise_needs_n_fresh_qualifying_frames():
    seen, none = dets(FIRE_BOX), dets()
    # clear_after_s=0 clears on the first quiet frame; the hits before it must not raise again at once
    frames = [seen] * 4 + [none] * 3 + [seen] * 3
    assert run(AlarmEngine([rule(clear_after_s=0.0, cooldown_s=0.0)]), frames) == [
        (2, "raise", "fire"), (4, "clear", "fire"), (9, "raise", "fire")]


def test_raise_happens_only_on_a_frame_with_a_qualifying_box():
    seen, none = dets(FIRE_BOX), dets()
    # frames 17-19 reach 3 of 5 during the cooldown (ends at t=5.0 s, frame 20); frame 20 is empty: no raise with
    # no boxes; frame 21 shows fire again and raises
    frames = [seen] * 3 + [none] * 14 + [seen] * 3 + [none, seen]
    changes = run(AlarmEngine([rule(clear_after_s=0.5, cooldown_s=4.5)]), frames)
    assert changes == [(2, "raise", "fire"), (4, "clear", "fire"), (21, "raise", "fire")]
