"""Test doubles of the ``tensorrt`` module, built from the API surface of a real release, and of CUDA memory.

``FakeTrt(release)`` exposes exactly what ``tests/data/trt_surface/<release>.json`` (read from NVIDIA's pybind11
sources by ``trt_surface.py``) says that release has: a module attribute, class attribute, method, property or
enum member it lacks is an AttributeError; a call with arguments its signatures do not take (wrong or extra
keywords, missing or extra positional arguments, keywords to a function that names none) is a TypeError, as
pybind11 raises; writing a read-only property is an AttributeError. Behind the surface, small implementations do
the work: the network is the CPU twin (``OnnxNetwork``), so building runs the real ``build_network``; a
"serialized engine" is a token for that network, and running it executes the network with ONNX Runtime reading and
writing the fake device memory, so the whole runtime path (buffers, bindings or tensor addresses, streams) runs on
CPU. The fake CUDA memory "compiles" the letterbox kernel and runs each launch as the NumPy/OpenCV letterbox, after
checking the launch's arguments, and counts every stream, event and buffer it hands out, so tests can show that
everything is released.

Enum member values are their declaration order (the binding sources give names, not the C++ values); the product
compares members and uses only EXPLICIT_BATCH's bit, which is 0 in both releases that have it.
"""

import threading
import types
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import trt_surface

from jetson_detect.backends import onnx_network as twin
from jetson_detect.backends.cuda_memory import CudaMemory
from jetson_detect.errors import JetsonDetectError
from jetson_detect.math.letterbox import letterbox, to_network_input

RELEASES = trt_surface.RELEASES
ALIASES = {"8.0": "8.0.1", "8.2": "8.2.1", "10": "10.16.0", "11": "11.1.0"}


def release_of(style: str) -> str:
    return ALIASES.get(style, style)


_SURFACES = {}  # type: Dict[str, Dict[str, Any]]


def surface(release: str) -> Dict[str, Any]:
    """The committed surface of ``release`` (cached)."""
    if release not in _SURFACES:
        _SURFACES[release] = trt_surface.load(release)
    return _SURFACES[release]


# ---- argument checking, as pybind11 does it ----

def binds(signature: Dict[str, Any], args: Sequence[Any], kwargs: Dict[str, Any]) -> bool:
    """Whether a call with ``args``/``kwargs`` fits one overload's signature."""
    if "positional" in signature:
        count = signature["positional"]
        return not kwargs and (count is None or len(args) == count)
    names = [name for name, _ in signature["args"]]
    if len(args) > len(names):
        return False
    given = set(names[:len(args)])
    for key in kwargs:
        if key not in names or key in given:
            return False
        given.add(key)
    return all(name in given or default for name, default in signature["args"])


def check_call(where: str, signatures: Sequence[Dict[str, Any]], args: Sequence[Any], kwargs: Dict[str, Any]) -> None:
    if not any(binds(s, args, kwargs) for s in signatures):
        raise TypeError("{}(): incompatible function arguments: {} positional, keywords {}; this TensorRT takes "
                        "{}".format(where, len(args), sorted(kwargs), [s.get("args", s.get("positional"))
                                                                        for s in signatures]))


# ---- enums ----

class Member(object):
    """An enum member: a name and an int, like a pybind11 enum value."""

    def __init__(self, enum_name: str, name: str, value: int) -> None:
        self.enum_name, self.name, self.value = enum_name, name, value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Member) and (other.enum_name, other.name) == (self.enum_name, self.name)

    def __hash__(self) -> int:
        return hash((self.enum_name, self.name))

    def __repr__(self) -> str:
        return "<{}.{}: {}>".format(self.enum_name, self.name, self.value)


def make_enum(name: str, members: Sequence[str]) -> Any:
    short = name.rsplit(".", 1)[-1]
    return type(short, (object,), {m: Member(short, m, i) for i, m in enumerate(members)})


# ---- the surface proxy ----

