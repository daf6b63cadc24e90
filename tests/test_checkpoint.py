"""The safe .pt reader: real checkpoints read without PyTorch; anything that could run code is refused."""

import os
import pickle
import re
import struct
import zipfile

import crafted_files as cf
import numpy as np
import pytest

from jetson_detect.errors import JetsonDetectError
from jetson_detect.model.checkpoint import RestrictedUnpickler, read_checkpoint

from conftest import PPE_PT, PT

pytestmark = pytest.mark.shared


def test_reads_the_official_coco_checkpoint():
    ckpt = read_checkpoint(str(PT))
    assert len(ckpt.names) == 80 and ckpt.names[0] == "person"
    assert ckpt.stride == (8.0, 16.0, 32.0)
    assert ckpt.yaml["nc"] == 80 and ckpt.yaml["width_multiple"] == 0.25
    assert ckpt.state["model.0.conv.weight"].shape == (16, 3, 6, 6)
    assert ckpt.state["model.0.conv.weight"].dtype == np.float16


def test_reads_a_custom_two_class_checkpoint():
    ckpt = read_checkpoint(str(PPE_PT))
    assert ckpt.names == ["helmet", "vest"]
    assert ckpt.state["model.24.m.0.bias"].shape == (21,)


def test_wts_view_adds_anchor_grid_in_pixels_after_the_anchors():
    weights = read_checkpoint(str(PT)).wts_weights()
    names = list(weights)
    at = names.index("model.24.anchors")
    assert names[at + 1: at + 3] == ["model.24.anchor_grid", "model.24.strides"]
    assert weights["model.24.anchor_grid"][-2:].tolist() == [373.0, 326.0]


def _zip_with_pickle(path, payload, extra=None):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ckpt/data.pkl", payload)
        for name, data in (extra or {}).items():
            archive.writestr("ckpt/data/" + name, data)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/jetson_detect_pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = "/tmp/jetson_detect_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pt"
    _zip_with_pickle(path, pickle.dumps({"model": _Evil()}, protocol=2))
    with pytest.raises(JetsonDetectError, match="refusing to unpickle"):
        read_checkpoint(str(path))
    assert not os.path.exists(marker)


def _raw_tensor_pickle(storage_name, shape, stride):
    """A hand-assembled pickle of {'w': tensor} as torch.save writes it (protocol 2 opcodes)."""
    def unicode(text):
        data = text.encode()
        return b"X" + struct.pack("<I", len(data)) + data

    def integer(value):
        return b"J" + struct.pack("<i", value)

    pid = b"(" + unicode("storage") + b"ctorch\n" + storage_name.encode() + b"\n" + unicode("0") + unicode("cpu") + \
        integer(int(np.prod(shape))) + b"tQ"
    size = b"(" + b"".join(integer(s) for s in shape) + b"t"
    strides = b"(" + b"".join(integer(s) for s in stride) + b"t"
    args = b"(" + pid + integer(0) + size + strides + b"\x89" + b"}" + b"t"
    return b"\x80\x02}" + unicode("w") + b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"Rs."


@pytest.mark.parametrize("storage, dtype", [("FloatStorage", np.float32), ("HalfStorage", np.float16)])
def test_tensors_are_rebuilt_from_storages_with_their_strides(tmp_path, storage, dtype):
    values = np.arange(6, dtype=dtype)
    path = tmp_path / "t.pt"
    # shape (3, 2) with column-major strides (1, 3): element [i, j] = storage[i + 3j]
    _zip_with_pickle(path, _raw_tensor_pickle(storage, (3, 2), (1, 3)), {"0": values.tobytes()})
    with zipfile.ZipFile(path) as archive, archive.open("ckpt/data.pkl") as handle:
        result = RestrictedUnpickler(handle, archive, "ckpt/", str(path)).load()
    assert result["w"].dtype == dtype
    assert np.array_equal(result["w"], values.reshape(2, 3).T)


def test_a_missing_storage_is_reported_as_truncated(tmp_path):
    path = tmp_path / "t.pt"
    _zip_with_pickle(path, _raw_tensor_pickle("FloatStorage", (2,), (1,)))
    with pytest.raises(JetsonDetectError, match="storage 'ckpt/data/0' is missing"):
        with zipfile.ZipFile(path) as archive, archive.open("ckpt/data.pkl") as handle:
            RestrictedUnpickler(handle, archive, "ckpt/", str(path)).load()


def test_a_truncated_checkpoint_file_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.pt"
    path.write_bytes(PT.read_bytes()[:100000])
    with pytest.raises(JetsonDetectError, match="not a readable PyTorch zip checkpoint"):
        read_checkpoint(str(path))


