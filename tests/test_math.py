"""The pure NumPy math: letterbox, BatchNorm folding, conv merging, decode, NMS, box scaling."""

import cv2
import numpy as np
import pytest

from jetson_detect.math.boxes import scale_boxes_to_original
from jetson_detect.math.decode import decode_heads
from jetson_detect.math.fold import fold_batchnorm, merge_parallel_convs
from jetson_detect.math.letterbox import letterbox, letterbox_geometry, resize_bilinear, to_network_input
from jetson_detect.math.nms import non_max_suppression

from conftest import REFERENCE, SHARED


def cv2_resize(image, size):
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def test_letterbox_geometry_of_a_portrait_image():
    geo = letterbox_geometry(1080, 810, 640)
    assert (geo.new_w, geo.new_h, geo.left, geo.right, geo.top, geo.bottom) == (480, 640, 80, 80, 0, 0)


def test_odd_padding_puts_the_extra_pixel_at_the_bottom_right():
    geo = letterbox_geometry(183, 275, 640)
    assert geo.new_w == 640 and geo.new_h == 426
    assert (geo.top, geo.bottom) == (107, 107)
    geo = letterbox_geometry(101, 640, 640)
    assert (geo.new_h, geo.top, geo.bottom) == (101, 269, 270)


@pytest.mark.shared
@pytest.mark.parametrize("name", ["bus", "zidane"])
def test_letterbox_equals_the_reference_input_exactly(name):
    image = cv2.imread(str(SHARED / "images" / "{}.jpg".format(name)))
    boxed, _ = letterbox(image, 640, cv2_resize)
    expected = np.load(REFERENCE / "yolov5n" / "{}.npz".format(name))["input"]
    assert np.array_equal(to_network_input(boxed), expected)


@pytest.mark.shared
def test_numpy_resize_fallback_is_within_one_grey_level_of_opencv():
    image = cv2.imread(str(SHARED / "images" / "zidane.jpg"))
    ours = resize_bilinear(image, (640, 360)).astype(int)
    theirs = cv2_resize(image, (640, 360)).astype(int)
    assert np.abs(ours - theirs).max() <= 1


def _conv1x1(x, w, b):
    return np.einsum("oi,ihw->ohw", w[:, :, 0, 0], x) + b[:, None, None]


def test_folded_batchnorm_equals_conv_then_batchnorm():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 1, 1)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 2, 4).astype(np.float32), rng.normal(size=4).astype(np.float32)
    mean, var = rng.normal(size=4).astype(np.float32), rng.uniform(0.1, 2, 4).astype(np.float32)
    x = rng.normal(size=(3, 5, 5)).astype(np.float32)
    reference = ((_conv1x1(x, w, np.zeros(4)) - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-3)
                 * gamma[:, None, None] + beta[:, None, None])
    wf, bf = fold_batchnorm(w, gamma, beta, mean, var, eps=1e-3)
    assert np.allclose(_conv1x1(x, wf, bf), reference, atol=1e-5)


def test_merged_convs_give_both_branches_in_order():
    rng = np.random.default_rng(1)
    a = (rng.normal(size=(2, 3, 1, 1)), rng.normal(size=2))
    b = (rng.normal(size=(5, 3, 1, 1)), rng.normal(size=5))
    w, bias = merge_parallel_convs([a, b])
    x = rng.normal(size=(3, 4, 4))
    merged = _conv1x1(x, w, bias)
    assert np.allclose(merged[:2], _conv1x1(x, *a)) and np.allclose(merged[2:], _conv1x1(x, *b))


def test_merging_convs_of_different_kernels_is_refused():
    with pytest.raises(ValueError):
        merge_parallel_convs([(np.zeros((2, 3, 1, 1)), np.zeros(2)), (np.zeros((2, 3, 3, 3)), np.zeros(2))])


