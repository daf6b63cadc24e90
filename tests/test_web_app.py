"""The web app's server side: cameras and alarms in the API, the events list, media files, the token on every route,
path validation, connection limits and timeouts, and ``/metrics`` (parsed by prometheus_client's own parser)."""

import http.client
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jetson_detect.app.alarms import AlarmObserver
from jetson_detect.app.config import validate_config
from jetson_detect.errors import JetsonDetectError
from jetson_detect.integrations.web import WebApp
from jetson_detect.math.nms import Detections
from jetson_detect.video.sinks import FrameResult, HttpSink

TOKEN = "s3cret"
NAMES = ["fire", "smoke"]


class CameraResult(object):
    """A FrameResult with the ``camera`` field the multi-camera pipeline adds."""

    def __init__(self, camera, image, class_ids=(), stats=None):
        self.camera = camera
        self.position = 0
        self.source_name = camera + ".mp4"
        self.image = self.annotated = image
        count = len(class_ids)
        self.detections = Detections(np.tile(np.array([[1, 2, 30, 40]], np.float32), (count, 1)),
                                     np.full(count, 0.9, np.float32), np.array(class_ids, np.int32))
        self.names = NAMES
        self.stats = stats or {}


def get(app, path, token=TOKEN, headers=None):
    """(status, headers, body) of a GET, sent as given (no client-side normalisation of the path)."""
    connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
    if token is not None:
        path += ("&" if "?" in path else "?") + "token=" + token
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    body = response.read() if "multipart" not in (response.getheader("Content-Type") or "") else b""
    connection.close()
    return response.status, response, body


@pytest.fixture
def events_dir(tmp_path):
    """An events folder as app/alarms.py writes it, with today's lines and the MQTT work's richer ones."""
    root = tmp_path / "events"
    (root / "snapshots").mkdir(parents=True)
    (root / "clips").mkdir()
    cv2.imwrite(str(root / "snapshots" / "e1.jpg"), np.full((24, 32, 3), 200, np.uint8))
    (root / "clips" / "e1.webm").write_bytes(bytes(range(256)) * 4)
    lines = [
        {"event": "raise", "id": "e1", "time": "2026-01-01T00:00:01.000Z", "class": "fire", "max_confidence": 0.8,
         "frame": 3, "snapshot": "snapshots/e1.jpg", "clip": "clips/e1.webm"},
        {"event": "clear", "id": "e2", "time": "2026-01-01T00:00:09.000Z", "class": "fire", "frame": 40},
        {"type": "new", "id": "g7", "camera": "gate", "class": "smoke", "confidence": 0.7, "track_id": 4,
         "start_time": "2026-01-01T00:01:00.000Z", "snapshot": "../../etc/passwd", "clip": None},
        {"type": "update", "id": "g7", "camera": "gate", "class": "smoke", "confidence": 0.75},
        {"type": "new", "id": "y1", "camera": "yard", "class": "fire", "confidence": 0.6,
         "start_time": "2026-01-01T00:02:00.000Z"},
        {"type": "end", "id": "y1", "camera": "yard", "class": "fire", "end_time": "2026-01-01T00:02:30.000Z"},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    # a line that is not JSON, and a last line still being written: both skipped
    (root / "events.jsonl").write_text(text + "garbage line\n" + '{"event": "raise", "id": "torn')
    return root


@pytest.fixture
def app(events_dir):
    server = WebApp("127.0.0.1", 0, token=TOKEN, events_dir=str(events_dir))
    yield server
    server.close()


def test_an_empty_token_is_refused_at_start():
    for token in ("", "  "):
        with pytest.raises(JetsonDetectError, match="--http-token is empty"):
            WebApp("127.0.0.1", 0, token=token)
        with pytest.raises(JetsonDetectError, match="--http-token is empty"):
            HttpSink("http://127.0.0.1:0", token=token, note=lambda m: None)


def test_every_route_needs_the_token_media_included(app):
    app.publish(np.zeros((24, 32, 3), np.uint8))
    routes = ["/", "/index.html", "/events", "/health", "/camera/cam0", "/camera/cam0/frame.jpg",
              "/camera/cam0/stream.mjpg", "/api/cameras", "/api/events", "/api/stats", "/stats.json", "/frame.jpg",
              "/stream.mjpg", "/metrics", "/media/snapshots/e1.jpg", "/media/clips/e1.webm",
              "/events/snapshots/e1.jpg", "/no/such/route"]
    for path in routes:
        assert get(app, path, token=None)[0] == 403, path
        assert get(app, path, token="wrong")[0] == 403, path
        assert get(app, path, token=None, headers={"Authorization": "Bearer wrong"})[0] == 403, path
    for path in routes[:-1]:
        assert get(app, path)[0] == 200, path
        assert get(app, path, token=None, headers={"Authorization": "Bearer " + TOKEN})[0] == 200, path
    assert get(app, "/no/such/route")[0] == 404


def test_traversal_and_odd_media_paths_are_not_found(app, events_dir, tmp_path):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"top secret")
    os.symlink(str(secret), str(events_dir / "snapshots" / "link.jpg"))
    os.symlink(str(tmp_path), str(events_dir / "clips" / "dir.webm"))
    attempts = ["/media/../../etc/passwd", "/media/%2e%2e/%2e%2e/etc/passwd", "/media/snapshots/../events.jsonl",
                "/media/snapshots/..%2f..%2fetc%2fpasswd", "/media/snapshots/%2e%2e%2fevents.jsonl",
                "/media/snapshots/%252e%252e%252fevents.jsonl", "/media/events.jsonl", "/media//etc/passwd",
                "/media/snapshots//etc/passwd", "/media/snapshots/e1.jpg/..", "/media/snapshots/.e1.jpg",
                "/media/snapshots/e1.jpg%00.jpg", "/media/snapshots/link.jpg", "/media/clips/dir.webm",
                "/media/clips/e1.webm/", "/media/other/e1.jpg", "/media/snapshots/missing.jpg",
                "/media/snapshots/e1.exe", "/media/snapshots/..\\..\\etc\\passwd", "/../../etc/passwd",
                "/camera/..%2f..%2fetc%2fpasswd/frame.jpg", "/camera/nobody/frame.jpg",
                "/events/../../etc/passwd", "/events/%2e%2e/events.jsonl", "/events/snapshots/../events.jsonl",
                "/events/snapshots/link.jpg"]
    for path in attempts:
        status, _, body = get(app, path)
        assert status in (400, 404), path
        assert b"top secret" not in body and b"root:" not in body
    assert get(app, "/media/snapshots/e1.jpg")[0] == 200
    assert get(app, "/events/snapshots/e1.jpg")[0] == 200  # as MQTT events link it (mqtt.web_base_url .../events)


