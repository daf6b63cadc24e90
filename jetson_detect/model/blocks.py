"""One builder function per YOLOv5 block, written against the TensorRT network API.

Each function takes a ``BuildContext`` (the network, the ``trt`` module, the version adapter, the weights, the
options) and input tensors, adds layers, and returns output tensors. The same calls feed a real
``tensorrt.INetworkDefinition`` and the CPU twin ``jetson_detect.backends.onnx_network.OnnxNetwork``. Names follow
the reference code (CBR = its ``Conv``: conv + BatchNorm + SiLU; ``Focus``, ``C3``, ``Bottleneck``, ``SPP``,
``SPPF``, ``Detect``).

The few calls whose TensorRT spelling differs between versions (the nearest resize mode, plugin creation and the
plugin layer) come in through ``compat``, an object with ``resize_mode_nearest(trt)``,
``create_plugin(trt, name, version, namespace, fields)`` and ``add_plugin(trt, network, inputs, plugin)``: the
backend passes ``jetson_detect.backends.trt_compat``, so this package never imports a backend.
"""

from typing import Any, List, NamedTuple, Sequence, Tuple

import numpy as np

from ..errors import JetsonDetectError
from ..math.fold import YOLOV5_BN_EPS, fold_batchnorm, merge_parallel_convs
from .decode_nms import OUTPUT_NAMES, PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION, DecodeNMSParams, plugin_fields
from .spec import LayerSpec
from .weights import Weights


class BuildOptions(NamedTuple):
    """How to build: input size, batch, fusion switch, weight precision, and the decode/NMS settings."""

    input_h: int = 640
    input_w: int = 640
    batch: int = 1
    c3_fusion: bool = True  # merge C3's two parallel 1x1 convs into one conv
    weights_fp16: bool = False  # float16 weights and input (strongly typed FP16 on TensorRT 10/11)
    conf_thres: float = 0.25
    iou_thres: float = 0.45
    max_det: int = 300
    class_agnostic: bool = False
    pre_nms_top_k: int = 4096
    mark_heads: bool = False  # also expose the raw Detect-head tensors as outputs (kernel tests, debugging)
    bn_eps: float = YOLOV5_BN_EPS


class BuildContext(object):
    """What every block needs: the network under construction, the ``trt`` module and its version adapter
    ``compat``, the weights and options."""

    def __init__(self, network: Any, trt: Any, weights: Weights, options: BuildOptions, compat: Any) -> None:
        self.network = network
        self.trt = trt
        self.compat = compat
        self.weights = weights
        self.options = options
        self._keep: List[np.ndarray] = []  # TensorRT reads weight memory at build time, not at add time

    def tensor(self, name: str, count: int) -> np.ndarray:
        """A weights tensor by name, checked for its element count."""
        if name not in self.weights:
            raise JetsonDetectError("weights: tensor '{}' is missing".format(name))
        value = self.weights[name]
        if value.size != count:
            raise JetsonDetectError("weights: tensor '{}' has {} values, expected {}".format(name, value.size, count))
        return value

    def folded_conv(self, prefix: str, c_in: int, c_out: int, kernel: int) -> Tuple[np.ndarray, np.ndarray]:
        """The conv of a CBR block with its BatchNorm folded in: (weight [out, in, k, k], bias [out])."""
        weight = self.tensor(prefix + ".conv.weight", c_out * c_in * kernel * kernel).reshape(
            c_out, c_in, kernel, kernel)
        bn = [self.tensor("{}.bn.{}".format(prefix, part), c_out)
              for part in ("weight", "bias", "running_mean", "running_var")]
        return fold_batchnorm(weight, bn[0], bn[1], bn[2], bn[3], eps=self.options.bn_eps)

    def array(self, value: np.ndarray) -> np.ndarray:
        """Weights in the build precision, kept alive until the engine is built."""
        dtype = np.float16 if self.options.weights_fp16 else np.float32
        out = np.ascontiguousarray(value, dtype=dtype)
        self._keep.append(out)
        return out


def _named(layer: Any, name: str) -> Any:
    layer.name = name
    return layer


