"""The web app: every camera live, the alarm events with their snapshots and clips, a health panel, a JSON API and
Prometheus ``/metrics``, on the standard library's HTTP server (a Nano runs nothing heavier well).

It is a sink: ``write(result)`` keeps each camera's newest annotated frame (JPEG-encoded at most once, and only
when someone watches), and every viewer has a one-frame slot, so a slow viewer skips frames instead of slowing the
pipeline. Status comes from an optional provider callable (the pipeline's cameras, stages, telemetry and alarms);
without one, each camera's status is what its last frame's stats said. Binds to 127.0.0.1 unless told otherwise;
with a token, every route (pages, API, streams, media) needs it as ``?token=`` or ``Authorization: Bearer``.
Sockets time out, a request's head must arrive within the same time, and the number of connections is capped, so
idle or slow clients cannot pile up threads.

Routes: ``/`` (grid; with one camera, that camera's page), ``/camera/<name>``, ``/camera/<name>/stream.mjpg``,
``/camera/<name>/frame.jpg``, ``/events``, ``/health``, ``/api/cameras``, ``/api/events?camera=&class=&limit=``,
``/api/stats``, ``/media/snapshots/<file>``, ``/media/clips/<file>`` (also under ``/events/``), ``/metrics``; and for
the first camera, as before: ``/stream.mjpg``, ``/frame.jpg``, ``/stats.json``.
"""

import collections
import hmac
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, quote, unquote, urlsplit

import numpy as np

from ..errors import JetsonDetectError
from ..video.sinks import Sink
from . import web_pages
from .metrics import create_metrics
from .web_events import DEFAULT_CAMERA, load_events, media_file, media_type
from .web_feeds import CameraFeed

LOG = logging.getLogger(__name__)

BOUNDARY = "jetsondetectframe"
MAX_EVENTS = 1000
CHUNK_BYTES = 64 * 1024
METRICS_HINT = b"metrics need prometheus_client: pip install 'jetson_detect[metrics]'\n"
CAMERA_ROUTE = re.compile(r"^/camera/([^/]+)(/stream\.mjpg|/frame\.jpg)?$")
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

StatusProvider = Callable[[], Dict[str, Any]]


class _Server(ThreadingMixIn, HTTPServer):
    """A thread per connection, at most ``max_connections`` at once; the next ones get 503 and are closed."""

    # ThreadingHTTPServer only exists from Python 3.7; the Nano runs 3.6.
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: Tuple[str, int], handler: type, max_connections: int, head_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.head_timeout_s = head_timeout_s
        self.active = 0
        self.refused = 0
        self._count_lock = threading.Lock()
        self._reading_head: Dict[Any, float] = {}  # connections still sending their request line and headers
        HTTPServer.__init__(self, address, handler)

    def head_done(self, request: Any) -> None:
        with self._count_lock:
            self._reading_head.pop(request, None)

    def service_actions(self) -> None:
        """Between accepts (every poll interval): hang up on clients whose request head is overdue. The socket
        timeout alone would let a client that sends a byte now and then hold a thread for ever."""
        now = time.monotonic()
        with self._count_lock:
            overdue = [r for r, started in self._reading_head.items() if now - started > self.head_timeout_s]
            for request in overdue:
                del self._reading_head[request]
        for request in overdue:
            try:
                request.shutdown(socket.SHUT_RDWR)  # wakes the handler's read with end-of-file
            except OSError:
                pass

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._count_lock:
            busy = self.active >= self.max_connections
            if busy:
                self.refused += 1
            else:
                self.active += 1
                self._reading_head[request] = time.monotonic()
        if busy:
            self._refuse(request)
            return
        try:
            ThreadingMixIn.process_request(self, request, client_address)
        except Exception:
            with self._count_lock:
                self.active -= 1
                self._reading_head.pop(request, None)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            ThreadingMixIn.process_request_thread(self, request, client_address)
        finally:
            with self._count_lock:
                self.active -= 1
                self._reading_head.pop(request, None)

    def _refuse(self, request: socket.socket) -> None:
        body = b"busy: too many connections, try again later\n"
        try:
            request.settimeout(0.05)
            try:
                request.recv(65536)  # read what the client sent, so closing does not reset the connection
            except OSError:
                pass
            request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: "
                            + str(len(body)).encode("ascii") + b"\r\nConnection: close\r\n\r\n" + body)
        except OSError:
            pass
        self.shutdown_request(request)


