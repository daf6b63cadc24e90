"""Test doubles of the ``tensorrt`` module in three styles (8.2, 10.x, 11.x) and of CUDA memory.

Each style exposes exactly the attribute set ``../shared/TRT_COMPAT.md`` lists for that version, for every name the
product touches: ``hasattr`` on a module, builder, config, engine or context answers as the real version would.
The network is the CPU twin (``OnnxNetwork``), so building runs the real ``build_network``; a "serialized
engine" is a token for that network, and running it executes the network with ONNX Runtime reading and writing
the fake device memory, so the whole runtime path (buffers, bindings or tensor addresses, streams) runs on CPU.
The fake CUDA memory "compiles" the letterbox kernel and runs each launch as the NumPy/OpenCV letterbox, after
checking the launch's arguments against it, so the GPU pre-processing path runs on CPU too.
"""

import threading
import types
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from jetson_detect.backends import onnx_network as twin
from jetson_detect.backends.cuda_memory import CudaMemory
from jetson_detect.errors import JetsonDetectError
from jetson_detect.math.letterbox import letterbox, to_network_input

VERSIONS = {"8.2": "8.2.1.8", "10": "10.13.0.35", "11": "11.1.0.7"}


class Restricted(object):
    """Shows exactly ``allowed`` attributes of ``target`` (get and set); everything else is an AttributeError."""

    __slots__ = ("_target", "_allowed")

    def __init__(self, target: Any, allowed: Sequence[str]) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_allowed", frozenset(allowed))

    def __getattr__(self, name: str) -> Any:
        if name in object.__getattribute__(self, "_allowed"):
            return getattr(object.__getattribute__(self, "_target"), name)
        raise AttributeError("{!r} has no attribute {!r} in this TensorRT version".format(
            type(object.__getattribute__(self, "_target")).__name__, name))

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in object.__getattribute__(self, "_allowed"):
            raise AttributeError("cannot set {!r}: not in this TensorRT version".format(name))
        setattr(object.__getattribute__(self, "_target"), name, value)

    @property
    def target(self) -> Any:
        return object.__getattribute__(self, "_target")


class Member(object):
    """An enum member: an int with a name."""

    def __init__(self, name: str, value: int) -> None:
        self.name, self.value = name, value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Member) and (other.name, other.value) == (self.name, self.value)

    def __hash__(self) -> int:
        return hash((self.name, self.value))

    def __repr__(self) -> str:
        return "<{}: {}>".format(self.name, self.value)


def enum(name: str, members: Sequence[Tuple[str, int]]) -> Any:
    return type(name, (object,), {m: Member(m, v) for m, v in members})


# ---- the attribute sets, per style (TRT_COMPAT.md §1, §2, §4, §5, §6) ----

BUILDER_ATTRS = {
    "8.2": ("create_network", "create_builder_config", "build_serialized_network", "build_engine", "max_batch_size",
            "platform_has_fast_fp16", "platform_has_fast_int8", "num_DLA_cores"),
    "10": ("create_network", "create_builder_config", "build_serialized_network", "build_engine_with_config",
           "platform_has_fast_fp16", "platform_has_fast_int8", "num_DLA_cores"),
    "11": ("create_network", "create_builder_config", "build_serialized_network", "build_engine_with_config",
           "num_DLA_cores"),
}
_CONFIG_COMMON = ("set_flag", "clear_flag", "get_flag", "create_timing_cache", "set_timing_cache", "get_timing_cache",
                  "profiling_verbosity")