def test_media_files_are_served_whole_or_by_byte_range(app, events_dir):
    clip = (events_dir / "clips" / "e1.webm").read_bytes()
    status, response, body = get(app, "/media/clips/e1.webm")
    assert (status, response.getheader("Content-Type"), body) == (200, "video/webm", clip)
    assert response.getheader("Accept-Ranges") == "bytes"
    status, response, body = get(app, "/media/clips/e1.webm", headers={"Range": "bytes=10-19"})
    assert (status, body, response.getheader("Content-Range")) == (206, clip[10:20], "bytes 10-19/1024")
    status, _, body = get(app, "/media/clips/e1.webm", headers={"Range": "bytes=1000-"})
    assert (status, body) == (206, clip[1000:])
    status, _, body = get(app, "/media/clips/e1.webm", headers={"Range": "bytes=-4"})
    assert (status, body) == (206, clip[-4:])
    assert get(app, "/media/clips/e1.webm", headers={"Range": "bytes=5000-"})[0] == 416
    status, response, body = get(app, "/media/snapshots/e1.jpg")
    assert response.getheader("Content-Type") == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (24, 32, 3)


def test_events_are_listed_newest_first_and_filtered_by_camera_and_class(app):
    events = json.loads(get(app, "/api/events")[2])["events"]
    assert [(e["id"], e["camera"], e["class"], e["state"]) for e in events] == [
        ("y1", "yard", "fire", "ended"), ("g7", "gate", "smoke", "active"), ("e1", "cam0", "fire", "ended")]
    yard, gate, first = events
    assert (yard["time"], yard["end_time"], yard["confidence"]) == ("2026-01-01T00:02:00.000Z",
                                                                   "2026-01-01T00:02:30.000Z", 0.6)
    assert (gate["confidence"], gate["track_id"]) == (0.75, 4)  # the update's value
    assert gate["snapshot_url"] is None  # a path that is not snapshots/<name> is never turned into a URL
    assert (first["snapshot_url"], first["clip_url"]) == ("/media/snapshots/e1.jpg", "/media/clips/e1.webm")
    assert first["end_time"] == "2026-01-01T00:00:09.000Z"  # today's clear ends the alarm it follows
    assert [e["id"] for e in json.loads(get(app, "/api/events?camera=gate")[2])["events"]] == ["g7"]
    assert [e["id"] for e in json.loads(get(app, "/api/events?class=fire")[2])["events"]] == ["y1", "e1"]
    assert [e["id"] for e in json.loads(get(app, "/api/events?class=fire&camera=cam0")[2])["events"]] == ["e1"]
    assert [e["id"] for e in json.loads(get(app, "/api/events?limit=1")[2])["events"]] == ["y1"]
    for bad in ("0", "-1", "x", "100000"):
        assert get(app, "/api/events?limit=" + bad)[0] == 400