def convolution(ctx: BuildContext, x: Any, weight: np.ndarray, bias: np.ndarray, kernel: int, stride: int,
                padding: int, name: str) -> Any:
    """A plain convolution with bias (BatchNorm already folded in)."""
    layer = ctx.network.add_convolution_nd(x, int(weight.shape[0]), (kernel, kernel), ctx.array(weight),
                                           ctx.array(bias))
    layer.stride_nd = (stride, stride)
    layer.padding_nd = (padding, padding)
    return _named(layer, name).get_output(0)


def silu(ctx: BuildContext, x: Any, name: str) -> Any:
    """SiLU as x·sigmoid(x): TensorRT has no SiLU activation (and fuses this pattern with the conv)."""
    sig = _named(ctx.network.add_activation(x, ctx.trt.ActivationType.SIGMOID), name + ".sigmoid")
    return _named(ctx.network.add_elementwise(x, sig.get_output(0), ctx.trt.ElementWiseOperation.PROD),
                  name + ".silu").get_output(0)


def conv_bn_silu(ctx: BuildContext, x: Any, prefix: str, c_in: int, c_out: int, kernel: int, stride: int = 1,
                 padding: int = -1) -> Any:
    """CBR block (the reference ``Conv``): conv with folded BatchNorm, then SiLU."""
    weight, bias = ctx.folded_conv(prefix, c_in, c_out, kernel)
    pad = kernel // 2 if padding < 0 else padding
    return silu(ctx, convolution(ctx, x, weight, bias, kernel, stride, pad, prefix), prefix)


def bottleneck(ctx: BuildContext, x: Any, prefix: str, channels: int, shortcut: bool) -> Any:
    """Bottleneck: 1x1 CBR, 3x3 CBR, plus the input when ``shortcut``."""
    y = conv_bn_silu(ctx, x, prefix + ".cv1", channels, channels, 1)
    y = conv_bn_silu(ctx, y, prefix + ".cv2", channels, channels, 3)
    if not shortcut:
        return y
    return _named(ctx.network.add_elementwise(x, y, ctx.trt.ElementWiseOperation.SUM), prefix + ".add").get_output(0)


def channel_slice(ctx: BuildContext, x: Any, start: int, count: int, name: str) -> Any:
    """Channels [start, start+count) of an NCHW tensor."""
    b, _, h, w = tuple(x.shape)
    return _named(ctx.network.add_slice(x, (0, start, 0, 0), (b, count, h, w), (1, 1, 1, 1)), name).get_output(0)


def focus(ctx: BuildContext, x: Any, layer: LayerSpec) -> Any:
    """Focus (v5.0 stem): space-to-depth by 2 as four strided slices in the reference's order, concat, then CBR."""
    b, c, h, w = tuple(x.shape)
    # x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]
    parts = [_named(ctx.network.add_slice(x, (0, 0, dy, dx), (b, c, h // 2, w // 2), (1, 1, 2, 2)),
                    "{}.slice{}".format(layer.prefix, i)).get_output(0)
             for i, (dy, dx) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1)))]
    return conv_bn_silu(ctx, concat(ctx, parts, layer.prefix + ".cat"), layer.prefix + ".conv", 4 * c,
                        layer.c_out, layer.kernel, layer.stride, layer.padding)


def concat(ctx: BuildContext, tensors: Sequence[Any], name: str) -> Any:
    """Channel concatenation (axis set explicitly: TensorRT's default axis differs between versions)."""
    layer = ctx.network.add_concatenation(list(tensors))
    layer.axis = 1
    return _named(layer, name).get_output(0)


def c3(ctx: BuildContext, x: Any, layer: LayerSpec) -> Any:
    """C3: two parallel 1x1 CBRs (merged into one conv when fusion is on), bottlenecks on the first, concat, 1x1 CBR."""
    p, h = layer.prefix, layer.hidden
    if ctx.options.c3_fusion:
        merged_w, merged_b = merge_parallel_convs([ctx.folded_conv(p + ".cv1", layer.c_in, h, 1),
                                                   ctx.folded_conv(p + ".cv2", layer.c_in, h, 1)])
        both = silu(ctx, convolution(ctx, x, merged_w, merged_b, 1, 1, 0, p + ".cv12"), p + ".cv12")
        a = channel_slice(ctx, both, 0, h, p + ".cv1.slice")
        b = channel_slice(ctx, both, h, h, p + ".cv2.slice")
    else:
        a = conv_bn_silu(ctx, x, p + ".cv1", layer.c_in, h, 1)
        b = conv_bn_silu(ctx, x, p + ".cv2", layer.c_in, h, 1)
    for j in range(layer.repeats):
        a = bottleneck(ctx, a, "{}.m.{}".format(p, j), h, layer.shortcut)
    return conv_bn_silu(ctx, concat(ctx, [a, b], p + ".cat"), p + ".cv3", 2 * h, layer.c_out, 1)


