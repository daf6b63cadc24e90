"""Frame sources named by URI, and the capture thread that hands the pipeline the newest frame.

URIs: ``csi://N`` (Jetson CSI camera through GStreamer ``nvarguscamerasrc``), ``/dev/videoN`` or ``v4l2://N`` (USB
camera), a bare camera index ``N`` (CSI sensor N when ``nvarguscamerasrc`` exists, else USB index N),
``rtsp://...`` / ``http(s)://...`` streams, video files, image files, folders of images and globs. Options of a
camera go in the query string: ``csi://0?width=1920&height=1080&fps=30&flip=2``.
"""

import glob
import os
import queue
import shutil
import stat
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple, Union

import cv2
import numpy as np

from ..errors import JetsonDetectError
from ..image_files import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".h264", ".h265", ".ts")
MAX_IMAGE_FILE_BYTES = 256 << 20  # one image file; larger is refused unread (a 4K PNG is about 25 MiB)
MAX_ASPECT_RATIO = 64  # wider than this, the letterbox at the smallest size (32) would leave a side of 0 px
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://")

_gstreamer_available: Optional[bool] = None


class Frame(NamedTuple):
    """One captured frame: its position in the source, the BGR image, where it came from, and when."""

    position: int  # 0-based frame number in the source (corrupt frames count too)
    image: np.ndarray
    source_name: str
    capture_time: float


def gstreamer_available() -> bool:
    """True when this OpenCV was built with GStreamer (the "GStreamer:" line of its build information says YES)."""
    global _gstreamer_available
    if _gstreamer_available is None:
        _gstreamer_available = False
        for line in cv2.getBuildInformation().splitlines():
            if line.strip().startswith("GStreamer:"):
                _gstreamer_available = line.split(":", 1)[1].strip().upper().startswith("YES")
                break
    return _gstreamer_available


def gst_element_available(element: str) -> bool:
    """True when ``gst-inspect-1.0`` knows the GStreamer element (e.g. ``nvarguscamerasrc`` on a Jetson)."""
    inspect = shutil.which("gst-inspect-1.0")
    if inspect is None:
        return False
    try:
        done = subprocess.run([inspect, element], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0,
                 out_width: Optional[int] = None, out_height: Optional[int] = None) -> str:
    """GStreamer pipeline for a Jetson CSI camera: Argus in NVMM, converted to BGR, newest buffer only."""
    return ("nvarguscamerasrc sensor-id={} ! video/x-raw(memory:NVMM), width={}, height={}, framerate={}/1 ! "
            "nvvidconv flip-method={} ! video/x-raw, width={}, height={}, format=BGRx ! videoconvert ! "
            "video/x-raw, format=BGR ! appsink drop=1 max-buffers=1").format(
                sensor_id, width, height, fps, flip, out_width or width, out_height or height)


def rtsp_pipeline(url: str, latency_ms: int = 0) -> str:
    """Low-latency GStreamer pipeline for an RTSP stream, decoded to BGR, newest buffer only."""
    return ("rtspsrc location={} latency={} drop-on-latency=true ! decodebin ! videoconvert ! "
            "video/x-raw, format=BGR ! appsink drop=1 max-buffers=1 sync=false").format(url, latency_ms)


def is_valid_frame(image: object) -> bool:
    """A frame the pipeline can use: a non-empty HxWx3 uint8 array."""
    return (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
            and image.shape[0] > 0 and image.shape[1] > 0 and image.dtype == np.uint8)


