"""Sources by URI and the capture thread: files keep every frame, live sources keep the newest and reconnect."""

import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from jetson_detect.errors import JetsonDetectError
from jetson_detect.video import sources
from jetson_detect.video.sources import (
    CaptureThread,
    FrameSource,
    ImageFilesSource,
    OpenCVSource,
    csi_pipeline,
    is_valid_frame,
    open_source,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
COCO = SHARED / "data" / "coco64" / "images"


class ScriptedLiveSource(FrameSource):
    """A live source that serves ``frames_per_connection`` frames per connection, then fails (None)."""

    live = True

    def __init__(self, frames_per_connection, fail_opens=0):
        self.name = "scripted://0"
        self.frames_per_connection = frames_per_connection
        self.fail_opens = fail_opens
        self.opens = 0
        self.served = 0
        self.left = 0

    def open(self):
        self.opens += 1
        if 1 < self.opens <= 1 + self.fail_opens:
            raise OSError("camera unplugged")
        self.left = self.frames_per_connection

    def read(self):
        time.sleep(0.002)
        if self.left <= 0:
            return None
        self.left -= 1
        self.served += 1
        return np.full((8, 8, 3), self.served % 256, np.uint8)


def no_gstreamer(monkeypatch):
    monkeypatch.setattr(sources, "_gstreamer_available", False)


def test_gstreamer_available_reads_the_build_information(monkeypatch):
    monkeypatch.setattr(sources, "_gstreamer_available", None)
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  Video I/O:\n    GStreamer:   YES (1.14.5)\n")
    assert sources.gstreamer_available() is True
    monkeypatch.setattr(sources, "_gstreamer_available", None)
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  Video I/O:\n    GStreamer:   NO\n")
    assert sources.gstreamer_available() is False


def test_csi_is_refused_with_a_clear_message_when_opencv_lacks_gstreamer(monkeypatch):
    no_gstreamer(monkeypatch)
    with pytest.raises(JetsonDetectError, match=r"csi://0: this OpenCV .* no GStreamer support"):
        open_source("csi://0")


def test_csi_is_refused_when_nvarguscamerasrc_is_missing(monkeypatch):
    monkeypatch.setattr(sources, "_gstreamer_available", True)
    monkeypatch.setattr(sources, "gst_element_available", lambda name: False)
    with pytest.raises(JetsonDetectError, match="nvarguscamerasrc not found"):
        open_source("csi://1")


def test_csi_uri_builds_the_argus_pipeline_with_its_options(monkeypatch):
    monkeypatch.setattr(sources, "_gstreamer_available", True)
    monkeypatch.setattr(sources, "gst_element_available", lambda name: True)
    source = open_source("csi://1?width=1920&height=1080&fps=30&flip=2")
    assert source.live and source.api == cv2.CAP_GSTREAMER
    assert source.target == csi_pipeline(1, 1920, 1080, 30, 2)
    assert source.target.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM), width=1920")
    assert "nvvidconv flip-method=2" in source.target
    assert source.target.endswith("video/x-raw, format=BGR ! appsink drop=1 max-buffers=1")


def pretend_video_devices_exist(monkeypatch):
    real_exists = sources.os.path.exists
    monkeypatch.setattr(sources.os.path, "exists", lambda p: str(p).startswith("/dev/video") or real_exists(p))


def test_camera_index_is_usb_without_nvarguscamerasrc(monkeypatch):
    no_gstreamer(monkeypatch)
    pretend_video_devices_exist(monkeypatch)
    source = open_source("2")
    assert isinstance(source, OpenCVSource) and source.live and source.target == 2 and source.api == cv2.CAP_V4L2


def test_dev_video_and_v4l2_uris_name_the_same_usb_camera(monkeypatch):
    no_gstreamer(monkeypatch)
    pretend_video_devices_exist(monkeypatch)
    assert open_source("/dev/video3").target == 3
    assert open_source("v4l2://3").target == 3
    assert open_source("v4l2:///dev/video3").target == 3


