"""The staged loop with a fake detector: order, corrupt frames, observers, stopping, throughput, reconnects, CLI."""

import argparse
import json
import signal
import threading
import time

import cv2
import numpy as np
import pytest

from jetson_detect.app.pipeline import (
    Pipeline,
    StopSignals,
    add_live_arguments,
    run_pipeline,
    sources_from_args,
)
from jetson_detect.errors import JetsonDetectError
from jetson_detect.math.letterbox import letterbox, to_network_input
from jetson_detect.math.nms import Detections
from jetson_detect.video.draw import overlay_lines
from jetson_detect.video.sinks import JsonlSink, Sink
from jetson_detect.video.sources import FrameSource, open_source


class FakeDetector(object):
    """The Detector interface of common.md: one box covering the whole 320×320 input, class = frame's blue value."""

    names = ["fire", "smoke", "person"]
    input_size = 320
    backend_name = "fake"

    def __init__(self, preprocess_s=0.0, infer_s=0.0, fail_on_value=None):
        self.preprocess_s = preprocess_s
        self.infer_s = infer_s
        self.fail_on_value = fail_on_value

    def preprocess(self, image_bgr):
        time.sleep(self.preprocess_s)
        if self.fail_on_value is not None and image_bgr[0, 0, 0] == self.fail_on_value:
            raise ValueError("cannot decode this frame")
        padded, geometry = letterbox(image_bgr, self.input_size, cv2.resize)
        return to_network_input(padded), geometry

    def infer(self, batch):
        time.sleep(self.infer_s)
        value = batch[0, 2, 160, 160] * 255  # blue channel at the centre
        class_id = int(round(value)) % 3
        return [Detections(np.array([[0, 40, 320, 280]], np.float32), np.array([0.8], np.float32),
                           np.array([class_id], np.int32))]


class ListSource(FrameSource):
    """Serves the given frames (any objects: corrupt ones included), then ends; live or file-like."""

    def __init__(self, frames, live=False, delay_s=0.0):
        self.name = "list://test"
        self.frames = list(frames)
        self.live = live
        self.delay_s = delay_s
        self.closed = False

    def read(self):
        time.sleep(self.delay_s)
        return self.frames.pop(0) if self.frames else None

    def close(self):
        self.closed = True


class EndlessLiveSource(FrameSource):
    """A camera that never ends; every ``fail_every`` frames the connection drops."""

    live = True

    def __init__(self, fail_every=None):
        self.name = "endless://0"
        self.fail_every = fail_every
        self.count = 0
        self.opens = 0

    def open(self):
        self.opens += 1

    def read(self):
        time.sleep(0.005)
        self.count += 1
        if self.fail_every and self.count % self.fail_every == 0:
            return None
        return np.full((240, 320, 3), 1, np.uint8)


class RecordingSink(Sink):
    def __init__(self, delay_s=0.0):
        self.name = "recording"
        self.results = []
        self.closed = False
        self.delay_s = delay_s

    def write(self, result):
        time.sleep(self.delay_s)
        self.results.append(result)

    def close(self):
        self.closed = True


def frames_with_values(values, shape=(480, 640, 3)):
    return [np.full(shape, v, np.uint8) for v in values]


def quiet(_message):
    pass


def test_every_file_frame_reaches_the_sinks_in_order():
    sink = RecordingSink()
    Pipeline(FakeDetector(), ListSource(frames_with_values(range(12))), [sink], note=quiet).run()
    assert [r.position for r in sink.results] == list(range(12))
    assert [int(r.detections.class_ids[0]) for r in sink.results] == [v % 3 for v in range(12)]
    assert sink.closed


def test_boxes_come_back_in_original_image_pixels():
    sink = RecordingSink()
    Pipeline(FakeDetector(), ListSource(frames_with_values([0])), [sink], note=quiet).run()
    # 640x480 → 320x240 at scale 0.5, padded by 40 rows on top: the input box (0,40)-(320,280) is the whole frame
    np.testing.assert_allclose(sink.results[0].detections.boxes, [[0, 0, 640, 480]])


def test_a_corrupt_frame_is_skipped_and_the_loop_goes_on():
    notes = []
    frames = frames_with_values([0, 1]) + [np.zeros((0, 0, 3), np.uint8), "garbage"] + frames_with_values([2])
    sink = RecordingSink()
    pipeline = Pipeline(FakeDetector(), ListSource(frames), [sink], note=notes.append)
    summary = pipeline.run()
    assert [r.position for r in sink.results] == [0, 1, 4]
    assert summary["corrupt"] == 2
    assert "source list://test: frame 2 is corrupt; skipped" in notes


