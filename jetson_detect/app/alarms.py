"""Alarms: turn per-frame detections into raise/clear events with JSON-lines records, snapshots, clips and hooks.

``AlarmEngine`` is the pure rule logic (per-class confidence, minimum box area, ROI polygon, N of the last M frames,
quiet time to clear, cooldown between raises). ``AlarmObserver`` is the frame observer the pipeline calls; it never
blocks on disk or hooks: events are queued in memory first and written by one writer thread, hooks run in their own
process group with a timeout. A full disk skips snapshots and clips (logged) and keeps event lines in memory until
they can be written, so the JSONL file never loses or half-writes an event.
"""

import collections
import datetime
import json
import logging
import os
import queue
import shlex
import shutil
import signal
import subprocess
import threading
import time
from typing import Any, Callable, Deque, Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import JetsonDetectError
from ..math.nms import Detections

LOG = logging.getLogger(__name__)

EVENTS_FILE = "events.jsonl"
SNAPSHOT_DIR = "snapshots"
CLIP_DIR = "clips"
MAX_PENDING_EVENTS = 100000
RETRY_PENDING_S = 2.0

WriteFn = Callable[[int, Any], int]  # os.write, or a fault-injecting stand-in in tests


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
    """A state change of one class's alarm on one frame, with the detections that qualified."""

    kind: str  # "raise" or "clear"
    rule: AlarmRule
    hits: Detections


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


def qualifying(detections: Detections, rule: AlarmRule, frame_w: int, frame_h: int) -> Detections:
    """Detections of the rule's class with enough confidence and area whose box centre lies in the ROI."""
    boxes = np.asarray(detections.boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(detections.scores, np.float32).reshape(-1)
    ids = np.asarray(detections.class_ids).reshape(-1)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep = (ids == rule.class_id) & (scores >= rule.min_confidence) & (areas >= rule.min_area_px)
    if rule.roi is not None:
        centres_x = (boxes[:, 0] + boxes[:, 2]) / 2.0 / max(frame_w, 1)
        centres_y = (boxes[:, 1] + boxes[:, 3]) / 2.0 / max(frame_h, 1)
        in_roi = np.array([point_in_polygon(cx, cy, rule.roi) for cx, cy in zip(centres_x, centres_y)], bool)
        keep &= in_roi.reshape(-1)
    return Detections(boxes[keep], scores[keep], ids[keep].astype(np.int32))


class ClassAlarm(object):
    """State of one class: recent frame verdicts, whether raised, last qualifying time, last raise time."""

    def __init__(self, rule: AlarmRule) -> None:
        self.rule = rule
        self.history: Deque[bool] = collections.deque(maxlen=rule.window)
        self.active = False
        self.last_seen: Optional[float] = None
        self.last_raise: Optional[float] = None

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
    """Per-class alarm rules over a stream of detections (pure logic, no I/O)."""

    def __init__(self, rules: Sequence[AlarmRule]) -> None:
        self.alarms = [ClassAlarm(rule) for rule in rules]

    def update(self, detections: Detections, frame_w: int, frame_h: int, now: float) -> List[AlarmChange]:
        """Apply every rule to one frame's detections; return the alarms that were raised or cleared."""
        changes = []
        for alarm in self.alarms:
            hits = qualifying(detections, alarm.rule, frame_w, frame_h)
            kind = alarm.update(len(hits) > 0, now)
            if kind is not None:
                changes.append(AlarmChange(kind, alarm.rule, hits))
        return changes

    def active_classes(self) -> List[str]:
        """Names of the classes whose alarm is raised now."""
        return [alarm.rule.class_name for alarm in self.alarms if alarm.active]


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


def write_all(fd: int, data: bytes, write: WriteFn = os.write) -> None:
    """Write every byte or raise OSError (os.write may write less than asked on a nearly full disk)."""
    view = memoryview(data)
    while view:
        written = write(fd, view)
        if written <= 0:
            raise OSError(28, "No space left on device (short write)")
        view = view[written:]


class EventLog(object):
    """Append-only JSON-lines file; lines wait in memory until written whole (a failed write is truncated away)."""

    def __init__(self, path: str, write: WriteFn = os.write) -> None:
        self.path = path
        self._write = write
        self._pending: Deque[bytes] = collections.deque()
        self._lock = threading.Lock()  # serialises flushers (writer thread, close); submit never takes it
        self._failing = False
        self.written = 0

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
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
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
                 write: WriteFn = os.write, clock: Callable[[], float] = time.time) -> None:
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
        tmp = path + ".part"
        try:
            os.makedirs(folder, exist_ok=True)
            if not self.has_room(len(data)):
                LOG.warning("disk nearly full under %s: skipping %s (free space below alarms.storage.min_free_mb)",
                            self.root, name)
                return None
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                write_all(fd, data, self._write)
            finally:
                os.close(fd)
            os.rename(tmp, path)
            return path
        except OSError as exc:
            LOG.warning("cannot save %s (%s); skipped", path, exc.strerror or exc)
            try:
                os.remove(tmp)
            except OSError:
                pass
            return None


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


