"""Drawing: boxes in per-class colours, labels and the FPS/latency overlay, readable from 320 to 1920 px."""

import numpy as np

from jetson_detect.math.nms import Detections
from jetson_detect.video.draw import DrawStyle, class_colour, draw_detections, draw_overlay, overlay_lines


def one_box(class_id, box=(40, 60, 200, 180)):
    return Detections(np.array([box], np.float32), np.array([0.91], np.float32), np.array([class_id], np.int32))


def test_neighbouring_classes_get_different_colours():
    colours = [class_colour(i) for i in range(20)]
    assert len(set(colours)) == 20
    assert class_colour(0) == class_colour(20)


def test_box_is_drawn_in_its_class_colour():
    image = np.zeros((240, 320, 3), np.uint8)
    draw_detections(image, one_box(3), ["a", "b", "c", "d"])
    assert tuple(image[120, 40]) == class_colour(3)  # left edge, below the label
    assert tuple(image[120, 120]) == (0, 0, 0)  # inside the box stays untouched


def test_label_shows_name_and_confidence_above_the_box():
    image = np.zeros((240, 320, 3), np.uint8)
    plain = image.copy()
    draw_detections(image, one_box(0), ["person"])
    label_band = image[44:60, 40:106]  # "person 0.91" at scale 0.4: 66 x 16 px, ending on the box top
    is_background = (label_band == np.array(class_colour(0), np.uint8)).all(axis=2)
    assert 0.5 < is_background.mean() < 0.95  # a filled label with text on it
    assert (plain[:44] == image[:44]).all()


def test_line_width_and_font_grow_with_the_frame():
    small, large = DrawStyle(240, 320), DrawStyle(1080, 1920)
    assert small.thickness == 1 and large.thickness == 3
    assert small.font_scale == 0.4 and large.font_scale == 1.2


def test_overlay_lists_fps_stage_and_end_to_end_latency():
    stats = {"fps": 24.96, "stage_ms": {"preprocess": 2.4, "infer": 31.6, "output": 5.0}, "latency_ms": 80.2}
    assert overlay_lines(stats) == ["FPS 25.0", "ms: preprocess 2 infer 32 output 5", "latency 80 ms"]


def test_overlay_is_drawn_in_the_top_left_corner_only():
    image = np.full((360, 640, 3), 200, np.uint8)
    draw_overlay(image, {"fps": 10.0, "latency_ms": 50.0})
    assert (image[:40, :120] != 200).any()
    assert (image[200:, :] == 200).all()


def test_label_of_a_box_at_the_right_edge_stays_inside_the_image():
    image = np.zeros((320, 320, 3), np.uint8)
    draw_detections(image, one_box(1, (300, 0, 320, 40)), ["a", "a very long class name"])
    assert (image[:, :200] != 0).any()  # the label was shifted left into view
