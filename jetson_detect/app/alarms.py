"""Alarms: turn per-frame detections into raise/clear events with JSON-lines records, snapshots, clips and hooks.

``AlarmEngine`` is the pure rule logic (per-class confidence, minimum box area, ROI polygon, N of the last M frames,
quiet time to clear, cooldown between raises); ``TrackAlarmEngine`` confirms on a tracked object instead (Frigate's
rule: seen in N of its last M frames with a median confidence over the threshold), follows it with updates and
can silence stationary tracks. ``AlarmObserver`` is the frame observer the pipeline calls; it never
blocks on disk or hooks: events are queued in memory first and written by one writer thread, hooks run in their own
process group with a timeout. A full disk skips snapshots and clips (logged) and keeps event lines in memory until
they can be written, so the JSONL file never loses or half-writes an event.
"""

import collections
import datetime
import errno
import fcntl
import json
import logging
import os
import queue
import select
import shlex
import shutil
import signal
import subprocess
import threading
import time
from typing import Any, Callable, Deque, Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..atomic_write import WriteFn, atomic_write_bytes, write_all
from ..errors import JetsonDetectError
from ..math.nms import Detections
from ..video.sinks import video_file_problem
from .tracker import Tracker

LOG = logging.getLogger(__name__)

EVENTS_FILE = "events.jsonl"
SNAPSHOT_DIR = "snapshots"
CLIP_DIR = "clips"
MAX_PENDING_EVENTS = 100000
RETRY_PENDING_S = 2.0
MAX_HOOK_OUTPUT_BYTES = 64 * 1024  # of a hook's stdout+stderr kept for the log; the rest is read and dropped


class AlarmRule(NamedTuple):
    """One class's rule, as validated by the config (``alarms.rules.<class>``)."""

    class_name: str
    class_id: int
    min_confidence: float
    min_area_px: float
    roi: Optional[List[List[float]]]  # polygon, fractions of frame width/height
    raise_after: int  # N ...
    window: int  # ... of the last M frames
    clear_after_s: float
    cooldown_s: float


class AlarmChange(NamedTuple):
    """A state change of one alarm on one frame, with the detections that qualified."""

    kind: str  # "raise", "update" or "clear"
    rule: AlarmRule
    hits: Detections
    track_id: Optional[int]  # None for a class alarm
    stationary: bool


class StationaryRule(NamedTuple):
    """``alarms.stationary``: a track that moved at most ``max_move_px`` in ``after_s`` is stationary."""

    max_move_px: Optional[float]
    max_move_fraction: float  # of the frame diagonal, when max_move_px is null
    after_s: float
    suppress: bool


UPDATES_OFF = (0.0, 0.0)  # (every_s, min_rise): no update events


def point_in_polygon(x: float, y: float, polygon: Sequence[Sequence[float]]) -> bool:
    """Even-odd ray casting; points on an edge may fall either way."""
    inside = False
    count = len(polygon)
    for i in range(count):
        x1, y1 = polygon[i]
        x2, y2 = polygon[(i + 1) % count]
        if (y1 > y) != (y2 > y):
            cross_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < cross_x:
                inside = not inside
    return inside


