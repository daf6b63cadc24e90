"""Drawing detections and the FPS/latency overlay onto BGR frames, legible from 320 to 1920 pixels wide."""

from typing import Any, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..math.nms import Detections

# Ultralytics' 20-colour palette (RGB hex), so a class keeps the colour users know from YOLOv5.
_PALETTE_HEX = ("FF3838", "FF9D97", "FF701F", "FFB21D", "CFD231", "48F90A", "92CC17", "3DDB86", "1A9334", "00D4BB",
                "2C99A8", "00C2FF", "344593", "6473FF", "0018EC", "8438FF", "520085", "CB38FF", "FF95C8", "FF37C7")
PALETTE_BGR = tuple((int(h[4:6], 16), int(h[2:4], 16), int(h[0:2], 16)) for h in _PALETTE_HEX)


def class_colour(class_id: int) -> Tuple[int, int, int]:
    """BGR colour of a class; neighbouring ids get distinct colours."""
    return PALETTE_BGR[int(class_id) % len(PALETTE_BGR)]


class DrawStyle(object):
    """Line width and font size scaled to the frame, so labels stay readable on small and large frames."""

    def __init__(self, height: int, width: int) -> None:
        side = max(1, min(height, width))
        self.thickness = max(1, int(round(side / 360.0)))
        self.font_scale = max(0.4, side / 900.0)
        self.font_thickness = max(1, self.thickness - (1 if self.thickness > 2 else 0))
        self.font = cv2.FONT_HERSHEY_SIMPLEX


def text_colour_for(background_bgr: Tuple[int, int, int]) -> Tuple[int, int, int]:
    """Black or white, whichever reads better on the background."""
    b, g, r = background_bgr
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def draw_label(image: np.ndarray, text: str, x: int, y: int, colour: Tuple[int, int, int], style: DrawStyle) -> None:
    """Filled label box with text whose top-left corner sits at (x, y), kept inside the image."""
    (tw, th), baseline = cv2.getTextSize(text, style.font, style.font_scale, style.font_thickness)
    h, w = image.shape[:2]
    x = int(min(max(0, x), max(0, w - tw - 2)))
    y = int(min(max(0, y), max(0, h - th - baseline - 2)))
    cv2.rectangle(image, (x, y), (x + tw + 2, y + th + baseline + 2), colour, -1)
    cv2.putText(image, text, (x + 1, y + th + 1), style.font, style.font_scale, text_colour_for(colour),
                style.font_thickness, cv2.LINE_AA)


def draw_detections(image: np.ndarray, detections: Detections, names: Sequence[str]) -> np.ndarray:
    """Draw boxes with "name confidence" labels (``fire #3 0.87`` when tracked) in place and return the image."""
    style = DrawStyle(image.shape[0], image.shape[1])
    track_ids = getattr(detections, "track_ids", None)  # set by the app's tracker (TrackedDetections)
    for index, (box, score, class_id) in enumerate(zip(detections.boxes, detections.scores, detections.class_ids)):
        colour = class_colour(int(class_id))
        x1, y1, x2, y2 = (int(round(float(v))) for v in box[:4])
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, style.thickness, cv2.LINE_8)
        name = names[int(class_id)] if 0 <= int(class_id) < len(names) else str(int(class_id))
        if track_ids is not None:
            name = "{} #{}".format(name, int(track_ids[index]))
        text = "{} {:.2f}".format(name, float(score))
        (_, th), baseline = cv2.getTextSize(text, style.font, style.font_scale, style.font_thickness)
        label_y = y1 - th - baseline - 2 if y1 - th - baseline - 2 >= 0 else y1
        draw_label(image, text, x1, label_y, colour, style)
    return image


def overlay_lines(stats: Mapping[str, Any]) -> List[str]:
    """The text lines of the overlay: FPS, per-stage and end-to-end latency in milliseconds, then telemetry."""
    lines = []
    fps = stats.get("fps")
    if fps is not None:
        lines.append("FPS {:.1f}".format(float(fps)))
    stages = stats.get("stage_ms") or {}
    parts = ["{} {:.0f}".format(name, float(ms)) for name, ms in stages.items()]
    if parts:
        lines.append("ms: " + " ".join(parts))
    latency = stats.get("latency_ms")
    if latency is not None:
        lines.append("latency {:.0f} ms".format(float(latency)))
    telemetry = stats.get("telemetry_line")
    if telemetry:
        lines.append(str(telemetry))
    return lines


def draw_overlay(image: np.ndarray, stats: Optional[Mapping[str, Any]]) -> np.ndarray:
    """Draw the FPS/latency lines in the top-left corner on a dark band, in place."""
    if not stats:
        return image
    style = DrawStyle(image.shape[0], image.shape[1])
    y = 2
    for line in overlay_lines(stats):
        (_, th), baseline = cv2.getTextSize(line, style.font, style.font_scale, style.font_thickness)
        draw_label(image, line, 2, y, (32, 32, 32), style)
        y += th + baseline + 4
    return image