def test_decode_places_a_centred_box_on_its_grid_cell():
    nc, na = 1, 1
    head = np.full((1, na * (5 + nc), 2, 2), -20.0, np.float32)
    head[0, :4, 1, 0] = 0.0  # σ = 0.5 everywhere at row 1, column 0
    out = decode_heads([head], np.array([[[10.0, 20.0]]], np.float32), [8.0])
    cell = out[0, 2]  # anchor 0, row 1, column 0
    assert np.allclose(cell[:4], [(0.5 * 2 - 0.5 + 0) * 8, (0.5 * 2 - 0.5 + 1) * 8, 10.0, 20.0])


def _rows(boxes_xywh, obj, cls):
    return np.concatenate([np.asarray(boxes_xywh, np.float32), np.asarray(obj, np.float32)[:, None],
                           np.asarray(cls, np.float32)], axis=1)


def test_nms_drops_an_overlapping_box_of_the_same_class():
    rows = _rows([[50, 50, 20, 20], [51, 50, 20, 20]], [0.9, 0.8], [[1.0, 0.0], [1.0, 0.0]])
    det = non_max_suppression(rows, 0.25, 0.45)
    assert len(det) == 1 and det.scores[0] == pytest.approx(0.9)


def test_nms_keeps_overlapping_boxes_of_different_classes_unless_agnostic():
    rows = _rows([[50, 50, 20, 20], [51, 50, 20, 20]], [0.9, 0.8], [[1.0, 0.0], [0.0, 1.0]])
    assert len(non_max_suppression(rows, 0.25, 0.45)) == 2
    assert len(non_max_suppression(rows, 0.25, 0.45, class_agnostic=True)) == 1


def test_nms_suppresses_only_above_the_iou_threshold():
    # two 10x10 boxes offset so that IoU = 50/150 = 1/3 exactly
    rows = _rows([[5, 5, 10, 10], [10, 5, 10, 10]], [0.9, 0.8], [[1.0], [1.0]])
    assert len(non_max_suppression(rows, 0.25, iou_thres=1 / 3 + 1e-6)) == 2
    assert len(non_max_suppression(rows, 0.25, iou_thres=1 / 3 - 1e-6)) == 1


def test_candidates_need_objectness_and_score_above_conf():
    rows = _rows([[10, 10, 5, 5], [40, 40, 5, 5], [80, 80, 5, 5]], [0.2, 0.5, 0.9], [[1.0], [0.4], [0.5]])
    det = non_max_suppression(rows, 0.25, 0.45)
    # row 0: objectness 0.2 fails; row 1: 0.5 x 0.4 = 0.2 fails; row 2: 0.45 passes
    assert det.scores.tolist() == pytest.approx([0.45])


def test_each_box_keeps_its_best_class_only():
    rows = _rows([[10, 10, 5, 5]], [0.9], [[0.5, 0.8, 0.7]])
    det = non_max_suppression(rows, 0.25, 0.45)
    assert det.class_ids.tolist() == [1]


def test_max_det_and_max_nms_cap_the_counts():
    xs = np.arange(20, dtype=np.float32) * 30
    rows = _rows(np.stack([xs, xs, np.full(20, 10), np.full(20, 10)], 1), np.linspace(0.99, 0.5, 20),
                 np.ones((20, 1)))
    assert len(non_max_suppression(rows, 0.25, 0.45, max_det=7)) == 7
    det = non_max_suppression(rows, 0.25, 0.45, max_nms=5)
    assert len(det) == 5 and det.scores[0] == pytest.approx(0.99)


def test_boxes_map_back_to_the_original_image_and_are_clipped():
    geo = letterbox_geometry(1080, 810, 640)
    scale = 640 / 1080
    inside = np.array([[80 + 100 * scale, 200 * scale, 80 + 300 * scale, 400 * scale]], np.float32)
    assert np.allclose(scale_boxes_to_original(inside, geo, 1080, 810), [[100, 200, 300, 400]], atol=1e-3)
    outside = np.array([[0, 0, 640, 640]], np.float32)
    assert scale_boxes_to_original(outside, geo, 1080, 810).tolist() == [[0, 0, 810, 1080]]