class Api(object):
    """One release's surface: class lookups, wrapping of results and unwrapping of arguments."""

    def __init__(self, release: str) -> None:
        self.release = release
        self.surface = surface(release)
        self.classes = self.surface["classes"]
        self.enums = {name: make_enum(name, e["members"]) for name, e in self.surface["enums"].items()}
        self.type_names = {}  # type: Dict[type, str]

    def chain(self, class_name: str) -> List[Dict[str, Any]]:
        """The class and all its bases, nearest first."""
        out, todo = [], [class_name]
        while todo:
            name = todo.pop(0)
            cls = self.classes[name]
            out.append(cls)
            todo.extend(cls["bases"])
        return out

    def lookup(self, class_name: str, attr: str) -> Optional[Tuple[str, Any]]:
        for cls in self.chain(class_name):
            if attr in cls["methods"]:
                return "method", cls["methods"][attr]
            if attr in cls["properties"]:
                return "property", cls["properties"][attr]
        return None

    def wrap(self, value: Any) -> Any:
        if isinstance(value, SurfaceObject) or value is None:
            return value
        name = self.type_names.get(type(value))
        if name is not None:
            return SurfaceObject(self, value, name)
        if isinstance(value, list):
            return [self.wrap(v) for v in value]
        if isinstance(value, tuple) and any(type(v) in self.type_names for v in value):
            return tuple(self.wrap(v) for v in value)
        return value


def unwrap(value: Any, for_twin: bool) -> Any:
    """The implementation behind a proxy; a TensorRT enum member becomes the twin's value when a twin object gets it."""
    if isinstance(value, SurfaceObject):
        impl = object.__getattribute__(value, "_impl")
        return impl.cpu if for_twin and isinstance(impl, PluginImpl) else impl
    if isinstance(value, Member) and for_twin:
        enum_name = "InterpolationMode" if value.enum_name == "ResizeMode" else value.enum_name
        return getattr(getattr(twin, enum_name), value.name)
    if type(value) in (list, tuple):
        return type(value)(unwrap(v, for_twin) for v in value)
    return value


def _is_twin(impl: Any) -> bool:
    return type(impl).__module__ == twin.__name__ or isinstance(impl, twin.OnnxNetwork)


class SurfaceObject(object):
    """An object of class ``class_name`` of the release: only the surface's methods and properties exist."""

    __slots__ = ("_api", "_impl", "_class", "__weakref__")

    def __init__(self, api: Api, impl: Any, class_name: str) -> None:
        object.__setattr__(self, "_api", api)
        object.__setattr__(self, "_impl", impl)
        object.__setattr__(self, "_class", class_name)

    @property
    def target(self) -> Any:
        """The implementation (for tests to inspect what the product did)."""
        return object.__getattribute__(self, "_impl")

    def __getattr__(self, name: str) -> Any:
        api, impl, cls = (object.__getattribute__(self, n) for n in ("_api", "_impl", "_class"))
        found = api.lookup(cls, name)
        if found is None:
            raise AttributeError("'tensorrt.{}' object has no attribute '{}' (TensorRT {})".format(
                cls, name, api.release))
        kind, detail = found
        if kind == "property":
            if detail == "wo":
                raise AttributeError("tensorrt.{}.{} is write-only".format(cls, name))
            return api.wrap(getattr(impl, name))
        target = getattr(impl, name)
        for_twin = _is_twin(impl)

        def method(*args: Any, **kwargs: Any) -> Any:
            check_call("tensorrt.{}.{}".format(cls, name), detail, args, kwargs)
            return api.wrap(target(*unwrap(list(args), for_twin), **{k: unwrap(v, for_twin)
                                                                     for k, v in kwargs.items()}))

        return method

    def __setattr__(self, name: str, value: Any) -> None:
        api, impl, cls = (object.__getattribute__(self, n) for n in ("_api", "_impl", "_class"))
        found = api.lookup(cls, name)
        if found is None or found[0] != "property":
            raise AttributeError("'tensorrt.{}' object has no property '{}' (TensorRT {})".format(
                cls, name, api.release))
        if found[1] == "ro":
            raise AttributeError("tensorrt.{}.{} is read-only".format(cls, name))
        setattr(impl, name, unwrap(value, _is_twin(impl)))

    def __repr__(self) -> str:
        return "<tensorrt.{} double>".format(object.__getattribute__(self, "_class"))


