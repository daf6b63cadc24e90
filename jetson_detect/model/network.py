"""``build_network``: the whole YOLOv5 network, block by block, into any object with the TensorRT network API.

The builder never creates the network itself: TensorRT's builder or the CPU twin hands one in, so the same code
path feeds both (and the CPU parity tests check the path TensorRT runs).
"""

from typing import Any, Callable, Dict, List, NamedTuple, Sequence

from ..errors import JetsonDetectError
from . import blocks
from .blocks import BuildContext, BuildOptions
from .decode_nms import DecodeNMSParams
from .spec import LayerSpec, ModelSpec
from .weights import Weights

INPUT_NAME = "images"
HEAD_NAMES = ("head_p3", "head_p4", "head_p5", "head_p6")  # as many as the model has levels


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


def _conv(ctx: BuildContext, spec: ModelSpec, layer: LayerSpec, inputs: Sequence[Any]) -> Any:
    return blocks.conv_bn_silu(ctx, inputs[0], layer.prefix, layer.c_in, layer.c_out, layer.kernel, layer.stride,
                               layer.padding)


def _focus(ctx: BuildContext, spec: ModelSpec, layer: LayerSpec, inputs: Sequence[Any]) -> Any:
    return blocks.focus(ctx, inputs[0], layer)


def _c3(ctx: BuildContext, spec: ModelSpec, layer: LayerSpec, inputs: Sequence[Any]) -> Any:
    return blocks.c3(ctx, inputs[0], layer)


def _spp(ctx: BuildContext, spec: ModelSpec, layer: LayerSpec, inputs: Sequence[Any]) -> Any:
    return blocks.spp(ctx, inputs[0], layer)


def _sppf(ctx: BuildContext, spec: ModelSpec, layer: LayerSpec, inputs: Sequence[Any]) -> Any:
    return blocks.sppf(ctx, inputs[0], layer)


def _upsample(ctx: BuildContext, spec: ModelSpec, layer: LayerSpec, inputs: Sequence[Any]) -> Any:
    return blocks.upsample(ctx, inputs[0], layer)


def _concat(ctx: BuildContext, spec: ModelSpec, layer: LayerSpec, inputs: Sequence[Any]) -> Any:
    return blocks.concat(ctx, inputs, layer.prefix + ".concat")


def _detect(ctx: BuildContext, spec: ModelSpec, layer: LayerSpec, inputs: Sequence[Any]) -> Any:
    return blocks.detect_heads(ctx, inputs, layer, [spec.layers[s].c_out for s in layer.sources])


# Module kind → the builder of its block; the Detect builder returns the list of raw head tensors.
BLOCK_BUILDERS: Dict[str, Callable[[BuildContext, ModelSpec, LayerSpec, Sequence[Any]], Any]] = {
    "Conv": _conv, "Focus": _focus, "C3": _c3, "SPP": _spp, "SPPF": _sppf, "Upsample": _upsample,
    "Concat": _concat, "Detect": _detect,
}


def build_network(spec: ModelSpec, weights: Weights, network: Any, trt: Any,
                  options: BuildOptions = BuildOptions(), *, compat: Any) -> BuiltNetwork:
    """Add every layer of ``spec`` to ``network`` and mark the plugin's outputs (and the heads if asked).

    ``compat`` spells the version-specific calls (see ``blocks``): ``jetson_detect.backends.trt_compat``.
    """
    stride_max = int(max(spec.strides))
    if options.input_h % stride_max or options.input_w % stride_max:
        raise JetsonDetectError("input size {}x{} must be a multiple of {} (the largest stride)".format(
            options.input_w, options.input_h, stride_max))
    ctx = BuildContext(network, trt, weights, options, compat)
    dtype = trt.float16 if options.weights_fp16 else trt.float32
    x = network.add_input(INPUT_NAME, dtype, (options.batch, 3, options.input_h, options.input_w))
    outputs: Dict[int, Any] = {-1: x}
    for layer in spec.layers:
        builder = BLOCK_BUILDERS.get(layer.kind)
        if builder is None:
            raise JetsonDetectError("layer {}: no builder for module '{}'".format(layer.number, layer.kind))
        outputs[layer.number] = builder(ctx, spec, layer, [outputs[s] for s in layer.sources])
    heads = outputs[spec.detect.number]
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
