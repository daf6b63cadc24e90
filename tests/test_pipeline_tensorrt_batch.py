"""The TensorRT detector (on the project's TensorRT and CUDA doubles) in the multi-camera loop: the run command
builds and caches one engine for a batch of one frame per camera, and the loop runs the cameras' frames through it
together. Plumbing tests: the doubles stand for TensorRT; the numbers come from the same network on ONNX Runtime."""

import json

import numpy as np

from jetson_detect.app.pipeline import Camera, Pipeline
from jetson_detect.backends import tensorrt_backend
from jetson_detect.cli import build_parser
from jetson_detect.commands.run import create_detector_from_args
from jetson_detect.video.sources import ImageFilesSource

from conftest import PT, SHARED
from trt_doubles import install, use_fake_cuda

BUS, ZIDANE = str(SHARED / "images" / "bus.jpg"), str(SHARED / "images" / "zidane.jpg")


def tensorrt_detector(monkeypatch, tmp_path, cameras):
    fake = install(monkeypatch, "10")
    use_fake_cuda(monkeypatch, fake)
    monkeypatch.setattr(tensorrt_backend, "cuda_probe", lambda api="auto": (fake.memory, ""))
    argv = ["--weights", str(PT), "--backend", "tensorrt", "--img-size", "160", "--precision", "fp32",
            "--cpu-preprocess", "--engine-cache", str(tmp_path / "engines")]
    for _ in range(cameras):
        argv += ["--source", BUS]
    return fake, create_detector_from_args(build_parser("run").parse_args(argv), batch=cameras)


def test_the_engine_is_built_and_cached_for_one_frame_per_camera(monkeypatch, tmp_path):
    _, detector = tensorrt_detector(monkeypatch, tmp_path, cameras=3)
    assert detector.batch_size == 3
    engines = sorted(p.name for p in (tmp_path / "engines").iterdir())
    assert "yolov5n_fp32_160_b3.engine" in engines  # --engine-cache: one engine per batch size, created on demand
    metadata = [json.loads(p.read_text()) for p in (tmp_path / "engines").iterdir() if p.suffix == ".json"]
    assert [m["batch"] for m in metadata] == [3]


def test_two_cameras_share_each_engine_run_and_get_their_own_detections(monkeypatch, tmp_path, images):
    _, detector = tensorrt_detector(monkeypatch, tmp_path, cameras=2)
    reference = {"bus": detector.detect(images[0]), "zidane": detector.detect(images[1])}
    shapes = []
    infer = detector.infer
    detector.infer = lambda batch: (shapes.append(batch.shape[0]), infer(batch))[1]
    seen = {}
    cameras = [Camera("bus", ImageFilesSource("bus", [BUS, BUS])), Camera("zidane", ImageFilesSource("z", [ZIDANE]))]
    Pipeline(detector, cameras, [], note=lambda message: None,
             observers=[lambda f, d, i, s: seen.setdefault(s["camera"], []).append(d)]).run()
    assert sorted((name, len(found)) for name, found in seen.items()) == [("bus", 2), ("zidane", 1)]
    assert set(shapes) == {2}  # every run is a full engine batch: the smaller last one was padded
    for name, found in seen.items():
        for detections in found:
            np.testing.assert_array_equal(detections.boxes, reference[name].boxes)
            np.testing.assert_array_equal(detections.class_ids, reference[name].class_ids)
