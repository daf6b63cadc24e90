"""``export-onnx``: the network exactly as the CPU backend builds it (same builder as TensorRT), as ONNX.

The graph ends with the decoded candidates ``decoded`` (B, N, 5+nc); the plugin's NMS runs on the host in the
CPU backend and is not part of the file. ``--precision int8`` writes the QDQ graph the CPU backend runs (our
calibration, ``--calib-dir``/``--calib-cache``).
"""

import argparse
import sys
from typing import Any

from ..atomic_write import atomic_write_bytes
from ..errors import JetsonDetectError
from ..output_paths import check_outputs
from .options import add_batch_argument, add_calibration_arguments, add_model_arguments, c3_fusion_choice


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_batch_argument(parser)
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                        help="int8: the QDQ graph with our calibration scales")
    add_calibration_arguments(parser)
    parser.add_argument("-o", "--out", required=True, help="output .onnx file")


def main(args: argparse.Namespace) -> int:
    from ..backends import onnx_network, trt_compat
    from ..model.blocks import BuildOptions
    from ..model.loader import load_model
    from ..model.network import build_network
    if not args.weights:
        raise JetsonDetectError("no weights: pass --weights FILE.wts|FILE.pt")
    check_outputs([("--weights", args.weights), ("--cfg", args.cfg), ("--calib-dir", args.calib_dir)],
                  [("-o/--out", args.out), ("--calib-cache", args.calib_cache)])
    spec, weights = load_model(args.weights, args.cfg)
    options = BuildOptions(input_h=args.img_size, input_w=args.img_size, batch=args.batch,
                           c3_fusion=c3_fusion_choice(args) is True, conf_thres=args.conf, iou_thres=args.iou,
                           max_det=args.max_det, class_agnostic=args.class_agnostic)
    network = onnx_network.OnnxNetwork()
    target: Any = network
    if args.precision == "int8":
        from ..backends.int8_calibration import DEFAULT_CALIBRATION_IMAGES, int8_calibration
        from ..backends.qdq_network import QdqNetwork, QuantizationOptions
        quantization = QuantizationOptions()
        calibration = int8_calibration(spec, weights, args.weights, options, quantization, args.calib_dir,
                                       args.calib_cache, args.calib_method,
                                       args.calib_images or DEFAULT_CALIBRATION_IMAGES,
                                       lambda message: print(message, file=sys.stderr))
        target = QdqNetwork(network, onnx_network, scales=calibration.scales, options=quantization,
                            affine=calibration.affine)
    build_network(spec, weights, target, onnx_network, options, compat=trt_compat)
    model, _ = network.to_onnx()
    atomic_write_bytes(args.out, model.SerializeToString(), "the ONNX file")
    print("wrote {} ({} nodes, {}, input 'images' {}x3x{}x{}, output 'decoded')".format(
        args.out, len(model.graph.node), args.precision.upper(), args.batch, args.img_size, args.img_size),
        file=sys.stderr)
    return 0
