"""The loop for every input: cameras (live) and files alike → scheduler → pre-process → infer → per-camera outputs.

Each camera has its own capture thread (newest frame for live sources, every frame in order for files, its own
reconnect), so a dead or stalled camera never holds up the others. A scheduler takes the cameras whose
``detect_fps`` says a frame is due, in fair round-robin, as one batch for the one detector; pre-processing,
inference and output each run on their own thread with bounded queues, so throughput is set by the slowest stage.
When inference cannot keep up, every camera's rate drops evenly and the frames it could not take are counted per
camera (``skipped``). After inference everything is per camera: boxes in its own frame's pixels, drawing, its own
sinks and observers (alarms), stats.

Hooks for what observes the loop (the web app, MQTT, alarms, systemd):

- frame observers ``observer(frame_bgr, detections, frame_index, stats)``: given to ``Pipeline`` they see every
  camera's frames (``stats["camera"]`` names it); given to a ``Camera`` they see that camera's frames only;
- sinks get a ``FrameResult`` per frame (``result.camera`` names the camera);
- any sink or observer with an ``attach_pipeline(pipeline)`` method gets the pipeline before the first frame, to
  call ``pipeline.status()`` (see there for its format) from its own thread.

SIGINT, SIGTERM and SIGHUP only set a flag (``StopSignals``); the loop sees it within 0.1 s, says so and stops with
every output flushed and closed.
"""

import argparse
import collections
import os
import queue
import signal
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import JetsonDetectError
from ..math.boxes import scale_boxes_to_original
from ..math.nms import Detections
from ..video.draw import draw_detections, draw_overlay
from ..video.sinks import FrameResult, JsonlSink, Sink, open_sinks
from ..video.sources import CaptureThread, Frame, FrameSource, open_source

Observer = Callable[[np.ndarray, object, int, Dict[str, object]], None]

STAGES = ("preprocess", "infer", "output")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_END = object()  # passed down the queues when every source is exhausted
_EMPTY = object()  # nothing waiting in a queue right now
MAX_CONSECUTIVE_FAILURES = 25
STOP_TIMEOUT_S = 1.0
FPS_WINDOW = 30


def camera_name(index: int) -> str:
    """The name of the camera made from the index-th ``--source``/``--camera``: cam0, cam1, ..."""
    return "cam{}".format(index)


class Camera(object):
    """One input of the loop and what belongs to it alone: its rate, its own sinks and frame observers.

    ``detect_fps`` limits how often a live camera is detected on (None: as often as the loop can); files and
    folders ignore it and give every frame. ``status_extra()`` adds keys (e.g. its alarm state) to its entry in
    ``Pipeline.status()``. ``tracker`` (``app.tracker.Tracker``, one per camera: its own track state) gives the
    camera's detections track ids before the sinks, observers and alarms see them.
    """

    def __init__(self, name: str, source: FrameSource, detect_fps: Optional[float] = None,
                 sinks: Sequence[Sink] = (), observers: Sequence[Observer] = (),
                 status_extra: Optional[Callable[[], Dict[str, Any]]] = None, tracker: Any = None) -> None:
        self.name = name
        self.tracker = tracker
        self.source = source
        self.detect_fps = float(detect_fps) if detect_fps and source.live else None
        self.sinks = list(sinks)
        self.observers = list(observers)
        self.status_extra = status_extra


class StopSignals(object):
    """SIGINT, SIGTERM and SIGHUP set ``received`` and nothing else: no printing, no locks (a handler can run in
    the middle of any code of the main thread, even one holding a lock). A second signal gets the old handler."""

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._previous: Dict[int, Any] = {}

    def install(self) -> "StopSignals":
        """Take over the stop signals (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received = signum
        signal.signal(signum, self._previous[signum])  # a second Ctrl-C interrupts even a stuck stop

    @property
    def name(self) -> str:
        """The received signal's name, e.g. SIGTERM."""
        return signal.Signals(self.received).name if self.received is not None else ""

    def restore(self) -> None:
        """Put the handlers back as they were before ``install``."""
        for signum, old in self._previous.items():
            signal.signal(signum, old)
        self._previous = {}


