"""Hand-assembled checkpoint pickles and zips for the hostile-input tests (PyTorch is not installed, and a real
torch.save could not write the malformed files anyway). Each function returns pickle opcode bytes (protocol 2)."""

import struct
import zipfile
from collections import OrderedDict

import numpy as np


def text(value):
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def integer(value):
    if -2 ** 31 <= value < 2 ** 31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data  # LONG1


def floating(value):
    return b"G" + struct.pack(">d", value)


def glob(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def tup(*parts):
    return b"(" + b"".join(parts) + b"t"


def lst(*parts):
    return b"](" + b"".join(parts) + b"e" if parts else b"]"


def dct(items):
    """A dict from (key bytes, value bytes) pairs, or from a mapping of str keys to value bytes."""
    pairs = items.items() if isinstance(items, dict) else items
    body = b"".join((text(k) if isinstance(k, str) else k) + v for k, v in pairs)
    return b"}(" + body + b"u" if body else b"}"


def call(func, *args):
    return func + tup(*args) + b"R"


def storage(type_name, key, numel):
    return b"(" + text("storage") + glob("torch", type_name) + text(key) + text("cpu") + integer(numel) + b"tQ"


def tensor(storage_ref, offset, size, stride):
    return call(glob("torch._utils", "_rebuild_tensor_v2"), storage_ref, integer(offset),
                tup(*[integer(v) for v in size]), tup(*[integer(v) for v in stride]), b"\x89",
                call(glob("collections", "OrderedDict")))


def module(torch_class, state):
    """An nn.Module as torch.save writes it: NEWOBJ of its class, then BUILD with its attribute dict."""
    module_name, _, name = torch_class.rpartition(".")
    return glob(module_name, name) + b")\x81" + state + b"b"


def nn_module(torch_class, parameters=None, buffers=None, modules=None, **attributes):
    state = OrderedDict()
    state["_parameters"] = dct(parameters or {})
    state["_buffers"] = dct(buffers or {})
    state["_modules"] = dct(modules or {})
    state.update(attributes)
    return module(torch_class, dct(state))


def pickle_bytes(root):
    return b"\x80\x02" + root + b"."


def write_checkpoint(path, root, storages=None, compression=zipfile.ZIP_STORED):
    """A torch.save-style zip: ckpt/data.pkl plus ckpt/data/<key> raw little-endian storages."""
    with zipfile.ZipFile(str(path), "w", compression) as archive:
        archive.writestr("ckpt/data.pkl", pickle_bytes(root))
        for key, array in (storages or {}).items():
            archive.writestr("ckpt/data/" + key, np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"))
                             .tobytes())
    return str(path)


def tiny_model(values=None, root_extra=None):
    """The smallest checkpoint ``read_checkpoint`` accepts: one Conv (conv + bn) and a Detect, each tensor in its
    own float32 storage; ``values`` replaces named tensors' contents. Returns (root pickle bytes, storages)."""
    arrays = OrderedDict([
        ("model.0.conv.weight", np.ones((2, 3, 1, 1), np.float32)),
        ("model.0.bn.weight", np.ones(2, np.float32)),
        ("model.0.bn.bias", np.zeros(2, np.float32)),
        ("model.0.bn.running_mean", np.zeros(2, np.float32)),
        ("model.0.bn.running_var", np.ones(2, np.float32)),
        ("model.1.anchors", np.ones((1, 1, 2), np.float32)),
        ("model.1.m.0.weight", np.ones((6, 2, 1, 1), np.float32)),
        ("model.1.m.0.bias", np.zeros(6, np.float32)),
    ])
    arrays.update(values or {})
    storages = OrderedDict((str(i), a) for i, a in enumerate(arrays.values()))
    refs = {}
    for i, (name, array) in enumerate(arrays.items()):
        stride = [int(s // array.itemsize) for s in array.strides]
        refs[name] = tensor(storage("FloatStorage", str(i), array.size), 0, array.shape, stride)
    conv = nn_module("models.common.Conv", modules={
        "conv": nn_module("torch.nn.modules.conv.Conv2d", parameters={"weight": refs["model.0.conv.weight"]}),
        "bn": nn_module("torch.nn.modules.batchnorm.BatchNorm2d",
                        parameters={"weight": refs["model.0.bn.weight"], "bias": refs["model.0.bn.bias"]},
                        buffers={"running_mean": refs["model.0.bn.running_mean"],
                                 "running_var": refs["model.0.bn.running_var"]})})
    detect = nn_module("models.yolo.Detect", buffers={"anchors": refs["model.1.anchors"]}, modules={
        "m": nn_module("torch.nn.modules.container.ModuleList", modules={
            "0": nn_module("torch.nn.modules.conv.Conv2d", parameters={
                "weight": refs["model.1.m.0.weight"], "bias": refs["model.1.m.0.bias"]})})},
        stride=lst(floating(8.0)))
    model = nn_module("models.yolo.Model", modules={
        "model": nn_module("torch.nn.modules.container.Sequential", modules={"0": conv, "1": detect})},
        names=lst(text("fire")), yaml=dct({"nc": integer(1)}))
    root = OrderedDict([("epoch", integer(-1)), ("model", model)])
    root.update(root_extra or {})
    return dct(root), storages


def nested_lists(depth):
    """``depth`` lists nested in one another, built without recursion (EMPTY_LIST pushes, then APPENDs)."""
    return b"]" * depth + b"a" * (depth - 1)
