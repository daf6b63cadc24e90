"""Several cameras in one loop with one batched detector: files and live sources alike, per-camera outputs.

Real videos written from ../shared/data images (each camera its own size), the CPU backend at 320 built for a
batch of 3, and a batch-1 detector as the single-camera reference: every camera's JSON lines must be complete and
equal to what a single-camera run finds on the same frame. One live camera dies mid-run and comes back.
"""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from jetson_detect.app.pipeline import Camera, Pipeline, camera_output_uri
from jetson_detect.backends.detector import create_detector
from jetson_detect.errors import JetsonDetectError
from jetson_detect.math.letterbox import letterbox, to_network_input
from jetson_detect.math.nms import Detections
from jetson_detect.video.sinks import JsonlSink, Sink
from jetson_detect.video.sources import FrameSource, OpenCVSource, open_source

from conftest import video_frames

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WTS = SHARED / "weights" / "yolov5n.wts"
FIRE = sorted((SHARED / "data" / "fire_smoke" / "images").glob("*.jpg"))
COCO = sorted((SHARED / "data" / "coco64" / "images").glob("*.jpg"))
# name, images, frame size (w, h): three sizes, three lengths (so the last batches are smaller than 3)
VIDEOS = (("front", COCO[:6], (320, 240)), ("yard", FIRE[:5], (480, 360)), ("shed", FIRE[5:8], (256, 320)))


def quiet(_message):
    pass


@pytest.fixture(scope="module")
def batched():
    return create_detector(str(WTS), backend="onnxruntime", img_size=320, batch=3)


@pytest.fixture(scope="module")
def single():
    return create_detector(str(WTS), backend="onnxruntime", img_size=320)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """{camera name: (video path, its decoded frames)}; MJPG, so every decoder gives the same pixels."""
    folder = tmp_path_factory.mktemp("cams")
    out = {}
    for name, images, size in VIDEOS:
        path = folder / "{}.avi".format(name)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
        for image in images:
            writer.write(cv2.resize(cv2.imread(str(image)), size))
        writer.release()
        frames = video_frames(path)
        assert len(frames) == len(images)
        out[name] = (path, frames)
    return out


def records_by_camera(log):
    found = {}
    for line in Path(log).read_text().splitlines():
        record = json.loads(line)
        found.setdefault(record["camera"], []).append(record)
    return found


def assert_same_detections(record, expected):
    assert [d["class_id"] for d in record["detections"]] == [int(c) for c in expected.class_ids], record["frame"]
    boxes = np.array([d["box"] for d in record["detections"]], np.float32).reshape(-1, 4)
    np.testing.assert_allclose(boxes, expected.boxes, atol=0.05)


class BatchRecorder(object):
    """The batched detector, recording the batch size of every inference."""

    def __init__(self, detector):
        self.detector = detector
        self.batches = []

    def __getattr__(self, name):
        return getattr(self.detector, name)

    def infer(self, batch):
        self.batches.append(batch.shape[0])
        return self.detector.infer(batch)


def test_three_file_cameras_give_every_frame_once_with_single_camera_detections(batched, single, videos, tmp_path):
    log = tmp_path / "dets.jsonl"
    detector = BatchRecorder(batched)
    cameras = [Camera(name, OpenCVSource(str(path), str(path))) for name, (path, _) in videos.items()]
    summary = Pipeline(detector, cameras, [JsonlSink(str(log))], note=quiet).run()
    found = records_by_camera(log)
    assert sorted(found) == sorted(videos)
    for name, (_, frames) in videos.items():
        records = found[name]
        assert [r["frame"] for r in records] == list(range(len(frames)))  # complete and in order
        assert {(r["width"], r["height"]) for r in records} == {(frames[0].shape[1], frames[0].shape[0])}
        for record, frame in zip(records, frames):  # boxes in this camera's own pixels, as a lone run finds them
            assert_same_detections(record, single.detect(frame))
    assert sum(len(r) for r in found.values()) == summary["frames"] == 14
    assert set(detector.batches) == {3}  # smaller last batches were padded, none dropped
    assert [c["frames"] for c in summary["cameras"]] == [6, 5, 3]
    assert sum(len(r["detections"]) for r in found["front"]) > 0


class PacedVideoCamera(FrameSource):
    """A live camera made of a real video's frames at ``interval_s``; position p shows frames[p % len]. With
    ``die_after`` its stream drops after that many frames and it cannot be opened for ``outage_s``."""

    live = True

    def __init__(self, name, frames, interval_s=0.02, die_after=None, outage_s=0.0):
        self.name = name
        self.frames = frames
        self.interval_s = interval_s
        self.die_after = die_after
        self.outage_s = outage_s
        self.served = 0
        self.died_at = None
        self.opens = 0

    def open(self):
        if self.died_at is not None and time.monotonic() - self.died_at < self.outage_s:
            raise OSError("cannot open source {}: camera unplugged".format(self.name))
        self.opens += 1

    def read(self):
        time.sleep(self.interval_s)
        if self.served == self.die_after and self.died_at is None:
            self.died_at = time.monotonic()
            return None
        frame = self.frames[self.served % len(self.frames)]
        self.served += 1
        return frame


