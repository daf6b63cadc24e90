"""The ``YoloDecodeNMS`` plugin contract: its name, fields and outputs, shared by the builder, the CPU twin
and the C++/CUDA plugin (``jetson_detect/plugin``), so all three agree by construction.

Inputs: one raw Detect-head tensor (B, na·(5+nc), H, W) per level, P3 → P5 (P5 models) or P3 → P6 (P6).
Outputs: ``num_detections`` (B, 1) int32, ``boxes`` (B, K, 4) float32 xyxy in input pixels, ``scores`` (B, K)
float32, ``classes`` (B, K) int32; rows past ``num_detections`` are zero.
"""

import math
from typing import List, NamedTuple, Sequence, Tuple

import numpy as np

from ..errors import JetsonDetectError

PLUGIN_NAME = "YoloDecodeNMS"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""
OUTPUT_NAMES = ("num_detections", "boxes", "scores", "classes")
DEFAULT_PRE_NMS_TOP_K = 4096
# The C++ creator's limits (yolo_decode_nms_config.h / yolo_decode_nms_launch.h); a test compares both sides.
MAX_PRE_NMS_TOP_K = 16384
MAX_LEVELS = 4
MAX_ANCHORS_PER_LEVEL = 4


class DecodeNMSParams(NamedTuple):
    """Everything the plugin needs; serialized into the engine."""

    nc: int
    anchors_px: Tuple[Tuple[Tuple[float, float], ...], ...]  # [level][anchor] = (w, h) in input pixels
    strides: Tuple[float, ...]
    input_h: int
    input_w: int
    conf_thres: float = 0.25
    iou_thres: float = 0.45
    max_det: int = 300
    class_agnostic: bool = False
    pre_nms_top_k: int = DEFAULT_PRE_NMS_TOP_K

    @property
    def num_anchors(self) -> int:
        return len(self.anchors_px[0])

    def anchors_array(self) -> np.ndarray:
        """Anchors as a (levels, na, 2) float32 array."""
        return np.asarray(self.anchors_px, dtype=np.float32)


def check_params(params: DecodeNMSParams) -> None:
    """Refuse what the C++ creator would refuse, with the same ranges, as a one-line error naming the field
    (TensorRT itself would only return a null plugin)."""
    def fail(field: str, rule: str, value: object) -> None:
        raise JetsonDetectError("decode+NMS plugin field {} must be {}, got {}".format(field, rule, value))

    # The creator receives float32 (plugin_fields): judge the values it will see, not their float64 originals.
    params = params._replace(
        anchors_px=tuple(tuple((_f32(w), _f32(h)) for w, h in level) for level in params.anchors_px),
        strides=tuple(_f32(s) for s in params.strides), conf_thres=_f32(params.conf_thres),
        iou_thres=_f32(params.iou_thres))
    levels = len(params.strides)
    if params.nc < 1:
        fail("nc", ">= 1", params.nc)
    if not 1 <= levels <= MAX_LEVELS:
        fail("strides", "1..{} values".format(MAX_LEVELS), levels)
    if any(len(level) != len(params.anchors_px[0]) for level in params.anchors_px) or len(params.anchors_px) != levels:
        fail("anchors", "num_anchors (w, h) pairs for each of the {} levels".format(levels), params.anchors_px)
    if not 1 <= params.num_anchors <= MAX_ANCHORS_PER_LEVEL:
        fail("num_anchors", "1..{}".format(MAX_ANCHORS_PER_LEVEL), params.num_anchors)
    if not all(math.isfinite(v) and v > 0 for level in params.anchors_px for pair in level for v in pair):
        fail("anchors", "finite and > 0", params.anchors_px)
    if not all(math.isfinite(s) and s > 0 for s in params.strides):
        fail("strides", "finite and > 0", params.strides)
    if params.input_h < 1 or params.input_w < 1:
        fail("input_h/input_w", ">= 1", "{}x{}".format(params.input_h, params.input_w))
    if not 0.0 <= params.conf_thres < 1.0:  # NaN fails both comparisons
        fail("conf_thres", "in [0, 1)", params.conf_thres)
    if not 0.0 <= params.iou_thres <= 1.0:
        fail("iou_thres", "in [0, 1]", params.iou_thres)
    if params.max_det < 1:
        fail("max_det", ">= 1", params.max_det)
    if not 1 <= params.pre_nms_top_k <= MAX_PRE_NMS_TOP_K:
        fail("pre_nms_top_k", "1..{}".format(MAX_PRE_NMS_TOP_K), params.pre_nms_top_k)


def _f32(value: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def plugin_fields(params: DecodeNMSParams) -> List[Tuple[str, np.ndarray]]:
    """The plugin's fields as (name, array) pairs with the exact dtypes the C++ creator reads."""
    return [
        ("nc", np.array([params.nc], np.int32)),
        ("num_anchors", np.array([params.num_anchors], np.int32)),
        ("anchors", params.anchors_array().reshape(-1)),
        ("strides", np.asarray(params.strides, np.float32)),
        ("input_h", np.array([params.input_h], np.int32)),
        ("input_w", np.array([params.input_w], np.int32)),
        ("conf_thres", np.array([params.conf_thres], np.float32)),
        ("iou_thres", np.array([params.iou_thres], np.float32)),
        ("max_det", np.array([params.max_det], np.int32)),
        ("class_agnostic", np.array([int(params.class_agnostic)], np.int32)),
        ("pre_nms_top_k", np.array([params.pre_nms_top_k], np.int32)),
    ]


def params_from_fields(fields: Sequence[Tuple[str, np.ndarray]]) -> DecodeNMSParams:
    """Inverse of ``plugin_fields`` (used by the CPU twin, which receives the same field collection)."""
    f = {name: np.asarray(value) for name, value in fields}
    strides = tuple(float(s) for s in f["strides"])
    na = int(f["num_anchors"][0])
    anchors = f["anchors"].astype(np.float32).reshape(len(strides), na, 2)
    return DecodeNMSParams(
        nc=int(f["nc"][0]),
        anchors_px=tuple(tuple((float(w), float(h)) for w, h in level) for level in anchors),
        strides=strides, input_h=int(f["input_h"][0]), input_w=int(f["input_w"][0]),
        conf_thres=float(f["conf_thres"][0]), iou_thres=float(f["iou_thres"][0]),
        max_det=int(f["max_det"][0]), class_agnostic=bool(int(f["class_agnostic"][0])),
        pre_nms_top_k=int(f["pre_nms_top_k"][0]))