def surface_class(api: Api, name: str, construct: Optional[Callable[..., Any]]) -> type:
    """A module-level class of the release: class attributes from the surface (exported enum members, nested enums);
    calling it checks the constructor's signatures; ``construct`` makes the implementation (None: not constructible
    from Python in the double, unless subclassed)."""
    attrs = {}  # type: Dict[str, Any]
    for cls_name in reversed([name] + [b for b in _all_bases(api, name)]):
        for enum_name, enum in api.surface["enums"].items():
            parent, _, short = enum_name.rpartition(".")
            if parent == cls_name:
                attrs[short] = api.enums[enum_name]
                if enum["export_values"]:
                    for member in enum["members"]:
                        attrs[member] = getattr(api.enums[enum_name], member)
    init_sigs = [s for c in api.chain(name)[:1] for s in c["init"]]

    class Meta(type):
        def __call__(cls, *args: Any, **kwargs: Any) -> Any:
            if cls.__dict__.get("_surface_root"):
                check_call("tensorrt.{}.__init__".format(name), init_sigs, args, kwargs)
                if construct is None:
                    raise TypeError("tensorrt.{}: no constructor defined".format(name))
                return SurfaceObject(api, construct(*unwrap(list(args), False),
                                                    **{k: unwrap(v, False) for k, v in kwargs.items()}), name)
            return type.__call__(cls, *args, **kwargs)

    def base_init(self: Any, *args: Any, **kwargs: Any) -> None:
        check_call("tensorrt.{}.__init__".format(name), init_sigs, args, kwargs)
        self._base_initialised = True

    attrs.update({"_surface_root": True, "__init__": base_init, "__module__": "tensorrt"})
    return Meta(name, (object,), attrs)


def _all_bases(api: Api, name: str) -> List[str]:
    return [b for c in api.chain(name) for b in c["bases"]]


def trampoline_class(api: Api, name: str) -> type:
    """A class the product subclasses (calibrator, progress monitor): the base ``__init__`` must be called."""
    init_sigs = api.classes[name]["init"]

    def base_init(self: Any, *args: Any, **kwargs: Any) -> None:
        check_call("tensorrt.{}.__init__".format(name), init_sigs, args, kwargs)
        self._base_initialised = True

    return type(name, (object,), {"__init__": base_init, "__module__": "tensorrt",
                                  "_surface_methods": frozenset(m for c in api.chain(name) for m in c["methods"])})


def call_override(obj: Any, name: str, *args: Any) -> Any:
    """TensorRT calling a Python override: only a method of the surface class, and the base was initialised."""
    assert getattr(obj, "_base_initialised", False), "{} did not call the base __init__".format(type(obj).__name__)
    assert name in type(obj)._surface_methods, "{} is not a method TensorRT calls".format(name)
    return getattr(obj, name)(*args)


# ---- implementations behind the surface ----

_ENGINES = {}  # type: Dict[str, Any]  # token → network: a "serialized engine" names one of these
_ENGINES_LOCK = threading.Lock()
MAGIC = b"FAKETRT1|"


class LoggerImpl(object):
    def __init__(self, min_severity: Any = None) -> None:
        self.min_severity = min_severity


class TimingCache(object):
    def __init__(self, data: bytes, origin: str) -> None:
        self.data = data
        self.origin = origin

    def serialize(self) -> "HostMemory":
        return HostMemory(b"TIMING|" + self.origin.encode() + b"|" + str(len(self.data)).encode())


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

    def set_memory_pool_limit(self, pool: Member, pool_size: int) -> None:
        self.pool_limits[pool.name] = pool_size

    def get_memory_pool_limit(self, pool: Member) -> int:
        return self.pool_limits.get(pool.name, 0)

    def create_timing_cache(self, serialized_timing_cache: bytes) -> TimingCache:
        return TimingCache(bytes(serialized_timing_cache), self.style)

    def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
        if cache.data and not cache.data.startswith(b"TIMING|" + self.style.encode() + b"|"):
            return False  # another version/device's cache
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> Optional[TimingCache]:
        return self.timing_cache


