"""Letterbox pre-processing, exactly as the reference YOLOv5 code does it (``auto=False``).

The geometry is pure arithmetic; the one resize is passed in (``cv2.resize`` in the product, so the result is
bit-identical to the reference) with a NumPy bilinear fallback for machines without OpenCV.
"""

from typing import Callable, NamedTuple, Optional, Tuple

import numpy as np

PAD_VALUE = 114

ResizeFn = Callable[[np.ndarray, Tuple[int, int]], np.ndarray]


class LetterboxGeometry(NamedTuple):
    """Where an original image lands inside the square network input."""

    scale: float  # network pixels per original pixel
    new_w: int  # size of the resized image inside the input
    new_h: int
    top: int
    bottom: int
    left: int
    right: int
    size: int  # side of the square network input


def letterbox_geometry(height: int, width: int, size: int) -> LetterboxGeometry:
    """Scale to fit ``size``×``size`` keeping the aspect ratio, and split the padding evenly."""
    if height <= 0 or width <= 0:
        raise ValueError("image size must be positive, got {}x{}".format(width, height))
    scale = min(size / height, size / width)
    new_w, new_h = int(round(width * scale)), int(round(height * scale))
    pad_w, pad_h = (size - new_w) / 2, (size - new_h) / 2
    top, bottom = int(round(pad_h - 0.1)), int(round(pad_h + 0.1))
    left, right = int(round(pad_w - 0.1)), int(round(pad_w + 0.1))
    return LetterboxGeometry(scale, new_w, new_h, top, bottom, left, right, size)


def resize_bilinear(image: np.ndarray, size_wh: Tuple[int, int]) -> np.ndarray:
    """Bilinear resize with half-pixel centres (OpenCV's INTER_LINEAR convention), in float, rounded to uint8.

    Within one grey level of ``cv2.resize`` (OpenCV uses 11-bit fixed point); used only where OpenCV is absent.
    """
    out_w, out_h = size_wh
    in_h, in_w = image.shape[:2]

    def axis(out_n: int, in_n: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(out_n, dtype=np.float64) + 0.5) * (in_n / out_n) - 0.5
        pos = np.clip(pos, 0, in_n - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, in_n - 1)
        return lo, hi, (pos - lo)

    y0, y1, fy = axis(out_h, in_h)
    x0, x1, fx = axis(out_w, in_w)
    img = image.astype(np.float64)
    fx3 = fx[None, :, None] if img.ndim == 3 else fx[None, :]
    fy3 = fy[:, None, None] if img.ndim == 3 else fy[:, None]
    top = img[y0][:, x0] * (1 - fx3) + img[y0][:, x1] * fx3
    bot = img[y1][:, x0] * (1 - fx3) + img[y1][:, x1] * fx3
    out = top * (1 - fy3) + bot * fy3
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def letterbox(image: np.ndarray, size: int, resize: Optional[ResizeFn] = None) -> Tuple[np.ndarray, LetterboxGeometry]:
    """Return the padded ``size``×``size`` BGR uint8 image and its geometry."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("letterbox expects an HxWx3 image, got shape {}".format(image.shape))
    geo = letterbox_geometry(image.shape[0], image.shape[1], size)
    if (geo.new_w, geo.new_h) != (image.shape[1], image.shape[0]):
        image = (resize or resize_bilinear)(image, (geo.new_w, geo.new_h))
    out = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    out[geo.top:geo.top + geo.new_h, geo.left:geo.left + geo.new_w] = image
    return out, geo


def to_network_input(letterboxed_bgr: np.ndarray) -> np.ndarray:
    """BGR HWC uint8 → RGB CHW float32 in [0, 1] with a batch axis, as the network takes it."""
    chw = letterboxed_bgr[:, :, ::-1].transpose(2, 0, 1)
    return (np.ascontiguousarray(chw, dtype=np.float32) / np.float32(255.0))[None]