def encode_clip(frames: List[np.ndarray], fps: float, tmp_path: str) -> Optional[bytes]:
    """Motion-JPEG AVI bytes of the frames (OpenCV's built-in writer, present in every build)."""
    if not frames:
        return None
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(tmp_path, cv2.VideoWriter_fourcc(*"MJPG"), float(fps),  # type: ignore[attr-defined]
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
        with open(tmp_path, "rb") as handle:
            return handle.read()
    finally:
        os.remove(tmp_path)


class HookRunner(object):
    """Runs the hook command with the event JSON on stdin, in its own process group, killed after the timeout."""

    def __init__(self, command: str, timeout_s: float, max_running: int) -> None:
        self.argv = shlex.split(command)
        self.timeout_s = timeout_s
        self.max_running = max_running
        self._lock = threading.Lock()
        self._running: Dict[int, subprocess.Popen] = {}
        self._threads: List[threading.Thread] = []
        self.finished: List[Tuple[int, str]] = []

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
                proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, env=env, start_new_session=True)
            except OSError as exc:
                LOG.warning("hook %s cannot start (%s); check alarms.hook.command", self.argv[0], exc.strerror or exc)
                return False
            self._running[proc.pid] = proc
        thread = threading.Thread(target=self._wait, args=(proc, event), name="alarm-hook", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return True

    def _wait(self, proc: "subprocess.Popen", event: Dict[str, Any]) -> None:
        payload = (json.dumps(event, sort_keys=True) + "\n").encode("utf-8")
        outcome = "exit"
        try:
            _, stderr = proc.communicate(payload, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            outcome = "timeout"
            self._kill(proc)
            _, stderr = proc.communicate()
        except OSError:
            stderr = b""  # the hook closed stdin early; its exit code still tells
            proc.wait()
        if outcome == "timeout":
            LOG.warning("hook %s killed after %.1f s (alarms.hook.timeout_s) for event %s", self.argv[0],
                        self.timeout_s, event.get("id"))
        elif proc.returncode != 0:
            tail = (stderr or b"").decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            LOG.warning("hook %s exited with %d for event %s: %s", self.argv[0], proc.returncode, event.get("id"),
                        tail[0])
        with self._lock:
            self._running.pop(proc.pid, None)
            self.finished.append((proc.returncode, outcome))

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


def utc_iso(timestamp: float) -> str:
    """ISO 8601 UTC time with milliseconds, e.g. 2026-01-31T12:00:00.123Z."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "{:03d}Z".format(moment.microsecond // 1000)


class AlarmObserver(object):
    """The pipeline's frame observer for alarms: ``observer(frame_bgr, detections, frame_index, stats)``."""

    def __init__(self, alarms_config: Dict[str, Any], names: Sequence[str],
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 write: WriteFn = os.write, camera: Optional[str] = None) -> None:
        self.names = list(names)
        self.camera = camera  # named in every event, its file names and log lines (cameras share events_dir)
        self._on_camera = " of camera {}".format(camera) if camera is not None else ""
        self.engine = AlarmEngine(rules_from_config(alarms_config, self.names))
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
        self.log = EventLog(os.path.join(self.events_dir, EVENTS_FILE), write=write)
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
        for change in self.engine.update(detections, width, height, now):
            self._emit(change, frame_bgr, frame_index, now)
        if self.log.pending and now - self._last_retry >= RETRY_PENDING_S:
            self._last_retry = now
            self._offer(("flush",), None)

    def _emit(self, change: AlarmChange, frame_bgr: np.ndarray, frame_index: int, now: float) -> None:
        wall = self.wall_clock()
        self._seq += 1
        stamp = datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
        event_id = "{}-{}-{}-{}".format(stamp, frame_index, change.rule.class_name, self._seq)
        if self.camera is not None:
            event_id = "{}-{}".format(self.camera, event_id)
        event: Dict[str, Any] = {
            "event": change.kind, "id": event_id, "time": utc_iso(wall), "unix_time": round(wall, 3),
            "class": change.rule.class_name, "class_id": change.rule.class_id, "frame": int(frame_index),
        }
        if self.camera is not None:
            event["camera"] = self.camera
        if change.kind == "raise":
            self.events += 1
            event["max_confidence"] = round(float(change.hits.scores.max()), 4)
            event["boxes"] = [[round(float(v), 1) for v in box] + [round(float(s), 4)]
                              for box, s in zip(change.hits.boxes, change.hits.scores)]
            event["snapshot"] = os.path.join(SNAPSHOT_DIR, event_id + ".jpg") if self.snapshots else None
            event["clip"] = os.path.join(CLIP_DIR, self.clips.start(event_id + ".avi", now)) \
                if self.clips is not None else None
            LOG.warning("ALARM %s raised at frame %d%s (max confidence %.2f, %d box(es))", change.rule.class_name,
                        frame_index, self._on_camera, event["max_confidence"], len(change.hits))
        else:
            LOG.info("alarm %s cleared at frame %d%s", change.rule.class_name, frame_index, self._on_camera)
        self.log.submit(event)  # in memory first: the event survives a full or slow disk
        self._offer(("flush",), None)
        if change.kind == "raise" and self.snapshots:
            self._offer(("snapshot", event_id + ".jpg", frame_bgr.copy(), change.hits, change.rule), "snapshot")
        if change.kind == "raise" and self.hooks is not None:
            self._offer(("hook", event), "hook")

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
            tmp = os.path.join(self.events_dir, "." + name + ".encoding.avi")
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
        if self.hooks is not None:
            self.hooks.join(min(timeout_s, 2.0))


def create_alarm_observer(config: Dict[str, Any], names: Sequence[str]) -> Optional[AlarmObserver]:
    """The alarm observer for a validated config, or None when ``alarms.enabled`` is false."""
    if not config["alarms"]["enabled"]:
        return None
    return AlarmObserver(config["alarms"], names)
