"""Object tracking per camera: IoU association with a constant-velocity Kalman filter per track, as SORT does.

Pure NumPy, so it runs on a Nano's Python 3.6 without SciPy: SORT's reference code needs filterpy and SciPy's
Hungarian solver, ByteTrack adds ``lap``/``cython_bbox``. Association is greedy on IoU (highest overlap first),
which equals the optimal assignment whenever boxes of one class do not compete for several tracks, the usual case
for a handful of fires or people in a frame. Each detection of a frame gets a track id; ids are never reused.
"""

import collections
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy as np

from ..math.nms import Detections

DEFAULT_IOU_THRESHOLD = 0.3
DEFAULT_MAX_AGE = 15  # frames a track survives without a matching detection (occlusion, a missed frame)
SCORE_HISTORY = 30


class TrackedDetections(Detections):
    """Detections with ``track_ids`` (one int per detection, same order); everything else as ``Detections``."""

    __slots__ = ("track_ids",)

    def __init__(self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, track_ids: np.ndarray) -> None:
        super().__init__(boxes, scores, class_ids)
        self.track_ids = track_ids  # (N,) int64

    def __repr__(self) -> str:
        return "TrackedDetections({} boxes, classes {}, tracks {})".format(len(self), self.class_ids.tolist(),
                                                                           self.track_ids.tolist())


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box in ``boxes_a`` (A, 4) with every one in ``boxes_b`` (B, 4): an (A, B) array."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)[None, :, :]
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = inter_w * inter_h
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def greedy_match(iou: np.ndarray, threshold: float) -> List[Tuple[int, int]]:
    """(row, column) pairs, highest IoU first, each row and column used once, IoU at least ``threshold``."""
    pairs: List[Tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    order = np.argsort(-iou, axis=None, kind="stable")
    used_rows, used_cols = set(), set()
    for flat in order:
        row, col = divmod(int(flat), iou.shape[1])
        if iou[row, col] < threshold:
            break
        if row in used_rows or col in used_cols:
            continue
        used_rows.add(row)
        used_cols.add(col)
        pairs.append((row, col))
    return pairs


class BoxKalman(object):
    """Constant-velocity Kalman filter over a box's centre and size: state (cx, cy, w, h, vcx, vcy, vw, vh).

    Noise scales with the box size (as in ByteTrack), so a large fire and a small one are followed alike.
    """

    _POS_WEIGHT = 1.0 / 20
    _VEL_WEIGHT = 1.0 / 160

    def __init__(self, box: np.ndarray) -> None:
        measurement = self._measure(box)
        self.x = np.concatenate([measurement, np.zeros(4)])
        size = self._size(measurement)
        std = np.array([2 * self._POS_WEIGHT * size] * 4 + [10 * self._VEL_WEIGHT * size] * 4)
        self.P = np.diag(std ** 2)
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)
        self.H = np.eye(4, 8)

    @staticmethod
    def _measure(box: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = [float(v) for v in box[:4]]
        return np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0, max(x2 - x1, 1e-3), max(y2 - y1, 1e-3)])

    @staticmethod
    def _size(state: np.ndarray) -> float:
        return max(float(state[2] + state[3]) / 2.0, 1.0)

    def predict(self) -> np.ndarray:
        """Advance one frame; return the predicted xyxy box."""
        size = self._size(self.x)
        q = np.array([self._POS_WEIGHT * size] * 4 + [self._VEL_WEIGHT * size] * 4) ** 2
        self.x = self.F.dot(self.x)
        self.x[2:4] = np.maximum(self.x[2:4], 1e-3)
        self.P = self.F.dot(self.P).dot(self.F.T) + np.diag(q)
        return self.box()

    def update(self, box: np.ndarray) -> None:
        """Correct the state with a measured xyxy box."""
        size = self._size(self.x)
        r = np.diag((np.array([self._POS_WEIGHT * size] * 4)) ** 2)
        innovation = self._measure(box) - self.H.dot(self.x)
        s = self.H.dot(self.P).dot(self.H.T) + r
        gain = self.P.dot(self.H.T).dot(np.linalg.inv(s))
        self.x = self.x + gain.dot(innovation)
        self.P = (np.eye(8) - gain.dot(self.H)).dot(self.P)

    def box(self) -> np.ndarray:
        cx, cy, w, h = self.x[:4]
        return np.array([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0])


