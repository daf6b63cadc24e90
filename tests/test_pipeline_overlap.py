"""The infer stage overlaps frames as the two-stream TensorRT runner allows: frame N+1 is uploaded and enqueued
before frame N is synchronised, and one stream gives strict alternation (issue 11 item 6).

A plumbing test: the engine double stands for TensorRT's runner (slots = CUDA streams, a busy slot refuses a
second submit as ``TrtRunner.submit`` does); it records the order of stream operations the real Pipeline causes.
"""

import numpy as np

from jetson_detect.app.pipeline import Pipeline
from jetson_detect.math.nms import Detections
from jetson_detect.video.sources import FrameSource

FRAMES = 6


class ListSource(FrameSource):
    name = "list://frames"

    def __init__(self, count):
        self.frames = [np.full((48, 64, 3), value, np.uint8) for value in range(count)]

    def read(self):
        return self.frames.pop(0) if self.frames else None


class RecordingRunner(object):
    """One slot per stream; every operation on a slot's stream is logged."""

    def __init__(self, streams):
        self.slots = [None] * streams
        self.next_slot = 0
        self.operations = []

    def submit(self, frame_id):
        slot = self.next_slot
        if self.slots[slot] is not None:
            raise RuntimeError("slot still in flight: collect it before submitting more")
        self.slots[slot] = frame_id
        self.next_slot = (slot + 1) % len(self.slots)
        self.operations += ["upload({})".format(frame_id), "enqueue({})".format(frame_id)]
        return slot

    def sync(self, slot):
        frame_id, self.slots[slot] = self.slots[slot], None
        self.operations.append("sync({})".format(frame_id))
        return frame_id


class EngineLikeDetector(object):
    """``submit(frame)``/``collect(handle)`` over the runner; GPU pre-processing, so no CPU stage."""

    names = ["fire", "smoke", "person"]
    batch_size = 1
    gpu_preprocess = True

    def __init__(self, streams):
        self.runner = RecordingRunner(streams)

    def submit(self, frame_bgr):
        return self.runner.submit(int(frame_bgr[0, 0, 0]))

    def collect(self, handle):
        frame_id = self.runner.sync(handle)
        return Detections(np.array([[0, 0, 8, 8]], np.float32), np.array([0.9], np.float32),
                          np.array([frame_id % 3], np.int32))

    def detect(self, frame_bgr):
        raise AssertionError("the loop must use submit/collect when the detector has them")


def run(streams):
    detector = EngineLikeDetector(streams)
    seen = []
    Pipeline(detector, ListSource(FRAMES), [], note=lambda message: None,
             observers=[lambda frame, detections, index, stats: seen.append((index, int(detections.class_ids[0])))]
             ).run()
    return detector.runner.operations, seen


def test_two_streams_upload_frame_n_plus_1_before_frame_n_is_synchronised():
    operations, seen = run(streams=2)
    expected = ["upload(0)", "enqueue(0)"]
    for n in range(1, FRAMES):
        expected += ["upload({})".format(n), "enqueue({})".format(n), "sync({})".format(n - 1)]
    expected.append("sync({})".format(FRAMES - 1))
    assert operations == expected
    assert seen == [(n, n % 3) for n in range(FRAMES)]  # every frame, in order, with its own detections


def test_one_stream_strictly_alternates_upload_and_sync():
    operations, seen = run(streams=1)
    assert operations == [op for n in range(FRAMES) for op in ("upload({})".format(n), "enqueue({})".format(n),
                                                                "sync({})".format(n))]
    assert seen == [(n, n % 3) for n in range(FRAMES)]
