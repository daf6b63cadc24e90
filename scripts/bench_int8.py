#!/usr/bin/env python3
"""INT8 on the CPU backend, in one run: accuracy and network time of FP32 (ours), INT8 (ours: our calibration and
Q/DQ placement), INT8 (ONNX Runtime's own ``quantize_static``, entropy calibrator, QDQ) and the reference's FP32
ONNX export.

Every graph gets the same letterboxed inputs and the same decode + NMS (the CPU plugin's host part), so the mAP
differences are the networks'. mAP is ``eval``'s: conf 0.001, IoU 0.6, pycocotools, single-label. Times are
medians of interleaved rounds (the best round counts), at the same thread count.

    python scripts/bench_int8.py --ref-onnx /tmp/refbench/yolov5n_ref.onnx          # the reference export: see
                                                                                     # scripts/bench_reference.py
"""

import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
sys.path.insert(0, REPO)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from bench_cpu import median_ms  # noqa: E402  (the CPU benchmark's timing)

from jetson_detect.backends.calibrator import CalibrationBatches, list_calibration_images  # noqa: E402
from jetson_detect.backends.detector import OnnxRuntimeDetector, load_model  # noqa: E402
from jetson_detect.backends.int8_calibration import calibrate  # noqa: E402
from jetson_detect.backends.qdq_network import QuantizationOptions  # noqa: E402
from jetson_detect.evaluation import evaluate_folder, list_images  # noqa: E402
from jetson_detect.model.blocks import BuildOptions  # noqa: E402

MODELS = {
    "coco": (os.path.join(SHARED, "weights", "yolov5n.wts"), os.path.join(SHARED, "data", "coco64"),
             os.path.join(SHARED, "data", "coco64", "images")),
    "fire_smoke": (os.path.join(REPO, "weights", "fire_smoke_yolov5n.pt"), os.path.join(SHARED, "data", "fire_smoke"),
                   os.path.join(SHARED, "data", "fire_smoke_train", "images")),
}


class RenamedSession(object):
    """Another graph behind the CPU detector's session: its single output served as the twin's ``decoded``."""

    def __init__(self, session):
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name

    def run(self, names, feed):
        value = self.session.run([self.output_name], {self.input_name: next(iter(feed.values()))})[0]
        return [value for _ in names]


def ort_session(path_or_bytes, threads):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_mem_pattern = False  # as backends/onnxruntime_backend.py: every graph under the same settings
    return ort.InferenceSession(path_or_bytes, options, providers=["CPUExecutionProvider"])


