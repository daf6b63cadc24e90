"""The detector's two-phase API for the loop: ``submit(frame) -> handle``, ``collect(handle) -> Detections``.

The engine double records every stream operation, so the order of uploads, kernels, engine runs and waits is
visible: with two streams frame N+1 is uploaded, pre-processed and enqueued before frame N's stream is waited for;
with one stream they strictly alternate. Plumbing tests: they show the order our code issues the operations in,
not that a GPU overlaps them.
"""

import numpy as np
import pytest

from jetson_detect.backends import detector as detector_module
from jetson_detect.backends import tensorrt_backend
from jetson_detect.errors import JetsonDetectError
from jetson_detect.model.blocks import BuildOptions

from conftest import PT
from trt_doubles import install, use_fake_cuda

SIZE = 96
STREAM_OPS = ("htod", "launch", "execute", "dtoh", "sync")


def open_detector(monkeypatch, tmp_path, streams=2, **kwargs):
    fake = install(monkeypatch, "10.16.0")
    use_fake_cuda(monkeypatch, fake)
    det = tensorrt_backend.create_tensorrt_detector(str(PT), BuildOptions(input_h=SIZE, input_w=SIZE),
                                                    precision="fp32", engine_path=str(tmp_path / "m.engine"),
                                                    log=lambda m: None, streams=streams, **kwargs)
    fake.memory.log.clear()
    return fake, det


def ops(fake):
    return [entry for entry in fake.memory.log if entry[0] in STREAM_OPS]


def frame_ops(stream, gpu_preprocess=True):
    """One frame on one stream: upload, kernel, engine, then the four plugin outputs back."""
    return [("htod", stream)] + [("launch", stream)] * gpu_preprocess + [("execute", stream)] + [("dtoh", stream)] * 4


def assert_same(a, b):
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)


def test_two_streams_submit_the_next_frame_before_waiting_for_this_one(monkeypatch, tmp_path, images):
    fake, det = open_detector(monkeypatch, tmp_path, streams=2)
    assert det.max_in_flight == 2
    first = det.submit(images[0])
    second = det.submit(images[1])
    got_first = det.collect(first)
    third = det.submit(images[0])
    got_second, got_third = det.collect(second), det.collect(third)
    assert ops(fake) == (frame_ops(7000) + frame_ops(7001) + [("sync", 7000)] + frame_ops(7000)
                         + [("sync", 7001), ("sync", 7000)])
    expected = det.detect_batch([images[0], images[1]])
    assert len(got_first) > 0
    for got, want in zip((got_first, got_second, got_third), expected + expected[:1]):
        assert_same(got, want)


def test_one_stream_alternates_strictly(monkeypatch, tmp_path, images):
    fake, det = open_detector(monkeypatch, tmp_path, streams=1)
    assert det.max_in_flight == 1
    for image in images:
        det.collect(det.submit(image))
    assert ops(fake) == (frame_ops(7000) + [("sync", 7000)]) * 2
    det.submit(images[0])
    with pytest.raises(RuntimeError, match=r"^submit: 1 frame\(s\) already in flight, collect one first$"):
        det.submit(images[1])


def test_cpu_preprocessing_keeps_the_same_order(monkeypatch, tmp_path, images):
    fake, det = open_detector(monkeypatch, tmp_path, streams=2, cpu_preprocess=True)
    handles = [det.submit(images[0]), det.submit(images[1])]
    results = [det.collect(h) for h in handles]
    assert ops(fake) == frame_ops(7000, False) + frame_ops(7001, False) + [("sync", 7000), ("sync", 7001)]
    for got, want in zip(results, det.detect_batch(images)):
        assert_same(got, want)


def test_handles_are_collected_in_submit_order_once(monkeypatch, tmp_path, images):
    _, det = open_detector(monkeypatch, tmp_path)
    first, second = det.submit(images[0]), det.submit(images[1])
    with pytest.raises(RuntimeError, match="in the order they were submitted"):
        det.collect(second)
    det.collect(first)
    with pytest.raises(RuntimeError, match="in the order they were submitted"):
        det.collect(first)


def test_a_bad_frame_leaves_nothing_in_flight(monkeypatch, tmp_path, images):
    _, det = open_detector(monkeypatch, tmp_path, streams=1)
    with pytest.raises(JetsonDetectError, match="frame is not a BGR uint8 image"):
        det.submit(np.zeros((4, 4), np.uint8))
    assert_same(det.collect(det.submit(images[0])), det.detect(images[0]))


def test_the_base_class_default_detects_at_submit(images):
    calls = []

    class Recorder(detector_module.Detector):
        def __init__(self):
            pass

        def detect(self, image_bgr):
            calls.append(image_bgr.shape)
            return "detections of {}".format(image_bgr.shape)

    det = Recorder()
    first, second = det.submit(images[0]), det.submit(images[1])
    assert calls == [images[0].shape, images[1].shape]
    assert (det.collect(first), det.collect(second)) == ("detections of {}".format(images[0].shape),
                                                         "detections of {}".format(images[1].shape))
