"""CUDA memory implementations and the TensorRT runner on a real GPU (skipped without one).

TensorRT itself is absent here too: the engine double's ``execute_async_v3`` enqueues real device-to-device copies
of fixed plugin outputs on the stream it is given, so pinned buffers, async copies, streams, events, the two-slot
pipeline and the thread context handling all run for real. Needs cuda-python (for the double) and a GPU; the
pycuda case also needs pycuda.
"""

import threading

import numpy as np
import pytest
from copy_engine import TRT, CopyEngine, cuda_runtime

from jetson_detect.backends.tensorrt_backend import TensorRTDetector, TrtRunner
from jetson_detect.model.blocks import BuildOptions
from jetson_detect.model.spec import ModelSpec

K = 5
TENSORS = [("images", "in", (2, 3, 64, 64), np.float32), ("num_detections", "out", (2, 1), np.int32),
           ("boxes", "out", (2, K, 4), np.float32), ("scores", "out", (2, K), np.float32),
           ("classes", "out", (2, K), np.int32)]
OUTPUTS = {
    "num_detections": np.array([[2], [1]], np.int32),
    "boxes": np.tile(np.array([10, 20, 30, 40], np.float32), (2, K, 1)) * np.arange(1, K + 1, dtype=np.float32)[
        None, :, None],
    "scores": np.tile(np.linspace(0.9, 0.5, K, dtype=np.float32), (2, 1)),
    "classes": np.tile(np.arange(K, dtype=np.int32), (2, 1)),
}


@pytest.fixture
def memory(cuda_memory):
    try:
        cuda_runtime()  # the engine double copies with cuda-python, whichever implementation is under test
    except ImportError:
        pytest.skip("cuda-python is not installed (the engine double copies with it)")
    return cuda_memory


def Engine(memory):
    """The copy-engine double with this module's tensors, its fixed outputs uploaded through ``memory``."""
    def upload(value):
        ptr = memory.device_alloc(value.nbytes)
        memory.copy_htod(ptr, value)
        return ptr
    with memory.activate():
        return CopyEngine(TENSORS, OUTPUTS, upload)


def test_pinned_round_trip_through_the_device_with_event_timing(memory):
    with memory.activate():
        host = memory.pinned_empty((4, 1000), np.float32)
        host[:] = np.arange(4000, dtype=np.float32).reshape(4, 1000)
        back = memory.pinned_empty((4, 1000), np.float32)
        device = memory.device_alloc(host.nbytes)
        stream = memory.stream_create()
        start, end = memory.event_create(), memory.event_create()
        memory.event_record(start, stream)
        memory.copy_htod_async(device, host, stream)
        memory.copy_dtoh_async(back, device, stream)
        memory.event_record(end, stream)
        memory.stream_synchronize(stream)
        np.testing.assert_array_equal(back, host)
        assert memory.event_elapsed_ms(start, end) >= 0.0
        assert isinstance(memory.stream_handle(stream), int) and memory.stream_handle(stream) != 0


def test_device_data_is_visible_from_another_thread(memory):
    with memory.activate():
        device = memory.device_alloc(4000)
        memory.copy_htod(device, np.full(1000, 7, np.float32))
    seen = []

    def worker():
        with memory.activate():
            stream = memory.stream_create()
            back = memory.pinned_empty((1000,), np.float32)
            memory.copy_dtoh_async(back, device, stream)
            memory.stream_synchronize(stream)
            seen.append(bool((back == 7).all()))
            del stream

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [True]


@pytest.mark.parametrize("streams", [2, 1])
def test_runner_and_detector_on_real_streams(memory, streams):
    runner = TrtRunner(Engine(memory), memory, TRT, streams=streams)
    spec = ModelSpec((), K, (((10.0, 13.0),),), (8.0,), 0.0, 0.0, tuple("c{}".format(i) for i in range(K)))
    detector = TensorRTDetector(runner, spec, BuildOptions(input_h=64, input_w=64, batch=2))
    images = [np.full((48 + 8 * i, 80, 3), 10 * i, np.uint8) for i in range(7)]
    dets = detector.detect_batch(images)
    assert [len(d) for d in dets] == [2, 1, 2, 1, 2, 1, 2]
    np.testing.assert_array_equal(dets[0].scores, OUTPUTS["scores"][0, :2])
    streamed = list(detector.detect_stream(iter(images)))
    assert all(np.array_equal(a.boxes, b.boxes) for a, b in zip(dets, streamed))
    assert [len(d) for d in detector.infer(np.zeros((3, 3, 64, 64), np.float32))] == [2, 1, 2]
    np.testing.assert_array_equal(detector.infer(np.zeros((1, 3, 64, 64), np.float32))[0].boxes,
                                  OUTPUTS["boxes"][0, :2])
    assert detector.last_gpu_ms is not None and detector.last_gpu_ms >= 0.0
    runner.close()