def test_a_live_camera_that_dies_and_comes_back_holds_up_neither_of_the_others(batched, single, videos, tmp_path):
    log = tmp_path / "live.jsonl"
    notes = []
    sources = {name: PacedVideoCamera("cam://" + name, frames) for name, (_, frames) in videos.items()}
    sources["shed"].die_after, sources["shed"].outage_s = 15, 1.0
    cameras = [Camera(name, source, detect_fps=5) for name, source in sources.items()]
    during_outage = {"front": 0, "yard": 0}
    state = {}

    def watch(frame, detections, index, stats):
        status = pipeline.status()["cameras"][2]
        if stats["camera"] in during_outage and status["status"] == "reconnecting":
            during_outage[stats["camera"]] += 1
        if stats["camera"] == "shed" and status["reconnects"] == 1:
            state["back"] = state.get("back", 0) + 1
            if state["back"] >= 3:
                pipeline.stop()

    pipeline = Pipeline(batched, cameras, [JsonlSink(str(log))], observers=[watch], note=notes.append,
                        reconnect_backoff_s=0.05)
    guard = threading.Timer(30.0, pipeline.stop)
    guard.start()
    try:
        summary = pipeline.run()
    finally:
        guard.cancel()
    front, yard, shed = summary["cameras"]
    assert state.get("back", 0) >= 3, notes  # the dead camera came back and was detected on again
    assert (front["reconnects"], yard["reconnects"], shed["reconnects"]) == (0, 0, 1)
    assert "source cam://shed: reconnected" in notes
    assert any(n.startswith("source cam://shed: reconnect failed: cannot open source cam://shed") for n in notes)
    assert during_outage["front"] >= 2 and during_outage["yard"] >= 2  # the others went on while it was down
    assert abs(front["frames"] - yard["frames"]) <= 1  # same rate, fair schedule
    found = records_by_camera(log)
    assert max(r["frame"] for r in found["shed"]) >= 15
    for name, (_, frames) in videos.items():
        positions = [r["frame"] for r in found[name]]
        assert positions == sorted(set(positions))  # newest frames, each once, in order
        for record in found[name]:
            assert_same_detections(record, single.detect(frames[record["frame"] % len(frames)]))


class FakeDetector(object):
    """Batch 1, one box per frame whose class is the frame's value; ``infer_s`` makes inference the bottleneck."""

    names = ["fire", "smoke", "person"]
    input_size = 64

    def __init__(self, infer_s=0.0):
        self.infer_s = infer_s

    def preprocess(self, image_bgr):
        padded, geometry = letterbox(image_bgr, self.input_size, cv2.resize)
        return to_network_input(padded), geometry

    def infer(self, batch):
        time.sleep(self.infer_s)
        value = int(round(batch[0, 0, 32, 32] * 255))
        return [Detections(np.array([[0, 0, 64, 64]], np.float32), np.array([0.9], np.float32),
                           np.array([value % 3], np.int32))]


class FastCamera(FrameSource):
    """A live camera far faster than the loop: a new frame every 2 ms, of one value."""

    live = True

    def __init__(self, name, value):
        self.name = name
        self.value = value

    def read(self):
        time.sleep(0.002)
        return np.full((48, 64, 3), self.value, np.uint8)


class RecordingSink(Sink):
    def __init__(self):
        self.name = "recording"
        self.results = []

    def write(self, result):
        self.results.append(result)


def test_when_inference_cannot_keep_up_every_camera_slows_down_evenly_and_counts_its_skips():
    cameras = [Camera("cam{}".format(i), FastCamera("fast://{}".format(i), i), detect_fps=50) for i in range(3)]
    sink = RecordingSink()
    summary = Pipeline(FakeDetector(infer_s=0.03), cameras, [sink], note=quiet, max_frames=30).run()
    counts = [c["frames"] for c in summary["cameras"]]
    assert sum(counts) == 30 and max(counts) - min(counts) <= 1  # round-robin: nobody starves
    assert all(c["skipped"] > 0 for c in summary["cameras"])  # 50 FPS each was asked, ~33 in all was possible
    assert summary["skipped"] == sum(c["skipped"] for c in summary["cameras"])
    assert {(r.camera, int(r.detections.class_ids[0])) for r in sink.results} == {("cam0", 0), ("cam1", 1),
                                                                                   ("cam2", 2)}


