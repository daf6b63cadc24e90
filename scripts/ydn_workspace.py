"""Workspace layout of the YoloDecodeNMS kernels, mirroring ``layoutFor`` in ``yolo_decode_nms_launch.cu``: a tool
of scripts/check_plugin_kernels.py and its test (the runtime never needs it; the C++ plugin computes its own)."""

from typing import Dict

ALIGN_BYTES = 256
REGIONS = ("counts", "num_sorted", "cand_keys", "cand_boxes", "cand_classes", "sort_buf", "sorted_boxes",
           "sorted_scores", "sorted_classes", "mask")


def _align(nbytes: int) -> int:
    return (nbytes + ALIGN_BYTES - 1) // ALIGN_BYTES * ALIGN_BYTES


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (1 for n <= 1)."""
    p = 1
    while p < n:
        p <<= 1
    return p


def workspace_layout(batch: int, num_positions: int, pre_nms_top_k: int) -> Dict[str, int]:
    """Byte offset of every scratch region, plus ``total``, for one enqueue."""
    words = (pre_nms_top_k + 63) // 64
    sizes = {
        "counts": batch * 4,
        "num_sorted": batch * 4,
        "cand_keys": batch * num_positions * 8,
        "cand_boxes": batch * num_positions * 16,
        "cand_classes": batch * num_positions * 4,
        "sort_buf": batch * next_pow2(pre_nms_top_k) * 8,
        "sorted_boxes": batch * pre_nms_top_k * 16,
        "sorted_scores": batch * pre_nms_top_k * 4,
        "sorted_classes": batch * pre_nms_top_k * 4,
        "mask": batch * pre_nms_top_k * words * 8,
    }
    layout = {}
    at = 0
    for name in REGIONS:
        layout[name] = at
        at += _align(sizes[name])
    layout["total"] = at
    return layout


def workspace_size_bytes(batch: int, num_positions: int, pre_nms_top_k: int) -> int:
    """Scratch bytes the plugin asks TensorRT for (``getWorkspaceSize``)."""
    return workspace_layout(batch, num_positions, pre_nms_top_k)["total"]


def num_positions(head_shapes, num_anchors: int) -> int:
    """Anchor positions over all levels: sum of na * H * W for (B, C, H, W) head shapes."""
    return sum(num_anchors * int(shape[2]) * int(shape[3]) for shape in head_shapes)
