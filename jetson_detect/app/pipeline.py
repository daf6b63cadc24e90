"""The live loop: capture → pre-process → infer → draw/output, each stage on its own thread with bounded queues.

Throughput is set by the slowest stage, not the sum. Per-stage latency and end-to-end FPS are measured, drawn on
the frames and served as stats. SIGINT/SIGTERM stop the loop within 2 s with every output flushed and closed.
Frame observers (``observer(frame_bgr, detections, frame_index, stats)``) see every processed frame.
"""

import argparse
import collections
import queue
import signal
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence

import numpy as np

from ..errors import JetsonDetectError
from ..math.boxes import scale_boxes_to_original
from ..math.nms import Detections
from ..video.draw import draw_detections, draw_overlay
from ..video.sinks import FrameResult, JsonlSink, Sink, open_sinks
from ..video.sources import CaptureThread, Frame, FrameSource, open_source

Observer = Callable[[np.ndarray, object, int, Dict[str, object]], None]

STAGES = ("preprocess", "infer", "output")
_END = object()  # passed down the queues when the source is exhausted
MAX_CONSECUTIVE_FAILURES = 25
STOP_TIMEOUT_S = 1.0


class PipelineStats(object):
    """Thread-safe counters: per-stage latency (moving average and mean), end-to-end latency and FPS."""

    def __init__(self, fps_window: int = 30, smoothing: float = 0.1) -> None:
        self._lock = threading.Lock()
        self._smoothing = smoothing
        self.stage_ema_ms: Dict[str, Optional[float]] = collections.OrderedDict((s, None) for s in STAGES)
        self.stage_total_ms: Dict[str, float] = dict((s, 0.0) for s in STAGES)
        self.stage_count: Dict[str, int] = dict((s, 0) for s in STAGES)
        self.latency_ema_ms: Optional[float] = None
        self.frames = 0
        self.skipped = 0
        self.first_output_time: Optional[float] = None
        self.last_output_time: Optional[float] = None
        self._output_times: Deque[float] = collections.deque(maxlen=fps_window)
        self.capture: Optional[CaptureThread] = None

    def _ema(self, old: Optional[float], new: float) -> float:
        return new if old is None else old + self._smoothing * (new - old)

    def record_stage(self, stage: str, ms: float) -> None:
        with self._lock:
            self.stage_ema_ms[stage] = self._ema(self.stage_ema_ms.get(stage), ms)
            self.stage_total_ms[stage] = self.stage_total_ms.get(stage, 0.0) + ms
            self.stage_count[stage] = self.stage_count.get(stage, 0) + 1

    def record_output(self, capture_time: float) -> None:
        now = time.monotonic()
        with self._lock:
            self.frames += 1
            self.latency_ema_ms = self._ema(self.latency_ema_ms, (now - capture_time) * 1000.0)
            if self.first_output_time is None:
                self.first_output_time = now
            self.last_output_time = now
            self._output_times.append(now)

    def record_skip(self) -> None:
        with self._lock:
            self.skipped += 1

    def fps(self) -> Optional[float]:
        """Frames per second over the last few output frames."""
        with self._lock:
            times = list(self._output_times)
        if len(times) < 2 or times[-1] <= times[0]:
            return None
        return (len(times) - 1) / (times[-1] - times[0])

    def snapshot(self) -> Dict[str, object]:
        """Current values as plain JSON-able types (drawn on frames, served at /stats.json)."""
        fps = self.fps()
        with self._lock:
            stages = collections.OrderedDict(
                (s, round(v, 2)) for s, v in self.stage_ema_ms.items() if v is not None)
            latency = self.latency_ema_ms
            snap: Dict[str, object] = {
                "frames": self.frames,
                "fps": round(fps, 2) if fps is not None else None,
                "latency_ms": round(latency, 2) if latency is not None else None,
                "stage_ms": stages,
                "skipped": self.skipped,
            }
        if self.capture is not None:
            snap.update(dropped=self.capture.frames_dropped, corrupt=self.capture.frames_corrupt,
                        reconnects=self.capture.reconnects)
        return snap

    def summary(self) -> Dict[str, Any]:
        """Whole-run figures: frames, mean FPS, mean per-stage milliseconds."""
        snap = self.snapshot()
        with self._lock:
            span = (self.last_output_time or 0.0) - (self.first_output_time or 0.0)
            snap["mean_fps"] = round((self.frames - 1) / span, 2) if self.frames > 1 and span > 0 else None
            snap["mean_stage_ms"] = dict((s, round(self.stage_total_ms[s] / self.stage_count[s], 2))
                                         for s in STAGES if self.stage_count.get(s))
        return snap