def test_status_lists_every_camera_in_the_documented_shape():
    cameras = [Camera("a", FastCamera("fast://a", 1), detect_fps=5, status_extra=lambda: {"alarms": {"active": []}}),
               Camera("b", FastCamera("fast://b", 2))]
    pipeline = Pipeline(FakeDetector(), cameras, [], note=quiet, max_frames=4,
                        extra_stats=lambda: {"telemetry_line": "CPU 12%"})
    pipeline.run()
    status = pipeline.status()
    assert set(status) == {"cameras", "frames", "fps", "latency_ms", "stage_ms", "batch_size", "telemetry_line"}
    assert [sorted(c) for c in status["cameras"]] == [
        sorted(["name", "source", "live", "status", "fps", "frames", "skipped", "dropped", "corrupt", "reconnects",
                "detect_fps", "alarms"]),
        sorted(["name", "source", "live", "status", "fps", "frames", "skipped", "dropped", "corrupt", "reconnects",
                "detect_fps"])]
    assert [(c["name"], c["source"], c["live"], c["detect_fps"]) for c in status["cameras"]] == [
        ("a", "fast://a", True, 5.0), ("b", "fast://b", True, None)]
    assert list(status["stage_ms"]) == ["preprocess", "infer", "output"]
    json.dumps(status)  # the web app serves it as it is


def test_a_camera_observer_sees_only_its_camera(videos):
    seen = {"front": [], "yard": []}
    cameras = [Camera(name, OpenCVSource(str(videos[name][0]), str(videos[name][0])),
                      observers=[lambda f, d, i, s, name=name: seen[name].append((s["camera"], i))])
               for name in seen]
    Pipeline(FakeDetector(), cameras, [], note=quiet).run()
    assert seen == {"front": [("front", i) for i in range(6)], "yard": [("yard", i) for i in range(5)]}


def test_a_file_camera_that_cannot_open_fails_alone_and_the_others_finish(videos, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    notes = []
    cameras = [Camera("bad", open_source(str(broken))),
               Camera("front", OpenCVSource(str(videos["front"][0]), str(videos["front"][0])))]
    summary = Pipeline(FakeDetector(), cameras, [], note=notes.append).run()
    bad, front = summary["cameras"]
    assert bad["status"].startswith("failed: cannot open source {}".format(broken)) and bad["frames"] == 0
    assert (front["status"], front["frames"]) == ("ended", 6)


def test_a_run_where_every_input_failed_is_an_error_naming_each(tmp_path):
    paths = []
    for name in ("a.mp4", "b.mp4"):
        paths.append(tmp_path / name)
        paths[-1].write_bytes(b"not a video")
    cameras = [Camera("cam{}".format(i), open_source(str(p))) for i, p in enumerate(paths)]
    with pytest.raises(JetsonDetectError, match=r"^no input could be read: cam0 \(.*a.mp4\): failed: cannot open "
                                                r"source .*; cam1 \(.*b.mp4\): failed"):
        Pipeline(FakeDetector(), cameras, [], note=quiet).run()


def test_cli_with_two_sources_logs_both_cameras_and_saves_each_one_annotated_video(videos, tmp_path):
    log = tmp_path / "log.jsonl"
    front, yard = videos["front"][0], videos["yard"][0]
    done = subprocess.run([sys.executable, "-m", "jetson_detect", "--source", str(front), "--source", str(yard),
                           "--weights", str(WTS), "--backend", "onnxruntime", "--img-size", "320", "--quiet",
                           "--save-json", str(log), "--save-dir", str(tmp_path / "out"),
                           "--output", str(tmp_path / "all.avi")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300, cwd=str(tmp_path),
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout.decode()
    found = records_by_camera(log)
    assert {name: [r["frame"] for r in records] for name, records in found.items()} == {
        "cam0": list(range(6)), "cam1": list(range(5))}
    for name, stem, count in (("cam0", "front", 6), ("cam1", "yard", 5)):
        for video in (tmp_path / "out" / name / (stem + ".mp4"), tmp_path / "all_{}.avi".format(name)):
            capture = cv2.VideoCapture(str(video))  # one video per camera, never frames of two sizes mixed
            assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == count, video
            capture.release()


def test_with_several_cameras_video_files_and_folders_are_per_camera_and_the_rest_shared():
    assert camera_output_uri("out/all.mp4", "yard") == "out/all_yard.mp4"
    assert camera_output_uri("frames/", "yard") == "frames/yard"
    assert camera_output_uri("file:///tmp/x.avi", "a") == "/tmp/x_a.avi"
    for shared in ("http://0.0.0.0:8080", "display://0", "dets.jsonl"):
        assert camera_output_uri(shared, "yard") is None


def test_a_folder_whose_every_image_is_unreadable_is_an_error_not_an_empty_success(tmp_path):
    for name in ("a.jpg", "b.png"):
        (tmp_path / name).write_bytes(b"not an image")
    with pytest.raises(JetsonDetectError, match=r"^no input could be read: cam0 \(.*\): \d+ unreadable frame"):
        Pipeline(FakeDetector(), open_source(str(tmp_path)), [], note=quiet).run()
