"""Detection accuracy on a folder of images with YOLO-format labels: COCO mAP through pycocotools.

Labels are ``class cx cy w h`` (normalised) per line, one ``.txt`` per image; an image without one has no objects.
pycocotools computes the numbers (an extra: ``pip install 'jetson_detect[dev]'``), so they mean what the
reference's ``val.py --save-json`` numbers mean: mAP50-95 averaged over IoU 0.50:0.95, at most 100 detections per
image. Single-label: each box carries only its best class, as the deployed decode+NMS plugin outputs it
(``SINGLE_LABEL_NOTE``; YOLOv5's val.py defaults to multi-label NMS, where a box may count for several classes).
"""

import contextlib
import io
import json
import math
import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .errors import JetsonDetectError
from .image_files import IMAGE_SUFFIXES
from .math.nms import Detections

SINGLE_LABEL_NOTE = ("single-label, each box scored with its best class only, as the deployed plugin outputs it; "
                     "YOLOv5's val.py defaults to multi-label NMS (a box may count for several classes)")


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


def _label_line(path: str, line_no: int, line: str, nc: int) -> Tuple[int, float, float, float, float]:
    """One ``class cx cy w h`` line, checked: an integer class id of the model, finite normalised coordinates in
    [0, 1] and a positive size (a NaN or negative size would silently match nothing and lower the mAP)."""
    def fail(problem: str) -> JetsonDetectError:
        return JetsonDetectError("{}: line {}: {} (got '{}'); fix or remove the line".format(
            path, line_no, problem, line.strip()[:60]))
    parts = line.split()
    if len(parts) != 5:
        raise fail("expected 'class cx cy w h' (5 numbers, normalised)")
    try:
        numbers = [float(v) for v in parts]
    except ValueError:
        raise fail("expected 'class cx cy w h' (5 numbers, normalised)") from None
    if not all(math.isfinite(v) for v in numbers):
        raise fail("NaN or infinite value")
    cls_value, cx, cy, w, h = numbers
    if not cls_value.is_integer():
        raise fail("class id {} is not an integer".format(parts[0]))
    if not 0 <= cls_value < nc:
        raise fail("class {} is outside the model's {} classes (0 to {})".format(int(cls_value), nc, nc - 1))
    if not (w > 0 and h > 0):
        raise fail("box width and height must be > 0")
    if not all(0 <= v <= 1 for v in (cx, cy, w, h)):
        raise fail("coordinates must be normalised to [0, 1]")
    return int(cls_value), cx, cy, w, h


def read_yolo_labels(path: str, width: int, height: int, nc: int) -> GroundTruth:
    """Read one label file into pixel xyxy boxes; a missing file means no objects; a malformed line is an error
    naming file and line."""
    boxes, classes = [], []
    if os.path.exists(path):
        try:
            with open(path, "r", encoding="utf-8-sig") as handle:  # -sig: a BOM from a Windows editor is fine
                lines = handle.readlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise JetsonDetectError("{}: cannot read this label file ({}); it must be UTF-8 text".format(
                path, getattr(exc, "strerror", None) or exc)) from None
        for line_no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            cls, cx, cy, w, h = _label_line(path, line_no, line, nc)
            boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                          (cy + h / 2) * height])
            classes.append(cls)
    return GroundTruth(np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(classes, np.int64))


def check_detections(detections: Detections, nc: int, where: str) -> Detections:
    """Refuse detections that would be scored as garbage: boxes that are not 4 finite numbers each, scores that
    are not finite numbers in [0, 1], class ids outside the model's classes."""
    boxes, scores, classes = (np.asarray(a) for a in (detections.boxes, detections.scores, detections.class_ids))
    n = len(scores)
    if boxes.shape != (n, 4) or classes.shape != (n,):
        raise JetsonDetectError("{}: {} detections but boxes of shape {} and {} class ids: every detection needs "
                                "a 4-number box, a confidence and a class id".format(
                                    where, n, boxes.shape, classes.size))
    if n and not (np.all(np.isfinite(boxes)) and np.all(np.isfinite(scores))):
        raise JetsonDetectError("{}: a detection has a NaN or infinite box or confidence".format(where))
    if n and not (np.all((scores >= 0) & (scores <= 1)) and np.all((classes >= 0) & (classes < nc))):
        raise JetsonDetectError("{}: a detection has a confidence outside [0, 1] or a class id outside 0 to {}".format(
            where, nc - 1))
    return detections


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
    """Detections of one image from a JSON file ({"detections": [{class_id, confidence, box}]}); an entry without
    a box, a confidence or a class id is an error naming the file and the entry."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            items = json.load(handle)["detections"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise JetsonDetectError("{}: not a detections JSON file ({})".format(path, exc)) from None
    if not isinstance(items, list):
        raise JetsonDetectError("{}: 'detections' is a {}, not a list".format(path, type(items).__name__))
    if not items:
        return Detections.empty()
    for index, item in enumerate(items):
        ok = (isinstance(item, dict) and isinstance(item.get("box"), list) and len(item["box"]) == 4
              and all(_is_number(v) for v in item["box"]) and _is_number(item.get("confidence"))
              and isinstance(item.get("class_id"), int) and not isinstance(item.get("class_id"), bool))
        if not ok:
            raise JetsonDetectError("{}: detection {} needs 'box' (4 numbers, xyxy pixels), 'confidence' and an "
                                    "integer 'class_id', got {}".format(path, index, json.dumps(item)[:80]))
    return Detections(np.asarray([d["box"] for d in items], np.float32),
                      np.asarray([d["confidence"] for d in items], np.float32),
                      np.asarray([d["class_id"] for d in items], np.int32))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _label_stems(labels_dir: str) -> List[str]:
    try:
        return sorted(os.path.splitext(n)[0] for n in os.listdir(labels_dir) if n.endswith(".txt"))
    except OSError as exc:
        raise JetsonDetectError("--labels {}: cannot list the folder ({})".format(
            labels_dir, exc.strerror or exc)) from None


def evaluate_folder(image_paths: Sequence[str], labels_dir: str, names: Sequence[str],
                    detect: Callable[[np.ndarray], Detections],
                    read_image: Callable[[str], Optional[np.ndarray]],
                    warn: Callable[[str], None] = lambda message: None) -> EvalResult:
    """Run ``detect`` on each image and score it against its labels. Labels that match no image are reported
    through ``warn``; no label file matching any image, no labelled object at all, or bad labels or detections are
    errors, since each would make the mAP a meaningless 0."""
    if not os.path.isdir(labels_dir):
        raise JetsonDetectError("--labels {}: no such folder".format(labels_dir))
    image_stems = {os.path.splitext(os.path.basename(p))[0] for p in image_paths}
    label_stems = _label_stems(labels_dir)
    unmatched = [s for s in label_stems if s not in image_stems]
    if len(unmatched) == len(label_stems):
        raise JetsonDetectError("--labels {}: none of its {} label files (<image name>.txt) matches one of the {} "
                                "images: is it the labels folder of these images?".format(
                                    labels_dir, len(label_stems), len(image_stems)))
    if unmatched:
        warn("warning: {} of the {} label files in {} match no image and are not scored (e.g. {}.txt)".format(
            len(unmatched), len(label_stems), labels_dir, unmatched[0]))
    gts, dets, sizes = [], [], []
    for path in image_paths:
        image = read_image(path)
        if image is None:
            raise JetsonDetectError("{}: cannot read this image; remove it from the evaluation folder".format(path))
        h, w = image.shape[:2]
        stem = os.path.splitext(os.path.basename(path))[0]
        gts.append(read_yolo_labels(os.path.join(labels_dir, stem + ".txt"), w, h, len(names)))
        dets.append(check_detections(detect(image), len(names), "detections of {}".format(path)))
        sizes.append((w, h))
    if not sum(len(gt.class_ids) for gt in gts):
        raise JetsonDetectError("--labels {}: the label files of these images hold no objects: there is nothing to "
                                "score".format(labels_dir))
    if not sum(len(det.scores) for det in dets):
        warn("warning: no detections on any of the {} images: the mAP is 0".format(len(dets)))
    return coco_map(gts, dets, sizes, names)


def format_result(result: EvalResult) -> str:
    """A small table: overall then per class, then how the figures were scored (single-label)."""
    lines = ["{:<16} {:>7} {:>9} {:>8} {:>10}".format("class", "images", "instances", "mAP50", "mAP50-95"),
             "{:<16} {:>7} {:>9} {:>8.4f} {:>10.4f}".format("all", result.images, result.instances, result.map50,
                                                             result.map50_95)]
    for name, count, ap50, ap in result.per_class:
        if count:
            lines.append("{:<16} {:>7} {:>9} {:>8.4f} {:>10.4f}".format(name[:16], "", count, ap50, ap))
    lines.append("scoring: " + SINGLE_LABEL_NOTE)
    return "\n".join(lines)
