#!/usr/bin/env python3
"""Save the raw Detect-head tensors the CPU backend computes for the reference inputs (for the GPU kernel check).

    python scripts/dump_heads.py --out .carry/plugin     # writes bus_heads.npz, zidane_heads.npz (+ the references)
    python scripts/dump_heads.py --p6 --out .carry/plugin    # the four-level yolov5n6 test model's heads (P3..P6)

The heads come from the same layer-by-layer network TensorRT builds, run by ONNX Runtime on the exact reference
input tensors of ``../shared/reference/yolov5n`` (or, with ``--p6``, of the P6 test model in
``tests/data/models_v50_p6``); ``scripts/check_plugin_kernels.py --heads-dir`` / ``--p6-heads-dir`` then feeds them to
the CUDA kernels.
"""

import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from jetson_detect.backends.detector import OnnxRuntimeDetector, load_model  # noqa: E402
from jetson_detect.model.blocks import BuildOptions  # noqa: E402
from jetson_detect.model.network import HEAD_NAMES  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared")
P6_DATA = os.path.join(REPO, "tests", "data", "models_v50_p6")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=os.path.join(SHARED, "weights", "yolov5n.wts"))
    parser.add_argument("--reference", default=os.path.join(SHARED, "reference", "yolov5n"))
    parser.add_argument("--names", nargs="+", default=["bus", "zidane"], help="reference stems (<name>.npz/.json)")
    parser.add_argument("--p6", action="store_true",
                        help="the P6 test model instead: --weights/--reference/--names for yolov5n6_zidane_640")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.p6:
        args.weights = os.path.join(P6_DATA, "yolov5n6.pt")
        args.reference, args.names = P6_DATA, ["yolov5n6_zidane_640"]
    spec, weights = load_model(args.weights)
    heads = HEAD_NAMES[:len(spec.strides)]
    os.makedirs(args.out, exist_ok=True)
    for name in args.names:
        ref = np.load(os.path.join(args.reference, name + ".npz"))
        # the shared references hold the float input, the generated ones the uint8 letterbox (input = it / 255)
        x = ref["input"] if ref["input"].dtype == np.float32 else ref["input"].astype(np.float32) / 255.0
        detector = OnnxRuntimeDetector(spec, weights, BuildOptions(input_h=x.shape[2], input_w=x.shape[3],
                                                                   mark_heads=True))
        out = detector.run(x)
        np.savez(os.path.join(args.out, name + "_heads.npz"), **{key: out[key] for key in heads})
        for suffix in (".npz", ".json"):
            shutil.copy(os.path.join(args.reference, name + suffix), args.out)
        print("{}: heads {}".format(name, [out[key].shape for key in heads]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