CONFIG_ATTRS = {
    "8.2": _CONFIG_COMMON + ("max_workspace_size", "int8_calibrator"),
    "10": _CONFIG_COMMON + ("set_memory_pool_limit", "get_memory_pool_limit", "int8_calibrator", "progress_monitor"),
    "11": _CONFIG_COMMON + ("set_memory_pool_limit", "get_memory_pool_limit", "progress_monitor"),
}
ENGINE_ATTRS = {
    "8.2": ("num_bindings", "get_binding_index", "get_binding_name", "get_binding_shape", "get_binding_dtype",
            "binding_is_input", "create_execution_context", "create_execution_context_without_device_memory",
            "device_memory_size", "serialize"),
    "10": ("num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_shape", "get_tensor_dtype",
           "create_execution_context", "create_execution_context_without_device_memory", "device_memory_size",
           "serialize"),
    "11": ("num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_shape", "get_tensor_dtype",
           "create_execution_context", "device_memory_size_v2", "serialize"),
}
CONTEXT_ATTRS = {
    "8.2": ("execute_v2", "execute_async_v2", "execute_async", "set_binding_shape"),
    "10": ("execute_v2", "execute_async_v3", "set_tensor_address", "set_input_shape"),
    "11": ("execute_v2", "execute_async_v3", "set_tensor_address", "set_input_shape"),
}
REGISTRY_ATTRS = {
    "8.2": ("get_plugin_creator", "plugin_creator_list", "register_creator"),
    "10": ("get_plugin_creator", "plugin_creator_list", "get_creator", "all_creators", "register_creator"),
    "11": ("get_creator", "all_creators", "register_creator"),
}
NETWORK_FLAGS = {
    "8.2": (("EXPLICIT_BATCH", 0), ("EXPLICIT_PRECISION", 1)),
    "10": (("EXPLICIT_BATCH", 0), ("STRONGLY_TYPED", 1)),
    "11": (("STRONGLY_TYPED", 0), ("PREFER_AOT_PYTHON_PLUGINS", 1), ("PREFER_JIT_PYTHON_PLUGINS", 2)),
}
BUILDER_FLAGS = {
    "8.2": (("FP16", 0), ("INT8", 1), ("DEBUG", 2), ("GPU_FALLBACK", 3), ("STRICT_TYPES", 4), ("REFIT", 5)),
    "10": (("FP16", 0), ("INT8", 1), ("DEBUG", 2), ("GPU_FALLBACK", 3), ("REFIT", 4), ("TF32", 6),
           ("VERSION_COMPATIBLE", 14), ("STRONGLY_TYPED_PLACEHOLDER", 99)),
    "11": (("DEBUG", 0), ("GPU_FALLBACK", 1), ("REFIT", 2), ("TF32", 3), ("VERSION_COMPATIBLE", 4)),
}
MODULE_ONLY = {
    "8.2": ("ResizeMode", "IInt8EntropyCalibrator2"),
    "10": ("InterpolationMode", "MemoryPoolType", "IInt8EntropyCalibrator2", "IProgressMonitor", "TensorIOMode"),
    "11": ("InterpolationMode", "MemoryPoolType", "IProgressMonitor", "TensorIOMode"),
}

_ENGINES = {}  # type: Dict[str, Any]  # token → network: a "serialized engine" names one of these
_ENGINES_LOCK = threading.Lock()
MAGIC = b"FAKETRT1|"


class Logger(object):
    ERROR = Member("ERROR", 1)
    WARNING = Member("WARNING", 2)
    INFO = Member("INFO", 3)
    VERBOSE = Member("VERBOSE", 4)

    def __init__(self, min_severity: Any = None) -> None:
        self.min_severity = min_severity


class IInt8EntropyCalibrator2(object):
    """The pybind base: subclasses must call ``__init__``; the builder checks it was."""

    def __init__(self) -> None:
        self._base_initialised = True


class IProgressMonitor(object):
    def __init__(self) -> None:
        self._base_initialised = True


class TimingCache(object):
    def __init__(self, data: bytes, origin: str) -> None:
        self.data = data
        self.origin = origin

    def serialize(self) -> bytes:
        return b"TIMING|" + self.origin.encode() + b"|" + str(len(self.data)).encode()


class HostMemory(bytes):
    """``IHostMemory``: a buffer (``memoryview`` works on it)."""


