"""Sinks by URI: the JSON-lines log, video and folder outputs, the display note, and the web app's MJPEG view."""

import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from jetson_detect.errors import JetsonDetectError
from jetson_detect.integrations.web import WebApp
from jetson_detect.math.nms import Detections
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
    video_file_problem,
)

from conftest import fill_disk

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
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


def test_image_folder_sink_keeps_image_names_and_formats_and_numbers_video_frames(tmp_path):
    sink = ImageFolderSink(str(tmp_path / "annotated"))
    image = np.zeros((32, 32, 3), np.uint8)
    sink.write(result_for(image, 0, "/data/images/dog.png"))
    sink.write(result_for(image, 0, "/data/images/dog.jpg"))  # same stem: a file of its own, not dog.png's
    sink.write(result_for(image, 12, "video.mp4"))
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == ["dog.jpg", "dog.png", "frame_000012.jpg"]
    assert (tmp_path / "annotated" / "dog.png").read_bytes().startswith(b"\x89PNG")


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
            WebApp("127.0.0.1", taken.getsockname()[1])


def test_http_view_serves_page_stats_and_decodable_mjpeg_frames():
    server = WebApp("127.0.0.1", 0)
    try:
        base = "http://127.0.0.1:{}".format(server.port)
        page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
        assert '<div id="grid">' in page  # no camera has sent a frame yet
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
    server = WebApp("127.0.0.1", 0, token="s3cret")
    try:
        base = "http://127.0.0.1:{}".format(server.port)
        for path in ("/", "/stats.json", "/stream.mjpg", "/frame.jpg", "/?token=wrong"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=5)
            assert refused.value.code == 403
        page = urllib.request.urlopen(base + "/?token=s3cret", timeout=5).read().decode()
        assert 'var TOKEN="s3cret";' in page  # the page passes it on to its fetches and streams
        request = urllib.request.Request(base + "/stats.json", headers={"Authorization": "Bearer s3cret"})
        assert urllib.request.urlopen(request, timeout=5).status == 200
        assert server.url.endswith("/?token=s3cret")
    finally:
        server.close()


def test_a_viewer_that_never_reads_does_not_slow_publishing():
    server = WebApp("127.0.0.1", 0, max_fps=0)  # no rate cap: every frame is encoded and offered
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
    server = WebApp("127.0.0.1", 0)
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
    server = WebApp("127.0.0.1", 0, max_fps=5)
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


def record(n):
    return {"source": "cam", "frame": n, "width": 8, "height": 8, "detections": []}


def parsed_lines(path):
    """Every line that parses (the readers' rule: a torn line is skipped), and the count of those that do not."""
    good, torn = [], 0
    for line in Path(path).read_bytes().split(b"\n")[:-1]:
        try:
            good.append(json.loads(line))
        except ValueError:
            torn += 1
    return good, torn


def test_jsonl_sink_appends_so_a_restarted_run_keeps_its_log(tmp_path):
    path = tmp_path / "dets.jsonl"
    for run in range(2):
        sink = JsonlSink(str(path))
        sink.write_record(record(run))
        sink.close()
    assert [r["frame"] for r in parsed_lines(path)[0]] == [0, 1]


def test_a_torn_last_line_is_ended_with_a_newline_and_stays_a_separate_unparseable_line(tmp_path):
    path = tmp_path / "dets.jsonl"
    path.write_bytes(json.dumps(record(0)).encode() + b"\n" + b'{"source": "cam", "fra')  # a crash mid-line
    notes = []
    sink = JsonlSink(str(path), note=notes.append)
    sink.write_record(record(1))
    sink.close()
    assert path.read_bytes().endswith(b'"fra\n' + json.dumps(record(1)).encode() + b"\n")
    assert parsed_lines(path) == ([record(0), record(1)], 1)
    assert len(notes) == 1 and "last line was torn" in notes[0]


