"""``run`` (the default command): detect on images, folders, videos, cameras and streams, all in one loop.

Every input is a camera of the loop (``jetson_detect.app.pipeline``): files, folders and globs give every frame in
order, live sources their newest frame (at most ``--detect-fps`` per second). ``--source``/``--camera`` given
several times make cameras cam0, cam1, ... sharing one detector built for a batch of that many. ``--save-json``
writes one JSON line per frame (with its camera), ``--save-dir`` annotated images under their own names or one
annotated video per video source (a folder per camera when there are several); an unreadable image is reported
and skipped, and a run where every input failed exits 2. ``--config`` runs the unattended watch (alarms,
telemetry, systemd notifications) with the file's settings, flags overriding it; a bad config exits 78.
SIGINT, SIGTERM and SIGHUP stop any run cleanly (exit 0, outputs flushed), also while the model is loading.
"""

import argparse
import copy
import os
import sys
import threading
from typing import Any, Callable, Dict, List, Optional

from ..app.pipeline import (
    Camera,
    StopSignals,
    add_live_arguments,
    camera_name,
    camera_output_uri,
    open_outputs,
    run_cameras,
    sources_from_args,
)
from ..errors import EXIT_BAD_CONFIG, JetsonDetectError
from ..video.sinks import FrameResult, JsonlSink, Sink
from .build import add_tensorrt_arguments, tensorrt_options
from .options import add_model_arguments, c3_fusion_choice


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", action="append", default=None,
                        help="image, image folder, glob, video file, csi://0, /dev/video0, rtsp://...; repeatable: "
                             "each is a camera (cam0, cam1, ...) of one batched loop")
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


def create_detector_from_args(args: argparse.Namespace, batch: int = 1) -> Any:
    """The detector the model options ask for (shared by run, eval and export-onnx); ``batch``: frames per
    inference, one per camera (TensorRT engines are built and cached per batch size)."""
    from ..backends.detector import create_detector
    if not args.weights:
        raise JetsonDetectError("no weights: pass --weights FILE.wts|FILE.pt (e.g. weights/fire_smoke_yolov5n.pt)")
    trt_options = tensorrt_options(args)
    cache_dir = getattr(args, "engine_cache", None)
    if cache_dir and not trt_options.get("engine_path") and not args.weights.endswith(".engine"):
        stem = os.path.splitext(os.path.basename(args.weights))[0]
        try:
            os.makedirs(cache_dir, exist_ok=True)
        except OSError as exc:
            raise JetsonDetectError("--engine-cache {}: cannot create it ({}); choose a writable folder".format(
                cache_dir, exc.strerror or exc)) from None
        trt_options["engine_path"] = os.path.join(cache_dir, "{}_{}_{}_b{}.engine".format(
            stem, args.precision, args.img_size, batch))
    return create_detector(args.weights, backend=args.backend, img_size=args.img_size, conf_thres=args.conf,
                           iou_thres=args.iou, max_det=args.max_det, cfg=args.cfg, batch=batch,
                           class_agnostic=args.class_agnostic, c3_fusion=c3_fusion_choice(args), log=_log,
                           **trt_options)