class ConfigImpl(object):
    def __init__(self, style: str) -> None:
        self.style = style
        self.flags = set()  # type: set
        self.max_workspace_size = 0
        self.pool_limits = {}  # type: Dict[Any, int]
        self.int8_calibrator = None  # type: Any
        self.progress_monitor = None  # type: Any
        self.profiling_verbosity = None
        self.timing_cache = None  # type: Optional[TimingCache]

    def set_flag(self, flag: Member) -> None:
        self.flags.add(flag.name)

    def clear_flag(self, flag: Member) -> None:
        self.flags.discard(flag.name)

    def get_flag(self, flag: Member) -> bool:
        return flag.name in self.flags

    def set_memory_pool_limit(self, pool: Member, size: int) -> None:
        self.pool_limits[pool.name] = size

    def get_memory_pool_limit(self, pool: Member) -> int:
        return self.pool_limits.get(pool.name, 0)

    def create_timing_cache(self, data: bytes) -> TimingCache:
        return TimingCache(bytes(data), self.style)

    def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
        if cache.data and not cache.data.startswith(b"TIMING|" + self.style.encode() + b"|"):
            return False  # another version/device's cache
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> Optional[TimingCache]:
        return self.timing_cache


class BuilderImpl(object):
    def __init__(self, trt: "FakeTrt", logger: Logger) -> None:
        self.trt = trt
        self.logger = logger
        self.max_batch_size = 1
        self.platform_has_fast_fp16 = True
        self.platform_has_fast_int8 = False
        self.num_DLA_cores = 0

    def create_network(self, flags: int = 0) -> Any:
        network = twin.OnnxNetwork()
        network.creation_flags = flags  # type: ignore[attr-defined]
        self.trt.networks.append(network)
        return network

    def create_builder_config(self) -> Restricted:
        config = Restricted(ConfigImpl(self.trt.style), CONFIG_ATTRS[self.trt.style])
        self.trt.configs.append(config)
        return config

    def build_engine(self, network: Any, config: Any) -> Any:
        raise AssertionError("build_engine must never be called (deprecated in 8.x, removed in 10)")

    def build_engine_with_config(self, network: Any, config: Any) -> Any:
        raise AssertionError("build_engine_with_config is not used")

    def _calibrate(self, calibrator: Any, network: Any) -> None:
        assert getattr(calibrator, "_base_initialised", False), "calibrator did not call the base __init__"
        cache = calibrator.read_calibration_cache()
        if cache:
            self.trt.calibration_cache_used = bytes(cache)
            return
        names = [t.name for t in network.inputs]
        batch_size = calibrator.get_batch_size()
        shape = tuple(network.inputs[0].shape)
        assert shape[0] == batch_size, "calibration batch must equal the engine batch (explicit batch)"
        while True:
            pointers = calibrator.get_batch(names)
            if not pointers:
                break
            assert len(pointers) == len(names)
            self.trt.calibration_batches.append(self.trt.memory.read(pointers[0], shape, np.float32).copy())
        calibrator.write_calibration_cache(HostMemory(b"TRT-FAKE-EntropyCalibration2\n"))

    def build_serialized_network(self, network: Any, config: Restricted) -> Optional[HostMemory]:
        impl = config.target
        if self.trt.fail_build:
            return None
        monitor = impl.progress_monitor
        if monitor is not None:
            assert getattr(monitor, "_base_initialised", False), "progress monitor did not call the base __init__"
            monitor.phase_start("Building engine", None, 2)
            monitor.step_complete("Building engine", 0)
        if "INT8" in impl.flags:
            self._calibrate(impl.int8_calibrator, network)
        if monitor is not None:
            monitor.phase_finish("Building engine")
        if impl.timing_cache is not None:
            impl.timing_cache.data = b"TIMING|" + self.trt.style.encode() + b"|built"
        token = "{}-{}".format(self.trt.style, len(_ENGINES))
        with _ENGINES_LOCK:
            _ENGINES[token] = network
        self.trt.built.append({"flags": sorted(impl.flags), "workspace": impl.max_workspace_size,
                               "pools": dict(impl.pool_limits), "creation_flags": network.creation_flags})
        return HostMemory(MAGIC + self.trt.style.encode() + b"|" + token.encode())


