"""A safe reader for YOLOv5 ``.pt`` checkpoints: no PyTorch, no model code, no arbitrary unpickling.

A checkpoint is a zip: ``<prefix>/data.pkl`` (a pickle of the training dict, the model object inside it) and
``<prefix>/data/<key>`` raw little-endian tensor storages. ``RestrictedUnpickler`` admits only the handful of
globals such a file needs; the model classes become inert placeholders that merely keep their attribute dicts,
and tensors are rebuilt as NumPy arrays straight from the storages. Anything else is refused, since a pickle
global can run arbitrary code.

A hostile file must not crash, hang or exhaust memory either, so every size is checked before it is used: zip
entry sizes before anything is decompressed, each tensor view against its storage before it is read, the element
count of every tensor (and of all of them together) before it is allocated, and the nesting of the module tree
while it is walked. The pure-Python unpickler is used because it lets BUILD (``__setstate__``) be refused on
anything but our own inert placeholders: on a NumPy object it would hand attacker bytes to C code.
"""

import pickle
import zipfile
import zlib
from collections import OrderedDict
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from ..errors import JetsonDetectError
from .weights import check_tensor_values

_STORAGE_DTYPES = {
    "HalfStorage": np.float16, "FloatStorage": np.float32, "DoubleStorage": np.float64,
    "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}

_MODEL_MODULE_SUFFIXES = ("models.common", "models.yolo", "models.experimental")

# A YOLOv5x training checkpoint (model, EMA and optimizer state) decompresses to about 0.7 GB.
MAX_ARCHIVE_BYTES = 2 << 30
MAX_COMPRESSION_RATIO = 100  # torch.save stores entries uncompressed; weights deflate by a few percent at most
MIN_REBUILT_BYTES_LIMIT = 64 << 20
MAX_PICKLE_BYTES = 16 << 20  # data.pkl of a YOLOv5x training checkpoint is well under 1 MB
MAX_TENSOR_DIMS = 16
MAX_MODULE_DEPTH = 64  # YOLOv5's module tree is 5 deep
MAX_STATE_TENSORS = 100000
MAX_METADATA_DEPTH = 16  # the model yaml: dict → backbone → layer → args → anchors
MAX_METADATA_ITEMS = 100000


class StorageType(object):
    """Stands for ``torch.<X>Storage`` inside the pickle: only its element type matters."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class Storage(object):
    """One storage of the archive as a flat array, as ``persistent_load`` returns it: only a value of this type
    can be the storage of a rebuilt tensor."""

    __slots__ = ("key", "type_name", "array")

    def __init__(self, key: str, type_name: str, array: np.ndarray) -> None:
        self.key = key
        self.type_name = type_name
        self.array = array


class ModulePlaceholder(object):
    """An inert stand-in for a pickled ``nn.Module``: it keeps the attribute dict and nothing else."""

    torch_class = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "ModulePlaceholder":
        return object.__new__(cls)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            parts = [part or {} for part in state]
            if not all(isinstance(part, dict) for part in parts):
                raise pickle.UnpicklingError("the state of a {} is not a mapping".format(self.torch_class))
            state = dict(parts[0], **parts[1])
        if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
            raise pickle.UnpicklingError("the state of a {} is not a mapping of attribute names".format(
                self.torch_class))
        self.__dict__.update(state)


class NumpyDtypeStub(object):
    """Stands for a pickled ``numpy.dtype`` (training checkpoints hold NumPy scalars such as ``best_fitness``):
    only plain numeric types, kept as a type code; never a real dtype object built from pickle arguments."""

    __slots__ = ("code", "byte_order")

    ALLOWED = ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1")

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(code, str) or code not in self.ALLOWED:
            raise pickle.UnpicklingError("numpy dtype {!r} is not a plain number type".format(code)[:120])
        self.code = code
        self.byte_order = "<"

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">", "|", "=")):
            raise pickle.UnpicklingError("unexpected numpy dtype state {!r}".format(state)[:120])
        self.byte_order = "<" if state[1] in ("|", "=") else state[1]

    def value(self, raw: Any) -> Any:
        """The Python number that ``numpy.core.multiarray.scalar(dtype, raw)`` stands for."""
        dtype = np.dtype(self.byte_order + self.code)
        if not isinstance(raw, bytes) or len(raw) != dtype.itemsize:
            raise pickle.UnpicklingError("a numpy {} scalar needs {} bytes".format(self.code, dtype.itemsize))
        return np.frombuffer(raw, dtype=dtype)[0].item()


_INERT = (ModulePlaceholder, NumpyDtypeStub)  # the only objects BUILD may set state on

_placeholders: Dict[str, type] = {}


def _placeholder(module: str, name: str) -> type:
    key = module + "." + name
    if key not in _placeholders:
        _placeholders[key] = type(name, (ModulePlaceholder,), {"torch_class": key})
    return _placeholders[key]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, state: Any = None) -> np.ndarray:
    if not isinstance(data, np.ndarray):
        raise pickle.UnpicklingError("a parameter's data is a {}, not a tensor".format(type(data).__name__))
    return data


def _numpy_scalar(dtype: Any, raw: Any = None) -> Any:
    if not isinstance(dtype, NumpyDtypeStub):
        raise pickle.UnpicklingError("numpy scalar of a {}, not of a dtype".format(type(dtype).__name__))
    return dtype.value(raw)


def _codecs_encode(text: Any, encoding: Any = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("unexpected _codecs.encode arguments")
    return text.encode("latin1")


_ALLOWED: Dict[Tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set, ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset, ("__builtin__", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    ("numpy", "dtype"): NumpyDtypeStub,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("_codecs", "encode"): _codecs_encode,
}


def _load_build(unpickler: "RestrictedUnpickler") -> None:
    """BUILD, admitted only on our inert placeholders (whose ``__setstate__`` checks its argument)."""
    state = unpickler.stack.pop()
    target = unpickler.stack[-1]
    if not isinstance(target, _INERT):
        raise pickle.UnpicklingError("the pickle sets the state of a {}, which a checkpoint never does".format(
            type(target).__name__))
    target.__setstate__(state)


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickles a YOLOv5 checkpoint, admitting only the globals such a file needs."""

    dispatch = dict(pickle._Unpickler.dispatch)
    stack: List[Any]  # the value stack, set by pickle._Unpickler.load
    dispatch[pickle.BUILD[0]] = _load_build  # type: ignore[assignment]

    def __init__(self, handle: Any, archive: zipfile.ZipFile, prefix: str, path: str) -> None:
        super().__init__(handle)
        self._archive = archive
        self._prefix = prefix
        self._path = path
        self._storages: Dict[str, Storage] = {}
        self._rebuilt_bytes = 0
        self._stored_bytes = 0

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self.rebuild_tensor
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return StorageType(name)
        if module.startswith("torch.nn.modules.") or module.endswith(_MODEL_MODULE_SUFFIXES):
            return _placeholder(module, name)
        raise JetsonDetectError("{}: the checkpoint refers to '{}.{}', which a YOLOv5 checkpoint does not need; "
                                "refusing to unpickle it (it could run code)".format(self._path, module, name))

    def _corrupt(self, problem: str) -> JetsonDetectError:
        return JetsonDetectError("{}: {}: the file is corrupt or crafted; re-save it from the original "
                                 "training run".format(self._path, problem))

    def persistent_load(self, pid: Any) -> Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str) and _is_int(pid[4])):
            raise JetsonDetectError("{}: unsupported storage reference {!r} in the checkpoint".format(
                self._path, pid[:2] if isinstance(pid, tuple) else type(pid).__name__))
        storage_type, key, numel = pid[1], pid[2], pid[4]
        known = self._storages.get(key)
        if known is not None:
            if known.type_name != storage_type.name:
                raise self._corrupt("storage '{}' is referred to as both {} and {}".format(
                    key, known.type_name, storage_type.name))
            return known
        member = "{}data/{}".format(self._prefix, key)
        try:
            info = self._archive.getinfo(member)
        except KeyError:
            raise JetsonDetectError("{}: storage '{}' is missing from the checkpoint: the file is truncated "
                                    "or corrupt".format(self._path, member)) from None
        if numel < 0 or info.file_size != numel * storage_type.dtype.itemsize:
            raise self._corrupt("storage '{}' has {} bytes, but the pickle declares {} {} values".format(
                member, info.file_size, numel, storage_type.name))
        raw = _read_member(self._archive, info)
        array = np.frombuffer(raw, dtype=storage_type.dtype.newbyteorder("<"))
        if storage_type.name == "BFloat16Storage":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        self._storages[key] = Storage(key, storage_type.name, array)
        self._stored_bytes += array.nbytes
        return self._storages[key]

    def rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       hooks: Any = None, metadata: Any = None) -> np.ndarray:
        """``torch._utils._rebuild_tensor_v2``: the view (offset, sizes, strides) of a storage, checked to lie
        inside it and to be of a bounded size before anything is read or allocated, then copied out."""
        if not isinstance(storage, Storage):
            raise self._corrupt("a tensor's storage is a {}, not a storage of the archive".format(
                type(storage).__name__))
        if not (_is_int(offset) and isinstance(size, tuple) and isinstance(stride, tuple)
                and all(_is_int(v) for v in size + stride)):
            raise self._corrupt("tensor of storage '{}' has a non-integer offset, size or stride".format(storage.key))
        if len(size) != len(stride) or len(size) > MAX_TENSOR_DIMS:
            raise self._corrupt("tensor of storage '{}' has {} sizes and {} strides".format(
                storage.key, len(size), len(stride)))
        if offset < 0 or any(v < 0 for v in size + stride):
            raise self._corrupt("tensor of storage '{}' has a negative offset, size or stride".format(storage.key))
        length = storage.array.size
        numel = 1
        for n in size:  # Python ints: exact, whatever the sizes
            numel *= n
        if numel == 0:
            if offset > length:
                raise self._corrupt("tensor of storage '{}' starts past its end".format(storage.key))
            return np.zeros(size, storage.array.dtype)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= length:
            raise self._corrupt("tensor of storage '{}' (offset {}, size {}, stride {}) reaches element {} of a "
                                "storage of {}".format(storage.key, offset, list(size), list(stride), last, length))
        # Strides of 0 could expand a small storage into a huge tensor, and many tensors can view one storage:
        # a checkpoint's tensors are about as large as its storages, so their total is bounded by that.
        self._rebuilt_bytes += numel * storage.array.dtype.itemsize
        stored = self._stored_bytes
        if self._rebuilt_bytes > max(2 * stored, MIN_REBUILT_BYTES_LIMIT):
            raise self._corrupt("its tensors add up to {} MiB from {} MiB of storages".format(
                self._rebuilt_bytes >> 20, stored >> 20))
        if not size:
            return storage.array[offset:offset + 1].reshape(()).copy()
        item = storage.array.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(storage.array[offset:], shape=size,
                                               strides=tuple(s * item for s in stride), writeable=False)
        return np.ascontiguousarray(view)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """An archive member's bytes, never more than its checked declared size (the zip's own size fields may lie)."""
    with archive.open(info) as handle:
        raw = handle.read(info.file_size + 1)
    if len(raw) != info.file_size:
        raise zipfile.BadZipFile("{} holds {} bytes, not the {} its header says".format(
            info.filename, len(raw), info.file_size))
    return raw