def qualifying_mask(detections: Detections, rule: AlarmRule, frame_w: int, frame_h: int,
                    min_confidence: Optional[float] = None) -> np.ndarray:
    """Which detections are of the rule's class, with enough confidence and area, box centre in the ROI."""
    boxes = np.asarray(detections.boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(detections.scores, np.float32).reshape(-1)
    ids = np.asarray(detections.class_ids).reshape(-1)
    threshold = rule.min_confidence if min_confidence is None else min_confidence
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep = (ids == rule.class_id) & (scores >= threshold) & (areas >= rule.min_area_px)
    if rule.roi is not None:
        centres_x = (boxes[:, 0] + boxes[:, 2]) / 2.0 / max(frame_w, 1)
        centres_y = (boxes[:, 1] + boxes[:, 3]) / 2.0 / max(frame_h, 1)
        in_roi = np.array([point_in_polygon(cx, cy, rule.roi) for cx, cy in zip(centres_x, centres_y)], bool)
        keep &= in_roi.reshape(-1)
    return keep


def qualifying(detections: Detections, rule: AlarmRule, frame_w: int, frame_h: int) -> Detections:
    """Detections of the rule's class with enough confidence and area whose box centre lies in the ROI."""
    keep = qualifying_mask(detections, rule, frame_w, frame_h)
    boxes = np.asarray(detections.boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(detections.scores, np.float32).reshape(-1)
    ids = np.asarray(detections.class_ids).reshape(-1)
    return Detections(boxes[keep], scores[keep], ids[keep].astype(np.int32))


def _select(detections: Detections, index: int) -> Detections:
    boxes = np.asarray(detections.boxes, np.float32).reshape(-1, 4)
    return Detections(boxes[index:index + 1], np.asarray(detections.scores, np.float32).reshape(-1)[index:index + 1],
                      np.asarray(detections.class_ids).reshape(-1)[index:index + 1].astype(np.int32))


def update_due(best: float, reported: float, last_update: float, now: float, updates: Tuple[float, float]) -> bool:
    """An update event is due when the confidence rose by ``min_rise`` or ``every_s`` passed since the last one."""
    every_s, min_rise = updates
    if min_rise > 0 and best - reported >= min_rise:
        return True
    return every_s > 0 and now - last_update >= every_s


class ClassAlarm(object):
    """State of one class: recent frame verdicts, whether raised, last qualifying time, last raise time."""

    def __init__(self, rule: AlarmRule) -> None:
        self.rule = rule
        self.history: Deque[bool] = collections.deque(maxlen=rule.window)
        self.active = False
        self.last_seen: Optional[float] = None
        self.last_raise: Optional[float] = None
        self.reported = 0.0  # confidence of the last new/update event
        self.last_update = 0.0

    def update(self, hit: bool, now: float) -> Optional[str]:
        """Feed one frame's verdict; return "raise", "clear" or None."""
        self.history.append(hit)
        if hit:
            self.last_seen = now
        if self.active:
            if self.last_seen is not None and now - self.last_seen >= self.rule.clear_after_s and not hit:
                self.active = False
                self.history.clear()  # a new raise needs N fresh qualifying frames
                return "clear"
            return None
        if not hit or sum(self.history) < self.rule.raise_after:
            return None  # raise only on a frame that shows the class, so the event has boxes
        if self.last_raise is not None and now - self.last_raise < self.rule.cooldown_s:
            return None
        self.active = True
        self.last_raise = now
        return "raise"


class AlarmEngine(object):
    """Per-class alarm rules over a stream of detections (pure logic, no I/O).

    ``updates`` = (every_s, min_rise): while raised, an "update" change when the best confidence rose by
    ``min_rise`` since the last event or every ``every_s``; (0, 0) sends none.
    """

    def __init__(self, rules: Sequence[AlarmRule], updates: Tuple[float, float] = UPDATES_OFF) -> None:
        self.alarms = [ClassAlarm(rule) for rule in rules]
        self.updates = updates

    def update(self, detections: Detections, frame_w: int, frame_h: int, now: float) -> List[AlarmChange]:
        """Apply every rule to one frame's detections; return the alarms that were raised, updated or cleared."""
        changes = []
        for alarm in self.alarms:
            hits = qualifying(detections, alarm.rule, frame_w, frame_h)
            kind = alarm.update(len(hits) > 0, now)
            if kind is None and alarm.active and len(hits):
                best = float(hits.scores.max())
                if update_due(best, alarm.reported, alarm.last_update, now, self.updates):
                    kind = "update"
            if kind in ("raise", "update"):
                alarm.reported = float(hits.scores.max())
                alarm.last_update = now
            if kind is not None:
                changes.append(AlarmChange(kind, alarm.rule, hits, None, False))
        return changes

    def active_classes(self) -> List[str]:
        """Names of the classes whose alarm is raised now."""
        return [alarm.rule.class_name for alarm in self.alarms if alarm.active]


class TrackAlarm(object):
    """One tracked object under one rule: presence in its last M frames, its scores, where it started."""

    def __init__(self, window: int, box: np.ndarray, now: float) -> None:
        self.history: Deque[bool] = collections.deque(maxlen=window)
        self.scores: Deque[float] = collections.deque(maxlen=window)
        self.first_centre = ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)
        self.first_seen = now
        self.max_move = 0.0
        self.last_seen = now
        self.box = box
        self.active = False
        self.stationary = False
        self.reported = 0.0
        self.last_update = now

    def see(self, box: np.ndarray, score: float, now: float) -> None:
        self.history.append(True)
        self.scores.append(score)
        self.last_seen = now
        self.box = box
        centre = ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)
        move = float(np.hypot(centre[0] - self.first_centre[0], centre[1] - self.first_centre[1]))
        self.max_move = max(self.max_move, move)


def _overlaps(box: np.ndarray, others: Sequence[np.ndarray]) -> bool:
    for other in others:
        if min(box[2], other[2]) > max(box[0], other[0]) and min(box[3], other[3]) > max(box[1], other[1]):
            return True
    return False


MAX_QUIET_SPOTS = 32


