"""YOLOv5 v5.0 (Focus stem, SPP) and P6 (four levels, strides 8-64) models equal the reference implementation.

The checkpoints and reference outputs in tests/data/models_v50_p6 were made by scripts/make_reference_models.py
with the reference code (PyPI ``yolov5`` 7.0.14) from seeded random weights with non-trivial BatchNorm statistics:
``yolov5n_v50`` is the v5.0 layout at YOLOv5n multiples, ``yolov5n6`` the reference's own ``yolov5n6.yaml``.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from jetson_detect.backends import tensorrt_builder
from jetson_detect.backends.detector import OnnxRuntimeDetector
from jetson_detect.backends.onnxruntime_backend import OnnxRuntimeEngine
from jetson_detect.backends.tensorrt_builder import EngineSettings
from jetson_detect.model.blocks import BuildOptions
from jetson_detect.model.checkpoint import read_checkpoint
from jetson_detect.model.loader import load_model
from jetson_detect.model.weights import read_wts, write_wts

from conftest import SHARED
from test_parity import relative_error
from trt_doubles import install

pytestmark = pytest.mark.shared
DATA = Path(__file__).resolve().parent / "data" / "models_v50_p6"
RUNS = [("yolov5n_v50", "bus", 320), ("yolov5n_v50", "zidane", 320), ("yolov5n6", "zidane", 640)]


@pytest.fixture(scope="module")
def wts_files(tmp_path_factory):
    """Each checkpoint converted to tensorrtx ``.wts`` (the plain state-dict names gen_wts.py writes)."""
    out = {}
    for name in ("yolov5n_v50", "yolov5n6"):
        path = tmp_path_factory.mktemp("wts") / (name + ".wts")
        write_wts(read_checkpoint(str(DATA / (name + ".pt"))).wts_weights(), str(path))
        out[name] = path
    return out


@pytest.fixture(scope="module")
def detectors(wts_files):
    """CPU-backend detectors from the ``.wts`` files, inferred from the weights alone, per (model, size)."""
    cache = {}

    def get(name, size):
        if (name, size) not in cache:
            spec, weights = load_model(str(wts_files[name]))
            cache[name, size] = OnnxRuntimeDetector(spec, weights, BuildOptions(input_h=size, input_w=size))
        return cache[name, size]
    return get


def test_the_v50_checkpoint_is_read_as_focus_c3_spp():
    spec, _ = load_model(str(DATA / "yolov5n_v50.pt"))
    assert [layer.kind for layer in spec.layers[:10]] == ["Focus", "Conv", "C3", "Conv", "C3", "Conv", "C3", "Conv",
                                                          "SPP", "C3"]
    assert spec.layers[0].c_out == 16 and spec.layers[8].pools == (5, 9, 13)
    assert [layer.repeats for layer in spec.layers if layer.kind == "C3"][:4] == [1, 3, 3, 1]
    assert spec.strides == (8.0, 16.0, 32.0) and spec.names == ("alpha", "beta")


def test_the_p6_checkpoint_has_four_levels_with_strides_8_to_64():
    spec, _ = load_model(str(DATA / "yolov5n6.pt"))
    assert spec.detect.number == 33 and spec.detect.sources == (23, 26, 29, 32)
    assert spec.strides == (8.0, 16.0, 32.0, 64.0)
    assert spec.anchors_px[3] == ((436.0, 615.0), (739.0, 380.0), (925.0, 792.0))


@pytest.mark.parametrize("name", ["yolov5n_v50", "yolov5n6"])
def test_inference_from_the_wts_gives_the_checkpoints_own_architecture(wts_files, name):
    from_yaml, _ = load_model(str(DATA / (name + ".pt")))
    inferred, _ = load_model(str(wts_files[name]))
    assert inferred.layers == from_yaml.layers and inferred.strides == from_yaml.strides


@pytest.mark.parametrize("name, image, size", RUNS)
def test_decoded_candidates_from_the_wts_equal_the_reference(detectors, name, image, size):
    ref = np.load(DATA / "{}_{}_{}.npz".format(name, image, size))
    decoded = detectors(name, size).run(ref["input"].astype(np.float32) / 255.0)["decoded"]
    assert decoded.shape == ref["decoded"].shape
    assert relative_error(decoded, ref["decoded"]) <= 1e-6  # README: within 1e-6 (measured 7.6e-7 to 8.3e-7)


@pytest.mark.parametrize("name, image, size", RUNS)
def test_detections_from_the_wts_equal_the_reference(detectors, name, image, size):
    reference = json.loads((DATA / "{}_{}_{}.json".format(name, image, size)).read_text())["detections"]
    detections = detectors(name, size).detect(cv2.imread(str(SHARED / "images" / (image + ".jpg"))))
    # Random weights give degenerate boxes (width ~0.01 px) whose IoU is unstable, so compare row by row: the
    # same boxes in the same order, to the JSON's rounding (0.001 px, 1e-6) plus float32 error.
    assert len(reference) >= 10
    assert detections.class_ids.tolist() == [r["class_id"] for r in reference]
    assert np.abs(detections.boxes - np.array([r["box"] for r in reference])).max() <= 0.01
    assert np.abs(detections.scores - np.array([r["confidence"] for r in reference])).max() <= 1e-5


def test_the_letterboxed_input_is_ours_too(detectors):
    ref = np.load(DATA / "yolov5n_v50_zidane_320.npz")
    x, _ = detectors("yolov5n_v50", 320).preprocess(cv2.imread(str(SHARED / "images" / "zidane.jpg")))
    assert np.array_equal(x, ref["input"].astype(np.float32) / 255.0)


@pytest.mark.parametrize("style", ["8.2", "10", "11"])
def test_the_tensorrt_path_builds_the_p6_model_with_four_heads_into_the_plugin(monkeypatch, style):
    spec, weights = load_model(str(DATA / "yolov5n6.pt"))
    fake = install(monkeypatch, style)
    tensorrt_builder.build_serialized_engine(spec, weights, EngineSettings(precision="fp16", img_size=128),
                                             fake.memory, log=lambda message: None)
    plugin = [layer for layer in fake.networks[0].layers if layer.name == "YoloDecodeNMS"]
    assert len(plugin) == 1
    assert [tuple(t.shape) for t in plugin[0].inputs] == [(1, 21, 16, 16), (1, 21, 8, 8), (1, 21, 4, 4),
                                                          (1, 21, 2, 2)]
    assert plugin[0].plugin.params.strides == (8.0, 16.0, 32.0, 64.0)


@pytest.mark.parametrize("name, image, size", [RUNS[0], RUNS[2]])
def test_the_tensorrt_path_network_equals_the_reference(monkeypatch, name, image, size):
    spec, weights = load_model(str(DATA / (name + ".pt")))
    fake = install(monkeypatch, "10")
    tensorrt_builder.build_serialized_engine(spec, weights, EngineSettings(precision="fp32", img_size=size),
                                             fake.memory, log=lambda message: None)
    ref = np.load(DATA / "{}_{}_{}.npz".format(name, image, size))
    decoded = OnnxRuntimeEngine(fake.networks[0]).run(ref["input"].astype(np.float32) / 255.0)["decoded"]
    assert relative_error(decoded, ref["decoded"]) <= 1e-6


def test_a_plain_v50_state_dict_wts_without_strides_reads_the_same(wts_files, tmp_path):
    """tensorrtx's v5.0 gen_wts.py writes the bare state dict: ``anchors`` and ``anchor_grid``, no strides."""
    weights = read_wts(str(wts_files["yolov5n_v50"]))
    del weights["model.24.strides"]  # a plain v5.0 state dict has none: the levels' strides are 8, 16, 32
    path = tmp_path / "v50_plain.wts"
    write_wts(weights, str(path))
    spec, _ = load_model(str(path))
    assert spec.strides == (8.0, 16.0, 32.0) and spec.anchors_px[0][0] == (10.0, 13.0)
