"""GPU pre-processing in the TensorRT detector, on CPU: the fake CUDA memory runs each kernel launch as the CPU
letterbox after checking its arguments, so the path, the geometry, the buffers and the fallbacks are all tested.

Plumbing tests: the kernel itself is checked on a GPU by scripts/check_preprocess_kernel.py, not here."""

import argparse

import cv2
import numpy as np
import pytest

from jetson_detect.backends import tensorrt_backend
from jetson_detect.backends.gpu_preprocess import GpuPreprocessor, compile_preprocess_kernel
from jetson_detect.commands.build import add_tensorrt_arguments, tensorrt_options
from jetson_detect.errors import JetsonDetectError
from jetson_detect.math.letterbox import letterbox, letterbox_geometry, to_network_input
from jetson_detect.model.blocks import BuildOptions

from conftest import PT
from trt_doubles import FakeCudaMemory, install, use_fake_cuda

SIZE = 160


def detector(monkeypatch, tmp_path, fail_compile=None, messages=None, **kwargs):
    fake = install(monkeypatch, "10")
    fake.memory.fail_compile = fail_compile
    use_fake_cuda(monkeypatch, fake)
    log = messages.append if messages is not None else (lambda m: None)
    det = tensorrt_backend.create_tensorrt_detector(str(PT), BuildOptions(input_h=SIZE, input_w=SIZE, batch=1),
                                                    precision="fp32", engine_path=str(tmp_path / "m.engine"),
                                                    log=log, **kwargs)
    return fake, det


def cpu_input(image, size):
    return to_network_input(letterbox(image, size, lambda img, wh: cv2.resize(img, wh,
                                                                                interpolation=cv2.INTER_LINEAR))[0])[0]


def same(a, b):
    return all(np.array_equal(x.boxes, y.boxes) and np.array_equal(x.scores, y.scores)
               and np.array_equal(x.class_ids, y.class_ids) for x, y in zip(a, b)) and len(a) == len(b)


def test_detect_uploads_the_raw_frame_and_launches_the_kernel_before_the_engine(monkeypatch, tmp_path, images):
    fake, det = detector(monkeypatch, tmp_path)
    assert det.gpu_preprocess is True and fake.memory.compiled == ["letterbox_preprocess"]
    fake.memory.log.clear()
    det.detect(images[0])
    assert fake.memory.log[:4] == [("htod", 7000), ("launch", 7000), ("execute", 7000), ("dtoh", 7000)]


def test_gpu_and_cpu_preprocessing_give_the_same_detections(monkeypatch, tmp_path, images):
    _, gpu = detector(monkeypatch, tmp_path)
    _, cpu = detector(monkeypatch, tmp_path, cpu_preprocess=True)
    frames = [images[0], images[1], images[0][100:400, 50:600]]  # the crop is a strided view
    gpu_dets = gpu.detect_batch(frames)
    assert len(gpu_dets[0]) > 0 and same(gpu_dets, cpu.detect_batch(frames))
    assert same(list(gpu.detect_stream(iter(frames))), gpu_dets)


def test_kernel_is_compiled_once_for_both_streams(monkeypatch, tmp_path, images):
    fake, det = detector(monkeypatch, tmp_path, streams=2)
    det.detect_batch(images * 2)
    assert fake.memory.compiled == ["letterbox_preprocess"]
    assert {entry for entry in fake.memory.log if entry[0] == "launch"} == {("launch", 7000), ("launch", 7001)}


def test_frames_land_in_their_batch_item_with_the_cpu_letterbox_and_geometry(images):
    memory = FakeCudaMemory()
    with memory.activate():
        pre = GpuPreprocessor(memory, compile_preprocess_kernel(memory), SIZE, batch=2)
        plane = 3 * SIZE * SIZE
        sentinel = np.full(2 * plane + 1, -1.0, np.float32)
        ptr = memory.device_alloc(sentinel.nbytes)
        memory.write(ptr, sentinel)
        stream = memory.stream_create()
        geometries = [pre.preprocess_into(images[1], ptr, 1, stream), pre.preprocess_into(images[0], ptr, 0, stream)]
        out = memory.read(ptr, (2 * plane + 1,), np.float32)
    assert geometries == [letterbox_geometry(720, 1280, SIZE), letterbox_geometry(1080, 810, SIZE)]
    np.testing.assert_array_equal(out[:plane].reshape(3, SIZE, SIZE), cpu_input(images[0], SIZE))
    np.testing.assert_array_equal(out[plane:2 * plane].reshape(3, SIZE, SIZE), cpu_input(images[1], SIZE))
    assert out[-1] == -1.0  # nothing written past the batch


