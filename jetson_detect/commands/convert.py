"""``convert``: YOLOv5 ``.pt`` checkpoint → tensorrtx ``.wts``, read safely without PyTorch.

The output has tensorrtx's exact layout: the state dict in PyTorch order, BatchNorm statistics unfolded, and
``model.24.anchor_grid`` (anchors in pixels) and ``model.24.strides`` after the Detect anchors.
"""

import argparse
import os
import sys

from ..errors import JetsonDetectError
from ..output_paths import check_outputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="YOLOv5 .pt checkpoint (v6.0+)")
    parser.add_argument("-o", "--out", help="output .wts (default: next to the checkpoint)")


def convert_checkpoint(checkpoint_path: str, out_path: str) -> int:
    """Write the ``.wts`` of a checkpoint; returns the tensor count."""
    from ..model.checkpoint import read_checkpoint
    from ..model.spec import resolve_spec
    from ..model.weights import write_wts
    ckpt = read_checkpoint(checkpoint_path)
    weights = ckpt.wts_weights()
    resolve_spec(weights, ckpt.yaml or None, cfg_where=checkpoint_path + " (model.yaml)",
                 weights_where=checkpoint_path)  # refuse to write weights the builder could not use
    write_wts(weights, out_path)
    return len(weights)


def main(args: argparse.Namespace) -> int:
    if not args.checkpoint.endswith(".pt"):
        raise JetsonDetectError("{}: expected a .pt checkpoint".format(args.checkpoint))
    out = args.out or os.path.splitext(args.checkpoint)[0] + ".wts"
    check_outputs([("checkpoint", args.checkpoint)], [("-o/--out", out)])
    count = convert_checkpoint(args.checkpoint, out)
    print("wrote {} ({} tensors)".format(out, count), file=sys.stderr)
    return 0