def test_the_alarm_observers_own_lines_make_one_entry_per_alarm_until_it_ends(tmp_path):
    """What app/alarms.py writes: new, then an update, then end, each with its own id and the alarm's alarm_id."""
    rules = {"fire": {"raise_after": 2, "window": 3, "clear_after_s": 1.0, "cooldown_s": 0.0, "min_confidence": 0.5}}
    config = validate_config({"alarms": {"enabled": True, "events_dir": str(tmp_path), "rules": rules,
                                         "storage": {"min_free_mb": 0}}})["alarms"]
    now = [1000.0]
    observer = AlarmObserver(config, NAMES, clock=lambda: now[0], wall_clock=lambda: 1767225600.0 + now[0])
    fire = Detections(np.array([[40, 30, 120, 90]], np.float32), np.array([0.87], np.float32),
                      np.array([0], np.int32))
    for index, detections in enumerate([fire, fire, fire] + [Detections.empty()] * 12):
        observer(np.zeros((120, 160, 3), np.uint8), detections, index, {})
        now[0] += 0.125
    observer.close()
    kinds = [json.loads(line)["type"] for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert kinds[0] == "new" and kinds[-1] == "end"
    app = WebApp("127.0.0.1", 0, events_dir=str(tmp_path))
    try:
        (entry,) = json.loads(get(app, "/api/events", token=None)[2])["events"]
        assert (entry["camera"], entry["class"], entry["state"], entry["confidence"]) == ("cam0", "fire", "ended",
                                                                                          0.87)
        assert entry["end_time"] is not None and entry["time"] < entry["end_time"]
        assert entry["snapshot_url"] == "/media/snapshots/{}.jpg".format(entry["id"])
        assert get(app, entry["snapshot_url"], token=None)[0] == 200
    finally:
        app.close()


def test_cameras_come_from_the_status_provider_with_alarms_in_either_format():
    status = {"cameras": [{"name": "yard", "source": "rtsp://10.0.0.5/s", "live": True, "status": "ok", "fps": 5.0,
                           "frames": 50, "skipped": 2, "dropped": 1, "reconnects": 0, "detect_fps": 5},
                          {"name": "gate", "source": "/dev/video1", "live": True,
                           "status": "reconnecting", "fps": None, "frames": 0}],
              "stage_ms": {"infer": 31.5}, "telemetry": {"gpu_percent": 40.0}, "alarms": {"yard": {"active": ["fire"]}}}
    app = WebApp("127.0.0.1", 0, status=lambda: status)
    try:
        app.write(CameraResult("yard", np.zeros((48, 64, 3), np.uint8)))
        cameras = json.loads(get(app, "/api/cameras", token=None)[2])
        assert cameras["active"] == ["fire"]
        yard, gate = cameras["cameras"]
        assert {k: yard[k] for k in ("name", "source", "status", "fps", "frames", "skipped", "dropped", "detect_fps",
                                     "alarms", "width", "height")} == {
            "name": "yard", "source": "rtsp://10.0.0.5/s", "status": "ok", "fps": 5.0, "frames": 50, "skipped": 2,
            "dropped": 1, "detect_fps": 5, "alarms": ["fire"], "width": 64, "height": 48}
        assert (gate["name"], gate["status"], gate["alarms"], gate["width"]) == ("gate", "reconnecting", [], None)
        assert get(app, "/camera/gate/frame.jpg", token=None)[0] == 503  # known, no frame yet
        assert get(app, "/camera/yard/frame.jpg", token=None)[0] == 200
        status["alarms"] = {"active": ["smoke"], "events": 1, "pending_events": 0}  # today's AlarmObserver.status()
        cameras = json.loads(get(app, "/api/cameras", token=None)[2])
        assert [c["alarms"] for c in cameras["cameras"]] == [["smoke"], ["smoke"]]
        stats = json.loads(get(app, "/api/stats", token=None)[2])
        assert (stats["stage_ms"], stats["telemetry"], stats["active"]) == ({"infer": 31.5}, {"gpu_percent": 40.0},
                                                                            ["smoke"])
        assert stats["disk"]["free_bytes"] > 0
    finally:
        app.close()


class FakePipeline(object):
    """What the multi-camera pipeline offers ``attach_pipeline``: status(), stats.stage_listeners, observers."""

    class Stats(object):
        def __init__(self):
            self.stage_listeners = []

    class Alarms(object):
        def __init__(self, events_dir):
            self.events_dir = events_dir

    class PerCamera(object):
        def __init__(self, observers):
            self.by_camera = observers

    def __init__(self, events_dir):
        self.stats = self.Stats()
        self.observers = [lambda *args: None, self.PerCamera({"yard": self.Alarms(events_dir)})]

    def status(self):
        return {"cameras": [{"name": "yard", "status": "ok", "alarms": {"active": ["fire"], "events": 1}},
                            {"name": "gate", "status": "ok", "alarms": {"active": [], "events": 0}}],
                "alarms": {"active": ["fire"], "events": 1, "pending_events": 0}}  # over every camera


def test_a_pipeline_attaches_its_status_stage_timings_and_events_folder(events_dir):
    app = WebApp("127.0.0.1", 0)
    pipeline = FakePipeline(str(events_dir))
    try:
        app.attach_pipeline(pipeline)
        cameras = json.loads(get(app, "/api/cameras", token=None)[2])["cameras"]
        assert [(c["name"], c["alarms"]) for c in cameras] == [("yard", ["fire"]), ("gate", [])]  # each its own
        assert len(json.loads(get(app, "/api/events", token=None)[2])["events"]) == 3
        for listener in pipeline.stats.stage_listeners:
            listener("infer", 20.0)
        samples = metric_samples(app)
        assert samples[("jetson_detect_stage_seconds_count", (("stage", "infer"),))] == 1
        assert samples[("jetson_detect_camera_up", (("camera", "gate"),))] == 1
    finally:
        app.close()


def test_without_a_provider_a_camera_shows_its_last_frames_stats_and_alarms():
    app = WebApp("127.0.0.1", 0)
    try:
        app.write(FrameResult(0, "video.mp4", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8),
                              Detections.empty(), NAMES, {"frames": 7, "fps": 9.5, "skipped": 1,
                                                          "alarms": {"active": ["fire"], "events": 1}}))
        (camera,) = json.loads(get(app, "/api/cameras", token=None)[2])["cameras"]
        assert (camera["name"], camera["frames"], camera["fps"], camera["skipped"], camera["alarms"]) == (
            "cam0", 7, 9.5, 1, ["fire"])
        assert json.loads(get(app, "/stats.json", token=None)[2])["frames"] == 7
        page = get(app, "/", token=None)[2].decode()
        assert 'var CAMERA="cam0";' in page  # one camera: its own page, the stream as large as it comes
    finally:
        app.close()