def test_a_checkpoint_without_a_model_is_refused(tmp_path):
    path = tmp_path / "empty.pt"
    _zip_with_pickle(path, pickle.dumps({"epoch": 3, "model": None}, protocol=2))
    with pytest.raises(JetsonDetectError, match="no YOLOv5 model object"):
        read_checkpoint(str(path))


# Hostile checkpoints, assembled opcode by opcode (tests/crafted_files.py). Each must give one JetsonDetectError
# line: no crash, no read past a storage, no allocation bigger than the file justifies.

def _read_tensor_file(tmp_path, tensor_bytes, storages):
    root = cf.dct({"w": tensor_bytes})
    path = cf.write_checkpoint(tmp_path / "t.pt", root, storages)
    with zipfile.ZipFile(path) as archive, archive.open("ckpt/data.pkl") as handle:
        return RestrictedUnpickler(handle, archive, "ckpt/", path).load()


def _refused(path, *words):
    with pytest.raises(JetsonDetectError) as caught:
        read_checkpoint(str(path))
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message
    for word in words:
        assert word in message
    return message


SIX_FLOATS = {"0": np.arange(6, dtype=np.float32)}


@pytest.mark.parametrize("offset, size, stride, words", [
    (0, (4, 2), (2, 1), "reaches element 7 of a storage of 6"),  # storage shorter than its tensor
    (5, (2,), (1,), "reaches element 6 of a storage of 6"),  # offset near the end
    (0, (2, 2), (1, 1 << 40), "reaches element 1099511627777 of a storage of 6"),  # segfaulted before
    (0, (3,), (-1,), "negative offset, size or stride"),
    (-1, (1,), (1,), "negative offset, size or stride"),
    (0, (2, 3), (3,), "has 2 sizes and 1 strides"),
    (9, (0,), (1,), "starts past its end"),
])
def test_a_tensor_view_outside_its_storage_is_refused(tmp_path, offset, size, stride, words):
    ref = cf.tensor(cf.storage("FloatStorage", "0", 6), offset, size, stride)
    with pytest.raises(JetsonDetectError, match=re.escape(words)):
        _read_tensor_file(tmp_path, ref, SIX_FLOATS)


def test_a_view_inside_its_storage_is_still_read(tmp_path):
    ref = cf.tensor(cf.storage("FloatStorage", "0", 6), 2, (2, 2), (2, 1))
    assert _read_tensor_file(tmp_path, ref, SIX_FLOATS)["w"].tolist() == [[2.0, 3.0], [4.0, 5.0]]


def test_non_integer_sizes_are_refused(tmp_path):
    ref = cf.call(cf.glob("torch._utils", "_rebuild_tensor_v2"), cf.storage("FloatStorage", "0", 6), cf.integer(0),
                  cf.tup(cf.floating(2.0)), cf.tup(cf.integer(1)), b"\x89", cf.dct({}))
    with pytest.raises(JetsonDetectError, match="non-integer offset, size or stride"):
        _read_tensor_file(tmp_path, ref, SIX_FLOATS)


def test_zero_strides_cannot_blow_a_tiny_storage_up_before_allocation(tmp_path):
    ref = cf.tensor(cf.storage("FloatStorage", "0", 6), 0, (100000, 100000), (0, 0))  # 40 GB if allocated
    with pytest.raises(JetsonDetectError, match=r"its tensors add up to 38146 MiB from 0 MiB of storages"):
        _read_tensor_file(tmp_path, ref, SIX_FLOATS)


def test_many_views_of_one_storage_are_bounded_in_total(tmp_path):
    big = {"0": np.zeros(1 << 20, np.float32)}  # 4 MiB; 40 full views would be 160 MiB
    ref = cf.tensor(cf.storage("FloatStorage", "0", 1 << 20), 0, (1 << 20,), (1,))
    root = cf.lst(*[ref] * 40)
    path = cf.write_checkpoint(tmp_path / "t.pt", root, big)
    with pytest.raises(JetsonDetectError, match="its tensors add up to 68 MiB from 4 MiB of storages"):
        with zipfile.ZipFile(path) as archive, archive.open("ckpt/data.pkl") as handle:
            RestrictedUnpickler(handle, archive, "ckpt/", path).load()


def test_a_storage_whose_size_disagrees_with_the_pickle_is_refused(tmp_path):
    ref = cf.tensor(cf.storage("FloatStorage", "0", 600), 0, (600,), (1,))
    with pytest.raises(JetsonDetectError, match="has 24 bytes, but the pickle declares 600 FloatStorage values"):
        _read_tensor_file(tmp_path, ref, SIX_FLOATS)


