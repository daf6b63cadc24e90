"""``run`` (the default command): detect on images, folders, videos, cameras and streams.

Files without ``--output`` run frame by frame in order (``--save-json`` lines, ``--save-dir`` annotated copies; an
unreadable image is reported and skipped). Cameras, streams and any ``--output`` go through the threaded live loop
(``jetson_detect.app.pipeline``). ``--config`` runs the unattended watch (alarms, telemetry, systemd
notifications) with the file's settings, flags overriding it.
"""

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional

from ..app.pipeline import add_live_arguments, run_from_args, source_from_args
from ..errors import JetsonDetectError
from .build import add_tensorrt_arguments, tensorrt_options
from .options import add_model_arguments, c3_fusion_choice


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help="image, image folder, glob or video file (cameras and streams: see "
                                         "--camera and URIs such as csi://0, /dev/video0, rtsp://...)")
    add_model_arguments(parser)
    add_tensorrt_arguments(parser)
    parser.add_argument("--save-json", metavar="OUT.jsonl",
                        help="write one JSON object per frame (flushed per line) with detections in image pixels")
    parser.add_argument("--save-dir", metavar="DIR", help="write annotated images (or an annotated video) here")
    parser.add_argument("--quiet", action="store_true", help="no per-frame lines")
    parser.add_argument("--config", default=None, metavar="YAML",
                        help="run the watch from a config file (configs/fire_smoke.yaml); flags override it")
    parser.add_argument("--engine-cache", default=None, metavar="DIR",
                        help="folder for built TensorRT engines (default: next to the weights)")
    parser.add_argument("--events-dir", default=None, metavar="DIR", help="alarm events folder (with --config)")
    add_live_arguments(parser)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _summary(detections: Any, names: List[str]) -> str:
    counts: Dict[str, int] = {}
    for class_id in detections.class_ids:
        name = names[int(class_id)]
        counts[name] = counts.get(name, 0) + 1
    return ", ".join("{} {}".format(n, name) for name, n in sorted(counts.items())) or "no detections"


def create_detector_from_args(args: argparse.Namespace) -> Any:
    """The detector the model options ask for (shared by run, eval and export-onnx)."""
    from ..backends.detector import create_detector
    if not args.weights:
        raise JetsonDetectError("no weights: pass --weights FILE.wts|FILE.pt (e.g. weights/fire_smoke_yolov5n.pt)")
    trt_options = tensorrt_options(args)
    cache_dir = getattr(args, "engine_cache", None)
    if cache_dir and not trt_options.get("engine_path") and not args.weights.endswith(".engine"):
        stem = os.path.splitext(os.path.basename(args.weights))[0]
        trt_options["engine_path"] = os.path.join(cache_dir, "{}_{}_{}_b1.engine".format(
            stem, args.precision, args.img_size))
    return create_detector(args.weights, backend=args.backend, img_size=args.img_size, conf_thres=args.conf,
                           iou_thres=args.iou, max_det=args.max_det, cfg=args.cfg,
                           class_agnostic=args.class_agnostic, c3_fusion=c3_fusion_choice(args), log=_log,
                           **trt_options)


class AnnotatedWriter(object):
    """``--save-dir``: annotated images under their own names, or one annotated video for a video source."""

    def __init__(self, folder: str, video_name: Optional[str], fps: float) -> None:
        from ..video.sinks import VideoFileSink, annotated_video_name
        self.folder = folder
        self.video = VideoFileSink(os.path.join(folder, annotated_video_name(video_name)), fps) if video_name else None
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise JetsonDetectError("--save-dir {}: cannot create it ({})".format(folder, exc.strerror)) from None

    def write(self, name: str, image: Any) -> None:
        from ..video.sinks import write_annotated_image
        if self.video is None:
            write_annotated_image(self.folder, name, 0, image)
        else:
            self.video.write_image(image)

    def close(self) -> None:
        """Finish the video and check that it plays (raises when it does not)."""
        if self.video is not None:
            self.video.close()


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
            name = source.frame_name() if isinstance(source, ImageFilesSource) else source.name
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


def run_config(args: argparse.Namespace) -> int:
    """``--config``: the unattended watch, the file's settings with the command line's overrides."""
    from ..app.config import apply_overrides, load_config, parser_defaults
    from ..app.service import run_watch
    from ..cli import build_parser
    config = apply_overrides(load_config(args.config), args, defaults=parser_defaults(build_parser("run")))
    model, detection = config["model"], config["detection"]
    args.weights, args.cfg, args.backend = model["weights"], model["cfg"], model["backend"]
    args.img_size, args.precision, args.engine_cache = model["img_size"], model["precision"], model["engine_cache"]
    args.conf, args.iou, args.max_det = detection["conf_thres"], detection["iou_thres"], detection["max_det"]
    run_watch(config, create_detector_from_args(args), note=_log)
    return 0


def main(args: argparse.Namespace) -> int:
    from ..output_paths import check_outputs
    from ..video.sinks import planned_outputs
    from ..video.sources import open_source
    if args.config:
        return run_config(args)
    source = source_from_args(args)
    # Resolve the source before the model is built: a missing file or camera is reported at once, not after
    # minutes of TensorRT engine building on a Nano.
    opened = open_source(source)
    is_file = not opened.live
    files, folders = planned_outputs([("--save-dir", args.save_dir)] + [("--output", uri) for uri in args.outputs],
                                     opened)
    check_outputs([("--source", source), ("--weights", args.weights), ("--cfg", args.cfg)] + [
        ("--source", path) for path in getattr(opened, "paths", ())],
                  [("--save-json", args.save_json), ("--engine", args.engine)] + files, folders)
    if not args.outputs and args.camera is None and is_file:
        detector = create_detector_from_args(args)
        frames = run_files(detector, source, args.save_json, args.save_dir, args.quiet)
        _log("done: {} frame(s){}".format(frames, ", detections in " + args.save_json if args.save_json else ""))
        return 0
    detector = create_detector_from_args(args)
    extra = [args.save_dir] if args.save_dir else []
    return run_from_args(args, detector, jsonl_path=args.save_json, extra_outputs=extra, note=_log)