def test_rtsp_falls_back_to_ffmpeg_without_gstreamer(monkeypatch):
    no_gstreamer(monkeypatch)
    source = open_source("rtsp://10.0.0.2:554/stream")
    assert source.live and source.api == cv2.CAP_FFMPEG and source.target == "rtsp://10.0.0.2:554/stream"


def test_rtsp_uses_low_latency_gstreamer_when_available(monkeypatch):
    monkeypatch.setattr(sources, "_gstreamer_available", True)
    monkeypatch.setattr(sources, "gst_element_available", lambda name: name == "rtspsrc")
    source = open_source("rtsp://cam/stream")
    assert source.api == cv2.CAP_GSTREAMER
    assert "rtspsrc location=rtsp://cam/stream latency=0" in source.target and "drop=1 max-buffers=1" in source.target


def test_image_folder_source_reads_every_image_in_name_order():
    source = open_source(str(COCO))
    expected = sorted(p.name for p in COCO.glob("*.jpg"))
    assert [Path(p).name for p in source.paths] == expected and not source.live


def test_glob_source_keeps_only_matching_images():
    source = open_source(str(COCO / "00000000000*.jpg"))
    assert [Path(p).name for p in source.paths] == sorted(p.name for p in COCO.glob("00000000000*.jpg"))


def test_missing_path_is_a_user_error_naming_it():
    with pytest.raises(JetsonDetectError, match="no/such/video.mp4: no such file"):
        open_source("no/such/video.mp4")


def test_unreadable_image_is_returned_as_an_invalid_frame(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    source = ImageFilesSource("x", [str(bad)])
    source.open()
    assert not is_valid_frame(source.read())
    assert source.read() is None


def test_file_source_hands_over_every_frame_in_order_even_when_the_reader_is_slow(tmp_path):
    video = tmp_path / "count.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    for i in range(20):
        writer.write(np.full((48, 64, 3), i * 12, np.uint8))
    writer.release()
    capture = CaptureThread(open_source(str(video))).start()
    indices = []
    while not capture.ended:
        frame = capture.get(0.5)
        if frame is not None:
            indices.append(frame.position)
            time.sleep(0.01)
    assert indices == list(range(20))
    assert capture.frames_dropped == 0


def test_live_source_hands_over_the_newest_frame_and_counts_dropped_ones():
    source = ScriptedLiveSource(frames_per_connection=30)
    capture = CaptureThread(source, max_reconnects=0, note=lambda m: None).start()
    time.sleep(0.3)  # the reader runs far ahead of this consumer
    frame = capture.get(0.5)
    while not capture.ended:
        capture.get(0.1)
    assert frame is not None and frame.position > 0
    assert capture.frames_dropped >= 25


def test_live_source_that_fails_mid_stream_is_reconnected_and_says_so():
    notes = []
    source = ScriptedLiveSource(frames_per_connection=5, fail_opens=1)
    stop = threading.Event()
    capture = CaptureThread(source, stop, note=notes.append, backoff_s=0.01).start()
    deadline = time.monotonic() + 5
    while source.served < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    capture.join()
    assert source.served >= 12  # frames came after the first and second failures
    assert capture.reconnects >= 2
    assert any("reconnect failed: camera unplugged" in n for n in notes)
    assert any(n == "source scripted://0: reconnected" for n in notes)


def test_live_source_gives_up_after_max_reconnects():
    source = ScriptedLiveSource(frames_per_connection=2, fail_opens=100)
    capture = CaptureThread(source, note=lambda m: None, backoff_s=0.001, max_backoff_s=0.001, max_reconnects=3)
    capture.start()
    deadline = time.monotonic() + 5
    while not capture.ended and time.monotonic() < deadline:
        capture.get(0.05)
    assert capture.ended and source.opens == 4


class StallingLiveSource(FrameSource):
    """A camera whose second connection's first read hangs until the source is closed (as a wedged driver)."""

    live = True

    def __init__(self):
        self.name = "stalling://0"
        self.opens = 0
        self.unblock = threading.Event()
        self.served = 0

    def open(self):
        self.opens += 1
        self.unblock.clear()

    def read(self):
        if self.opens == 1 and self.served >= 2:
            self.unblock.wait(10)
            return None
        self.served += 1
        time.sleep(0.01)
        return np.zeros((4, 4, 3), np.uint8)

    def close(self):
        self.unblock.set()


def test_a_stalled_live_read_is_abandoned_and_the_source_reconnected():
    notes = []
    source = StallingLiveSource()
    capture = CaptureThread(source, note=notes.append, backoff_s=0.01, stall_timeout_s=0.3).start()
    deadline = time.monotonic() + 5
    while source.served < 6 and time.monotonic() < deadline:
        capture.get(0.05)
    capture.join()
    assert capture.stalls == 1 and source.opens >= 2 and source.served >= 6
    assert "source stalling://0: no frame for 0.3 s; abandoning the stuck read and reconnecting" in notes


def test_a_live_source_that_cannot_open_at_start_is_a_user_error():
    class Unplugged(FrameSource):
        live = True
        name = "/dev/video9"

        def open(self):
            raise OSError("cannot open source /dev/video9: check that /dev/video9 exists")

    with pytest.raises(JetsonDetectError, match="check that /dev/video9 exists"):
        CaptureThread(Unplugged()).start()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="V4L2 device nodes are a Linux thing")