def max_pool(ctx: BuildContext, x: Any, kernel: int, name: str) -> Any:
    """Max pooling with stride 1 and 'same' padding (padded cells are −∞ in both TensorRT and ONNX)."""
    layer = ctx.network.add_pooling_nd(x, ctx.trt.PoolingType.MAX, (kernel, kernel))
    layer.stride_nd = (1, 1)
    layer.padding_nd = (kernel // 2, kernel // 2)
    return _named(layer, name).get_output(0)


def sppf(ctx: BuildContext, x: Any, layer: LayerSpec) -> Any:
    """SPPF: 1x1 CBR, three chained max pools, concat of all four, 1x1 CBR."""
    p, h = layer.prefix, layer.hidden
    y = [conv_bn_silu(ctx, x, p + ".cv1", layer.c_in, h, 1)]
    for i in range(3):
        y.append(max_pool(ctx, y[-1], layer.kernel, "{}.m{}".format(p, i)))
    return conv_bn_silu(ctx, concat(ctx, y, p + ".cat"), p + ".cv2", 4 * h, layer.c_out, 1)


def spp(ctx: BuildContext, x: Any, layer: LayerSpec) -> Any:
    """SPP (v5.0): 1x1 CBR, parallel max pools of each kernel (5, 9, 13), concat with the input, 1x1 CBR."""
    p, h = layer.prefix, layer.hidden
    y = conv_bn_silu(ctx, x, p + ".cv1", layer.c_in, h, 1)
    pooled = [max_pool(ctx, y, k, "{}.m{}".format(p, i)) for i, k in enumerate(layer.pools)]
    return conv_bn_silu(ctx, concat(ctx, [y] + pooled, p + ".cat"), p + ".cv2", (len(layer.pools) + 1) * h,
                        layer.c_out, 1)


def upsample(ctx: BuildContext, x: Any, layer: LayerSpec) -> Any:
    """Nearest-neighbour upsampling by scales (asymmetric/floor defaults equal PyTorch's nearest)."""
    resize = ctx.network.add_resize(x)
    resize.resize_mode = ctx.compat.resize_mode_nearest(ctx.trt)
    resize.scales = [1.0, 1.0, float(layer.scale), float(layer.scale)]
    return _named(resize, layer.prefix + ".upsample").get_output(0)


def detect_heads(ctx: BuildContext, inputs: Sequence[Any], layer: LayerSpec, in_channels: Sequence[int]) -> List[Any]:
    """The Detect convolutions: one 1x1 conv with bias per level, giving raw logits (B, na·(5+nc), H, W)."""
    heads = []
    for j, (x, c_in) in enumerate(zip(inputs, in_channels)):
        prefix = "{}.m.{}".format(layer.prefix, j)
        weight = ctx.tensor(prefix + ".weight", layer.c_out * c_in).reshape(layer.c_out, c_in, 1, 1)
        bias = ctx.tensor(prefix + ".bias", layer.c_out)
        heads.append(convolution(ctx, x, weight, bias, 1, 1, 0, prefix))
    return heads


def decode_nms(ctx: BuildContext, heads: Sequence[Any], params: DecodeNMSParams) -> List[Any]:
    """Decode + NMS as one ``YoloDecodeNMS`` plugin call; returns num_detections, boxes, scores, classes."""
    plugin = ctx.compat.create_plugin(ctx.trt, PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE, plugin_fields(params))
    layer = _named(ctx.compat.add_plugin(ctx.trt, ctx.network, heads, plugin), PLUGIN_NAME)
    outputs = [layer.get_output(i) for i in range(len(OUTPUT_NAMES))]
    for tensor, name in zip(outputs, OUTPUT_NAMES):
        tensor.name = name
    return outputs
