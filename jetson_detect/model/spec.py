"""The YOLOv5 architecture as data: read from a model yaml or inferred from the weights, checked against them.

Supported: YOLOv5 v6.0+ models (6x6 stem Conv, C3, SPPF), YOLOv5 v5.0 models (Focus stem, C3, SPP), P5 (three
detection levels, strides 8/16/32) and P6 (four, strides 8-64), for any depth/width multiple and class count.
``parse_model`` follows the reference ``parse_model`` rules (``make_divisible`` widths, rounded depths), so a yaml
means exactly what it means to the reference code; each module kind has its own small parser.
"""

import copy
import math
import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..errors import JetsonDetectError
from .weights import Weights

# Older layouts named by the module that gives them away, with what to do instead.
OLD_MODULES = {"BottleneckCSP": "YOLOv5 before v4.0 (BottleneckCSP layers)",
               "C3TR": "a transformer variant (C3TR)", "C3Ghost": "a Ghost variant (C3Ghost)",
               "GhostConv": "a Ghost variant (GhostConv)", "Contract": "a Contract stem"}
DEPTH_MULTIPLES = (0.33, 0.67, 1.0, 1.33)

_YOLOV5_HEAD_P5 = [
    [-1, 1, "Conv", [512, 1, 1]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]], [[-1, 6], 1, "Concat", [1]],
    [-1, 3, "C3", [512, False]], [-1, 1, "Conv", [256, 1, 1]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
    [[-1, 4], 1, "Concat", [1]], [-1, 3, "C3", [256, False]], [-1, 1, "Conv", [256, 3, 2]],
    [[-1, 14], 1, "Concat", [1]], [-1, 3, "C3", [512, False]], [-1, 1, "Conv", [512, 3, 2]],
    [[-1, 10], 1, "Concat", [1]], [-1, 3, "C3", [1024, False]], [[17, 20, 23], 1, "Detect", ["nc", "anchors"]]]