class EngineImpl(object):
    """Runs the stored twin network with ONNX Runtime."""

    def __init__(self, trt: "FakeTrt", network: Any) -> None:
        from jetson_detect.backends.onnxruntime_backend import OnnxRuntimeEngine
        self.trt = trt
        self.network = network
        self.tensors = [(t.name, True, tuple(t.shape), t.dtype) for t in network.inputs] + \
                       [(t.name, False, tuple(t.shape), t.dtype) for t in network.outputs]
        self.ort = OnnxRuntimeEngine(network, threads=1)
        self.device_memory_size = 0
        self.device_memory_size_v2 = 0

    # bindings API (8.x)
    @property
    def num_bindings(self) -> int:
        return len(self.tensors)

    def get_binding_index(self, name: str) -> int:
        return [t[0] for t in self.tensors].index(name)

    def get_binding_name(self, index: int) -> str:
        return self.tensors[index][0]

    def get_binding_shape(self, index: int) -> Tuple[int, ...]:
        return self.tensors[index][2]

    def get_binding_dtype(self, index: int) -> str:
        return self.tensors[index][3]

    def binding_is_input(self, index: int) -> bool:
        return self.tensors[index][1]

    # tensor API (8.5+)
    @property
    def num_io_tensors(self) -> int:
        return len(self.tensors)

    def get_tensor_name(self, index: int) -> str:
        return self.tensors[index][0]

    def _tensor(self, name: str) -> Tuple[str, bool, Tuple[int, ...], str]:
        return [t for t in self.tensors if t[0] == name][0]

    def get_tensor_mode(self, name: str) -> Member:
        return self.trt.module.TensorIOMode.INPUT if self._tensor(name)[1] else self.trt.module.TensorIOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> Tuple[int, ...]:
        return self._tensor(name)[2]

    def get_tensor_dtype(self, name: str) -> str:
        return self._tensor(name)[3]

    def create_execution_context(self) -> Restricted:
        context = Restricted(ContextImpl(self), CONTEXT_ATTRS[self.trt.style])
        self.trt.contexts.append(context)
        return context

    def create_execution_context_without_device_memory(self) -> Any:
        raise AssertionError("not used")

    def serialize(self) -> Any:
        raise AssertionError("not used")


class ContextImpl(object):
    def __init__(self, engine: EngineImpl) -> None:
        self.engine = engine
        self.addresses = {}  # type: Dict[str, int]
        self.calls = []  # type: List[Tuple[str, int]]

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def set_input_shape(self, name: str, shape: Any) -> bool:
        return True

    def set_binding_shape(self, index: int, shape: Any) -> bool:
        return True

    def _run(self, addresses: Dict[str, int]) -> None:
        memory = self.engine.trt.memory
        memory.require_active()
        (name, _, shape, dtype), = [t for t in self.engine.tensors if t[1]]
        batch = memory.read(addresses[name], shape, np.dtype(dtype)).astype(np.float32)
        results = self.engine.ort.run(batch)
        for out_name, _, out_shape, out_dtype in self.engine.tensors:
            if out_name != name:
                memory.write(addresses[out_name], np.asarray(results[out_name], dtype=np.dtype(out_dtype)))

    def execute_async_v2(self, bindings: List[int], stream_handle: int) -> bool:
        self.calls.append(("execute_async_v2", stream_handle))
        self.engine.trt.memory.log.append(("execute", stream_handle))
        self._run({t[0]: ptr for t, ptr in zip(self.engine.tensors, bindings)})
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.calls.append(("execute_async_v3", stream_handle))
        self.engine.trt.memory.log.append(("execute", stream_handle))
        self._run(self.addresses)
        return True

    def execute_async(self, *args: Any) -> bool:
        raise AssertionError("execute_async (implicit batch) must never be called")

    def execute_v2(self, bindings: List[int]) -> bool:
        raise AssertionError("the synchronous execute_v2 is not used")


