#!/usr/bin/env python3
"""Convert a YOLOv5 ``.pt`` checkpoint to a tensorrtx ``.wts`` file, without PyTorch (same as ``convert``).

    python scripts/gen_wts.py -w yolov5n.pt -o yolov5n.wts

The options follow tensorrtx's own gen_wts.py; the work is ``jetson_detect.commands.convert.convert_checkpoint``,
which reads the checkpoint with the project's restricted unpickler.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jetson_detect.commands.convert import convert_checkpoint  # noqa: E402
from jetson_detect.errors import JetsonDetectError  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-w", "--weights", required=True, help="input .pt checkpoint")
    parser.add_argument("-o", "--output", help="output .wts (default: next to the checkpoint)")
    args = parser.parse_args()
    out = args.output or os.path.splitext(args.weights)[0] + ".wts"
    try:
        count = convert_checkpoint(args.weights, out)
    except JetsonDetectError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 2
    print("wrote {} ({} tensors)".format(out, count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