class PipelineStats(object):
    """Thread-safe counters of the whole loop: per-stage latency (moving average and mean), end-to-end latency
    and FPS over every camera."""

    def __init__(self, fps_window: int = FPS_WINDOW, smoothing: float = 0.1) -> None:
        self._lock = threading.Lock()
        self._smoothing = smoothing
        self.stage_ema_ms: Dict[str, Optional[float]] = collections.OrderedDict((s, None) for s in STAGES)
        self.stage_total_ms: Dict[str, float] = dict((s, 0.0) for s in STAGES)
        self.stage_count: Dict[str, int] = dict((s, 0) for s in STAGES)
        self.latency_ema_ms: Optional[float] = None
        self.frames = 0
        self.first_output_time: Optional[float] = None
        self.last_output_time: Optional[float] = None
        self._output_times: Deque[float] = collections.deque(maxlen=fps_window)
        # listener(stage, ms) for every stage timing (the web app's /metrics histograms); called outside the lock
        self.stage_listeners: List[Callable[[str, float], None]] = []

    def _ema(self, old: Optional[float], new: float) -> float:
        return new if old is None else old + self._smoothing * (new - old)

    def record_stage(self, stage: str, ms: float) -> None:
        with self._lock:
            self.stage_ema_ms[stage] = self._ema(self.stage_ema_ms.get(stage), ms)
            self.stage_total_ms[stage] = self.stage_total_ms.get(stage, 0.0) + ms
            self.stage_count[stage] = self.stage_count.get(stage, 0) + 1
        for listener in list(self.stage_listeners):
            listener(stage, ms)

    def record_output(self, capture_time: float) -> None:
        now = time.monotonic()
        with self._lock:
            self.frames += 1
            self.latency_ema_ms = self._ema(self.latency_ema_ms, (now - capture_time) * 1000.0)
            if self.first_output_time is None:
                self.first_output_time = now
            self.last_output_time = now
            self._output_times.append(now)

    def fps(self) -> Optional[float]:
        """Frames per second over the last few output frames."""
        with self._lock:
            return _rate(self._output_times)

    def snapshot(self) -> Dict[str, Any]:
        """Current values as plain JSON-able types."""
        fps = self.fps()
        with self._lock:
            latency = self.latency_ema_ms
            return {
                "frames": self.frames,
                "fps": round(fps, 2) if fps is not None else None,
                "latency_ms": round(latency, 2) if latency is not None else None,
                "stage_ms": collections.OrderedDict(
                    (s, round(v, 2)) for s, v in self.stage_ema_ms.items() if v is not None),
            }

    def means(self) -> Dict[str, Any]:
        """Whole-run figures: mean FPS and mean per-stage milliseconds."""
        with self._lock:
            span = (self.last_output_time or 0.0) - (self.first_output_time or 0.0)
            return {"mean_fps": round((self.frames - 1) / span, 2) if self.frames > 1 and span > 0 else None,
                    "mean_stage_ms": dict((s, round(self.stage_total_ms[s] / self.stage_count[s], 2))
                                          for s in STAGES if self.stage_count.get(s))}


def _rate(times: Sequence[float]) -> Optional[float]:
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (len(times) - 1) / (times[-1] - times[0])