class TrackAlarmEngine(object):
    """Alarms on tracked objects (detections with ``track_ids``; pure logic, no I/O).

    A track raises when it was seen in ``raise_after`` of its last ``window`` frames and the median of those
    scores reaches ``min_confidence``; it clears ``clear_after_s`` after it was last seen. A new track overlapping
    one raised less than ``cooldown_s`` ago does not raise again (a flickering fire that the tracker lost). With
    ``stationary.suppress``, a track that stayed in place for ``after_s`` sends no more updates, and its place is
    remembered so that a new track there does not raise either (a lamp, a sunset reflection).
    """

    def __init__(self, rules: Sequence[AlarmRule], updates: Tuple[float, float] = UPDATES_OFF,
                 stationary: Optional[StationaryRule] = None) -> None:
        self.rules = list(rules)
        self.updates = updates
        self.stationary = stationary
        self.tracks: Dict[Tuple[str, int], TrackAlarm] = {}
        self.recent_raises: Dict[str, List[Tuple[float, np.ndarray]]] = {r.class_name: [] for r in self.rules}
        self.quiet_spots: Dict[str, List[np.ndarray]] = {r.class_name: [] for r in self.rules}

    def _move_limit(self, frame_w: int, frame_h: int) -> float:
        assert self.stationary is not None
        if self.stationary.max_move_px is not None:
            return float(self.stationary.max_move_px)
        return self.stationary.max_move_fraction * float(np.hypot(frame_w, frame_h))

    def update(self, detections: Detections, frame_w: int, frame_h: int, now: float) -> List[AlarmChange]:
        """Apply every rule to one frame's tracked detections; return raises, updates and clears per track."""
        track_ids = getattr(detections, "track_ids", None)
        if track_ids is None:
            raise JetsonDetectError("alarms.confirm: track needs tracked detections; set tracker.enabled: true")
        changes = []
        for rule in self.rules:
            # the confidence threshold applies to the track's median, not to each frame's detection
            mask = qualifying_mask(detections, rule, frame_w, frame_h, min_confidence=0.0)
            seen = set()
            for index in np.flatnonzero(mask).tolist():
                key = (rule.class_name, int(track_ids[index]))
                box = np.asarray(detections.boxes[index][:4], np.float64)
                alarm = self.tracks.get(key)
                if alarm is None:
                    alarm = self.tracks[key] = TrackAlarm(rule.window, box, now)
                alarm.see(box, float(detections.scores[index]), now)
                seen.add(key)
                change = self._step_seen(rule, key, alarm, _select(detections, index), now, frame_w, frame_h)
                if change is not None:
                    changes.append(change)
            for key in [k for k in self.tracks if k[0] == rule.class_name and k not in seen]:
                alarm = self.tracks[key]
                alarm.history.append(False)
                if now - alarm.last_seen < rule.clear_after_s:
                    continue
                del self.tracks[key]
                if alarm.active:
                    last_box = alarm.box.astype(np.float32).reshape(1, 4)
                    hits = Detections(last_box, np.array([alarm.scores[-1]], np.float32), np.array([rule.class_id],
                                                                                               np.int32))
                    changes.append(AlarmChange("clear", rule, hits, key[1], alarm.stationary))
        return changes

    def _step_seen(self, rule: AlarmRule, key: Tuple[str, int], alarm: TrackAlarm, hit: Detections, now: float,
                   frame_w: int, frame_h: int) -> Optional[AlarmChange]:
        became_stationary = False
        if self.stationary is not None and not alarm.stationary and now - alarm.first_seen >= self.stationary.after_s \
                and alarm.max_move <= self._move_limit(frame_w, frame_h):
            alarm.stationary = became_stationary = True
            if self.stationary.suppress:
                spots = self.quiet_spots[rule.class_name]
                spots.append(alarm.box.copy())
                del spots[:-MAX_QUIET_SPOTS]
        score = float(hit.scores[0])
        if alarm.active:
            if became_stationary:
                return self._report("update", rule, key, alarm, hit, now)
            if alarm.stationary and self.stationary is not None and self.stationary.suppress:
                return None
            if update_due(score, alarm.reported, alarm.last_update, now, self.updates):
                return self._report("update", rule, key, alarm, hit, now)
            return None
        if sum(alarm.history) < rule.raise_after or float(np.median(list(alarm.scores))) < rule.min_confidence:
            return None
        suppress = self.stationary is not None and self.stationary.suppress
        if suppress and (alarm.stationary or _overlaps(alarm.box, self.quiet_spots[rule.class_name])):
            return None
        recent = [(t, b) for t, b in self.recent_raises[rule.class_name] if now - t < rule.cooldown_s]
        self.recent_raises[rule.class_name] = recent
        if _overlaps(alarm.box, [b for _, b in recent]):
            return None
        alarm.active = True
        recent.append((now, alarm.box.copy()))
        return self._report("raise", rule, key, alarm, hit, now)

    @staticmethod
    def _report(kind: str, rule: AlarmRule, key: Tuple[str, int], alarm: TrackAlarm, hit: Detections,
                now: float) -> AlarmChange:
        alarm.reported = float(hit.scores[0])
        alarm.last_update = now
        return AlarmChange(kind, rule, hit, key[1], alarm.stationary)

    def active_classes(self) -> List[str]:
        """Names of the classes with at least one raised track."""
        active = {key[0] for key, alarm in self.tracks.items() if alarm.active}
        return [rule.class_name for rule in self.rules if rule.class_name in active]


def stationary_from_config(alarms_config: Dict[str, Any]) -> Optional[StationaryRule]:
    """The ``alarms.stationary`` rule, or None when neither suppression nor marking is wanted (after_s 0)."""
    section = alarms_config.get("stationary")
    if not section or section["after_s"] <= 0:
        return None
    return StationaryRule(section["max_move_px"], float(section["max_move_fraction"]), float(section["after_s"]),
                          bool(section["suppress"]))


def rules_from_config(alarms_config: Dict[str, Any], names: Sequence[str]) -> List[AlarmRule]:
    """Build rules from the validated ``alarms`` section, resolving class names against the model's names."""
    rules = []
    for class_name, rule in alarms_config["rules"].items():
        if class_name not in names:
            raise JetsonDetectError("config: alarms.rules.{}: class {!r} is not in the model; allowed values: {}"
                                    .format(class_name, class_name, ", ".join(names)))
        rules.append(AlarmRule(class_name, list(names).index(class_name), float(rule["min_confidence"]),
                               float(rule["min_area_px"]), rule["roi"], int(rule["raise_after"]), int(rule["window"]),
                               float(rule["clear_after_s"]), float(rule["cooldown_s"])))
    return rules


