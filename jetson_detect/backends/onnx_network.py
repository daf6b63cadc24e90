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


float32 = DataType.FLOAT
float16 = DataType.HALF
int32 = DataType.INT32


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

    def cached_shape(self, index: int) -> Shape:
        """``output_shape`` memoised until any layer property changes (shapes are read many times while building)."""
        cache = self.__dict__.get("_shape_cache")
        if cache is None or cache[0] != self.network.shape_epoch:
            cache = (self.network.shape_epoch, [self.output_shape(i) for i in range(len(self.outputs))])
            self._shape_cache = cache
        return cache[1][index]

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


class ConvolutionLayer(Layer):
    def __init__(self, network: "OnnxNetwork", x: OnnxTensor, num_output_maps: int, kernel_shape: Sequence[int],
                 kernel: np.ndarray, bias: Optional[np.ndarray]) -> None:
        super().__init__(network, [x])
        self.num_output_maps = int(num_output_maps)
        self.kernel_size_nd = _pairs(kernel_shape, "kernels")
        self.kernel = np.asarray(kernel)
        self.bias = None if bias is None else np.asarray(bias)
        self.stride_nd = (1, 1)
        self.padding_nd = (0, 0)
        self.dilation_nd = (1, 1)
        self.num_groups = 1

    def _weight(self) -> np.ndarray:
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
        inputs = [self._in(), em.constant(self._weight(), self.name + ".weight")]
        if self.bias is not None:
            inputs.append(em.constant(self.bias.reshape(-1), self.name + ".bias"))
        ph, pw = _pairs(self.padding_nd, "paddings")
        em.node("Conv", inputs, [self._out()], name=self.name, kernel_shape=list(self.kernel_size_nd),
                strides=list(_pairs(self.stride_nd, "strides")), pads=[ph, pw, ph, pw],
                dilations=list(_pairs(self.dilation_nd, "dilations")), group=int(self.num_groups))


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

    def to_onnx(self, opset: int = 17) -> Tuple[Any, "HostStage"]:
        """Emit the ONNX model of the device part, plus the host stage that turns its outputs into the marked ones."""
        from onnx import TensorProto, checker, helper
        em = _Emitter()
        host_layers: List[PluginV2Layer] = []
        for layer in self.layers:
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
        graph = helper.make_graph(
            em.nodes, "jetson_detect_yolov5",
            [helper.make_tensor_value_info(t.name, elem[t.dtype], list(t.shape)) for t in self.inputs],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in graph_outputs.items()],
            initializer=em.initializers)
        model = helper.make_model(graph, producer_name="jetson_detect", opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = min(model.ir_version, 8)
        checker.check_model(model)
        return model, HostStage(host_layers, [t for t in self.outputs], graph_outputs)


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
