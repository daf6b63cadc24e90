"""A small built-in web view: an HTML page with the live annotated MJPEG stream and a JSON stats endpoint.

Standard library only. Every viewer has its own one-frame slot that the pipeline overwrites, so a slow viewer
skips frames instead of slowing the pipeline. Binds to 127.0.0.1 unless a host is given; with a token set, every
request must carry it (``?token=...`` or ``Authorization: Bearer ...``).
"""

import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs, quote, urlsplit

import cv2
import numpy as np

from ..errors import JetsonDetectError

BOUNDARY = "jetsondetectframe"
PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>jetson_detect</title>
<style>body{{margin:0;background:#111;color:#ddd;font:14px sans-serif}}#view{{display:block;max-width:100%;
margin:auto}}#stats{{padding:6px 10px}}</style></head>
<body><img id="view" src="/stream.mjpg{query}" alt="live detections"><div id="stats">waiting for frames</div>
<script>
function poll(){{fetch("/stats.json{query}").then(function(r){{return r.json();}}).then(function(s){{
var v=document.getElementById("view");
document.getElementById("stats").textContent="frames "+s.frames+"  FPS "+(s.fps||0).toFixed(1)+
"  latency "+(s.latency_ms||0).toFixed(0)+" ms  video "+v.naturalWidth+"x"+v.naturalHeight+"  viewers "+s.viewers;
}}).catch(function(){{}});}}
setInterval(poll,1000);poll();
</script></body></html>
"""


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


class _Server(ThreadingMixIn, HTTPServer):
    # ThreadingHTTPServer only exists from Python 3.7; the Nano runs 3.6.
    daemon_threads = True
    allow_reuse_address = True


class MjpegServer(object):
    """Serves ``/`` (page), ``/stream.mjpg`` (MJPEG), ``/frame.jpg`` (newest frame) and ``/stats.json``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, token: Optional[str] = None,
                 jpeg_quality: int = 80, max_fps: float = 30.0) -> None:
        self.token = token
        self.jpeg_quality = int(jpeg_quality)
        # Browsers gain nothing from more than ~30 frames/s, and each JPEG costs the pipeline CPU time.
        self.min_interval_s = 1.0 / max_fps if max_fps > 0 else 0.0
        self._last_sent = 0.0
        self.clients: List[ClientSlot] = []
        self._latest_image: Optional[np.ndarray] = None
        self._latest_jpeg: Optional[bytes] = None
        self._encode_lock = threading.Lock()
        self.stats: Dict[str, object] = {}
        self._lock = threading.Lock()
        self._stopping = False
        try:
            self.server = _Server((host, port), self._handler_class())
        except OSError as exc:
            raise JetsonDetectError("http://{}:{}: cannot listen there ({}); pick another port or host".format(
                host, port, exc.strerror or exc))
        address = self.server.server_address
        self.host, self.port = str(address[0]), int(address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="http-view", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Address of the page, with the token when one is required."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        query = "?token=" + quote(self.token) if self.token else ""
        return "http://{}:{}/{}".format(host, self.port, query)

    def viewer_count(self) -> int:
        with self._lock:
            return len(self.clients)

    def publish(self, image_bgr: np.ndarray, stats: Optional[Dict[str, object]] = None) -> None:
        """Encode the frame once and put it in every viewer's slot; returns at once whatever the viewers do.

        With no viewer connected, or above ``max_fps``, the frame is only kept, and encoded if someone asks for it.
        """
        now = time.monotonic()
        with self._lock:
            if stats is not None:
                self.stats = dict(stats)
            self._latest_image = image_bgr
            self._latest_jpeg = None
            clients = list(self.clients)
        if not clients or now - self._last_sent < self.min_interval_s:
            return
        self._last_sent = now
        jpeg = self.latest_jpeg()
        if jpeg is None:
            return
        for slot in clients:
            slot.put(jpeg)

    def latest_jpeg(self) -> Optional[bytes]:
        """The newest published frame as JPEG (encoded at most once), or None before the first frame."""
        with self._encode_lock:
            with self._lock:
                image, jpeg = self._latest_image, self._latest_jpeg
            if jpeg is not None or image is None:
                return jpeg
            ok, buffer = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), self.jpeg_quality])
            if not ok:
                return None
            jpeg = buffer.tobytes()
            with self._lock:
                if self._latest_image is image:
                    self._latest_jpeg = jpeg
            return jpeg

    def update_stats(self, stats: Dict[str, object]) -> None:
        with self._lock:
            self.stats = dict(stats)

    def close(self) -> None:
        """Stop serving, end every viewer's stream and free the port."""
        self._stopping = True
        with self._lock:
            clients = list(self.clients)
        for slot in clients:
            slot.close()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(2.0)

    def _authorised(self, handler: BaseHTTPRequestHandler) -> bool:
        if not self.token:
            return True
        given = parse_qs(urlsplit(handler.path).query).get("token", [""])[0]
        header = handler.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            given = given or header[len("Bearer "):]
        return hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8"))

    def _handler_class(self) -> type:
        view = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "jetson_detect"

            def log_message(self, format: str, *args: Any) -> None:  # the base class names it "format"
                pass  # the pipeline's own log says what matters; per-request lines would drown it

            def do_GET(self) -> None:
                if not view._authorised(self):
                    self._send(403, "text/plain", b"forbidden: add ?token=... to the address\n")
                    return
                path = urlsplit(self.path).path
                if path in ("/", "/index.html"):
                    query = "?token=" + quote(view.token) if view.token else ""
                    self._send(200, "text/html; charset=utf-8", PAGE.format(query=query).encode("utf-8"))
                elif path == "/stats.json":
                    with view._lock:
                        body = dict(view.stats, viewers=len(view.clients))
                    self._send(200, "application/json", json.dumps(body).encode("utf-8"))
                elif path == "/frame.jpg":
                    jpeg = view.latest_jpeg()
                    if jpeg is None:
                        self._send(503, "text/plain", b"no frame yet\n")
                    else:
                        self._send(200, "image/jpeg", jpeg)
                elif path == "/stream.mjpg":
                    self._stream()
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _stream(self) -> None:
                slot = ClientSlot()
                with view._lock:
                    view.clients.append(slot)
                jpeg = view.latest_jpeg()
                if jpeg is not None:
                    slot.put(jpeg)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=" + BOUNDARY)
                    self.send_header("Cache-Control", "no-store")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    while not view._stopping and not slot.closed:
                        jpeg = slot.take(0.5)
                        if jpeg is None:
                            continue
                        self.wfile.write("--{}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n".format(
                            BOUNDARY, len(jpeg)).encode("ascii"))
                        self.wfile.write(jpeg)
                        self.wfile.write(b"\r\n")
                        self.wfile.flush()
                except (OSError, socket.timeout):
                    pass  # the viewer went away
                finally:
                    with view._lock:
                        if slot in view.clients:
                            view.clients.remove(slot)
                    self.close_connection = True

        return Handler