def test_a_tensor_storage_must_come_from_the_archive(tmp_path):
    ref = cf.call(cf.glob("torch._utils", "_rebuild_tensor_v2"), cf.lst(cf.integer(1)), cf.integer(0),
                  cf.tup(cf.integer(1)), cf.tup(cf.integer(1)), b"\x89", cf.dct({}))
    with pytest.raises(JetsonDetectError, match="a tensor's storage is a list, not a storage of the archive"):
        _read_tensor_file(tmp_path, ref, SIX_FLOATS)


def test_a_numpy_scalar_of_a_training_checkpoint_is_read_as_a_number(tmp_path):
    import pickle as stdlib_pickle
    scalar = stdlib_pickle.dumps(np.float64(0.625), protocol=2)[2:-1]  # numpy.dtype + BUILD + scalar, as saved
    root, storages = cf.tiny_model(root_extra={"best_fitness": scalar})
    path = cf.write_checkpoint(tmp_path / "last.pt", root, storages)
    with zipfile.ZipFile(path) as archive, archive.open("ckpt/data.pkl") as handle:
        loaded = RestrictedUnpickler(handle, archive, "ckpt/", path).load()
    assert loaded["best_fitness"] == 0.625 and type(loaded["best_fitness"]) is float


@pytest.mark.parametrize("payload, words", [
    # BUILD on a dtype is the type confusion of the issue: only a plain byte-order state is taken
    (cf.call(cf.glob("numpy", "dtype"), cf.text("f8"), b"\x89", b"\x88") + cf.tup(
        cf.integer(3), cf.text("<"), b"N", b"N", b"N", cf.integer(-1), cf.integer(1 << 20), cf.integer(0)) + b"b"
     + cf.tup() + b"b", "unexpected numpy dtype state"),
    (cf.call(cf.glob("numpy", "dtype"), cf.text("O8"), b"\x89", b"\x88"), "numpy dtype 'O8' is not a plain number"),
    (cf.call(cf.glob("numpy.core.multiarray", "scalar"), cf.call(cf.glob("numpy", "dtype"), cf.text("f8")),
             b"C\x03abc"), "a numpy f8 scalar needs 8 bytes"),
    (cf.call(cf.glob("numpy.core.multiarray", "scalar"), cf.text("f8"), b"C\x08abcdefgh"),
     "numpy scalar of a str, not of a dtype"),
    # BUILD on anything but our placeholders: a rebuilt tensor (ndarray.__setstate__ is C code), an OrderedDict
    (cf.tensor(cf.storage("FloatStorage", "0", 6), 0, (6,), (1,)) + cf.tup(cf.integer(1)) + b"b",
     "sets the state of a ndarray"),
    (cf.call(cf.glob("collections", "OrderedDict")) + cf.dct({"a": cf.integer(1)}) + b"b",
     "sets the state of a OrderedDict"),
    (cf.glob("models.yolo", "Model") + b")\x81" + cf.lst(cf.integer(1)) + b"b",
     "the state of a models.yolo.Model is not a mapping"),
], ids=["dtype-build", "object-dtype", "short-scalar", "scalar-of-str", "build-ndarray", "build-ordereddict",
        "module-list-state"])
def test_build_and_numpy_globals_are_checked(tmp_path, payload, words):
    path = cf.write_checkpoint(tmp_path / "x.pt", cf.dct({"model": payload}), SIX_FLOATS)
    _refused(path, words)


@pytest.mark.parametrize("module, name", [("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
                                          ("builtins", "getattr"), ("torch", "load"),
                                          ("torch._utils", "_rebuild_qtensor")])
def test_globals_a_checkpoint_does_not_need_are_refused(tmp_path, module, name):
    path = cf.write_checkpoint(tmp_path / "x.pt", cf.dct({"model": cf.glob(module, name)}))
    _refused(path, "'{}.{}'".format(module, name), "refusing to unpickle")


def test_an_archive_declaring_gigabytes_is_refused_before_decompressing(tmp_path):
    path = cf.write_checkpoint(tmp_path / "big.pt", cf.dct({}), {"0": np.zeros(4, np.float32)})
    data = bytearray(open(path, "rb").read())
    entry = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 1)  # the storage's central-directory record
    data[entry + 20:entry + 28] = struct.pack("<II", 3 << 30, 3 << 30)  # compressed and real size: 3 GiB
    open(path, "wb").write(bytes(data))
    _refused(path, "would decompress to 3.0 GiB, more than the 2 GiB")


def test_a_zip_bomb_entry_is_refused_by_its_compression_ratio(tmp_path):
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(str(path), "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ckpt/data.pkl", cf.pickle_bytes(cf.dct({})))
        archive.writestr("ckpt/data/0", bytes(16 << 20))  # 16 MiB of zeros deflate to about 16 KB
    assert path.stat().st_size < 1 << 20
    _refused(path, "would decompress more than 100 times: a zip bomb")


