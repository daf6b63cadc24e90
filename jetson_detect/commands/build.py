"""``python -m jetson_detect build``: build a TensorRT engine (plus its metadata file) from YOLOv5 weights.

Build on the machine that will run the engine: engines are tied to the TensorRT version and the GPU model.
The engine is skipped when an up-to-date one already exists at ``--out`` (``--force`` rebuilds anyway).
``add_tensorrt_arguments`` and ``tensorrt_options`` give the run command the same TensorRT options.
"""

import argparse
from typing import Any, Dict

from ..app.config import RecordGiven
from ..backends.cuda_memory import CUDA_APIS, open_cuda_memory
from ..backends.engine_cache import metadata_path
from ..backends.tensorrt_builder import (
    DEFAULT_WORKSPACE_MIB,
    build_and_save,
    check_writable,
    default_engine_path,
    ensure_engine,
    load_model,
    require_tensorrt,
    settings_from_options,
)
from ..backends.trt_compat import INT8_MODES
from ..errors import JetsonDetectError
from ..model.blocks import BuildOptions
from ..option_ranges import check_detection_options
from ..output_paths import check_outputs
from .options import add_batch_argument, add_calibration_arguments, add_model_arguments, c3_fusion_choice, ranged


def add_tensorrt_arguments(parser: argparse.ArgumentParser, for_run: bool = True) -> None:
    """TensorRT options shared by ``build`` and ``run`` (``--engine``, ``--streams``, ``--cpu-preprocess``: ``run``
    only)."""
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16", action=RecordGiven,
                        help="fp16 on the Jetson Nano; int8 needs compute capability 6.1+ and TensorRT < 11")
    parser.add_argument("--workspace-mib", type=ranged("--workspace-mib"), default=DEFAULT_WORKSPACE_MIB,
                        help="builder scratch memory")
    parser.add_argument("--timing-cache", default=None,
                        help="timing cache file, loaded and saved: rebuilds on the same machine take far less time")
    parser.add_argument("--cuda-api", choices=CUDA_APIS, default="auto", help="pycuda (Jetson) or cuda-python (x86)")
    add_calibration_arguments(parser)
    parser.add_argument("--int8-mode", choices=INT8_MODES, default="auto",
                        help="int8 on TensorRT: explicit Q/DQ with our calibration (auto on 10/11) or TensorRT's "
                             "implicit calibrator (auto on 8.x)")
    if for_run:
        parser.add_argument("--engine", default=None,
                            help="engine path for --weights W.wts|.pt (default: next to the weights)")
        parser.add_argument("--streams", type=int, choices=(1, 2), default=2,
                            help="2: copy the next frame while the current one computes; 1: no overlap")
        parser.add_argument("--cpu-preprocess", action="store_true",
                            help="letterbox on the CPU instead of the GPU kernel (TensorRT backend)")


def tensorrt_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The keyword arguments ``create_tensorrt_detector`` takes, from ``add_tensorrt_arguments`` options."""
    return {"precision": args.precision, "engine_path": args.engine, "streams": args.streams,
            "workspace_mib": args.workspace_mib, "timing_cache": args.timing_cache, "cuda_api": args.cuda_api,
            "cpu_preprocess": args.cpu_preprocess, "calib_dir": args.calib_dir, "calib_cache": args.calib_cache,
            "calib_images": args.calib_images, "calib_method": args.calib_method, "int8_mode": args.int8_mode}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``build`` options."""
    add_model_arguments(parser)
    add_batch_argument(parser)
    add_tensorrt_arguments(parser, for_run=False)
    parser.add_argument("--out", default=None,
                        help="engine path (default: next to the weights, named by precision, size and batch)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the engine at --out is up to date")
    parser.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")


def main(args: argparse.Namespace) -> int:
    """Build (or confirm) the engine; 0 on success. User errors raise ``JetsonDetectError``."""
    if not args.weights:
        raise JetsonDetectError("no weights: pass --weights FILE.wts|FILE.pt")
    # Parsing checked the flags already; this covers a namespace built in Python, as for run's create_detector.
    check_detection_options(args.img_size, args.conf, args.iou, args.max_det, args.batch)
    options = BuildOptions(input_h=args.img_size, input_w=args.img_size, batch=args.batch,
                           c3_fusion=c3_fusion_choice(args) is not False, conf_thres=args.conf, iou_thres=args.iou,
                           max_det=args.max_det, class_agnostic=args.class_agnostic)
    settings = settings_from_options(options, precision=args.precision, workspace_mib=args.workspace_mib,
                                     timing_cache=args.timing_cache, calib_dir=args.calib_dir,
                                     calib_cache=args.calib_cache, calib_images=args.calib_images,
                                     calib_method=args.calib_method, int8_mode=args.int8_mode,
                                     verbose=args.verbose)
    out = args.out or default_engine_path(args.weights, settings)
    check_outputs([("--weights", args.weights), ("--cfg", args.cfg), ("--calib-dir", args.calib_dir)],
                  [("--out", out), ("the engine metadata", metadata_path(out)), ("--timing-cache", args.timing_cache),
                   ("--calib-cache", args.calib_cache)])
    check_writable(out, "--out")
    require_tensorrt()
    cuda = open_cuda_memory(args.cuda_api)
    if args.force:
        spec, weights = load_model(args.weights, args.cfg)
        build_and_save(spec, weights, args.weights, out, settings, cuda)
    else:
        ensure_engine(args.weights, settings, cuda, args.cfg, out)
    return 0
