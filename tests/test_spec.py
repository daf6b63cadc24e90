"""Architecture from yaml or inferred from weights; disagreements name the tensor."""

import copy

import numpy as np
import pytest
import yaml

from jetson_detect.errors import JetsonDetectError
from jetson_detect.model.spec import expected_tensors, infer_model_dict, load_model_yaml, parse_model, resolve_spec

from conftest import ROOT, WTS

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


def test_bottleneckcsp_models_are_refused_naming_the_layer_and_what_it_is():
    cfg = _yaml("n")
    cfg["backbone"][2] = [-1, 3, "BottleneckCSP", [128]]
    with pytest.raises(JetsonDetectError, match=r"^v3.yaml layer 2: module 'BottleneckCSP' belongs to YOLOv5 before "
                                                r"v4.0 \(BottleneckCSP layers\), which is unsupported"):
        parse_model(cfg, "v3.yaml")


@pytest.mark.parametrize("size, stem, levels", [("n", 16, 4), ("s", 32, 4), ("m", 48, 4), ("l", 64, 4),
                                                ("x", 80, 4)])
def test_shipped_p6_yamls_have_four_levels_with_strides_8_to_64(size, stem, levels):
    spec = parse_model(_yaml(size + "6"))
    assert spec.layers[0].c_out == stem and len(spec.anchors_px) == levels
    assert spec.strides == (8.0, 16.0, 32.0, 64.0) and spec.detect.number == 33


def test_the_v50_yaml_has_a_focus_stem_and_spp():
    spec = parse_model(_yaml("n-v5.0"))
    assert (spec.layers[0].kind, spec.layers[0].c_in, spec.layers[0].kernel) == ("Focus", 3, 3)
    assert (spec.layers[8].kind, spec.layers[8].pools, spec.layers[8].hidden) == ("SPP", (5, 9, 13), 128)
    assert spec.strides == (8.0, 16.0, 32.0)


def test_strides_come_from_the_layers_not_a_fixed_table():
    cfg = _yaml("n")
    cfg["backbone"][1] = [-1, 1, "Conv", [128, 3, 1]]  # one downsampling fewer
    assert parse_model(cfg).strides == (4.0, 8.0, 16.0)


def test_weights_with_a_focus_stem_infer_the_v50_layout(coco_weights):
    weights = {("model.0.conv." + k[len("model.0."):] if k.startswith("model.0.") else k): v
               for k, v in coco_weights.items()}  # Focus wraps its Conv: model.0.conv.conv.weight
    weights["model.0.conv.conv.weight"] = np.zeros(16 * 12 * 3 * 3, np.float32)
    assert infer_model_dict(weights)["backbone"][8][2] == "SPP"


def test_bottleneckcsp_weights_are_refused_naming_the_tensor(coco_weights):
    weights = dict(coco_weights)
    weights["model.2.cv4.conv.weight"] = np.zeros(32 * 32, np.float32)
    with pytest.raises(JetsonDetectError, match=r"^weights: 'model.2.cv4.conv.weight' belongs to a BottleneckCSP "
                                                r"layer: YOLOv5 before v4.0 is unsupported"):
        resolve_spec(weights)


def test_a_focus_stem_with_a_p6_detect_must_come_with_its_yaml(coco_weights):
    weights = {k.replace("model.24.", "model.33."): v for k, v in coco_weights.items()}
    weights["model.0.conv.conv.weight"] = np.zeros(16 * 12 * 3 * 3, np.float32)
    weights["model.0.conv.bn.weight"] = weights.pop("model.0.bn.weight")
    with pytest.raises(JetsonDetectError, match="a Focus stem with Detect 'model.33' over 3 levels is no standard "
                                                "layout .*: pass its model yaml with --cfg"):
        infer_model_dict(weights)


def test_names_must_match_the_class_count(coco_weights):
    with pytest.raises(JetsonDetectError, match="2 class names given but the model has nc=80"):
        resolve_spec(coco_weights, names=["fire", "smoke"])