def active_alarms(camera: str, alarms: Any) -> List[str]:
    """The alarm classes raised on a camera, from either status format: an observer's ``{"active": [...], ...}``
    (the camera's own, or the single-camera watch's) or ``{camera: {"active": [...]}}``."""
    if not isinstance(alarms, dict):
        return []
    value = alarms.get("active") if isinstance(alarms.get("active"), list) else alarms.get(camera)
    if isinstance(value, dict):
        value = value.get("active")
    return [str(name) for name in value] if isinstance(value, list) else []


def disk_usage(path: str) -> Dict[str, Any]:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return {"path": path, "free_bytes": None, "total_bytes": None, "used_percent": None}
    return {"path": path, "free_bytes": usage.free, "total_bytes": usage.total,
            "used_percent": round(100.0 * usage.used / usage.total, 1) if usage.total else None}


def check_http_token(token: Optional[str]) -> None:
    """An empty token would guard nothing while looking as if it did: refused."""
    if token is not None and not token.strip():
        raise JetsonDetectError("--http-token is empty: give a real token, or leave the option out")


class WebApp(Sink):
    """The web app as a pipeline sink (``write``/``close``); see the module docstring for the routes.

    ``status`` returns ``{"cameras": [{"name", "source", "live", "status", "fps", "frames", "skipped", "dropped",
    "reconnects", "detect_fps"}, ...], "stage_ms": {...}, "telemetry": {...}, "alarms": {...}}`` (any part may be
    missing); ``events_dir`` is the alarms' folder (``events.jsonl``, ``snapshots/``, ``clips/``); ``metrics`` a
    ``Metrics`` (by default one is made when prometheus_client is installed).
    """

    name = "http"

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, token: Optional[str] = None,
                 jpeg_quality: int = 80, max_fps: float = 30.0, status: Optional[StatusProvider] = None,
                 events_dir: Optional[str] = None, metrics: Any = None, max_connections: int = 32,
                 timeout_s: float = 10.0) -> None:
        check_http_token(token)
        self.token = token
        self.jpeg_quality = int(jpeg_quality)
        # Browsers gain nothing from more than ~30 frames/s, and each JPEG costs the pipeline CPU time.
        self.min_interval_s = 1.0 / max_fps if max_fps > 0 else 0.0
        self.status_provider = status
        self.events_dir = events_dir
        if metrics is None:
            metrics = create_metrics()
        self.metrics = metrics
        if self.metrics is not None:
            self.metrics.events_dir = events_dir
        self.timeout_s = timeout_s
        self.feeds: "collections.OrderedDict[str, CameraFeed]" = collections.OrderedDict()
        self._lock = threading.Lock()
        self._stopping = False
        self._status_failed = False
        try:
            self.server = _Server((host, port), self._handler_class(), max_connections, timeout_s)
        except OSError as exc:
            raise JetsonDetectError("http://{}:{}: cannot listen there ({}); pick another port or host".format(
                host, port, exc.strerror or exc))
        address = self.server.server_address
        self.host, self.port = str(address[0]), int(address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="web-app", daemon=True)
        self._thread.start()

    def attach(self, status: Optional[StatusProvider] = None, events_dir: Optional[str] = None,
               metrics: Any = None) -> None:
        """Give a running app (e.g. one opened from an ``http://`` output URI) its status, events and metrics."""
        if status is not None:
            self.status_provider = status
        if metrics is not None:
            self.metrics = metrics
        if events_dir is not None:
            self.events_dir = events_dir
        if self.metrics is not None:
            self.metrics.events_dir = self.events_dir

    def attach_pipeline(self, pipeline: Any) -> None:
        """The pipeline's hook, called before its first frame: ``pipeline.status()`` becomes the app's status, the
        stage timings feed the metrics' histograms (through ``pipeline.stats.stage_listeners`` where the pipeline
        has them), and the first alarm observer's events folder is the one the app lists, unless one was given."""
        self.attach(status=pipeline.status)
        listeners = getattr(getattr(pipeline, "stats", None), "stage_listeners", None)
        if self.metrics is not None and isinstance(listeners, list):
            listeners.append(self.metrics.observe_stage)
        if self.events_dir is None:
            for observer in getattr(pipeline, "observers", []):
                # an AlarmObserver, or the watch's one-observer-per-camera wrapper (``by_camera``)
                for alarms in [observer] + list(getattr(observer, "by_camera", {}).values()):
                    folder = getattr(alarms, "events_dir", None)
                    if isinstance(folder, str):
                        self.attach(events_dir=folder)
                        return

    @property
    def url(self) -> str:
        """Address of the grid page, with the token when one is required."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        query = "?token=" + quote(self.token, safe="") if self.token else ""
        return "http://{}:{}/{}".format(host, self.port, query)

    def _feed(self, camera: str) -> CameraFeed:
        with self._lock:
            feed = self.feeds.get(camera)
            if feed is None:
                feed = self.feeds[camera] = CameraFeed(camera, self.jpeg_quality, self.min_interval_s)
            return feed

    def write(self, result: Any) -> None:
        """Sink entry point: a ``video.sinks.FrameResult`` (with ``camera`` when the pipeline has several)."""
        camera = str(getattr(result, "camera", DEFAULT_CAMERA))
        self._feed(camera).publish(result.annotated, result.stats, result.source_name)
        if self.metrics is not None:
            self.metrics.observe(result)

    def publish(self, image_bgr: np.ndarray, stats: Optional[Dict[str, Any]] = None,
                camera: str = DEFAULT_CAMERA) -> None:
        """Show a frame for a camera without a FrameResult."""
        self._feed(camera).publish(image_bgr, stats, None)

    def viewer_count(self, camera: Optional[str] = None) -> int:
        with self._lock:
            feeds = list(self.feeds.values())
        return sum(f.viewer_count() for f in feeds if camera is None or f.name == camera)

    def close(self) -> None:
        """Stop serving, end every viewer's stream and free the port."""
        self._stopping = True
        with self._lock:
            feeds = list(self.feeds.values())
        for feed in feeds:
            feed.close()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(2.0)

    def _provided(self) -> Dict[str, Any]:
        if self.status_provider is None:
            return {}
        try:
            status = self.status_provider()
        except Exception as exc:  # the web app must never take the watch down; say so once
            if not self._status_failed:
                LOG.warning("web app: the status provider failed (reported once): %s", exc)
            self._status_failed = True
            return {}
        return status if isinstance(status, dict) else {}

    def _camera_names(self, provided: Dict[str, Any]) -> List[str]:
        names = [str(c["name"]) for c in provided.get("cameras", []) if isinstance(c, dict) and "name" in c]
        with self._lock:
            feeds = list(self.feeds.values())
        return names + [f.name for f in feeds if f.name not in names and f.frames > 0]

    def cameras(self, provided: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
        """Every camera: its status (from the provider, else from its last frame's stats), alarms and URLs."""
        if provided is None:
            provided = self._provided()
        given = dict((str(c["name"]), c) for c in provided.get("cameras", []) if isinstance(c, dict) and "name" in c)
        found = []
        for name in self._camera_names(provided):
            with self._lock:
                feed = self.feeds.get(name)
            stats = feed.stats if feed is not None else {}
            cam = given.get(name, {})
            size = feed.size() if feed is not None else None

            def pick(key: str, default: Any = None) -> Any:
                return cam[key] if cam.get(key) is not None else stats.get(key, default)
            fps = pick("fps")
            path = "/camera/" + quote(name, safe="")
            found.append({
                "name": name, "source": cam.get("source") or (feed.source if feed is not None else ""),
                "live": cam.get("live"), "status": cam.get("status") or ("ok" if size else "waiting"),
                "fps": fps if fps is not None else (feed.fps() if feed is not None else None),
                "frames": pick("frames", feed.frames if feed is not None else 0),
                "skipped": pick("skipped", 0), "dropped": pick("dropped", 0), "reconnects": pick("reconnects", 0),
                "detect_fps": cam.get("detect_fps"),
                "alarms": active_alarms(name, cam["alarms"] if isinstance(cam.get("alarms"), dict)
                                        else provided.get("alarms", stats.get("alarms"))),
                "width": size[0] if size else None, "height": size[1] if size else None,
                "viewers": feed.viewer_count() if feed is not None else 0,
                "stream_url": path + "/stream.mjpg", "frame_url": path + "/frame.jpg", "page_url": path,
            })
        return found

    def stats(self) -> Dict[str, Any]:
        """Everything the health panel shows: cameras, stage milliseconds, telemetry, alarms and disk use."""
        provided = self._provided()
        cameras = self.cameras(provided)
        first: Dict[str, Any] = {}
        with self._lock:
            feeds = [f for f in self.feeds.values() if f.frames > 0]
        if feeds:
            first = feeds[0].stats
        active = sorted(set(name for cam in cameras for name in cam["alarms"]))
        return {
            "cameras": cameras,
            "stage_ms": provided.get("stage_ms") or first.get("stage_ms") or {},
            "telemetry": provided.get("telemetry") or first.get("telemetry") or {},
            "alarms": provided.get("alarms", first.get("alarms")) or {},
            "active": active,
            "disk": disk_usage(self.events_dir or "."),
            "connections": self.server.active, "refused_connections": self.server.refused,
        }

    def _first_camera(self) -> CameraFeed:
        """The camera the single-camera routes (``/stream.mjpg``, ``/frame.jpg``, ``/stats.json``) show."""
        names = self._camera_names(self._provided())
        if names:
            return self._feed(names[0])
        with self._lock:
            feeds = list(self.feeds.values())
        return feeds[0] if feeds else self._feed(DEFAULT_CAMERA)

    def _known_feed(self, name: str) -> Optional[CameraFeed]:
        return self._feed(name) if name in self._camera_names(self._provided()) else None

    def _authorised(self, handler: BaseHTTPRequestHandler) -> bool:
        if not self.token:
            return True
        given = parse_qs(urlsplit(handler.path).query).get("token", [""])[0]
        header = handler.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            given = given or header[len("Bearer "):].strip()
        return hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8"))

    def _handler_class(self) -> type:
        app = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "jetson_detect"
            timeout = app.timeout_s  # per socket operation: an idle or stalled client is dropped

            def log_message(self, format: str, *args: Any) -> None:  # the base class names it "format"
                pass  # the pipeline's own log says what matters; per-request lines would drown it

            def parse_request(self) -> bool:
                done = BaseHTTPRequestHandler.parse_request(self)  # reads the headers
                app.server.head_done(self.connection)
                return done

            def do_GET(self) -> None:
                if not app._authorised(self):
                    self._send(403, "text/plain", b"forbidden: add ?token=... to the address\n")
                    return
                url = urlsplit(self.path)
                route = _ROUTES.get(url.path)
                if route is not None:
                    route(self, parse_qs(url.query))
                    return
                match = CAMERA_ROUTE.match(url.path)
                if match:
                    self._camera(unquote(match.group(1)), match.group(2))
                elif url.path.startswith(("/media/", "/events/")):
                    # /events/ too: MQTT events link media as mqtt.web_base_url (".../events") + the event's path
                    self._media(url.path.split("/", 2)[2])
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, content_type: str, body: bytes, headers: Tuple[Tuple[str, str], ...] = ()
                      ) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for key, value in headers:
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def _json(self, body: Any) -> None:
                self._send(200, "application/json", json.dumps(body).encode("utf-8"))

            def grid(self, _query: Dict[str, List[str]]) -> None:
                names = app._camera_names(app._provided())
                page = web_pages.camera_page(names[0], app.token) if len(names) == 1 else web_pages.grid_page(
                    app.token)
                self._send(200, "text/html; charset=utf-8", page)

            def events(self, _query: Dict[str, List[str]]) -> None:
                self._send(200, "text/html; charset=utf-8", web_pages.events_page(app.token))

            def health(self, _query: Dict[str, List[str]]) -> None:
                self._send(200, "text/html; charset=utf-8", web_pages.health_page(app.token))

            def api_cameras(self, _query: Dict[str, List[str]]) -> None:
                cameras = app.cameras()
                self._json({"cameras": cameras, "active": sorted(set(n for c in cameras for n in c["alarms"]))})

            def api_events(self, query: Dict[str, List[str]]) -> None:
                limit_text = query.get("limit", ["100"])[0]
                if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_EVENTS:
                    self._send(400, "text/plain", "limit: a whole number from 1 to {}\n".format(
                        MAX_EVENTS).encode("ascii"))
                    return
                events = load_events(app.events_dir, query.get("camera", [""])[0] or None,
                                     query.get("class", [""])[0] or None, int(limit_text))
                self._json({"events": events})

            def api_stats(self, _query: Dict[str, List[str]]) -> None:
                self._json(app.stats())

            def stats_json(self, _query: Dict[str, List[str]]) -> None:
                feed = app._first_camera()
                self._json(dict(feed.stats, viewers=feed.viewer_count()))

            def first_frame(self, _query: Dict[str, List[str]]) -> None:
                self._frame(app._first_camera())

            def first_stream(self, _query: Dict[str, List[str]]) -> None:
                self._stream(app._first_camera())

            def metrics(self, _query: Dict[str, List[str]]) -> None:
                if app.metrics is None:
                    self._send(501, "text/plain", METRICS_HINT)
                    return
                app.metrics.observe_status(app.stats())
                body, content_type = app.metrics.exposition()
                self._send(200, content_type, body)

            def _camera(self, name: str, part: Optional[str]) -> None:
                feed = app._known_feed(name)
                if feed is None:
                    self._send(404, "text/plain", b"no such camera\n")
                elif part is None:
                    self._send(200, "text/html; charset=utf-8", web_pages.camera_page(name, app.token))
                elif part == "/frame.jpg":
                    self._frame(feed)
                else:
                    self._stream(feed)

            def _frame(self, feed: CameraFeed) -> None:
                jpeg = feed.latest_jpeg()
                if jpeg is None:
                    self._send(503, "text/plain", b"no frame yet\n")
                else:
                    self._send(200, "image/jpeg", jpeg)

            def _media(self, relative: str) -> None:
                path = media_file(app.events_dir, relative) if app.events_dir else None
                if path is None:
                    self._send(404, "text/plain", b"not found\n")
                    return
                try:
                    with open(path, "rb") as handle:
                        self._send_file(handle, os.fstat(handle.fileno()).st_size, media_type(path))
                except OSError:
                    pass  # removed by rotation meanwhile, or the viewer went away

            def _send_file(self, handle: Any, size: int, content_type: str) -> None:
                """The file, or the one byte range asked for (video elements seek with ranges)."""
                start, end = 0, size - 1
                match = RANGE.match(self.headers.get("Range", "").strip())
                if match and (match.group(1) or match.group(2)):
                    if match.group(1):
                        start = int(match.group(1))
                        end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
                    else:
                        start = max(0, size - int(match.group(2)))
                    if start > end:
                        self._send(416, "text/plain", b"range not satisfiable\n",
                                   (("Content-Range", "bytes */{}".format(size)),))
                        return
                self.send_response(206 if match and (match.group(1) or match.group(2)) else 200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Cache-Control", "private, max-age=3600")
                if match and (match.group(1) or match.group(2)):
                    self.send_header("Content-Range", "bytes {}-{}/{}".format(start, end, size))
                self.end_headers()
                handle.seek(start)
                remaining = end - start + 1
                while remaining > 0:
                    chunk = handle.read(min(CHUNK_BYTES, remaining))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)

            def _stream(self, feed: CameraFeed) -> None:
                slot = feed.add_viewer()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=" + BOUNDARY)
                    self.send_header("Cache-Control", "no-store")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    while not app._stopping and not slot.closed:
                        jpeg = slot.take(0.5)
                        if jpeg is None:
                            continue
                        self.wfile.write("--{}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n".format(
                            BOUNDARY, len(jpeg)).encode("ascii"))
                        self.wfile.write(jpeg)
                        self.wfile.write(b"\r\n")
                        self.wfile.flush()
                except (OSError, socket.timeout):
                    pass  # the viewer went away, or stopped reading for longer than the timeout
                finally:
                    feed.remove_viewer(slot)
                    self.close_connection = True

        _ROUTES: Dict[str, Callable[[Any, Dict[str, List[str]]], None]] = {
            "/": Handler.grid, "/index.html": Handler.grid, "/events": Handler.events, "/health": Handler.health,
            "/api/cameras": Handler.api_cameras, "/api/events": Handler.api_events, "/api/stats": Handler.api_stats,
            "/stats.json": Handler.stats_json, "/frame.jpg": Handler.first_frame,
            "/stream.mjpg": Handler.first_stream, "/metrics": Handler.metrics,
        }
        return Handler
