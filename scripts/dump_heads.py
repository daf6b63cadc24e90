#!/usr/bin/env python3
"""Save the raw Detect-head tensors the CPU backend computes for the reference inputs (for the GPU kernel check).

    python scripts/dump_heads.py --out .carry/plugin     # writes bus_heads.npz, zidane_heads.npz (+ the references)

The heads come from the same layer-by-layer network TensorRT builds, run by ONNX Runtime on the exact reference
input tensors of ``../shared/reference/yolov5n``; ``scripts/check_plugin_kernels.py --heads-dir`` then feeds them to
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

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=os.path.join(SHARED, "weights", "yolov5n.wts"))
    parser.add_argument("--reference", default=os.path.join(SHARED, "reference", "yolov5n"))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    spec, weights = load_model(args.weights)
    detector = OnnxRuntimeDetector(spec, weights, BuildOptions(mark_heads=True))
    os.makedirs(args.out, exist_ok=True)
    for name in ("bus", "zidane"):
        ref = np.load(os.path.join(args.reference, name + ".npz"))
        out = detector.run(ref["input"])
        np.savez(os.path.join(args.out, name + "_heads.npz"), **{key: out[key] for key in HEAD_NAMES})
        for suffix in (".npz", ".json"):
            shutil.copy(os.path.join(args.reference, name + suffix), args.out)
        print("{}: heads {}".format(name, [out[key].shape for key in HEAD_NAMES]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
