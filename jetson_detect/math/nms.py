"""Non-maximum suppression with the reference YOLOv5 semantics (``non_max_suppression``).

A candidate needs objectness > conf and objectness × best class probability > conf; each box keeps its one best
class; suppression is greedy, highest score first, IoU > iou_thres within a class (or across classes when
class-agnostic); at most ``max_nms`` candidates go in and ``max_det`` come out.
"""

import numpy as np

MAX_NMS_CANDIDATES = 30000


class Detections(object):
    """Detections of one image: xyxy boxes, scores and class ids, highest score first; ``len()`` counts them.

    A plain class rather than a NamedTuple: a NamedTuple's ``len()`` is its field count, and ours is the number of
    detections.
    """

    __slots__ = ("boxes", "scores", "class_ids")

    def __init__(self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray) -> None:
        self.boxes = boxes  # (N, 4) float32
        self.scores = scores  # (N,) float32
        self.class_ids = class_ids  # (N,) int32

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __repr__(self) -> str:
        return "Detections({} boxes, classes {})".format(len(self), self.class_ids.tolist())


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    """Centre-size boxes to corner boxes."""
    out = np.empty_like(xywh)
    half = xywh[..., 2:4] / 2
    out[..., 0:2] = xywh[..., 0:2] - half
    out[..., 2:4] = xywh[..., 0:2] + half
    return out


def box_iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with many (no +1 on widths, as torchvision)."""
    ix1 = np.maximum(box[0], boxes[:, 0])
    iy1 = np.maximum(box[1], boxes[:, 1])
    ix2 = np.minimum(box[2], boxes[:, 2])
    iy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def select_candidates(decoded: np.ndarray, conf_thres: float, max_nms: int = MAX_NMS_CANDIDATES) -> Detections:
    """Apply the two-part confidence rule and best-class choice; return candidates sorted by score, capped."""
    obj = decoded[:, 4]
    x = decoded[obj > conf_thres]
    if not x.shape[0]:
        return Detections.empty()
    cls_scores = x[:, 5:] * x[:, 4:5]
    class_ids = cls_scores.argmax(axis=1).astype(np.int32)
    scores = cls_scores[np.arange(x.shape[0]), class_ids].astype(np.float32)
    keep = scores > conf_thres
    boxes = xywh_to_xyxy(x[keep, :4]).astype(np.float32)
    scores, class_ids = scores[keep], class_ids[keep]
    order = np.argsort(-scores, kind="stable")[:max_nms]
    return Detections(boxes[order], scores[order], class_ids[order])


def greedy_nms(cands: Detections, iou_thres: float, max_det: int, class_agnostic: bool = False) -> Detections:
    """Keep the best-scoring box, drop later boxes of its class overlapping it by IoU > iou_thres, repeat."""
    n = len(cands)
    alive = np.ones(n, dtype=bool)
    kept = []
    for i in range(n):
        if not alive[i]:
            continue
        kept.append(i)
        if len(kept) >= max_det:
            break
        rest = np.nonzero(alive[i + 1:])[0] + i + 1
        if not rest.size:
            break
        if not class_agnostic:
            rest = rest[cands.class_ids[rest] == cands.class_ids[i]]
        if rest.size:
            iou = box_iou_one_to_many(cands.boxes[i], cands.boxes[rest])
            alive[rest[iou > iou_thres]] = False
    idx = np.asarray(kept, dtype=np.int64)
    return Detections(cands.boxes[idx], cands.scores[idx], cands.class_ids[idx])


def non_max_suppression(decoded: np.ndarray, conf_thres: float = 0.25, iou_thres: float = 0.45,
                        max_det: int = 300, class_agnostic: bool = False,
                        max_nms: int = MAX_NMS_CANDIDATES) -> Detections:
    """Decoded (N, 5+nc) rows of one image → final detections in input pixels, highest score first."""
    if decoded.ndim != 2 or decoded.shape[1] < 6:
        raise ValueError("expected decoded rows (N, 5+nc), got shape {}".format(decoded.shape))
    return greedy_nms(select_candidates(decoded, conf_thres, max_nms), iou_thres, max_det, class_agnostic)
