"""tensorrtx .wts reading and writing, strict validation, and the .pt → .wts converter."""

import numpy as np
import pytest

from jetson_detect.errors import JetsonDetectError
from jetson_detect.model.checkpoint import read_checkpoint
from jetson_detect.model.weights import format_wts_line, read_wts, write_wts

from conftest import PT, WTS

pytestmark = pytest.mark.shared


def test_reads_every_tensor_of_the_official_wts(coco_weights):
    assert len(coco_weights) == 351
    assert coco_weights["model.0.conv.weight"].shape == (1728,)
    assert coco_weights["model.24.strides"].tolist() == [8.0, 16.0, 32.0]
    assert coco_weights["model.24.anchor_grid"][:2].tolist() == [10.0, 13.0]


def test_line_format_is_tensorrtx_byte_for_byte(coco_weights):
    with open(WTS, "r", encoding="ascii") as handle:
        handle.readline()
        first_line = handle.readline()
    assert format_wts_line("model.0.conv.weight", coco_weights["model.0.conv.weight"]) == first_line


def test_converter_output_is_byte_identical_to_the_shared_wts(tmp_path):
    out = tmp_path / "yolov5n.wts"
    write_wts(read_checkpoint(str(PT)).wts_weights(), str(out))
    assert out.read_bytes() == WTS.read_bytes()


def test_write_then_read_round_trips(tmp_path):
    weights = {"a.weight": np.array([1.5, -2.25, 3e-8], np.float32), "b.bias": np.array([0.0], np.float32)}
    path = tmp_path / "tiny.wts"
    write_wts(weights, str(path))
    back = read_wts(str(path))
    assert list(back) == ["a.weight", "b.bias"]
    assert np.array_equal(back["a.weight"], weights["a.weight"])


def _write(tmp_path, text):
    path = tmp_path / "bad.wts"
    path.write_text(text)
    return str(path)


GOOD_LINE = "conv.weight 2 3f800000 40000000\n"


@pytest.mark.parametrize("text, expected", [
    ("3\n" + GOOD_LINE, "header says 3 tensors but the file holds 1"),
    ("1\nconv.weight 3 3f800000 40000000\n", "line 2: tensor 'conv.weight' declares 3 values but has 2"),
    ("1\nconv.weight 2 3f800000 4000zz00\n", "line 2: tensor 'conv.weight' has a bad hex word '4000zz00'"),
    ("1\nconv.weight 2 3f800000 400000\n", "line 2: tensor 'conv.weight' has a hex word that is not 8 digits"),
    ("2\n" + GOOD_LINE + GOOD_LINE, "line 3: tensor 'conv.weight' appears twice"),
    ("1\nconv.weight 2 3f800000 7fc00000\n", "line 2: tensor 'conv.weight' holds NaN or infinite values"),
    ("1\nconv.weight 2 3f800000 7f800000\n", "line 2: tensor 'conv.weight' holds NaN or infinite values"),
    ("1\nconv.weight\n", "line 2: tensor 'conv.weight' has no element count"),
    ("1\nm.bn.running_var 2 3f800000 bf000000\n",
     "line 2: tensor 'm.bn.running_var' holds a negative BatchNorm variance (-0.5)"),
    ("1\nconv.weight 2 ff800000 7fc00000\n", "line 2: tensor 'conv.weight' holds NaN or infinite values (2 of 2)"),
    ("not a count\n", "line 1 should be the tensor count"),
])
def test_bad_wts_gives_one_line_error_naming_file_line_and_tensor(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(JetsonDetectError) as err:
        read_wts(path)
    message = str(err.value)
    assert expected in message
    assert message.startswith(path)
    assert "\n" not in message


def test_truncated_file_is_reported_not_read_short(tmp_path):
    full = WTS.read_text(encoding="ascii")
    cut = full[: len(full) // 3]
    path = _write(tmp_path, cut)
    with pytest.raises(JetsonDetectError, match="truncated or corrupt"):
        read_wts(path)


def test_missing_file_says_what_to_pass(tmp_path):
    with pytest.raises(JetsonDetectError, match="no such weights file: pass a .wts or .pt"):
        read_wts(str(tmp_path / "nope.wts"))


def test_unwritable_output_is_a_clear_error(tmp_path):
    with pytest.raises(JetsonDetectError, match="cannot write the .wts file"):
        write_wts({"a": np.zeros(1, np.float32)}, str(tmp_path / "missing-dir" / "x.wts"))
