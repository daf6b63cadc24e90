"""``eval``: mAP50 and mAP50-95 of the model (or of saved detections) on images with YOLO-format labels.

Defaults follow the reference's evaluation: conf 0.001, IoU 0.6, 640 letterbox, up to 16,384 candidates into NMS.
The figures are single-label (each box with its best class, as the plugin outputs it); the printed table says so.
"""

import argparse
import json
import os
import sys
from typing import Any

from ..atomic_write import atomic_output
from ..errors import JetsonDetectError
from ..output_paths import check_outputs
from .build import add_tensorrt_arguments, tensorrt_options
from .options import add_model_arguments, c3_fusion_choice, ranged

EVAL_PRE_NMS_TOP_K = 16384  # the most the GPU plugin takes; on coco64 the figures equal those with 30,000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, conf=0.001, iou=0.6)
    # run's precision and engine options, so that what is scored is what ``run`` would detect with (an INT8
    # calibration checked on labelled frames of the camera, the FP16 engine the watch uses)
    add_tensorrt_arguments(parser, for_run=True)
    parser.add_argument("--images", required=True, help="folder of images")
    parser.add_argument("--labels", required=True, help="folder of YOLO-format .txt labels (same file stems)")
    parser.add_argument("--from-json", metavar="DIR",
                        help="score saved detections (<image stem>.json with a 'detections' list) instead of "
                             "running the model, e.g. the reference implementation's outputs")
    parser.add_argument("--names", help="comma-separated class names for --from-json (default: COCO when 80)")
    parser.add_argument("--nc", type=ranged("--nc"), default=80, help="number of classes for --from-json")
    parser.add_argument("--save-json", metavar="OUT.json", help="also write the figures as JSON")


def main(args: argparse.Namespace) -> int:
    from ..evaluation import SINGLE_LABEL_NOTE, detections_from_json, evaluate_folder, format_result, list_images
    from ..video.sources import read_image_file  # a FIFO or device among the images is refused, never opened
    images = list_images(args.images)
    check_outputs([("--weights", getattr(args, "weights", None)), ("--from-json", args.from_json)] + [
        ("--images", path) for path in images] + [("--labels", os.path.join(args.labels, os.path.splitext(
            os.path.basename(path))[0] + ".txt")) for path in images], [("--save-json", args.save_json)])
    if args.from_json:
        from ..model.spec import default_names
        names = [n.strip() for n in args.names.split(",")] if args.names else default_names(args.nc)
        if not all(names):
            raise JetsonDetectError("--names {}: an empty class name; give comma-separated names".format(args.names))
        remaining = iter(images)  # evaluate_folder calls detect once per image, in this order

        def detect(image: Any) -> Any:
            stem = os.path.splitext(os.path.basename(next(remaining)))[0]
            return detections_from_json(os.path.join(args.from_json, stem + ".json"))
        what = "detections from {}".format(args.from_json)
    else:
        from ..backends.detector import create_detector
        if not args.weights:
            raise JetsonDetectError("no weights: pass --weights FILE.wts|FILE.pt, or --from-json DIR")
        detector = create_detector(args.weights, backend=args.backend, img_size=args.img_size, conf_thres=args.conf,
                                   iou_thres=args.iou, max_det=args.max_det, cfg=args.cfg,
                                   class_agnostic=args.class_agnostic, c3_fusion=c3_fusion_choice(args),
                                   pre_nms_top_k=EVAL_PRE_NMS_TOP_K,
                                   log=lambda m: print(m, file=sys.stderr), **tensorrt_options(args))
        names, detect = detector.names, detector.detect  # type: ignore[assignment]
        what = "{} ({}, conf {}, IoU {}, {}px)".format(args.weights, detector.backend_name, args.conf, args.iou,
                                                       args.img_size)
    result = evaluate_folder(images, args.labels, names, detect, lambda p: read_image_file(p)[0],
                             warn=lambda m: print(m, file=sys.stderr))
    print("eval of {} on {}".format(what, args.images))
    print(format_result(result))
    if args.save_json:
        with atomic_output(args.save_json, "the eval --save-json file", mode="w", encoding="utf-8") as handle:
            json.dump(dict(result._asdict(), scoring=SINGLE_LABEL_NOTE), handle, indent=1)
    return 0

