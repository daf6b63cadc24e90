"""The YOLOv5 architecture as data: read from a model yaml or inferred from the weights, checked against them.

Supported: YOLOv5 v6.0+ P5 models (6x6 stem Conv, C3, SPPF, nearest Upsample, Concat, Detect over three levels)
for any depth/width multiple and any class count. ``parse_model`` follows the reference ``parse_model`` rules
(``make_divisible`` widths, rounded depths), so a yaml means exactly what it means to the reference code.
"""

import copy
import math
import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..errors import JetsonDetectError
from .weights import Weights

SUPPORTED = ("Conv", "C3", "SPPF", "Upsample", "Concat", "Detect")
OLD_MODULES = {"Focus": "YOLOv5 v5.0 and older (Focus stem)", "SPP": "YOLOv5 v5.0 and older (SPP)"}
P5_STRIDES = (8.0, 16.0, 32.0)
DEPTH_MULTIPLES = (0.33, 0.67, 1.0, 1.33)

# The YOLOv5 v6.0+ P5 layout shared by n/s/m/l/x; only the multiples, nc and anchors differ between models.
P5_TEMPLATE = {
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [[-1, 1, "Conv", [64, 6, 2, 2]], [-1, 1, "Conv", [128, 3, 2]], [-1, 3, "C3", [128]],
                 [-1, 1, "Conv", [256, 3, 2]], [-1, 6, "C3", [256]], [-1, 1, "Conv", [512, 3, 2]],
                 [-1, 9, "C3", [512]], [-1, 1, "Conv", [1024, 3, 2]], [-1, 3, "C3", [1024]],
                 [-1, 1, "SPPF", [1024, 5]]],
    "head": [[-1, 1, "Conv", [512, 1, 1]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]], [[-1, 6], 1, "Concat", [1]],
             [-1, 3, "C3", [512, False]], [-1, 1, "Conv", [256, 1, 1]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
             [[-1, 4], 1, "Concat", [1]], [-1, 3, "C3", [256, False]], [-1, 1, "Conv", [256, 3, 2]],
             [[-1, 14], 1, "Concat", [1]], [-1, 3, "C3", [512, False]], [-1, 1, "Conv", [512, 3, 2]],
             [[-1, 10], 1, "Concat", [1]], [-1, 3, "C3", [1024, False]],
             [[17, 20, 23], 1, "Detect", ["nc", "anchors"]]],
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

    @property
    def prefix(self) -> str:
        return "model.{}".format(self.number)

    @property
    def hidden(self) -> int:
        """Hidden width: C3's c_ = c_out/2, SPPF's c_ = c_in/2."""
        return self.c_in // 2 if self.kind == "SPPF" else int(self.c_out * 0.5)


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

    @property
    def outputs_per_anchor(self) -> int:
        return 5 + self.nc


def make_divisible(x: float, divisor: int = 8) -> int:
    """Round a channel count up to a multiple of ``divisor``, as the reference does."""
    return int(math.ceil(x / divisor) * divisor)


def _module_kind(name: str, where: str) -> str:
    kind = name.split(".")[-1]
    if kind in OLD_MODULES:
        raise JetsonDetectError("{}: module '{}' belongs to {}, which is unsupported: use a YOLOv5 v6.0+ model "
                                "(6x6 Conv stem, SPPF)".format(where, kind, OLD_MODULES[kind]))
    if kind not in SUPPORTED:
        raise JetsonDetectError("{}: module '{}' is unsupported; supported: {}".format(
            where, kind, ", ".join(SUPPORTED)))
    return kind


def parse_model(cfg: Dict[str, Any], where: str = "model yaml",
                names: Optional[Sequence[str]] = None) -> ModelSpec:
    """Turn a YOLOv5 model dict (as in ``yolov5s.yaml``) into a ``ModelSpec`` with the reference's rules."""
    for key in ("nc", "depth_multiple", "width_multiple", "anchors", "backbone", "head"):
        if key not in cfg:
            raise JetsonDetectError("{}: missing key '{}'".format(where, key))
    nc, gd, gw = int(cfg["nc"]), float(cfg["depth_multiple"]), float(cfg["width_multiple"])
    anchors = cfg["anchors"]
    if not isinstance(anchors, list) or not all(isinstance(a, list) and len(a) % 2 == 0 for a in anchors):
        raise JetsonDetectError("{}: 'anchors' must be a list of [w1, h1, w2, h2, ...] lists in pixels".format(where))
    if len(anchors) != 3:
        raise JetsonDetectError("{}: {} detection levels: only P5 models (3 levels, strides 8/16/32) are "
                                "supported, not P6".format(where, len(anchors)))
    na = len(anchors[0]) // 2
    no = na * (nc + 5)
    channels: List[int] = []
    layers: List[LayerSpec] = []
    for i, entry in enumerate(list(cfg["backbone"]) + list(cfg["head"])):
        src, n, module, args = entry
        kind = _module_kind(str(module), "{} layer {}".format(where, i))
        sources = tuple(s if s >= 0 else i + s for s in (src if isinstance(src, list) else [src]))
        if i == 0:
            sources = (-1,)
        c_in = 3 if i == 0 else channels[sources[0]]
        n = max(round(n * gd), 1) if n > 1 else n
        if kind in ("Conv", "C3", "SPPF"):
            c_out = make_divisible(args[0] * gw, 8)
            if kind == "Conv":
                k = int(args[1]) if len(args) > 1 else 1
                s = int(args[2]) if len(args) > 2 else 1
                p = int(args[3]) if len(args) > 3 and args[3] is not None else k // 2
                layer = LayerSpec(i, sources, kind, c_in, c_out, k, s, p)
            elif kind == "C3":
                shortcut = bool(args[1]) if len(args) > 1 else True
                layer = LayerSpec(i, sources, kind, c_in, c_out, repeats=n, shortcut=shortcut)
            else:
                k = int(args[1]) if len(args) > 1 else 5
                layer = LayerSpec(i, sources, kind, c_in, c_out, kernel=k, padding=k // 2)
        elif kind == "Upsample":
            mode = args[2] if len(args) > 2 else "nearest"
            if mode != "nearest":
                raise JetsonDetectError("{} layer {}: Upsample mode '{}' is unsupported (nearest only)".format(
                    where, i, mode))
            c_out = c_in
            layer = LayerSpec(i, sources, kind, c_in, c_out, scale=int(args[1]))
        elif kind == "Concat":
            c_out = sum(channels[s] for s in sources)
            layer = LayerSpec(i, sources, kind, c_in, c_out)
        else:
            c_out = no
            layer = LayerSpec(i, sources, kind, c_in, c_out)
        channels.append(c_out)
        layers.append(layer)
    if layers[-1].kind != "Detect":
        raise JetsonDetectError("{}: the last layer must be Detect".format(where))
    anchors_px = tuple(tuple((float(a[j]), float(a[j + 1])) for j in range(0, len(a), 2)) for a in anchors)
    class_names = tuple(names) if names else tuple(default_names(nc))
    if len(class_names) != nc:
        raise JetsonDetectError("{}: {} class names given for nc={}".format(where, len(class_names), nc))
    return ModelSpec(tuple(layers), nc, anchors_px, P5_STRIDES, gd, gw, class_names)


def default_names(nc: int) -> List[str]:
    """COCO names for 80-class models, ``class0``… otherwise."""
    if nc == 80:
        from .coco_names import COCO_NAMES
        return list(COCO_NAMES)
    return ["class{}".format(i) for i in range(nc)]


def load_model_yaml(path: str) -> Dict[str, Any]:
    """Read a model yaml, with a one-line error for a missing or malformed file."""
    import yaml
    if not os.path.isfile(path):
        raise JetsonDetectError("{}: no such model yaml: pass one of configs/models/*.yaml with --cfg".format(path))
    try:
        with open(path, "r", encoding="utf-8") as handle:
            cfg = yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        raise JetsonDetectError("{}: not valid YAML ({})".format(path, str(exc).splitlines()[0])) from None
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
    strides = tuple(float(s) for s in weights.get(prefix + ".strides", np.asarray(P5_STRIDES[:nl])))
    if prefix + ".anchor_grid" in weights:
        grid = weights[prefix + ".anchor_grid"].reshape(nl, na, 2)
    else:
        grid = weights[prefix + ".anchors"].reshape(nl, na, 2) * np.asarray(strides, np.float32)[:, None, None]
    return grid.astype(np.float32), strides


def infer_model_dict(weights: Weights) -> Dict[str, Any]:
    """Build the model dict of the P5 layout whose widths, depths, nc and anchors fit these weights."""
    if "model.0.conv.conv.weight" in weights:
        raise JetsonDetectError("weights: 'model.0.conv.conv.weight' is a Focus stem: YOLOv5 v5.0 and older are "
                                "unsupported; use a v6.0+ model (6x6 Conv stem, SPPF)")
    if "model.0.conv.weight" not in weights or "model.0.bn.weight" not in weights:
        raise JetsonDetectError("weights: no 'model.0.conv.weight'/'model.0.bn.weight': not YOLOv5 weights")
    stem_out = weights["model.0.bn.weight"].size
    if weights["model.0.conv.weight"].size != stem_out * 3 * 6 * 6:
        raise JetsonDetectError("weights: the stem 'model.0.conv.weight' is not a 6x6 conv from 3 channels: "
                                "YOLOv5 v5.0 and older (Focus stem) are unsupported; use a v6.0+ model")
    prefix, nl, na, no = _detect_tensors(weights)
    if prefix != "model.24" or nl != 3:
        raise JetsonDetectError("weights: Detect is '{}' over {} levels: only P5 models (model.24, 3 levels) "
                                "are supported, not P6".format(prefix, nl))
    bottlenecks = len([k for k in weights if k.startswith("model.2.m.") and k.endswith(".cv1.conv.weight")])
    depth = next((gd for gd in DEPTH_MULTIPLES if max(round(3 * gd), 1) == bottlenecks), None)
    if depth is None:
        raise JetsonDetectError("weights: {} bottlenecks in model.2 fit no standard depth multiple {}; pass the "
                                "model yaml with --cfg".format(bottlenecks, DEPTH_MULTIPLES))
    cfg = copy.deepcopy(P5_TEMPLATE)
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
        raise JetsonDetectError("{}: tensor '{}.strides' holds {} but a P5 model has strides {}".format(
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
