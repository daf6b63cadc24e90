"""The CPU backend (same builder as TensorRT) equals the reference implementation on real data."""

import json

import cv2
import numpy as np
import pytest

from jetson_detect.backends.detector import OnnxRuntimeDetector, create_detector, load_model
from jetson_detect.math.decode import decode_heads
from jetson_detect.model.blocks import BuildOptions

from conftest import PPE_PT, REFERENCE, SHARED, WTS

pytestmark = pytest.mark.shared
COCO64 = SHARED / "data" / "coco64"


# What the README quotes (measured: 1.3e-7 bus, 1.4e-7 zidane, 1.0e-7 for the nc=2 .pt).
PARITY_RELATIVE_ERROR = 2e-7


def relative_error(out, ref):
    return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))


@pytest.fixture(scope="module")
def fused_detector():
    spec, weights = load_model(str(WTS))
    return OnnxRuntimeDetector(spec, weights, BuildOptions(c3_fusion=True))


@pytest.fixture(scope="module")
def unfused_detector():
    spec, weights = load_model(str(WTS))
    return OnnxRuntimeDetector(spec, weights, BuildOptions(c3_fusion=False, mark_heads=True))


def test_the_cpu_backend_builds_c3_unfused_by_default_and_fused_on_request(coco_detector, fused_detector):
    assert coco_detector.options.c3_fusion is False
    assert create_detector(str(WTS), backend="onnxruntime", img_size=320, c3_fusion=True).options.c3_fusion is True
    assert fused_detector.options.c3_fusion is True


@pytest.mark.parametrize("name", ["bus", "zidane"])
@pytest.mark.parametrize("variant", ["coco_detector", "fused_detector"])
def test_decoded_candidates_equal_the_reference(request, variant, name):
    coco_detector = request.getfixturevalue(variant)
    ref = np.load(REFERENCE / "yolov5n" / "{}.npz".format(name))
    decoded = coco_detector.run(ref["input"])["decoded"]
    assert decoded.shape == (1, 25200, 85)
    assert relative_error(decoded, ref["decoded"]) <= PARITY_RELATIVE_ERROR


def test_two_class_model_from_the_pt_reader_equals_the_reference():
    ref = np.load(REFERENCE / "ppe_nc2" / "zidane.npz")
    detector = create_detector(str(PPE_PT), backend="onnxruntime")
    assert detector.names == ["helmet", "vest"]
    assert relative_error(detector.run(ref["input"])["decoded"], ref["decoded"]) <= PARITY_RELATIVE_ERROR


def test_horizontal_c3_fusion_changes_no_number(fused_detector, unfused_detector):
    x = np.load(REFERENCE / "yolov5n" / "bus.npz")["input"]
    fused, unfused = fused_detector.run(x), unfused_detector.run(x)
    assert relative_error(fused["decoded"], unfused["decoded"]) <= 1e-6
    n = int(fused["num_detections"][0, 0])
    assert n == int(unfused["num_detections"][0, 0])
    assert np.array_equal(fused["classes"][0, :n], unfused["classes"][0, :n])
    assert np.allclose(fused["boxes"][0, :n], unfused["boxes"][0, :n], atol=1e-3)


def test_numpy_decode_of_the_raw_heads_equals_the_reference(unfused_detector, coco_spec):
    ref = np.load(REFERENCE / "yolov5n" / "zidane.npz")
    out = unfused_detector.run(ref["input"])
    heads = [out[name] for name in ("head_p3", "head_p4", "head_p5")]
    decoded = decode_heads(heads, np.asarray(coco_spec.anchors_px, np.float32), coco_spec.strides)
    assert relative_error(decoded, ref["decoded"]) <= 1e-5


def box_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_reference(detections, reference):
    """How many reference boxes we found (same class, IoU ≥ 0.99, |Δconf| ≤ 0.002), and how many extra we have."""
    used = set()
    found = 0
    for ref in reference:
        for i, (box, score, cls) in enumerate(zip(detections.boxes, detections.scores, detections.class_ids)):
            if i in used or int(cls) != ref["class_id"]:
                continue
            if box_iou(box, ref["box"]) >= 0.99 and abs(float(score) - ref["confidence"]) <= 0.002:
                used.add(i)
                found += 1
                break
    return found, len(detections) - len(used)


@pytest.mark.parametrize("name", ["bus", "zidane"])
def test_sample_image_detections_match_the_reference(coco_detector, name):
    reference = json.loads((REFERENCE / "yolov5n" / "{}.json".format(name)).read_text())["detections"]
    found, extra = match_reference(coco_detector.detect(cv2.imread(str(SHARED / "images" / (name + ".jpg")))),
                                   reference)
    assert (found, extra) == (len(reference), 0)


def test_coco64_detections_match_the_reference(coco_detector):
    total = found = extra = 0
    for image_path in sorted((COCO64 / "images").glob("*.jpg")):
        reference = json.loads((REFERENCE / "yolov5n" / "coco64" / (image_path.stem + ".json")).read_text())
        f, e = match_reference(coco_detector.detect(cv2.imread(str(image_path))), reference["detections"])
        total += len(reference["detections"])
        found += f
        extra += e
    assert (total, found, extra) == (324, 324, 0)  # README: every reference box, no extra one


def test_coco64_map_agrees_with_the_reference_figures():
    from jetson_detect.evaluation import evaluate_folder, list_images
    detector = create_detector(str(WTS), backend="onnxruntime", conf_thres=0.001, iou_thres=0.6,
                               pre_nms_top_k=30000)
    result = evaluate_folder(list_images(str(COCO64 / "images")), str(COCO64 / "labels"), detector.names,
                             detector.detect, lambda p: cv2.imread(p))
    assert (round(result.map50_95, 3), round(result.map50, 3)) == (0.368, 0.574)  # the reference's own figures


def test_fp16_typed_network_gives_the_same_detections():
    """The TensorRT 11 FP16 path (float16 input and weights) through the CPU twin: same boxes within FP16 error."""
    spec, weights = load_model(str(WTS))
    fp16 = OnnxRuntimeDetector(spec, weights, BuildOptions(weights_fp16=True))
    ref = np.load(REFERENCE / "yolov5n" / "bus.npz")
    out = fp16.run(ref["input"].astype(np.float16))
    assert relative_error(out["decoded"], ref["decoded"]) <= 1e-3
    reference = json.loads((REFERENCE / "yolov5n" / "bus.json").read_text())["detections"]
    assert int(out["num_detections"][0, 0]) == len(reference)