def test_a_second_writer_of_the_same_log_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "dets.jsonl"
    first = JsonlSink(str(path))
    with pytest.raises(JetsonDetectError, match=r"detection log .*dets\.jsonl: another run is writing it"):
        JsonlSink(str(path))
    first.close()
    JsonlSink(str(path)).close()  # the lock goes with the first writer


def test_a_second_process_writing_the_same_log_is_refused(tmp_path):
    path = tmp_path / "dets.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from jetson_detect.video.sinks import JsonlSink\n"
        "JsonlSink(sys.argv[1])\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"), str(path)], stdout=subprocess.PIPE, cwd=str(ROOT), env=dict(os.environ,
                                                                                         PYTHONPATH=str(ROOT)))
    try:
        assert holder.stdout.readline() == b"locked\n"
        with pytest.raises(JetsonDetectError, match="another run is writing it"):
            JsonlSink(str(path))
    finally:
        holder.kill()
        holder.wait()
    JsonlSink(str(path)).close()


class FullDisk(object):
    """os.write stand-in: writes ``room`` bytes in total (short writes, then ENOSPC), like a nearly full disk."""

    def __init__(self, room):
        self.room = room
        self.real = os.write

    def __call__(self, fd, data):
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        written = self.real(fd, bytes(data[:min(len(data), self.room, 5)]))  # at most 5 bytes a call: short writes
        self.room -= written
        return written


def test_short_writes_are_retried_until_the_line_is_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "write", FullDisk(10 ** 6))
    sink = JsonlSink(str(tmp_path / "dets.jsonl"))
    sink.write_record(record(0))
    sink.close()
    assert parsed_lines(tmp_path / "dets.jsonl") == ([record(0)], 0)


def test_a_full_disk_stops_the_run_with_one_line_and_leaves_only_whole_lines(tmp_path, monkeypatch):
    path = tmp_path / "dets.jsonl"
    sink = JsonlSink(str(path))
    sink.write_record(record(0))
    monkeypatch.setattr(os, "write", FullDisk(30))  # room for part of the next line only
    with pytest.raises(JetsonDetectError) as caught:
        sink.write_record(record(1))
    sink.close()
    assert str(caught.value).startswith("detection log {}: cannot write (No space left on device)".format(path))
    assert "free some space" in str(caught.value)
    assert path.read_bytes() == json.dumps(record(0)).encode() + b"\n"  # the partial line was cut back off


def test_degrade_mode_keeps_going_says_so_once_counts_lost_lines_and_resumes(tmp_path, monkeypatch):
    path = tmp_path / "dets.jsonl"
    notes = []
    sink = JsonlSink(str(path), degrade=True, note=notes.append)
    sink.write_record(record(0))
    monkeypatch.setattr(os, "write", FullDisk(7))
    for n in range(1, 4):
        sink.write_record(record(n))
    assert sink.lines_lost == 3 and len(notes) == 1 and "detection goes on" in notes[0]
    monkeypatch.undo()
    sink.write_record(record(4))
    sink.close()
    assert parsed_lines(path) == ([record(0), record(4)], 0)
    assert "writable again; 3 line(s) were lost" in notes[1]




def test_a_really_full_tmpfs_stops_the_jsonl_log_at_its_last_whole_line(tiny_tmpfs):
    path = tiny_tmpfs / "dets.jsonl"
    sink = JsonlSink(str(path))
    big = dict(record(0), detections=[{"class_id": 0, "box": [1.5] * 4}] * 40)
    written = 0
    with pytest.raises(JetsonDetectError, match="No space left on device"):
        for n in range(100000):
            sink.write_record(dict(big, frame=n))
            written += 1
    sink.close()
    lines, torn = parsed_lines(path)
    assert torn == 0 and written > 10 and [r["frame"] for r in lines] == list(range(written))
    assert path.read_bytes().endswith(b"\n")


