"""The shipped fire/smoke models: read by the safe reader, and equal to the training code's own forward pass.

``tests/data/fire_smoke_parity*/*.json`` are the detections of the training code (yolov5 7.0.14, CPU, float32)
on four images of ``../shared/data/fire_smoke``, recorded when each model was trained (see weights/README.md):
``fire_smoke_parity`` for the 640 model, ``fire_smoke_parity_416`` for the 416 one.
"""

import json
import sys

import cv2
import pytest

from jetson_detect.backends.detector import create_detector

from conftest import ROOT, SHARED
from test_parity import match_reference

pytestmark = pytest.mark.shared
DATA = ROOT / "tests" / "data"
# (weights, input size the model was trained and recorded at, parity folder)
MODELS = {"yolov5n_640": ("fire_smoke_yolov5n.pt", 640, "fire_smoke_parity"),
          "yolov5n_416": ("fire_smoke_yolov5n_416.pt", 416, "fire_smoke_parity_416")}
CASES = [(model, p.stem) for model, (_, _, folder) in sorted(MODELS.items())
         for p in sorted((DATA / folder).glob("*.json"))]
_detectors = {}


def fire_detector(model):
    if model not in _detectors:
        weights, size, _ = MODELS[model]
        _detectors[model] = create_detector(str(ROOT / "weights" / weights), backend="onnxruntime", img_size=size)
    return _detectors[model]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_shipped_models_have_the_fire_and_smoke_classes(model):
    assert fire_detector(model).names == ["fire", "smoke"]


def test_each_parity_record_was_made_at_its_models_input_size():
    for model, stem in CASES:
        _, size, folder = MODELS[model]
        assert json.loads((DATA / folder / (stem + ".json")).read_text())["size"] == size
    assert len(CASES) == 8


@pytest.mark.parametrize("model, stem", CASES)
def test_detections_equal_the_training_codes_forward_pass(model, stem):
    reference = json.loads((DATA / MODELS[model][2] / (stem + ".json")).read_text())["detections"]
    image = cv2.imread(str(SHARED / "data" / "fire_smoke" / "images" / (stem + ".jpg")))
    detections = fire_detector(model).detect(image)
    assert reference, "each parity image was chosen to have detections"
    assert match_reference(detections, reference) == (len(reference), 0)


# The 640 model at 640, as BENCHMARKS.md "Fire/smoke model family" measured it with scripts/bench_fire_models.py.
BASELINE_MAP50_95, BASELINE_ALARM_IMAGES = 0.2624, 10


def test_the_configs_default_beats_the_640_model_on_accuracy_and_false_alarms():
    """configs/fire_smoke.yaml's model at its input size: higher mAP50-95 on ../shared/data/fire_smoke and fewer
    of the 64 fire-free coco64 images raising its alarm rules (1-of-1) than the 640 model at 640."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_fire_models

    from jetson_detect.app.config import load_config
    config = load_config(str(ROOT / "configs" / "fire_smoke.yaml"))
    weights, size = config["model"]["weights"], config["model"]["img_size"]
    default = bench_fire_models.bench(str(ROOT / weights), size, config, threads=2, runs=1)
    assert (weights, size) == ("weights/fire_smoke_yolov5n.pt", 320)
    assert default["mAP50_95"] == 0.2987 > BASELINE_MAP50_95
    assert round(default["alarm_share"] * 64) == 3 < BASELINE_ALARM_IMAGES