class _Work(object):
    """One frame travelling through the stages."""

    __slots__ = ("frame", "batch", "geometry", "detections")

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self.batch: Any = None  # the detector's input (host array, or device buffer for a GPU backend)
        self.geometry: Any = None  # the detector's letterbox geometry
        self.detections = Detections.empty()


class Pipeline(object):
    """Runs a detector over a source into sinks; ``run()`` blocks (the output stage runs on the caller's thread)."""

    def __init__(self, detector: Any, source: FrameSource, sinks: Sequence[Sink], observers: Sequence[Observer] = (),
                 note: Callable[[str], None] = print, queue_size: Optional[int] = None,
                 max_frames: Optional[int] = None,
                 draw: bool = True, reconnect_backoff_s: float = 0.5,
                 extra_stats: Optional[Callable[[], Dict[str, Any]]] = None, tracker: Any = None) -> None:
        self.detector = detector
        self.tracker = tracker  # app.tracker.Tracker: track ids for the overlay, JSON lines and alarms
        self.extra_stats = extra_stats  # e.g. telemetry and alarm status, merged into every frame's stats
        self._extra_stats_failed = False
        self.source = source
        self.sinks = list(sinks)
        self.observers = list(observers)
        self.note = note
        self.max_frames = max_frames
        self.names = list(getattr(detector, "names", []))
        self.stop_event = threading.Event()
        self.stats = PipelineStats()
        self.capture = CaptureThread(source, self.stop_event, note=note, backoff_s=reconnect_backoff_s)
        self.stats.capture = self.capture
        self.draw = draw and any(not isinstance(s, JsonlSink) for s in self.sinks)
        if queue_size is None:
            # Live: one slot between stages keeps frames fresh; files: two smooth out uneven stage times.
            queue_size = 1 if source.live else 2
        self._to_infer: queue.Queue = queue.Queue(maxsize=queue_size)
        self._to_output: queue.Queue = queue.Queue(maxsize=queue_size)
        self._errors: List[BaseException] = []
        # A detector that letterboxes on the GPU (TensorRT with CUDA) does it inside detect(): no CPU stage for it.
        self._split = (hasattr(detector, "preprocess") and hasattr(detector, "infer")
                       and not getattr(detector, "gpu_preprocess", False))
        self._threads = [threading.Thread(target=self._guard, args=(self._preprocess_loop,), name="preprocess",
                                          daemon=True),
                         threading.Thread(target=self._guard, args=(self._infer_loop,), name="infer", daemon=True)]
        self._failed_observers: set = set()

    def stop(self) -> None:
        """Ask every stage to finish; ``run()`` returns within about a second."""
        self.stop_event.set()

    def run(self) -> Dict[str, Any]:
        """Process until the source ends, ``stop()`` is called or ``max_frames`` are done; return the summary."""
        try:
            self.capture.start()
            for thread in self._threads:
                thread.start()
            self._output_loop()
        finally:
            self.stop_event.set()
            # Stages poll the stop flag every 0.1 s; the shared deadline keeps the whole stop under 2 s even if
            # one is stuck in a driver call (they are daemon threads, so they cannot keep the process alive).
            deadline = time.monotonic() + STOP_TIMEOUT_S
            self.capture.join(max(0.0, deadline - time.monotonic()))
            for thread in self._threads:
                if thread.ident is not None:
                    thread.join(max(0.0, deadline - time.monotonic()))
            self._close_sinks()
        if self.capture.error is not None:
            self._errors.insert(0, self.capture.error)
        if self._errors:
            raise self._errors[0]
        return self.stats.summary()

    def _close_sinks(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # one broken output must not keep the others from being flushed
                self.note("output {}: close failed: {}".format(sink.name, exc))

    def _guard(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException as exc:
            self._errors.append(exc)
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

    def _frame_failed(self, stage: str, frame: Frame, exc: Exception, failures: int) -> int:
        """Count a frame a stage could not handle and skip it; True-ish count, or re-raise after too many in a row
        (then it is not the frame but the stage that is broken)."""
        if isinstance(exc, JetsonDetectError) or failures + 1 >= MAX_CONSECUTIVE_FAILURES:
            raise exc
        self.stats.record_skip()
        self.note("{}: frame {} of {} skipped: {}: {}".format(stage, frame.position, frame.source_name,
                                                            type(exc).__name__, exc))
        return failures + 1

    def _preprocess_loop(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            frame = self.capture.get(0.1)
            if frame is None:
                if self.capture.ended:
                    self._put(self._to_infer, _END)
                    return
                continue
            work = _Work(frame)
            start = time.perf_counter()
            try:
                if self._split:
                    work.batch, work.geometry = self.detector.preprocess(frame.image)
            except Exception as exc:  # a bad frame (e.g. corrupt data) is skipped; see _frame_failed
                failures = self._frame_failed("preprocess", frame, exc, failures)
                continue
            failures = 0
            self.stats.record_stage("preprocess", (time.perf_counter() - start) * 1000.0)
            if not self._put(self._to_infer, work):
                return

    def _infer_loop(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            work = self._get(self._to_infer)
            if work is _END:
                self._put(self._to_output, _END)
                return
            if not isinstance(work, _Work):
                return
            start = time.perf_counter()
            try:
                work.detections = self._detect(work)
            except Exception as exc:  # a bad frame (e.g. corrupt data) is skipped; see _frame_failed
                failures = self._frame_failed("infer", work.frame, exc, failures)
                continue
            failures = 0
            self.stats.record_stage("infer", (time.perf_counter() - start) * 1000.0)
            if not self._put(self._to_output, work):
                return

    def _detect(self, work: _Work) -> Detections:
        if not self._split:
            return self.detector.detect(work.frame.image)
        detections = self.detector.infer(work.batch)[0]
        height, width = work.frame.image.shape[:2]
        boxes = scale_boxes_to_original(detections.boxes, work.geometry, height, width)
        return Detections(boxes, detections.scores, detections.class_ids)

    def _output_loop(self) -> None:
        while not self.stop_event.is_set():
            work = self._get(self._to_output)
            if not isinstance(work, _Work):  # the end of the source, or stopped
                return
            start = time.perf_counter()
            self._emit(work)
            self.stats.record_stage("output", (time.perf_counter() - start) * 1000.0)
            self.stats.record_output(work.frame.capture_time)
            if self.max_frames is not None and self.stats.frames >= self.max_frames:
                return
            if any(sink.wants_stop for sink in self.sinks):
                self.note("output window closed; stopping")
                return

    def _emit(self, work: _Work) -> None:
        frame = work.frame
        if self.tracker is not None:
            work.detections = self.tracker.update(work.detections)
        stats = self.stats.snapshot()
        if self.extra_stats is not None:
            try:
                stats.update(self.extra_stats())
            except Exception as exc:  # telemetry must never stop detection; say so once, not every frame
                if not self._extra_stats_failed:
                    self.note("extra stats unavailable (reported once): {}".format(exc))
                self._extra_stats_failed = True
        annotated = frame.image
        if self.draw:
            annotated = draw_overlay(draw_detections(frame.image.copy(), work.detections, self.names), stats)
        result = FrameResult(frame.position, frame.source_name, frame.image, annotated, work.detections, self.names,
                             stats)
        for sink in self.sinks:
            sink.write(result)
        for observer in self.observers:
            try:
                observer(frame.image, work.detections, frame.position, stats)
            except Exception as exc:  # an alarm hook's bug must not stop detection; say so once
                if id(observer) not in self._failed_observers:
                    self._failed_observers.add(id(observer))
                    self.note("observer {!r} failed: {}".format(observer, exc))


def install_stop_signals(pipeline: Pipeline, note: Callable[[str], None] = print) -> Callable[[], None]:
    """Make SIGINT/SIGTERM stop the pipeline (main thread only); returns a function that restores the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: Dict[int, Any] = {}

    def handler(signum: int, _frame: Any) -> None:
        note("{} received; stopping (send it again to force)".format(signal.Signals(signum).name))
        pipeline.stop()
        signal.signal(signum, previous[signum])  # a second Ctrl-C interrupts even a stuck stop

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore


def run_pipeline(detector: Any, source_uri: str, output_uris: Sequence[str] = (), jsonl_path: Optional[str] = None,
                 http_token: Optional[str] = None, observers: Sequence[Observer] = (),
                 max_frames: Optional[int] = None, note: Callable[[str], None] = print,
                 handle_signals: bool = True,
                 extra_stats: Optional[Callable[[], Dict[str, Any]]] = None, tracker: Any = None) -> Dict[str, Any]:
    """Open the source and outputs by URI, run the loop until the source ends or a signal arrives, and return
    the run's summary (frames, FPS, per-stage milliseconds). Outputs are closed however it ends.
    """
    source = open_source(source_uri)
    sinks = open_sinks(list(output_uris), fps=getattr(source, "fps", 30.0), http_token=http_token, note=note)
    if jsonl_path:
        try:
            sinks.append(JsonlSink(jsonl_path))
        except BaseException:
            for sink in sinks:
                sink.close()
            raise
    pipeline = Pipeline(detector, source, sinks, observers=observers, note=note, max_frames=max_frames,
                        extra_stats=extra_stats, tracker=tracker)
    restore = install_stop_signals(pipeline, note) if handle_signals else (lambda: None)
    try:
        summary = pipeline.run()
    finally:
        restore()
    note("{} frames, {} FPS; mean ms per stage: {}".format(summary["frames"], summary["mean_fps"], ", ".join(
        "{} {}".format(k, v) for k, v in summary["mean_stage_ms"].items())))
    return summary


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    """The live-loop options of the ``run`` command: camera, outputs and the web view's token."""
    parser.add_argument("--camera", type=int, default=None, metavar="N",
                        help="camera N as the source: CSI sensor N on a Jetson (nvarguscamerasrc), else /dev/videoN")
    parser.add_argument("--output", action="append", default=[], metavar="URI", dest="outputs",
                        help="output, repeatable: display://0, http://HOST:PORT (web view; 127.0.0.1 unless a "
                             "host is given, 0.0.0.0 for all), video.mp4/.avi, a folder, or detections.jsonl")
    parser.add_argument("--http-token", default=None, metavar="TOKEN",
                        help="require ?token=TOKEN (or 'Authorization: Bearer TOKEN') on every web view request")


def source_from_args(args: argparse.Namespace) -> str:
    """The source URI chosen on the command line: ``--camera N`` or ``--source URI``."""
    camera = getattr(args, "camera", None)
    source = getattr(args, "source", None)
    if camera is not None and source:
        raise JetsonDetectError("give either --camera N or --source URI, not both")
    if camera is not None:
        return str(camera)
    if not source:
        raise JetsonDetectError("no input: give --source URI (file, folder, glob, csi://0, /dev/video0, rtsp://...) "
                                "or --camera N")
    return str(source)


def run_from_args(args: argparse.Namespace, detector: Any, jsonl_path: Optional[str] = None,
                  extra_outputs: Sequence[str] = (), observers: Sequence[Observer] = (),
                  note: Callable[[str], None] = print) -> int:
    """Run the loop from parsed ``run`` arguments (see ``add_live_arguments``); returns the exit code (0)."""
    run_pipeline(detector, source_from_args(args), list(getattr(args, "outputs", []) or []) + list(extra_outputs),
                 jsonl_path=jsonl_path, http_token=getattr(args, "http_token", None), observers=observers,
                 note=note)
    return 0
