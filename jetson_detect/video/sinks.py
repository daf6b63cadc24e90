"""Outputs named by URI, several at once: ``display://0``, ``http://HOST:PORT``, ``file.mp4``/``.avi``, an image
folder, and the JSON-lines detection log (``file.jsonl``; also used by the ``run`` command's ``--save-json``).
"""

import json
import os
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, TextIO, Tuple

import cv2
import numpy as np

from ..errors import JetsonDetectError
from ..math.nms import Detections
from .http_view import MjpegServer
from .sources import IMAGE_SUFFIXES

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
    """One JSON-lines record: the frame and its detections, boxes xyxy in image pixels."""
    items = []
    for box, score, class_id in zip(detections.boxes, detections.scores, detections.class_ids):
        cid = int(class_id)
        items.append({
            "class_id": cid,
            "class_name": names[cid] if 0 <= cid < len(names) else str(cid),
            "confidence": round(float(score), 5),
            "box": [round(float(v), 2) for v in box[:4]],
        })
    return {"source": str(source_name), "frame": int(frame_index), "width": int(width), "height": int(height),
            "detections": items}


def source_label(source_name: str) -> str:
    """The name a JSON line gives a source: the file name for files, the whole URI for cameras and streams."""
    if "://" in source_name or source_name.startswith("/dev/video") or source_name.isdigit():
        return source_name
    return os.path.basename(source_name)


class Sink(object):
    """One output. ``write`` must not block for long: the pipeline's speed depends on it."""

    name = "sink"
    wants_stop = False  # set when the user asked this output to end the run (a window closed with q/Esc)

    def write(self, result: FrameResult) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release."""


class JsonlSink(Sink):
    """Appends one JSON object per frame to a file and flushes every line, so a killed run leaves whole lines."""

    def __init__(self, path: str, append: bool = False) -> None:
        self.name = path
        self.path = path
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)
            self.file: Optional[TextIO] = open(path, "a" if append else "w", encoding="utf-8")
        except OSError as exc:
            raise JetsonDetectError("cannot write the detection log {}: {}".format(path, exc.strerror or exc))

    def write_detections(self, source_name: str, frame_index: int, width: int, height: int,
                         detections: Detections, names: Sequence[str]) -> None:
        """Write one frame's record and flush."""
        self.write_record(detection_record(source_name, frame_index, width, height, detections, names))

    def write_record(self, record: Dict[str, object]) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def write(self, result: FrameResult) -> None:
        height, width = result.image.shape[:2]
        record = detection_record(source_label(result.source_name), result.position, width, height,
                                  result.detections, result.names)
        record["camera"] = result.camera
        self.write_record(record)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


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
    """The built-in web view (see ``http_view``)."""

    def __init__(self, uri: str, token: Optional[str] = None, note: Callable[[str], None] = print) -> None:
        host, port = parse_http_uri(uri)
        self.server = MjpegServer(host, port, token=token)
        self.name = uri
        note("output {}: web view at {}".format(uri, self.server.url))

    @property
    def url(self) -> str:
        return self.server.url

    def write(self, result: FrameResult) -> None:
        self.server.publish(result.annotated, result.stats)

    def close(self) -> None:
        self.server.close()


class VideoFileSink(Sink):
    """An .mp4 (mp4v) or .avi (MJPG) file at the source's frame rate; the first frame fixes the size."""

    def __init__(self, path: str, fps: float = 30.0) -> None:
        self.name = path
        self.path = path
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.writer: Optional[cv2.VideoWriter] = None
        self.size: Optional[Tuple[int, int]] = None
        self.frames_written = 0

    def write(self, result: FrameResult) -> None:
        image = result.annotated
        if self.writer is None:
            self.size = (image.shape[1], image.shape[0])
            suffix = os.path.splitext(self.path)[1].lower()
            folder = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(folder, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC.get(suffix, "mp4v"))  # type: ignore[attr-defined]
            self.writer = cv2.VideoWriter(self.path, fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                self.writer = None
                raise JetsonDetectError("cannot write video {}: OpenCV has no encoder for it; use .avi".format(
                    self.path))
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size)
        self.writer.write(image)
        self.frames_written += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


class ImageFolderSink(Sink):
    """Annotated frames as JPEG files: an image source keeps its file names, other sources get frame_NNNNNN.jpg."""

    def __init__(self, folder: str) -> None:
        self.name = folder
        self.folder = folder
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise JetsonDetectError("cannot create output folder {}: {}".format(folder, exc.strerror or exc))

    def write(self, result: FrameResult) -> None:
        base = os.path.basename(result.source_name)
        if base.lower().endswith(IMAGE_SUFFIXES):
            name = os.path.splitext(base)[0] + ".jpg"
        else:
            name = "frame_{:06d}.jpg".format(result.position)
        path = os.path.join(self.folder, name)
        if not cv2.imwrite(path, result.annotated):
            raise JetsonDetectError("cannot write {}; check the folder's permissions and free space".format(path))


def parse_http_uri(uri: str) -> Tuple[str, int]:
    """``http://HOST:PORT`` → (host, port); an empty host or ``localhost`` means 127.0.0.1."""
    rest = uri[len("http://"):].rstrip("/")
    host, _, port_text = rest.rpartition(":")
    if not port_text.isdigit():
        raise JetsonDetectError("output {}: expected http://HOST:PORT, e.g. http://0.0.0.0:8080".format(uri))
    host = host.strip("[]")
    if host in ("", "localhost"):
        host = "127.0.0.1"
    return host, int(port_text)


def open_sink(uri: str, fps: float = 30.0, http_token: Optional[str] = None,
              note: Callable[[str], None] = print) -> Sink:
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
        return JsonlSink(uri)
    if suffix in VIDEO_FOURCC:
        return VideoFileSink(uri, fps)
    if suffix in IMAGE_SUFFIXES:
        raise JetsonDetectError("output {}: give a folder for images, or a .mp4/.avi file for video".format(uri))
    return ImageFolderSink(uri)


def open_sinks(uris: List[str], fps: float = 30.0, http_token: Optional[str] = None,
               note: Callable[[str], None] = print) -> List[Sink]:
    """Open every output; on an error, close the ones already opened and re-raise."""
    sinks: List[Sink] = []
    try:
        for uri in uris:
            sinks.append(open_sink(uri, fps, http_token, note))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks
