"""Detection accuracy on a folder of images with YOLO-format labels: COCO mAP through pycocotools.

Labels are ``class cx cy w h`` (normalised) per line, one ``.txt`` per image; an image without one has no objects.
pycocotools computes the numbers (an extra: ``pip install 'jetson_detect[dev]'``), so they mean what the
reference's ``val.py --save-json`` numbers mean: mAP50-95 averaged over IoU 0.50:0.95, at most 100 detections per
image, one class per box.
"""

import contextlib
import io
import json
import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .errors import JetsonDetectError
from .math.nms import Detections
from .video.sources import IMAGE_SUFFIXES


class GroundTruth(NamedTuple):
    """One image's labelled boxes in pixels (xyxy) and class ids."""

    boxes: np.ndarray
    class_ids: np.ndarray


class EvalResult(NamedTuple):
    """Overall and per-class mAP, with how many images and labelled objects each figure rests on."""

    map50_95: float
    map50: float
    per_class: List[Tuple[str, int, float, float]]  # (name, instances, AP50, AP50-95); AP −1 when no instances
    images: int
    instances: int


def list_images(folder: str) -> List[str]:
    """Image files of a folder, sorted by name."""
    if not os.path.isdir(folder):
        raise JetsonDetectError("--images {}: no such folder".format(folder))
    paths = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
        raise JetsonDetectError("--images {}: holds no images ({})".format(folder, ", ".join(IMAGE_SUFFIXES)))
    return paths


def read_yolo_labels(path: str, width: int, height: int, nc: int) -> GroundTruth:
    """Read one label file into pixel xyxy boxes; a malformed line is an error naming file and line."""
    boxes, classes = [], []
    if os.path.exists(path):
        with open(path, "r", encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, 1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    if len(parts) != 5:
                        raise ValueError
                    cls = int(float(parts[0]))
                    cx, cy, w, h = (float(v) for v in parts[1:])
                except ValueError:
                    raise JetsonDetectError("{}: line {}: expected 'class cx cy w h' (normalised), got '{}'".format(
                        path, line_no, line.strip()[:60])) from None
                if not 0 <= cls < nc:
                    raise JetsonDetectError("{}: line {}: class {} is outside the model's {} classes".format(
                        path, line_no, cls, nc))
                boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                              (cy + h / 2) * height])
                classes.append(cls)
    return GroundTruth(np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(classes, np.int64))


def coco_map(ground_truth: Sequence[GroundTruth], detections: Sequence[Detections], sizes: Sequence[Tuple[int, int]],
             names: Sequence[str]) -> EvalResult:
    """mAP50-95 and mAP50, overall and per class, by pycocotools (GT and detections in pixel xyxy)."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise JetsonDetectError("pycocotools is not installed: pip install pycocotools (or "
                                "'jetson_detect[dev]') to evaluate") from None
    images: List[Dict[str, Any]] = []
    annotations: List[Dict[str, Any]] = []
    results: List[Dict[str, Any]] = []
    for image_id, (gt, det, (w, h)) in enumerate(zip(ground_truth, detections, sizes), 1):
        images.append({"id": image_id, "width": int(w), "height": int(h)})
        for box, cls in zip(gt.boxes, gt.class_ids):
            bw, bh = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(cls),
                                "bbox": [float(box[0]), float(box[1]), bw, bh], "area": bw * bh, "iscrowd": 0})
        for box, score, cls in zip(det.boxes, det.scores, det.class_ids):
            results.append({"image_id": image_id, "category_id": int(cls), "score": round(float(score), 5),
                            "bbox": [round(float(v), 3) for v in (box[0], box[1], box[2] - box[0], box[3] - box[1])]})
    instances = len(annotations)
    counts = np.bincount(np.asarray([a["category_id"] for a in annotations], np.int64), minlength=len(names))
    if not instances or not results:
        return EvalResult(0.0, 0.0, [(n, int(c), -1.0 if not c else 0.0, -1.0 if not c else 0.0)
                                     for n, c in zip(names, counts)], len(images), instances)
    gt_api = COCO()
    gt_api.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": i, "name": n} for i, n in enumerate(names)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api.createIndex()
        dt_api = gt_api.loadRes(results)
        evaluator = COCOeval(gt_api, dt_api, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"]  # [IoU thresholds, recall, class, area, max dets]
    per_class = []
    for k, name in enumerate(names):
        p_all, p_50 = precision[:, :, k, 0, -1], precision[0, :, k, 0, -1]
        ap = float(p_all[p_all > -1].mean()) if (p_all > -1).any() else -1.0
        ap50 = float(p_50[p_50 > -1].mean()) if (p_50 > -1).any() else -1.0
        per_class.append((name, int(counts[k]), ap50, ap))
    return EvalResult(float(evaluator.stats[0]), float(evaluator.stats[1]), per_class, len(images), instances)


def detections_from_json(path: str) -> Detections:
    """Detections of one image from a JSON file ({"detections": [{class_id, confidence, box}]})."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            items = json.load(handle)["detections"]
    except (OSError, ValueError, KeyError) as exc:
        raise JetsonDetectError("{}: not a detections JSON file ({})".format(path, exc)) from None
    if not items:
        return Detections.empty()
    return Detections(np.asarray([d["box"] for d in items], np.float32),
                      np.asarray([d["confidence"] for d in items], np.float32),
                      np.asarray([d["class_id"] for d in items], np.int32))


def evaluate_folder(image_paths: Sequence[str], labels_dir: str, names: Sequence[str],
                    detect: Callable[[np.ndarray], Detections],
                    read_image: Callable[[str], Optional[np.ndarray]]) -> EvalResult:
    """Run ``detect`` on each image and score it against its labels."""
    if not os.path.isdir(labels_dir):
        raise JetsonDetectError("--labels {}: no such folder".format(labels_dir))
    gts, dets, sizes = [], [], []
    for path in image_paths:
        image = read_image(path)
        if image is None:
            raise JetsonDetectError("{}: cannot read this image; remove it from the evaluation folder".format(path))
        h, w = image.shape[:2]
        stem = os.path.splitext(os.path.basename(path))[0]
        gts.append(read_yolo_labels(os.path.join(labels_dir, stem + ".txt"), w, h, len(names)))
        dets.append(detect(image))
        sizes.append((w, h))
    return coco_map(gts, dets, sizes, names)


def format_result(result: EvalResult) -> str:
    """A small table: overall then per class."""
    lines = ["{:<16} {:>7} {:>9} {:>8} {:>10}".format("class", "images", "instances", "mAP50", "mAP50-95"),
             "{:<16} {:>7} {:>9} {:>8.4f} {:>10.4f}".format("all", result.images, result.instances, result.map50,
                                                             result.map50_95)]
    for name, count, ap50, ap in result.per_class:
        if count:
            lines.append("{:<16} {:>7} {:>9} {:>8.4f} {:>10.4f}".format(name[:16], "", count, ap50, ap))
    return "\n".join(lines)