class Checkpoint(NamedTuple):
    """What the product needs from a ``.pt``: the state dict in PyTorch order plus the model's metadata."""

    path: str
    state: "OrderedDict[str, np.ndarray]"  # shaped arrays, original dtypes, PyTorch state_dict order
    detect_prefix: str  # e.g. "model.24"
    stride: Tuple[float, ...]
    yaml: Dict[str, Any]
    names: List[str]

    def wts_weights(self) -> "OrderedDict[str, np.ndarray]":
        """The tensorrtx ``.wts`` view: every state tensor as flat float32, with ``anchor_grid`` (pixels) and
        ``strides`` placed right after the Detect module's own buffers, as tensorrtx's gen_wts.py does."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        anchors_key = self.detect_prefix + ".anchors"
        stride = np.asarray(self.stride, dtype=np.float32)
        for name, value in self.state.items():
            if name in (self.detect_prefix + ".anchor_grid", self.detect_prefix + ".strides"):
                continue
            out[name] = np.asarray(value).astype(np.float32).reshape(-1)
            if name == anchors_key:
                anchors = np.asarray(value).astype(np.float32)
                out[self.detect_prefix + ".anchor_grid"] = (anchors * stride[:, None, None]).reshape(-1)
                out[self.detect_prefix + ".strides"] = stride
        return out


def _mapping(module: ModulePlaceholder, attribute: str, path: str, prefix: str) -> Dict[Any, Any]:
    value = module.__dict__.get(attribute)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise JetsonDetectError("{}: module '{}' has a {} {} instead of a mapping: the checkpoint is corrupt".format(
            path, prefix.rstrip(".") or "model", type(value).__name__, attribute))
    return value


def _module_state(model: ModulePlaceholder, path: str) -> Tuple["OrderedDict[str, np.ndarray]", List[Any]]:
    """Walk a placeholder module tree as ``nn.Module.state_dict`` does (own params, own buffers, children), with
    the depth and the tensor count bounded: a crafted tree may be a cycle or a huge shared DAG."""
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    detect: List[Any] = []
    pending: List[Tuple[Any, str, int]] = [(model, "", 0)]
    while pending:
        module, prefix, depth = pending.pop()
        if not isinstance(module, ModulePlaceholder):
            continue
        if depth > MAX_MODULE_DEPTH:
            raise JetsonDetectError("{}: the module tree is nested more than {} deep (at '{}'): not a YOLOv5 "
                                    "model".format(path, MAX_MODULE_DEPTH, prefix[:80]))
        if module.torch_class.endswith(".Detect"):
            detect.append((prefix.rstrip("."), module))
        skip = module.__dict__.get("_non_persistent_buffers_set") or set()
        entries = list(_mapping(module, "_parameters", path, prefix).items())
        entries += [(k, v) for k, v in _mapping(module, "_buffers", path, prefix).items()
                    if not (isinstance(skip, (set, frozenset)) and k in skip)]
        for name, value in entries:
            if value is None:
                continue
            key = prefix + str(name)
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
                raise JetsonDetectError("{}: '{}' is a {}, not a tensor: the checkpoint is corrupt".format(
                    path, key, type(value).__name__))
            out[key] = value
            if len(out) > MAX_STATE_TENSORS:
                raise JetsonDetectError("{}: the model has more than {} tensors: not a YOLOv5 model".format(
                    path, MAX_STATE_TENSORS))
        children = list(_mapping(module, "_modules", path, prefix).items())
        pending.extend((child, prefix + str(name) + ".", depth + 1) for name, child in reversed(children))
    return out, detect


def _check_metadata(value: Any, path: str, what: str) -> None:
    """Refuse metadata (model yaml, names) that is not plain data of a sane size and depth, without recursion."""
    pending = [(value, 0)]
    seen = 0
    while pending:
        item, depth = pending.pop()
        seen += 1
        if depth > MAX_METADATA_DEPTH or seen > MAX_METADATA_ITEMS:
            raise JetsonDetectError("{}: the model's {} is nested too deeply or too large: the checkpoint is "
                                    "corrupt or crafted".format(path, what))
        if isinstance(item, dict):
            if not all(isinstance(k, (str, int)) for k in item):
                raise JetsonDetectError("{}: the model's {} has a key that is not a name".format(path, what))
            pending.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend((v, depth + 1) for v in item)
        elif not (item is None or isinstance(item, (str, int, float))):
            raise JetsonDetectError("{}: the model's {} holds a {}, not plain data".format(
                path, what, type(item).__name__))


def _class_names(model: ModulePlaceholder, path: str) -> List[str]:
    names = model.__dict__.get("names") or []
    _check_metadata(names, path, "class names")
    if isinstance(names, dict):
        if not all(_is_int(k) for k in names):
            raise JetsonDetectError("{}: the model's class names are keyed by something other than class ids".format(
                path))
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (str, int)) for n in names):
        raise JetsonDetectError("{}: the model's class names are not a list of names".format(path))
    return [str(n) for n in names]


def _strides(detect_module: ModulePlaceholder, model: ModulePlaceholder, path: str) -> Tuple[float, ...]:
    value = detect_module.__dict__.get("stride")
    if value is None:
        value = model.__dict__.get("stride")
    if value is None:
        raise JetsonDetectError("{}: the Detect module has no strides".format(path))
    if not isinstance(value, np.ndarray):
        _check_metadata(value, path, "strides")
    try:
        strides = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        strides = np.zeros(0)
    if not 1 <= strides.size <= 8 or not np.all(np.isfinite(strides)) or not np.all(strides > 0):
        raise JetsonDetectError("{}: the Detect module's strides are not a few positive numbers: the checkpoint "
                                "is corrupt".format(path))
    return tuple(float(s) for s in strides)


def _open_archive(path: str) -> Tuple[zipfile.ZipFile, zipfile.ZipInfo]:
    """Open the zip and check its declared sizes before anything is decompressed; returns the data.pkl entry."""
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise JetsonDetectError("{}: no such checkpoint: pass a .pt or .wts file with --weights".format(path)) from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise JetsonDetectError("{}: not a readable PyTorch zip checkpoint ({}); legacy (non-zip) checkpoints are "
                                "not supported: re-save it with a current PyTorch".format(path, exc)) from None
    infos = archive.infolist()
    pickles = [info for info in infos if info.filename == "data.pkl" or info.filename.endswith("/data.pkl")]
    total = sum(info.file_size for info in infos)
    problem = None
    if len(pickles) != 1:
        problem = "expected one data.pkl in the checkpoint, found {}".format(len(pickles))
    elif total > MAX_ARCHIVE_BYTES:
        problem = "the archive would decompress to {:.1f} GiB, more than the {} GiB any YOLOv5 checkpoint " \
                  "needs: refusing it".format(total / (1 << 30), MAX_ARCHIVE_BYTES >> 30)
    elif any(info.file_size > MAX_COMPRESSION_RATIO * info.compress_size + (1 << 20) for info in infos):
        problem = "an entry would decompress more than {} times: a zip bomb, not a checkpoint; refusing " \
                  "it".format(MAX_COMPRESSION_RATIO)
    elif pickles[0].file_size > MAX_PICKLE_BYTES:
        problem = "its data.pkl would decompress to {} MiB, more than the {} MiB a YOLOv5 checkpoint " \
                  "needs: refusing it".format(pickles[0].file_size >> 20, MAX_PICKLE_BYTES >> 20)
    if problem is None:
        problem = _byte_order_problem(archive, pickles[0].filename[:-len("data.pkl")])
    if problem is not None:
        archive.close()
        raise JetsonDetectError("{}: {}".format(path, problem))
    return archive, pickles[0]


def _byte_order_problem(archive: zipfile.ZipFile, prefix: str) -> Optional[str]:
    """Storages are read little-endian; a checkpoint saved on a big-endian machine says so in its byteorder
    record, and reading it anyway would give wrong numbers without a word."""
    try:
        info = archive.getinfo(prefix + "byteorder")
    except KeyError:
        return None  # written before PyTorch 2.1: always little-endian
    order = _read_member(archive, info).strip() if info.file_size <= 16 else b"?"
    if order != b"little":
        return "its storages are {} byte order; only little-endian checkpoints are supported: re-save it on " \
               "an x86 or ARM machine".format(order.decode("ascii", "replace")[:16])
    return None


def _model_object(root: Any, path: str) -> ModulePlaceholder:
    """The model inside the checkpoint's root dict ('model', else 'ema'), with a one-line error for any other
    root object."""
    if not isinstance(root, dict):
        raise JetsonDetectError("{}: the checkpoint holds a {}, not YOLOv5's dict with a 'model' entry: not a "
                                "YOLOv5 checkpoint".format(path, type(root).__name__))
    model = root.get("model")
    if model is None:
        model = root.get("ema")
    if not isinstance(model, ModulePlaceholder):
        keys = sorted(str(k)[:40] for k in list(root)[:100])[:8]
        raise JetsonDetectError("{}: no YOLOv5 model object in the checkpoint (its 'model' is {}; keys: {})".format(
            path, type(model).__name__, ", ".join(keys) or "none"))
    return model


def read_checkpoint(path: str) -> Checkpoint:
    """Read a YOLOv5 ``.pt`` (fp16 or fp32) into a ``Checkpoint`` without PyTorch or model code; every tensor is
    checked to be finite (``check_tensor_values``)."""
    archive, pickle_info = _open_archive(path)
    prefix = pickle_info.filename[:-len("data.pkl")]
    with archive:
        try:
            with archive.open(pickle_info) as handle:
                root = RestrictedUnpickler(handle, archive, prefix, path).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError,
                OverflowError, MemoryError, RuntimeError, NotImplementedError, OSError, zlib.error,
                zipfile.BadZipFile) as exc:
            raise JetsonDetectError("{}: the checkpoint's pickle is corrupt or of an unknown layout ({}: {})".format(
                path, type(exc).__name__, str(exc)[:160])) from None
    model = _model_object(root, path)
    state, detect = _module_state(model, path)
    if len(detect) != 1:
        raise JetsonDetectError("{}: expected one Detect module in the model, found {}: only YOLOv5 detection "
                                "checkpoints are supported".format(path, len(detect)))
    for name, value in state.items():
        check_tensor_values(name, value, path)
    detect_prefix, detect_module = detect[0]
    yaml: Optional[Any] = model.__dict__.get("yaml") or {}
    if not isinstance(yaml, dict):
        raise JetsonDetectError("{}: the model's yaml is a {}, not a mapping".format(path, type(yaml).__name__))
    _check_metadata(yaml, path, "yaml")
    strides = _strides(detect_module, model, path)
    anchors = state.get(detect_prefix + ".anchors")
    if anchors is not None and (anchors.ndim != 3 or anchors.shape[0] != len(strides) or anchors.shape[2] != 2):
        raise JetsonDetectError("{}: '{}.anchors' has shape {}, not ({} levels, anchors, 2) for the {} strides: the "
                                "checkpoint is corrupt".format(path, detect_prefix, anchors.shape, len(strides),
                                                               len(strides)))
    return Checkpoint(path, state, detect_prefix, strides, dict(yaml), _class_names(model, path))
