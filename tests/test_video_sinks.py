"""Sinks by URI: the JSON-lines log, video and folder outputs, the display note, and the HTTP web view."""

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from jetson_detect.errors import JetsonDetectError
from jetson_detect.math.nms import Detections
from jetson_detect.video.http_view import MjpegServer
from jetson_detect.video.sinks import (
    DisplaySink,
    FrameResult,
    HttpSink,
    ImageFolderSink,
    JsonlSink,
    VideoFileSink,
    open_sink,
    parse_http_uri,
    source_label,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
NAMES = ["fire", "smoke"]


def two_detections():
    return Detections(np.array([[10.0, 20.0, 110.5, 220.25], [1, 2, 3, 4]], np.float32),
                      np.array([0.875, 0.5], np.float32), np.array([1, 0], np.int32))


def result_for(image, index=0, source_name="cam", detections=None):
    return FrameResult(index, source_name, image, image, detections or two_detections(), NAMES, {"fps": 10.0})


def read_mjpeg_frames(response, count):
    """Parse ``count`` JPEG parts out of a multipart/x-mixed-replace response."""
    frames = []
    while len(frames) < count:
        line = response.readline()
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
            response.readline()
            frames.append(response.read(length))
    return frames


def test_jsonl_sink_writes_one_flushed_line_per_frame_in_the_core_format(tmp_path):
    path = tmp_path / "out" / "dets.jsonl"
    sink = JsonlSink(str(path))
    sink.write(result_for(np.zeros((480, 640, 3), np.uint8), index=7, source_name="video.mp4"))
    assert json.loads(path.read_text()) == {  # readable before close: flushed per line
        "source": "video.mp4", "frame": 7, "width": 640, "height": 480,
        "detections": [{"class_id": 1, "class_name": "smoke", "confidence": 0.875, "box": [10.0, 20.0, 110.5, 220.25]},
                       {"class_id": 0, "class_name": "fire", "confidence": 0.5, "box": [1.0, 2.0, 3.0, 4.0]}],
        "camera": "cam0"}
    sink.close()


def test_jsonl_source_is_the_file_name_for_files_and_the_uri_for_live_sources():
    assert source_label("/data/clips/yard.mp4") == "yard.mp4"
    assert source_label("../images/fire_1.jpg") == "fire_1.jpg"
    assert source_label("csi://0") == "csi://0"
    assert source_label("rtsp://10.0.0.5/stream") == "rtsp://10.0.0.5/stream"
    assert source_label("/dev/video1") == "/dev/video1"


def test_jsonl_sink_in_an_unwritable_place_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(JetsonDetectError, match="cannot write the detection log"):
        JsonlSink(str(blocker / "dets.jsonl"))


def test_video_file_sink_writes_a_readable_video_of_every_frame(tmp_path):
    path = tmp_path / "out.avi"
    sink = VideoFileSink(str(path), fps=15)
    for i in range(6):
        sink.write(result_for(np.full((96, 128, 3), i * 40, np.uint8), index=i))
    sink.close()
    capture = cv2.VideoCapture(str(path))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (128, 96)
    capture.release()


def test_image_folder_sink_keeps_image_names_and_numbers_video_frames(tmp_path):
    sink = ImageFolderSink(str(tmp_path / "annotated"))
    image = np.zeros((32, 32, 3), np.uint8)
    sink.write(result_for(image, 0, "/data/images/dog.png"))
    sink.write(result_for(image, 12, "video.mp4"))
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == ["dog.jpg", "frame_000012.jpg"]


def test_display_without_display_is_skipped_with_a_note(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    notes = []
    sink = DisplaySink("display://0", notes.append)
    sink.write(result_for(np.zeros((8, 8, 3), np.uint8)))
    assert not sink.enabled and notes and "no DISPLAY" in notes[0]


def test_display_with_an_opencv_without_gui_is_skipped_with_a_note(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":0")

    def no_gui(*_args):
        raise cv2.error("The function is not implemented. Rebuild the library with GTK+ 2.x")

    monkeypatch.setattr(cv2, "imshow", no_gui)
    notes = []
    sink = DisplaySink("display://0", notes.append)
    sink.write(result_for(np.zeros((8, 8, 3), np.uint8)))
    sink.write(result_for(np.zeros((8, 8, 3), np.uint8)))
    assert not sink.enabled and len(notes) == 1 and "no GUI support" in notes[0]


def test_open_sink_picks_the_sink_by_uri(tmp_path):
    assert isinstance(open_sink(str(tmp_path / "v.mp4")), VideoFileSink)
    assert isinstance(open_sink(str(tmp_path / "d.jsonl")), JsonlSink)
    assert isinstance(open_sink(str(tmp_path / "frames")), ImageFolderSink)
    with pytest.raises(JetsonDetectError, match="give a folder for images"):
        open_sink(str(tmp_path / "one.jpg"))


def test_http_uri_binds_localhost_unless_a_host_is_given():
    assert parse_http_uri("http://:8080") == ("127.0.0.1", 8080)
    assert parse_http_uri("http://localhost:8080/") == ("127.0.0.1", 8080)
    assert parse_http_uri("http://0.0.0.0:9000") == ("0.0.0.0", 9000)
    with pytest.raises(JetsonDetectError, match="expected http://HOST:PORT"):
        parse_http_uri("http://camera")


def test_http_port_in_use_is_a_user_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(JetsonDetectError, match="cannot listen there"):
            MjpegServer("127.0.0.1", taken.getsockname()[1])


def test_http_view_serves_page_stats_and_decodable_mjpeg_frames():
    server = MjpegServer("127.0.0.1", 0)
    try:
        base = "http://127.0.0.1:{}".format(server.port)
        page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
        assert '<img id="view" src="/stream.mjpg"' in page
        stream = urllib.request.urlopen(base + "/stream.mjpg", timeout=5)
        assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        image = np.zeros((120, 160, 3), np.uint8)
        image[:, :80] = (0, 0, 255)
        for _ in range(20):
            server.publish(image, {"frames": 3, "fps": 12.5})
            time.sleep(0.02)
        jpeg = read_mjpeg_frames(stream, 1)[0]
        decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == (120, 160, 3)
        assert decoded[60, 40, 2] > 200 and decoded[60, 120, 2] < 40
        stats = json.loads(urllib.request.urlopen(base + "/stats.json", timeout=5).read())
        assert stats == {"frames": 3, "fps": 12.5, "viewers": 1}
        stream.close()
    finally:
        server.close()


def test_http_view_with_a_token_refuses_requests_without_it():
    server = MjpegServer("127.0.0.1", 0, token="s3cret")
    try:
        base = "http://127.0.0.1:{}".format(server.port)
        for path in ("/", "/stats.json", "/stream.mjpg", "/frame.jpg", "/?token=wrong"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=5)
            assert refused.value.code == 403
        page = urllib.request.urlopen(base + "/?token=s3cret", timeout=5).read().decode()
        assert 'src="/stream.mjpg?token=s3cret"' in page
        request = urllib.request.Request(base + "/stats.json", headers={"Authorization": "Bearer s3cret"})
        assert urllib.request.urlopen(request, timeout=5).status == 200
        assert server.url.endswith("/?token=s3cret")
    finally:
        server.close()


def test_a_viewer_that_never_reads_does_not_slow_publishing():
    server = MjpegServer("127.0.0.1", 0, max_fps=0)  # no rate cap: every frame is encoded and offered
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads a byte
    try:
        deadline = time.monotonic() + 5
        while server.viewer_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        noise = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)  # ~1 MB per JPEG
        start = time.monotonic()
        for _ in range(30):
            server.publish(noise)
        elapsed = time.monotonic() - start
        assert server.viewer_count() == 1
        assert elapsed < 3.0  # 30 MB were never read: publishing only overwrote the viewer's one-frame slot
    finally:
        stalled.close()
        server.close()


def test_many_viewers_each_receive_frames():
    server = MjpegServer("127.0.0.1", 0)
    got = []

    def viewer():
        stream = urllib.request.urlopen("http://127.0.0.1:{}/stream.mjpg".format(server.port), timeout=5)
        got.append(len(read_mjpeg_frames(stream, 2)))
        stream.close()

    threads = [threading.Thread(target=viewer) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while server.viewer_count() < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        image = np.zeros((48, 64, 3), np.uint8)
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            server.publish(image)
            time.sleep(0.02)
        for t in threads:
            t.join(1)
        assert got == [2, 2, 2, 2]
    finally:
        server.close()


def test_http_sink_publishes_the_annotated_frame(tmp_path):
    sink = HttpSink("http://127.0.0.1:0", note=lambda m: None)
    try:
        annotated = np.full((40, 60, 3), 255, np.uint8)
        sink.write(FrameResult(0, "cam", np.zeros_like(annotated), annotated, two_detections(), NAMES, {}))
        jpeg = urllib.request.urlopen(sink.url + "frame.jpg", timeout=5).read()
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).mean() > 250
    finally:
        sink.close()


def test_the_stream_is_capped_at_max_fps_while_the_newest_frame_stays_available():
    server = MjpegServer("127.0.0.1", 0, max_fps=5)
    viewer = socket.create_connection(("127.0.0.1", server.port))
    viewer.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    viewer.settimeout(0.2)
    received = b""
    try:
        deadline = time.monotonic() + 5
        while server.viewer_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        for value in range(25):  # 25 frames over 0.5 s, at 5 frames/s at most 3 go out
            server.publish(np.full((16, 16, 3), value * 10, np.uint8))
            time.sleep(0.02)
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            try:
                received += viewer.recv(65536)
            except socket.timeout:
                pass
        assert 2 <= received.count(b"--jetsondetectframe") <= 3
        newest = urllib.request.urlopen("http://127.0.0.1:{}/frame.jpg".format(server.port), timeout=5).read()
        assert abs(cv2.imdecode(np.frombuffer(newest, np.uint8), cv2.IMREAD_COLOR).mean() - 240) < 3
    finally:
        viewer.close()
        server.close()