class NetworkImpl(twin.OnnxNetwork):
    """The twin network behind ``INetworkDefinition``; ``add_plugin_v3`` adds the twin's plugin layer too."""

    def add_plugin_v3(self, inputs: Sequence[Any], shape_inputs: Sequence[Any], plugin: Any) -> Any:
        assert list(shape_inputs) == [], "YoloDecodeNMS has no shape inputs"
        layer = self.add_plugin_v2(inputs, plugin)
        layer.__class__ = PluginV3Layer
        return layer


class PluginV3Layer(twin.PluginV2Layer):
    pass


class BuilderImpl(object):
    def __init__(self, trt: "FakeTrt", logger: Any) -> None:
        self.trt = trt
        self.logger = logger
        trt.loggers_seen.add(id(logger))
        self.max_batch_size = 1
        self.platform_has_fast_fp16 = True
        self.platform_has_fast_int8 = False
        self.num_DLA_cores = 0

    def create_network(self, flags: int = 0) -> NetworkImpl:
        network = NetworkImpl()
        network.creation_flags = int(flags)  # type: ignore[attr-defined]
        self.trt.networks.append(network)
        return network

    def create_builder_config(self) -> ConfigImpl:
        config = ConfigImpl(self.trt.style)
        self.trt.configs.append(SurfaceObject(self.trt.api, config, "IBuilderConfig"))
        return config

    def _calibrate(self, calibrator: Any, network: Any) -> None:
        cache = call_override(calibrator, "read_calibration_cache")
        if cache:
            self.trt.calibration_cache_used = bytes(cache)
            return
        names = [t.name for t in network.inputs]
        batch_size = call_override(calibrator, "get_batch_size")
        shape = tuple(network.inputs[0].shape)
        assert shape[0] == batch_size, "calibration batch must equal the engine batch (explicit batch)"
        while True:
            pointers = call_override(calibrator, "get_batch", names)
            if not pointers:
                break
            assert len(pointers) == len(names)
            self.trt.calibration_batches.append(self.trt.memory.read(pointers[0], shape, np.float32).copy())
        call_override(calibrator, "write_calibration_cache", HostMemory(b"TRT-FAKE-EntropyCalibration2\n"))

    def build_serialized_network(self, network: NetworkImpl, config: ConfigImpl) -> Optional[HostMemory]:
        if self.trt.fail_build:
            return None
        monitor = config.progress_monitor
        if monitor is not None:
            call_override(monitor, "phase_start", "Building engine", None, 2)
            call_override(monitor, "step_complete", "Building engine", 0)
        explicit = any(type(layer).__name__ == "QuantizeLayer" for layer in network.layers)
        if "INT8" in config.flags and not explicit:  # a Q/DQ network is explicitly quantized: no calibrator
            self._calibrate(config.int8_calibrator, network)
        if monitor is not None:
            call_override(monitor, "phase_finish", "Building engine")
        if config.timing_cache is not None:
            config.timing_cache.data = b"TIMING|" + self.trt.style.encode() + b"|built"
        token = "{}-{}".format(self.trt.style, len(_ENGINES))
        with _ENGINES_LOCK:
            _ENGINES[token] = network
        self.trt.built.append({"flags": sorted(config.flags), "workspace": config.max_workspace_size,
                               "pools": dict(config.pool_limits), "creation_flags": network.creation_flags})
        return HostMemory(MAGIC + self.trt.style.encode() + b"|" + token.encode())


