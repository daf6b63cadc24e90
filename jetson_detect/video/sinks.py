"""Outputs named by URI, several at once: ``display://0``, ``http://HOST:PORT``, ``file.mp4``/``.avi``, an image
folder, and the JSON-lines detection log (``file.jsonl``; also used by the ``run`` command's ``--save-json``).
"""

import errno
import fcntl
import json
import os
import shutil
import stat
import sys
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..atomic_write import atomic_write_bytes, write_all
from ..errors import JetsonDetectError
from ..math.nms import Detections
from ..option_ranges import PORT, check_value
from ..output_paths import Named, annotated_image_name
from .sources import IMAGE_SUFFIXES, FrameSource, ImageFilesSource

MIN_FREE_FOR_VIDEO_BYTES = 1 << 20  # below this, a writer that fails to open is blamed on the disk, not the codec
VIDEO_FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}


class FrameResult(NamedTuple):
    """What the pipeline hands every sink for one frame."""

    position: int  # 0-based frame number in the source
    source_name: str
    image: np.ndarray  # the captured BGR frame
    annotated: np.ndarray  # the frame with boxes and overlay drawn
    detections: Detections  # in image pixels
    names: Sequence[str]
    stats: Dict[str, object]
    camera: str = "cam0"  # the name of the camera the frame came from (``cameras:`` in the config)


def detection_record(source_name: str, frame_index: int, width: int, height: int, detections: Detections,
                     names: Sequence[str]) -> Dict[str, object]:
    """One JSON-lines record: the frame and its detections, boxes xyxy in image pixels (and ``track_id`` when the
    app's tracker followed them)."""
    items = []
    track_ids = getattr(detections, "track_ids", None)
    for index, (box, score, class_id) in enumerate(zip(detections.boxes, detections.scores, detections.class_ids)):
        cid = int(class_id)
        item: Dict[str, object] = {
            "class_id": cid,
            "class_name": names[cid] if 0 <= cid < len(names) else str(cid),
            "confidence": round(float(score), 5),
            "box": [round(float(v), 2) for v in box[:4]],
        }
        if track_ids is not None:
            item["track_id"] = int(track_ids[index])
        items.append(item)
    return {"source": str(source_name), "frame": int(frame_index), "width": int(width), "height": int(height),
            "detections": items}


def is_live_name(source_name: str) -> bool:
    """True for a camera or stream (``csi://0``, ``/dev/video0``, ``0``, ``rtsp://...``), False for a file."""
    return "://" in source_name or source_name.startswith("/dev/video") or source_name.isdigit()


def source_label(source_name: str) -> str:
    """The name a JSON line gives a source: the file name for files, the whole URI for cameras and streams."""
    return source_name if is_live_name(source_name) else os.path.basename(source_name)


