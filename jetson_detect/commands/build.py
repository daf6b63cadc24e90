"""``python -m jetson_detect build``: build a TensorRT engine (plus its metadata file) from YOLOv5 weights.

Build on the machine that will run the engine: engines are tied to the TensorRT version and the GPU model.
The engine is skipped when an up-to-date one already exists at ``--out`` (``--force`` rebuilds anyway).
"""

import argparse

from ..backends.calibrator import DEFAULT_CALIBRATION_IMAGES
from ..backends.cuda_memory import CUDA_APIS, open_cuda_memory
from ..backends.tensorrt_builder import (DEFAULT_WORKSPACE_MIB, EngineSettings, build_and_save, check_writable,
                                         default_engine_path, ensure_engine, load_model, require_tensorrt)
from ..errors import JetsonDetectError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``build`` options."""
    parser.add_argument("--weights", required=True, help="YOLOv5 weights: tensorrtx .wts or .pt")
    parser.add_argument("--cfg", default=None, help="model yaml (default: inferred from the weights)")
    parser.add_argument("--img-size", type=int, default=640, help="square input size, a multiple of 32")
    parser.add_argument("--batch", type=int, default=1, help="frames per inference (engine batch)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16",
                        help="fp16 on the Jetson Nano; int8 needs compute capability 6.1+ and TensorRT < 11")
    parser.add_argument("--calib-dir", default=None, help="int8: folder of representative images")
    parser.add_argument("--calib-cache", default=None, help="int8: calibration cache file (read if present, written)")
    parser.add_argument("--calib-images", type=int, default=DEFAULT_CALIBRATION_IMAGES,
                        help="int8: images used from --calib-dir")
    parser.add_argument("--workspace-mib", type=int, default=DEFAULT_WORKSPACE_MIB, help="builder scratch memory")
    parser.add_argument("--timing-cache", default=None,
                        help="timing cache file, loaded and saved: rebuilds on the same machine take seconds")
    parser.add_argument("--conf-thres", type=float, default=0.25, help="confidence threshold built into the engine")
    parser.add_argument("--iou-thres", type=float, default=0.45, help="NMS IoU threshold built into the engine")
    parser.add_argument("--max-det", type=int, default=300, help="detections per image built into the engine")
    parser.add_argument("--agnostic-nms", action="store_true", help="NMS across classes")
    parser.add_argument("--cuda-api", choices=CUDA_APIS, default="auto", help="pycuda (Jetson) or cuda-python")
    parser.add_argument("--out", default=None,
                        help="engine path (default: next to the weights, named by precision, size and batch)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the engine at --out is up to date")
    parser.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")


def main(args: argparse.Namespace) -> int:
    """Build (or confirm) the engine; 0 on success. User errors raise ``JetsonDetectError``."""
    if args.img_size < 32 or args.img_size % 32:
        raise JetsonDetectError("--img-size {}: must be a positive multiple of 32".format(args.img_size))
    if args.batch < 1:
        raise JetsonDetectError("--batch {}: must be at least 1".format(args.batch))
    settings = EngineSettings(precision=args.precision, img_size=args.img_size, batch=args.batch,
                              conf_thres=args.conf_thres, iou_thres=args.iou_thres, max_det=args.max_det,
                              class_agnostic=args.agnostic_nms, workspace_mib=args.workspace_mib,
                              timing_cache=args.timing_cache, calib_dir=args.calib_dir, calib_cache=args.calib_cache,
                              calib_images=args.calib_images, verbose=args.verbose)
    out = args.out or default_engine_path(args.weights, settings)
    check_writable(out, "--out")
    require_tensorrt()
    cuda = open_cuda_memory(args.cuda_api)
    if args.force:
        spec, weights = load_model(args.weights, args.cfg)
        build_and_save(spec, weights, args.weights, out, settings, cuda)
    else:
        ensure_engine(args.weights, settings, cuda, args.cfg, out)
    return 0
