"""The shipped fire/smoke model: read by the safe reader, and equal to the training code's own forward pass.

``tests/data/fire_smoke_parity/*.json`` are the detections of the training code (yolov5 7.0.14, CPU, float32)
on four images of ``../shared/data/fire_smoke``, recorded when the model was trained (see weights/README.md).
"""

import json

import cv2
import pytest

from jetson_detect.backends.detector import create_detector

from conftest import ROOT, SHARED
from test_parity import match_reference

pytestmark = pytest.mark.shared
PARITY = ROOT / "tests" / "data" / "fire_smoke_parity"
MODEL = ROOT / "weights" / "fire_smoke_yolov5n.pt"


@pytest.fixture(scope="module")
def fire_detector():
    return create_detector(str(MODEL), backend="onnxruntime")


def test_the_shipped_model_has_the_fire_and_smoke_classes(fire_detector):
    assert fire_detector.names == ["fire", "smoke"]


@pytest.mark.parametrize("stem", sorted(p.stem for p in PARITY.glob("*.json")))
def test_detections_equal_the_training_codes_forward_pass(fire_detector, stem):
    reference = json.loads((PARITY / (stem + ".json")).read_text())["detections"]
    image = cv2.imread(str(SHARED / "data" / "fire_smoke" / "images" / (stem + ".jpg")))
    detections = fire_detector.detect(image)
    assert reference, "each parity image was chosen to have detections"
    assert match_reference(detections, reference) == (len(reference), 0)