class Sink(object):
    """One output. ``write`` must not block for long: the pipeline's speed depends on it."""

    name = "sink"
    wants_stop = False  # set when the user asked this output to end the run (a window closed with q/Esc)

    def write(self, result: FrameResult) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release."""


def _stderr_note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class JsonlSink(Sink):
    """The JSON-lines detection log: one object per line, each line written whole (one ``os.write`` of all its
    bytes, retried for short writes), so a killed run or a full disk leaves only whole lines.

    Rules of the file (README, "Output format"):

    - A restart appends: a service never wipes its own log.
    - A torn last line (no trailing newline: a crash or power cut mid-write) is terminated with a newline when the
      file is opened, so the fragment stays a line of its own that does not parse; readers skip such lines.
    - One writer per file: the file is locked (``flock``) while open; a second writer gets a one-line error.
    - A line that cannot be written (disk full, I/O error) is cut back off, so the file ends at its last whole
      line. Then a one-line ``JetsonDetectError`` stops the run (file mode: exit 2), or with ``degrade=True`` (the
      watch) detection goes on: the loss is said once, ``lines_lost`` counts the lines dropped, and writing resumes
      when there is room again.
    """

    def __init__(self, path: str, degrade: bool = False, note: Optional[Callable[[str], None]] = None) -> None:
        self.name = path
        self.path = path
        self.degrade = degrade
        self.note = note or _stderr_note
        self.lines_written = 0
        self.lines_lost = 0
        self._failing = False
        self.fd: Optional[int] = None
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JetsonDetectError("cannot write the detection log {}: {}".format(path, exc.strerror or exc))
        try:
            self._lock(fd)
            self._regular = stat.S_ISREG(os.fstat(fd).st_mode)
            self._end_torn_line(fd)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def _lock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise JetsonDetectError("detection log {}: another run is writing it (the file is locked); stop "
                                        "that run or choose another file".format(self.path)) from None
            # a filesystem without locks (some network mounts): write unlocked rather than not at all

    def _end_torn_line(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if not self._regular or size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        try:
            write_all(fd, b"\n")
        except OSError as exc:
            raise JetsonDetectError("cannot write the detection log {}: {}".format(self.path, exc.strerror or exc))
        self.note("detection log {}: its last line was torn (no newline; a crash?); it is kept as a line of its "
                  "own that readers skip".format(self.path))

    def write_detections(self, source_name: str, frame_index: int, width: int, height: int,
                         detections: Detections, names: Sequence[str]) -> None:
        """Write one frame's record."""
        self.write_record(detection_record(source_name, frame_index, width, height, detections, names))

    def write_record(self, record: Dict[str, object]) -> None:
        """Append one record as one whole line (see the class docstring for what a failure does)."""
        if self.fd is None:
            return
        line = (json.dumps(record) + "\n").encode("utf-8")
        size = os.fstat(self.fd).st_size if self._regular else None
        try:
            write_all(self.fd, line)
        except OSError as exc:
            if size is not None:
                try:
                    os.ftruncate(self.fd, size)  # never leave half a line behind
                except OSError:
                    pass
            self._lost(exc)
            return
        self.lines_written += 1
        if self._failing:
            self._failing = False
            self.note("detection log {}: writable again; {} line(s) were lost".format(self.path, self.lines_lost))

    def _lost(self, exc: OSError) -> None:
        reason = exc.strerror or str(exc)
        hint = "free some space" if exc.errno == errno.ENOSPC else "check the disk"
        if not self.degrade:
            raise JetsonDetectError("detection log {}: cannot write ({}); it ends at its last whole line: {}".format(
                self.path, reason, hint))
        self.lines_lost += 1
        if not self._failing:
            self._failing = True
            self.note("detection log {}: cannot write ({}); detection goes on, lines are dropped (counted) until "
                      "it is writable: {}".format(self.path, reason, hint))

    def write(self, result: FrameResult) -> None:
        height, width = result.image.shape[:2]
        record = detection_record(source_label(result.source_name), result.position, width, height,
                                  result.detections, result.names)
        record["camera"] = result.camera
        self.write_record(record)

    def close(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            if self._regular:
                os.fsync(fd)
        except OSError:
            pass  # every line was already handed to the kernel whole; nothing is left to flush
        finally:
            os.close(fd)  # also releases the lock
        if self.lines_lost:
            self.note("detection log {}: {} line(s) could not be written".format(self.path, self.lines_lost))


class DisplaySink(Sink):
    """An OpenCV window; skipped with a note when there is no display (e.g. over SSH) or no GUI in OpenCV."""

    def __init__(self, uri: str, note: Callable[[str], None] = print) -> None:
        self.name = uri
        self.note = note
        self.window = "jetson_detect"
        self.enabled = True
        if os.name == "posix" and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            self.enabled = False
            note("output {}: no DISPLAY (over SSH?); window skipped, use http://0.0.0.0:8080 to watch".format(uri))

    def write(self, result: FrameResult) -> None:
        if not self.enabled:
            return
        try:
            cv2.imshow(self.window, result.annotated)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error:
            self.enabled = False
            self.note("output {}: this OpenCV has no GUI support (opencv-python-headless?); window skipped".format(
                self.name))
            return
        if key in (ord("q"), 27):
            self.wants_stop = True

    def close(self) -> None:
        if self.enabled:
            try:
                cv2.destroyWindow(self.window)
                cv2.waitKey(1)
            except cv2.error:
                pass


class HttpSink(Sink):
    """The web app (``integrations.web.WebApp``) for an ``http://HOST:PORT`` output; ``app`` is the app itself,
    for the watch to ``attach`` its status, events folder and metrics to."""

    def __init__(self, uri: str, token: Optional[str] = None, note: Callable[[str], None] = print) -> None:
        # Imported here: the app lives with the integrations (it reads events and metrics), above video/.
        from ..integrations.web import WebApp
        host, port = parse_http_uri(uri)
        self.app = WebApp(host, port, token=token)
        self.name = uri
        note("output {}: web app at {}".format(uri, self.app.url))

    @property
    def url(self) -> str:
        return self.app.url

    def attach_pipeline(self, pipeline: Any) -> None:
        """The pipeline's hook before its first frame: the app shows ``pipeline.status()`` (see WebApp)."""
        self.app.attach_pipeline(pipeline)

    def write(self, result: FrameResult) -> None:
        self.app.write(result)

    def close(self) -> None:
        self.app.close()


def video_file_problem(path: str) -> Optional[str]:
    """Why the video file at ``path`` is not playable (missing, empty, not openable, no frame), or None."""
    if not os.path.isfile(path):
        return "was not written"
    if os.path.getsize(path) == 0:
        return "is empty"
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            return "cannot be opened by OpenCV (not finalized: disk full or killed?)"
        if capture.get(cv2.CAP_PROP_FRAME_COUNT) <= 0 or not capture.read()[0]:
            return "holds no readable frame"
    finally:
        capture.release()
    return None


def why_not_writable(path: str) -> str:
    """Why OpenCV could not open a video writer at ``path``: no space, no permission, or no encoder."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        return "{}; choose another folder".format(exc.strerror or exc)
    if free < MIN_FREE_FOR_VIDEO_BYTES:
        return "no space left on the device ({} KiB free); free some space".format(free // 1024)
    if not os.access(folder, os.W_OK):
        return "the folder {} is not writable; choose another".format(folder)
    return "OpenCV has no encoder for it; use .avi"


class VideoFileSink(Sink):
    """An .mp4 (mp4v) or .avi (MJPG) file at the source's frame rate; the first frame fixes the size. ``close``
    checks the finished file and raises when it is not playable, so a run never ends well with a broken video."""

    def __init__(self, path: str, fps: float = 30.0) -> None:
        self.name = path
        self.path = path
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.writer: Optional[cv2.VideoWriter] = None
        self.size: Optional[Tuple[int, int]] = None
        self.frames_written = 0

    def write(self, result: FrameResult) -> None:
        self.write_image(result.annotated)

    def write_image(self, image: np.ndarray) -> None:
        """Append one BGR frame (resized to the first frame's size)."""
        if self.writer is None:
            self.size = (image.shape[1], image.shape[0])
            suffix = os.path.splitext(self.path)[1].lower()
            try:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            except OSError as exc:
                raise JetsonDetectError("cannot write video {}: {}".format(self.path, exc.strerror or exc)) from None
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC.get(suffix, "mp4v"))  # type: ignore[attr-defined]
            self.writer = cv2.VideoWriter(self.path, fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                self.writer = None
                raise JetsonDetectError("cannot write video {}: {}".format(self.path, why_not_writable(self.path)))
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size)
        self.writer.write(image)
        self.frames_written += 1

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        problem = video_file_problem(self.path)
        if problem is not None:
            raise JetsonDetectError("video {}: {} after {} frame(s) were written; it is not playable: check the "
                                    "free space and run again".format(self.path, problem, self.frames_written))


def write_annotated_image(folder: str, source_name: str, position: int, image: np.ndarray,
                          run_stamp: str = "") -> str:
    """Write one annotated frame into ``folder`` whole (atomically); returns the path. An image keeps its file
    name and format (``annotated_image_name``), a video frame becomes frame_NNNNNN.jpg, and a camera or stream
    frame frame_<run_stamp>_NNNNNN.jpg, so a restarted watch never overwrites the frames of the run before."""
    base = os.path.basename(source_name)
    if base.lower().endswith(IMAGE_SUFFIXES) and not is_live_name(source_name):
        name = annotated_image_name(base)
    elif is_live_name(source_name) and run_stamp:
        name = "frame_{}_{:06d}.jpg".format(run_stamp, position)
    else:
        name = "frame_{:06d}.jpg".format(position)
    path = os.path.join(folder, name)
    try:
        ok, encoded = cv2.imencode(os.path.splitext(name)[1], image)
    except cv2.error:
        ok = False
    if not ok:
        raise JetsonDetectError("cannot encode the annotated {} as {}".format(path, os.path.splitext(name)[1]))
    atomic_write_bytes(path, encoded.tobytes(), "the annotated image")
    return path


class ImageFolderSink(Sink):
    """Annotated frames in a folder (see ``write_annotated_image`` for their names). A frame that cannot be
    written stops the run with one line, or with ``degrade=True`` (the watch) is counted in ``frames_lost``, said
    once, and the run goes on."""

    def __init__(self, folder: str, degrade: bool = False, note: Optional[Callable[[str], None]] = None) -> None:
        self.name = folder
        self.folder = folder
        self.degrade = degrade
        self.note = note or _stderr_note
        self.frames_lost = 0
        self.run_stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())  # frames of live sources: see write
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise JetsonDetectError("cannot create output folder {}: {}".format(folder, exc.strerror or exc))

    def write(self, result: FrameResult) -> None:
        try:
            write_annotated_image(self.folder, result.source_name, result.position, result.annotated,
                                  self.run_stamp)
        except JetsonDetectError as exc:
            if not self.degrade:
                raise
            self.frames_lost += 1
            if self.frames_lost == 1:
                self.note("output {}: {}; detection goes on, frames are dropped (counted)".format(self.folder, exc))


