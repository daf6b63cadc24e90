"""Mapping boxes from network-input pixels back to the original image."""

import numpy as np

from .letterbox import LetterboxGeometry


def scale_boxes_to_original(boxes: np.ndarray, geometry: LetterboxGeometry, height: int, width: int) -> np.ndarray:
    """Undo the letterbox (remove the half padding, divide by the scale) and clip to the image.

    The padding is recomputed unrounded from the original size, as the reference's ``scale_boxes`` does, so
    coordinates agree with it to float precision.
    """
    out = boxes.astype(np.float32).copy()
    out[:, [0, 2]] -= (geometry.size - width * geometry.scale) / 2
    out[:, [1, 3]] -= (geometry.size - height * geometry.scale) / 2
    out[:, :4] /= geometry.scale
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out
