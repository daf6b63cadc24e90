"""``YoloDecodeNMS`` for the CPU twin: the decode as ONNX ops, the NMS as the NumPy reference.

The decode runs inside ONNX Runtime (vectorised, and exposed as the graph output ``decoded`` so tests can compare
candidates with the reference before NMS); the NMS is ``jetson_detect.math.nms`` with ``max_nms`` = the plugin's
``pre_nms_top_k``, producing the plugin's fixed-size outputs exactly as the CUDA plugin does.
"""

from typing import Any, List, Sequence, Tuple

import numpy as np

from ..math.nms import non_max_suppression
from ..model.decode_nms import PLUGIN_NAME, PLUGIN_VERSION, DecodeNMSParams, params_from_fields
from . import onnx_network as onnx_twin

DECODED_NAME = "decoded"


class CpuYoloDecodeNMS(onnx_twin.CpuPlugin):
    """Inputs: raw heads (B, na·(5+nc), H, W) per level. Outputs: num_detections, boxes, scores, classes."""

    num_outputs = 4

    def __init__(self, params: DecodeNMSParams) -> None:
        self.params = params

    def output_shapes(self, input_shapes: Sequence[Tuple[int, ...]]) -> List[Tuple[int, ...]]:
        b, k = int(input_shapes[0][0]), self.params.max_det
        return [(b, 1), (b, k, 4), (b, k), (b, k)]

    def output_dtypes(self) -> List[str]:
        return [onnx_twin.DataType.INT32, onnx_twin.DataType.FLOAT, onnx_twin.DataType.FLOAT, onnx_twin.DataType.INT32]

    def emit_device(self, em: Any, input_names: Sequence[str],
                    input_shapes: Sequence[Tuple[int, ...]]) -> List[Tuple[str, Tuple[int, ...]]]:
        p = self.params
        na, no = p.num_anchors, p.nc + 5
        anchors = p.anchors_array()
        levels = []
        total = 0
        for level, (name, shape, stride) in enumerate(zip(input_names, input_shapes, p.strides)):
            b, c, h, w = (int(d) for d in shape)
            if c != na * no:
                raise ValueError("head {} has {} channels, expected {}".format(level, c, na * no))
            tag = "decode{}".format(level)
            t = [em.unique(tag + s) for s in (".s", ".r", ".t", ".xy", ".wh", ".rest", ".xy2", ".xy3", ".wh2",
                                               ".wh3", ".cat", ".out")]
            # Sigmoid first, straight on the convolution's output: it commutes with the reshape and transpose
            # (the same values, bit for bit), and there ONNX Runtime fuses it into the convolution.
            em.node("Sigmoid", [name], [t[0]])
            em.node("Reshape", [t[0], em.constant(np.array([b, na, no, h, w], np.int64))], [t[1]])
            em.node("Transpose", [t[1]], [t[2]], perm=[0, 1, 3, 4, 2])
            em.node("Split", [t[2], em.constant(np.array([2, 2, no - 4], np.int64))], [t[3], t[4], t[5]], axis=-1)
            gy, gx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
            offset = ((np.stack([gx, gy], axis=-1) - np.float32(0.5)) * np.float32(stride)).reshape(1, 1, h, w, 2)
            # xy = (2σ − 0.5 + grid)·stride, written as σ·(2·stride) + (grid − 0.5)·stride
            em.node("Mul", [t[3], em.constant(np.array(2 * stride, np.float32))], [t[6]])
            em.node("Add", [t[6], em.constant(offset.astype(np.float32))], [t[7]])
            # wh = (2σ)²·anchor, written as σ²·(4·anchor); the anchor constant is stored at full size because ONNX
            # Runtime's broadcast of a (1, na, 1, 1, 2) operand is 4x slower than a same-shape multiply
            em.node("Mul", [t[4], t[4]], [t[8]])
            wh_scale = np.broadcast_to((4 * anchors[level]).reshape(1, na, 1, 1, 2), (1, na, h, w, 2))
            em.node("Mul", [t[8], em.constant(np.ascontiguousarray(wh_scale, dtype=np.float32))], [t[9]])
            em.node("Concat", [t[7], t[9], t[5]], [t[10]], axis=-1)
            em.node("Reshape", [t[10], em.constant(np.array([b, na * h * w, no], np.int64))], [t[11]])
            levels.append(t[11])
            total += na * h * w
        em.node("Concat", levels, [DECODED_NAME], axis=1)
        return [(DECODED_NAME, (int(input_shapes[0][0]), total, no))]

    def run_host(self, device_values: Sequence[np.ndarray]) -> List[np.ndarray]:
        decoded = device_values[0]
        p = self.params
        batch, k = decoded.shape[0], p.max_det
        num = np.zeros((batch, 1), np.int32)
        boxes = np.zeros((batch, k, 4), np.float32)
        scores = np.zeros((batch, k), np.float32)
        classes = np.zeros((batch, k), np.int32)
        for i in range(batch):
            det = non_max_suppression(decoded[i], p.conf_thres, p.iou_thres, p.max_det, p.class_agnostic,
                                      max_nms=p.pre_nms_top_k)
            n = len(det)
            num[i, 0] = n
            boxes[i, :n], scores[i, :n], classes[i, :n] = det.boxes, det.scores, det.class_ids
        return [num, boxes, scores, classes]


def register(registry: Any) -> None:
    """Add the CPU ``YoloDecodeNMS`` creator to the twin's registry."""
    registry.register_creator(onnx_twin.PluginCreator(
        PLUGIN_NAME, PLUGIN_VERSION, "", lambda fields: CpuYoloDecodeNMS(params_from_fields(fields))), "")