def output_kind(uri: str) -> str:
    """What an output URI writes: "view" (display, web), "jsonl", "video" or "folder"."""
    uri = str(uri).strip()
    if uri.startswith(("display://", "http://", "https://", "rtsp://", "rtp://")):
        return "view"
    suffix = os.path.splitext(uri)[1].lower()
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    if suffix in VIDEO_FOURCC:
        return "video"
    return "folder"


def planned_outputs(outputs: Sequence[Named], source: FrameSource) -> Tuple[List[Named], List[Named]]:
    """The files and folders the outputs (name, URI) will write for ``source``, for ``check_outputs``: a folder
    gets the annotated copy of every image of an image source, or (``--save-dir``) the annotated video of a file."""
    image_paths: Sequence[str] = source.paths if isinstance(source, ImageFilesSource) else ()
    video_name = None if source.live or isinstance(source, ImageFilesSource) else source.name
    files: List[Named] = []
    folders: List[Named] = []
    for what, uri in outputs:
        if not uri:
            continue
        kind = output_kind(uri)
        if kind in ("jsonl", "video"):
            files.append((what, uri))
        elif kind == "folder":
            folders.append((what, uri))
            for image in image_paths:
                files.append(("{} (annotated {})".format(what, image), os.path.join(uri, annotated_image_name(image))))
            if video_name is not None:
                files.append(("{} (annotated {})".format(what, video_name), os.path.join(uri, annotated_video_name(
                    video_name))))
    return files, folders