_DTYPE_MEMBERS = {"float32": "FLOAT", "float16": "HALF", "int32": "INT32"}


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

    def _dtype(self, dtype: str) -> Member:
        return getattr(self.trt.module.DataType, _DTYPE_MEMBERS[dtype])

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

    def get_binding_dtype(self, index: int) -> Member:
        return self._dtype(self.tensors[index][3])

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

    def get_tensor_dtype(self, name: str) -> Member:
        return self._dtype(self._tensor(name)[3])

    def create_execution_context(self, *args: Any, **kwargs: Any) -> Optional["ContextImpl"]:
        if self.trt.fail_context:
            return None  # TensorRT returns None when it cannot allocate the context's memory
        context = ContextImpl(self)
        self.trt.contexts.append(SurfaceObject(self.trt.api, context, "IExecutionContext"))
        return context


class ContextImpl(object):
    def __init__(self, engine: EngineImpl) -> None:
        self.engine = engine
        self.addresses = {}  # type: Dict[str, int]
        self.calls = []  # type: List[Tuple[str, int]]

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self.addresses[name] = memory
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

    def execute_async_v2(self, bindings: List[int], stream_handle: int, input_consumed: Any = None) -> bool:
        self.calls.append(("execute_async_v2", stream_handle))
        self.engine.trt.memory.log.append(("execute", stream_handle))
        self._run({t[0]: ptr for t, ptr in zip(self.engine.tensors, bindings)})
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.calls.append(("execute_async_v3", stream_handle))
        self.engine.trt.memory.log.append(("execute", stream_handle))
        self._run(self.addresses)
        return True


class RuntimeImpl(object):
    def __init__(self, trt: "FakeTrt", logger: Any) -> None:
        self.trt = trt
        trt.loggers_seen.add(id(logger))

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> Optional[EngineImpl]:
        data = bytes(serialized_engine)
        if not data.startswith(MAGIC):
            return None  # TensorRT logs an error and returns None for garbage
        style, token = data[len(MAGIC):].decode().split("|", 1)
        if style != self.trt.style or token not in _ENGINES:
            return None  # an engine of another version
        return EngineImpl(self.trt, _ENGINES[token])


class PluginFieldImpl(object):
    """``trt.PluginField``: keeps its array alive (``py::keep_alive``) for as long as the field object lives."""

    def __init__(self, name: str = "", data: Any = None, type: Any = None) -> None:  # noqa: A002 - TensorRT's keyword
        assert data is None or isinstance(data, np.ndarray), "PluginField data must be a buffer (a NumPy array)"
        self.name, self.data, self.type = name, data, type
        self.size = 0 if data is None else int(data.size)


class FieldCopy(object):
    """An element of ``PluginFieldCollection`` (a C++ vector of PluginField structs): the name, the type and a raw
    pointer to the array; nothing keeps the array alive."""

    def __init__(self, field: PluginFieldImpl) -> None:
        self.name, self.type = field.name, field.type
        self._data = weakref.ref(field.data)

    @property
    def data(self) -> np.ndarray:
        array = self._data()
        assert array is not None, "PluginField {!r}: its array was freed before create_plugin (dangling pointer)" \
            .format(self.name)
        return array


class FieldCollectionImpl(list):
    def __init__(self, fields: Sequence[Any]) -> None:
        items = [unwrap(f, False) for f in fields]
        assert all(isinstance(f, PluginFieldImpl) for f in items), "PluginFieldCollection takes PluginField objects"
        super().__init__(FieldCopy(f) for f in items)


class PluginImpl(object):
    """A created plugin: the twin's CPU plugin, as ``IPluginV2`` (8.x) or ``IPluginV3`` (10/11)."""

    def __init__(self, cpu: Any) -> None:
        self.cpu = cpu


_FIELD_KINDS = {"INT32": np.dtype(np.int32), "FLOAT32": np.dtype(np.float32)}


