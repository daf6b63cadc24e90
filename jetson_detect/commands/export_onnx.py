"""``export-onnx``: the network exactly as the CPU backend builds it (same builder as TensorRT), as ONNX.

The graph ends with the decoded candidates ``decoded`` (B, N, 5+nc); the plugin's NMS runs on the host in the
CPU backend and is not part of the file.
"""

import argparse
import sys

from ..atomic_write import atomic_write_bytes
from ..errors import JetsonDetectError
from ..output_paths import check_outputs
from .options import add_batch_argument, add_model_arguments, c3_fusion_choice


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_batch_argument(parser)
    parser.add_argument("-o", "--out", required=True, help="output .onnx file")


def main(args: argparse.Namespace) -> int:
    from ..backends import onnx_network, trt_compat
    from ..model.blocks import BuildOptions
    from ..model.loader import load_model
    from ..model.network import build_network
    if not args.weights:
        raise JetsonDetectError("no weights: pass --weights FILE.wts|FILE.pt")
    check_outputs([("--weights", args.weights), ("--cfg", args.cfg)], [("-o/--out", args.out)])
    spec, weights = load_model(args.weights, args.cfg)
    network = onnx_network.OnnxNetwork()
    build_network(spec, weights, network, onnx_network,
                  BuildOptions(input_h=args.img_size, input_w=args.img_size, batch=args.batch,
                               c3_fusion=c3_fusion_choice(args) is True, conf_thres=args.conf, iou_thres=args.iou,
                               max_det=args.max_det, class_agnostic=args.class_agnostic), compat=trt_compat)
    model, _ = network.to_onnx()
    atomic_write_bytes(args.out, model.SerializeToString(), "the ONNX file")
    print("wrote {} ({} nodes, input 'images' {}x3x{}x{}, output 'decoded')".format(
        args.out, len(model.graph.node), args.batch, args.img_size, args.img_size), file=sys.stderr)
    return 0