def annotated_video_name(video_path: str) -> str:
    """The file name of ``--save-dir``'s annotated copy of a video: its stem, as .mp4."""
    return os.path.splitext(os.path.basename(video_path))[0] + ".mp4"


def parse_http_uri(uri: str) -> Tuple[str, int]:
    """``http://HOST:PORT`` → (host, port); an empty host or ``localhost`` means 127.0.0.1."""
    rest = uri[len("http://"):].rstrip("/")
    host, _, port_text = rest.rpartition(":")
    if not port_text.isdigit():
        raise JetsonDetectError("output {}: expected http://HOST:PORT, e.g. http://0.0.0.0:8080".format(uri))
    host = host.strip("[]")
    if host in ("", "localhost"):
        host = "127.0.0.1"
    return host, check_value("output {} port".format(uri), int(port_text), PORT)


def check_output_uris(uris: Sequence[str], http_token: Optional[str] = None) -> None:
    """What can be refused about outputs without opening them (a web view's port, an empty token): called before
    the model is built, so a typo costs seconds, not a Nano's engine build."""
    from ..integrations.web import check_http_token
    if any(str(uri).startswith("http://") for uri in uris):
        check_http_token(http_token)
    for uri in uris:
        if str(uri).startswith("http://"):
            parse_http_uri(str(uri))


def open_sink(uri: str, fps: float = 30.0, http_token: Optional[str] = None,
              note: Callable[[str], None] = print, degrade: bool = False) -> Sink:
    """Turn an output URI (or path) into a sink."""
    uri = str(uri).strip()
    if uri.startswith("display://"):
        return DisplaySink(uri, note)
    if uri.startswith("http://"):
        return HttpSink(uri, http_token, note)
    if uri.startswith(("https://", "rtsp://", "rtp://")):
        raise JetsonDetectError("output {}: not supported; use http://HOST:PORT, display://0, a video file or a "
                                "folder".format(uri))
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    suffix = os.path.splitext(uri)[1].lower()
    if suffix in (".jsonl", ".json"):
        return JsonlSink(uri, degrade=degrade, note=note)
    if suffix in VIDEO_FOURCC:
        return VideoFileSink(uri, fps)
    if suffix in IMAGE_SUFFIXES:
        raise JetsonDetectError("output {}: give a folder for images, or a .mp4/.avi file for video".format(uri))
    return ImageFolderSink(uri, degrade=degrade, note=note)


def open_sinks(uris: List[str], fps: float = 30.0, http_token: Optional[str] = None,
               note: Callable[[str], None] = print, degrade: bool = False) -> List[Sink]:
    """Open every output; on an error, close the ones already opened and re-raise. ``degrade``: the JSON-lines
    and image-folder outputs keep the run going when the disk is full (the watch; see ``JsonlSink``)."""
    sinks: List[Sink] = []
    try:
        for uri in uris:
            sinks.append(open_sink(uri, fps, http_token, note, degrade))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks
