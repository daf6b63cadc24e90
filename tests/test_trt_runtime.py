"""The TensorRT runtime path on CPU: buffers, bindings vs tensor addresses, two streams, batches, bad engines.

Plumbing tests: the engine double runs the CPU twin's own network with ONNX Runtime, so "detections equal the CPU
backend's" checks our runtime code around TensorRT (bindings, buffers, copies, output splitting), not TensorRT.
"""

import json
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from jetson_detect.backends import engine_cache, tensorrt_backend, trt_compat
from jetson_detect.backends import onnx_network as twin
from jetson_detect.backends.onnxruntime_backend import OnnxRuntimeEngine
from jetson_detect.backends.tensorrt_builder import load_model
from jetson_detect.errors import JetsonDetectError
from jetson_detect.math.boxes import scale_boxes_to_original
from jetson_detect.model.blocks import BuildOptions
from jetson_detect.model.network import build_network

from conftest import PT
from trt_doubles import install, use_fake_cuda

SIZE = 160


@pytest.fixture(scope="module")
def cpu_reference(images):
    """Detections of the same network run directly by ONNX Runtime, mapped to original pixels."""
    spec, weights = load_model(str(PT))
    network = twin.OnnxNetwork()
    build_network(spec, weights, network, twin, BuildOptions(input_h=SIZE, input_w=SIZE, batch=1), compat=trt_compat)
    engine = OnnxRuntimeEngine(network, threads=1)
    from jetson_detect.math.letterbox import letterbox, to_network_input
    out = []
    for image in images:
        boxed, geometry = letterbox(image, SIZE, resize=cv2.resize)
        values = engine.run(to_network_input(boxed))
        n = int(values["num_detections"][0, 0])
        out.append((scale_boxes_to_original(values["boxes"][0, :n], geometry, *image.shape[:2]),
                    values["scores"][0, :n], values["classes"][0, :n]))
    return out


def options(batch=1):
    return BuildOptions(input_h=SIZE, input_w=SIZE, batch=batch)


def detector(monkeypatch, tmp_path, style, precision="fp32", batch=1, **kwargs):
    fake = install(monkeypatch, style)
    use_fake_cuda(monkeypatch, fake)
    det = tensorrt_backend.create_tensorrt_detector(str(PT), options(batch), precision=precision,
                                                    engine_path=str(tmp_path / "m.engine"), log=lambda m: None,
                                                    **kwargs)
    return fake, det


def assert_same(dets, reference):
    for d, (boxes, scores, classes) in zip(dets, reference):
        np.testing.assert_array_equal(d.boxes, boxes)
        np.testing.assert_array_equal(d.scores, scores)
        np.testing.assert_array_equal(d.class_ids, classes)


@pytest.mark.parametrize("style", ["8.0.1", "8.2.1", "10.16.0", "11.1.0"])
def test_detections_equal_the_network_run_directly(monkeypatch, tmp_path, images, cpu_reference, style):
    _, det = detector(monkeypatch, tmp_path, style)
    dets = det.detect_batch(images)
    assert len(dets) == 2 and len(dets[0]) > 0
    assert_same(dets, cpu_reference)
    assert det.names[int(dets[0].class_ids[0])] in ("person", "bus")


def test_detector_interface_matches_the_cpu_detector(monkeypatch, tmp_path, images):
    _, det = detector(monkeypatch, tmp_path, "10")
    assert (det.backend_name, det.input_size, len(det.names), det.names[0]) == ("tensorrt", SIZE, 80, "person")
    tensor, geometry = det.preprocess(images[0])
    assert tensor.shape == (1, 3, SIZE, SIZE) and tensor.dtype == np.float32
    assert geometry.size == SIZE
    assert len(det.infer(tensor)) == 1
    assert det.detect(images[0]).boxes.dtype == np.float32
    assert det.last_gpu_ms == 1.0  # from the two events around the execution


@pytest.mark.parametrize("style, call", [("8.0.1", "execute_async_v2"), ("8.2.1", "execute_async_v2"),
                                         ("10.16.0", "execute_async_v3"), ("11.1.0", "execute_async_v3")])
def test_the_versions_execute_call_is_used(monkeypatch, tmp_path, images, style, call):
    fake, det = detector(monkeypatch, tmp_path, style)
    det.detect(images[0])
    calls = [c for context in fake.contexts for c in context.target.calls]
    assert [c[0] for c in calls] == [call]