def test_raw_frame_buffers_grow_for_bigger_frames_only(images):
    memory = FakeCudaMemory()
    small, big = images[1][:300, :400], images[1]
    with memory.activate():
        pre = GpuPreprocessor(memory, compile_preprocess_kernel(memory), SIZE, batch=1)
        ptr = memory.device_alloc(3 * SIZE * SIZE * 4)
        stream = memory.stream_create()
        counts = []
        for frame in (small, small, big, small, big):
            pre.preprocess_into(frame, ptr, 0, stream)
            counts.append(len(memory.buffers))
    assert counts == [2, 2, 2, 2, 2]  # the input and one raw-frame buffer
    assert memory.freed == [small.nbytes, small.nbytes]  # once: the pinned and the device buffer of the small frame


def test_compile_failure_falls_back_to_the_cpu_with_one_log_line(monkeypatch, tmp_path, images):
    messages = []
    fake, det = detector(monkeypatch, tmp_path, fail_compile="error: identifier \"fminf\" is undefined",
                         messages=messages)
    assert det.gpu_preprocess is False
    assert messages[-1] == ("pre-processing: on the CPU, since the GPU kernel is unavailable: letterbox_preprocess.cu: "
                            "NVRTC could not compile it for sm_86: error: identifier \"fminf\" is undefined")
    fake.memory.log.clear()
    _, cpu = detector(monkeypatch, tmp_path, cpu_preprocess=True)
    assert same(det.detect_batch(images), cpu.detect_batch(images))
    assert [entry for entry in fake.memory.log if entry[0] == "launch"] == []


def test_cpu_preprocess_switch_skips_the_kernel_silently(monkeypatch, tmp_path, images):
    messages = []
    fake, det = detector(monkeypatch, tmp_path, cpu_preprocess=True, messages=messages)
    det.detect(images[0])
    assert det.gpu_preprocess is False and fake.memory.compiled == []
    assert [entry for entry in fake.memory.log if entry[0] == "launch"] == []
    assert not any("pre-processing" in m for m in messages)


def test_cpu_preprocess_flag_reaches_the_detector_options():
    parser = argparse.ArgumentParser()
    add_tensorrt_arguments(parser)
    assert tensorrt_options(parser.parse_args([]))["cpu_preprocess"] is False
    assert tensorrt_options(parser.parse_args(["--cpu-preprocess"]))["cpu_preprocess"] is True


def test_a_frame_that_is_not_bgr_uint8_is_a_clear_error(monkeypatch, tmp_path):
    _, det = detector(monkeypatch, tmp_path)
    with pytest.raises(JetsonDetectError, match=r"^frame is not a BGR uint8 image \(shape \(20, 30\), uint8\)$"):
        det.detect(np.zeros((20, 30), np.uint8))
    with pytest.raises(JetsonDetectError, match=r"^frame is not a BGR uint8 image \(shape \(20, 30, 3\), float32\)"):
        det.detect(np.zeros((20, 30, 3), np.float32))


def test_a_bad_frame_in_a_batch_leaves_the_detector_usable(monkeypatch, tmp_path, images):
    _, det = detector(monkeypatch, tmp_path, streams=2)
    with pytest.raises(JetsonDetectError, match=r"^frame is not a BGR uint8 image"):
        det.detect_batch([images[0], images[1], np.zeros((5, 5), np.uint8)])
    assert same(det.detect_batch(images), det.detect_batch(images[::-1])[::-1])


def test_an_engine_with_a_float16_input_keeps_the_cpu_letterbox(monkeypatch, tmp_path):
    fake, det = detector(monkeypatch, tmp_path, cpu_preprocess=True)
    det.runner.input = det.runner.input._replace(dtype=np.dtype(np.float16))
    messages = []
    gpu = tensorrt_backend.TensorRTDetector(det.runner, det.spec, det.options, log=messages.append)
    assert gpu.gpu_preprocess is False and fake.memory.compiled == []
    assert messages == ["pre-processing: on the CPU, since the engine's input is float16 and the GPU kernel writes "
                        "float32"]