def test_connections_past_the_cap_get_503_and_the_app_recovers():
    app = WebApp("127.0.0.1", 0, max_connections=2, timeout_s=30)
    idle = [socket.create_connection(("127.0.0.1", app.port)) for _ in range(2)]
    try:
        deadline = time.monotonic() + 10
        while app.server.active < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.server.active == 2
        status, _, body = get(app, "/api/cameras", token=None)
        assert (status, body) == (503, b"busy: too many connections, try again later\n")
        for sock in idle:
            sock.close()
        deadline = time.monotonic() + 10
        while app.server.active > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert get(app, "/api/cameras", token=None)[0] == 200
    finally:
        for sock in idle:
            sock.close()
        app.close()


def test_an_idle_connection_is_closed_after_the_socket_timeout():
    app = WebApp("127.0.0.1", 0, timeout_s=0.3)
    sock = socket.create_connection(("127.0.0.1", app.port))
    try:
        sock.sendall(b"GET / HTTP/1.1\r\n")  # and never finishes the request
        sock.settimeout(20)
        assert sock.recv(1024) == b""  # the server hung up on its own
        deadline = time.monotonic() + 10
        while app.server.active and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.server.active == 0
    finally:
        sock.close()
        app.close()


def test_a_client_that_sends_its_request_a_byte_at_a_time_is_cut_off():
    app = WebApp("127.0.0.1", 0, timeout_s=0.5)  # each byte comes well within the socket timeout
    sock = socket.create_connection(("127.0.0.1", app.port))
    request = b"GET / HTTP/1.1\r\n" + b"X-Slow: " + b"a" * 300 + b"\r\n\r\n"
    cut_off_at = None
    try:
        for sent in range(len(request)):
            try:
                sock.sendall(request[sent:sent + 1])
            except OSError:
                cut_off_at = sent
                break
            time.sleep(0.02)
        assert cut_off_at is not None and cut_off_at < len(request)  # the head never finished: the server hung up
    finally:
        sock.close()
        app.close()