def test_a_video_that_does_not_play_back_is_reported_broken_on_close(tmp_path, monkeypatch):
    class SilentWriter(object):  # an encoder that accepts frames but writes nothing (as a full disk does)
        def __init__(self, *args):
            pass

        def isOpened(self):
            return True

        def write(self, image):
            pass

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoWriter", SilentWriter)
    sink = VideoFileSink(str(tmp_path / "out.avi"))
    sink.write(result_for(np.zeros((32, 32, 3), np.uint8)))
    with pytest.raises(JetsonDetectError, match=r"video .*out\.avi: was not written after 1 frame\(s\) were "
                                                r"written; it is not playable"):
        sink.close()


@pytest.mark.parametrize("content, problem", [
    (None, "was not written"),
    (b"", "is empty"),
    (b"RIFF garbage that is no video", "cannot be opened by OpenCV"),
])
def test_video_file_problem_names_what_is_wrong(tmp_path, content, problem):
    path = tmp_path / "v.mp4"
    if content is not None:
        path.write_bytes(content)
    assert video_file_problem(str(path)).startswith(problem)


def test_a_video_cut_short_by_a_really_full_disk_is_reported_broken(tiny_tmpfs):
    sink = VideoFileSink(str(tiny_tmpfs / "out.mp4"), fps=10)
    noise = np.random.default_rng(0)
    for i in range(20):
        sink.write(result_for(noise.integers(0, 255, (120, 160, 3), dtype=np.uint8), index=i))
    with pytest.raises(JetsonDetectError, match=r"out\.mp4: cannot be opened by OpenCV .* it is not playable"):
        sink.close()


def test_an_image_folder_on_a_full_disk_stops_the_run_or_in_degrade_mode_counts_lost_frames(tmp_path, monkeypatch):
    image = np.zeros((32, 32, 3), np.uint8)
    monkeypatch.setattr(os, "write", FullDisk(0))
    with pytest.raises(JetsonDetectError, match=r"frame_000001\.jpg: cannot write the annotated image \(No space"):
        ImageFolderSink(str(tmp_path / "stop")).write(result_for(image, 1, "cam"))
    notes = []
    sink = open_sink(str(tmp_path / "watch"), note=notes.append, degrade=True)
    for i in range(3):
        sink.write(result_for(image, i, "cam"))
    monkeypatch.undo()
    sink.write(result_for(image, 3, "cam"))
    assert sink.frames_lost == 3 and len(notes) == 1 and "detection goes on" in notes[0]
    assert sorted(os.listdir(str(tmp_path / "watch"))) == ["frame_000003.jpg"]  # no partial or temporary file
    assert sorted(os.listdir(str(tmp_path / "stop"))) == []


def test_a_restarted_watch_never_overwrites_the_camera_frames_of_the_run_before(tmp_path, monkeypatch):
    image = np.zeros((32, 32, 3), np.uint8)
    for hour in (1, 2):  # two runs, each starting its frame count at 0
        monkeypatch.setattr(time, "gmtime", lambda *_args, hour=hour: time.struct_time((2026, 1, 31, hour, 0, 0, 5,
                                                                                         31, 0)))
        ImageFolderSink(str(tmp_path / "frames")).write(result_for(image, 0, "csi://0"))
    assert sorted(os.listdir(str(tmp_path / "frames"))) == ["frame_20260131T010000_000000.jpg",
                                                           "frame_20260131T020000_000000.jpg"]


def test_a_video_writer_that_cannot_open_on_a_full_disk_blames_the_disk_not_the_codec(tiny_tmpfs):
    fill_disk(tiny_tmpfs)
    sink = VideoFileSink(str(tiny_tmpfs / "out.mp4"), fps=10)
    with pytest.raises(JetsonDetectError, match=r"cannot write video .*out\.mp4: no space left on the device \(0 KiB "
                                                r"free\); free some space"):
        sink.write(result_for(np.zeros((120, 160, 3), np.uint8)))
