"""A safe reader for YOLOv5 ``.pt`` checkpoints: no PyTorch, no model code, no arbitrary unpickling.

A checkpoint is a zip: ``<prefix>/data.pkl`` (a pickle of the training dict, the model object inside it) and
``<prefix>/data/<key>`` raw little-endian tensor storages. ``RestrictedUnpickler`` admits only the handful of
globals such a file needs; the model classes become inert placeholders that merely keep their attribute dicts,
and tensors are rebuilt as NumPy arrays straight from the storages. Anything else is refused, since a pickle
global can run arbitrary code.
"""

import pickle
import zipfile
from collections import OrderedDict
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from ..errors import JetsonDetectError

_STORAGE_DTYPES = {
    "HalfStorage": np.float16, "FloatStorage": np.float32, "DoubleStorage": np.float64,
    "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}

_MODEL_MODULE_SUFFIXES = ("models.common", "models.yolo", "models.experimental")


class StorageType(object):
    """Stands for ``torch.<X>Storage`` inside the pickle: only its element type matters."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class ModulePlaceholder(object):
    """An inert stand-in for a pickled ``nn.Module``: it keeps the attribute dict and nothing else."""

    torch_class = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "ModulePlaceholder":
        return object.__new__(cls)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            state = dict(state[0] or {}, **(state[1] or {}))
        self.__dict__.update(state)


_placeholders: Dict[str, type] = {}


def _placeholder(module: str, name: str) -> type:
    key = module + "." + name
    if key not in _placeholders:
        _placeholders[key] = type(name, (ModulePlaceholder,), {"torch_class": key})
    return _placeholders[key]


def _rebuild_tensor_v2(storage: np.ndarray, offset: int, size: Tuple[int, ...], stride: Tuple[int, ...],
                       requires_grad: bool = False, hooks: Any = None, metadata: Any = None) -> np.ndarray:
    """Rebuild a tensor as a NumPy array view of its storage, then copy it out contiguous."""
    if not size:
        return storage[offset:offset + 1].reshape(()).copy()
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * item for s in stride))
    return np.ascontiguousarray(view)


def _rebuild_parameter(data: np.ndarray, requires_grad: bool = False, hooks: Any = None,
                       state: Any = None) -> np.ndarray:
    return data


def _numpy_scalar(dtype: np.dtype, raw: Optional[bytes] = None) -> Any:
    return np.frombuffer(raw or b"", dtype=dtype)[0] if raw else dtype.type()


def _codecs_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("unexpected encoding " + encoding)
    return text.encode("latin1")


_ALLOWED: Dict[Tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set, ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset, ("__builtin__", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("_codecs", "encode"): _codecs_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a YOLOv5 checkpoint, admitting only the globals such a file needs."""

    def __init__(self, handle: Any, archive: zipfile.ZipFile, prefix: str, path: str) -> None:
        super().__init__(handle)
        self._archive = archive
        self._prefix = prefix
        self._path = path
        self._storages: Dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return StorageType(name)
        if module.startswith("torch.nn.modules.") or module.endswith(_MODEL_MODULE_SUFFIXES):
            return _placeholder(module, name)
        raise JetsonDetectError("{}: the checkpoint refers to '{}.{}', which a YOLOv5 checkpoint does not need; "
                                "refusing to unpickle it (it could run code)".format(self._path, module, name))

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and isinstance(pid[1], StorageType)):
            raise JetsonDetectError("{}: unsupported storage reference {!r} in the checkpoint".format(
                self._path, pid[:2] if isinstance(pid, tuple) else pid))
        storage_type, key = pid[1], str(pid[2])
        if key not in self._storages:
            member = "{}data/{}".format(self._prefix, key)
            try:
                raw = self._archive.read(member)
            except KeyError:
                raise JetsonDetectError("{}: storage '{}' is missing from the checkpoint: the file is truncated "
                                        "or corrupt".format(self._path, member)) from None
            if len(raw) % storage_type.dtype.itemsize:
                raise JetsonDetectError("{}: storage '{}' has {} bytes, not a whole number of {} values: the file "
                                        "is corrupt".format(self._path, member, len(raw), storage_type.name))
            array = np.frombuffer(raw, dtype=storage_type.dtype.newbyteorder("<"))
            if storage_type.name == "BFloat16Storage":
                array = (array.astype(np.uint32) << 16).view(np.float32)
            self._storages[key] = array
        return self._storages[key]


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


def _module_state(module: Any, prefix: str, out: "OrderedDict[str, np.ndarray]", detect: List[Any]) -> None:
    """Walk a placeholder module tree as ``nn.Module.state_dict`` does: own params, own buffers, children."""
    if not isinstance(module, ModulePlaceholder):
        return
    if module.torch_class.endswith(".Detect"):
        detect.append((prefix.rstrip("."), module))
    for name, value in (module.__dict__.get("_parameters") or {}).items():
        if value is not None:
            out[prefix + name] = value
    skip = module.__dict__.get("_non_persistent_buffers_set") or set()
    for name, value in (module.__dict__.get("_buffers") or {}).items():
        if value is not None and name not in skip:
            out[prefix + name] = value
    for name, child in (module.__dict__.get("_modules") or {}).items():
        _module_state(child, prefix + name + ".", out, detect)


def _open_archive(path: str) -> Tuple[zipfile.ZipFile, str]:
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise JetsonDetectError("{}: no such checkpoint: pass a .pt or .wts file with --weights".format(path)) from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise JetsonDetectError("{}: not a readable PyTorch zip checkpoint ({}); legacy (non-zip) checkpoints are "
                                "not supported: re-save it with a current PyTorch".format(path, exc)) from None
    pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
    if len(pickles) != 1:
        raise JetsonDetectError("{}: expected one data.pkl in the checkpoint, found {}".format(path, len(pickles)))
    return archive, pickles[0][:-len("data.pkl")]


def read_checkpoint(path: str) -> Checkpoint:
    """Read a YOLOv5 ``.pt`` (fp16 or fp32) into a ``Checkpoint`` without PyTorch or model code."""
    archive, prefix = _open_archive(path)
    with archive:
        try:
            with archive.open(prefix + "data.pkl") as handle:
                root = RestrictedUnpickler(handle, archive, prefix, path).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
            raise JetsonDetectError("{}: the checkpoint's pickle is corrupt or of an unknown layout ({})".format(
                path, exc)) from None
    model = root.get("model") if isinstance(root, dict) else root
    if model is None and isinstance(root, dict):
        model = root.get("ema")
    if not isinstance(model, ModulePlaceholder):
        raise JetsonDetectError("{}: no YOLOv5 model object in the checkpoint (keys: {})".format(
            path, sorted(root)[:8] if isinstance(root, dict) else type(root).__name__))
    state: OrderedDict[str, np.ndarray] = OrderedDict()
    detect: List[Any] = []
    _module_state(model, "", state, detect)
    if len(detect) != 1:
        raise JetsonDetectError("{}: expected one Detect module in the model, found {}: only YOLOv5 detection "
                                "checkpoints are supported".format(path, len(detect)))
    detect_prefix, detect_module = detect[0]
    stride_value = detect_module.__dict__.get("stride")
    if stride_value is None:
        stride_value = model.__dict__.get("stride")
    if stride_value is None:
        raise JetsonDetectError("{}: the Detect module has no strides".format(path))
    names = model.__dict__.get("names") or []
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    yaml = model.__dict__.get("yaml") or {}
    return Checkpoint(path, state, detect_prefix, tuple(float(s) for s in np.asarray(stride_value).reshape(-1)),
                      dict(yaml), [str(n) for n in names])