class Track(object):
    """One followed object: its id, class, filter, last box and score history."""

    def __init__(self, track_id: int, class_id: int, box: np.ndarray, score: float) -> None:
        self.track_id = track_id
        self.class_id = class_id
        self.kalman = BoxKalman(box)
        self.box = np.asarray(box[:4], np.float64)
        self.predicted = self.box
        self.hits = 1
        self.misses = 0  # consecutive frames without a match
        self.scores: Deque[float] = collections.deque([float(score)], maxlen=SCORE_HISTORY)


class Tracker(object):
    """Follows the detections of one camera frame by frame; ``update`` returns them with track ids.

    A detection matches the predicted box of a track of the same class with IoU >= ``iou_threshold``; a track
    without a match for more than ``max_age`` frames ends; an unmatched detection starts a new track.
    """

    def __init__(self, iou_threshold: float = DEFAULT_IOU_THRESHOLD, max_age: int = DEFAULT_MAX_AGE) -> None:
        self.iou_threshold = float(iou_threshold)
        self.max_age = int(max_age)
        self.tracks: List[Track] = []
        self.next_id = 1
        self.ended: List[int] = []  # ids of the tracks that ended on the last update

    def update(self, detections: Detections) -> TrackedDetections:
        """Associate one frame's detections with the tracks; every detection gets a track id."""
        boxes = np.asarray(detections.boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(detections.scores, np.float64).reshape(-1)
        classes = np.asarray(detections.class_ids).reshape(-1).astype(np.int64)
        for track in self.tracks:
            track.predicted = track.kalman.predict()
        ids = np.zeros(len(boxes), np.int64)
        matched_tracks = set()
        for class_id in sorted(set(classes.tolist())):
            det_index = np.flatnonzero(classes == class_id)
            candidates = [t for t in self.tracks if t.class_id == class_id]
            predicted = np.array([t.predicted for t in candidates]).reshape(-1, 4)
            pairs = greedy_match(iou_matrix(predicted, boxes[det_index]), self.iou_threshold)
            taken = set()
            for row, col in pairs:
                track = candidates[row]
                index = int(det_index[col])
                track.kalman.update(boxes[index])
                track.box = boxes[index].copy()
                track.hits += 1
                track.misses = 0
                track.scores.append(float(scores[index]))
                ids[index] = track.track_id
                matched_tracks.add(track.track_id)
                taken.add(col)
            for col, index in enumerate(det_index.tolist()):
                if col in taken:
                    continue
                track = Track(self.next_id, int(class_id), boxes[index], float(scores[index]))
                self.next_id += 1
                self.tracks.append(track)
                matched_tracks.add(track.track_id)
                ids[index] = track.track_id
        self.ended = []
        kept = []
        for track in self.tracks:
            if track.track_id not in matched_tracks:
                track.misses += 1
            if track.misses > self.max_age:
                self.ended.append(track.track_id)
            else:
                kept.append(track)
        self.tracks = kept
        return TrackedDetections(np.asarray(detections.boxes), np.asarray(detections.scores),
                                 np.asarray(detections.class_ids), ids)

    def track(self, track_id: int) -> Optional[Track]:
        """The live track with this id, or None once it ended."""
        for track in self.tracks:
            if track.track_id == track_id:
                return track
        return None


def track_ids_of(detections: Detections) -> Optional[np.ndarray]:
    """The detections' track ids, or None when they were not tracked."""
    return getattr(detections, "track_ids", None)


def create_tracker(tracker_config: Dict[str, Any]) -> Tracker:
    """A tracker from the validated ``tracker`` section."""
    return Tracker(float(tracker_config["iou_threshold"]), int(tracker_config["max_age_frames"]))
