"""Each camera's newest frame for the web app, and its viewers: the pipeline overwrites one slot per viewer, so a
slow viewer skips frames instead of slowing the pipeline, and a frame is JPEG-encoded at most once, only when
someone watches."""

import collections
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

import cv2
import numpy as np


class ClientSlot(object):
    """The newest JPEG waiting for one viewer; overwriting it never blocks the publisher."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jpeg: Optional[bytes] = None
        self.closed = False

    def put(self, jpeg: bytes) -> None:
        with self.cond:
            self.jpeg = jpeg
            self.cond.notify()

    def take(self, timeout_s: float) -> Optional[bytes]:
        with self.cond:
            if self.jpeg is None and not self.closed:
                self.cond.wait(timeout_s)
            jpeg, self.jpeg = self.jpeg, None
            return jpeg

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class CameraFeed(object):
    """One camera's newest frame, its last stats and its viewers."""

    def __init__(self, name: str, jpeg_quality: int, min_interval_s: float) -> None:
        self.name = name
        self.jpeg_quality = jpeg_quality
        self.min_interval_s = min_interval_s
        self.source = ""
        self.frames = 0
        self.stats: Dict[str, Any] = {}
        self.clients: List[ClientSlot] = []
        self._arrivals: Deque[float] = collections.deque(maxlen=30)
        self._image: Optional[np.ndarray] = None
        self._jpeg: Optional[bytes] = None
        self._last_sent = 0.0
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()

    def publish(self, image_bgr: np.ndarray, stats: Optional[Dict[str, Any]], source: Optional[str]) -> None:
        """Keep the frame; encode it and fill every viewer's slot only when someone watches, at most max_fps."""
        now = time.monotonic()
        with self._lock:
            if stats is not None:
                self.stats = dict(stats)
            if source is not None:
                self.source = source
            self.frames += 1
            self._arrivals.append(now)
            self._image = image_bgr
            self._jpeg = None
            clients = list(self.clients)
        if not clients or now - self._last_sent < self.min_interval_s:
            return
        self._last_sent = now
        jpeg = self.latest_jpeg()
        if jpeg is not None:
            for slot in clients:
                slot.put(jpeg)

    def latest_jpeg(self) -> Optional[bytes]:
        """The newest frame as JPEG (encoded at most once), or None before the first frame."""
        with self._encode_lock:
            with self._lock:
                image, jpeg = self._image, self._jpeg
            if jpeg is not None or image is None:
                return jpeg
            ok, buffer = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), self.jpeg_quality])
            if not ok:
                return None
            jpeg = buffer.tobytes()
            with self._lock:
                if self._image is image:
                    self._jpeg = jpeg
            return jpeg

    def size(self) -> Optional[Tuple[int, int]]:
        with self._lock:
            image = self._image
        return None if image is None else (int(image.shape[1]), int(image.shape[0]))

    def fps(self) -> Optional[float]:
        """Frames per second arriving here, over the last few frames."""
        with self._lock:
            times = list(self._arrivals)
        if len(times) < 2 or times[-1] <= times[0]:
            return None
        return round((len(times) - 1) / (times[-1] - times[0]), 2)

    def add_viewer(self) -> ClientSlot:
        slot = ClientSlot()
        with self._lock:
            self.clients.append(slot)
        jpeg = self.latest_jpeg()
        if jpeg is not None:
            slot.put(jpeg)
        return slot

    def remove_viewer(self, slot: ClientSlot) -> None:
        with self._lock:
            if slot in self.clients:
                self.clients.remove(slot)

    def viewer_count(self) -> int:
        with self._lock:
            return len(self.clients)

    def close(self) -> None:
        with self._lock:
            clients = list(self.clients)
        for slot in clients:
            slot.close()