@pytest.mark.parametrize("root, words", [
    (cf.integer(7), "holds a int, not YOLOv5's dict with a 'model' entry"),
    (cf.lst(cf.integer(1)), "holds a list, not YOLOv5's dict"),
    (cf.dct({"epoch": cf.integer(1)}), "no YOLOv5 model object in the checkpoint (its 'model' is NoneType; keys: "
                                       "epoch)"),
    (cf.dct([(cf.integer(1), cf.integer(2)), (cf.text("a"), cf.integer(3))]), "keys: 1, a"),  # unsortable keys
    (cf.nested_lists(100000), "holds a list"),
    (cf.dct({"model": cf.nested_lists(100000)}), "its 'model' is list"),
], ids=["int", "list", "no-model", "mixed-keys", "deep-list", "deep-model"])
def test_odd_or_deeply_nested_roots_give_one_line(tmp_path, root, words):
    _refused(cf.write_checkpoint(tmp_path / "odd.pt", root), words)


def test_deeply_nested_class_names_give_one_line(tmp_path):
    root, storages = cf.tiny_model()
    root = root.replace(cf.lst(cf.text("fire")), cf.nested_lists(100000))
    _refused(cf.write_checkpoint(tmp_path / "names.pt", root, storages), "class names is nested too deeply")


def test_a_module_that_contains_itself_gives_one_line(tmp_path):
    # memo slot 0 holds the module; its _modules refers back to it (BINPUT 0 ... BINGET 0)
    looped = (cf.glob("models.common", "Conv") + b")\x81q\x00"
              + cf.dct({"_parameters": cf.dct({}), "_buffers": cf.dct({}), "_modules": cf.dct({"m": b"h\x00"})}) + b"b")
    _refused(cf.write_checkpoint(tmp_path / "loop.pt", cf.dct({"model": looped})), "nested more than 64 deep")


def test_a_parameter_that_is_not_a_tensor_is_refused(tmp_path):
    model = cf.nn_module("models.yolo.Model", parameters={"w": cf.text("weights")})
    _refused(cf.write_checkpoint(tmp_path / "str.pt", cf.dct({"model": model})), "'w' is a str, not a tensor")


def test_a_tiny_crafted_model_reads(tmp_path):
    root, storages = cf.tiny_model()
    ckpt = read_checkpoint(cf.write_checkpoint(tmp_path / "tiny.pt", root, storages))
    assert (ckpt.names, ckpt.stride, ckpt.detect_prefix) == (["fire"], (8.0,), "model.1")
    assert ckpt.state["model.0.conv.weight"].shape == (2, 3, 1, 1)


@pytest.mark.parametrize("name, value, words", [
    ("model.0.conv.weight", np.array([1, np.nan, 1, 1, 1, 1], np.float32).reshape(2, 3, 1, 1),
     "tensor 'model.0.conv.weight' holds NaN or infinite values (1 of 6)"),
    ("model.1.m.0.bias", np.array([0, 0, 0, 0, np.inf, -np.inf], np.float32),
     "tensor 'model.1.m.0.bias' holds NaN or infinite values (2 of 6)"),
    ("model.0.bn.running_var", np.array([1.0, -0.5], np.float32),
     "tensor 'model.0.bn.running_var' holds a negative BatchNorm variance (-0.5)"),
])
def test_broken_numbers_in_a_checkpoint_are_refused_naming_the_tensor(tmp_path, name, value, words):
    root, storages = cf.tiny_model({name: value})
    _refused(cf.write_checkpoint(tmp_path / "nan.pt", root, storages), words)


def test_anchors_that_do_not_fit_the_strides_are_refused(tmp_path):
    root, storages = cf.tiny_model({"model.1.anchors": np.ones((3, 1, 2), np.float32)})
    _refused(cf.write_checkpoint(tmp_path / "a.pt", root, storages),
             "'model.1.anchors' has shape (3, 1, 2), not (1 levels, anchors, 2) for the 1 strides")


def test_a_big_endian_checkpoint_is_refused_not_misread(tmp_path):
    root, storages = cf.tiny_model()
    path = cf.write_checkpoint(tmp_path / "be.pt", root, storages)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("ckpt/byteorder", "big")
    _refused(path, "its storages are big byte order; only little-endian checkpoints are supported")


def test_a_little_endian_byteorder_record_is_read(tmp_path):
    root, storages = cf.tiny_model()
    path = cf.write_checkpoint(tmp_path / "le.pt", root, storages)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("ckpt/byteorder", "little")
    assert read_checkpoint(path).names == ["fire"]
