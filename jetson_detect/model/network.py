"""``build_network``: the whole YOLOv5 network, block by block, into any object with the TensorRT network API.

The builder never creates the network itself: TensorRT's builder or the CPU twin hands one in, so the same code
path feeds both (and the CPU parity tests check the path TensorRT runs).
"""

from typing import Any, Dict, List, NamedTuple

from ..errors import JetsonDetectError
from . import blocks
from .blocks import BuildContext, BuildOptions
from .decode_nms import DecodeNMSParams
from .spec import ModelSpec
from .weights import Weights

INPUT_NAME = "images"
HEAD_NAMES = ("head_p3", "head_p4", "head_p5")


class BuiltNetwork(NamedTuple):
    """Names of what ``build_network`` marked as inputs and outputs, and the plugin parameters it used."""

    input_name: str
    output_names: List[str]
    decode_params: DecodeNMSParams


def decode_params(spec: ModelSpec, options: BuildOptions) -> DecodeNMSParams:
    """The plugin parameters for this model and these options."""
    return DecodeNMSParams(spec.nc, spec.anchors_px, spec.strides, options.input_h, options.input_w,
                           options.conf_thres, options.iou_thres, options.max_det, options.class_agnostic,
                           options.pre_nms_top_k)


def build_network(spec: ModelSpec, weights: Weights, network: Any, trt: Any,
                  options: BuildOptions = BuildOptions()) -> BuiltNetwork:
    """Add every layer of ``spec`` to ``network`` and mark the plugin's outputs (and the heads if asked)."""
    stride_max = int(max(spec.strides))
    if options.input_h % stride_max or options.input_w % stride_max:
        raise JetsonDetectError("input size {}x{} must be a multiple of {} (the largest stride)".format(
            options.input_w, options.input_h, stride_max))
    ctx = BuildContext(network, trt, weights, options)
    dtype = trt.float16 if options.weights_fp16 else trt.float32
    x = network.add_input(INPUT_NAME, dtype, (options.batch, 3, options.input_h, options.input_w))
    outputs: Dict[int, Any] = {}
    heads: List[Any] = []
    for layer in spec.layers:
        inp = x if layer.sources == (-1,) else outputs[layer.sources[0]]
        if layer.kind == "Conv":
            y = blocks.conv_bn_silu(ctx, inp, layer.prefix, layer.c_in, layer.c_out, layer.kernel, layer.stride,
                                    layer.padding)
        elif layer.kind == "C3":
            y = blocks.c3(ctx, inp, layer)
        elif layer.kind == "SPPF":
            y = blocks.sppf(ctx, inp, layer)
        elif layer.kind == "Upsample":
            y = blocks.upsample(ctx, inp, layer)
        elif layer.kind == "Concat":
            y = blocks.concat(ctx, [outputs[s] for s in layer.sources], layer.prefix + ".concat")
        else:
            heads = blocks.detect_heads(ctx, [outputs[s] for s in layer.sources], layer,
                                        [spec.layers[s].c_out for s in layer.sources])
            continue
        outputs[layer.number] = y
    params = decode_params(spec, options)
    results = blocks.decode_nms(ctx, heads, params)
    names = []
    for tensor in results:
        network.mark_output(tensor)
        names.append(tensor.name)
    if options.mark_heads:
        for tensor, name in zip(heads, HEAD_NAMES):
            tensor.name = name
            network.mark_output(tensor)
            names.append(name)
    return BuiltNetwork(INPUT_NAME, names, params)