def test_two_streams_overlap_the_copy_of_the_next_batch_with_the_current_one(monkeypatch, tmp_path, images):
    fake, det = detector(monkeypatch, tmp_path, "10", streams=2)
    fake.memory.log.clear()
    det.detect_batch([images[0], images[1], images[0], images[1]])
    log = [entry for entry in fake.memory.log if entry[0] in ("htod", "execute", "sync")]
    assert [e for e in log if e[0] == "execute"] == [("execute", 7000), ("execute", 7001)] * 2
    # frame 2 is uploaded and enqueued on the second stream before frame 1's stream is waited for
    assert log[:7] == [("htod", 7000), ("execute", 7000), ("htod", 7001), ("execute", 7001), ("sync", 7000),
                       ("htod", 7000), ("execute", 7000)]


def test_one_stream_switch_runs_each_batch_to_completion(monkeypatch, tmp_path, images):
    fake, det = detector(monkeypatch, tmp_path, "10", streams=1)
    fake.memory.log.clear()
    det.detect_batch([images[0], images[1]])
    log = [entry for entry in fake.memory.log if entry[0] in ("htod", "execute", "sync")]
    assert log == [("htod", 7000), ("execute", 7000), ("sync", 7000)] * 2
    assert len(fake.contexts) == 1


def test_batch_engine_runs_frames_together_and_pads_the_last_batch(monkeypatch, tmp_path, images, cpu_reference):
    fake, det = detector(monkeypatch, tmp_path, "10", batch=2)
    dets = det.detect_batch([images[0], images[1], images[0]])
    assert det.batch_size == 2 and len(dets) == 3
    assert_same(dets, cpu_reference + cpu_reference[:1])
    assert sum(len(c.target.calls) for c in fake.contexts) == 2


def test_detect_stream_gives_the_same_detections_in_order(monkeypatch, tmp_path, images, cpu_reference):
    _, det = detector(monkeypatch, tmp_path, "8.2", batch=2)
    assert_same(list(det.detect_stream(iter([images[0], images[1], images[0]]))), cpu_reference + cpu_reference[:1])


def test_inference_on_another_thread_uses_the_context_there(monkeypatch, tmp_path, images, cpu_reference):
    fake, det = detector(monkeypatch, tmp_path, "10")
    results = []
    worker = threading.Thread(target=lambda: results.append(det.detect(images[1])))
    worker.start()
    worker.join()
    assert_same(results, cpu_reference[1:])  # the fake asserts every CUDA call ran with the context current


def test_plugins_are_loaded_before_building_and_before_deserializing(monkeypatch, tmp_path):
    fake, _ = detector(monkeypatch, tmp_path, "10")
    assert fake.plugin_loads == [1, 2]  # each time right after TensorRT's own plugins were initialised


def test_builder_runtime_and_plugins_share_one_logger(monkeypatch, tmp_path):
    fake, _ = detector(monkeypatch, tmp_path, "8.2.1")  # builds, then deserializes
    assert fake.loggers_made == 1 and len(fake.loggers_seen) == 1


def test_close_releases_slots_and_cuda_memory(monkeypatch, tmp_path, images):
    fake, det = detector(monkeypatch, tmp_path, "10")
    det.detect(images[0])
    det.close()
    assert det.runner.slots == [] and det.runner.engine is None and fake.memory.closes == 1
    assert fake.memory.live_at_close == {}  # every stream, event and buffer was freed by its owner first
    det.close()  # a second close is harmless
    assert fake.memory.live() == {}


def test_cached_engine_is_reused_by_the_next_detector(monkeypatch, tmp_path):
    fake, _ = detector(monkeypatch, tmp_path, "10")
    messages = []
    tensorrt_backend.create_tensorrt_detector(str(PT), options(), precision="fp32",
                                              engine_path=str(tmp_path / "m.engine"), log=messages.append)
    assert len(fake.built) == 1 and messages == ["engine cache: reusing {}".format(tmp_path / "m.engine")]


def test_engine_file_can_be_given_directly(monkeypatch, tmp_path, images, cpu_reference):
    detector(monkeypatch, tmp_path, "10")
    det = tensorrt_backend.create_tensorrt_detector(str(tmp_path / "m.engine"), log=lambda m: None)
    assert det.input_size == SIZE
    assert_same([det.detect(images[0])], cpu_reference[:1])


