"""The CPU twin of the TensorRT network API: the subset ``build_network`` uses, emitted as an ONNX graph.

This module stands in for the ``tensorrt`` module (enums, plugin registry) and for ``INetworkDefinition``
(``OnnxNetwork``). Each call follows the semantics TensorRT documents (``../shared/TRT_COMPAT.md`` §3): kernels in
GKCRS order, symmetric ``padding_nd``, max-pool padding as −∞, resize scales per dimension with asymmetric/floor
nearest, concatenation axis defaulting to C. Layer properties may be set after
the ``add_*`` call, as in TensorRT, so ONNX nodes are emitted only at ``to_onnx`` time.

Plugins run in two parts: ONNX ops on the device side (for ``YoloDecodeNMS``: the decode, exposed as the graph
output ``decoded``) and a NumPy host part after ONNX Runtime (the NMS), giving the plugin's exact outputs.
"""

from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import JetsonDetectError

__version__ = "10.0.0"  # the TensorRT API level this twin follows (10.x names)

Shape = Tuple[int, ...]


class DataType(object):
    FLOAT = "float32"
    HALF = "float16"
    INT32 = "int32"
    INT8 = "int8"


float32 = DataType.FLOAT
float16 = DataType.HALF
int32 = DataType.INT32
int8 = DataType.INT8


class Weights(object):
    """``trt.Weights()``: empty weights, for a convolution whose kernel comes from ``set_input(1, tensor)``."""

    def __init__(self, value: Optional[np.ndarray] = None) -> None:
        self.value = value


class ActivationType(object):
    RELU = "Relu"
    SIGMOID = "Sigmoid"
    TANH = "Tanh"


class ElementWiseOperation(object):
    SUM = "Add"
    PROD = "Mul"
    SUB = "Sub"
    DIV = "Div"
    MAX = "Max"
    MIN = "Min"


class PoolingType(object):
    MAX = "MaxPool"
    AVERAGE = "AveragePool"


class InterpolationMode(object):
    NEAREST = "nearest"
    LINEAR = "linear"


class PluginFieldType(object):
    FLOAT32 = "float32"
    INT32 = "int32"


class PluginField(object):
    """A named plugin parameter, as ``trt.PluginField``."""

    def __init__(self, name: str, data: np.ndarray, type: str) -> None:  # noqa: A002 - TensorRT's keyword
        self.name = name
        self.data = np.asarray(data)
        self.type = type


class PluginFieldCollection(list):
    """A list of ``PluginField``, as ``trt.PluginFieldCollection``."""


class _Emitter(object):
    """Collects ONNX nodes and initializers while the layers are emitted."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper
        self.helper = helper
        self.numpy_helper = numpy_helper
        self.nodes: List[Any] = []
        self.initializers: List[Any] = []
        self._count = 0

    def unique(self, stem: str) -> str:
        self._count += 1
        return "{}__{}".format(stem, self._count)

    def constant(self, value: np.ndarray, stem: str = "const") -> str:
        name = self.unique(stem)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: Sequence[str], outputs: Sequence[str], name: str = "", **attrs: Any) -> None:
        self.nodes.append(self.helper.make_node(op, list(inputs), list(outputs), name=name or self.unique(op),
                                                **attrs))


class OnnxTensor(object):
    """A tensor of the network: produced by one layer output, shape computed on demand (as in TensorRT)."""

    def __init__(self, producer: "Layer", index: int, name: str) -> None:
        self.producer = producer
        self.index = index
        self.name = name

    @property
    def shape(self) -> Shape:
        return self.producer.cached_shape(self.index)

    @property
    def dtype(self) -> str:
        return self.producer.output_dtype(self.index)

    def __repr__(self) -> str:
        return "OnnxTensor({!r}, {})".format(self.name, self.shape)


class Layer(object):
    """Base of the twin's layers: inputs, outputs, a name, shape rules and ONNX emission."""

    host = False  # True for the NumPy part of a plugin (runs after ONNX Runtime)

    def __init__(self, network: "OnnxNetwork", inputs: Sequence[OnnxTensor], num_outputs: int = 1) -> None:
        self.network = network
        self.inputs = list(inputs)
        self.name = "{} {}".format(type(self).__name__, len(network.layers))
        self.outputs = [OnnxTensor(self, i, network.tensor_name()) for i in range(num_outputs)]

    def __setattr__(self, key: str, value: Any) -> None:
        # A property set after add_* (stride, padding, scales...) can change shapes downstream: drop cached shapes.
        network = self.__dict__.get("network")
        if network is not None and not key.startswith("_"):
            network.shape_epoch += 1
        object.__setattr__(self, key, value)

    def _shapes_fresh(self) -> bool:
        cache = self.__dict__.get("_shape_cache")
        return cache is not None and cache[0] == self.network.shape_epoch

    def cached_shape(self, index: int) -> Shape:
        """``output_shape`` memoised until any layer property changes (shapes are read many times while building).

        Stale ancestors are refreshed first, producers before consumers, with an explicit stack: a chain of a
        thousand layers (an INT8 network has a Q/DQ pair per tensor) must not hit Python's recursion limit.
        """
        if not self._shapes_fresh():
            stack: List[Layer] = [self]
            while stack:
                layer = stack[-1]
                stale = [t.producer for t in layer.inputs if not t.producer._shapes_fresh()]
                if stale:
                    stack.extend(stale)
                    continue
                stack.pop()
                if not layer._shapes_fresh():
                    layer._shape_cache = (layer.network.shape_epoch,
                                          [layer.output_shape(i) for i in range(len(layer.outputs))])
        shapes: List[Shape] = self.__dict__["_shape_cache"][1]
        return shapes[index]

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_output(self, index: int) -> OnnxTensor:
        return self.outputs[index]

    def get_input(self, index: int) -> OnnxTensor:
        return self.inputs[index]

    def output_shape(self, index: int) -> Shape:
        raise NotImplementedError

    def output_dtype(self, index: int) -> str:
        return self.inputs[0].dtype if self.inputs else DataType.FLOAT

    def emit(self, em: _Emitter) -> None:
        raise NotImplementedError

    def _in(self, i: int = 0) -> str:
        return self.inputs[i].name

    def _out(self, i: int = 0) -> str:
        return self.outputs[i].name