def test_a_frame_the_detector_cannot_handle_is_skipped_and_the_loop_goes_on():
    notes = []
    sink = RecordingSink()
    summary = Pipeline(FakeDetector(fail_on_value=7), ListSource(frames_with_values([5, 7, 9])), [sink],
                       note=notes.append).run()
    assert [r.position for r in sink.results] == [0, 2]
    assert summary["skipped"] == 1
    assert "preprocess: frame 1 of list://test skipped: ValueError: cannot decode this frame" in notes


def test_a_detector_failing_on_every_frame_stops_the_run_with_its_error():
    with pytest.raises(ValueError, match="cannot decode"):
        Pipeline(FakeDetector(fail_on_value=3), ListSource(frames_with_values([3] * 40)), [RecordingSink()],
                 note=quiet).run()


def test_observers_see_every_frame_with_its_detections_index_and_stats():
    seen = []

    def observer(frame_bgr, detections, frame_index, stats):
        seen.append((frame_bgr.shape, int(detections.class_ids[0]), frame_index, stats["frames"]))

    Pipeline(FakeDetector(), ListSource(frames_with_values([1, 2])), [], observers=[observer], note=quiet).run()
    assert seen == [((480, 640, 3), 1, 0, 0), ((480, 640, 3), 2, 1, 1)]


def test_a_failing_observer_is_reported_once_and_the_loop_goes_on():
    notes = []
    sink = RecordingSink()

    def broken(*_args):
        raise RuntimeError("hook down")

    Pipeline(FakeDetector(), ListSource(frames_with_values([1, 2, 3])), [sink], observers=[broken],
             note=notes.append).run()
    assert len(sink.results) == 3
    assert sum("hook down" in n for n in notes) == 1


def test_throughput_is_set_by_the_slowest_stage_not_the_sum():
    frames = 30
    sink = RecordingSink(delay_s=0.02)
    detector = FakeDetector(preprocess_s=0.02, infer_s=0.02)
    start = time.monotonic()
    Pipeline(detector, ListSource(frames_with_values([0] * frames, shape=(240, 320, 3))), [sink], note=quiet).run()
    elapsed = time.monotonic() - start
    assert len(sink.results) == frames
    assert elapsed < frames * 0.06 * 0.65  # sequential would take 30 × 60 ms = 1.8 s; staged ≈ 30 × 20 ms


def test_stats_report_each_stage_and_end_to_end_figures():
    summary = Pipeline(FakeDetector(infer_s=0.01), ListSource(frames_with_values([0] * 10)), [RecordingSink()],
                       note=quiet).run()
    assert summary["frames"] == 10
    assert list(summary["mean_stage_ms"]) == ["preprocess", "infer", "output"]
    assert summary["mean_stage_ms"]["infer"] >= 10
    assert summary["mean_fps"] > 0 and summary["latency_ms"] >= 10


def test_stop_ends_a_live_run_quickly_and_closes_the_outputs():
    sink = RecordingSink()
    pipeline = Pipeline(FakeDetector(), EndlessLiveSource(), [sink], note=quiet)
    threading.Timer(0.5, pipeline.stop).start()
    start = time.monotonic()
    pipeline.run()
    assert time.monotonic() - start < 0.5 + 2.0
    assert sink.closed and len(sink.results) > 0


def test_a_live_source_failing_mid_stream_is_reconnected_and_the_run_goes_on():
    notes = []
    source = EndlessLiveSource(fail_every=6)
    summary = Pipeline(FakeDetector(), source, [RecordingSink()], note=notes.append, max_frames=15,
                       reconnect_backoff_s=0.01).run()
    assert summary["frames"] == 15
    assert summary["reconnects"] >= 2 and source.opens >= 3
    assert "source endless://0: reconnected" in notes


def test_run_pipeline_writes_the_jsonl_log_alongside_other_outputs(tmp_path):
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    for i in range(3):
        cv2.imwrite(str(image_dir / "img{}.png".format(i)), np.full((64, 96, 3), i, np.uint8))
    log = tmp_path / "dets.jsonl"
    summary = run_pipeline(FakeDetector(), str(image_dir), [str(tmp_path / "annotated")], jsonl_path=str(log),
                           note=quiet)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["source"], r["frame"], r["width"], r["height"]) for r in records] == [
        ("img{}.png".format(i), i, 96, 64) for i in range(3)]
    assert [r["detections"][0]["class_name"] for r in records] == ["fire", "smoke", "person"]
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == ["img0.png", "img1.png", "img2.png"]
    assert summary["frames"] == 3


