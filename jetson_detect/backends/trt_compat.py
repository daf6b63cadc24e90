"""Every TensorRT version difference (8.0 and 8.2 on the Jetson Nano through 10.x and 11.x), in one place.

The rest of the code calls these functions and never names a version-specific TensorRT attribute. Each function
takes the ``trt`` module (real ``tensorrt``, or the CPU twin ``jetson_detect.backends.onnx_network``) so the
branches are testable; the tests run them against doubles built from the Python API surface of TensorRT 8.0.1,
8.2.1, 10.16 and 11.1 as NVIDIA's binding sources define it (``tests/trt_surface.py``). TensorRT 8.0.1 (JetPack
4.6) needs no branch of its own: every name used here for 8.2 exists in 8.0.1 with the same arguments.
Reference: ``../shared/TRT_COMPAT.md`` (section numbers below).
"""

import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..errors import JetsonDetectError
from ..model.decode_nms import PLUGIN_NAME, check_params, params_from_fields

if TYPE_CHECKING:
    import tensorrt


def major_version(trt: Any) -> int:
    """TensorRT major version from ``trt.__version__`` (the CPU twin reports its emulated version)."""
    return int(str(trt.__version__).split(".")[0])


def resize_mode_nearest(trt: Any) -> Any:
    """NEAREST interpolation: ``trt.InterpolationMode`` from 8.5 on, ``trt.ResizeMode`` before (§3)."""
    modes = getattr(trt, "InterpolationMode", None) or getattr(trt, "ResizeMode")
    return modes.NEAREST


_LOGGERS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()
_LOGGERS_LOCK = threading.Lock()


def process_logger(trt: Any, verbose: bool = False) -> Any:
    """The process's one ``trt.Logger``: TensorRT 8.0/8.2 keep a single global logger pointer (the first Builder or
    Runtime, and ``init_libnvinfer_plugins``, store it), so a second logger object would leave them pointing at a
    freed one. ``verbose`` sets its level for what follows."""
    with _LOGGERS_LOCK:
        logger = _LOGGERS.get(trt)
        if logger is None:
            logger = trt.Logger(trt.Logger.WARNING)
            _LOGGERS[trt] = logger
    logger.min_severity = trt.Logger.VERBOSE if verbose else trt.Logger.WARNING
    return logger


def uses_plugin_v3(trt: Any) -> bool:
    """Whether the plugin library registers the ``IPluginV3`` creator (TensorRT 10/11) or the V2 one (8.x) (§5); the
    CPU twin has the V2 calls only (no ``TensorRTPhase``)."""
    return major_version(trt) >= 10 and getattr(trt, "TensorRTPhase", None) is not None


def _plugin_creator(trt: Any, name: str, version: str, namespace: str) -> Any:
    """Look the creator up: ``get_creator`` on ≥10 (V2 or V3 creators), ``get_plugin_creator`` on 8.x (§5)."""
    registry = trt.get_plugin_registry()
    lookup = getattr(registry, "get_creator", None) or getattr(registry, "get_plugin_creator")
    creator = lookup(name, version, namespace)
    if creator is None:
        raise JetsonDetectError(
            "TensorRT plugin {} v{} is not registered: build it with scripts/build_plugin.sh and make sure "
            "libyolo_decode_nms.so is loaded before building or loading an engine".format(name, version))
    return creator