def metric_samples(app):
    status, response, body = get(app, "/metrics", token=None)
    assert status == 200 and response.getheader("Content-Type").startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_frames_detections_and_events_and_show_the_status(events_dir):
    status = {"cameras": [{"name": "yard", "status": "ok", "fps": 4.5, "skipped": 3, "dropped": 2, "reconnects": 1},
                          {"name": "gate", "status": "failed: no signal", "fps": None, "skipped": 0}],
              "telemetry": {"gpu_percent": 61.0, "cpu_percent": 35.5, "temperatures_c": {"GPU-therm": 48.5}},
              "alarms": {"yard": {"active": ["fire"]}}}
    app = WebApp("127.0.0.1", 0, status=lambda: status, events_dir=str(events_dir))
    try:
        image = np.zeros((8, 8, 3), np.uint8)
        app.write(CameraResult("yard", image, [0, 0, 1]))
        app.write(CameraResult("yard", image, [0]))
        app.write(CameraResult("gate", image, []))
        for ms in (4.0, 30.0, 300.0):
            app.metrics.observe_stage("infer", ms)
        samples = metric_samples(app)
        assert samples[("jetson_detect_frames_total", (("camera", "yard"),))] == 2
        assert samples[("jetson_detect_frames_total", (("camera", "gate"),))] == 1
        assert samples[("jetson_detect_detections_total", (("camera", "yard"), ("class", "fire")))] == 3
        assert samples[("jetson_detect_detections_total", (("camera", "yard"), ("class", "smoke")))] == 1
        assert samples[("jetson_detect_events_total", (("camera", "cam0"), ("class", "fire")))] == 1
        assert samples[("jetson_detect_events_total", (("camera", "gate"), ("class", "smoke")))] == 1
        assert samples[("jetson_detect_events_total", (("camera", "yard"), ("class", "fire")))] == 1
        assert samples[("jetson_detect_stage_seconds_count", (("stage", "infer"),))] == 3
        assert samples[("jetson_detect_stage_seconds_bucket", (("le", "0.005"), ("stage", "infer")))] == 1
        assert samples[("jetson_detect_stage_seconds_bucket", (("le", "0.05"), ("stage", "infer")))] == 2
        assert samples[("jetson_detect_skipped_frames_total", (("camera", "yard"),))] == 3
        assert samples[("jetson_detect_reconnects_total", (("camera", "yard"),))] == 1
        assert samples[("jetson_detect_camera_fps", (("camera", "yard"),))] == 4.5
        assert samples[("jetson_detect_camera_up", (("camera", "gate"),))] == 0
        assert samples[("jetson_detect_alarm_active", (("camera", "yard"), ("class", "fire")))] == 1
        assert samples[("jetson_detect_temperature_celsius", (("sensor", "GPU-therm"),))] == 48.5
        assert samples[("jetson_detect_gpu_load_percent", ())] == 61.0
        assert samples[("jetson_detect_disk_free_bytes", (("path", str(events_dir)),))] > 0
        with open(str(events_dir / "events.jsonl"), "a") as handle:  # the torn line completed, and one more
            handle.write('-1", "class": "smoke"}\n{"type": "new", "id": "y2", "camera": "yard", "class": "fire"}\n')
        samples = metric_samples(app)
        assert samples[("jetson_detect_events_total", (("camera", "yard"), ("class", "fire")))] == 2
        assert samples[("jetson_detect_events_total", (("camera", "cam0"), ("class", "smoke")))] == 1
    finally:
        app.close()


def test_without_prometheus_client_metrics_answer_501_and_the_rest_works(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import prometheus_client now raises ImportError
    app = WebApp("127.0.0.1", 0)
    try:
        app.publish(np.zeros((8, 8, 3), np.uint8))
        status, _, body = get(app, "/metrics", token=None)
        assert (status, body) == (501, b"metrics need prometheus_client: pip install 'jetson_detect[metrics]'\n")
        assert get(app, "/api/stats", token=None)[0] == 200
        assert get(app, "/frame.jpg", token=None)[0] == 200
    finally:
        app.close()


def test_the_url_carries_the_token_and_a_request_without_it_is_refused():
    app = WebApp("127.0.0.1", 0, token="a b&c")
    try:
        assert app.url.endswith("/?token=a%20b%26c")
        assert urllib.request.urlopen(app.url, timeout=5).status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(app.url.split("?")[0], timeout=5)
        assert refused.value.code == 403
    finally:
        app.close()