def load_detector(create: Callable[[], Any], signals: StopSignals) -> Optional[Any]:
    """Build the detector on a helper thread while this (main) thread watches for stop signals: a TensorRT build
    takes minutes on a Nano, and SIGTERM must end it as promptly as it ends the loop. None when stopped."""
    outcome: Dict[str, Any] = {}

    def build() -> None:
        try:
            outcome["detector"] = create()
        except BaseException as exc:  # re-raised on the main thread
            outcome["error"] = exc

    thread = threading.Thread(target=build, name="load-model", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
        if signals.received is not None:
            # Nothing was written yet; the builder writes its engine atomically, so leaving it is safe.
            _log("{} received while loading the model; stopping".format(signals.name))
            return None
    if "error" in outcome:
        raise outcome["error"]
    return outcome["detector"]


class FrameLogSink(Sink):
    """One line per frame of a file camera (what was found, and the infer stage's time): ``--quiet`` drops it."""

    def __init__(self, label: str = "") -> None:
        self.name = "log"
        self.label = label

    def write(self, result: FrameResult) -> None:
        stage_ms: Any = result.stats.get("stage_ms") or {}
        infer_ms = stage_ms.get("infer")
        _log("{}{} {}: {}{}".format(self.label, os.path.basename(result.source_name), result.position,
                                    _summary(result.detections, list(result.names)),
                                    " ({:.1f} ms)".format(infer_ms) if infer_ms is not None else ""))


def video_fps(path: str) -> float:
    """A video file's frame rate (30 when it does not say), for the annotated copy of it."""
    import cv2
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return float(fps) if fps and 1.0 <= fps <= 240.0 else 30.0


def save_dir_sink(folder: str, source: Any) -> Sink:
    """``--save-dir`` for one camera: annotated images under their own names for image files, one
    ``<video name>.mp4`` for a video file, numbered frames for a live source."""
    from ..video.sinks import ImageFolderSink, VideoFileSink, annotated_video_name
    from ..video.sources import ImageFilesSource
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise JetsonDetectError("--save-dir {}: cannot create it ({})".format(folder, exc.strerror)) from None
    if source.live or isinstance(source, ImageFilesSource):
        return ImageFolderSink(folder)
    return VideoFileSink(os.path.join(folder, annotated_video_name(source.name)), video_fps(source.name))


def camera_save_dir(save_dir: str, name: str, cameras: int) -> str:
    """``--save-dir`` itself for one camera, its sub-folder per camera when there are several."""
    return os.path.join(save_dir, name) if cameras > 1 else save_dir


def check_run_outputs(args: argparse.Namespace, uris: List[str], sources: List[Any]) -> None:
    """Refuse, before the model is built, any output that would overwrite an input or another output (every
    camera's --save-dir folder and --output files included)."""
    from ..output_paths import check_outputs
    from ..video.sinks import check_output_uris, planned_outputs
    check_output_uris(list(getattr(args, "outputs", []) or []), getattr(args, "http_token", None))
    inputs = [("--weights", args.weights), ("--cfg", args.cfg)]
    files = [("--save-json", args.save_json), ("--engine", getattr(args, "engine", None))]
    folders = []
    outputs = list(getattr(args, "outputs", []) or [])
    shared = [("--output", uri) for uri in outputs if len(sources) == 1 or camera_output_uri(uri, "x") is None]
    for index, (uri, source) in enumerate(zip(uris, sources)):
        name = camera_name(index)
        inputs += [("--source", uri)] + [("--source", path) for path in getattr(source, "paths", ())]
        own = [("--save-dir", camera_save_dir(args.save_dir, name, len(sources)) if args.save_dir else None)]
        if len(sources) > 1:
            own += [("--output", camera_output_uri(u, name)) for u in outputs if camera_output_uri(u, name)]
        planned = planned_outputs([(what, str(path)) for what, path in own if path] + (shared if index == 0 else []),
                                  source)
        files += planned[0]
        folders += planned[1]
    check_outputs(inputs, files, folders)


def cameras_from_args(args: argparse.Namespace, sources: List[Any]) -> List[Camera]:
    """One camera per source, with its own --save-dir sink (a sub-folder per camera when there are several)
    and, for files, the per-frame log line."""
    cameras: List[Camera] = []
    try:
        for index, source in enumerate(sources):
            name = camera_name(index)
            camera = Camera(name, source, getattr(args, "detect_fps", None))
            cameras.append(camera)
            if args.save_dir:
                camera.sinks.append(save_dir_sink(camera_save_dir(args.save_dir, name, len(sources)), source))
            if not args.quiet and not source.live:
                camera.sinks.append(FrameLogSink(name + " " if len(sources) > 1 else ""))
        return cameras
    except BaseException:
        for camera in cameras:
            for sink in camera.sinks:
                sink.close()
        raise


def shared_sinks(args: argparse.Namespace, cameras: List[Camera]) -> List[Sink]:
    """``--output`` URIs (a video file or folder: one per camera when there are several) and the ``--save-json``
    log; returns the sinks every camera writes to."""
    sinks = open_outputs(list(getattr(args, "outputs", []) or []), cameras,
                         http_token=getattr(args, "http_token", None), note=_log)
    if args.save_json:
        try:
            sinks.append(JsonlSink(args.save_json))
        except BaseException:
            for sink in sinks:
                sink.close()
            raise
    return sinks


def config_from_args(args: argparse.Namespace) -> Dict[str, Any]:
    """``--config`` with the command line's overrides; several --source/--camera replace the file's inputs with
    cameras cam0, cam1, ... Any problem is a bad-config error (exit 78)."""
    from ..app.config import apply_overrides, load_config, parser_defaults, validate_config
    from ..cli import build_parser
    try:
        config = load_config(args.config)
        given = copy.copy(args)
        uris = sources_from_args(args) if (args.source or args.camera) else []
        given.source = args.source[0] if len(uris) == 1 and args.source else None
        given.camera = args.camera[0] if len(uris) == 1 and args.camera else None
        if uris:
            config["cameras"] = []
        if len(uris) > 1:
            config["source"] = config["camera"] = None
            config["cameras"] = [{"name": camera_name(i), "source": uri} for i, uri in enumerate(uris)]
            config = validate_config(config, "command line (--source/--camera)")
        if getattr(args, "detect_fps", None) is not None:
            config["detect_fps"] = args.detect_fps
        return apply_overrides(config, given, defaults=parser_defaults(build_parser("run")))
    except JetsonDetectError as exc:
        raise JetsonDetectError(str(exc), exit_code=EXIT_BAD_CONFIG) from None


def run_config(args: argparse.Namespace, signals: StopSignals) -> int:
    """``--config``: the unattended watch, the file's settings with the command line's overrides."""
    from ..app.service import run_watch, watch_cameras
    from ..video.sinks import check_output_uris
    from ..video.sources import open_source
    config = config_from_args(args)
    model, detection = config["model"], config["detection"]
    args.weights, args.cfg, args.backend = model["weights"], model["cfg"], model["backend"]
    args.img_size, args.precision, args.engine_cache = model["img_size"], model["precision"], model["engine_cache"]
    args.conf, args.iou, args.max_det = detection["conf_thres"], detection["iou_thres"], detection["max_det"]
    cameras = watch_cameras(config)
    for camera in cameras:  # a missing file or camera is reported now, not after minutes of engine building
        open_source(camera["source"])
    check_output_uris(list(config["outputs"]) + [uri for camera in cameras for uri in camera["outputs"]],
                      config["http_token"])
    detector = load_detector(lambda: create_detector_from_args(args, batch=len(cameras)), signals)
    if detector is not None:
        run_watch(config, detector, note=_log, signals=signals)
    return 0


def check_detect_fps(value: Optional[float]) -> None:
    """--detect-fps: the same range as the config's detect_fps (NaN fails the comparison too)."""
    if value is not None and not 0.1 <= value <= 120:
        raise JetsonDetectError("--detect-fps {}: must be from 0.1 to 120 detections per second".format(value))


def main(args: argparse.Namespace) -> int:
    from ..video.sources import open_source
    check_detect_fps(getattr(args, "detect_fps", None))
    signals = StopSignals().install()
    try:
        if args.config:
            return run_config(args, signals)
        # Resolve every source and check the outputs before the model is built: a missing file or camera, or an
        # output that would overwrite an input, is reported at once, not after minutes of engine building.
        uris = sources_from_args(args)
        sources = [open_source(uri) for uri in uris]
        check_run_outputs(args, uris, sources)
        detector = load_detector(lambda: create_detector_from_args(args, batch=len(sources)), signals)
        if detector is None:
            return 0
        cameras = cameras_from_args(args, sources)
        try:
            sinks = shared_sinks(args, cameras)
        except BaseException:
            for camera in cameras:
                for sink in camera.sinks:
                    sink.close()
            raise
        summary = run_cameras(detector, cameras, sinks, note=_log, signals=signals)
        _log("done: {} frame(s){}".format(summary["frames"],
                                          ", detections in " + args.save_json if args.save_json else ""))
        return 0
    finally:
        signals.restore()
