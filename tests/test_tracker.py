"""The tracker on scripted boxes: ids stay with objects that move, cross and hide; lost objects come back new."""

import numpy as np

from jetson_detect.app.tracker import Tracker, greedy_match, iou_matrix
from jetson_detect.math.nms import Detections


def dets(*rows):
    """Detections from (x1, y1, x2, y2, score, class) rows."""
    array = np.array(rows, np.float32).reshape(-1, 6)
    return Detections(array[:, :4], array[:, 4], array[:, 5].astype(np.int32))


def box_at(x, y, size=40, score=0.8, cls=0):
    return (x, y, x + size, y + size, score, cls)


def test_iou_matrix_of_identical_disjoint_and_half_overlapping_boxes():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [5, 0, 15, 10]])
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 0.0, 50.0 / 150.0]])


def test_greedy_match_takes_the_best_overlap_first_and_each_side_once():
    iou = np.array([[0.9, 0.5], [0.8, 0.1]])
    assert greedy_match(iou, 0.3) == [(0, 0)]
    assert greedy_match(np.array([[0.9, 0.5], [0.8, 0.4]]), 0.3) == [(0, 0), (1, 1)]


def test_a_steady_object_keeps_one_id_for_a_hundred_frames_of_jitter():
    rng = np.random.RandomState(0)
    tracker = Tracker()
    ids = set()
    for _ in range(100):
        dx, dy = rng.uniform(-3, 3, 2)
        ids.update(tracker.update(dets(box_at(100 + dx, 80 + dy))).track_ids.tolist())
    assert ids == {1}


def test_two_objects_crossing_keep_their_ids():
    tracker = Tracker()
    history = []
    for step in range(30):
        left_to_right = box_at(20 + 8 * step, 100)
        right_to_left = box_at(260 - 8 * step, 104)
        out = tracker.update(dets(left_to_right, right_to_left))
        history.append(out.track_ids.tolist())
    assert history[0] == [1, 2]
    assert all(ids == [1, 2] for ids in history), history


def test_an_object_hidden_for_k_frames_within_max_age_keeps_its_id():
    tracker = Tracker(max_age=5)
    for step in range(10):
        assert tracker.update(dets(box_at(50 + 4 * step, 60))).track_ids.tolist() == [1]
    for _ in range(5):  # occluded: nothing detected, the filter keeps predicting the motion
        assert len(tracker.update(Detections.empty()).track_ids) == 0
    assert tracker.update(dets(box_at(50 + 4 * 15, 60))).track_ids.tolist() == [1]


def test_an_object_lost_longer_than_max_age_comes_back_with_a_new_id():
    tracker = Tracker(max_age=3)
    tracker.update(dets(box_at(50, 60)))
    ended = []
    for _ in range(4):
        tracker.update(Detections.empty())
        ended += tracker.ended
    assert ended == [1] and tracker.tracks == []
    assert tracker.update(dets(box_at(50, 60))).track_ids.tolist() == [2]


def test_classes_are_tracked_apart_even_on_the_same_box():
    tracker = Tracker()
    first = tracker.update(dets(box_at(10, 10, cls=0), box_at(10, 10, cls=1))).track_ids.tolist()
    second = tracker.update(dets(box_at(11, 10, cls=1), box_at(11, 10, cls=0))).track_ids.tolist()
    assert first == [1, 2] and second == [2, 1]


def test_every_detection_gets_an_id_and_ids_are_never_reused():
    tracker = Tracker(max_age=0)
    seen = []
    for step in range(5):
        seen += tracker.update(dets(box_at(300 * step, 0))).track_ids.tolist()  # far apart: never the same object
    assert seen == [1, 2, 3, 4, 5]
