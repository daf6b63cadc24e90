"""The safe .pt reader: real checkpoints read without PyTorch; anything that could run code is refused."""

import os
import pickle
import struct
import zipfile

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