def create_plugin(trt: Any, name: str, version: str, namespace: str,
                  fields: Sequence[Tuple[str, np.ndarray]]) -> Any:
    """Create the plugin from (name, array) fields (int32 and float32 arrays map to their field types): a V3 plugin
    in the BUILD phase on 10/11, a V2 plugin on 8.x. A creator that rejects a field returns None: that becomes a
    one-line error naming the field."""
    kinds = {np.dtype(np.int32): trt.PluginFieldType.INT32, np.dtype(np.float32): trt.PluginFieldType.FLOAT32}
    creator = _plugin_creator(trt, name, version, namespace)
    # A PluginField keeps its array alive only while the field object lives, and the collection copies the fields
    # without that reference: both lists stay referenced here until create_plugin has returned.
    arrays = [np.ascontiguousarray(value) for _, value in fields]
    plugin_fields = [trt.PluginField(field_name, array, kinds[array.dtype])
                     for (field_name, _), array in zip(fields, arrays)]
    collection = trt.PluginFieldCollection(plugin_fields)
    if uses_plugin_v3(trt):
        plugin = creator.create_plugin(name, collection, getattr(trt, "TensorRTPhase").BUILD)
    else:
        plugin = creator.create_plugin(name, collection)
    del plugin_fields, arrays
    if plugin is None:
        if name == PLUGIN_NAME:
            check_params(params_from_fields(fields))  # names the field the C++ creator refused
        raise JetsonDetectError("TensorRT plugin {} v{} refused its fields ({}): rebuild the plugin library with "
                                "scripts/build_plugin.sh for this jetson_detect".format(
                                    name, version, ", ".join(field_name for field_name, _ in fields)))
    return plugin


def add_plugin(trt: Any, network: Any, inputs: Sequence[Any], plugin: Any) -> Any:
    """Add the plugin layer: ``add_plugin_v3`` (no shape inputs) for the V3 plugin on 10/11, ``add_plugin_v2`` on
    8.x, where it is the only one (it is deprecated from 10.8) (§3)."""
    if uses_plugin_v3(trt):
        return getattr(network, "add_plugin_v3")(list(inputs), [], plugin)
    return getattr(network, "add_plugin_v2")(list(inputs), plugin)


def network_creation_flags(trt: Any) -> int:
    """Flags for ``create_network``: the EXPLICIT_BATCH bit before 10 (implicit batch is 8.x's default), else 0 (§1)."""
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if explicit is None or major_version(trt) >= 10:
        return 0
    return 1 << int(explicit)


def create_network(trt: Any, builder: "tensorrt.Builder") -> "tensorrt.INetworkDefinition":
    """An explicit-batch network on every version."""
    return builder.create_network(network_creation_flags(trt))


class PrecisionPlan(NamedTuple):
    """How a precision is reached on this TensorRT: builder flags (weak typing) or float16 network types."""

    precision: str  # "fp32" | "fp16" | "int8"
    fp16_flag: bool  # set BuilderFlag.FP16 (8.x, 10.x)
    fp16_network: bool  # declare the input and weights float16 (11.x: strong typing, no FP16 flag)
    int8: bool  # BuilderFlag.INT8 + an entropy calibrator (implicit quantization)
    explicit_int8: bool = False  # Q/DQ layers with our own scales (qdq_network); the INT8 flag where it still exists


def has_int8_calibration(trt: Any) -> bool:
    """Whether this TensorRT still has implicit INT8 (calibrator class and INT8 flag): 8.x–10.x, not 11 (§6)."""
    return (getattr(trt, "IInt8EntropyCalibrator2", None) is not None
            and getattr(trt.BuilderFlag, "INT8", None) is not None)


INT8_MODES = ("auto", "explicit", "implicit")