class RuntimeImpl(object):
    def __init__(self, trt: "FakeTrt", logger: Logger) -> None:
        self.trt = trt

    def deserialize_cuda_engine(self, data: bytes) -> Optional[Restricted]:
        data = bytes(data)
        if not data.startswith(MAGIC):
            return None  # TensorRT logs an error and returns None for garbage
        style, token = data[len(MAGIC):].decode().split("|", 1)
        if style != self.trt.style or token not in _ENGINES:
            return None  # an engine of another version
        return Restricted(EngineImpl(self.trt, _ENGINES[token]), ENGINE_ATTRS[self.trt.style])


class RegistryImpl(object):
    """TensorRT's plugin registry over the twin's (where the CPU YoloDecodeNMS lives), with per-version names."""

    def __init__(self) -> None:
        self._twin = twin.get_plugin_registry()

    def get_plugin_creator(self, name: str, version: str, namespace: str = "") -> Any:
        return self._twin.get_creator(name, version, namespace)

    def get_creator(self, name: str, version: str, namespace: str = "") -> Any:
        return self._twin.get_creator(name, version, namespace)

    @property
    def plugin_creator_list(self) -> List[Any]:
        return self._twin.all_creators

    @property
    def all_creators(self) -> List[Any]:
        return self._twin.all_creators

    def register_creator(self, creator: Any, namespace: str = "") -> bool:
        return self._twin.register_creator(creator, namespace)


def _nptype(dtype: Any) -> type:
    return {"float32": np.float32, "float16": np.float16, "int32": np.int32}[str(dtype)]


class FakeTrt(object):
    """One double: ``module`` is what ``import tensorrt`` gives; the rest records what the product did."""

    def __init__(self, style: str, memory: Optional["FakeCudaMemory"] = None) -> None:
        assert style in VERSIONS
        self.style = style
        self.memory = memory or FakeCudaMemory()
        self.fail_build = False
        self.networks = []  # type: List[Any]
        self.configs = []  # type: List[Any]
        self.contexts = []  # type: List[Any]
        self.built = []  # type: List[Dict[str, Any]]
        self.calibration_batches = []  # type: List[np.ndarray]
        self.calibration_cache_used = None  # type: Optional[bytes]
        self.plugins_initialised = 0
        self.registry = Restricted(RegistryImpl(), REGISTRY_ATTRS[style])
        self.module = self._module()

    def _module(self) -> types.ModuleType:
        module = types.ModuleType("tensorrt")
        trt = self

        def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
            trt.plugins_initialised += 1
            return True

        common = {
            "__version__": VERSIONS[self.style],
            "Logger": Logger,
            "Builder": lambda logger: Restricted(BuilderImpl(trt, logger), BUILDER_ATTRS[trt.style]),
            "Runtime": lambda logger: RuntimeImpl(trt, logger),
            "BuilderFlag": enum("BuilderFlag", BUILDER_FLAGS[self.style]),
            "NetworkDefinitionCreationFlag": enum("NetworkDefinitionCreationFlag", NETWORK_FLAGS[self.style]),
            "DataType": twin.DataType, "float32": twin.float32, "float16": twin.float16, "int32": twin.int32,
            "nptype": _nptype,
            "init_libnvinfer_plugins": init_libnvinfer_plugins,
            "get_plugin_registry": lambda: trt.registry,
            "PluginField": twin.PluginField, "PluginFieldCollection": twin.PluginFieldCollection,
            "PluginFieldType": twin.PluginFieldType,
            "ActivationType": twin.ActivationType, "ElementWiseOperation": twin.ElementWiseOperation,
            "PoolingType": twin.PoolingType,
        }  # type: Dict[str, Any]
        only = {
            "ResizeMode": twin.InterpolationMode, "InterpolationMode": twin.InterpolationMode,
            "MemoryPoolType": enum("MemoryPoolType", (("WORKSPACE", 0), ("DLA_MANAGED_SRAM", 1))),
            "IInt8EntropyCalibrator2": IInt8EntropyCalibrator2, "IProgressMonitor": IProgressMonitor,
            "TensorIOMode": enum("TensorIOMode", (("NONE", 0), ("INPUT", 1), ("OUTPUT", 2))),
        }
        for name, value in common.items():
            setattr(module, name, value)
        for name in MODULE_ONLY[self.style]:
            setattr(module, name, only[name])
        return module