def ort_quantize_static(fp32_detector, batches, work):
    """ONNX Runtime's static quantization of our FP32 graph (QDQ, u8 activations, s8 per-channel weights, entropy
    calibration), leaving out the same nodes ours keeps float: the Detect convolutions and the decode."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    model = fp32_detector.engine.model
    fp32_path, int8_path = os.path.join(work, "fp32.onnx"), os.path.join(work, "ort_int8.onnx")
    onnx.save(model, fp32_path)
    last = max(int(n.name.split(".")[1]) for n in model.graph.node if n.name.startswith("model."))
    exclude = [n.name for n in model.graph.node
               if not n.name.startswith("model.") or n.name.startswith("model.{}.".format(last))]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(batches)

        def get_next(self):
            batch = next(self.items, None)
            return None if batch is None else {fp32_detector.engine.input_name: batch}

    quantize_static(fp32_path, int8_path, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True, calibrate_method=CalibrationMethod.Entropy,
                    nodes_to_exclude=exclude,
                    # ORT keeps every intermediate output of every image until the end otherwise (24 GB for 256).
                    extra_options={"CalibMaxIntermediateOutputs": 16})
    return int8_path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="coco,fire_smoke")
    parser.add_argument("--ref-onnx", help="the reference's FP32 ONNX export of yolov5n (timed and scored with coco)")
    parser.add_argument("--img-size", type=int, default=640)
    parser.add_argument("--calib-images", type=int, default=256)
    parser.add_argument("--method", default="percentile")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--holdout", action="store_true",
                        help="coco: calibrate on the first half of coco64 and score on the other half (the "
                             "default calibrates on the evaluation images, coco64 being all the COCO data here)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    for name in args.models.split(","):
        weights_path, data, calib_dir = MODELS[name]
        spec, weights = load_model(weights_path)
        options = BuildOptions(input_h=args.img_size, input_w=args.img_size, c3_fusion=False, conf_thres=0.001,
                               iou_thres=0.6, pre_nms_top_k=16384)
        images = list_images(os.path.join(data, "images"))
        paths = list_calibration_images(calib_dir, args.calib_images)
        if args.holdout and name == "coco":
            half = len(images) // 2
            paths, images = images[:half][:args.calib_images], images[half:]
        batches = CalibrationBatches(paths, args.img_size, 1)
        inputs = [batches.batch(i) for i in range(len(batches))]
        fp32 = OnnxRuntimeDetector(spec, weights, options, threads=args.threads)
        start = time.perf_counter()
        quantization = QuantizationOptions()
        ours = calibrate(spec, weights, options, quantization, inputs, args.method)
        ours_s = time.perf_counter() - start
        int8 = OnnxRuntimeDetector(spec, weights, options, threads=args.threads, int8_scales=ours.scales,
                                   quantization=quantization, affine=ours.affine)
        variants = [("fp32 (ours)", fp32), ("int8 (ours, {})".format(args.method), int8)]
        with tempfile.TemporaryDirectory() as work:
            start = time.perf_counter()
            ort_path = ort_quantize_static(fp32, inputs, work)
            ort_s = time.perf_counter() - start
            peer = OnnxRuntimeDetector(spec, weights, options, threads=args.threads)
            peer.engine.session = RenamedSession(ort_session(ort_path, args.threads))
            variants.append(("int8 (ORT quantize_static, entropy)", peer))
        if args.ref_onnx and name == "coco":
            ref = OnnxRuntimeDetector(spec, weights, options, threads=args.threads)
            ref.engine.session = RenamedSession(ort_session(args.ref_onnx, args.threads))
            variants.append(("fp32 (reference export)", ref))

        scores = {}
        for label, detector in variants:
            result = evaluate_folder(images, os.path.join(data, "labels"), detector.names, detector.detect,
                                     lambda p: cv2.imread(p, cv2.IMREAD_COLOR))
            scores[label] = (result.map50_95, result.map50)
        x = inputs[0]
        for _, detector in variants:
            for _ in range(5):
                detector.engine.run_graph(x)
        times = dict((label, []) for label, _ in variants)
        for _ in range(args.rounds):
            for label, detector in variants:
                times[label].append(median_ms(lambda: detector.engine.run_graph(x), args.runs))

        print("\n{}: {} on {} ({} images{}), input {}, calibration {} images of {} (ours {:.0f} s, ORT {:.0f} s), "
              "ONNX Runtime threads {}, cores {}".format(
                  name, os.path.basename(weights_path), data, len(images),
                  ", the second half" if args.holdout and name == "coco" else "", args.img_size, len(inputs),
                  "the first half" if args.holdout and name == "coco" else calib_dir,
                  ours_s, ort_s, args.threads, os.cpu_count()))
        base = scores["fp32 (ours)"]
        ref_ms = min(times["fp32 (reference export)"]) if "fp32 (reference export)" in times else None
        print("| graph | mAP50-95 | mAP50 | Δ mAP50-95 | Δ mAP50 | network ms | vs reference fp32 |")
        print("|---|---|---|---|---|---|---|")
        for label, _ in variants:
            m, m50 = scores[label]
            ms = min(times[label])
            print("| {} | {:.4f} | {:.4f} | {:+.4f} | {:+.4f} | {:.1f} | {} |".format(
                label, m, m50, m - base[0], m50 - base[1], ms,
                "{:.2f}x".format(ms / ref_ms) if ref_ms else "—"))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