# The layouts shared by n/s/m/l/x of each family; only the multiples, nc and anchors differ between sizes.
P5_TEMPLATE = {
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [[-1, 1, "Conv", [64, 6, 2, 2]], [-1, 1, "Conv", [128, 3, 2]], [-1, 3, "C3", [128]],
                 [-1, 1, "Conv", [256, 3, 2]], [-1, 6, "C3", [256]], [-1, 1, "Conv", [512, 3, 2]],
                 [-1, 9, "C3", [512]], [-1, 1, "Conv", [1024, 3, 2]], [-1, 3, "C3", [1024]],
                 [-1, 1, "SPPF", [1024, 5]]],
    "head": _YOLOV5_HEAD_P5,
}
V50_P5_TEMPLATE = {  # YOLOv5 v5.0: Focus stem, 3/9/9 bottlenecks, SPP before the last backbone C3
    "anchors": P5_TEMPLATE["anchors"],
    "backbone": [[-1, 1, "Focus", [64, 3]], [-1, 1, "Conv", [128, 3, 2]], [-1, 3, "C3", [128]],
                 [-1, 1, "Conv", [256, 3, 2]], [-1, 9, "C3", [256]], [-1, 1, "Conv", [512, 3, 2]],
                 [-1, 9, "C3", [512]], [-1, 1, "Conv", [1024, 3, 2]], [-1, 1, "SPP", [1024, [5, 9, 13]]],
                 [-1, 3, "C3", [1024, False]]],
    "head": _YOLOV5_HEAD_P5,
}
P6_TEMPLATE = {
    "anchors": [[19, 27, 44, 40, 38, 94], [96, 68, 86, 152, 180, 137], [140, 301, 303, 264, 238, 542],
                [436, 615, 739, 380, 925, 792]],
    "backbone": [[-1, 1, "Conv", [64, 6, 2, 2]], [-1, 1, "Conv", [128, 3, 2]], [-1, 3, "C3", [128]],
                 [-1, 1, "Conv", [256, 3, 2]], [-1, 6, "C3", [256]], [-1, 1, "Conv", [512, 3, 2]],
                 [-1, 9, "C3", [512]], [-1, 1, "Conv", [768, 3, 2]], [-1, 3, "C3", [768]],
                 [-1, 1, "Conv", [1024, 3, 2]], [-1, 3, "C3", [1024]], [-1, 1, "SPPF", [1024, 5]]],
    "head": [[-1, 1, "Conv", [768, 1, 1]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
             [[-1, 8], 1, "Concat", [1]], [-1, 3, "C3", [768, False]], [-1, 1, "Conv", [512, 1, 1]],
             [-1, 1, "nn.Upsample", [None, 2, "nearest"]], [[-1, 6], 1, "Concat", [1]], [-1, 3, "C3", [512, False]],
             [-1, 1, "Conv", [256, 1, 1]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
             [[-1, 4], 1, "Concat", [1]], [-1, 3, "C3", [256, False]], [-1, 1, "Conv", [256, 3, 2]],
             [[-1, 20], 1, "Concat", [1]], [-1, 3, "C3", [512, False]], [-1, 1, "Conv", [512, 3, 2]],
             [[-1, 16], 1, "Concat", [1]], [-1, 3, "C3", [768, False]], [-1, 1, "Conv", [768, 3, 2]],
             [[-1, 12], 1, "Concat", [1]], [-1, 3, "C3", [1024, False]],
             [[23, 26, 29, 32], 1, "Detect", ["nc", "anchors"]]],
}


class LayerSpec(NamedTuple):
    """One entry of the model: what it is, where its inputs come from and its sizes."""

    number: int  # position in the model: weights are named model.<number>.*
    sources: Tuple[int, ...]  # absolute layer indices; -1 → the network input
    kind: str
    c_in: int
    c_out: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    repeats: int = 1  # C3 bottlenecks
    shortcut: bool = True
    scale: int = 2  # Upsample factor
    pools: Tuple[int, ...] = ()  # SPP's parallel max-pool kernels

    @property
    def prefix(self) -> str:
        return "model.{}".format(self.number)

    @property
    def hidden(self) -> int:
        """Hidden width: C3's c_ = c_out/2, SPP's and SPPF's c_ = c_in/2."""
        return self.c_in // 2 if self.kind in ("SPP", "SPPF") else int(self.c_out * 0.5)


class ModelSpec(NamedTuple):
    """The whole architecture plus the detection metadata the head needs."""

    layers: Tuple[LayerSpec, ...]
    nc: int
    anchors_px: Tuple[Tuple[Tuple[float, float], ...], ...]
    strides: Tuple[float, ...]
    depth_multiple: float
    width_multiple: float
    names: Tuple[str, ...]

    @property
    def detect(self) -> LayerSpec:
        return self.layers[-1]

    @property
    def num_anchors(self) -> int:
        return len(self.anchors_px[0])


def make_divisible(x: float, divisor: int = 8) -> int:
    """Round a channel count up to a multiple of ``divisor``, as the reference does."""
    return int(math.ceil(x / divisor) * divisor)


class _Entry(object):
    """One ``[from, number, module, args]`` row being parsed, with what its parser needs to know."""

    def __init__(self, where: str, index: int, sources: Tuple[int, ...], repeats: int, kind: str, args: List[Any],
                 channels: List[int], width: float, outputs: int) -> None:
        self.where, self.index, self.sources, self.kind, self.args = where, index, sources, kind, args
        self.repeats, self.channels, self.width, self.outputs = repeats, channels, width, outputs

    @property
    def c_in(self) -> int:
        return 3 if self.sources == (-1,) else self.channels[self.sources[0]]

    def fail(self, field: str, problem: str) -> JetsonDetectError:
        return JetsonDetectError("{} layer {} ({}, field '{}'): {}".format(
            self.where, self.index, self.kind, field, problem))

    def arg(self, position: int, default: Any, kind: type = int) -> Any:
        """``args[position]`` as ``kind`` (``default`` when absent or None), or a one-line error naming it."""
        if len(self.args) <= position or self.args[position] is None:
            return default
        value = self.args[position]
        if isinstance(value, bool) and kind is not bool or not isinstance(value, (int, float, bool)):
            raise self.fail("args[{}]".format(position), "expected a number, got {!r}".format(value))
        if kind is int and value != int(value):
            raise self.fail("args[{}]".format(position), "expected a whole number, got {!r}".format(value))
        return kind(value)

    def width_out(self) -> int:
        """The reference's output width: ``make_divisible(args[0] · width_multiple, 8)``."""
        if not self.args:
            raise self.fail("args", "the output channel count args[0] is missing")
        return make_divisible(self.arg(0, 0, float) * self.width, 8)


def _parse_conv(e: _Entry) -> LayerSpec:
    k, s = e.arg(1, 1), e.arg(2, 1)
    return LayerSpec(e.index, e.sources, "Conv", e.c_in, e.width_out(), k, s, e.arg(3, k // 2))


def _parse_focus(e: _Entry) -> LayerSpec:
    k, s = e.arg(1, 1), e.arg(2, 1)
    return LayerSpec(e.index, e.sources, "Focus", e.c_in, e.width_out(), k, s, e.arg(3, k // 2))


def _parse_c3(e: _Entry) -> LayerSpec:
    return LayerSpec(e.index, e.sources, "C3", e.c_in, e.width_out(), repeats=e.repeats,
                     shortcut=e.arg(1, True, bool))


def _parse_sppf(e: _Entry) -> LayerSpec:
    k = e.arg(1, 5)
    return LayerSpec(e.index, e.sources, "SPPF", e.c_in, e.width_out(), kernel=k, padding=k // 2)


def _parse_spp(e: _Entry) -> LayerSpec:
    pools = e.args[1] if len(e.args) > 1 else [5, 9, 13]
    if not isinstance(pools, list) or not pools or not all(
            isinstance(k, int) and not isinstance(k, bool) and k > 0 and k % 2 for k in pools):
        raise e.fail("args[1]", "SPP pool kernels must be a list of odd positive integers, got {!r}".format(pools))
    return LayerSpec(e.index, e.sources, "SPP", e.c_in, e.width_out(), pools=tuple(pools))


def _parse_upsample(e: _Entry) -> LayerSpec:
    mode = e.args[2] if len(e.args) > 2 else "nearest"
    if mode != "nearest":
        raise e.fail("args[2]", "Upsample mode '{}' is unsupported (nearest only)".format(mode))
    scale = e.arg(1, 2)
    if scale < 1:
        raise e.fail("args[1]", "the scale factor must be >= 1, got {}".format(scale))
    return LayerSpec(e.index, e.sources, "Upsample", e.c_in, e.c_in, scale=scale)


def _parse_concat(e: _Entry) -> LayerSpec:
    if e.arg(0, 1) != 1:
        raise e.fail("args[0]", "only channel concatenation (dimension 1) is supported")
    return LayerSpec(e.index, e.sources, "Concat", e.c_in, sum(e.channels[s] for s in e.sources))


def _parse_detect(e: _Entry) -> LayerSpec:
    return LayerSpec(e.index, e.sources, "Detect", e.c_in, e.outputs)


LAYER_PARSERS: Dict[str, Callable[[_Entry], LayerSpec]] = {
    "Conv": _parse_conv, "Focus": _parse_focus, "C3": _parse_c3, "SPPF": _parse_sppf, "SPP": _parse_spp,
    "Upsample": _parse_upsample, "Concat": _parse_concat, "Detect": _parse_detect,
}
SUPPORTED = tuple(LAYER_PARSERS)


def _module_kind(name: Any, where: str) -> str:
    if not isinstance(name, str):
        raise JetsonDetectError("{} (field 'module'): expected a module name such as Conv, got {!r}".format(
            where, name))
    kind = name.split(".")[-1]
    if kind in OLD_MODULES:
        raise JetsonDetectError("{}: module '{}' belongs to {}, which is unsupported: use a YOLOv5 v5.0 or later "
                                "model (C3 layers; Focus or 6x6 Conv stem)".format(where, kind, OLD_MODULES[kind]))
    if kind not in LAYER_PARSERS:
        raise JetsonDetectError("{}: module '{}' is unsupported; supported: {}".format(
            where, kind, ", ".join(SUPPORTED)))
    return kind


def _number(cfg: Dict[str, Any], key: str, where: str, kind: type) -> Any:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or (
            kind is int and value != int(value)):
        raise JetsonDetectError("{} (field '{}'): expected a positive {}, got {!r}".format(
            where, key, "integer" if kind is int else "number", value))
    return kind(value)


def _anchors(cfg: Dict[str, Any], where: str) -> List[List[float]]:
    anchors = cfg["anchors"]
    if not isinstance(anchors, list) or not anchors or not all(
            isinstance(a, list) and a and len(a) % 2 == 0 and len(a) == len(anchors[0]) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in a) for a in anchors):
        raise JetsonDetectError("{} (field 'anchors'): must be one list [w1, h1, w2, h2, ...] of positive pixel "
                                "sizes per detection level, the same count on every level".format(where))
    return anchors


def _sources(src: Any, index: int, where: str) -> Tuple[int, ...]:
    """Absolute source indices of entry ``index`` (negative = relative), each before it, or a one-line error."""
    raw = src if isinstance(src, list) else [src]
    if not raw or not all(isinstance(s, int) and not isinstance(s, bool) for s in raw):
        raise JetsonDetectError("{} layer {} (field 'from'): expected a layer index or a list of them, got "
                                "{!r}".format(where, index, src))
    if index == 0:
        if raw != [-1]:
            raise JetsonDetectError("{} layer 0 (field 'from'): the first layer reads the image: use -1, got "
                                    "{!r}".format(where, src))
        return (-1,)
    out = tuple(s if s >= 0 else index + s for s in raw)
    for s, r in zip(out, raw):
        if not 0 <= s < index:
            raise JetsonDetectError("{} layer {} (field 'from'): {} refers to layer {}, but only layers 0..{} come "
                                    "before it".format(where, index, r, s, index - 1))
    return out


def _layer_strides(layers: Sequence[LayerSpec], where: str) -> List[float]:
    """Each layer's output stride in input pixels, from the convolution strides and upsampling factors."""
    strides: List[float] = []
    for layer in layers:
        inputs = [1.0 if s == -1 else strides[s] for s in layer.sources]
        if len(set(inputs)) != 1 and layer.kind != "Detect":
            raise JetsonDetectError("{} layer {} (field 'from'): concatenates maps of strides {}: they must have "
                                    "one size".format(where, layer.number, inputs))
        stride = inputs[0]
        if layer.kind in ("Conv", "Focus"):
            stride *= layer.stride * (2 if layer.kind == "Focus" else 1)
        elif layer.kind == "Upsample":
            stride /= layer.scale
        strides.append(stride)
    return strides


def parse_model(cfg: Dict[str, Any], where: str = "model yaml",
                names: Optional[Sequence[str]] = None) -> ModelSpec:
    """Turn a YOLOv5 model dict (as in ``yolov5s.yaml``) into a ``ModelSpec`` with the reference's rules."""
    for key in ("nc", "depth_multiple", "width_multiple", "anchors", "backbone", "head"):
        if key not in cfg:
            raise JetsonDetectError("{}: missing key '{}'".format(where, key))
    nc = _number(cfg, "nc", where, int)
    gd, gw = _number(cfg, "depth_multiple", where, float), _number(cfg, "width_multiple", where, float)
    anchors = _anchors(cfg, where)
    for key in ("backbone", "head"):
        if not isinstance(cfg[key], list) or not cfg[key]:
            raise JetsonDetectError("{} (field '{}'): expected a list of [from, number, module, args] rows".format(
                where, key))
    na = len(anchors[0]) // 2
    channels: List[int] = []
    layers: List[LayerSpec] = []
    for i, row in enumerate(list(cfg["backbone"]) + list(cfg["head"])):
        if not isinstance(row, list) or len(row) != 4:
            raise JetsonDetectError("{} layer {}: expected [from, number, module, args], got {!r} ({} fields)".format(
                where, i, row, len(row) if isinstance(row, list) else 1))
        src, n, module, args = row
        kind = _module_kind(module, "{} layer {}".format(where, i))
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise JetsonDetectError("{} layer {} (field 'number'): expected a repeat count >= 1, got {!r}".format(
                where, i, n))
        if not isinstance(args, list):
            raise JetsonDetectError("{} layer {} (field 'args'): expected a list, got {!r}".format(where, i, args))
        repeats = max(round(n * gd), 1) if n > 1 else n
        entry = _Entry(where, i, _sources(src, i, where), repeats, kind, args, channels, gw, na * (nc + 5))
        layer = LAYER_PARSERS[kind](entry)
        channels.append(layer.c_out)
        layers.append(layer)
    detect = layers[-1]
    if detect.kind != "Detect" or any(layer.kind == "Detect" for layer in layers[:-1]):
        raise JetsonDetectError("{}: the last layer, and only it, must be Detect".format(where))
    if len(detect.sources) != len(anchors):
        raise JetsonDetectError("{} layer {} (Detect, field 'from'): {} input levels but 'anchors' has {}".format(
            where, detect.number, len(detect.sources), len(anchors)))
    strides = _layer_strides(layers, where)
    anchors_px = tuple(tuple((float(a[j]), float(a[j + 1])) for j in range(0, len(a), 2)) for a in anchors)
    class_names = tuple(names) if names else tuple(default_names(nc))
    if len(class_names) != nc:
        raise JetsonDetectError("{}: {} class names given for nc={}".format(where, len(class_names), nc))
    return ModelSpec(tuple(layers), nc, anchors_px, tuple(strides[s] for s in detect.sources), gd, gw, class_names)


def default_names(nc: int) -> List[str]:
    """COCO names for 80-class models, ``class0``… otherwise."""
    if nc == 80:
        from .coco_names import COCO_NAMES
        return list(COCO_NAMES)
    return ["class{}".format(i) for i in range(nc)]


def load_model_yaml(path: str) -> Dict[str, Any]:
    """Read a model yaml, with a one-line error for a missing, malformed or hostile file (size, depth and alias
    limits as for config files)."""
    from ..yaml_files import load_yaml_file
    if not os.path.isfile(path):
        raise JetsonDetectError("{}: no such model yaml: pass one of configs/models/*.yaml with --cfg".format(path))
    cfg = load_yaml_file(path, "model yaml", "--cfg")
    if not isinstance(cfg, dict):
        raise JetsonDetectError("{}: a model yaml must be a mapping with nc, depth_multiple, ...".format(path))
    return cfg


def _detect_tensors(weights: Weights) -> Tuple[str, int, int, int]:
    """Find the Detect layer in the weights: (prefix, levels, anchors per level, outputs per anchor)."""
    anchor_keys = [k for k in weights if k.endswith(".anchors")]
    if len(anchor_keys) != 1:
        raise JetsonDetectError("weights: expected one Detect '*.anchors' tensor, found {}: these are not YOLOv5 "
                                "detection weights".format(len(anchor_keys)))
    prefix = anchor_keys[0][:-len(".anchors")]
    nl = len([k for k in weights if k.startswith(prefix + ".m.") and k.endswith(".bias")])
    if nl == 0:
        raise JetsonDetectError("weights: no Detect convolutions '{}.m.N.bias' found".format(prefix))
    na = weights[anchor_keys[0]].size // (2 * nl)
    no_total = weights[prefix + ".m.0.bias"].size
    if na == 0 or no_total % na:
        raise JetsonDetectError("weights: {}.m.0.bias has {} values, not a multiple of {} anchors".format(
            prefix, no_total, na))
    return prefix, nl, na, no_total // na


def weights_anchors_px(weights: Weights) -> Tuple[np.ndarray, Tuple[float, ...]]:
    """Anchors in pixels (levels, na, 2) and strides from the Detect tensors."""
    prefix, nl, na, _ = _detect_tensors(weights)
    # a plain state dict has no strides: YOLOv5's levels are 8, 16, 32 (and 64 for P6)
    default = np.asarray([8.0 * 2 ** i for i in range(nl)], np.float32)
    strides = tuple(float(s) for s in weights.get(prefix + ".strides", default))
    if prefix + ".anchor_grid" in weights:
        grid = weights[prefix + ".anchor_grid"].reshape(nl, na, 2)
    else:
        grid = weights[prefix + ".anchors"].reshape(nl, na, 2) * np.asarray(strides, np.float32)[:, None, None]
    return grid.astype(np.float32), strides


def infer_model_dict(weights: Weights) -> Dict[str, Any]:
    """Build the model dict of the standard layout (v6.0+ P5 or P6, v5.0 P5) whose widths, depths, nc and anchors
    fit these weights."""
    if any(k.endswith(".cv4.conv.weight") for k in weights):  # only BottleneckCSP has a cv4 (and its own bn)
        raise JetsonDetectError("weights: '{}' belongs to a BottleneckCSP layer: YOLOv5 before v4.0 is unsupported; "
                                "use a YOLOv5 v5.0 or later model (C3 layers)".format(
                                    next(k for k in weights if k.endswith(".cv4.conv.weight"))))
    focus = "model.0.conv.conv.weight" in weights
    stem = "model.0.conv." if focus else "model.0."
    if stem + "conv.weight" not in weights or stem + "bn.weight" not in weights:
        raise JetsonDetectError("weights: no 'model.0.conv.weight'/'model.0.bn.weight' (Conv stem) nor "
                                "'model.0.conv.conv.weight' (Focus stem): not YOLOv5 weights")
    stem_out = weights[stem + "bn.weight"].size
    kernel = 3 if focus else 6
    if weights[stem + "conv.weight"].size != stem_out * (12 if focus else 3) * kernel * kernel:
        raise JetsonDetectError("weights: the stem '{}conv.weight' is neither a 6x6 conv from 3 channels nor a "
                                "v5.0 Focus 3x3 conv from 12: pass the model yaml with --cfg".format(stem))
    prefix, nl, na, no = _detect_tensors(weights)
    layouts = {("model.24", 3, False): P5_TEMPLATE, ("model.33", 4, False): P6_TEMPLATE,
               ("model.24", 3, True): V50_P5_TEMPLATE}
    template = layouts.get((prefix, nl, focus))
    if template is None:
        raise JetsonDetectError("weights: a {} stem with Detect '{}' over {} levels is no standard layout this "
                                "can infer (v6.0+ P5/P6, v5.0 P5): pass its model yaml with --cfg".format(
                                    "Focus" if focus else "Conv", prefix, nl))
    bottlenecks = len([k for k in weights if k.startswith("model.2.m.") and k.endswith(".cv1.conv.weight")])
    depth = next((gd for gd in DEPTH_MULTIPLES if max(round(3 * gd), 1) == bottlenecks), None)
    if depth is None:
        raise JetsonDetectError("weights: {} bottlenecks in model.2 fit no standard depth multiple {}; pass the "
                                "model yaml with --cfg".format(bottlenecks, DEPTH_MULTIPLES))
    cfg = copy.deepcopy(template)
    anchors_px, _ = weights_anchors_px(weights)
    cfg.update(nc=no - 5, depth_multiple=depth, width_multiple=stem_out / 64.0,
               anchors=[[float(v) for v in level.reshape(-1)] for level in anchors_px])
    return cfg


def expected_tensors(spec: ModelSpec) -> Dict[str, int]:
    """Every tensor the builder reads, with its element count (``num_batches_tracked`` etc. are not read)."""
    out: Dict[str, int] = {}

    def conv(prefix: str, c_in: int, c_out: int, k: int) -> None:
        out[prefix + ".conv.weight"] = c_out * c_in * k * k
        for part in ("weight", "bias", "running_mean", "running_var"):
            out["{}.bn.{}".format(prefix, part)] = c_out

    for layer in spec.layers:
        p, h = layer.prefix, layer.hidden
        if layer.kind == "Conv":
            conv(p, layer.c_in, layer.c_out, layer.kernel)
        elif layer.kind == "Focus":
            conv(p + ".conv", 4 * layer.c_in, layer.c_out, layer.kernel)
        elif layer.kind == "SPP":
            conv(p + ".cv1", layer.c_in, h, 1)
            conv(p + ".cv2", (len(layer.pools) + 1) * h, layer.c_out, 1)
        elif layer.kind == "C3":
            conv(p + ".cv1", layer.c_in, h, 1)
            conv(p + ".cv2", layer.c_in, h, 1)
            conv(p + ".cv3", 2 * h, layer.c_out, 1)
            for j in range(layer.repeats):
                conv("{}.m.{}.cv1".format(p, j), h, h, 1)
                conv("{}.m.{}.cv2".format(p, j), h, h, 3)
        elif layer.kind == "SPPF":
            conv(p + ".cv1", layer.c_in, h, 1)
            conv(p + ".cv2", 4 * h, layer.c_out, 1)
        elif layer.kind == "Detect":
            for j, src in enumerate(layer.sources):
                c_in = spec.layers[src].c_out
                out["{}.m.{}.weight".format(p, j)] = layer.c_out * c_in
                out["{}.m.{}.bias".format(p, j)] = layer.c_out
            out[p + ".anchors"] = len(spec.anchors_px) * spec.num_anchors * 2
    return out


def check_weights(spec: ModelSpec, weights: Weights, where: str = "weights") -> None:
    """Refuse weights that disagree with the spec, naming the first tensor that disagrees and what it implies."""
    expected = expected_tensors(spec)
    det = spec.detect
    bias = det.prefix + ".m.0.bias"
    if bias in weights and weights[bias].size != det.c_out:
        raise JetsonDetectError("{}: tensor '{}' has {} values but the model yaml needs {} (the yaml says nc={}; "
                                "the weights imply nc={}): the yaml's nc disagrees with the weights".format(
                                    where, bias, weights[bias].size, det.c_out, spec.nc,
                                    weights[bias].size // spec.num_anchors - 5))
    for name, count in expected.items():
        if name not in weights:
            raise JetsonDetectError("{}: tensor '{}' is missing: the model yaml does not match these weights "
                                    "(omit --cfg to infer the model from the weights)".format(where, name))
        actual = weights[name].size
        if actual != count:
            raise JetsonDetectError("{}: tensor '{}' has {} values but the model yaml needs {}: the yaml's "
                                    "widths disagree with the weights".format(where, name, actual, count))
    used_layers = {"model.{}.".format(layer.number) for layer in spec.layers}
    extra = sorted(k for k in weights if k not in expected and not k.endswith(
        ("num_batches_tracked", ".anchor_grid", ".strides")) and
        any(k.startswith(u) for u in used_layers))
    if extra:
        raise JetsonDetectError("{}: tensor '{}' is not used by the model yaml ({} unused in all): the yaml's depth "
                                "disagrees with the weights".format(where, extra[0], len(extra)))
    stray = sorted(k for k in weights if not any(k.startswith(u) for u in used_layers))
    if stray:
        raise JetsonDetectError("{}: tensor '{}' belongs to no layer of the model yaml: the yaml has fewer layers "
                                "than the weights".format(where, stray[0]))
    anchors_w, strides_w = weights_anchors_px(weights)
    if not np.allclose(anchors_w, np.asarray(spec.anchors_px, np.float32), rtol=1e-3, atol=1e-2):
        raise JetsonDetectError("{}: tensor '{}.anchor_grid' holds anchors {} but the model yaml says {}".format(
            where, det.prefix, anchors_w.reshape(len(spec.anchors_px), -1).round(2).tolist(),
            [list(sum(level, ())) for level in spec.anchors_px]))
    if tuple(strides_w) != tuple(spec.strides):
        raise JetsonDetectError("{}: tensor '{}.strides' holds {} but the model yaml's layers give strides {}".format(
            where, det.prefix, list(strides_w), list(spec.strides)))


def resolve_spec(weights: Weights, cfg: Optional[Dict[str, Any]] = None, cfg_where: str = "model yaml",
                 names: Optional[Sequence[str]] = None, weights_where: str = "weights") -> ModelSpec:
    """The model spec for these weights: from ``cfg`` when given (and checked), else inferred from the weights."""
    inferred = cfg is None
    model_dict = infer_model_dict(weights) if cfg is None else cfg
    if names is None and not inferred and isinstance(model_dict.get("names"), (list, dict)):
        raw = model_dict["names"]
        names = [raw[k] for k in sorted(raw)] if isinstance(raw, dict) else list(raw)
    spec = parse_model(model_dict, "inferred model" if inferred else cfg_where)
    check_weights(spec, weights, weights_where)
    if names is not None:
        if len(names) != spec.nc:
            raise JetsonDetectError("{}: {} class names given but the model has nc={}: give one name per "
                                    "class".format(cfg_where if not inferred else weights_where, len(names), spec.nc))
        spec = spec._replace(names=tuple(str(n) for n in names))
    return spec