def _broken(mutate):
    cfg = _yaml("n")
    mutate(cfg)
    return cfg


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(nc="eighty"), "bad.yaml (field 'nc'): expected a positive integer, got 'eighty'"),
    (lambda c: c.update(nc=0), "bad.yaml (field 'nc'): expected a positive integer, got 0"),
    (lambda c: c.update(width_multiple=None), "bad.yaml (field 'width_multiple'): expected a positive number, "
                                              "got None"),
    (lambda c: c["backbone"].__setitem__(3, [-1, 1, "Conv"]),
     "bad.yaml layer 3: expected [from, number, module, args], got [-1, 1, 'Conv'] (3 fields)"),
    (lambda c: c["backbone"].__setitem__(1, [99, 1, "Conv", [128, 3, 2]]),
     "bad.yaml layer 1 (field 'from'): 99 refers to layer 99, but only layers 0..0 come before it"),
    (lambda c: c["head"].__setitem__(2, [[-1, -20], 1, "Concat", [1]]),
     "bad.yaml layer 12 (field 'from'): -20 refers to layer -8, but only layers 0..11 come before it"),
    (lambda c: c["backbone"].__setitem__(2, [-1, 3, "Transformer", [128]]),
     "bad.yaml layer 2: module 'Transformer' is unsupported; supported: Conv, Focus, C3, SPPF, SPP, Upsample, "
     "Concat, Detect"),
    (lambda c: c["backbone"].__setitem__(2, [-1, "three", "C3", [128]]),
     "bad.yaml layer 2 (field 'number'): expected a repeat count >= 1, got 'three'"),
    (lambda c: c["backbone"].__setitem__(1, [-1, 1, "Conv", ["wide", 3, 2]]),
     "bad.yaml layer 1 (Conv, field 'args[0]'): expected a number, got 'wide'"),
    (lambda c: c["backbone"].__setitem__(9, [-1, 1, "SPP", [1024, [5, 8]]]),
     "bad.yaml layer 9 (SPP, field 'args[1]'): SPP pool kernels must be a list of odd positive integers"),
    (lambda c: c.update(anchors=[[10, 13, 16]]), "bad.yaml (field 'anchors'): must be one list"),
    (lambda c: c["head"].__setitem__(14, [[17, 20], 1, "Detect", ["nc", "anchors"]]),
     "bad.yaml layer 24 (Detect, field 'from'): 2 input levels but 'anchors' has 3"),
])
def test_a_bad_model_yaml_gives_one_line_naming_the_entry(mutate, message):
    with pytest.raises(JetsonDetectError) as err:
        parse_model(_broken(mutate), "bad.yaml")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize("content, message", [
    (b"nc: 80\n\xff\xfe depth_multiple: 0.33\n", "not UTF-8 text (byte 0xff at offset 7)"),
    (b"nc: [80\n", "not valid YAML"),
    (b"- just\n- a list\n", "a model yaml must be a mapping"),
])
def test_a_model_yaml_that_is_not_a_yaml_mapping_is_one_line(tmp_path, content, message):
    path = tmp_path / "model.yaml"
    path.write_bytes(content)
    with pytest.raises(JetsonDetectError) as err:
        load_model_yaml(str(path))
    assert str(err.value).startswith(str(path) + ": " + message) and "\n" not in str(err.value)


def test_the_cli_names_the_file_and_layer_of_a_bad_yaml(tmp_path, capsys):
    from jetson_detect.cli import main
    cfg = _yaml("n")
    cfg["backbone"][1] = [99, 1, "Conv", [128, 3, 2]]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["export-onnx", "--weights", str(WTS), "--cfg", str(path), "-o", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("{} layer 1 (field 'from'): 99 refers to layer 99, but only layers 0..0 come before "
                        "it".format(path)) and "\n" not in err


def test_every_module_kind_has_one_parser_and_one_block_builder():
    from jetson_detect.model.network import BLOCK_BUILDERS
    from jetson_detect.model.spec import LAYER_PARSERS
    assert set(LAYER_PARSERS) == set(BLOCK_BUILDERS) == {"Conv", "Focus", "C3", "SPP", "SPPF", "Upsample", "Concat",
                                                          "Detect"}
    assert len(set(LAYER_PARSERS.values())) == len(LAYER_PARSERS)
