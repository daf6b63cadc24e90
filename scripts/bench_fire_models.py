#!/usr/bin/env python3
"""The fire/smoke model family side by side: accuracy, false alarms, size and CPU speed, in one run.

For each ``WEIGHTS:SIZE`` given with ``--model``:
- mAP50 and mAP50-95 on ``../shared/data/fire_smoke`` (never trained on), exactly as ``python -m jetson_detect
  eval`` scores it (CPU backend, conf 0.001, IoU 0.6, max 300);
- false alarms on ``../shared/data/coco64`` (64 COCO images, none with fire or smoke), with the detection settings
  of ``configs/fire_smoke.yaml``: the share of images on which any box >= its ``detection.conf_thres`` appears, and
  the share on which its alarm rules would raise when each image is one frame and N-of-M is relaxed to 1-of-1 (a
  rule raises when one of its class's boxes has the rule's ``min_confidence``, ``min_area_px`` and ROI);
- parameters (conv weights + BatchNorm affine + Detect weights and biases, as the training code counts them),
  GFLOPs of the network at that input (2 x multiply-adds of every convolution, as the network is built), and the
  median CPU network time (ONNX Runtime, ``--threads``, the letterboxed bus.jpg) over ``--runs`` runs.

    python scripts/bench_fire_models.py --model weights/fire_smoke_yolov5n.pt:640 \\
        --model weights/fire_smoke_yolov5n_416.pt:416 --model weights/fire_smoke_yolov5n_416.pt:320
"""

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
sys.path.insert(0, REPO)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from bench_cpu import median_ms  # noqa: E402

from jetson_detect.app.alarms import qualifying, rules_from_config  # noqa: E402
from jetson_detect.app.config import load_config  # noqa: E402
from jetson_detect.backends import onnx_network, trt_compat  # noqa: E402
from jetson_detect.backends.detector import OnnxRuntimeDetector  # noqa: E402
from jetson_detect.evaluation import evaluate_folder, list_images  # noqa: E402
from jetson_detect.model.blocks import BuildOptions  # noqa: E402
from jetson_detect.model.checkpoint import read_checkpoint  # noqa: E402
from jetson_detect.model.loader import load_model  # noqa: E402
from jetson_detect.model.network import build_network  # noqa: E402


def parameters(weights_path):
    """Trainable parameters of the checkpoint: everything but BatchNorm statistics and the Detect buffers."""
    state = read_checkpoint(weights_path).state
    skip = ("running_mean", "running_var", "num_batches_tracked", "anchors", "anchor_grid", "strides")
    return int(sum(np.asarray(v).size for k, v in state.items() if not k.endswith(skip)))


def gflops(spec, weights, size):
    """2 x the multiply-adds of every convolution of the network as ``build_network`` builds it (C3 unfused)."""
    network = onnx_network.OnnxNetwork()
    build_network(spec, weights, network, onnx_network, BuildOptions(input_h=size, input_w=size, c3_fusion=False),
                  compat=trt_compat)
    macs = 0
    for layer in network.layers:
        if isinstance(layer, onnx_network.ConvolutionLayer):
            b, c_out, h, w = layer.get_output(0).shape
            kh, kw = layer.kernel_size_nd
            macs += b * c_out * h * w * (layer.inputs[0].shape[1] // layer.num_groups) * kh * kw
    return 2.0 * macs / 1e9


def false_alarms(detector, config, names):
    """(share of coco64 images with any box, share on which a 1-of-1 alarm rule raises, rule hits per class)."""
    rules = rules_from_config(config["alarms"], names)
    paths = list_images(os.path.join(SHARED, "data", "coco64", "images"))
    any_box = raised = 0
    per_class = {rule.class_name: 0 for rule in rules}
    for path in paths:
        image = cv2.imread(path)
        det = detector.detect(image)
        any_box += len(det.scores) > 0
        hit = False
        for rule in rules:
            if len(qualifying(det, rule, image.shape[1], image.shape[0]).scores):
                per_class[rule.class_name] += 1
                hit = True
        raised += hit
    return any_box / len(paths), raised / len(paths), per_class, len(paths)


def bench(weights_path, size, config, threads, runs):
    spec, weights = load_model(weights_path)
    names = list(spec.names)
    evaluator = OnnxRuntimeDetector(spec, weights, BuildOptions(input_h=size, input_w=size, conf_thres=0.001,
                                                                iou_thres=0.6, max_det=300), threads)
    data = os.path.join(SHARED, "data", "fire_smoke")
    result = evaluate_folder(list_images(os.path.join(data, "images")), os.path.join(data, "labels"), names,
                             evaluator.detect, cv2.imread)
    det_cfg = config["detection"]
    watcher = OnnxRuntimeDetector(spec, weights, BuildOptions(
        input_h=size, input_w=size, conf_thres=float(det_cfg["conf_thres"]), iou_thres=float(det_cfg["iou_thres"]),
        max_det=int(det_cfg["max_det"])), threads)
    any_box, raised, per_class, images = false_alarms(watcher, config, names)
    x, _ = watcher.preprocess(cv2.imread(os.path.join(SHARED, "images", "bus.jpg")))
    for _ in range(3):
        watcher.run(x)
    ms = median_ms(lambda: watcher.run(x), runs)
    return {"weights": os.path.relpath(weights_path, REPO), "input": size, "mAP50": round(result.map50, 4),
            "mAP50_95": round(result.map50_95, 4),
            "per_class": {name: [round(ap50, 4), round(ap, 4)] for name, _, ap50, ap in result.per_class},
            "coco64_images": images, "any_box_share": round(any_box, 4), "alarm_share": round(raised, 4),
            "alarm_images_per_class": per_class, "params": parameters(weights_path),
            "gflops": round(gflops(spec, weights, size), 3), "cpu_network_ms": round(ms, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="WEIGHTS:SIZE")
    parser.add_argument("--config", default=os.path.join(REPO, "configs", "fire_smoke.yaml"),
                        help="detection and alarm settings (default: the shipped fire/smoke config)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    load = "{:.2f}".format(os.getloadavg()[0])
    rows = []
    for item in args.model:
        path, _, size = item.rpartition(":")
        start = time.time()
        rows.append(bench(path, int(size), config, args.threads, args.runs))
        print(json.dumps(rows[-1]), "({:.0f} s)".format(time.time() - start), flush=True)
    print("| weights | input | mAP50 | mAP50-95 | coco64 images with a box | coco64 alarms (1-of-1) | params | GFLOPs "
          "| CPU ms |\n|" + "---|" * 9)
    for r in rows:
        print("| `{}` | {} | {:.3f} | {:.3f} | {:.1%} | {:.1%} | {:,} | {:.2f} | {:.1f} |".format(
            r["weights"], r["input"], r["mAP50"], r["mAP50_95"], r["any_box_share"], r["alarm_share"], r["params"],
            r["gflops"], r["cpu_network_ms"]))
    print("(ONNX Runtime, {} threads, median of {} runs; 1-minute load average {} before the run)".format(
        args.threads, args.runs, load))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows, "threads": args.threads, "runs": args.runs, "load_before": load}, handle,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
