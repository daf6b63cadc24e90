"""Architecture from yaml or inferred from weights; disagreements name the tensor."""

import copy

import numpy as np
import pytest
import yaml

from jetson_detect.errors import JetsonDetectError
from jetson_detect.model.spec import expected_tensors, infer_model_dict, parse_model, resolve_spec

from conftest import ROOT

pytestmark = pytest.mark.shared
MODELS = ROOT / "configs" / "models"


def _yaml(size="n"):
    return yaml.safe_load((MODELS / "yolov5{}.yaml".format(size)).read_text())


def test_infers_yolov5n_from_the_weights(coco_spec):
    assert coco_spec.nc == 80
    assert (coco_spec.depth_multiple, coco_spec.width_multiple) == (0.33, 0.25)
    assert coco_spec.layers[0].c_out == 16
    assert [layer.repeats for layer in coco_spec.layers if layer.kind == "C3"] == [1, 2, 3, 1, 1, 1, 1, 1]
    assert coco_spec.anchors_px[2][2] == (373.0, 326.0)
    assert coco_spec.names[0] == "person"


@pytest.mark.parametrize("size, stem, repeats", [
    ("n", 16, [1, 2, 3, 1]), ("s", 32, [1, 2, 3, 1]), ("m", 48, [2, 4, 6, 2]), ("l", 64, [3, 6, 9, 3]),
    ("x", 80, [4, 8, 12, 4])])
def test_shipped_model_yamls_follow_the_reference_rules(size, stem, repeats):
    spec = parse_model(_yaml(size))
    assert spec.layers[0].c_out == stem
    assert [layer.repeats for layer in spec.layers if layer.kind == "C3"][:4] == repeats
    assert spec.detect.c_out == 3 * 85


def test_inference_finds_depth_width_nc_from_synthetic_weights():
    cfg = _yaml("m")
    cfg["nc"] = 2
    spec = parse_model(cfg)
    weights = {name: np.zeros(count, np.float32) for name, count in expected_tensors(spec).items()}
    weights["model.24.anchor_grid"] = np.asarray(spec.anchors_px, np.float32).reshape(-1)
    weights["model.24.strides"] = np.array([8, 16, 32], np.float32)
    inferred = infer_model_dict(weights)
    assert (inferred["nc"], inferred["depth_multiple"], inferred["width_multiple"]) == (2, 0.67, 0.75)


def test_yaml_matching_the_weights_is_accepted(coco_weights):
    assert resolve_spec(coco_weights, _yaml("n")).nc == 80


def test_yaml_with_another_nc_names_the_detect_tensor(coco_weights):
    cfg = _yaml("n")
    cfg["nc"] = 2
    with pytest.raises(JetsonDetectError) as err:
        resolve_spec(coco_weights, cfg, cfg_where="fire.yaml", weights_where="yolov5n.wts")
    assert "yolov5n.wts: tensor 'model.24.m.0.bias' has 255 values but the model yaml needs 21" in str(err.value)
    assert "the weights imply nc=80" in str(err.value)


def test_yaml_with_another_width_names_the_stem_tensor(coco_weights):
    with pytest.raises(JetsonDetectError, match="tensor 'model.0.conv.weight' has 1728 values but the model yaml "
                                                "needs 3456"):
        resolve_spec(coco_weights, _yaml("s"))


def test_yaml_with_another_depth_names_an_unused_or_missing_tensor(coco_weights):
    cfg = _yaml("n")
    cfg["depth_multiple"] = 0.67
    with pytest.raises(JetsonDetectError, match="tensor 'model.2.m.1.cv1.conv.weight' is missing"):
        resolve_spec(coco_weights, cfg)


def test_yaml_with_other_anchors_names_anchor_grid(coco_weights):
    cfg = _yaml("n")
    cfg["anchors"] = copy.deepcopy(cfg["anchors"])
    cfg["anchors"][0][0] = 12
    with pytest.raises(JetsonDetectError, match="'model.24.anchor_grid' holds anchors"):
        resolve_spec(coco_weights, cfg)


def test_focus_models_are_unsupported_with_a_clear_message():
    cfg = _yaml("n")
    cfg["backbone"][0] = [-1, 1, "Focus", [64, 3]]
    with pytest.raises(JetsonDetectError, match="'Focus' belongs to YOLOv5 v5.0 and older"):
        parse_model(cfg)


def test_p6_models_are_unsupported_with_a_clear_message():
    cfg = _yaml("n")
    cfg["anchors"] = cfg["anchors"] + [[436, 615, 739, 380, 925, 792]]
    with pytest.raises(JetsonDetectError, match="only P5 models"):
        parse_model(cfg)


def test_weights_with_a_focus_stem_are_refused(coco_weights):
    weights = {("model.0.conv." + k[len("model.0."):] if k.startswith("model.0.") else k): v
               for k, v in coco_weights.items()}  # Focus wraps its Conv: model.0.conv.conv.weight
    with pytest.raises(JetsonDetectError, match="is a Focus stem"):
        resolve_spec(weights)


def test_names_must_match_the_class_count(coco_weights):
    with pytest.raises(JetsonDetectError, match="2 class names given but the model has nc=80"):
        resolve_spec(coco_weights, names=["fire", "smoke"])