class CreatorImpl(object):
    """The YoloDecodeNMS creator as the plugin library registers it: V2 (``IPluginCreator``) on 8.x, V3
    (``IPluginCreatorV3One``) on 10/11; like the C++ creator, a field it rejects gives None."""

    def __init__(self, trt: "FakeTrt", cpu_creator: Any, v3: bool) -> None:
        self.trt = trt
        self.cpu_creator = cpu_creator
        self.v3 = v3
        self.name = cpu_creator.name
        self.plugin_version = cpu_creator.plugin_version
        self.plugin_namespace = cpu_creator.plugin_namespace

    def create_plugin(self, name: str, field_collection: Any, phase: Any = None) -> Optional[PluginImpl]:
        if self.v3:
            assert phase == self.trt.module.TensorRTPhase.BUILD, "a network is built in the BUILD phase"
        fields = []
        for field in field_collection:
            assert isinstance(field, FieldCopy), "create_plugin takes a PluginFieldCollection"
            data = field.data
            assert data.dtype == _FIELD_KINDS[field.type.name], "field {} has type {} but a {} array".format(
                field.name, field.type.name, data.dtype)
            fields.append((field.name, data))
        self.trt.created_plugins.append([name for name, _ in fields])
        try:
            from jetson_detect.model.decode_nms import check_params, params_from_fields
            check_params(params_from_fields(fields))
            cpu = self.cpu_creator._factory(fields)
        except (JetsonDetectError, KeyError, ValueError):
            return None  # the C++ creator returns nullptr; the binding gives None
        return PluginImpl(cpu)


class RegistryImpl(object):
    """TensorRT's plugin registry over the twin's (where the CPU YoloDecodeNMS lives)."""

    def __init__(self, trt: "FakeTrt") -> None:
        self.trt = trt
        self._twin = twin.get_plugin_registry()

    def _lookup(self, type: str, version: str, plugin_namespace: str = "") -> Optional[CreatorImpl]:  # noqa: A002
        creator = self._twin.get_creator(type, version, plugin_namespace)
        if creator is None:
            return None
        return CreatorImpl(self.trt, creator, self.trt.v3_plugin)

    def get_plugin_creator(self, type: str, version: str, plugin_namespace: str = "") -> Any:  # noqa: A002
        creator = self._lookup(type, version, plugin_namespace)
        assert creator is None or not creator.v3, "get_plugin_creator cannot return a V3 creator"
        return creator

    def get_creator(self, type: str, version: str, plugin_namespace: str = "") -> Any:  # noqa: A002
        return self._lookup(type, version, plugin_namespace)

    @property
    def plugin_creator_list(self) -> List[Any]:
        return []

    @property
    def all_creators(self) -> List[Any]:
        return []


def _nptype_of(release: str, module: Any) -> Callable[[Any], type]:
    """The package's own ``nptype``: before 8.5.3 its table names ``np.bool``, which NumPy 1.24-1.26 lack."""
    def nptype(trt_type: Any) -> type:
        mapping = {module.float32: np.float32, module.float16: np.float16, module.int8: np.int8,
                   module.int32: np.int32}
        mapping[module.bool] = getattr(np, "bool") if release.startswith("8.") else np.bool_
        if trt_type in mapping:
            return mapping[trt_type]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
    return nptype


_ATTR_TYPES = {"float32": "FLOAT", "float16": "HALF", "int8": "INT8", "int32": "INT32", "bool": "BOOL",
               "bfloat16": "BF16", "int64": "INT64", "uint8": "UINT8", "fp8": "FP8", "int4": "INT4", "fp4": "FP4",
               "e8m0": "E8M0"}