def test_corrupt_engine_with_matching_metadata_is_a_clear_error(monkeypatch, tmp_path):
    detector(monkeypatch, tmp_path, "10")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\x00garbage")
    meta_path = Path(engine_cache.metadata_path(str(engine)))
    meta = json.loads(meta_path.read_text())
    meta["engine_sha256"] = engine_cache.sha256_file(str(engine))
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(JetsonDetectError, match=r"m\.engine: TensorRT 10\.16\.0\.72 could not load this engine "
                                                r"\(see the TensorRT log above\): it is damaged"):
        tensorrt_backend.create_tensorrt_detector(str(engine), log=lambda m: None)


def test_empty_engine_is_a_clear_error(monkeypatch, tmp_path):
    fake = install(monkeypatch, "10")
    engine = tmp_path / "e.engine"
    engine.write_bytes(b"")
    with pytest.raises(JetsonDetectError, match=r"could not load this engine \(the file is empty\)"):
        tensorrt_backend.deserialize_engine(fake.memory, str(engine), None)


def test_engine_of_another_tensorrt_is_refused_before_loading(monkeypatch, tmp_path):
    detector(monkeypatch, tmp_path, "10")
    fake = install(monkeypatch, "8.2")
    use_fake_cuda(monkeypatch, fake)
    with pytest.raises(JetsonDetectError, match=r"TensorRT version differs \(engine: 10\.16\.0\.72, now: 8\.2\.1\.8\)"):
        tensorrt_backend.create_tensorrt_detector(str(tmp_path / "m.engine"), log=lambda m: None)


def test_cached_engine_of_another_tensorrt_is_rebuilt(monkeypatch, tmp_path):
    detector(monkeypatch, tmp_path, "10")
    fake = install(monkeypatch, "8.2")
    use_fake_cuda(monkeypatch, fake)
    messages = []
    tensorrt_backend.create_tensorrt_detector(str(PT), options(), precision="fp32",
                                              engine_path=str(tmp_path / "m.engine"), log=messages.append)
    assert messages[0] == "engine cache: building {}: TensorRT version differs (engine: 10.16.0.72, now: " \
                          "8.2.1.8)".format(tmp_path / "m.engine")
    assert len(fake.built) == 1


def test_foreign_engine_is_refused(monkeypatch, tmp_path):
    fake = install(monkeypatch, "10")
    use_fake_cuda(monkeypatch, fake)
    engine = tmp_path / "other.engine"
    engine.write_bytes(b"an engine from another tool")
    with pytest.raises(JetsonDetectError, match=r"other\.engine: no metadata file other\.engine\.json next to it"):
        tensorrt_backend.create_tensorrt_detector(str(engine), log=lambda m: None)


def test_wrong_stream_count_is_refused(monkeypatch, tmp_path):
    with pytest.raises(JetsonDetectError, match=r"^--streams 3: choose 1 \(no overlap\) or 2"):
        detector(monkeypatch, tmp_path, "10", streams=3)


def test_tensorrt_available_reports_why_not(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    ok, why = tensorrt_backend.tensorrt_available()
    assert ok is False and why.startswith("TensorRT's Python package cannot be imported")


def test_tensorrt_available_names_version_and_gpu(monkeypatch):
    fake = install(monkeypatch, "10")
    monkeypatch.setattr(tensorrt_backend, "cuda_probe", lambda api="auto": (fake.memory, ""))
    assert tensorrt_backend.tensorrt_available() == (
        True, "TensorRT 10.16.0.72 on NVIDIA GeForce RTX 3060 (8.6, via fake)")


def test_create_detector_auto_picks_tensorrt_and_matches_the_cpu_backend(monkeypatch, tmp_path, images):
    from jetson_detect.backends.detector import create_detector
    fake = install(monkeypatch, "8.2")
    use_fake_cuda(monkeypatch, fake)
    monkeypatch.setattr(tensorrt_backend, "cuda_probe", lambda api="auto": (fake.memory, ""))
    messages = []
    trt_det = create_detector(str(PT), backend="auto", img_size=SIZE, log=messages.append, precision="fp32",
                              engine_path=str(tmp_path / "auto.engine"))
    cpu_det = create_detector(str(PT), backend="onnxruntime", img_size=SIZE)
    assert trt_det.backend_name == "tensorrt" and messages[0] == "backend: tensorrt"
    assert trt_det.names == cpu_det.names and trt_det.input_size == cpu_det.input_size
    for got, want in zip(trt_det.detect_batch(images), cpu_det.detect_batch(images)):
        np.testing.assert_array_equal(got.class_ids, want.class_ids)
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