def _pairs(values: Sequence[int], what: str) -> Tuple[int, int]:
    vals = tuple(int(v) for v in values)
    if len(vals) != 2:
        raise JetsonDetectError("the CPU backend supports 2-D {} only, got {}".format(what, vals))
    return vals[0], vals[1]


class InputLayer(Layer):
    def __init__(self, network: "OnnxNetwork", name: str, dtype: str, shape: Shape) -> None:
        super().__init__(network, [])
        self.outputs[0].name = name
        self._shape = tuple(int(s) for s in shape)
        self._dtype = dtype

    def output_shape(self, index: int) -> Shape:
        return self._shape

    def output_dtype(self, index: int) -> str:
        return self._dtype

    def emit(self, em: _Emitter) -> None:
        pass


# Input channels × block² up to which a strided INT8 convolution is emitted as SpaceToDepth + convolution.
_SPACE_TO_DEPTH_MAX_CHANNELS = 16


class ConvolutionLayer(Layer):
    def __init__(self, network: "OnnxNetwork", x: OnnxTensor, num_output_maps: int, kernel_shape: Sequence[int],
                 kernel: np.ndarray, bias: Optional[np.ndarray]) -> None:
        super().__init__(network, [x])
        self.num_output_maps = int(num_output_maps)
        self.kernel_size_nd = _pairs(kernel_shape, "kernels")
        # Empty weights (``Weights()``) mean the kernel arrives as input 1 (``set_input``), as TensorRT's explicit
        # quantization wants it: constant → Quantize → Dequantize → kernel.
        self.kernel = None if isinstance(kernel, Weights) else np.asarray(kernel)
        self.bias = None if bias is None else np.asarray(bias)
        self.stride_nd = (1, 1)
        self.padding_nd = (0, 0)
        self.dilation_nd = (1, 1)
        self.num_groups = 1

    def set_input(self, index: int, tensor: OnnxTensor) -> None:
        """Input 0: the activation; input 1: the kernel as a tensor (then the kernel weights must be empty)."""
        if index not in (0, 1):
            raise JetsonDetectError("layer '{}': a convolution has inputs 0 (data) and 1 (kernel), not {}".format(
                self.name, index))
        inputs = list(self.inputs) + [None] * (2 - len(self.inputs))
        inputs[index] = tensor
        if index == 1:
            self.kernel = None
        self.inputs = [t for t in inputs if t is not None]

    def _emit_bias(self, em: _Emitter) -> str:
        """The bias; for an INT8 convolution (both inputs dequantized) as int32 in units of input scale × kernel
        scale behind its own Dequantize, the form ONNX Runtime needs to fuse the whole convolution into integer
        kernels (TensorRT does the same folding internally; its network keeps the float bias)."""
        bias = self.bias.reshape(-1)  # type: ignore[union-attr]
        dq = [t.producer for t in self.inputs[:2]]
        if len(dq) < 2 or not all(isinstance(layer, DequantizeLayer) for layer in dq):
            return em.constant(bias, self.name + ".bias")
        bias = bias.astype(np.float32)
        x_scale = float(_constant_value(dq[0].inputs[1]).reshape(-1)[0])
        w_scale = _constant_value(dq[1].inputs[1]).reshape(-1).astype(np.float64)
        scale = (x_scale * w_scale).astype(np.float32)
        if scale.size == 1:
            scale = np.full(bias.size, scale[0], np.float32)
        quantized = np.clip(np.rint(bias / scale), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
        name = em.unique(self.name + ".bias")
        em.node("DequantizeLinear", [em.constant(quantized, self.name + ".bias_q"),
                                     em.constant(scale, self.name + ".bias_scale"),
                                     em.constant(np.zeros(bias.size, np.int32), self.name + ".bias_zero")],
                [name], axis=0)
        return name

    def _weight(self) -> np.ndarray:
        assert self.kernel is not None  # a kernel given as a tensor (set_input) is emitted by name
        c_in = self.inputs[0].shape[1]
        kh, kw = self.kernel_size_nd
        expected = self.num_output_maps * (c_in // self.num_groups) * kh * kw
        if self.kernel.size != expected:
            raise JetsonDetectError("layer '{}': kernel has {} values, expected {} (GKCRS {}x{}x{}x{})".format(
                self.name, self.kernel.size, expected, self.num_output_maps, c_in // self.num_groups, kh, kw))
        return self.kernel.reshape(self.num_output_maps, c_in // self.num_groups, kh, kw)

    def output_shape(self, index: int) -> Shape:
        b, _, h, w = self.inputs[0].shape
        (kh, kw), (sh, sw) = self.kernel_size_nd, _pairs(self.stride_nd, "strides")
        (ph, pw), (dh, dw) = _pairs(self.padding_nd, "paddings"), _pairs(self.dilation_nd, "dilations")
        return (b, self.num_output_maps, (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
                (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1)

    def emit(self, em: _Emitter) -> None:
        if self.kernel is None and len(self.inputs) < 2:
            raise JetsonDetectError("layer '{}': empty kernel weights and no kernel input (set_input(1, ...))".format(
                self.name))
        if self._emit_space_to_depth(em):
            return
        kernel = self._in(1) if self.kernel is None else em.constant(self._weight(), self.name + ".weight")
        inputs = [self._in(), kernel]
        if self.bias is not None:
            inputs.append(self._emit_bias(em))
        ph, pw = _pairs(self.padding_nd, "paddings")
        em.node("Conv", inputs, [self._out()], name=self.name, kernel_shape=list(self.kernel_size_nd),
                strides=list(_pairs(self.stride_nd, "strides")), pads=[ph, pw, ph, pw],
                dilations=list(_pairs(self.dilation_nd, "dilations")), group=int(self.num_groups))

    def _emit_space_to_depth(self, em: _Emitter) -> bool:
        """An INT8 strided convolution over a few channels (YOLOv5's 6x6/2 stem on the image) as SpaceToDepth and a
        stride-1 convolution: the same integer products summed in int32, so exactly the same output, but ONNX
        Runtime's integer convolution runs 12 channels at 3x3 about three times faster than 3 channels at 6x6
        (BENCHMARKS.md). Only where both inputs are dequantized (float convolutions measured slower this way, and
        float sums would change in the last bit); False when not applicable.
        """
        (kh, kw), (sh, sw) = self.kernel_size_nd, _pairs(self.stride_nd, "strides")
        (ph, pw), dilation = _pairs(self.padding_nd, "paddings"), _pairs(self.dilation_nd, "dilations")
        c_in = self.inputs[0].shape[1]
        block = sh
        if (len(self.inputs) < 2 or self.num_groups != 1 or dilation != (1, 1) or sh != sw or block < 2
                or c_in * block * block > _SPACE_TO_DEPTH_MAX_CHANNELS or kh % block or kw % block
                or ph % block or pw % block or ph != pw):
            return False
        b, _, h, w = self.inputs[0].shape
        if h % block or w % block:
            return False
        data, kernel = (t.producer for t in self.inputs[:2])
        if not isinstance(data, DequantizeLayer) or not isinstance(kernel, DequantizeLayer):
            return False
        quantize = kernel.inputs[0].producer
        if not isinstance(quantize, QuantizeLayer) or not isinstance(quantize.inputs[0].producer, ConstantLayer):
            return False
        weights = quantize.inputs[0].producer.value.astype(np.float32)
        if weights.ndim != 4 or weights.shape[1] != c_in:
            return False
        # SpaceToDepth (DCR): output channel (dy·block + dx)·C + c holds pixel (block·i + dy, block·j + dx) of
        # channel c; a kernel tap (block·m + dy, block·n + dx) becomes tap (m, n) of that channel.
        o = weights.shape[0]
        lowered = weights.reshape(o, c_in, kh // block, block, kw // block, block).transpose(0, 3, 5, 1, 2, 4)
        lowered = np.ascontiguousarray(lowered.reshape(o, c_in * block * block, kh // block, kw // block))
        packed = em.unique(self.name + ".space_to_depth")
        em.node("SpaceToDepth", [data.inputs[0].name], [packed], blocksize=int(block))
        data_dq = em.unique(self.name + ".space_to_depth_dq")
        unsigned = data.inputs[0].dtype == "uint8"
        em.node("DequantizeLinear", [packed, _scalar_or_vector(em, data.inputs[1], data.name),
                                     _emit_zero_point(em, data, unsigned)], [data_dq], name=data_dq)
        q_kernel, dq_kernel = em.unique(self.name + ".kernel_q"), em.unique(self.name + ".kernel")
        em.node("QuantizeLinear", [em.constant(lowered, self.name + ".weight"),
                                   _scalar_or_vector(em, quantize.inputs[1], quantize.name),
                                   _emit_zero_point(em, quantize, False)], [q_kernel], name=q_kernel,
                **_axis_attribute(quantize))
        em.node("DequantizeLinear", [q_kernel, _scalar_or_vector(em, kernel.inputs[1], kernel.name),
                                     _emit_zero_point(em, kernel, False)], [dq_kernel], name=dq_kernel,
                **_axis_attribute(kernel))
        inputs = [data_dq, dq_kernel]
        if self.bias is not None:
            inputs.append(self._emit_bias(em))
        em.node("Conv", inputs, [self._out()], name=self.name, kernel_shape=[kh // block, kw // block],
                strides=[1, 1], pads=[ph // block] * 4, dilations=[1, 1], group=1)
        return True


class ActivationLayer(Layer):
    def __init__(self, network: "OnnxNetwork", x: OnnxTensor, kind: str) -> None:
        super().__init__(network, [x])
        self.type = kind

    def output_shape(self, index: int) -> Shape:
        return self.inputs[0].shape

    def emit(self, em: _Emitter) -> None:
        em.node(self.type, [self._in()], [self._out()], name=self.name)


class ElementWiseLayer(Layer):
    def __init__(self, network: "OnnxNetwork", a: OnnxTensor, b: OnnxTensor, op: str) -> None:
        super().__init__(network, [a, b])
        self.op = op
        if len(a.shape) != len(b.shape):
            raise JetsonDetectError("layer '{}': elementwise inputs must have the same rank, got {} and {}".format(
                self.name, a.shape, b.shape))

    def output_shape(self, index: int) -> Shape:
        return tuple(max(p, q) for p, q in zip(self.inputs[0].shape, self.inputs[1].shape))

    def emit(self, em: _Emitter) -> None:
        em.node(self.op, [self._in(0), self._in(1)], [self._out()], name=self.name)


class PoolingLayer(Layer):
    def __init__(self, network: "OnnxNetwork", x: OnnxTensor, kind: str, window_size: Sequence[int]) -> None:
        super().__init__(network, [x])
        self.type = kind
        self.window_size_nd = _pairs(window_size, "pooling windows")
        self.stride_nd = (1, 1)
        self.padding_nd = (0, 0)

    def output_shape(self, index: int) -> Shape:
        b, c, h, w = self.inputs[0].shape
        (kh, kw), (sh, sw) = self.window_size_nd, _pairs(self.stride_nd, "strides")
        ph, pw = _pairs(self.padding_nd, "paddings")
        return (b, c, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)

    def emit(self, em: _Emitter) -> None:
        ph, pw = _pairs(self.padding_nd, "paddings")
        em.node(self.type, [self._in()], [self._out()], name=self.name, kernel_shape=list(self.window_size_nd),
                strides=list(_pairs(self.stride_nd, "strides")), pads=[ph, pw, ph, pw])


class ResizeLayer(Layer):
    def __init__(self, network: "OnnxNetwork", x: OnnxTensor) -> None:
        super().__init__(network, [x])
        self.resize_mode = InterpolationMode.NEAREST
        self.scales: Optional[Sequence[float]] = None
        self.shape: Optional[Sequence[int]] = None

    def output_shape(self, index: int) -> Shape:
        if self.shape is not None:
            return tuple(int(s) for s in self.shape)
        if self.scales is None or len(self.scales) != len(self.inputs[0].shape):
            raise JetsonDetectError("layer '{}': set scales (one per dimension, batch included) or shape".format(
                self.name))
        return tuple(int(np.floor(d * s)) for d, s in zip(self.inputs[0].shape, self.scales))

    def emit(self, em: _Emitter) -> None:
        sizes = np.asarray(self.output_shape(0), np.int64)
        em.node("Resize", [self._in(), "", "", em.constant(sizes, self.name + ".sizes")], [self._out()],
                name=self.name, mode=self.resize_mode, coordinate_transformation_mode="asymmetric",
                nearest_mode="floor")


class ConcatenationLayer(Layer):
    def __init__(self, network: "OnnxNetwork", inputs: Sequence[OnnxTensor]) -> None:
        super().__init__(network, inputs)
        self.axis = max(len(inputs[0].shape) - 3, 0)  # TensorRT's documented default: C of NCHW

    def output_shape(self, index: int) -> Shape:
        shape = list(self.inputs[0].shape)
        shape[self.axis] = sum(t.shape[self.axis] for t in self.inputs)
        return tuple(shape)

    def emit(self, em: _Emitter) -> None:
        em.node("Concat", [t.name for t in self.inputs], [self._out()], name=self.name, axis=int(self.axis))


class SliceLayer(Layer):
    def __init__(self, network: "OnnxNetwork", x: OnnxTensor, start: Sequence[int], shape: Sequence[int],
                 stride: Sequence[int]) -> None:
        super().__init__(network, [x])
        self.start, self.shape, self.stride = tuple(start), tuple(shape), tuple(stride)

    def output_shape(self, index: int) -> Shape:
        return tuple(int(s) for s in self.shape)

    def emit(self, em: _Emitter) -> None:
        starts = np.asarray(self.start, np.int64)
        steps = np.asarray(self.stride, np.int64)
        ends = starts + (np.asarray(self.shape, np.int64) - 1) * steps + 1
        axes = np.arange(len(starts), dtype=np.int64)
        em.node("Slice", [self._in(), em.constant(starts), em.constant(ends), em.constant(axes),
                          em.constant(steps)], [self._out()], name=self.name)


class ConstantLayer(Layer):
    def __init__(self, network: "OnnxNetwork", shape: Sequence[int], weights: np.ndarray) -> None:
        super().__init__(network, [])
        self.value = np.asarray(weights).reshape(tuple(shape))

    def output_shape(self, index: int) -> Shape:
        return tuple(self.value.shape)

    def output_dtype(self, index: int) -> str:
        return str(self.value.dtype)

    def emit(self, em: _Emitter) -> None:
        em.initializers.append(em.numpy_helper.from_array(self.value, self._out()))


class QuantizeLayer(Layer):
    """TensorRT's symmetric INT8 Quantize (zero point 0) with a scalar or per-``axis`` scale tensor.

    Activations are emitted as uint8 with zero point 128 and weights (constant inputs) as int8 with zero point 0:
    the same 256 levels and the same values after Dequantize, but the u8-activation/s8-weight pairing is the one
    ONNX Runtime's x86 kernels run fast (s8 activations measured 2x slower than float there).
    """

    def __init__(self, network: "OnnxNetwork", x: OnnxTensor, scale: OnnxTensor) -> None:
        super().__init__(network, [x, scale])
        self.axis = -1

    @property
    def unsigned(self) -> bool:
        return not isinstance(self.inputs[0].producer, ConstantLayer)

    def output_shape(self, index: int) -> Shape:
        return self.inputs[0].shape

    def output_dtype(self, index: int) -> str:
        return "uint8" if self.unsigned else DataType.INT8

    def set_input(self, index: int, tensor: OnnxTensor) -> None:
        """Input 2: a uint8 zero point (the CPU backend's affine activations; TensorRT requires zero)."""
        _set_zero_point(self, index, tensor)

    def emit(self, em: _Emitter) -> None:
        em.node("QuantizeLinear", [self._in(0), self._scale(em), _emit_zero_point(em, self, self.unsigned)],
                [self._out()], name=self.name, **_axis_attribute(self))

    def _scale(self, em: _Emitter) -> str:
        return _scalar_or_vector(em, self.inputs[1], self.name)


class DequantizeLayer(Layer):
    """TensorRT's Dequantize: back to float32 with the Quantize's scale (the twin mirrors its zero point)."""

    def __init__(self, network: "OnnxNetwork", x: OnnxTensor, scale: OnnxTensor) -> None:
        super().__init__(network, [x, scale])
        self.axis = -1

    def output_shape(self, index: int) -> Shape:
        return self.inputs[0].shape

    def output_dtype(self, index: int) -> str:
        return DataType.FLOAT

    def set_input(self, index: int, tensor: OnnxTensor) -> None:
        _set_zero_point(self, index, tensor)

    def emit(self, em: _Emitter) -> None:
        unsigned = self.inputs[0].dtype == "uint8"
        em.node("DequantizeLinear", [self._in(0), _scalar_or_vector(em, self.inputs[1], self.name),
                                     _emit_zero_point(em, self, unsigned)], [self._out()], name=self.name,
                **_axis_attribute(self))


def _axis_attribute(layer: Layer) -> Dict[str, int]:
    """A Quantize/Dequantize's ``axis``, for per-channel scales only (ONNX wants none for a scalar scale)."""
    return {"axis": int(layer.axis)} if layer.inputs[1].shape not in ((), (1,)) else {}  # type: ignore[attr-defined]


def _set_zero_point(layer: Layer, index: int, tensor: OnnxTensor) -> None:
    if index != 2 or len(layer.inputs) != 2:
        raise JetsonDetectError("layer '{}': only a zero point (input 2) can be added".format(layer.name))
    if _constant_value(tensor).dtype != np.uint8:
        raise JetsonDetectError("layer '{}': the zero point must be a uint8 constant".format(layer.name))
    layer.inputs = layer.inputs + [tensor]


def _emit_zero_point(em: _Emitter, layer: Layer, unsigned: bool) -> str:
    if len(layer.inputs) > 2:
        return em.constant(_constant_value(layer.inputs[2]).reshape(()), layer.name + ".zero")
    return em.constant(_zero_point(unsigned, layer.inputs[1].shape), layer.name + ".zero")


def _constant_value(tensor: OnnxTensor) -> np.ndarray:
    producer = tensor.producer
    if not isinstance(producer, ConstantLayer):
        raise JetsonDetectError("tensor '{}' must be a constant".format(tensor.name))
    return producer.value


def _zero_point(unsigned: bool, scale_shape: Shape) -> np.ndarray:
    count = int(np.prod(scale_shape)) if scale_shape not in ((), (1,)) else 0
    if unsigned:
        return np.full(count, 128, np.uint8) if count else np.array(128, np.uint8)
    return np.zeros(count, np.int8) if count else np.array(0, np.int8)


def _scalar_or_vector(em: _Emitter, scale: OnnxTensor, name: str) -> str:
    """ONNX wants a 0-d scale for per-tensor quantization; TensorRT accepts a 1-element or 0-d constant."""
    producer = scale.producer
    if not isinstance(producer, ConstantLayer):
        raise JetsonDetectError("layer '{}': the quantization scale must be a constant".format(name))
    value = producer.value.astype(np.float32)
    return em.constant(value.reshape(()) if value.size == 1 else value.reshape(-1), name + ".scale")


class CpuPlugin(object):
    """A plugin's CPU implementation: ONNX ops for its device part, NumPy for its host part."""

    num_outputs = 0

    def output_shapes(self, input_shapes: Sequence[Shape]) -> List[Shape]:
        raise NotImplementedError

    def output_dtypes(self) -> List[str]:
        raise NotImplementedError

    def emit_device(self, em: _Emitter, input_names: Sequence[str],
                    input_shapes: Sequence[Shape]) -> List[Tuple[str, Shape]]:
        """Emit ONNX nodes; return the graph tensors (name, shape) the host part needs: they become graph outputs."""
        raise NotImplementedError

    def run_host(self, device_values: Sequence[np.ndarray]) -> List[np.ndarray]:
        raise NotImplementedError


class PluginV2Layer(Layer):
    host = True

    def __init__(self, network: "OnnxNetwork", inputs: Sequence[OnnxTensor], plugin: CpuPlugin) -> None:
        super().__init__(network, inputs, plugin.num_outputs)
        self.plugin = plugin
        self.device_outputs: List[Tuple[str, Shape]] = []

    def output_shape(self, index: int) -> Shape:
        return self.plugin.output_shapes([t.shape for t in self.inputs])[index]

    def output_dtype(self, index: int) -> str:
        return self.plugin.output_dtypes()[index]

    def emit(self, em: _Emitter) -> None:
        from onnx import TensorProto
        names = []
        for tensor in self.inputs:
            if tensor.dtype == DataType.HALF:  # the plugin takes FP16 heads and computes in FP32, as on the GPU
                cast = em.unique(tensor.name + ".float")
                em.node("Cast", [tensor.name], [cast], to=TensorProto.FLOAT)
                names.append(cast)
            else:
                names.append(tensor.name)
        self.device_outputs = self.plugin.emit_device(em, names, [t.shape for t in self.inputs])


class PluginCreator(object):
    """A creator in the twin's registry (``create_plugin(name, field_collection)``, as TensorRT's)."""

    def __init__(self, name: str, version: str, namespace: str,
                 factory: Callable[[Sequence[Tuple[str, np.ndarray]]], CpuPlugin]) -> None:
        self.name, self.plugin_version, self.plugin_namespace = name, version, namespace
        self._factory = factory

    def create_plugin(self, name: str, field_collection: Sequence[PluginField]) -> CpuPlugin:
        return self._factory([(f.name, f.data) for f in field_collection])


class PluginRegistry(object):
    """The twin's plugin registry, with TensorRT 10's lookup names."""

    def __init__(self) -> None:
        self._creators: Dict[Tuple[str, str, str], PluginCreator] = {}

    def register_creator(self, creator: PluginCreator, namespace: str = "") -> bool:
        self._creators[(creator.name, creator.plugin_version, namespace)] = creator
        return True

    def get_creator(self, name: str, version: str, namespace: str = "") -> Optional[PluginCreator]:
        if (name, version, namespace) not in self._creators:
            _register_builtin_plugins(self)
        return self._creators.get((name, version, namespace))

    @property
    def all_creators(self) -> List[PluginCreator]:
        return list(self._creators.values())


_REGISTRY = PluginRegistry()


def get_plugin_registry() -> PluginRegistry:
    return _REGISTRY


def _register_builtin_plugins(registry: PluginRegistry) -> None:
    from .cpu_decode_nms import register
    register(registry)


class OnnxNetwork(object):
    """The twin of ``INetworkDefinition`` (explicit batch, static shapes): records layers, emits ONNX."""

    def __init__(self) -> None:
        self.layers: List[Layer] = []
        self.outputs: List[OnnxTensor] = []
        self.inputs: List[OnnxTensor] = []
        self.shape_epoch = 0
        self._names = 0

    def tensor_name(self) -> str:
        self._names += 1
        return "t{}".format(self._names)

    def _add(self, layer: Layer) -> Layer:
        self.layers.append(layer)
        return layer

    def add_input(self, name: str, dtype: str, shape: Sequence[int]) -> OnnxTensor:
        tensor = self._add(InputLayer(self, name, dtype, tuple(shape))).get_output(0)
        self.inputs.append(tensor)
        return tensor

    def add_convolution_nd(self, input: OnnxTensor, num_output_maps: int, kernel_shape: Sequence[int],
                           kernel: np.ndarray, bias: Optional[np.ndarray] = None) -> ConvolutionLayer:
        layer = ConvolutionLayer(self, input, num_output_maps, kernel_shape, kernel, bias)
        self._add(layer)
        return layer

    def add_activation(self, input: OnnxTensor, type: str) -> ActivationLayer:  # noqa: A002
        layer = ActivationLayer(self, input, type)
        self._add(layer)
        return layer

    def add_elementwise(self, input1: OnnxTensor, input2: OnnxTensor, op: str) -> ElementWiseLayer:
        layer = ElementWiseLayer(self, input1, input2, op)
        self._add(layer)
        return layer

    def add_pooling_nd(self, input: OnnxTensor, type: str, window_size: Sequence[int]) -> PoolingLayer:  # noqa: A002
        layer = PoolingLayer(self, input, type, window_size)
        self._add(layer)
        return layer

    def add_resize(self, input: OnnxTensor) -> ResizeLayer:
        layer = ResizeLayer(self, input)
        self._add(layer)
        return layer

    def add_concatenation(self, inputs: Sequence[OnnxTensor]) -> ConcatenationLayer:
        layer = ConcatenationLayer(self, inputs)
        self._add(layer)
        return layer

    def add_slice(self, input: OnnxTensor, start: Sequence[int], shape: Sequence[int],
                  stride: Sequence[int]) -> SliceLayer:
        layer = SliceLayer(self, input, start, shape, stride)
        self._add(layer)
        return layer

    def add_constant(self, shape: Sequence[int], weights: np.ndarray) -> ConstantLayer:
        layer = ConstantLayer(self, shape, weights)
        self._add(layer)
        return layer

    def add_quantize(self, input: OnnxTensor, scale: OnnxTensor,  # noqa: A002 - TensorRT's keyword
                     output_type: Optional[str] = None) -> QuantizeLayer:
        if output_type not in (None, DataType.INT8):
            raise JetsonDetectError("the CPU backend quantizes to int8 only, not {}".format(output_type))
        layer = QuantizeLayer(self, input, scale)
        self._add(layer)
        return layer

    def add_dequantize(self, input: OnnxTensor, scale: OnnxTensor,  # noqa: A002 - TensorRT's keyword
                       output_type: Optional[str] = None) -> DequantizeLayer:
        if output_type not in (None, DataType.FLOAT):
            raise JetsonDetectError("the CPU backend dequantizes to float32 only, not {}".format(output_type))
        layer = DequantizeLayer(self, input, scale)
        self._add(layer)
        return layer

    def add_plugin_v2(self, inputs: Sequence[OnnxTensor], plugin: CpuPlugin) -> PluginV2Layer:
        if not isinstance(plugin, CpuPlugin):
            raise JetsonDetectError("the CPU backend cannot run plugin {!r}: only its own CPU plugins".format(plugin))
        layer = PluginV2Layer(self, inputs, plugin)
        self._add(layer)
        return layer

    def mark_output(self, tensor: OnnxTensor) -> None:
        self.outputs.append(tensor)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def _topological_order(self) -> List[Layer]:
        """Layers in insertion order, except that a layer waits for the producers of its inputs (``set_input`` can
        give an existing layer an input made later, as TensorRT allows; ONNX wants nodes sorted)."""
        done: set = set()
        order: List[Layer] = []
        for layer in self.layers:
            stack = [layer]
            while stack:
                top = stack[-1]
                if id(top) in done:
                    stack.pop()
                    continue
                waiting = [t.producer for t in top.inputs if id(t.producer) not in done]
                if waiting:
                    stack.extend(waiting)
                    continue
                stack.pop()
                done.add(id(top))
                order.append(top)
        return order

    def to_onnx(self, opset: int = 17) -> Tuple[Any, "HostStage"]:
        """Emit the ONNX model of the device part, plus the host stage that turns its outputs into the marked ones."""
        from onnx import TensorProto, checker, helper
        em = _Emitter()
        host_layers: List[PluginV2Layer] = []
        for layer in self._topological_order():
            if any(t.producer.host for t in layer.inputs):
                raise JetsonDetectError("layer '{}' reads a plugin output: the CPU backend runs plugins last".format(
                    layer.name))
            layer.emit(em)
            if isinstance(layer, PluginV2Layer):
                host_layers.append(layer)
        elem = {DataType.FLOAT: TensorProto.FLOAT, DataType.HALF: TensorProto.FLOAT16,
                DataType.INT32: TensorProto.INT32}
        graph_outputs: Dict[str, Shape] = {}
        for tensor in self.outputs:
            if not tensor.producer.host:
                graph_outputs[tensor.name] = tensor.shape
        for layer in host_layers:
            graph_outputs.update(layer.device_outputs)
        nodes, initializers = _reachable(em.nodes, em.initializers, graph_outputs)
        graph = helper.make_graph(
            nodes, "jetson_detect_yolov5",
            [helper.make_tensor_value_info(t.name, elem[t.dtype], list(t.shape)) for t in self.inputs],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in graph_outputs.items()],
            initializer=initializers)
        model = helper.make_model(graph, producer_name="jetson_detect", opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = min(model.ir_version, 8)
        checker.check_model(model)
        return model, HostStage(host_layers, [t for t in self.outputs], graph_outputs)


def _reachable(nodes: Sequence[Any], initializers: Sequence[Any],
               outputs: Iterable[str]) -> Tuple[List[Any], List[Any]]:
    """The nodes and initializers that some graph output depends on. ONNX Runtime runs every node it is given,
    needed or not; layers left behind by the builder (a Detect convolution's int8 kernel once it is put back in
    float, a Dequantize a lowering bypassed) would cost time on every frame."""
    producer = {}
    for node in nodes:
        for name in node.output:
            producer[name] = node
    needed, stack = set(), list(outputs)
    kept = set()
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producer.get(name)
        if node is not None and id(node) not in kept:
            kept.add(id(node))
            stack.extend(n for n in node.input if n)
    return [n for n in nodes if id(n) in kept], [i for i in initializers if i.name in needed]


class HostStage(object):
    """Runs the host parts of plugins on the ONNX Runtime outputs and collects the network's marked outputs."""

    def __init__(self, host_layers: Sequence[PluginV2Layer], marked: Sequence[OnnxTensor],
                 graph_outputs: Iterable[str]) -> None:
        self.host_layers = list(host_layers)
        self.marked = list(marked)
        self.graph_outputs = list(graph_outputs)

    def run(self, graph_values: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """All marked outputs by name, plus every graph output (e.g. ``decoded``) for inspection."""
        values = dict(graph_values)
        for layer in self.host_layers:
            results = layer.plugin.run_host([graph_values[n] for n, _ in layer.device_outputs])
            for tensor, value in zip(layer.outputs, results):
                values[tensor.name] = value
        return values