class FakeTrt(object):
    """One double: ``module`` is what ``import tensorrt`` gives; the rest records what the product did."""

    def __init__(self, style: str, memory: Optional["FakeCudaMemory"] = None) -> None:
        self.release = release_of(style)
        assert self.release in RELEASES, style
        self.style = self.release
        self.api = Api(self.release)
        self.version = self.api.surface["version"]
        self.major = int(self.release.split(".")[0])
        self.v3_plugin = self.major >= 10  # the plugin library registers a V3 creator on 10/11
        self.memory = memory or FakeCudaMemory()
        self.fail_build = False
        self.fail_context = False
        self.networks = []  # type: List[Any]
        self.configs = []  # type: List[Any]
        self.contexts = []  # type: List[Any]
        self.built = []  # type: List[Dict[str, Any]]
        self.calibration_batches = []  # type: List[np.ndarray]
        self.calibration_cache_used = None  # type: Optional[bytes]
        self.created_plugins = []  # type: List[List[str]]
        self.plugins_initialised = 0
        self.loggers_seen = set()  # type: set
        self.loggers_made = 0
        self.registry = SurfaceObject(self.api, RegistryImpl(self), "IPluginRegistry")
        self.module = self._module()

    def _module(self) -> types.ModuleType:
        api, fake = self.api, self
        api.type_names.update({
            BuilderImpl: "Builder", ConfigImpl: "IBuilderConfig", NetworkImpl: "INetworkDefinition",
            twin.OnnxTensor: "ITensor", twin.ConvolutionLayer: "IConvolutionLayer",
            twin.ActivationLayer: "IActivationLayer", twin.ElementWiseLayer: "IElementWiseLayer",
            twin.PoolingLayer: "IPoolingLayer", twin.ResizeLayer: "IResizeLayer",
            twin.ConcatenationLayer: "IConcatenationLayer", twin.SliceLayer: "ISliceLayer",
            twin.ConstantLayer: "IConstantLayer",
            twin.PluginV2Layer: "IPluginV2Layer", PluginV3Layer: "IPluginV3Layer", EngineImpl: "ICudaEngine",
            twin.QuantizeLayer: "IQuantizeLayer", twin.DequantizeLayer: "IDequantizeLayer", twin.Weights: "Weights",
            ContextImpl: "IExecutionContext", RuntimeImpl: "Runtime", TimingCache: "ITimingCache",
            PluginImpl: "IPluginV3" if self.v3_plugin else "IPluginV2",
            CreatorImpl: "IPluginCreatorV3One" if self.v3_plugin else "IPluginCreator",
        })  # IHostMemory stays bytes: memoryview() works on it, as on the real buffer
        names = {}  # type: Dict[str, Any]
        for name, enum in api.enums.items():
            if "." not in name:
                names[name] = enum

        def make_logger(min_severity: Any = None) -> LoggerImpl:
            fake.loggers_made += 1
            return LoggerImpl(min_severity)

        constructors = {
            "Logger": make_logger,
            "Builder": lambda logger: BuilderImpl(fake, logger),
            "Runtime": lambda logger: RuntimeImpl(fake, logger),
            "PluginField": PluginFieldImpl,
            "Weights": lambda *args: twin.Weights(),
        }
        api.type_names[LoggerImpl] = "Logger"
        api.type_names[PluginFieldImpl] = "PluginField"
        trampolines = ("IInt8EntropyCalibrator2", "IProgressMonitor")
        for name in api.classes:
            if "." in name:
                continue
            if name in trampolines:
                names[name] = trampoline_class(api, name)
            elif name == "PluginFieldCollection":
                names[name] = lambda fields: FieldCollectionImpl(fields)
            else:
                names[name] = surface_class(api, name, constructors.get(name))

        def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
            check_call("tensorrt.init_libnvinfer_plugins", api.surface["functions"]["init_libnvinfer_plugins"],
                       (logger, namespace), {})
            fake.plugins_initialised += 1
            fake.loggers_seen.add(id(unwrap(logger, False)))
            return True

        def get_plugin_registry(*args: Any, **kwargs: Any) -> Any:
            check_call("tensorrt.get_plugin_registry", api.surface["functions"]["get_plugin_registry"], args, kwargs)
            return fake.registry

        functions = {"init_libnvinfer_plugins": init_libnvinfer_plugins, "get_plugin_registry": get_plugin_registry}
        for name in api.surface["functions"]:
            if name in functions:
                names[name] = functions[name]
        for name in api.surface["attributes"]:
            names[name] = getattr(api.enums["DataType"], _ATTR_TYPES[name])
        module = types.ModuleType("tensorrt")
        for name, value in names.items():
            setattr(module, name, value)
        module.__version__ = self.version  # type: ignore[attr-defined]
        if "nptype" in api.surface["python"]:
            module.nptype = _nptype_of(self.release, module)  # type: ignore[attr-defined]
        return module