def precision_plan(trt: Any, precision: str, int8_mode: str = "auto") -> PrecisionPlan:
    """Decide how to build ``precision`` ("fp32", "fp16", "int8") on this TensorRT, or refuse (§1, §6).

    INT8 (``int8_mode``): ``explicit`` is a Q/DQ network with scales from our own calibration, the form TensorRT
    10/11 want (``auto`` picks it there; 11 has nothing else); ``implicit`` is TensorRT's entropy calibrator, which
    8.x–10.x have (``auto`` on 8.x)."""
    if precision not in ("fp32", "fp16", "int8"):
        raise JetsonDetectError("--precision {}: choose fp32, fp16 or int8".format(precision))
    if int8_mode not in INT8_MODES:
        raise JetsonDetectError("--int8-mode {}: choose one of {}".format(int8_mode, ", ".join(INT8_MODES)))
    if precision == "fp32":
        return PrecisionPlan(precision, False, False, False)
    fp16_flag = getattr(trt.BuilderFlag, "FP16", None) is not None
    if precision == "fp16":
        return PrecisionPlan(precision, fp16_flag, not fp16_flag, False)
    if int8_mode == "explicit" or (int8_mode == "auto" and major_version(trt) >= 10):
        # Layers without Q/DQ run FP16 where the flag exists (weak typing); on 11 (strong typing) they stay FP32.
        return PrecisionPlan(precision, fp16_flag, False, False, True)
    if not has_int8_calibration(trt):
        raise JetsonDetectError(
            "--precision int8 --int8-mode implicit: TensorRT {} has no INT8 calibrators (implicit quantization was "
            "removed in 11.0): use --int8-mode explicit (Q/DQ with our own calibration)".format(trt.__version__))
    return PrecisionPlan(precision, fp16_flag, False, True)


def apply_precision(trt: Any, config: "tensorrt.IBuilderConfig", plan: PrecisionPlan,
                    calibrator: Optional[Any] = None) -> None:
    """Set the builder flags (and the INT8 calibrator) that ``plan`` asks for."""
    if plan.fp16_flag:
        config.set_flag(getattr(trt.BuilderFlag, "FP16"))
    if plan.explicit_int8 and getattr(trt.BuilderFlag, "INT8", None) is not None:
        config.set_flag(getattr(trt.BuilderFlag, "INT8"))  # 8.x/10.x run Q/DQ networks in INT8 only with it
    if plan.int8:
        if calibrator is None:
            raise ValueError("an INT8 plan needs a calibrator")
        config.set_flag(getattr(trt.BuilderFlag, "INT8"))
        setattr(config, "int8_calibrator", calibrator)


def entropy_calibrator_base(trt: Any) -> Any:
    """The ``IInt8EntropyCalibrator2`` base class (8.x–10.x); callers check ``has_int8_calibration`` first (§6)."""
    return getattr(trt, "IInt8EntropyCalibrator2")


def set_workspace_limit(trt: Any, config: "tensorrt.IBuilderConfig", nbytes: int) -> None:
    """Cap the builder workspace: ``set_memory_pool_limit`` from 8.4, ``max_workspace_size`` on 8.2 (§2)."""
    if hasattr(config, "set_memory_pool_limit") and hasattr(trt, "MemoryPoolType"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(nbytes))
    else:
        setattr(config, "max_workspace_size", int(nbytes))


def build_serialized_network(builder: "tensorrt.Builder", network: "tensorrt.INetworkDefinition",
                             config: "tensorrt.IBuilderConfig") -> Optional[bytes]:
    """The serialized engine, or None when TensorRT failed (it logs why); ``build_engine`` is never used (§2)."""
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        return None
    return bytes(memoryview(blob))


def attach_progress_monitor(trt: Any, config: "tensorrt.IBuilderConfig",
                            report: Callable[[str, str], None]) -> Optional[Any]:
    """Report builder phases through ``IProgressMonitor`` where it exists (9.1+); returns the monitor, or None.

    ``report(event, phase)`` gets "start" or "finish" and the phase name; the caller keeps the monitor alive.
    """
    base: Any = getattr(trt, "IProgressMonitor", None)
    if base is None or not hasattr(config, "progress_monitor"):
        return None

    class _Monitor(base):
        def __init__(self) -> None:
            super().__init__()  # TensorRT's pybind base must be initialised explicitly

        def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
            if parent_phase is None:
                report("start", phase_name)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            report("finish", phase_name)

    monitor = _Monitor()
    config.progress_monitor = monitor
    return monitor


class IOTensor(NamedTuple):
    """One engine input or output, the same on both runtime APIs."""

    name: str
    is_input: bool
    shape: Tuple[int, ...]
    dtype: np.dtype