def test_a_missing_usb_camera_is_refused_at_once_naming_the_device():
    with pytest.raises(JetsonDetectError, match=r"camera /dev/video97: no such device"):
        open_source("/dev/video97")
    with pytest.raises(JetsonDetectError, match=r"camera /dev/video97: no such device"):
        open_source("v4l2://97")


class WedgedCapture(object):
    """Stands for a cv2.VideoCapture: records on which thread, and during which read, it is released."""

    def __init__(self, hang):
        self.hang = hang
        self.reading = threading.Event()
        self.released_while_reading = False
        self.released_by = None
        self.proceed = threading.Event()

    def read(self):
        self.reading.set()
        if self.hang:
            self.proceed.wait(10)
        self.reading.clear()
        return True, np.zeros((4, 4, 3), np.uint8)

    def release(self):
        self.released_while_reading = self.reading.is_set()
        self.released_by = threading.current_thread()


def test_the_stall_watchdog_never_releases_a_capture_while_another_thread_reads_it():
    opened = []

    class Wedging(OpenCVSource):
        """Its first connection's first read hangs (a wedged driver); later connections work."""

        def open(self):
            self.capture = WedgedCapture(hang=not opened)
            opened.append(self.capture)

    notes = []
    source = Wedging("wedged://0", "wedged://0", live=True)
    capture = CaptureThread(source, note=notes.append, backoff_s=0.01, stall_timeout_s=0.3).start()
    deadline = time.monotonic() + 5
    while len(opened) < 2 and time.monotonic() < deadline:
        capture.get(0.05)
    stuck = opened[0]
    assert stuck.hang and stuck.reading.is_set()  # the first connection's read hangs in the "driver"
    frame = capture.get(1.0)
    assert frame is not None  # a fresh reader on a fresh connection goes on
    assert stuck.released_by is None  # nobody released the stuck capture under its read
    stuck.proceed.set()  # the driver finally returns: the abandoned reader releases its own capture
    deadline = time.monotonic() + 5
    while stuck.released_by is None and time.monotonic() < deadline:
        time.sleep(0.01)
    capture.join()
    assert stuck.released_by is not None and not stuck.released_while_reading
    assert capture.stalls == 1 and capture.reconnects == 1
    assert capture.status in ("ok", "ended")
