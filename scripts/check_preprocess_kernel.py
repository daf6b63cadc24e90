"""Check the GPU letterbox kernel against the CPU letterbox (cv2.resize) on real images; needs CuPy and a GPU.

    python scripts/check_preprocess_kernel.py --images ../shared/data/coco64/images ../shared/data/fire_smoke/images \
        --sizes 320 640 --json out.json

Compiles jetson_detect/plugin/kernels/letterbox_preprocess.cu with CuPy's RawModule (NVRTC), runs it on every image
(and a few synthetic odd sizes) and requires max |GPU - CPU| <= 1/255 for every one. Exit code 0 when all pass.
"""

import argparse
import glob
import json
import os
import sys
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from jetson_detect.math.letterbox import PAD_VALUE, letterbox, letterbox_geometry, to_network_input  # noqa: E402

KERNEL = os.path.join(ROOT, "jetson_detect", "plugin", "kernels", "letterbox_preprocess.cu")
TOLERANCE = 1.0 / 255.0
SYNTHETIC_SHAPES = ((1, 1), (7, 13), (333, 517), (1080, 1920), (1920, 1080), (640, 640), (479, 641))


def cpu_preprocess(image: np.ndarray, size: int) -> np.ndarray:
    """The reference: the CPU letterbox with cv2.resize, as the product's CPU path does it."""
    return to_network_input(letterbox(image, size, cv2.resize)[0])[0]


def gpu_preprocess(cp, kernel, image: np.ndarray, size: int) -> np.ndarray:
    """Run the kernel on one image and copy the (3, size, size) result back."""
    geo = letterbox_geometry(image.shape[0], image.shape[1], size)
    src = cp.asarray(np.ascontiguousarray(image))
    dst = cp.empty((3, size, size), dtype=cp.float32)
    block = (16, 16, 1)
    grid = ((size + 15) // 16, (size + 15) // 16, 1)
    kernel(grid, block, (src, np.int32(image.shape[0]), np.int32(image.shape[1]), np.int32(image.strides[0]), dst,
                         np.int32(size), np.int32(geo.new_w), np.int32(geo.new_h), np.int32(geo.left),
                         np.int32(geo.top), np.float32(PAD_VALUE)))
    return cp.asnumpy(dst)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="*", default=[], help="folders of images to check")
    parser.add_argument("--sizes", nargs="*", type=int, default=[320, 640])
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()

    import cupy as cp

    with open(KERNEL) as f:
        module = cp.RawModule(code=f.read(), options=("--std=c++11",))
    kernel = module.get_function("letterbox_preprocess")

    rng = np.random.default_rng(0)
    cases = []
    for folder in args.images:
        for path in sorted(glob.glob(os.path.join(folder, "*.jpg")) + glob.glob(os.path.join(folder, "*.png"))):
            cases.append((os.path.basename(path), cv2.imread(path)))
    for shape in SYNTHETIC_SHAPES:
        cases.append(("random_{}x{}".format(shape[1], shape[0]), rng.integers(0, 256, shape + (3,), dtype=np.uint8)))

    worst = 0.0
    failures = []
    gpu_ms, cpu_ms = [], []
    for size in args.sizes:
        for name, image in cases:
            start = time.perf_counter()
            expected = cpu_preprocess(image, size)
            cpu_ms.append((time.perf_counter() - start) * 1000.0)
            start = time.perf_counter()
            got = gpu_preprocess(cp, kernel, image, size)
            gpu_ms.append((time.perf_counter() - start) * 1000.0)
            diff = float(np.abs(got - expected).max())
            worst = max(worst, diff)
            if got.shape != expected.shape or diff > TOLERANCE + 1e-6:
                failures.append({"image": name, "size": size, "max_abs_diff": diff})

    result = {"cases": len(cases) * len(args.sizes), "worst_max_abs_diff": worst, "worst_in_grey_levels": worst * 255,
              "tolerance": TOLERANCE, "failures": failures, "device": cp.cuda.runtime.getDeviceProperties(0)["name"]
              .decode(), "median_cpu_ms": float(np.median(cpu_ms)),
              "median_gpu_ms_with_copies": float(np.median(gpu_ms[1:] or gpu_ms))}
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
