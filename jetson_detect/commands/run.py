"""``run`` (the default command): detect on an image, a folder of images or a video file, and on live sources.

Writes one JSON line per frame with ``--save-json`` and annotated images/video with ``--save-dir``. An unreadable
image in a folder is reported and skipped; the run goes on.
"""

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional

from ..errors import JetsonDetectError
from .build import add_tensorrt_arguments, tensorrt_options
from .options import add_model_arguments

IMAGE_SAVE_SUFFIX = ".jpg"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help="image, image folder, glob or video file (cameras and streams: see "
                                         "--camera and URIs such as csi://0, /dev/video0, rtsp://...)")
    add_model_arguments(parser)
    add_tensorrt_arguments(parser)
    parser.add_argument("--save-json", metavar="OUT.jsonl",
                        help="write one JSON object per frame (flushed per line) with detections in image pixels")
    parser.add_argument("--save-dir", metavar="DIR", help="write annotated images (or an annotated video) here")
    parser.add_argument("--quiet", action="store_true", help="no per-frame lines")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _summary(detections: Any, names: List[str]) -> str:
    counts = {}  # type: Dict[str, int]
    for class_id in detections.class_ids:
        name = names[int(class_id)]
        counts[name] = counts.get(name, 0) + 1
    return ", ".join("{} {}".format(n, name) for name, n in sorted(counts.items())) or "no detections"


def create_detector_from_args(args: argparse.Namespace) -> Any:
    """The detector the model options ask for (shared by run, eval and export-onnx)."""
    from ..backends.detector import create_detector
    if not args.weights:
        raise JetsonDetectError("no weights: pass --weights FILE.wts|FILE.pt (e.g. weights/fire_smoke_yolov5n.pt)")
    return create_detector(args.weights, backend=args.backend, img_size=args.img_size, conf_thres=args.conf,
                           iou_thres=args.iou, max_det=args.max_det, cfg=args.cfg,
                           class_agnostic=args.class_agnostic, c3_fusion=not args.no_c3_fusion, log=_log,
                           **tensorrt_options(args))


class AnnotatedWriter(object):
    """``--save-dir``: annotated images under their own names, or one annotated video for a video source."""

    def __init__(self, folder: str, video_name: Optional[str], fps: float) -> None:
        self.folder = folder
        self.video_name = video_name
        self.fps = fps
        self.video = None  # type: Any
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise JetsonDetectError("--save-dir {}: cannot create it ({})".format(folder, exc.strerror)) from None

    def write(self, name: str, image: Any) -> None:
        import cv2
        if self.video_name is None:
            path = os.path.join(self.folder, os.path.splitext(os.path.basename(name))[0] + IMAGE_SAVE_SUFFIX)
            if not cv2.imwrite(path, image):
                raise JetsonDetectError("--save-dir: cannot write {} (disk full or not writable?)".format(path))
            return
        if self.video is None:
            path = os.path.join(self.folder, os.path.splitext(os.path.basename(self.video_name))[0] + ".mp4")
            self.video = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                         (image.shape[1], image.shape[0]))
            if not self.video.isOpened():
                raise JetsonDetectError("--save-dir: cannot write the video {}".format(path))
        self.video.write(image)

    def close(self) -> None:
        if self.video is not None:
            self.video.release()
            self.video = None


def run_files(detector: Any, source_uri: str, save_json: Optional[str], save_dir: Optional[str],
              quiet: bool = False) -> int:
    """Detect frame by frame on a file source (image, folder, glob, video); returns the number of frames done."""
    from ..video.draw import draw_detections
    from ..video.sinks import JsonlSink
    from ..video.sources import ImageFilesSource, open_source
    source = open_source(source_uri)
    if source.live:
        raise JetsonDetectError("--source {}: a live source; it runs through the live loop".format(source_uri))
    source.open()
    is_images = isinstance(source, ImageFilesSource)
    jsonl = JsonlSink(save_json) if save_json else None
    writer = AnnotatedWriter(save_dir, None if is_images else source.name, source.fps) if save_dir else None
    done = 0
    index = -1
    try:
        while True:
            image = source.read()
            if image is None:
                break
            index += 1
            name = source.frame_name() if is_images else source.name
            if image.ndim != 3 or image.size == 0:
                _log("skipping {}: not a readable image".format(name))
                continue
            start = time.perf_counter()
            detections = detector.detect(image)
            elapsed_ms = (time.perf_counter() - start) * 1000
            if jsonl is not None:
                jsonl.write_detections(os.path.basename(name), index, image.shape[1], image.shape[0], detections,
                                       detector.names)
            if writer is not None:
                writer.write(name, draw_detections(image.copy(), detections, detector.names))
            if not quiet:
                _log("{} {}: {} ({:.1f} ms)".format(os.path.basename(name), index if not is_images else "",
                                                   _summary(detections, detector.names), elapsed_ms))
            done += 1
    finally:
        source.close()
        if jsonl is not None:
            jsonl.close()
        if writer is not None:
            writer.close()
    return done


def main(args: argparse.Namespace) -> int:
    if not args.source:
        raise JetsonDetectError("no input: pass --source PATH (image, folder, video) or a camera/stream URI")
    detector = create_detector_from_args(args)
    frames = run_files(detector, args.source, args.save_json, args.save_dir, args.quiet)
    _log("done: {} frame(s){}".format(frames, ", detections in " + args.save_json if args.save_json else ""))
    return 0