class FrameSource(object):
    """One input. ``read()`` returns an image (possibly corrupt: the caller checks) or None at its end/failure."""

    name = "source"
    live = False
    fps = 30.0

    def open(self) -> None:
        """Connect or open; raise JetsonDetectError (first open) or OSError (live: retried) on failure."""

    def read(self) -> Optional[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device, file or connection."""

    def abandon(self) -> Optional[Callable[[], None]]:
        """Forget the current connection without touching it (a read on another thread is stuck in it), so that
        ``open()`` makes a fresh one; returns what releases the old one once that read has returned."""
        return None


class OpenCVSource(FrameSource):
    """Anything ``cv2.VideoCapture`` opens: video files, V4L2 cameras, GStreamer pipelines, network streams."""

    def __init__(self, name: str, target: Union[str, int], api: int = cv2.CAP_ANY, live: bool = False,
                 what_to_do: str = "check the path or URI") -> None:
        self.name = name
        self.target = target
        self.api = api
        self.live = live
        self.what_to_do = what_to_do
        self.capture: Optional[cv2.VideoCapture] = None

    def open(self) -> None:
        self.close()
        if isinstance(self.target, int):
            capture = cv2.VideoCapture(self.target, self.api)
        else:
            capture = cv2.VideoCapture(self.target, self.api)
        if not capture.isOpened():
            capture.release()
            message = "cannot open source {}: {}".format(self.name, self.what_to_do)
            if self.live:
                raise OSError(message)
            raise JetsonDetectError(message)
        if self.live:
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver's queue short: we want the newest frame
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1.0 <= fps <= 240.0 else 30.0
        self.capture = capture

    def read(self) -> Optional[np.ndarray]:
        capture = self.capture  # abandon() may swap it out while this read is stuck in the driver
        if capture is None:
            return None
        ok, image = capture.read()
        return image if ok else None

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None

    def abandon(self) -> Optional[Callable[[], None]]:
        capture, self.capture = self.capture, None
        return capture.release if capture is not None else None


def read_image_file(path: str) -> Tuple[Optional[np.ndarray], str]:
    """(BGR image, "") or (None, why not): only a regular file is opened (a FIFO would hang the read, a device
    file can act on being opened), then it must be non-empty, decodable and not degenerate."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return None, "cannot read it ({})".format(exc.strerror or exc)
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode) else \
            "a device or socket"
        return None, "not a regular file ({}); never opened".format(kind)
    if info.st_size == 0:
        return None, "empty file (0 bytes)"
    if info.st_size > MAX_IMAGE_FILE_BYTES:
        return None, "{} MiB is over the {} MiB limit for one image".format(
            info.st_size >> 20, MAX_IMAGE_FILE_BYTES >> 20)
    try:
        # O_NONBLOCK: should the file be swapped for a FIFO after the stat, opening it still does not hang
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None, "not a regular file; never read"
            with os.fdopen(os.dup(fd), "rb") as handle:
                data = handle.read(MAX_IMAGE_FILE_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        return None, "cannot read it ({})".format(exc.strerror or exc)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or not is_valid_frame(image):
        return None, "not a decodable 8-bit image (truncated, corrupt, or e.g. a float TIFF)"
    height, width = image.shape[:2]
    if max(height, width) > MAX_ASPECT_RATIO * min(height, width):
        return None, "degenerate {}x{} image (one side over {} times the other)".format(width, height,
                                                                                        MAX_ASPECT_RATIO)
    return image, ""


class ImageFilesSource(FrameSource):
    """A list of image files read in order. A file that cannot be used (see ``read_image_file``) gives an empty
    (corrupt) frame, not an error: it is counted in ``failed``, its reason kept in ``failures`` and ``last_error``,
    and the run goes on; a run whose every image failed can tell (``failed == len(paths)``)."""

    live = False

    def __init__(self, name: str, paths: List[str]) -> None:
        self.name = name
        self.paths = paths
        self.position = 0
        self.current_path = ""
        self.failures: List[Tuple[str, str]] = []  # (path, one-line reason)
        self.last_error = ""

    @property
    def failed(self) -> int:
        """How many images of this pass could not be used."""
        return len(self.failures)

    def open(self) -> None:
        self.position = 0
        self.failures = []
        self.last_error = ""

    def read(self) -> Optional[np.ndarray]:
        if self.position >= len(self.paths):
            return None
        self.current_path = self.paths[self.position]
        self.position += 1
        image, problem = read_image_file(self.current_path)
        self.last_error = problem
        if image is None:
            self.failures.append((self.current_path, problem))
            return np.zeros((0, 0, 3), np.uint8)
        return image

    def frame_name(self) -> str:
        return self.current_path


def parse_query(uri: str) -> Tuple[str, Dict[str, str]]:
    """Split ``scheme://rest?k=v&k2=v2`` into (``scheme://rest``, {k: v})."""
    if "?" not in uri:
        return uri, {}
    base, query = uri.split("?", 1)
    options: Dict[str, str] = {}
    for part in query.split("&"):
        if "=" in part:
            key, value = part.split("=", 1)
            options[key] = value
    return base, options


def int_option(options: Dict[str, str], key: str, default: int, uri: str) -> int:
    """An integer camera option from the query string, with a clear error when it is not an integer."""
    try:
        return int(options.get(key, default))
    except ValueError:
        raise JetsonDetectError("source {}: option {}={!r} must be an integer".format(uri, key, options[key]))


def open_csi_camera(sensor_id: int, uri: str, options: Dict[str, str]) -> FrameSource:
    """CSI camera N through ``nvarguscamerasrc``; refuses clearly when GStreamer or the element is missing."""
    if not gstreamer_available():
        raise JetsonDetectError(
            "{}: this OpenCV ({}) has no GStreamer support (cv2.getBuildInformation() says GStreamer: NO); use "
            "JetPack's system OpenCV and do not pip install opencv-python on the Jetson".format(uri, cv2.__version__))
    if not gst_element_available("nvarguscamerasrc"):
        raise JetsonDetectError(
            "{}: GStreamer element nvarguscamerasrc not found (gst-inspect-1.0 nvarguscamerasrc); CSI cameras need "
            "a Jetson with JetPack's Argus camera stack; for a USB camera use /dev/videoN".format(uri))
    pipeline = csi_pipeline(sensor_id, int_option(options, "width", 1280, uri), int_option(options, "height", 720, uri),
                            int_option(options, "fps", 30, uri), int_option(options, "flip", 0, uri))
    return OpenCVSource(uri, pipeline, cv2.CAP_GSTREAMER, live=True,
                        what_to_do="check the ribbon cable and that nvargus-daemon is running "
                                   "(sudo systemctl restart nvargus-daemon)")


def open_usb_camera(index: int, uri: str) -> FrameSource:
    """USB (V4L2) camera /dev/videoN."""
    # OpenCV's own V4L2 backend rather than a v4l2src pipeline: it negotiates raw and MJPEG cameras alike, and
    # it exists in every Linux OpenCV, with or without GStreamer.
    device = "/dev/video{}".format(index)
    if sys.platform.startswith("linux") and not os.path.exists(device):
        present = sorted(glob.glob("/dev/video*"))
        raise JetsonDetectError("camera {}: no such device (cameras present: {}): connect it or pick another "
                                "index".format(device, ", ".join(present) or "none"))
    api = cv2.CAP_V4L2 if os.name == "posix" else cv2.CAP_ANY
    return OpenCVSource(device if uri.isdigit() else uri, index, api, live=True,
                        what_to_do="check that {} exists and is not used by another program".format(device))


def open_camera_index(index: int, uri: str) -> FrameSource:
    """Camera N: CSI sensor N when this machine has nvarguscamerasrc (a Jetson), else USB index N."""
    if gstreamer_available() and gst_element_available("nvarguscamerasrc"):
        return open_csi_camera(index, "csi://{}".format(index), {})
    return open_usb_camera(index, uri)


def open_stream(uri: str) -> FrameSource:
    """Network stream: GStreamer with zero latency for RTSP when available, else FFmpeg."""
    if uri.startswith(("rtsp://", "rtsps://")) and gstreamer_available() and gst_element_available("rtspsrc"):
        return OpenCVSource(uri, rtsp_pipeline(uri), cv2.CAP_GSTREAMER, live=True,
                            what_to_do="check the URL, credentials and network")
    return OpenCVSource(uri, uri, cv2.CAP_FFMPEG, live=True, what_to_do="check the URL, credentials and network")


def camera_index_from(text: str, uri: str) -> int:
    """The N of ``csi://N``, ``v4l2://N``, ``v4l2:///dev/videoN`` or ``/dev/videoN``."""
    digits = text.replace("/dev/video", "")
    if not digits.isdigit():
        raise JetsonDetectError("source {}: expected a camera number such as csi://0 or /dev/video0".format(uri))
    return int(digits)


def open_source(uri: str) -> FrameSource:
    """Turn a source URI (or path) into an unopened FrameSource; raise JetsonDetectError when it cannot be one."""
    uri = str(uri).strip()
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    if uri.startswith("csi://"):
        base, options = parse_query(uri)
        return open_csi_camera(camera_index_from(base[len("csi://"):], uri), uri, options)
    if uri.startswith("v4l2://"):
        return open_usb_camera(camera_index_from(uri[len("v4l2://"):], uri), uri)
    if uri.startswith("/dev/video"):
        return open_usb_camera(camera_index_from(uri, uri), uri)
    if uri.isdigit():
        return open_camera_index(int(uri), uri)
    if uri.startswith(STREAM_SCHEMES):
        return open_stream(uri)
    if any(c in uri for c in "*?["):
        paths = sorted(p for p in glob.glob(uri) if p.lower().endswith(IMAGE_SUFFIXES))
        if not paths:
            raise JetsonDetectError("source {}: the glob matches no images ({})".format(uri, ", ".join(IMAGE_SUFFIXES)))
        return ImageFilesSource(uri, paths)
    if os.path.isdir(uri):
        paths = sorted(os.path.join(uri, n) for n in os.listdir(uri) if n.lower().endswith(IMAGE_SUFFIXES))
        if not paths:
            raise JetsonDetectError("source {}: the folder holds no images ({})".format(uri, ", ".join(IMAGE_SUFFIXES)))
        return ImageFilesSource(uri, paths)
    if not os.path.exists(uri):
        raise JetsonDetectError("source {}: no such file, folder or camera; give a video, an image folder, a glob, "
                                "csi://N, /dev/videoN or rtsp://...".format(uri))
    if uri.lower().endswith(IMAGE_SUFFIXES):
        return ImageFilesSource(uri, [uri])
    return OpenCVSource(uri, uri, cv2.CAP_ANY, live=False,
                        what_to_do="OpenCV cannot decode it; convert it to .mp4 (H.264) or give an image folder")


class CaptureThread(object):
    """Reads a source on its own thread. Live sources: newest frame wins, stale ones are dropped, failures
    reconnect with backoff, and a read stuck longer than ``stall_timeout_s`` is abandoned (its connection is left to
    the stuck thread, which releases it when the read returns) while a fresh reader thread reconnects: no thread
    ever closes a capture another one is reading. Files: every frame is handed over in order (the reader waits),
    and the end is clean. ``status`` is "starting", "ok", "reconnecting", "ended" or "failed: <why>".
    """

    def __init__(self, source: FrameSource, stop_event: Optional[threading.Event] = None,
                 note: Callable[[str], None] = print, backoff_s: float = 0.5, max_backoff_s: float = 5.0,
                 max_reconnects: Optional[int] = None, file_queue_size: int = 4,
                 stall_timeout_s: float = 10.0, wakeup: Optional[threading.Event] = None) -> None:
        self.source = source
        self.stop_event = stop_event or threading.Event()
        self.note = note
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_reconnects = max_reconnects
        self.stall_timeout_s = stall_timeout_s
        self.wakeup = wakeup  # set on every new frame, so a consumer of several captures can wait on one event
        self.stalls = 0
        self._read_started: Optional[float] = None
        self.frames_read = 0
        self.frames_dropped = 0
        self.frames_corrupt = 0
        self.reconnects = 0
        self.error: Optional[BaseException] = None
        self.status = "starting"
        self._queue: queue.Queue = queue.Queue(maxsize=file_queue_size)
        self._newest: Optional[Frame] = None
        self._ended = False
        self._cond = threading.Condition()
        self._generation = 0  # the reader thread whose frames count; older (abandoned) ones only clean up
        self._index = 0
        self._open_in_thread = False
        self._reader_lock = threading.Lock()  # a read starts only in the current generation
        self._abandoned: Dict[int, Optional[Callable[[], None]]] = {}
        self._threads: List[threading.Thread] = []
        self._watchdog = threading.Thread(target=self._watch_for_stalls, name="capture-watchdog", daemon=True)

    def start(self, open_in_thread: bool = False) -> "CaptureThread":
        """Open the source and start reading. By default the first open happens here, on the caller's thread, so
        its error surfaces at once; with ``open_in_thread`` it happens on the reader thread (a slow or dead camera
        then never holds up the caller: a live one keeps retrying, a file one ends as failed)."""
        self._open_in_thread = open_in_thread
        if not open_in_thread:
            try:
                self.source.open()
            except OSError as exc:
                raise JetsonDetectError(str(exc))
            self.status = "ok"
        self._start_reader()
        if self.source.live:
            self._watchdog.start()
        return self

    def _start_reader(self) -> None:
        thread = threading.Thread(target=self._run, args=(self._generation,), name="capture", daemon=True)
        self._threads.append(thread)
        thread.start()

    def poll(self) -> Optional[Frame]:
        """The next frame if one is ready now, else None (never waits)."""
        if self.source.live:
            with self._cond:
                frame, self._newest = self._newest, None
                return frame
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def get(self, timeout_s: float = 0.1) -> Optional[Frame]:
        """The next frame, or None when none came within the timeout (check ``ended``)."""
        if self.source.live:
            with self._cond:
                if self._newest is None and not self._ended:
                    self._cond.wait(timeout_s)
                frame, self._newest = self._newest, None
                return frame
        try:
            return self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None

    @property
    def ended(self) -> bool:
        """True once the source is exhausted (or the reader gave up) and every frame was taken."""
        if self.source.live:
            with self._cond:
                return self._ended and self._newest is None
        return self._ended and self._queue.empty()

    def join(self, timeout_s: float = 2.0) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + timeout_s
        current = self._threads[-1:] if self._threads else []
        for thread in current + [self._watchdog]:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    def _watch_for_stalls(self) -> None:
        """A live read blocked for stall_timeout_s: leave that reader to its stuck read and start a fresh one."""
        while not self.stop_event.wait(min(0.5, self.stall_timeout_s / 4)):
            started = self._read_started
            if started is None or time.monotonic() - started <= self.stall_timeout_s:
                continue
            with self._reader_lock:
                self._read_started = None
                # Only the attribute is swapped here: the capture itself is released by the stuck reader.
                self._abandoned[self._generation] = self.source.abandon()
                self._generation += 1
                self.stalls += 1
                self.status = "reconnecting"
            self.note("source {}: no frame for {:g} s; abandoning the stuck read and reconnecting".format(
                self.source.name, self.stall_timeout_s))
            self._start_reader()

    def _wake(self) -> None:
        if self.wakeup is not None:
            self.wakeup.set()

    def _hand_over(self, frame: Frame, generation: int) -> None:
        if self.source.live:
            with self._cond:
                if generation != self._generation:
                    return
                if self._newest is not None:
                    self.frames_dropped += 1
                self._newest = frame
                self._cond.notify()
            self._wake()
            return
        while not self.stop_event.is_set():
            try:
                self._queue.put(frame, timeout=0.1)
                self._wake()
                return
            except queue.Full:
                continue

    def _reconnect(self, generation: int, first: bool = False, close_first: bool = True) -> bool:
        """Reopen a live source with doubling backoff (``first``: it was never open, so this is no reconnect;
        ``close_first``: close the old connection, which only its own reader may do); False when stopped,
        abandoned or out of attempts."""
        delay = self.backoff_s
        attempt = 0
        if close_first:
            self.source.close()
        self.status = "reconnecting"
        while not self.stop_event.is_set() and generation == self._generation:
            attempt += 1
            if self.max_reconnects is not None and attempt > self.max_reconnects:
                self.note("source {}: gave up after {} reconnect attempts".format(self.source.name, attempt - 1))
                self.status = "failed: gave up after {} reconnect attempts".format(attempt - 1)
                return False
            self.note("source {}: no frame; reconnecting in {:.1f} s (attempt {})".format(
                self.source.name, delay, attempt))
            if self.stop_event.wait(delay):
                return False
            try:
                self.source.open()
            except (OSError, JetsonDetectError) as exc:
                self.note("source {}: reconnect failed: {}".format(self.source.name, exc))
                delay = min(delay * 2, self.max_backoff_s)
                continue
            if not first:
                self.reconnects += 1
            self.status = "ok"
            self.note("source {}: {}".format(self.source.name, "opened" if first else "reconnected"))
            return True
        return False

    def _first_open(self, generation: int) -> bool:
        """The first open on the reader thread (``start(open_in_thread=True)``); False when the reader must end."""
        try:
            self.source.open()
        except (OSError, JetsonDetectError) as exc:
            self.note("source {}: cannot open: {}".format(self.source.name, exc))
            if self.source.live:
                return self._reconnect(generation, first=True, close_first=False)
            self.status = "failed: {}".format(exc)
            return False
        self.status = "ok"
        return True

    def _corrupt(self, position: int) -> None:
        self.frames_corrupt += 1
        name_of = getattr(self.source, "frame_name", None)
        if name_of is not None:
            self.note("skipping {}: not a readable image".format(name_of()))
        else:
            self.note("source {}: frame {} is corrupt; skipped".format(self.source.name, position))

    def _run(self, generation: int) -> None:
        try:
            if generation > 0:  # replacing a reader stuck in a read: the source's connection was abandoned to it
                if not self._reconnect(generation, close_first=False):
                    return
            elif self._open_in_thread and not self._first_open(generation):
                return
            while not self.stop_event.is_set():
                with self._reader_lock:
                    if generation != self._generation:
                        return
                    self._read_started = time.monotonic()
                image = self.source.read()
                if generation != self._generation:
                    return  # abandoned while reading: a fresh reader owns the source now
                self._read_started = None
                if image is None:
                    if self.source.live and self._reconnect(generation):
                        continue
                    break
                position = self._index
                self._index += 1
                self.frames_read += 1
                if not is_valid_frame(image):
                    self._corrupt(position)
                    continue
                name_of = getattr(self.source, "frame_name", None)
                name = name_of() if name_of is not None else self.source.name
                self._hand_over(Frame(position, image, name, time.monotonic()), generation)
        except BaseException as exc:  # the pipeline re-raises it on its own thread
            if generation == self._generation:
                self.error = exc
                self.status = "failed: {}".format(exc)
        finally:
            self._finish(generation)

    def _finish(self, generation: int) -> None:
        if generation != self._generation:
            release = self._abandoned.pop(generation, None)
            if release is not None:
                release()  # this reader's read has returned: nobody reads that capture any more
            return
        self.source.close()
        if not self.status.startswith("failed"):
            self.status = "ended"
        with self._cond:
            self._ended = True
            self._cond.notify_all()
        self._wake()
