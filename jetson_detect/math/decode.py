"""YOLOv5 (v6+) Detect-head decoding: raw head logits → boxes (cx, cy, w, h) in input pixels, objectness, classes."""

from typing import Sequence

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in the input's precision."""
    return 1.0 / (1.0 + np.exp(-x))


def decode_level(head: np.ndarray, anchors_px: np.ndarray, stride: float) -> np.ndarray:
    """Decode one level's head (B, na·(5+nc), H, W) into (B, na·H·W, 5+nc), anchor-major then row then column.

    xy = (2σ − 0.5 + grid)·stride, wh = (2σ)²·anchor: the v6 head that tensorrtx and the reference both use.
    """
    batch, channels, height, width = head.shape
    na = anchors_px.shape[0]
    if channels % na:
        raise ValueError("head has {} channels, not a multiple of {} anchors".format(channels, na))
    no = channels // na
    y = sigmoid(head.astype(np.float32).reshape(batch, na, no, height, width).transpose(0, 1, 3, 4, 2))
    gy, gx = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij")
    out = y.copy()
    out[..., 0] = (y[..., 0] * 2 - 0.5 + gx) * stride
    out[..., 1] = (y[..., 1] * 2 - 0.5 + gy) * stride
    anchors = anchors_px.astype(np.float32).reshape(1, na, 1, 1, 2)
    out[..., 2:4] = (y[..., 2:4] * 2) ** 2 * anchors
    return out.reshape(batch, na * height * width, no)


def decode_heads(heads: Sequence[np.ndarray], anchors_px: np.ndarray, strides: Sequence[float]) -> np.ndarray:
    """Decode all levels (P3, P4, P5 order) and concatenate: (B, Σ na·H·W, 5+nc)."""
    if len(heads) != len(strides) or len(heads) != anchors_px.shape[0]:
        raise ValueError("{} heads, {} strides and {} anchor sets must agree".format(
            len(heads), len(strides), anchors_px.shape[0]))
    return np.concatenate([decode_level(h, a, s) for h, a, s in zip(heads, anchors_px, strides)], axis=1)
