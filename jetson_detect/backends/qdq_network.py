"""Explicit INT8 quantization as a wrapper around any network with the TensorRT API.

``QdqNetwork`` is handed to ``build_network`` in place of the network: the builder's calls pass through unchanged,
except that every activation a quantizable layer reads (convolutions, SiLU's sigmoid and product, residual adds,
concatenations, max pools, upsampling) first goes through a Quantize → Dequantize pair with its calibrated scale,
and every convolution's kernel becomes constant → Quantize (per output channel) → Dequantize, fed through
``set_input(1, ...)``. That is the placement TensorRT's explicit quantization expects (Q/DQ on the inputs of the
layers that should run in INT8), and the same graph emitted by the CPU twin is the QDQ format ONNX Runtime fuses into
integer kernels. One builder, so the INT8 network is the FP32 one with Q/DQ added and nothing else.

Scales are shared where INT8 must flow through a layer: both inputs of a residual add, all inputs of a concat, and
the input and output of max pools, upsampling and concatenations form one group with one scale.

Tensors are keyed ``a0, a1, ...`` in the order the builder first feeds them to a quantizable layer: the same model,
size and options always give the same keys, and the calibration file records them with a fingerprint of all three.

``observe=True`` is the calibration pass (CPU twin, FP32): nothing is quantized; every keyed tensor is marked as an
extra output named ``calib.<key>`` so the calibration run can histogram it, and ``groups()`` says which keys share
a scale.
"""

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..errors import JetsonDetectError
from ..math.calibration import weight_scales
from . import trt_compat

CALIBRATION_OUTPUT_PREFIX = "calib."


class QuantizationOptions(object):
    """Where Q/DQ goes, beyond every convolution's input: the choices the INT8 benchmark measured."""

    def __init__(self, silu: bool = True, conv_outputs: bool = True, heads: bool = False,
                 first_conv: bool = True, shared_scales: bool = True) -> None:
        self.silu = silu  # SiLU's sigmoid and product in INT8 (else float between the convs)
        self.conv_outputs = conv_outputs  # Q/DQ right after each convolution (what lets ONNX Runtime fuse it)
        self.heads = heads  # the Detect convolutions in INT8 (else float: their logits feed the decode)
        self.first_conv = first_conv  # the image itself quantized (else the first convolution stays float)
        self.shared_scales = shared_scales  # one scale through adds, concats, pools and upsampling (TensorRT fuses)

    def as_dict(self) -> Dict[str, bool]:
        return {"silu": self.silu, "conv_outputs": self.conv_outputs, "heads": self.heads,
                "first_conv": self.first_conv, "shared_scales": self.shared_scales}


class _ConvRecord(object):
    """What is needed to turn a convolution back to float if it turns out to feed the decode plugin."""

    __slots__ = ("layer", "raw_input", "kernel")

    def __init__(self, layer: Any, raw_input: Any, kernel: np.ndarray) -> None:
        self.layer, self.raw_input, self.kernel = layer, raw_input, kernel