class EventLog(object):
    """Append-only JSON-lines file; lines wait in memory until written whole (a failed write is truncated away).

    Same rules as the detection log (``JsonlSink``): a torn last line left by a crash is ended with a newline
    before the next event, so it stays a separate line that readers skip; one writer per file (``flock``), a
    second watch on the same events folder is refused at start.
    """

    def __init__(self, path: str, write: Optional[WriteFn] = None) -> None:
        self.path = path
        self._write = write
        self._pending: Deque[bytes] = collections.deque()
        self._lock = threading.Lock()  # serialises flushers (writer thread, close); submit never takes it
        self._failing = False
        self.written = 0
        self._lock_fd = self._lock_file()

    def _lock_file(self) -> Optional[int]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError:
            return None  # not writable yet: each write says so and the events wait in memory
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise JetsonDetectError("config: alarms.events_dir: {} is written by another running watch (the file "
                                        "is locked); stop it or give this one its own events_dir".format(
                                            self.path)) from None
            return None  # a filesystem without locks: write unlocked rather than not at all
        return fd

    def close(self) -> None:
        """Release the file's lock (after the last flush)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def pending(self) -> int:
        """Event lines still held in memory."""
        return len(self._pending)

    def submit(self, event: Dict[str, Any]) -> None:
        """Queue one event (never blocks on disk; call ``flush`` from the writer)."""
        line = (json.dumps(event, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
        if len(self._pending) >= MAX_PENDING_EVENTS:
            LOG.error("event log %s: %d events already wait for disk space; this one is kept only here: %s",
                      self.path, len(self._pending), line.decode("utf-8").strip())
            return
        self._pending.append(line)  # deque.append is atomic: no lock, so a slow flush never blocks the caller

    def flush(self) -> int:
        """Write the waiting lines in order, stopping at the first failure; return how many still wait."""
        with self._lock:
            while self._pending:
                try:
                    self._append(self._pending[0])
                except OSError as exc:
                    if not self._failing:
                        LOG.warning("cannot write event log %s (%s); %d event(s) kept in memory, retrying",
                                    self.path, exc.strerror or exc, len(self._pending))
                    self._failing = True
                    return len(self._pending)
                self._pending.popleft()
                self.written += 1
            if self._failing:
                LOG.warning("event log %s is writable again; all events written", self.path)
                self._failing = False
            return 0

    def _append(self, line: bytes) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # end a torn last line first, so this event stays a line of its own
            try:
                write_all(fd, line, self._write)
                os.fsync(fd)
            except OSError:
                try:
                    os.ftruncate(fd, size)  # never leave half a line behind
                except OSError:
                    pass
                raise
        finally:
            os.close(fd)

    def dump_pending_to_log(self) -> None:
        """Last resort at shutdown: put unwritten events into the log (journal) so they are not lost."""
        for line in list(self._pending):
            LOG.error("event not written to %s: %s", self.path, line.decode("utf-8").strip())


class MediaStore(object):
    """Snapshot and clip files under the events folder, rotated by total size and age, checked for free space."""

    def __init__(self, root: str, max_total_mb: float, max_age_days: float, min_free_mb: float,
                 write: Optional[WriteFn] = None, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.max_total_bytes = int(max_total_mb * 1024 * 1024)
        self.max_age_s = max_age_days * 86400.0
        self.min_free_bytes = int(min_free_mb * 1024 * 1024)
        self._write = write
        self.clock = clock

    def _files(self) -> List[Tuple[float, int, str]]:
        found = []
        for sub in (SNAPSHOT_DIR, CLIP_DIR):
            folder = os.path.join(self.root, sub)
            try:
                names = os.listdir(folder)
            except OSError:
                continue
            for name in names:
                path = os.path.join(folder, name)
                try:
                    info = os.stat(path)
                except OSError:
                    continue
                found.append((info.st_mtime, info.st_size, path))
        found.sort()
        return found

    def _remove(self, path: str) -> bool:
        try:
            os.remove(path)
            return True
        except OSError as exc:
            LOG.warning("cannot remove old event file %s: %s", path, exc.strerror or exc)
            return False

    def rotate(self, incoming_bytes: int = 0) -> None:
        """Delete files older than the age limit, then the oldest until the size limit leaves room."""
        files = self._files()
        now = self.clock()
        kept = []
        for mtime, size, path in files:
            if self.max_age_s > 0 and now - mtime > self.max_age_s and self._remove(path):
                continue
            kept.append((mtime, size, path))
        total = sum(size for _, size, _ in kept)
        while kept and total + incoming_bytes > self.max_total_bytes:
            _, size, path = kept.pop(0)
            if self._remove(path):
                total -= size

    def has_room(self, incoming_bytes: int) -> bool:
        """Rotate, then free oldest files while the disk would drop below the free-space floor."""
        self.rotate(incoming_bytes)
        files = self._files()
        while True:
            try:
                free = shutil.disk_usage(self.root).free
            except OSError:
                return False
            if free - incoming_bytes >= self.min_free_bytes:
                return True
            if not files:
                return False
            self._remove(files.pop(0)[2])

    def save(self, sub: str, name: str, data: bytes) -> Optional[str]:
        """Write a file atomically (temp name, then rename); None when skipped for space or on an error."""
        folder = os.path.join(self.root, sub)
        path = os.path.join(folder, name)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            LOG.warning("cannot save %s (%s); skipped", path, exc.strerror or exc)
            return None
        if not self.has_room(len(data)):
            LOG.warning("disk nearly full under %s: skipping %s (free space below alarms.storage.min_free_mb)",
                        self.root, name)
            return None
        try:
            atomic_write_bytes(path, data, "the event file", write=self._write)
        except JetsonDetectError as exc:
            LOG.warning("%s; skipped", exc)
            return None
        return path


def draw_alarm(frame_bgr: np.ndarray, hits: Detections, label: str, roi: Optional[List[List[float]]]) -> np.ndarray:
    """A copy of the frame with the alarm's boxes, scores and ROI drawn in red."""
    image = frame_bgr.copy()
    height, width = image.shape[:2]
    thickness = max(1, int(round(max(width, height) / 400.0)))
    scale = max(0.4, max(width, height) / 1200.0)
    red = (0, 0, 255)
    if roi is not None:
        points = np.array([[int(x * width), int(y * height)] for x, y in roi], np.int32)
        cv2.polylines(image, [points], True, (0, 255, 255), thickness)
    for box, score in zip(hits.boxes, hits.scores):
        x1, y1, x2, y2 = [int(round(float(v))) for v in box]
        cv2.rectangle(image, (x1, y1), (x2, y2), red, thickness)
        cv2.putText(image, "{} {:.2f}".format(label, float(score)), (x1, max(y1 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, red, thickness)
    return image


class ClipRecorder(object):
    """Keeps the last ``before_s`` of downscaled frames; after a raise, records ``after_s`` more and hands over."""

    def __init__(self, before_s: float, after_s: float, fps: float, max_width: int) -> None:
        self.before_s = before_s
        self.after_s = after_s
        self.fps = fps
        self.max_width = max_width
        self.ring: Deque[np.ndarray] = collections.deque(maxlen=max(1, int(round(before_s * fps)) + 1))
        self.last_t: Optional[float] = None
        self.recording: Optional[Tuple[str, float, List[np.ndarray]]] = None

    def _small(self, frame: np.ndarray) -> np.ndarray:
        height, width = frame.shape[:2]
        if width <= self.max_width:
            return frame.copy()
        new_h = max(2, int(round(height * self.max_width / float(width))) // 2 * 2)
        return cv2.resize(frame, (self.max_width, new_h), interpolation=cv2.INTER_AREA)

    def add(self, frame: np.ndarray, now: float) -> Optional[Tuple[str, List[np.ndarray]]]:
        """Offer a frame (kept at ``fps``); return (name, frames) when a recording just finished."""
        if self.last_t is not None and now - self.last_t < 1.0 / self.fps:
            return self._finish_if_due(now)
        self.last_t = now
        small = self._small(frame)
        if self.recording is not None:
            self.recording[2].append(small)
        else:
            self.ring.append(small)
        return self._finish_if_due(now)

    def start(self, name: str, now: float) -> str:
        """Begin a clip (or join the one being recorded); return its file name."""
        if self.recording is None:
            self.recording = (name, now, list(self.ring))
            self.ring.clear()
        return self.recording[0]

    def _finish_if_due(self, now: float) -> Optional[Tuple[str, List[np.ndarray]]]:
        if self.recording is not None and now - self.recording[1] >= self.after_s:
            return self.finish()
        return None

    def finish(self) -> Optional[Tuple[str, List[np.ndarray]]]:
        """Stop recording now; return (name, frames) or None when nothing was being recorded."""
        if self.recording is None:
            return None
        name, _, frames = self.recording
        self.recording = None
        return name, frames


# Browsers play VP8 WebM in a <video> element; OpenCV writes it through FFmpeg (pip wheels) or GStreamer's vp8enc
# (JetPack). Motion-JPEG AVI, which every OpenCV writes but no browser plays, is the fallback.
CLIP_FORMATS = (("VP80", ".webm"), ("MJPG", ".avi"))
_clip_suffix: List[str] = []


def clip_suffix() -> str:
    """The file suffix of the first clip format this OpenCV can write (tried once, on a tiny clip)."""
    if not _clip_suffix:
        import tempfile
        with tempfile.TemporaryDirectory() as folder:
            for _, suffix in CLIP_FORMATS:
                if encode_clip([np.zeros((16, 16, 3), np.uint8)] * 2, 10.0, os.path.join(folder, "probe" + suffix)):
                    _clip_suffix.append(suffix)
                    break
            else:
                _clip_suffix.append(CLIP_FORMATS[-1][1])
        if _clip_suffix[0] != CLIP_FORMATS[0][1]:
            LOG.warning("this OpenCV cannot write VP8 WebM; alarm clips are Motion-JPEG AVI, which browsers "
                        "download but do not play")
    return _clip_suffix[0]


def encode_clip(frames: List[np.ndarray], fps: float, tmp_path: str) -> Optional[bytes]:
    """The frames as a clip in the container that ``tmp_path``'s suffix names (see CLIP_FORMATS), as bytes; None
    when the encoded file does not play back."""
    if not frames:
        return None
    height, width = frames[0].shape[:2]
    suffix = os.path.splitext(tmp_path)[1].lower()
    fourcc = dict((s, f) for f, s in CLIP_FORMATS).get(suffix, "MJPG")
    writer = cv2.VideoWriter(tmp_path, cv2.VideoWriter_fourcc(*fourcc), float(fps),  # type: ignore[attr-defined]
                             (width, height))
    try:
        if not writer.isOpened():
            return None
        for frame in frames:
            if frame.shape[:2] != (height, width):
                frame = cv2.resize(frame, (width, height))
            writer.write(frame)
    finally:
        writer.release()
    try:
        problem = video_file_problem(tmp_path)
        if problem is not None:  # e.g. the disk filled up while encoding: no unplayable clip is kept
            LOG.warning("clip of %d frame(s) %s; skipped", len(frames), problem)
            return None
        with open(tmp_path, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    finally:
        try:
            os.remove(tmp_path)
        except OSError:
            pass
    return data or None


def parse_hook_command(command: str, key: str = "alarms.hook.command") -> List[str]:
    """The hook's argv (shell-free, split like a shell would); a one-line error naming ``key`` when the quoting is
    bad, the command is empty or its program does not exist, so a broken hook is found at start, not at the fire."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise JetsonDetectError("config: {}: cannot parse {!r} ({}); fix the quoting".format(
            key, command, exc)) from None
    if not argv:
        raise JetsonDetectError("config: {}: the command is empty; give a program and its arguments, or null for "
                                "no hook".format(key))
    program = argv[0]
    if os.sep in program:
        found = os.path.isfile(program) and os.access(program, os.X_OK)
    else:
        found = shutil.which(program) is not None
    if not found:
        raise JetsonDetectError("config: {}: program {} not found or not executable; give its full path (the "
                                "command runs without a shell)".format(key, program))
    return argv


class BoundedReader(object):
    """Drains a hook's output pipe on its own thread, keeping only the last ``limit_bytes``; ``stop`` ends it even
    when a background child of the hook still holds the pipe open (no wait for end-of-file)."""

    def __init__(self, pipe: Any, limit_bytes: int) -> None:
        self.pipe = pipe
        self.limit_bytes = limit_bytes
        self.data = bytearray()
        self.discarded = 0
        self.eof = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alarm-hook-output", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd = self.pipe.fileno()
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([fd], [], [], 0.1)
                if not ready:
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self.data += chunk
                if len(self.data) > self.limit_bytes:
                    self.discarded += len(self.data) - self.limit_bytes
                    del self.data[:len(self.data) - self.limit_bytes]
        except (OSError, ValueError):
            pass
        finally:
            self.eof.set()
            self.pipe.close()

    def stop(self) -> None:
        """Stop reading (the reader closes the pipe within 0.1 s)."""
        self._stop.set()


class HookRunner(object):
    """Runs the hook command with the event JSON on stdin, in its own process group, killed after the timeout.

    The timeout covers the hook and everything it started that still holds its output: a hook that exits but
    leaves a background child with the pipe open is killed (the whole group) at the timeout like a hanging one,
    and nothing waits on the pipe's end, so later hooks are never blocked. Output (stdout and stderr together) is
    read as it comes; only the last ``MAX_HOOK_OUTPUT_BYTES`` are kept (for the log line of a failing hook).
    """

    def __init__(self, command: str, timeout_s: float, max_running: int) -> None:
        self.argv = parse_hook_command(command)
        self.timeout_s = timeout_s
        self.max_running = max_running
        self._lock = threading.Lock()
        self._running: Dict[int, subprocess.Popen] = {}
        self._threads: List[threading.Thread] = []
        self.finished: List[Tuple[int, str]] = []
        self.last_output = b""

    def run(self, event: Dict[str, Any]) -> bool:
        """Start the hook for one event in a thread; False when too many hooks are still running."""
        with self._lock:
            if len(self._running) >= self.max_running:
                LOG.warning("hook %s: %d still running; skipped for event %s", self.argv[0], len(self._running),
                            event.get("id"))
                return False
            env = dict(os.environ)
            env.update({"JETSON_DETECT_EVENT_ID": str(event.get("id")), "JETSON_DETECT_CLASS": str(event.get("class")),
                        "JETSON_DETECT_SNAPSHOT": str(event.get("snapshot") or "")})
            try:
                proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True)
            except OSError as exc:
                LOG.warning("hook %s cannot start (%s); check alarms.hook.command", self.argv[0], exc.strerror or exc)
                return False
            self._running[proc.pid] = proc
        thread = threading.Thread(target=self._wait, args=(proc, event), name="alarm-hook", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return True

    def _wait(self, proc: "subprocess.Popen", event: Dict[str, Any]) -> None:
        deadline = time.monotonic() + self.timeout_s
        output = BoundedReader(proc.stdout, MAX_HOOK_OUTPUT_BYTES)
        payload = (json.dumps(event, sort_keys=True) + "\n").encode("utf-8")
        feeder = threading.Thread(target=self._feed, args=(proc, payload), name="alarm-hook-stdin", daemon=True)
        feeder.start()
        outcome = "exit"
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
            if not output.eof.wait(max(0.0, deadline - time.monotonic())):
                outcome = "timeout"  # exited, but a child it left behind still holds the output pipe
        except subprocess.TimeoutExpired:
            outcome = "timeout"
        if outcome == "timeout":
            self._kill(proc)
            proc.wait()
            output.stop()
            LOG.warning("hook %s killed after %.1f s (alarms.hook.timeout_s) for event %s", self.argv[0],
                        self.timeout_s, event.get("id"))
        else:
            output.eof.wait(1.0)
        tail = bytes(output.data)
        if outcome == "exit" and proc.returncode != 0:
            last = tail.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            LOG.warning("hook %s exited with %d for event %s: %s", self.argv[0], proc.returncode, event.get("id"),
                        last[0][:500])
        with self._lock:
            self._running.pop(proc.pid, None)
            self.last_output = tail
            self.finished.append((proc.returncode, outcome))

    @staticmethod
    def _feed(proc: "subprocess.Popen", payload: bytes) -> None:
        """The event on the hook's stdin, then end-of-file; a hook that does not read it is fine."""
        stdin = proc.stdin
        if stdin is None:
            return
        try:
            stdin.write(payload)
        except (OSError, ValueError):
            pass
        try:
            stdin.close()
        except (OSError, ValueError):
            pass

    @staticmethod
    def _kill(proc: "subprocess.Popen") -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for running hooks, then kill what is left."""
        deadline = time.monotonic() + timeout_s
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            leftovers = list(self._running.values())
        for proc in leftovers:
            self._kill(proc)
        for thread in list(self._threads):
            thread.join(1.0)


DEFAULT_CAMERA = "cam0"
EVENT_TYPES = {"raise": "new", "update": "update", "clear": "end"}


def _track_label(track_id: Optional[int]) -> str:
    return "" if track_id is None else " #{}".format(track_id)


def utc_iso(timestamp: float) -> str:
    """ISO 8601 UTC time with milliseconds, e.g. 2026-01-31T12:00:00.123Z."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "{:03d}Z".format(moment.microsecond // 1000)


Listener = Callable[[Dict[str, Any]], None]


class AlarmObserver(object):
    """The pipeline's frame observer for alarms: ``observer(frame_bgr, detections, frame_index, stats)``.

    ``add_listener(callback)`` makes ``callback(event)`` see every event dict (new, update, end) on the loop's
    thread, right after it was queued for the event log: a listener must only hand the event on (MQTT puts it in
    its own queue), never wait.
    """

    def __init__(self, alarms_config: Dict[str, Any], names: Sequence[str],
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 write: Optional[WriteFn] = None, camera: str = DEFAULT_CAMERA,
                 event_log: Optional["EventLog"] = None) -> None:
        self.names = list(names)
        self.camera = camera
        rules = rules_from_config(alarms_config, self.names)
        updates = (float(alarms_config.get("update_every_s", 0.0)), float(alarms_config.get("update_min_rise", 0.0)))
        self.confirm = alarms_config.get("confirm", "class")
        self.engine: Any = AlarmEngine(rules, updates) if self.confirm == "class" else \
            TrackAlarmEngine(rules, updates, stationary_from_config(alarms_config))
        self.own_tracker: Optional[Tracker] = None  # used only when the pipeline did not track
        self.listeners: List[Listener] = []
        self._failed_listeners: set = set()
        self._open: Dict[Tuple[str, Optional[int]], Dict[str, Any]] = {}  # alarm key -> its new event
        self.events_dir = alarms_config["events_dir"]
        try:
            os.makedirs(self.events_dir, exist_ok=True)
        except OSError as exc:
            raise JetsonDetectError("config: alarms.events_dir: cannot create {} ({}); choose a writable folder".format(
                self.events_dir, exc.strerror or exc)) from None
        self.clock = clock
        self.wall_clock = wall_clock
        self.snapshots = bool(alarms_config["snapshots"])
        storage = alarms_config["storage"]
        self.store = MediaStore(self.events_dir, storage["max_total_mb"], storage["max_age_days"],
                                storage["min_free_mb"], write=write, clock=wall_clock)
        # Cameras sharing an events folder share its one log (one writer per file); its owner closes it.
        self._owns_log = event_log is None
        self.log = event_log if event_log is not None else EventLog(os.path.join(self.events_dir, EVENTS_FILE),
                                                                    write=write)
        clip = alarms_config["clip"]
        self.clip_fps = float(clip["fps"])
        self.clips = ClipRecorder(clip["before_s"], clip["after_s"], clip["fps"], clip["max_width"]) \
            if clip["enabled"] else None
        hook = alarms_config["hook"]
        self.hooks = HookRunner(hook["command"], hook["timeout_s"], hook["max_running"]) if hook["command"] else None
        self.events = 0
        self._seq = 0
        self._last_retry = 0.0
        self._tasks: queue.Queue = queue.Queue(maxsize=16)
        self._closed = False
        self._writer = threading.Thread(target=self._work, name="alarm-writer", daemon=True)
        self._writer.start()

    def __call__(self, frame_bgr: np.ndarray, detections: Detections, frame_index: int, stats: Any = None) -> None:
        now = self.clock()
        height, width = frame_bgr.shape[:2]
        if self.clips is not None:
            done = self.clips.add(frame_bgr, now)
            if done is not None:
                self._offer(("clip",) + done, "clip " + done[0])
        if self.confirm == "track" and getattr(detections, "track_ids", None) is None:
            if self.own_tracker is None:
                self.own_tracker = Tracker()
            detections = self.own_tracker.update(detections)
        for change in self.engine.update(detections, width, height, now):
            self._emit(change, frame_bgr, frame_index, now)
        if self.log.pending and now - self._last_retry >= RETRY_PENDING_S:
            self._last_retry = now
            self._offer(("flush",), None)

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback(event_dict)`` for every event from now on (MQTT, the web app); it must not block."""
        self.listeners.append(callback)

    def _emit(self, change: AlarmChange, frame_bgr: np.ndarray, frame_index: int, now: float) -> None:
        wall = self.wall_clock()
        self._seq += 1
        stamp = datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
        event_id = "{}-{}-{}-{}-{}".format(stamp, self.camera, frame_index, change.rule.class_name, self._seq)
        key = (change.rule.class_name, change.track_id)
        best = int(np.argmax(change.hits.scores)) if len(change.hits) else None
        confidence = round(float(change.hits.scores[best]), 4) if best is not None else None
        event: Dict[str, Any] = {
            "event": change.kind, "type": EVENT_TYPES[change.kind], "id": event_id, "camera": self.camera,
            "time": utc_iso(wall), "unix_time": round(wall, 3), "class": change.rule.class_name,
            "class_id": change.rule.class_id, "frame": int(frame_index), "track_id": change.track_id,
            "confidence": confidence,
            "box": [round(float(v), 1) for v in change.hits.boxes[best][:4]] if best is not None else None,
            "stationary": bool(change.stationary),
        }
        if change.kind == "raise":
            self.events += 1
            event["alarm_id"] = event_id
            event["max_confidence"] = confidence
            event["boxes"] = [[round(float(v), 1) for v in box] + [round(float(s), 4)]
                              for box, s in zip(change.hits.boxes, change.hits.scores)]
            event["start_time"] = event["time"]
            event["end_time"] = None
            event["snapshot"] = os.path.join(SNAPSHOT_DIR, event_id + ".jpg") if self.snapshots else None
            event["clip"] = os.path.join(CLIP_DIR, self.clips.start(event_id + clip_suffix(), now)) \
                if self.clips is not None else None
            self._open[key] = event
            LOG.warning("ALARM %s%s raised on %s at frame %d (max confidence %.2f, %d box(es))",
                        change.rule.class_name, _track_label(change.track_id), self.camera, frame_index,
                        event["max_confidence"], len(change.hits))
        else:
            opened = self._open.get(key, {})
            max_confidence = max(opened.get("max_confidence") or 0.0, confidence or 0.0)
            event.update(alarm_id=opened.get("alarm_id"), max_confidence=round(max_confidence, 4),
                         start_time=opened.get("start_time"), snapshot=opened.get("snapshot"),
                         clip=opened.get("clip"),
                         end_time=event["time"] if change.kind == "clear" else None)
            if change.kind == "clear":
                self._open.pop(key, None)
                LOG.info("alarm %s%s cleared on %s at frame %d", change.rule.class_name,
                         _track_label(change.track_id), self.camera, frame_index)
            elif opened:
                opened["max_confidence"] = event["max_confidence"]
        self.log.submit(event)  # in memory first: the event survives a full or slow disk
        self._offer(("flush",), None)
        if change.kind == "raise" and self.snapshots:
            self._offer(("snapshot", event_id + ".jpg", frame_bgr.copy(), change.hits, change.rule), "snapshot")
        if change.kind == "raise" and self.hooks is not None:
            self._offer(("hook", event), "hook")
        self._notify(event)

    def _notify(self, event: Dict[str, Any]) -> None:
        for listener in self.listeners:
            try:
                listener(dict(event))
            except Exception as exc:  # a broken integration must not stop alarms; say so once per listener
                if id(listener) not in self._failed_listeners:
                    self._failed_listeners.add(id(listener))
                    LOG.warning("alarm listener %r failed (reported once): %s", listener, exc)

    def _offer(self, task: Tuple[Any, ...], what: Optional[str]) -> None:
        try:
            self._tasks.put_nowait(task)
        except queue.Full:
            if what is not None:
                LOG.warning("alarm writer is behind (slow disk?); %s skipped", what)

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            try:
                if task[0] == "stop":
                    return
                self._run_task(task)
            except Exception:  # a writer bug must not stop later events from being written
                LOG.exception("alarm writer task %s failed", task[0])
            finally:
                self._tasks.task_done()

    def _run_task(self, task: Tuple[Any, ...]) -> None:
        kind = task[0]
        if kind == "flush":
            self.log.flush()
        elif kind == "snapshot":
            _, name, frame, hits, rule = task
            ok, jpeg = cv2.imencode(".jpg", draw_alarm(frame, hits, rule.class_name, rule.roi),
                                    [int(cv2.IMWRITE_JPEG_QUALITY), 90])
            if ok:
                self.store.save(SNAPSHOT_DIR, name, jpeg.tobytes())
        elif kind == "clip":
            _, name, frames = task
            tmp = os.path.join(self.events_dir, "." + name + ".encoding" + os.path.splitext(name)[1])
            try:
                data = encode_clip(frames, self.clip_fps, tmp)
            except OSError as exc:
                LOG.warning("cannot encode clip %s (%s); skipped", name, exc.strerror or exc)
                data = None
            if data is not None:
                self.store.save(CLIP_DIR, name, data)
        elif kind == "hook" and self.hooks is not None:
            self.hooks.run(task[1])

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until queued writes are done (tests and shutdown); True when the queue drained in time."""
        deadline = time.monotonic() + timeout_s
        while self._tasks.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._tasks.unfinished_tasks

    def status(self) -> Dict[str, Any]:
        """For the stats endpoint and overlay: active alarms, events raised, events waiting for disk."""
        return {"active": self.engine.active_classes(), "events": self.events, "pending_events": self.log.pending}

    def close(self, timeout_s: float = 5.0) -> None:
        """Finish a clip in progress, write everything queued, wait briefly for hooks, stop the writer."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout_s
        tasks: List[Tuple[Any, ...]] = [("flush",), ("stop",)]
        if self.clips is not None:
            done = self.clips.finish()
            if done is not None:
                tasks.insert(0, ("clip",) + done)
        try:
            for task in tasks:
                self._tasks.put(task, timeout=max(0.1, deadline - time.monotonic()))
        except queue.Full:
            LOG.warning("alarm writer did not drain in %.1f s; writing the event log directly", timeout_s)
        self._writer.join(max(0.1, deadline - time.monotonic()))
        if self.log.flush():
            self.log.dump_pending_to_log()
        if self._owns_log:
            self.log.close()
        if self.hooks is not None:
            self.hooks.join(min(timeout_s, 2.0))


def create_alarm_observer(config: Dict[str, Any], names: Sequence[str]) -> Optional[AlarmObserver]:
    """The alarm observer for a validated config, or None when ``alarms.enabled`` is false."""
    if not config["alarms"]["enabled"]:
        return None
    return AlarmObserver(config["alarms"], names)