def test_jsonl_only_runs_skip_drawing(tmp_path):
    sink = JsonlSink(str(tmp_path / "d.jsonl"))
    assert Pipeline(FakeDetector(), ListSource([]), [sink], note=quiet).draw is False
    assert Pipeline(FakeDetector(), ListSource([]), [sink, RecordingSink()], note=quiet).draw is True
    sink.close()


def test_signal_handlers_stop_the_pipeline_and_are_restored_afterwards():
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    signals = StopSignals().install()
    notes = []
    pipeline = Pipeline(FakeDetector(), EndlessLiveSource(), [], note=notes.append, signals=signals)
    signal.raise_signal(signal.SIGTERM)
    assert pipeline.stop_requested and notes == []  # the handler only sets a flag: no printing, no locks
    assert signal.getsignal(signal.SIGTERM) is before[signal.SIGTERM]  # a second SIGTERM would not wait
    start = time.monotonic()
    pipeline.run()  # the loop sees the flag, says so and stops
    assert time.monotonic() - start < 2.0
    assert notes == ["SIGTERM received; stopping (send it again to force)"]
    signals.restore()
    assert {signum: signal.getsignal(signum) for signum in before} == before
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_live_arguments_parse_camera_outputs_and_token():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source")
    add_live_arguments(parser)
    args = parser.parse_args(["--camera", "1", "--output", "http://0.0.0.0:8080", "--output", "out.mp4",
                              "--http-token", "t0k"])
    assert (args.camera, args.outputs, args.http_token) == ([1], ["http://0.0.0.0:8080", "out.mp4"], "t0k")
    assert sources_from_args(args) == ["1"]


def test_camera_and_source_together_are_refused():
    args = argparse.Namespace(camera=0, source="video.mp4")
    with pytest.raises(JetsonDetectError, match="either --camera N or --source URI"):
        sources_from_args(args)


def test_a_source_that_cannot_open_raises_a_user_error_and_closes_the_outputs(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    sink = RecordingSink()
    with pytest.raises(JetsonDetectError, match="cannot open source"):
        Pipeline(FakeDetector(), open_source(str(broken)), [sink], note=quiet).run()
    assert sink.closed


def test_extra_stats_such_as_telemetry_reach_every_sink_and_the_overlay():
    sink = RecordingSink()
    extra = {"telemetry_line": "GPU 40% CPU 12%", "alarms": {"fire": "raised"}}
    Pipeline(FakeDetector(), ListSource(frames_with_values([1, 2])), [sink], note=quiet,
             extra_stats=lambda: dict(extra)).run()
    assert [r.stats["telemetry_line"] for r in sink.results] == ["GPU 40% CPU 12%"] * 2
    assert sink.results[0].stats["alarms"] == {"fire": "raised"}
    assert "GPU 40% CPU 12%" in overlay_lines(sink.results[0].stats)


def test_failing_extra_stats_never_stop_detection():
    sink = RecordingSink()
    notes = []

    def broken():
        raise OSError("jtop went away")

    summary = Pipeline(FakeDetector(), ListSource(frames_with_values([1, 2, 3])), [sink], note=notes.append,
                       extra_stats=broken).run()
    assert summary["frames"] == 3 and len(sink.results) == 3
    assert len([n for n in notes if "jtop went away" in n]) == 1


class GpuLetterboxDetector(FakeDetector):
    """Stands for the TensorRT detector with GPU pre-processing: its letterbox happens inside detect()."""

    gpu_preprocess = True

    def __init__(self):
        super().__init__()
        self.detect_calls = 0

    def preprocess(self, image):
        raise AssertionError("the CPU pre-processing stage must not run for a GPU-letterboxing detector")

    def detect(self, image):
        self.detect_calls += 1
        batch, _ = FakeDetector.preprocess(self, image)
        return self.infer(batch)[0]


def test_a_detector_that_letterboxes_on_the_gpu_skips_the_cpu_stage():
    detector = GpuLetterboxDetector()
    sink = RecordingSink()
    Pipeline(detector, ListSource(frames_with_values([1, 2, 3])), [sink], note=quiet).run()
    assert detector.detect_calls == 3 and len(sink.results) == 3


def test_camera_or_source_given_several_times_makes_one_camera_each():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", action="append")
    add_live_arguments(parser)
    assert sources_from_args(parser.parse_args(["--camera", "0", "--camera", "2"])) == ["0", "2"]
    assert sources_from_args(parser.parse_args(["--source", "a.mp4", "--source", "rtsp://cam/b"])) == [
        "a.mp4", "rtsp://cam/b"]