class QdqNetwork(object):
    """A network wrapper that inserts Q/DQ (see the module docstring); everything else is the wrapped network's."""

    def __init__(self, network: Any, trt: Any, scales: Optional[Dict[str, float]] = None, observe: bool = False,
                 options: Optional[QuantizationOptions] = None,
                 affine: Optional[Dict[str, List[float]]] = None) -> None:
        if (scales is None) == (not observe):
            raise ValueError("give scales to quantize, or observe=True to calibrate")
        self._network = network
        self._trt = trt
        self._scales = scales
        # CPU only: (scale, uint8 zero point) per key, from each group's calibrated [min, threshold]; TensorRT's
        # explicit quantization is symmetric (zero point 0) and never gets these.
        self._affine = affine
        self._observe = observe
        self.options = options or QuantizationOptions()
        self._keys: Dict[str, str] = {}  # _ident(tensor) → key
        self._held: List[Any] = []  # the Python objects of keyed tensors, alive for as long as the build
        self._dequantized: Dict[str, Any] = {}  # key → the DQ output every consumer reads
        self._observed: Dict[str, Any] = {}  # key → the raw tensor (observe mode)
        self._parent: Dict[str, str] = {}
        self._pending_group: Dict[str, str] = {}  # _ident(output) → key its scale must share (pools, concats)
        self._convs: Dict[str, _ConvRecord] = {}
        self._conv_outputs = set()  # type: set
        self._input_names = set()  # type: set  # names of the network's inputs
        self._keep: List[np.ndarray] = []
        self._products: Dict[str, Any] = {}  # _ident(output) → the (already Q/DQ'd) inputs of a SiLU product

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._network, name)
        if name.startswith("add_plugin"):
            # Whatever the plugin API of this TensorRT version (trt_compat picks it), the decode plugin's inputs are
            # the Detect convolutions' outputs: give them back in float when the heads stay float.
            def add_plugin(inputs: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
                return attribute(self._float_heads(inputs), *args, **kwargs)
            return add_plugin
        return attribute

    # keys and groups ---------------------------------------------------------------------------------------------
    def _key(self, tensor: Any) -> str:
        key = self._keys.get(_ident(tensor))
        if key is None:
            key = "a{}".format(len(self._parent))
            self._keys[_ident(tensor)] = key
            self._held.append(tensor)
            self._parent[key] = key
            self._observed[key] = tensor
            shared = self._pending_group.pop(_ident(tensor), None)
            if shared is not None:
                self._union(key, shared)
        return key

    def _root(self, key: str) -> str:
        while self._parent[key] != key:
            self._parent[key] = self._parent[self._parent[key]]
            key = self._parent[key]
        return key

    def _union(self, a: str, b: str) -> None:
        if not self.options.shared_scales:
            return
        ra, rb = self._root(a), self._root(b)
        if ra != rb:
            self._parent[max(ra, rb, key=_key_order)] = min(ra, rb, key=_key_order)

    def groups(self) -> Dict[str, List[str]]:
        """Scale groups: root key → every key that shares its scale."""
        out: Dict[str, List[str]] = {}
        for key in sorted(self._parent, key=_key_order):
            out.setdefault(self._root(key), []).append(key)
        return out

    def input_keys(self) -> List[str]:
        """Keys of network inputs (the image): their range is known, [0, 1] in steps of 1/255."""
        return sorted((key for name, key in self._keys.items() if name in self._input_names), key=_key_order)

    def keys(self) -> List[str]:
        return sorted(self._parent, key=_key_order)

    def mark_calibration_outputs(self) -> List[str]:
        """Observe mode: make every keyed tensor an output ``calib.<key>``; returns those names."""
        names = []
        for key in self.keys():
            tensor = self._observed[key]
            if _ident(tensor) in self._input_names:
                # The network input is read as it is fed; renaming it would rename the input.
                continue
            tensor.name = CALIBRATION_OUTPUT_PREFIX + key
            self._network.mark_output(tensor)
            names.append(tensor.name)
        return names

    # Q/DQ -------------------------------------------------------------------------------------------------------
    def _constant(self, value: np.ndarray) -> Any:
        array = np.ascontiguousarray(value, np.float32)
        self._keep.append(array)
        return self._network.add_constant(array.shape, array).get_output(0)

    def _activation(self, tensor: Any) -> Any:
        """``tensor`` as every quantized consumer reads it: Q/DQ once with its group's scale."""
        key = self._key(tensor)
        if self._observe:
            return tensor
        if key not in self._dequantized:
            scale = self._scale(key)
            zero = None
            if self._affine is not None and key in self._affine:
                scale, zero = float(self._affine[key][0]), int(self._affine[key][1])
            q = trt_compat.add_quantize(self._trt, self._network, tensor, self._constant(np.array([scale])))
            q.name = "quantize." + key
            dq = trt_compat.add_dequantize(self._trt, self._network, q.get_output(0),
                                           self._constant(np.array([scale])))
            dq.name = "dequantize." + key
            if zero is not None:
                for layer in (q, dq):
                    layer.set_input(2, self._network.add_constant((1,), self._remember(
                        np.array([zero], np.uint8))).get_output(0))
            self._dequantized[key] = dq.get_output(0)
        return self._dequantized[key]

    def _scale(self, key: str) -> float:
        assert self._scales is not None
        if key not in self._scales:
            raise JetsonDetectError("INT8 calibration has no scale for tensor {}: the calibration file was made for "
                                    "another model or build options; calibrate again".format(key))
        return float(self._scales[key])

    def _share(self, output: Any, inputs: Sequence[Any]) -> None:
        """``output`` must take the scale of ``inputs`` (already keyed) when it gets a key of its own."""
        self._pending_group[_ident(output)] = self._key(inputs[0])
        self._held.append(output)

    def _quantized_kernel(self, kernel: np.ndarray) -> Any:
        weights = np.asarray(kernel, np.float32)
        scales = weight_scales(weights)
        const = self._network.add_constant(weights.shape, self._remember(weights)).get_output(0)
        q = trt_compat.add_quantize(self._trt, self._network, const, self._constant(scales))
        q.axis = 0
        dq = trt_compat.add_dequantize(self._trt, self._network, q.get_output(0), self._constant(scales))
        dq.axis = 0
        return dq.get_output(0)

    def _remember(self, value: np.ndarray) -> np.ndarray:
        self._keep.append(value)
        return value

    # the intercepted network calls -------------------------------------------------------------------------------
    def add_input(self, name: str, dtype: Any, shape: Sequence[int]) -> Any:
        tensor = self._network.add_input(name, dtype, shape)
        self._input_names.add(_ident(tensor))
        self._held.append(tensor)
        return tensor

    def add_convolution_nd(self, input: Any, num_output_maps: int, kernel_shape: Sequence[int],  # noqa: A002
                           kernel: Any, bias: Any = None) -> Any:
        float_input = _ident(input) in self._input_names and not self.options.first_conv
        if self._observe or float_input:
            if not float_input:
                self._key(input)
            layer = self._network.add_convolution_nd(input, num_output_maps, kernel_shape, kernel, bias)
            self._note_conv_output(layer.get_output(0))
            return layer
        weights = np.asarray(kernel, np.float32).reshape(int(num_output_maps), -1, *tuple(kernel_shape))
        layer = self._network.add_convolution_nd(self._activation(input), num_output_maps, kernel_shape,
                                                 self._trt.Weights(), bias)
        layer.set_input(1, self._quantized_kernel(weights))
        self._convs[_ident(layer.get_output(0))] = _ConvRecord(layer, input, weights)
        self._note_conv_output(layer.get_output(0))
        return layer

    def _note_conv_output(self, tensor: Any) -> None:
        self._conv_outputs.add(_ident(tensor))
        self._held.append(tensor)

    def pre_activation_keys(self) -> List[str]:
        """Keys of convolution outputs that feed SiLU: only their positive side needs resolution (SiLU maps
        everything below about -6 to within 0.015 of zero)."""
        return sorted((self._keys[i] for i in self._conv_outputs if i in self._keys), key=_key_order)

    def _maybe(self, tensor: Any) -> Any:
        """A SiLU input: quantized when SiLU runs in INT8, or when it is a convolution's output and those are."""
        if self.options.silu or (self.options.conv_outputs and _ident(tensor) in self._conv_outputs):
            return self._activation(tensor)
        return tensor

    def add_activation(self, input: Any, type: Any) -> Any:  # noqa: A002
        return self._network.add_activation(self._maybe(input), type)

    def add_elementwise(self, input1: Any, input2: Any, op: Any) -> Any:
        if op == self._trt.ElementWiseOperation.SUM:
            self._union(self._key(input1), self._key(input2))
            return self._network.add_elementwise(self._activation(input1), self._activation(input2), op)
        a, b = self._maybe(input1), self._maybe(input2)
        layer = self._network.add_elementwise(a, b, op)
        if op == self._trt.ElementWiseOperation.PROD:
            self._products[_ident(layer.get_output(0))] = (a, b)
            self._held.append(layer.get_output(0))
        return layer

    def add_concatenation(self, inputs: Sequence[Any]) -> Any:
        keys = [self._key(t) for t in inputs]
        for key in keys[1:]:
            self._union(keys[0], key)
        layer = self._network.add_concatenation([self._activation(t) for t in inputs])
        self._share(layer.get_output(0), inputs)
        return layer

    def add_pooling_nd(self, input: Any, type: Any, window_size: Sequence[int]) -> Any:  # noqa: A002
        layer = self._network.add_pooling_nd(self._activation(input), type, window_size)
        self._share(layer.get_output(0), [input])
        return layer

    def add_resize(self, input: Any) -> Any:  # noqa: A002
        layer = self._network.add_resize(self._activation(input))
        self._share(layer.get_output(0), [input])
        return layer

    def _float_heads(self, heads: Sequence[Any]) -> List[Any]:
        """The Detect convolutions back in float when ``options.heads`` is off (their logits feed the decode)."""
        if self._observe or self.options.heads:
            return list(heads)
        for head in heads:
            record = self._convs.get(_ident(head))
            if record is None:
                continue
            record.layer.set_input(0, self._float_copy(record.raw_input))
            record.layer.set_input(1, self._constant(record.kernel))
        return list(heads)

    def _float_copy(self, tensor: Any) -> Any:
        """A float head's input. When SiLU runs in INT8, the head gets a product of its own from the same
        dequantized inputs: the original product then feeds only its Quantize, which ONNX Runtime fuses into one
        integer multiply (a product with a float reader stays float, with layout changes around it)."""
        inputs = self._products.get(_ident(tensor))
        if inputs is None or not self.options.silu:
            return tensor
        return self._network.add_elementwise(inputs[0], inputs[1], self._trt.ElementWiseOperation.PROD).get_output(0)


def _ident(tensor: Any) -> str:
    """A tensor's identity while the network is built: its name. TensorRT names every tensor uniquely when it is
    made and the builder renames only the final outputs; a Python wrapper's ``id`` is not stable across calls."""
    return str(tensor.name)


def _key_order(key: str) -> int:
    return int(key[1:])