# ---- CUDA memory ----

class FakeStream(object):
    def __init__(self, index: int) -> None:
        self.index = index


class FakeEvent(object):
    def __init__(self) -> None:
        self.time = None  # type: Optional[int]


class FakeCudaMemory(CudaMemory):
    """CUDA memory on the CPU: device buffers are byte arrays keyed by fake addresses; every op is logged and every
    stream, event and buffer is counted until it is released (``live()``)."""

    api = "fake"

    def __init__(self, name: str = "NVIDIA GeForce RTX 3060", compute_capability: Tuple[int, int] = (8, 6)) -> None:
        self.name = name
        self.cc = compute_capability
        self.buffers = {}  # type: Dict[int, np.ndarray]
        self.pinned = {}  # type: Dict[int, np.ndarray]
        self.live_streams = set()  # type: set
        self.live_events = set()  # type: set
        self.log = []  # type: List[Tuple[str, Any]]
        self._next = 0x10000
        self._clock = 0
        self._active = threading.local()
        self.activations = 0
        self.streams = 0
        self.closed = False
        self.closes = 0
        self.live_at_close = None  # type: Optional[Dict[str, int]]  # what its owners had not freed, at close()
        self.fail_compile = None  # type: Optional[str]  # the compiler's complaint, when set
        self.fail_alloc_after = None  # type: Optional[int]  # device allocations that succeed before "out of memory"
        self.compiled = []  # type: List[str]  # names of the kernels compiled
        self.freed = []  # type: List[int]  # sizes of the buffers freed before close, in bytes

    def live(self) -> Dict[str, int]:
        """What is still allocated: only the kinds with something left."""
        counts = {"device buffers": len(self.buffers), "pinned buffers": len(self.pinned),
                  "streams": len(self.live_streams), "events": len(self.live_events)}
        return {k: v for k, v in counts.items() if v}

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
                memory.closed = False

            def __exit__(self, *exc: Any) -> None:
                memory._active.depth -= 1

        return _Active()

    def require_active(self) -> None:
        assert getattr(self._active, "depth", 0) > 0, "CUDA used without the context current on this thread"

    def pinned_empty(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        self.require_active()
        array = np.zeros(tuple(shape), dtype=np.dtype(dtype))
        self.pinned[id(array)] = array
        return array

    def device_alloc(self, nbytes: int) -> int:
        self.require_active()
        if self.fail_alloc_after is not None:
            if self.fail_alloc_after <= 0:
                raise JetsonDetectError("CUDA cudaMalloc failed with cudaErrorMemoryAllocation: check the GPU with "
                                        "nvidia-smi (driver, free memory)")
            self.fail_alloc_after -= 1
        ptr = self._next
        self._next += max(int(nbytes), 1) + 256
        self.buffers[ptr] = np.zeros(max(int(nbytes), 1), np.uint8)
        return ptr

    def stream_create(self) -> FakeStream:
        self.require_active()
        self.streams += 1
        stream = FakeStream(self.streams - 1)
        self.live_streams.add(stream)
        return stream

    def stream_destroy(self, stream: FakeStream) -> None:
        self.require_active()
        self.live_streams.remove(stream)

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
        self.require_active()
        event = FakeEvent()
        self.live_events.add(event)
        return event

    def event_destroy(self, event: FakeEvent) -> None:
        self.require_active()
        self.live_events.remove(event)

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
        self.freed.append(self.pinned.pop(id(host)).nbytes)

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
        """Free everything still allocated, as the real implementations do, noting what that was."""
        self.live_at_close = self.live()
        self.buffers.clear()
        self.pinned.clear()
        self.live_streams.clear()
        self.live_events.clear()
        self.closes += 1
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