# Our own table, not ``trt.nptype``: before 8.5.3 that maps BOOL to ``np.bool``, which NumPy 1.24-1.26 lack, so
# it fails for every dtype there. Keyed by the DataType member's name, the same in every version.
NUMPY_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
                "BOOL": np.bool_, "UINT8": np.uint8}


def _numpy_dtype(trt: Any, dtype: Any) -> np.dtype:
    name = str(getattr(dtype, "name", dtype))
    if name not in NUMPY_DTYPES:
        raise JetsonDetectError("the engine has a {} input or output, which jetson_detect cannot feed: rebuild it "
                                "with 'python -m jetson_detect build'".format(name))
    return np.dtype(NUMPY_DTYPES[name])


def uses_tensor_api(engine: Any) -> bool:
    """Tensor names + ``execute_async_v3`` (8.5+) rather than bindings + ``execute_async_v2`` (8.x) (§4)."""
    return hasattr(engine, "num_io_tensors")


def io_tensors(trt: Any, engine: Any) -> List[IOTensor]:
    """The engine's inputs and outputs in I/O order (binding order on 8.x, tensor index from 8.5)."""
    out: List[IOTensor] = []
    if uses_tensor_api(engine):
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            out.append(IOTensor(name, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                                tuple(int(d) for d in engine.get_tensor_shape(name)),
                                _numpy_dtype(trt, engine.get_tensor_dtype(name))))
        return out
    for i in range(getattr(engine, "num_bindings")):
        out.append(IOTensor(getattr(engine, "get_binding_name")(i), bool(getattr(engine, "binding_is_input")(i)),
                            tuple(int(d) for d in getattr(engine, "get_binding_shape")(i)),
                            _numpy_dtype(trt, getattr(engine, "get_binding_dtype")(i))))
    return out


class Executor(object):
    """Enqueues one inference of an execution context on a stream, given a device address per I/O tensor."""

    def __init__(self, context: Any, names: Sequence[str], tensor_api: bool) -> None:
        self.context = context
        self.names = list(names)
        self.tensor_api = tensor_api

    def enqueue(self, addresses: Dict[str, int], stream_handle: int) -> bool:
        """Bind every tensor's address and enqueue; False when TensorRT refused to enqueue."""
        if self.tensor_api:
            for name in self.names:
                self.context.set_tensor_address(name, int(addresses[name]))
            return bool(self.context.execute_async_v3(int(stream_handle)))
        bindings = [int(addresses[name]) for name in self.names]
        return bool(getattr(self.context, "execute_async_v2")(bindings, int(stream_handle)))


def make_executor(trt: Any, engine: Any, context: Any) -> Executor:
    """The executor for this engine's API: ``execute_async_v3`` when both engine and context have it, else v2."""
    names = [t.name for t in io_tensors(trt, engine)]
    return Executor(context, names, uses_tensor_api(engine) and hasattr(context, "execute_async_v3"))


def init_plugins(trt: Any, logger: Any) -> None:
    """Register TensorRT's own plugins (same call on every version); ours register when their library loads (§4)."""
    trt.init_libnvinfer_plugins(logger, "")


def add_quantize(trt: Any, network: Any, tensor: Any, scale: Any) -> Any:
    """An INT8 Quantize layer. TensorRT 11 keeps only the form that names the output type; 8.x has only the
    two-argument form (INT8 implied); 10.x has both."""
    if major_version(trt) >= 11:
        return network.add_quantize(tensor, scale, trt.int8)
    return network.add_quantize(tensor, scale)


def add_dequantize(trt: Any, network: Any, tensor: Any, scale: Any) -> Any:
    """A Dequantize layer back to float32 (same version rule as ``add_quantize``)."""
    if major_version(trt) >= 11:
        return network.add_dequantize(tensor, scale, trt.float32)
    return network.add_dequantize(tensor, scale)
