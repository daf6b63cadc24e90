#!/usr/bin/env python3
"""CPU-backend speed and memory: median ms per frame for the network alone and end to end, and peak RSS.

The network is built by the same layer-by-layer builder TensorRT uses, emitted through the CPU twin and run by
ONNX Runtime. Both C3 variants (horizontal fusion on and off) are timed in the same run, interleaved, so their ratio
is fair on a noisy machine.

    python scripts/bench_cpu.py --weights ../shared/weights/yolov5n.wts --image ../shared/images/bus.jpg
"""

import argparse
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402

from jetson_detect.backends.detector import OnnxRuntimeDetector, load_model  # noqa: E402
from jetson_detect.model.blocks import BuildOptions  # noqa: E402


def median_ms(fn, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--img-size", type=int, default=640)
    parser.add_argument("--runs", type=int, default=50, help="timed runs per variant and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best round's median counts")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    args = parser.parse_args()

    spec, weights = load_model(args.weights)
    image = cv2.imread(args.image)
    variants = {}
    for name, fusion in (("fused C3", True), ("unfused C3", False)):
        start = time.perf_counter()
        detector = OnnxRuntimeDetector(spec, weights, BuildOptions(input_h=args.img_size, input_w=args.img_size,
                                                                   c3_fusion=fusion), threads=args.threads)
        build_s = time.perf_counter() - start
        batch, _ = detector.preprocess(image)
        for _ in range(5):
            detector.engine.run_graph(batch)
            detector.detect(image)
        variants[name] = (detector, batch, build_s)

    results = {name: {"network": [], "end_to_end": []} for name in variants}
    for _ in range(args.rounds):
        for name, (detector, batch, _) in variants.items():
            results[name]["network"].append(median_ms(lambda: detector.engine.run_graph(batch), args.runs))
            results[name]["end_to_end"].append(median_ms(lambda: detector.detect(image), args.runs))

    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("model {} ({} classes), input {}x{}, image {} {}x{}, ONNX Runtime threads {}, cores {}".format(
        os.path.basename(args.weights), spec.nc, args.img_size, args.img_size, os.path.basename(args.image),
        image.shape[1], image.shape[0], args.threads or os.cpu_count(), os.cpu_count()))
    print("| variant | build s | network ms (median, best round) | end to end ms (median, best round) |")
    print("|---|---|---|---|")
    for name, (_, _, build_s) in variants.items():
        print("| {} | {:.2f} | {:.1f} | {:.1f} |".format(name, build_s, min(results[name]["network"]),
                                                       min(results[name]["end_to_end"])))
    fused, unfused = min(results["fused C3"]["network"]), min(results["unfused C3"]["network"])
    print("fused/unfused network time ratio: {:.3f}".format(fused / unfused))
    print("peak RSS: {:.0f} MiB (both variants loaded)".format(peak_rss_mib))


if __name__ == "__main__":
    main()