class FakeStream(object):
    def __init__(self, index: int) -> None:
        self.index = index


class FakeEvent(object):
    def __init__(self) -> None:
        self.time = None  # type: Optional[int]


class FakeCudaMemory(CudaMemory):
    """CUDA memory on the CPU: device buffers are byte arrays keyed by fake addresses; every op is logged."""

    api = "fake"

    def __init__(self, name: str = "NVIDIA GeForce RTX 3060", compute_capability: Tuple[int, int] = (8, 6)) -> None:
        self.name = name
        self.cc = compute_capability
        self.buffers = {}  # type: Dict[int, np.ndarray]
        self.log = []  # type: List[Tuple[str, Any]]
        self._next = 0x10000
        self._clock = 0
        self._active = threading.local()
        self.activations = 0
        self.streams = 0
        self.closed = False
        self.fail_compile = None  # type: Optional[str]  # the compiler's complaint, when set
        self.compiled = []  # type: List[str]  # names of the kernels compiled
        self.freed = []  # type: List[int]  # sizes of the buffers freed before close, in bytes

    def device_name(self) -> str:
        return self.name

    def compute_capability(self) -> Tuple[int, int]:
        return self.cc

    def activate(self) -> Any:
        memory = self

        class _Active(object):
            def __enter__(self) -> None:
                memory._active.depth = getattr(memory._active, "depth", 0) + 1
                memory.activations += 1

            def __exit__(self, *exc: Any) -> None:
                memory._active.depth -= 1

        return _Active()

    def require_active(self) -> None:
        assert getattr(self._active, "depth", 0) > 0, "CUDA used without the context current on this thread"

    def pinned_empty(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        self.require_active()
        return np.zeros(tuple(shape), dtype=np.dtype(dtype))

    def device_alloc(self, nbytes: int) -> int:
        self.require_active()
        ptr = self._next
        self._next += max(int(nbytes), 1) + 256
        self.buffers[ptr] = np.zeros(max(int(nbytes), 1), np.uint8)
        return ptr

    def stream_create(self) -> FakeStream:
        self.require_active()
        self.streams += 1
        return FakeStream(self.streams - 1)

    def stream_handle(self, stream: FakeStream) -> int:
        return 7000 + stream.index

    def stream_synchronize(self, stream: FakeStream) -> None:
        self.require_active()
        self.log.append(("sync", self.stream_handle(stream)))

    def read(self, ptr: int, shape: Sequence[int], dtype: Any) -> np.ndarray:
        dt = np.dtype(dtype)
        count = int(np.prod(shape))
        return self.buffers[ptr][:count * dt.itemsize].view(dt).reshape(tuple(shape))

    def write(self, ptr: int, value: np.ndarray) -> None:
        raw = np.ascontiguousarray(value).view(np.uint8).reshape(-1)
        self.buffers[ptr][:raw.size] = raw

    def copy_htod_async(self, device_ptr: int, host: np.ndarray, stream: FakeStream) -> None:
        self.require_active()
        self.write(device_ptr, host)
        self.log.append(("htod", self.stream_handle(stream)))

    def copy_dtoh_async(self, host: np.ndarray, device_ptr: int, stream: FakeStream) -> None:
        self.require_active()
        host.view(np.uint8).reshape(-1)[:] = self.buffers[device_ptr][:host.nbytes]
        self.log.append(("dtoh", self.stream_handle(stream)))

    def copy_htod(self, device_ptr: int, host: np.ndarray) -> None:
        self.write(device_ptr, host)
        self.log.append(("htod_sync", None))

    def event_create(self) -> FakeEvent:
        return FakeEvent()

    def event_record(self, event: FakeEvent, stream: FakeStream) -> None:
        self._clock += 1
        event.time = self._clock

    def event_elapsed_ms(self, start: FakeEvent, end: FakeEvent) -> float:
        assert start.time is not None and end.time is not None
        return float(end.time - start.time)

    def device_free(self, device_ptr: int) -> None:
        self.require_active()
        self.freed.append(self.buffers.pop(device_ptr).size)

    def pinned_free(self, host: np.ndarray) -> None:
        self.require_active()
        self.freed.append(host.nbytes)

    def _locate(self, ptr: int) -> Tuple[np.ndarray, int]:
        """The buffer holding device address ``ptr`` and the offset into it."""
        base = max(b for b in self.buffers if b <= ptr)
        assert ptr - base < self.buffers[base].size, "address outside every device buffer"
        return self.buffers[base], ptr - base

    def compile_kernel(self, source: str, name: str, where: str) -> str:
        self.require_active()
        if self.fail_compile is not None:
            raise JetsonDetectError("{}: NVRTC could not compile it for sm_86: {}".format(where, self.fail_compile))
        assert 'extern "C" __global__ void {}('.format(name) in source
        self.compiled.append(name)
        return name

    def launch_kernel(self, kernel: str, grid: Tuple[int, int, int], block: Tuple[int, int, int],
                      args: Sequence[np.generic], stream: FakeStream) -> None:
        """The letterbox kernel, done by the CPU letterbox after checking every argument the product packed."""
        import cv2
        self.require_active()
        assert kernel == "letterbox_preprocess"
        assert [np.dtype(type(a)) for a in args] == [np.dtype(np.uintp)] + [np.dtype(np.int32)] * 3 + [
            np.dtype(np.uintp)] + [np.dtype(np.int32)] * 5 + [np.dtype(np.float32)]
        src, height, width, row_bytes, dst, size, new_w, new_h, left, top = [int(a) for a in args[:10]]
        assert float(args[10]) == 114.0 and row_bytes == width * 3
        assert grid[0] * block[0] >= size and grid[1] * block[1] >= size and grid[2] == block[2] == 1
        image = self.read(src, (height, width, 3), np.uint8)
        boxed, geometry = letterbox(image, size, lambda img, wh: cv2.resize(img, wh, interpolation=cv2.INTER_LINEAR))
        assert (new_w, new_h, left, top) == (geometry.new_w, geometry.new_h, geometry.left, geometry.top)
        buffer, offset = self._locate(dst)
        raw = to_network_input(boxed).view(np.uint8).reshape(-1)
        assert offset + raw.size <= buffer.size, "kernel would write past the input buffer"
        buffer[offset:offset + raw.size] = raw
        self.log.append(("launch", self.stream_handle(stream)))

    def close(self) -> None:
        self.closed = True


def install(monkeypatch: Any, style: str, memory: Optional[FakeCudaMemory] = None,
            plugin_loader: Optional[Callable[[], None]] = None) -> FakeTrt:
    """Make ``import tensorrt`` give the ``style`` double and the plugin loader a no-op (or ``plugin_loader``)."""
    import sys

    from jetson_detect.backends import tensorrt_builder
    fake = FakeTrt(style, memory)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    fake.plugin_loads = []  # type: ignore[attr-defined]
    monkeypatch.setattr(tensorrt_builder, "load_plugin_library",
                        plugin_loader or (lambda: fake.plugin_loads.append(fake.plugins_initialised)))  # type: ignore[attr-defined]
    return fake




def use_fake_cuda(monkeypatch: Any, fake: FakeTrt) -> None:
    """Make every ``open_cuda_memory`` the product calls return the double's fake memory."""
    from jetson_detect.backends import tensorrt_backend
    from jetson_detect.commands import build
    monkeypatch.setattr(tensorrt_backend, "open_cuda_memory", lambda api="auto", device_index=0: fake.memory)
    monkeypatch.setattr(build, "open_cuda_memory", lambda api="auto", device_index=0: fake.memory)
