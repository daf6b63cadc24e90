#!/usr/bin/env python3
"""Check the YoloDecodeNMS CUDA kernels on a GPU against the NumPy reference, and time them.

Needs a CUDA GPU with CuPy (kernels via RawModule), NumPy, and for the timing comparison PyTorch + torchvision;
nvcc is optional (it also builds and checks the C launcher library that the TensorRT plugin calls).

    python3 scripts/check_plugin_kernels.py --heads-dir ../shared/reference/yolov5n --out /tmp/out

(a) real heads: bus.jpg and zidane.jpg, as the CPU backend computes them (`scripts/dump_heads.py --out DIR`,
then `--heads-dir DIR`; without a dump the logits are rebuilt by inverting the reference `decoded`);
(b) random heads with many overlapping boxes, FP32 and FP16;
(c) four-level P6 heads: the yolov5n6 reference model's (tests/data/models_v50_p6, dumped with
`scripts/dump_heads.py --p6`) and random ones, FP32 and FP16;
(d) median microseconds per call for 25,200 x 80 (640) and 6,300 x 2 (320) against torchvision.ops.batched_nms
with its decode in PyTorch.
"""

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cupy as cp  # noqa: E402
from ydn_workspace import next_pow2, workspace_layout  # noqa: E402

from jetson_detect.math.decode import decode_heads  # noqa: E402
from jetson_detect.math.nms import Detections, greedy_nms, non_max_suppression  # noqa: E402
from jetson_detect.model.decode_nms import DecodeNMSParams  # noqa: E402
from jetson_detect.plugin import KERNEL_DIR, PLUGIN_DIR  # noqa: E402

COCO_ANCHORS = (((10.0, 13.0), (16.0, 30.0), (33.0, 23.0)),
                ((30.0, 61.0), (62.0, 45.0), (59.0, 119.0)),
                ((116.0, 90.0), (156.0, 198.0), (373.0, 326.0)))
STRIDES = (8.0, 16.0, 32.0)
# YOLOv5 P6 (yolov5n6 ... x6): four levels, strides 8..64
P6_ANCHORS = (((19.0, 27.0), (44.0, 40.0), (38.0, 94.0)),
              ((96.0, 68.0), (86.0, 152.0), (180.0, 137.0)),
              ((140.0, 301.0), (303.0, 264.0), (238.0, 542.0)),
              ((436.0, 615.0), (739.0, 380.0), (925.0, 792.0)))
P6_STRIDES = (8.0, 16.0, 32.0, 64.0)
P6_HEADS = "yolov5n6_zidane_640"  # tests/data/models_v50_p6: reference decoded/json; dump_heads.py adds _heads
MAX_SHARED_SORT_BYTES = 32768
SPIN = cp.RawKernel(
    'extern "C" __global__ void spin(long long cycles) '
    '{ long long t0 = clock64(); while (clock64() - t0 < cycles) {} }', "spin")
TOLERANCES = {"fp32": (1e-3, 1e-5), "fp16": (0.5, 1e-3)}  # (box px, score)


def load_module():
    """Compile the device-only kernel source with CuPy's NVRTC."""
    source = (KERNEL_DIR / "yolo_decode_nms.cu").read_text()
    return cp.RawModule(code=source, options=("--std=c++14",))