class _CameraRun(object):
    """A camera while the loop runs: its capture thread, its schedule and its counters."""

    def __init__(self, camera: Camera, capture: CaptureThread, draw: bool) -> None:
        self.camera = camera
        self.capture = capture
        self.draw = draw
        self.period_s = 1.0 / camera.detect_fps if camera.detect_fps else None
        self.next_due: Optional[float] = None
        self.waiting = False  # it was due but had no frame: its next frame restarts the schedule
        self.skipped = 0  # frames it should have had but did not: the loop was behind, or a stage failed on it
        self.frames = 0
        self._times: Deque[float] = collections.deque(maxlen=FPS_WINDOW)
        self._lock = threading.Lock()

    def due(self, now: float) -> bool:
        return self.next_due is None or self.period_s is None or now >= self.next_due

    def taken(self, now: float) -> None:
        """A frame was taken at ``now``: book the next slot and count the slots missed since the last one."""
        if self.period_s is None:
            return
        if self.next_due is None or self.waiting:
            self.next_due, self.waiting = now + self.period_s, False
            return
        missed = int((now - self.next_due) // self.period_s) if now > self.next_due else 0
        with self._lock:
            self.skipped += missed
        self.next_due += (missed + 1) * self.period_s

    def count_skip(self) -> None:
        with self._lock:
            self.skipped += 1

    def record_output(self) -> None:
        with self._lock:
            self.frames += 1
            self._times.append(time.monotonic())

    def failures(self) -> int:
        """Inputs that could not be read: corrupt frames or unreadable files, or the whole source."""
        return self.capture.frames_corrupt + int(getattr(self.camera.source, "failed", 0) or 0)

    def status(self) -> Dict[str, Any]:
        with self._lock:
            fps = _rate(self._times)
            entry: Dict[str, Any] = {
                "name": self.camera.name, "source": self.camera.source.name, "live": bool(self.camera.source.live),
                "status": self.capture.status, "fps": round(fps, 2) if fps is not None else None,
                "frames": self.frames, "skipped": self.skipped, "dropped": self.capture.frames_dropped,
                "corrupt": self.capture.frames_corrupt, "reconnects": self.capture.reconnects,
                "detect_fps": self.camera.detect_fps,
            }
        if self.camera.status_extra is not None:
            entry.update(self.camera.status_extra())
        return entry


class _Work(object):
    """One camera's frame travelling through the stages."""

    __slots__ = ("run", "frame", "geometry", "detections")

    def __init__(self, run: _CameraRun, frame: Frame) -> None:
        self.run = run
        self.frame = frame
        self.geometry: Any = None  # the detector's letterbox geometry
        self.detections = Detections.empty()


class _Batch(object):
    """The frames the scheduler took together, and the detector's input for them."""

    __slots__ = ("items", "tensor")

    def __init__(self, items: List[_Work], tensor: Any = None) -> None:
        self.items = items
        self.tensor = tensor


def in_flight_limit(detector: Any) -> int:
    """How many frames may be submitted before the oldest is collected: the detector's ``max_in_flight`` (the
    TensorRT detector: one per stream, ``--streams``), else one per runner slot, else two."""
    declared = getattr(detector, "max_in_flight", None)
    if isinstance(declared, int):
        return max(1, declared)
    slots = getattr(getattr(detector, "runner", None), "slots", None)
    return max(1, len(slots)) if slots is not None else 2


class Pipeline(object):
    """Runs one detector over one or more cameras into sinks; ``run()`` blocks (the output stage runs on the
    caller's thread). ``source_or_cameras`` is a FrameSource (one camera, cam0) or a list of ``Camera``.
    ``sinks`` and ``observers`` given here see every camera."""

    def __init__(self, detector: Any, source_or_cameras: Union[FrameSource, Sequence[Camera]],
                 sinks: Sequence[Sink] = (), observers: Sequence[Observer] = (),
                 note: Callable[[str], None] = print, queue_size: Optional[int] = None,
                 max_frames: Optional[int] = None, draw: bool = True, reconnect_backoff_s: float = 0.5,
                 extra_stats: Optional[Callable[[], Dict[str, Any]]] = None,
                 signals: Optional[StopSignals] = None, stall_timeout_s: float = 10.0) -> None:
        self.detector = detector
        self.extra_stats = extra_stats  # e.g. telemetry and alarm status, merged into every frame's stats
        self._extra_stats_failed = False
        if isinstance(source_or_cameras, FrameSource):
            source_or_cameras = [Camera(camera_name(0), source_or_cameras)]
        self.cameras = list(source_or_cameras)
        if not self.cameras:
            raise JetsonDetectError("no input: give at least one source or camera")
        self.sinks = list(sinks)
        self.observers = list(observers)
        self.note = note
        self.max_frames = max_frames
        self.signals = signals
        self._signal_reported = False
        self.names = list(getattr(detector, "names", []))
        self.batch_size = max(1, int(getattr(detector, "batch_size", 1) or 1))
        self.stop_event = threading.Event()
        self._stop_asked = False
        self.stats = PipelineStats()
        self._wakeup = threading.Event()
        self._runs: List[_CameraRun] = []
        for camera in self.cameras:
            capture = CaptureThread(camera.source, self.stop_event, note=note, backoff_s=reconnect_backoff_s,
                                    stall_timeout_s=stall_timeout_s, wakeup=self._wakeup)
            wants_drawing = draw and any(not isinstance(s, JsonlSink) for s in self.sinks + camera.sinks)
            self._runs.append(_CameraRun(camera, capture, wants_drawing))
        self.draw = any(run.draw for run in self._runs)
        any_live = any(camera.source.live for camera in self.cameras)
        if queue_size is None:
            # Live: one slot between stages keeps frames fresh; files: two smooth out uneven stage times.
            queue_size = 1 if any_live else 2
        self._to_infer: queue.Queue = queue.Queue(maxsize=queue_size)
        self._to_output: queue.Queue = queue.Queue(maxsize=queue_size)
        self._errors: List[BaseException] = []
        self._rr = 0  # the camera the next round-robin scan starts at
        # A detector that letterboxes on the GPU (TensorRT with CUDA) does it inside detect(): no CPU stage for it.
        self._split = (hasattr(detector, "preprocess") and hasattr(detector, "infer")
                       and not getattr(detector, "gpu_preprocess", False))
        # Frame N+1 is submitted before frame N is collected (two CUDA streams overlap); a batch of several
        # cameras goes through detect_batch instead, since submit takes one frame.
        self._overlap = (not self._split and self.batch_size == 1 and hasattr(detector, "submit")
                         and hasattr(detector, "collect"))
        self._wait_for_next = not any_live  # files: wait for frame N+1 before collecting N (no latency to lose)
        self._threads = [threading.Thread(target=self._guard, args=(self._schedule_loop,), name="preprocess",
                                          daemon=True),
                         threading.Thread(target=self._guard, args=(self._infer_loop,), name="infer", daemon=True)]
        self._failed_observers: set = set()

    def stop(self) -> None:
        """Ask every stage to finish; ``run()`` returns within about a second."""
        self._stop_asked = True
        self.stop_event.set()

    @property
    def stop_requested(self) -> bool:
        """True once ``stop()`` was called or a stop signal arrived (not when the inputs simply ended)."""
        return self._stop_asked or (self.signals is not None and self.signals.received is not None)

    def status(self) -> Dict[str, Any]:
        """The loop's state now, as plain JSON-able types (what the web app and ``/api/stats`` show)::

            {"cameras": [{"name": "front", "source": "rtsp://...", "live": true,
                          "status": "ok" | "starting" | "reconnecting" | "ended" | "failed: <why>",
                          "fps": 5.0 | null, "frames": 120, "skipped": 0, "dropped": 840, "corrupt": 0,
                          "reconnects": 1, "detect_fps": 5.0 | null, ...the camera's status_extra()}, ...],
             "frames": 360, "fps": 15.0 | null, "latency_ms": 80.2 | null, "batch_size": 3,
             "stage_ms": {"preprocess": 9.1, "infer": 61.0, "output": 3.2},
             ...extra_stats() merged in (e.g. "telemetry", "telemetry_line", "alarms")}

        ``skipped``: frames the camera was due but did not get (the loop was behind, or a stage failed on them);
        ``dropped``: frames its capture replaced by a newer one before the scheduler took them (live only);
        ``fps``: detections per second over the last 30 frames. Safe to call from any thread.
        """
        status: Dict[str, Any] = {"cameras": [run.status() for run in self._runs]}
        status.update(self.stats.snapshot())
        status["batch_size"] = self.batch_size
        status.update(self._extra())
        return status

    def run(self) -> Dict[str, Any]:
        """Process until every source ends, ``stop()`` is called, a stop signal arrives or ``max_frames`` are done;
        return the summary (``status()`` plus whole-run figures)."""
        try:
            self._attach()
            self._start_cameras()
            for thread in self._threads:
                thread.start()
            self._output_loop()
        finally:
            self.stop_event.set()
            # Stages poll the stop flag every 0.1 s; the shared deadline keeps the whole stop under 2 s even if
            # one is stuck in a driver call (they are daemon threads, so they cannot keep the process alive).
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for run in self._runs:
                run.capture.join(max(0.0, deadline - time.monotonic()))
            for thread in self._threads:
                if thread.ident is not None:
                    thread.join(max(0.0, deadline - time.monotonic()))
            self._close_sinks()
        self._errors[:0] = [run.capture.error for run in self._runs if run.capture.error is not None]
        if self._errors:
            raise self._errors[0]
        self._check_some_input_worked()
        return self.summary()

    def summary(self) -> Dict[str, Any]:
        """Whole-run figures: ``status()`` with the cameras' counters summed and mean FPS and stage times."""
        summary = self.status()
        cameras = summary["cameras"]
        for key in ("skipped", "dropped", "corrupt", "reconnects"):
            summary[key] = sum(c[key] for c in cameras)
        summary.update(self.stats.means())
        return summary

    def _attach(self) -> None:
        for part in self._every_sink() + self.observers + [o for c in self.cameras for o in c.observers]:
            attach = getattr(part, "attach_pipeline", None)
            if attach is not None:
                attach(self)

    def _every_sink(self) -> List[Sink]:
        return self.sinks + [s for camera in self.cameras for s in camera.sinks]

    def _start_cameras(self) -> None:
        if len(self._runs) == 1:
            self._runs[0].capture.start()  # one input: its open error is the run's error, at once
            return
        for run in self._runs:  # several: each opens on its own thread, so one dead camera holds up nobody
            run.capture.start(open_in_thread=True)

    def _check_some_input_worked(self) -> None:
        """A run whose every input failed is an error (exit 2), not an empty success."""
        if self.stats.frames or self.stop_requested:
            return
        failed = [run for run in self._runs if run.capture.status.startswith("failed") or run.failures()]
        if len(failed) < len(self._runs):
            return
        raise JetsonDetectError("no input could be read: {}".format("; ".join(
            "{} ({}): {}".format(run.camera.name, run.camera.source.name,
                                 run.capture.status if run.capture.status.startswith("failed")
                                 else "{} unreadable frame(s) or file(s)".format(run.failures()))
            for run in failed)))

    def _close_sinks(self) -> None:
        """Close every output; one that cannot be finished (a video cut short by a full disk) is the run's error,
        raised once all the others are closed too."""
        broken: List[JetsonDetectError] = []
        for sink in self._every_sink():
            try:
                sink.close()
            except JetsonDetectError as exc:
                broken.append(exc)
            except Exception as exc:  # one broken output must not keep the others from being flushed
                self.note("output {}: close failed: {}".format(sink.name, exc))
        self._errors.extend(broken)

    def _guard(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException as exc:
            self._errors.append(exc)
            self.stop_event.set()

    def _check_signals(self) -> None:
        """On the main thread: turn a received stop signal into a stop, and say so once."""
        if self.signals is not None and self.signals.received is not None and not self._signal_reported:
            self._signal_reported = True
            self.note("{} received; stopping (send it again to force)".format(self.signals.name))
            self.stop_event.set()

    def _put(self, target: queue.Queue, item: object) -> bool:
        """Blocking put that gives up when the pipeline stops (so a full queue never hangs shutdown)."""
        while not self.stop_event.is_set():
            try:
                target.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, source: queue.Queue) -> object:
        """The next item, or None once the pipeline stops."""
        while not self.stop_event.is_set():
            try:
                return source.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def _frame_failed(self, stage: str, work: _Work, exc: Exception, failures: int) -> int:
        """Count a frame a stage could not handle and skip it; re-raise after too many in a row (then it is not
        the frame but the stage that is broken), or at once for a user error."""
        if isinstance(exc, JetsonDetectError) or failures + 1 >= MAX_CONSECUTIVE_FAILURES:
            raise exc
        work.run.count_skip()
        self.note("{}: frame {} of {} skipped: {}: {}".format(stage, work.frame.position, work.frame.source_name,
                                                            type(exc).__name__, exc))
        return failures + 1

    def _pick(self, now: float) -> List[Tuple[_CameraRun, Frame]]:
        """The due cameras that have a frame, at most one batch, in round-robin order from ``_rr``."""
        picked: List[Tuple[_CameraRun, Frame]] = []
        count = len(self._runs)
        last = self._rr
        for step in range(count):
            index = (self._rr + step) % count
            run = self._runs[index]
            if not run.due(now):
                continue
            frame = run.capture.poll()
            if frame is None:
                run.waiting = run.period_s is not None
                continue
            run.taken(now)
            picked.append((run, frame))
            last = index
            if len(picked) >= self.batch_size:
                break
        if picked:
            self._rr = (last + 1) % count
        return picked

    def _idle_wait_s(self, now: float) -> float:
        """How long the scheduler may sleep: until the next due camera, or a new frame (``_wakeup``)."""
        dues = [run.next_due - now for run in self._runs if run.period_s is not None and run.next_due is not None
                and run.next_due > now]
        return max(0.001, min([0.1] + dues))

    def _schedule_loop(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            self._wakeup.clear()
            now = time.monotonic()
            picked = self._pick(now)
            if not picked:
                if all(run.capture.ended for run in self._runs):
                    self._put(self._to_infer, _END)
                    return
                self._wakeup.wait(self._idle_wait_s(now))
                continue
            start = time.perf_counter()
            items: List[_Work] = []
            tensors = []
            for run, frame in picked:
                work = _Work(run, frame)
                try:
                    if self._split:
                        tensor, work.geometry = self.detector.preprocess(frame.image)
                        tensors.append(tensor)
                except Exception as exc:  # a bad frame (e.g. corrupt data) is skipped; see _frame_failed
                    failures = self._frame_failed("preprocess", work, exc, failures)
                    continue
                failures = 0
                items.append(work)
            if not items:
                continue
            batch = _Batch(items, self._stack(tensors) if self._split else None)
            self.stats.record_stage("preprocess", (time.perf_counter() - start) * 1000.0)
            if not self._put(self._to_infer, batch):
                return

    def _stack(self, tensors: List[np.ndarray]) -> np.ndarray:
        """One (batch_size, 3, S, S) input: a smaller batch is padded with zeros, never dropped."""
        tensor = np.concatenate(tensors, axis=0) if len(tensors) > 1 else tensors[0]
        if tensor.shape[0] < self.batch_size:
            pad = np.zeros((self.batch_size - tensor.shape[0],) + tensor.shape[1:], tensor.dtype)
            tensor = np.concatenate([tensor, pad], axis=0)
        return tensor

    def _infer_loop(self) -> None:
        if self._overlap:
            self._infer_overlapped()
            return
        failures = 0
        while not self.stop_event.is_set():
            batch = self._get(self._to_infer)
            if batch is _END:
                self._put(self._to_output, _END)
                return
            if not isinstance(batch, _Batch):
                return
            start = time.perf_counter()
            try:
                self._detect(batch)
            except Exception as exc:  # a bad frame (e.g. corrupt data) is skipped; see _frame_failed
                for work in batch.items:
                    failures = self._frame_failed("infer", work, exc, failures)
                continue
            failures = 0
            self.stats.record_stage("infer", (time.perf_counter() - start) * 1000.0)
            if not self._put(self._to_output, batch):
                return

    def _detect(self, batch: _Batch) -> None:
        items = batch.items
        if self._split:
            found = self.detector.infer(batch.tensor)
            for work, detections in zip(items, found):
                height, width = work.frame.image.shape[:2]
                boxes = scale_boxes_to_original(detections.boxes, work.geometry, height, width)
                work.detections = Detections(boxes, detections.scores, detections.class_ids)
        elif len(items) == 1:
            items[0].detections = self.detector.detect(items[0].frame.image)
        else:
            for work, detections in zip(items, self.detector.detect_batch([w.frame.image for w in items])):
                work.detections = detections

    def _poll(self, source: queue.Queue) -> object:
        try:
            return source.get_nowait()
        except queue.Empty:
            return _EMPTY

    def _infer_overlapped(self) -> None:
        """submit(N+1) before collect(N), up to ``in_flight_limit`` frames in flight (one stream: alternation)."""
        limit = in_flight_limit(self.detector)
        pending: Deque[Tuple[_Batch, Any, float]] = collections.deque()
        failures = 0
        while not self.stop_event.is_set():
            batch = self._get(self._to_infer) if self._wait_for_next or not pending else self._poll(self._to_infer)
            if batch is _EMPTY:  # live and nothing new yet: do not hold frame N back waiting for N+1
                while pending:
                    failures = self._collect(pending.popleft(), failures)
                continue
            if batch is _END:
                while pending:
                    failures = self._collect(pending.popleft(), failures)
                self._put(self._to_output, _END)
                return
            if not isinstance(batch, _Batch):
                return
            start = time.perf_counter()
            try:
                handle = self.detector.submit(batch.items[0].frame.image)
            except Exception as exc:
                failures = self._frame_failed("infer", batch.items[0], exc, failures)
                continue
            pending.append((batch, handle, (time.perf_counter() - start) * 1000.0))
            while len(pending) >= limit:
                failures = self._collect(pending.popleft(), failures)

    def _collect(self, entry: Tuple[_Batch, Any, float], failures: int) -> int:
        batch, handle, submit_ms = entry
        start = time.perf_counter()
        try:
            batch.items[0].detections = self.detector.collect(handle)
        except Exception as exc:
            return self._frame_failed("infer", batch.items[0], exc, failures)
        self.stats.record_stage("infer", submit_ms + (time.perf_counter() - start) * 1000.0)
        self._put(self._to_output, batch)
        return 0

    def _output_loop(self) -> None:
        while not self.stop_event.is_set():
            self._check_signals()
            try:
                batch = self._to_output.get(timeout=0.1)
            except queue.Empty:
                continue
            if not isinstance(batch, _Batch):  # the end of every source
                return
            for work in batch.items:
                start = time.perf_counter()
                self._emit(work)
                self.stats.record_stage("output", (time.perf_counter() - start) * 1000.0)
                self.stats.record_output(work.frame.capture_time)
                work.run.record_output()
                if self.max_frames is not None and self.stats.frames >= self.max_frames:
                    return
            if any(sink.wants_stop for sink in self._every_sink()):
                self.note("output window closed; stopping")
                return

    def _extra(self) -> Dict[str, Any]:
        if self.extra_stats is None:
            return {}
        try:
            return dict(self.extra_stats())
        except Exception as exc:  # telemetry must never stop detection; say so once, not every frame
            if not self._extra_stats_failed:
                self.note("extra stats unavailable (reported once): {}".format(exc))
            self._extra_stats_failed = True
            return {}

    def _frame_stats(self, run: _CameraRun) -> Dict[str, Any]:
        """One frame's stats: the whole loop's figures, then its camera's (frames, fps, counters, status)."""
        stats: Dict[str, Any] = self.stats.snapshot()
        camera = run.status()
        stats.update((key, camera[key]) for key in ("frames", "fps", "skipped", "dropped", "corrupt", "reconnects",
                                                    "status", "detect_fps"))
        stats["camera"] = run.camera.name
        stats.update(self._extra())
        return stats

    def _emit(self, work: _Work) -> None:
        frame, run = work.frame, work.run
        if run.camera.tracker is not None:
            work.detections = run.camera.tracker.update(work.detections)
        stats = self._frame_stats(run)
        annotated = frame.image
        if run.draw:
            annotated = draw_overlay(draw_detections(frame.image.copy(), work.detections, self.names), stats)
        result = FrameResult(frame.position, frame.source_name, frame.image, annotated, work.detections, self.names,
                             stats, run.camera.name)
        for sink in self.sinks + run.camera.sinks:
            sink.write(result)
        for observer in self.observers + run.camera.observers:
            try:
                observer(frame.image, work.detections, frame.position, stats)
            except Exception as exc:  # an alarm hook's bug must not stop detection; say so once
                if id(observer) not in self._failed_observers:
                    self._failed_observers.add(id(observer))
                    self.note("observer {!r} failed: {}".format(observer, exc))


def run_cameras(detector: Any, cameras: Sequence[Camera], sinks: Sequence[Sink] = (),
                observers: Sequence[Observer] = (), max_frames: Optional[int] = None,
                note: Callable[[str], None] = print, signals: Optional[StopSignals] = None,
                handle_signals: bool = True, extra_stats: Optional[Callable[[], Dict[str, Any]]] = None,
                reconnect_backoff_s: float = 0.5) -> Dict[str, Any]:
    """Run the loop over ``cameras`` until they end or a signal arrives; return the summary. Every sink (shared
    and per camera) is closed however it ends. ``signals``: handlers installed by the caller (e.g. before the
    model was loaded); else they are installed here for the run when ``handle_signals``."""
    try:
        pipeline = Pipeline(detector, cameras, sinks, observers=observers, note=note, max_frames=max_frames,
                            extra_stats=extra_stats, signals=signals, reconnect_backoff_s=reconnect_backoff_s)
    except BaseException:
        for sink in list(sinks) + [s for camera in cameras for s in camera.sinks]:
            sink.close()
        raise
    own = StopSignals().install() if signals is None and handle_signals else None
    if own is not None:
        pipeline.signals = own
    try:
        summary = pipeline.run()
    finally:
        if own is not None:
            own.restore()
    note("{} frames, {} FPS; mean ms per stage: {}".format(summary["frames"], summary["mean_fps"], ", ".join(
        "{} {}".format(k, v) for k, v in summary["mean_stage_ms"].items())))
    if len(cameras) > 1:
        for camera in summary["cameras"]:
            note("camera {}: {} frames, {} skipped, {} reconnects, {}".format(
                camera["name"], camera["frames"], camera["skipped"], camera["reconnects"], camera["status"]))
    return summary


SHARED_OUTPUT_PREFIXES = ("http://", "display://")
SHARED_OUTPUT_SUFFIXES = (".jsonl", ".json")


def camera_output_uri(uri: str, camera: str) -> Optional[str]:
    """The URI an output takes for one camera of several: a video file or a folder is one per camera
    (``out.mp4`` → ``out_front.mp4``, ``frames/`` → ``frames/front``); None for the outputs every camera shares
    (the web view, a window, the JSON-lines log)."""
    text = str(uri).strip()
    if text.startswith(SHARED_OUTPUT_PREFIXES) or text.lower().endswith(SHARED_OUTPUT_SUFFIXES):
        return None
    if text.startswith("file://"):
        text = text[len("file://"):]
    stem, suffix = os.path.splitext(text.rstrip("/"))
    if suffix:
        return "{}_{}{}".format(stem, camera, suffix)
    return os.path.join(text, camera)


def open_outputs(uris: Sequence[str], cameras: Sequence[Camera], http_token: Optional[str] = None,
                 note: Callable[[str], None] = print, degrade: bool = False) -> List[Sink]:
    """Open outputs by URI: with one camera every output is shared; with several, video files and folders are
    opened once per camera (``camera_output_uri``) and added to that camera's sinks. Returns the shared sinks;
    on an error everything opened so far is closed. ``degrade``: see ``open_sinks`` (the watch)."""
    shared: List[Sink] = []
    added: List[Tuple[Camera, Sink]] = []
    try:
        for uri in uris:
            own = [camera_output_uri(uri, camera.name) for camera in cameras] if len(cameras) > 1 else [None]
            if own[0] is None:
                shared.extend(open_sinks([uri], fps=getattr(cameras[0].source, "fps", 30.0), http_token=http_token,
                                         note=note, degrade=degrade))
                continue
            for camera, camera_uri in zip(cameras, own):
                sink = open_sinks([str(camera_uri)], fps=getattr(camera.source, "fps", 30.0), note=note,
                                  degrade=degrade)[0]
                camera.sinks.append(sink)
                added.append((camera, sink))
    except BaseException:
        for sink in shared:
            sink.close()
        for camera, sink in added:
            camera.sinks.remove(sink)
            sink.close()
        raise
    return shared


def run_pipeline(detector: Any, source_uri: str, output_uris: Sequence[str] = (), jsonl_path: Optional[str] = None,
                 http_token: Optional[str] = None, observers: Sequence[Observer] = (),
                 max_frames: Optional[int] = None, note: Callable[[str], None] = print,
                 handle_signals: bool = True,
                 extra_stats: Optional[Callable[[], Dict[str, Any]]] = None) -> Dict[str, Any]:
    """One source by URI with outputs by URI (see ``run_cameras``)."""
    source = open_source(source_uri)
    sinks = open_sinks(list(output_uris), fps=getattr(source, "fps", 30.0), http_token=http_token, note=note)
    if jsonl_path:
        try:
            sinks.append(JsonlSink(jsonl_path))
        except BaseException:
            for sink in sinks:
                sink.close()
            raise
    return run_cameras(detector, [Camera(camera_name(0), source)], sinks, observers=observers,
                       max_frames=max_frames, note=note, handle_signals=handle_signals, extra_stats=extra_stats)


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    """The loop options of the ``run`` command: cameras, their rate, outputs and the web view's token."""
    parser.add_argument("--camera", type=int, action="append", default=None, metavar="N",
                        help="camera N as a source, repeatable (cam0, cam1, ...): CSI sensor N on a Jetson "
                             "(nvarguscamerasrc), else /dev/videoN")
    parser.add_argument("--detect-fps", type=float, default=None, metavar="FPS",
                        help="detect at most FPS frames per second per live camera (default: as fast as it goes; "
                             "files always give every frame)")
    parser.add_argument("--output", action="append", default=[], metavar="URI", dest="outputs",
                        help="output, repeatable: display://0, http://HOST:PORT (web view; 127.0.0.1 unless a "
                             "host is given, 0.0.0.0 for all), video.mp4/.avi, a folder, or detections.jsonl")
    parser.add_argument("--http-token", default=None, metavar="TOKEN",
                        help="require ?token=TOKEN (or 'Authorization: Bearer TOKEN') on every web view request")


def _as_list(value: Any) -> List[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def sources_from_args(args: argparse.Namespace) -> List[str]:
    """The source URIs chosen on the command line, one per camera: ``--source URI`` or ``--camera N``, each
    repeatable."""
    cameras = _as_list(getattr(args, "camera", None))
    sources = _as_list(getattr(args, "source", None))
    if cameras and sources:
        raise JetsonDetectError("give either --camera N or --source URI, not both")
    if not cameras and not sources:
        raise JetsonDetectError("no input: give --source URI (file, folder, glob, csi://0, /dev/video0, rtsp://...) "
                                "or --camera N")
    return [str(v) for v in cameras + sources]