class KernelPipeline:
    """The launch sequence of ydnEnqueue (yolo_decode_nms_launch.cu), driven from Python through CuPy."""

    def __init__(self, module, params, head_shapes, half):
        self.p = params
        self.half = half
        self.batch = head_shapes[0][0]
        self.hw = [(s[2], s[3]) for s in head_shapes]
        self.n = sum(params.num_anchors * h * w for h, w in self.hw)
        self.k = params.pre_nms_top_k
        self.words = (self.k + 63) // 64
        self.kpow2 = next_pow2(self.k)
        self.layout = workspace_layout(self.batch, self.n, self.k)
        self.ws = cp.empty(self.layout["total"], cp.uint8)
        b, n, k = self.batch, self.n, self.k
        self.counts = self._view("counts", np.int32, (b,))
        self.num_sorted = self._view("num_sorted", np.int32, (b,))
        self.cand_keys = self._view("cand_keys", np.uint64, (b, n))
        self.cand_boxes = self._view("cand_boxes", np.float32, (b, n, 4))
        self.cand_classes = self._view("cand_classes", np.int32, (b, n))
        self.sort_buf = self._view("sort_buf", np.uint64, (b, self.kpow2))
        self.sorted_boxes = self._view("sorted_boxes", np.float32, (b, k, 4))
        self.sorted_scores = self._view("sorted_scores", np.float32, (b, k))
        self.sorted_classes = self._view("sorted_classes", np.int32, (b, k))
        self.mask = self._view("mask", np.uint64, (b, k, self.words))
        self.out_num = cp.zeros((b, 1), cp.int32)
        self.out_boxes = cp.zeros((b, params.max_det, 4), cp.float32)
        self.out_scores = cp.zeros((b, params.max_det), cp.float32)
        self.out_classes = cp.zeros((b, params.max_det), cp.int32)
        self.f = {name: module.get_function(name) for name in (
            "ydn_reset_counts", "ydn_decode_f32", "ydn_decode_f16", "ydn_select_sort", "ydn_nms_mask",
            "ydn_nms_scan")}
        sms = cp.cuda.Device().attributes["MultiProcessorCount"]
        self.mask_blocks = min(sms * 32, self.words * self.words)
        sort_bytes = self.kpow2 * 8
        self.use_global = 1 if sort_bytes > MAX_SHARED_SORT_BYTES else 0
        self.sort_shared = 0 if self.use_global else sort_bytes

    def _view(self, name, dtype, shape):
        start = self.layout[name]
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self.ws[start:start + nbytes].view(dtype).reshape(shape)

    def __call__(self, heads, events=None):
        p, i32, f32 = self.p, np.int32, np.float32
        b = self.batch
        mark = (lambda i: events[i].record()) if events else (lambda i: None)
        mark(0)
        self.f["ydn_reset_counts"](((b + 255) // 256,), (256,), (self.counts, i32(b)))
        decode = self.f["ydn_decode_f16" if self.half else "ydn_decode_f32"]
        mark(1)
        offset = 0
        for level, (head, (h, w)) in enumerate(zip(heads, self.hw)):
            n = p.num_anchors * h * w
            anchors = [f32(v) for pair in p.anchors_px[level] for v in pair]
            anchors += [f32(0)] * (8 - len(anchors))
            decode(((n + 255) // 256, b), (256,), (
                head, i32(h), i32(w), i32(p.num_anchors), i32(p.nc), f32(p.strides[level]), *anchors,
                f32(p.conf_thres), i32(offset), i32(self.n), self.cand_keys, self.cand_boxes, self.cand_classes,
                self.counts))
            offset += n
        mark(2)
        self.f["ydn_select_sort"]((b,), (1024,), (
            self.cand_keys, self.counts, self.cand_boxes, self.cand_classes, i32(self.n), i32(self.k),
            i32(self.kpow2), self.sort_buf, i32(self.use_global), self.sorted_boxes, self.sorted_scores,
            self.sorted_classes, self.num_sorted), shared_mem=self.sort_shared)
        mark(3)
        self.f["ydn_nms_mask"]((self.mask_blocks, b), (64,), (
            self.sorted_boxes, self.sorted_classes, self.num_sorted, i32(self.k), i32(self.words),
            f32(p.iou_thres), i32(int(p.class_agnostic)), self.mask))
        mark(4)
        self.f["ydn_nms_scan"]((b,), (32,), (
            self.mask, self.num_sorted, i32(self.k), i32(self.words), self.sorted_boxes, self.sorted_scores,
            self.sorted_classes, i32(p.max_det), self.out_num, self.out_boxes, self.out_scores, self.out_classes),
            shared_mem=self.words * 8)
        mark(5)

    def stage_times(self, heads, iters):
        """Median GPU microseconds of each stage and in total, from events recorded between the launches.

        A spin kernel keeps the GPU busy while Python queues the launches, so launch gaps are not counted.
        """
        names = ("reset", "decode", "select_sort", "nms_mask", "nms_scan")
        samples = {name: [] for name in names + ("gpu_total",)}
        for _ in range(iters):
            events = [cp.cuda.Event() for _ in range(6)]
            SPIN((1,), (1,), (np.int64(3_000_000),))
            self(heads, events)
            events[-1].synchronize()
            for i, name in enumerate(names):
                samples[name].append(cp.cuda.get_elapsed_time(events[i], events[i + 1]) * 1000.0)
            samples["gpu_total"].append(cp.cuda.get_elapsed_time(events[0], events[-1]) * 1000.0)
        return {name: round(float(np.median(v)), 1) for name, v in samples.items()}

    def results(self):
        """Per-image Detections from the fixed-K outputs, plus the raw arrays."""
        num = cp.asnumpy(self.out_num)[:, 0]
        boxes, scores, classes = (cp.asnumpy(a) for a in (self.out_boxes, self.out_scores, self.out_classes))
        dets = [Detections(boxes[i, :num[i]], scores[i, :num[i]], classes[i, :num[i]]) for i in range(self.batch)]
        return dets, (num, boxes, scores, classes)

    def sorted_candidates(self, image):
        """The pre-NMS candidates the kernels kept for one image, best first."""
        m = int(cp.asnumpy(self.num_sorted)[image])
        return Detections(cp.asnumpy(self.sorted_boxes[image, :m]), cp.asnumpy(self.sorted_scores[image, :m]),
                          cp.asnumpy(self.sorted_classes[image, :m]))


def reference(heads_np, params):
    """NumPy reference detections per image, with the plugin's pre-NMS cap."""
    decoded = decode_heads([h.astype(np.float32) for h in heads_np], params.anchors_array(), params.strides)
    return [non_max_suppression(decoded[i], params.conf_thres, params.iou_thres, params.max_det,
                                params.class_agnostic, max_nms=params.pre_nms_top_k) for i in range(len(decoded))]


def compare(got, ref, box_tol, score_tol):
    """'' when the detections agree (count, classes exact; boxes, scores within tolerance), else why not."""
    if len(got) != len(ref):
        return "count {} != {}".format(len(got), len(ref))
    if not np.array_equal(got.class_ids, ref.class_ids):
        return "classes differ at {}".format(int(np.argmax(got.class_ids != ref.class_ids)))
    if len(got):
        box_err = float(np.max(np.abs(got.boxes - ref.boxes)))
        score_err = float(np.max(np.abs(got.scores - ref.scores)))
        if box_err > box_tol or score_err > score_tol:
            return "box err {:.3g} px, score err {:.3g}".format(box_err, score_err)
    return ""


def max_errors(got, ref):
    if len(got) != len(ref) or not len(got):
        return 0.0, 0.0
    return float(np.max(np.abs(got.boxes - ref.boxes))), float(np.max(np.abs(got.scores - ref.scores)))


def identical(a, b):
    return (np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
            and np.array_equal(a.class_ids, b.class_ids))


def heads_from_decoded(decoded, anchors, strides, input_size):
    """Invert decode_heads for one image: logits whose decode is `decoded` (up to float rounding)."""
    rows = decoded.astype(np.float64)
    heads, offset = [], 0
    na, no = len(anchors[0]), rows.shape[1]
    for level, stride in enumerate(strides):
        size = int(input_size // stride)
        x = rows[offset:offset + na * size * size].reshape(na, size, size, no)
        offset += na * size * size
        gy, gx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        anchor = np.asarray(anchors[level], np.float64)
        v = np.empty_like(x)
        v[..., 0] = ((x[..., 0] / stride) - gx + 0.5) / 2
        v[..., 1] = ((x[..., 1] / stride) - gy + 0.5) / 2
        v[..., 2] = np.sqrt(x[..., 2] / anchor[:, 0, None, None]) / 2
        v[..., 3] = np.sqrt(x[..., 3] / anchor[:, 1, None, None]) / 2
        v[..., 4:] = x[..., 4:]
        v = np.clip(v, 0.0, 1.0)
        with np.errstate(divide="ignore"):
            logits = np.log(v) - np.log1p(-v)
        heads.append(logits.transpose(0, 3, 1, 2).reshape(1, na * no, size, size).astype(np.float32))
    return heads


def random_heads(rng, batch, input_h, input_w, nc, obj_mean, blobs_per_level=None, strides=STRIDES):
    """Heads whose boxes cluster and overlap: objects planted on a coarse grid, noisy neighbours around them."""
    heads = []
    for stride in strides:
        h, w = int(input_h // stride), int(input_w // stride)
        t = rng.normal(0.0, 1.0, size=(batch, 3, 5 + nc, h, w)).astype(np.float32)
        t[:, :, 0:2] *= 1.5
        t[:, :, 2:4] = rng.normal(1.0, 0.6, size=(batch, 3, 2, h, w))
        t[:, :, 4] = rng.normal(obj_mean, 2.0, size=(batch, 3, h, w))
        t[:, :, 5:] = rng.normal(-1.0, 2.0, size=(batch, 3, nc, h, w))
        # Blobs of correlated cells, so that same-class neighbours overlap heavily.
        for _ in range(blobs_per_level or max(1, h * w // 40)):
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            cls = rng.integers(0, nc)
            ys, xs = slice(max(0, y0 - 2), y0 + 3), slice(max(0, x0 - 2), x0 + 3)
            t[:, :, 4, ys, xs] += 6.0
            t[:, :, 5 + cls, ys, xs] += 4.0
        heads.append(t.reshape(batch, 3 * (5 + nc), h, w))
    return heads


def run_case(module, params, heads_np, half, pipeline=None):
    """Run the kernels on one set of heads; returns (pipeline, detections per image)."""
    dtype = np.float16 if half else np.float32
    heads_dev = [cp.asarray(h.astype(dtype)) for h in heads_np]
    pipe = pipeline or KernelPipeline(module, params, [h.shape for h in heads_np], half)
    pipe(heads_dev)
    cp.cuda.Device().synchronize()
    return pipe, heads_dev


def check_one(module, params, heads32, precision, record, label):
    """Compare one case in one precision; appends a result dict to record."""
    half = precision == "fp16"
    heads_in = [h.astype(np.float16).astype(np.float32) for h in heads32] if half else heads32
    pipe, heads_dev = run_case(module, params, heads_in, half)
    dets, raw = pipe.results()
    refs = reference(heads_in, params)
    box_tol, score_tol = TOLERANCES[precision]
    entry = {"case": label, "precision": precision, "images": []}
    # Determinism: poison the workspace and outputs, run again, expect identical bytes.
    pipe.ws.fill(0xFF)
    for a in (pipe.out_boxes, pipe.out_scores, pipe.out_classes, pipe.out_num):
        a.fill(7)
    pipe(heads_dev)
    cp.cuda.Device().synchronize()
    _, raw2 = pipe.results()
    entry["deterministic"] = all(np.array_equal(x, y) for x, y in zip(raw, raw2))
    num, boxes, scores, classes = raw
    entry["tail_zero"] = all(not boxes[i, num[i]:].any() and not scores[i, num[i]:].any()
                             and not classes[i, num[i]:].any() for i in range(len(num)))
    for i, (got, ref) in enumerate(zip(dets, refs)):
        cands = pipe.sorted_candidates(i)
        nms_on_gpu_candidates = greedy_nms(cands, params.iou_thres, params.max_det, params.class_agnostic)
        box_err, score_err = max_errors(got, ref)
        entry["images"].append({
            "count": len(got), "ref_count": len(ref), "candidates": len(cands),
            "raw_candidates": int(cp.asnumpy(pipe.counts)[i]),
            "mismatch": compare(got, ref, box_tol, score_tol),
            "box_err": box_err, "score_err": score_err,
            "nms_bitwise_equal": identical(got, nms_on_gpu_candidates)})
    if half:
        refs32 = reference(heads32, params)
        entry["vs_fp32_reference"] = [compare(got, ref, box_tol, score_tol) for got, ref in zip(dets, refs32)]
    record.append(entry)
    return pipe


def summarize(entries):
    images = [im for e in entries for im in e["images"]]
    return {
        "cases": len(entries), "images": len(images),
        "passed_images": sum(not im["mismatch"] for im in images),
        "nms_bitwise_equal_images": sum(im["nms_bitwise_equal"] for im in images),
        "deterministic_cases": sum(e["deterministic"] for e in entries),
        "tail_zero_cases": sum(e["tail_zero"] for e in entries),
        "max_box_err": max([im["box_err"] for im in images] + [0.0]),
        "max_score_err": max([im["score_err"] for im in images] + [0.0]),
        "max_candidates": max([im["raw_candidates"] for im in images] + [0]),
        "total_detections": sum(im["count"] for im in images),
        "failures": [(e["case"], e["precision"], im["mismatch"]) for e in entries for im in e["images"]
                     if im["mismatch"]][:20],
    }


def real_image_checks(module, heads_dir, record):
    out = {}
    for name in ("bus", "zidane"):
        decoded = np.load(Path(heads_dir) / "{}.npz".format(name))["decoded"][0]
        dumped = Path(heads_dir) / "{}_heads.npz".format(name)
        if dumped.exists():  # raw heads from the CPU backend (scripts/dump_heads.py)
            with np.load(dumped) as saved:
                heads = [saved[key].astype(np.float32) for key in ("head_p3", "head_p4", "head_p5")]
        else:  # no dump: rebuild the logits by inverting the reference decode
            heads = heads_from_decoded(decoded, COCO_ANCHORS, STRIDES, 640)
        params = DecodeNMSParams(nc=80, anchors_px=COCO_ANCHORS, strides=STRIDES, input_h=640, input_w=640)
        roundtrip = decode_heads(heads, params.anchors_array(), STRIDES)[0]
        for precision in ("fp32", "fp16"):
            check_one(module, params, heads, precision, record, name)
        got = record[-2]["images"][0]
        json_path = Path(heads_dir) / "{}.json".format(name)
        expected = json.loads(json_path.read_text())["detections"] if json_path.exists() else []
        ref = reference(heads, params)[0]
        out[name] = {
            "roundtrip_max_abs_err_decoded": float(np.max(np.abs(roundtrip - decoded))),
            "count": got["count"], "json_count": len(expected),
            "json_classes_equal": [d["class_id"] for d in expected] == ref.class_ids.tolist(),
            "json_scores_max_err": float(np.max(np.abs(np.array([d["confidence"] for d in expected])
                                                       - ref.scores))) if len(expected) == len(ref) else None,
            "heads_source": "CPU backend dump" if dumped.exists() else "inverted reference decode",
            "heads": heads,
        }
    return out


def p6_checks(module, heads_dir, count, seed, record):
    """Four-level P6 heads: the yolov5n6 reference model's real heads (when dumped), then random P6 cases."""
    out = {}
    dumped = Path(heads_dir) / "{}_heads.npz".format(P6_HEADS)
    if dumped.exists():
        with np.load(dumped) as saved:
            heads = [saved["head_p{}".format(3 + i)].astype(np.float32) for i in range(4)]
        nc = heads[0].shape[1] // 3 - 5
        params = DecodeNMSParams(nc=nc, anchors_px=P6_ANCHORS, strides=P6_STRIDES, input_h=640, input_w=640)
        for precision in ("fp32", "fp16"):
            check_one(module, params, heads, precision, record, P6_HEADS)
        decoded = np.load(Path(heads_dir) / "{}.npz".format(P6_HEADS))["decoded"][0]
        expected = json.loads((Path(heads_dir) / "{}.json".format(P6_HEADS)).read_text())["detections"]
        ref = reference(heads, params)[0]
        out[P6_HEADS] = {
            "roundtrip_max_abs_err_decoded": float(np.max(np.abs(
                decode_heads(heads, params.anchors_array(), P6_STRIDES)[0] - decoded))),
            "count": record[-2]["images"][0]["count"], "json_count": len(expected),
            "json_classes_equal": [d["class_id"] for d in expected] == ref.class_ids.tolist(),
            "json_scores_max_err": float(np.max(np.abs(np.array([d["confidence"] for d in expected])
                                                       - ref.scores))) if len(expected) == len(ref) else None}
    rng = np.random.default_rng(seed)
    sizes = [(320, 320), (256, 448), (640, 640), (384, 640)]
    for case in range(count):
        input_h, input_w = sizes[case % len(sizes)]
        nc = int(rng.choice([1, 2, 80]))
        params = DecodeNMSParams(
            nc=nc, anchors_px=P6_ANCHORS, strides=P6_STRIDES, input_h=input_h, input_w=input_w,
            conf_thres=float(np.float32(rng.choice([0.1, 0.25]))), iou_thres=float(np.float32(0.45)),
            class_agnostic=bool(case % 4 == 3))
        heads = random_heads(rng, int(rng.choice([1, 2])), input_h, input_w, nc, float(rng.uniform(-4, 0)),
                             strides=P6_STRIDES)
        for precision in ("fp32", "fp16"):
            check_one(module, params, heads, precision, record, "p6 random{}".format(case))
    return out


def random_checks(module, count, seed, record):
    rng = np.random.default_rng(seed)
    sizes = [(320, 320), (256, 416), (640, 640), (320, 320), (384, 640)]
    for case in range(count):
        input_h, input_w = sizes[case % len(sizes)]
        nc = int(rng.choice([1, 2, 3, 5, 80]))
        batch = int(rng.choice([1, 1, 2]))
        params = DecodeNMSParams(
            nc=nc, anchors_px=COCO_ANCHORS, strides=STRIDES, input_h=input_h, input_w=input_w,
            conf_thres=float(np.float32(rng.choice([0.05, 0.1, 0.25, 0.4]))),
            iou_thres=float(np.float32(rng.choice([0.3, 0.45, 0.5, 0.7]))),
            max_det=int(rng.choice([10, 100, 300, 1000])), class_agnostic=bool(rng.random() < 0.25),
            pre_nms_top_k=int(rng.choice([4096, 4096, 1000, 5000, 64])))
        heads = random_heads(rng, batch, input_h, input_w, nc, obj_mean=float(rng.uniform(-9.0, -1.0)))
        label = "random{:03d}".format(case)
        for precision in ("fp32", "fp16"):
            check_one(module, params, heads, precision, record, label)


def time_gpu(fn, iters, warmup=20):
    """Median wall microseconds per call, synchronizing after each call (what a caller waiting for results sees)."""
    for _ in range(warmup):
        fn()
    cp.cuda.Device().synchronize()
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        cp.cuda.Device().synchronize()
        samples.append((time.perf_counter() - t0) * 1e6)
    return float(np.median(samples))


def graph_time(pipe, heads_dev, iters):
    """Median microseconds per replay of the captured kernel sequence (no Python launch cost); None if no graphs."""
    stream = cp.cuda.Stream(non_blocking=True)
    try:
        with stream:
            pipe(heads_dev)
            stream.synchronize()
            stream.begin_capture()
            pipe(heads_dev)
            graph = stream.end_capture()
    except Exception as exc:  # CuPy without graph capture: report, keep going
        print("graph capture unavailable:", exc, flush=True)
        return None

    def replay():
        graph.launch(stream)
        stream.synchronize()
    return time_gpu(replay, iters)


def torch_kernel_time(fn, iters, warmup=10):
    """Median GPU microseconds of the CUDA kernels one call of ``fn`` launches (PyTorch's profiler, device time
    only): the GPU-time-to-GPU-time counterpart of ``stage_times``, with the host syncs and launch gaps of eager
    PyTorch left out."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    per_call = []
    for _ in range(max(5, iters // 20)):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        total = 0.0
        for event in prof.events():
            device_us = getattr(event, "device_time", None)
            if device_us is None:
                device_us = getattr(event, "cuda_time", 0.0)
            if getattr(event, "device_type", None) is not None and str(event.device_type).endswith("CUDA"):
                total += float(device_us or 0.0)
        per_call.append(total)
    return float(np.median(per_call))


class TorchvisionPath:
    """YOLOv5-style decode in PyTorch + torchvision.ops.batched_nms, per image (the usual GPU baseline)."""

    def __init__(self, params, head_shapes):
        import torch
        import torchvision
        self.torch, self.tv = torch, torchvision
        self.p = params
        dev = torch.device("cuda")
        self.grids, self.anchor_grids = [], []
        for level, shape in enumerate(head_shapes):
            h, w = shape[2], shape[3]
            gy, gx = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
            self.grids.append(torch.stack((gx, gy), -1).view(1, 1, h, w, 2).float())
            anchors = torch.tensor(params.anchors_px[level], device=dev).view(1, -1, 1, 1, 2)
            self.anchor_grids.append(anchors)

    def __call__(self, heads):
        torch, p = self.torch, self.p
        outs = []
        for level, x in enumerate(heads):
            b, _, h, w = x.shape
            y = x.float().view(b, p.num_anchors, 5 + p.nc, h, w).permute(0, 1, 3, 4, 2).sigmoid()
            xy = (y[..., :2] * 2 - 0.5 + self.grids[level]) * p.strides[level]
            wh = (y[..., 2:4] * 2) ** 2 * self.anchor_grids[level]
            outs.append(torch.cat((xy, wh, y[..., 4:]), -1).view(b, -1, 5 + p.nc))
        pred = torch.cat(outs, 1)
        results = []
        for x in pred:
            x = x[x[:, 4] > p.conf_thres]
            cls = x[:, 5:] * x[:, 4:5]
            score, j = cls.max(1)
            keep = score > p.conf_thres
            x, score, j = x[keep], score[keep], j[keep]
            order = score.argsort(descending=True)[:p.pre_nms_top_k]
            x, score, j = x[order], score[order], j[order]
            boxes = torch.cat((x[:, :2] - x[:, 2:4] / 2, x[:, :2] + x[:, 2:4] / 2), 1)
            idx = self.tv.ops.batched_nms(boxes, score, j, p.iou_thres)[:p.max_det]
            results.append((boxes[idx], score[idx], j[idx]))
        return results


def timing(module, heads640, iters, rng):
    import torch
    out = {}
    setups = [
        ("640x80 bus.jpg heads", DecodeNMSParams(nc=80, anchors_px=COCO_ANCHORS, strides=STRIDES, input_h=640,
                                                  input_w=640), heads640),
        ("640x80 dense random", DecodeNMSParams(nc=80, anchors_px=COCO_ANCHORS, strides=STRIDES, input_h=640,
                                                 input_w=640), random_heads(rng, 1, 640, 640, 80, -1.0)),
        ("320x2 few objects", DecodeNMSParams(nc=2, anchors_px=COCO_ANCHORS, strides=STRIDES, input_h=320,
                                               input_w=320), random_heads(rng, 1, 320, 320, 2, -12.0, 2)),
        ("320x2 dense random", DecodeNMSParams(nc=2, anchors_px=COCO_ANCHORS, strides=STRIDES, input_h=320,
                                                input_w=320), random_heads(rng, 1, 320, 320, 2, -1.0)),
    ]
    for label, params, heads in setups:
        row = {}
        for precision in ("fp32", "fp16"):
            half = precision == "fp16"
            pipe, heads_dev = run_case(module, params, heads, half)
            row["candidates"] = int(cp.asnumpy(pipe.counts)[0])
            row["detections"] = int(cp.asnumpy(pipe.out_num)[0, 0])
            row["kernels_us_" + precision] = time_gpu(lambda: pipe(heads_dev), iters)
            row["kernels_graph_us_" + precision] = graph_time(pipe, heads_dev, iters)
            row["stages_us_" + precision] = pipe.stage_times(heads_dev, iters)
        tv = TorchvisionPath(params, [h.shape for h in heads])
        heads_t = [torch.as_tensor(h, device="cuda") for h in heads]
        row["torchvision_detections"] = int(tv(heads_t)[0][1].shape[0])
        row["torchvision_us_fp32"] = time_gpu(lambda: tv(heads_t), iters)
        row["torchvision_gpu_kernel_us_fp32"] = torch_kernel_time(lambda: tv(heads_t), iters)
        row["positions"] = int(sum(3 * h.shape[2] * h.shape[3] for h in heads))
        out[label] = row
    return out


def build_launcher_library(workdir):
    """Build the C launcher (the plugin's enqueue path) with nvcc for this GPU; None when nvcc is missing."""
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if not nvcc:
        return None, "nvcc not found"
    major, minor = cp.cuda.Device().compute_capability[:1], cp.cuda.Device().compute_capability[1:]
    arch = "sm_{}{}".format(major, minor)
    lib = Path(workdir) / "libydn_launch.so"
    cmd = [nvcc, "-O3", "-std=c++14", "-arch={}".format(arch), "-shared", "-Xcompiler", "-fPIC",
           "-I", str(PLUGIN_DIR), str(PLUGIN_DIR / "yolo_decode_nms_launch.cu"), "-o", str(lib)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        return None, "nvcc failed: " + proc.stderr[-2000:]
    return ctypes.CDLL(str(lib)), " ".join(cmd)


class YdnParamsC(ctypes.Structure):
    _fields_ = [("num_levels", ctypes.c_int), ("num_anchors", ctypes.c_int), ("num_classes", ctypes.c_int),
                ("anchors", ctypes.c_float * 32), ("strides", ctypes.c_float * 4), ("conf_thres", ctypes.c_float),
                ("iou_thres", ctypes.c_float), ("max_det", ctypes.c_int), ("class_agnostic", ctypes.c_int),
                ("pre_nms_top_k", ctypes.c_int)]


def launcher_checks(module, lib, cases, iters):
    """ydnEnqueue through ctypes must give the same bytes as the RawModule pipeline; also time it."""
    lib.ydnWorkspaceSize.restype = ctypes.c_size_t
    lib.ydnWorkspaceSize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.ydnEnqueue.restype = ctypes.c_int
    results = {"workspace_size_equal": True, "identical": 0, "cases": 0, "errors": [], "timing_us": {}}
    for label, params, heads, half in cases:
        pipe, heads_dev = run_case(module, params, heads, half)
        _, raw_ref = pipe.results()
        b = heads[0].shape[0]
        if lib.ydnWorkspaceSize(b, pipe.n, pipe.k) != pipe.layout["total"]:
            results["workspace_size_equal"] = False
        c = YdnParamsC()
        c.num_levels, c.num_anchors, c.num_classes = len(heads), params.num_anchors, params.nc
        for level, pairs in enumerate(params.anchors_px):
            for a, (w, h) in enumerate(pairs):
                c.anchors[(level * 4 + a) * 2] = w
                c.anchors[(level * 4 + a) * 2 + 1] = h
        for level, s in enumerate(params.strides):
            c.strides[level] = s
        c.conf_thres, c.iou_thres, c.max_det = params.conf_thres, params.iou_thres, params.max_det
        c.class_agnostic, c.pre_nms_top_k = int(params.class_agnostic), params.pre_nms_top_k
        heights = (ctypes.c_int * 4)(*[h.shape[2] for h in heads])
        widths = (ctypes.c_int * 4)(*[h.shape[3] for h in heads])
        ptrs = (ctypes.c_void_p * 4)(*[h.data.ptr for h in heads_dev])
        ws = cp.full(pipe.layout["total"], 0xFF, cp.uint8)
        outs = [cp.full(a.shape, 7, a.dtype) for a in (pipe.out_num, pipe.out_boxes, pipe.out_scores,
                                                         pipe.out_classes)]
        stream = cp.cuda.get_current_stream().ptr

        def enqueue():
            return lib.ydnEnqueue(ctypes.byref(c), b, heights, widths, ptrs, int(half),
                                  ctypes.c_void_p(outs[0].data.ptr), ctypes.c_void_p(outs[1].data.ptr),
                                  ctypes.c_void_p(outs[2].data.ptr), ctypes.c_void_p(outs[3].data.ptr),
                                  ctypes.c_void_p(ws.data.ptr), ctypes.c_void_p(stream))
        err = enqueue()
        cp.cuda.Device().synchronize()
        results["cases"] += 1
        if err:
            results["errors"].append("{}: cuda error {}".format(label, err))
            continue
        got = [cp.asnumpy(a) for a in outs]
        got[0] = got[0].reshape(-1)
        if all(np.array_equal(x, y) for x, y in zip(got, raw_ref)):
            results["identical"] += 1
        else:
            results["errors"].append("{}: outputs differ from RawModule".format(label))
        if label.startswith("timing"):
            results["timing_us"][label] = time_gpu(enqueue, iters)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads-dir", default=str(REPO.parent / "shared" / "reference" / "yolov5n"),
                        help="folder with bus.npz / zidane.npz (reference `decoded` arrays) and their .json")
    parser.add_argument("--random-cases", type=int, default=200)
    parser.add_argument("--p6-heads-dir", default=str(REPO / "tests" / "data" / "models_v50_p6"),
                        help="folder with {0}.npz/.json and {0}_heads.npz (scripts/dump_heads.py --p6)".format(
                            P6_HEADS))
    parser.add_argument("--p6-cases", type=int, default=40, help="random four-level (P6) cases")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--iters", type=int, default=200, help="timing iterations")
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for check_plugin_kernels.json")
    args = parser.parse_args()

    t_start = time.time()
    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    report = {"device": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
              "compute_capability": dev.compute_capability, "cupy": cp.__version__, "numpy": np.__version__,
              "command": " ".join([os.path.basename(sys.executable)] + sys.argv)}
    module = load_module()

    real_record, random_record = [], []
    real = real_image_checks(module, args.heads_dir, real_record)
    report["real"] = {"summary": summarize(real_record),
                      "images": {k: {kk: vv for kk, vv in v.items() if kk != "heads"} for k, v in real.items()},
                      "entries": real_record}
    print("real heads:", json.dumps(report["real"]["summary"]), flush=True)
    print("real vs json:", json.dumps(report["real"]["images"]), flush=True)

    random_checks(module, args.random_cases, args.seed, random_record)
    for precision in ("fp32", "fp16"):
        entries = [e for e in random_record if e["precision"] == precision]
        report["random_" + precision] = summarize(entries)
        print("random {}:".format(precision), json.dumps(report["random_" + precision]), flush=True)
    fp16_entries = [e for e in random_record if e["precision"] == "fp16"]
    drift = [m for e in fp16_entries for m in e["vs_fp32_reference"]]
    report["random_fp16_vs_fp32_reference"] = {"images": len(drift), "agree": sum(not m for m in drift)}
    print("fp16 outputs vs fp32 reference:", json.dumps(report["random_fp16_vs_fp32_reference"]), flush=True)

    p6_record = []
    p6_real = p6_checks(module, args.p6_heads_dir, args.p6_cases, args.seed + 3, p6_record)
    report["p6"] = {"summary": summarize(p6_record), "images": p6_real}
    print("P6 (4 levels):", json.dumps(report["p6"]), flush=True)

    rng = np.random.default_rng(args.seed + 1)
    report["timing"] = timing(module, real["bus"]["heads"], args.iters, rng)
    print("timing:", json.dumps(report["timing"], indent=1), flush=True)

    with tempfile.TemporaryDirectory() as workdir:
        lib, how = build_launcher_library(workdir)
        report["launcher_build"] = how
        if lib is not None:
            rng = np.random.default_rng(args.seed + 2)
            coco = dict(nc=80, anchors_px=COCO_ANCHORS, strides=STRIDES, input_h=640, input_w=640)
            cases = [("timing 640x80 bus.jpg fp32", DecodeNMSParams(**coco), real["bus"]["heads"], False),
                     ("timing 640x80 bus.jpg fp16", DecodeNMSParams(**coco), real["bus"]["heads"], True),
                     ("zidane fp32", DecodeNMSParams(**coco), real["zidane"]["heads"], False)]
            for i in range(10):
                params = DecodeNMSParams(nc=3, anchors_px=COCO_ANCHORS, strides=STRIDES, input_h=320, input_w=320,
                                         conf_thres=0.1, pre_nms_top_k=[4096, 5000][i % 2],
                                         class_agnostic=bool(i % 3 == 0))
                cases.append(("random{} {}".format(i, "fp16" if i % 2 else "fp32"), params,
                              random_heads(rng, 2, 320, 320, 3, float(rng.uniform(-3, 1))), bool(i % 2)))
            sparse = DecodeNMSParams(nc=2, anchors_px=COCO_ANCHORS, strides=STRIDES, input_h=320, input_w=320)
            cases.append(("timing 320x2 few objects fp16", sparse, random_heads(rng, 1, 320, 320, 2, -12.0, 2), True))
            p6 = DecodeNMSParams(nc=2, anchors_px=P6_ANCHORS, strides=P6_STRIDES, input_h=640, input_w=640,
                                 conf_thres=0.1)
            for half in (False, True):
                cases.append(("p6 640x2 4 levels {}".format("fp16" if half else "fp32"), p6,
                              random_heads(rng, 2, 640, 640, 2, -2.0, strides=P6_STRIDES), half))
            report["launcher"] = launcher_checks(module, lib, cases, args.iters)
            print("launcher (ydnEnqueue via ctypes):", json.dumps(report["launcher"]), flush=True)
        else:
            print("launcher not checked:", how, flush=True)

    report["seconds"] = round(time.time() - t_start, 1)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    slim = dict(report)
    slim["real"] = {k: v for k, v in report["real"].items() if k != "entries"}
    (out_dir / "check_plugin_kernels.json").write_text(json.dumps(slim, indent=1, default=str))
    (out_dir / "check_plugin_kernels_entries.json").write_text(
        json.dumps({"real": real_record, "random": random_record, "p6": p6_record}, default=str))
    ok = all(report[k]["passed_images"] == report[k]["images"] for k in ("random_fp32", "random_fp16")) and \
        all(report[k]["summary"]["passed_images"] == report[k]["summary"]["images"] for k in ("real", "p6"))
    print("RESULT:", "PASS" if ok else "FAIL", "in {} s".format(report["seconds"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
