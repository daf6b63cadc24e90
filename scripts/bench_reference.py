#!/usr/bin/env python3
"""Our CPU backend against the reference YOLOv5n (PyTorch, and its own ONNX export in ONNX Runtime), in one run.

The reference is the PyPI ``yolov5`` code, used as a tool from a separate virtual environment outside this
repository (never vendored; BENCHMARKS.md gives the steps). Every variant gets the same letterboxed input, the
same thread count, and is timed in interleaved rounds so that ratios are fair on a noisy machine.

    python scripts/bench_reference.py --ref-python /tmp/refbench/venv/bin/python \\
        --export-ref /tmp/refbench/yolov5n_ref.onnx                                  # once: the reference export
    python scripts/bench_reference.py --ref-python /tmp/refbench/venv/bin/python \\
        --ref-onnx /tmp/refbench/yolov5n_ref.onnx                                    # the comparison
"""

import argparse
import collections
import json
import os
import shutil
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
sys.path.insert(0, REPO)
LOAD_BEFORE = "{:.2f}".format(os.getloadavg()[0])  # read before anything here loads the CPU


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=os.path.join(SHARED, "weights", "yolov5n.pt"),
                        help="our backend's weights (.pt or .wts); default: the same .pt as the reference")
    parser.add_argument("--ref-weights", default=os.path.join(SHARED, "weights", "yolov5n.pt"))
    parser.add_argument("--ref-onnx", help="the reference's ONNX export (made with --export-ref)")
    parser.add_argument("--export-ref", metavar="PATH", help="export the reference to ONNX at PATH and exit")
    parser.add_argument("--opset", type=int, default=12, help="opset of --export-ref (yolov5's default is 12)")
    parser.add_argument("--ref-python", help="python of the reference venv; the script re-runs itself with it")
    parser.add_argument("--no-torch", action="store_true", help="leave out the PyTorch reference")
    parser.add_argument("--torch-unfused", action="store_true",
                        help="also time the PyTorch reference with its BatchNorms left unfused")
    parser.add_argument("--image", default=os.path.join(SHARED, "images", "bus.jpg"))
    parser.add_argument("--img-size", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op and torch threads")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per variant and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best round's median counts")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs before each variant's block")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile N runs of each ONNX Runtime graph: time per op type, node counts")
    parser.add_argument("--json", help="write all numbers to this file")
    return parser.parse_args(argv)


def reexec_in_venv(ref_python):
    """Re-run this script under the reference venv's python unless it is already the running one."""
    venv = os.path.dirname(os.path.dirname(os.path.abspath(ref_python)))
    if os.path.abspath(sys.prefix) != venv:
        os.execv(ref_python, [ref_python] + sys.argv)


def import_torch():
    try:
        import torch
    except ImportError:
        raise SystemExit("torch is not importable by {}: pass --ref-python PATH (the reference venv's python), "
                         "or --no-torch to time the ONNX graphs only".format(sys.executable)) from None
    return torch


def reference_env():
    """Let the 2022-era yolov5 code run on torch 2.x offline without touching it."""
    # torch >= 2.6 loads checkpoints weights-only by default; the YOLOv5 checkpoints pickle whole modules.
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    # yolov5/ultralytics write settings (and look for fonts) there; keep it out of the home directory.
    config = os.path.join(tempfile.gettempdir(), "refbench-config")
    os.makedirs(config, exist_ok=True)
    os.environ.setdefault("YOLOV5_CONFIG_DIR", config)
    os.environ.setdefault("YOLO_CONFIG_DIR", config)
    # The official checkpoints pickle ``models.yolo.Model`` / ``models.common.Conv``. The PyPI package puts its own
    # folder on sys.path, so unpickling imports a second copy of those modules, and ``fuse()``'s
    # ``isinstance(m, yolov5.models.common.Conv)`` then matches nothing: the model silently stays unfused
    # (270 layers, 57 BatchNorms). Alias the names to the package's modules so there is one copy.
    import importlib

    for name in ("models", "models.common", "models.experimental", "models.yolo"):
        sys.modules[name] = importlib.import_module("yolov5." + name)


def load_reference(pt_path, fuse=True):
    """The reference model as yolov5's detect.py loads it: float32, BatchNorm fused into the convs, eval."""
    torch = import_torch()
    reference_env()
    from yolov5.models.experimental import attempt_load

    model = attempt_load(pt_path, device="cpu", inplace=True, fuse=fuse).float().eval()
    left = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    if fuse and left:
        raise SystemExit("reference: {} BatchNorm layers left after fuse()".format(left))
    return model


def export_reference(pt_path, onnx_path, img_size, opset):
    """yolov5's own ``export.run(include=onnx)``, with torch's TorchScript exporter (torch >= 2.9 defaults to
    dynamo, which that code predates)."""
    torch = import_torch()
    reference_env()
    import functools

    torch.onnx.export = functools.partial(torch.onnx.export, dynamo=False)
    from yolov5 import export

    work = tempfile.mkdtemp(prefix="refexport-")
    try:
        weights = os.path.join(work, "yolov5n.pt")  # export.run writes next to the weights
        shutil.copyfile(pt_path, weights)
        export.run(weights=weights, imgsz=(img_size, img_size), include=("onnx",), opset=opset, device="cpu")
        os.makedirs(os.path.dirname(os.path.abspath(onnx_path)), exist_ok=True)
        shutil.move(os.path.join(work, "yolov5n.onnx"), onnx_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("reference ONNX export: {} (opset {}, torch {})".format(onnx_path, opset, torch.__version__))


def ort_options(ort, threads, profile_prefix=None, optimized_path=None):
    """The settings of jetson_detect.backends.onnxruntime_backend, so both graphs run under the same ORT."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_mem_pattern = False
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    if optimized_path:
        options.optimized_model_filepath = optimized_path
    return options


def median_ms(fn, runs):
    """The same timing as scripts/bench_cpu.py (imported late: it needs the project's dependencies)."""
    from bench_cpu import median_ms as bench_cpu_median_ms
    return bench_cpu_median_ms(fn, runs)


def compare(name, rows, reference_rows, conf, iou):
    """Raw decoded-output and post-NMS agreement of ``rows`` with the reference's, both (N, 5+nc)."""
    import numpy as np

    from jetson_detect.math.nms import non_max_suppression

    box_err = float(np.abs(rows[:, :4] - reference_rows[:, :4]).max())
    score_err = float(np.abs(rows[:, 4:] - reference_rows[:, 4:]).max())
    rel_err = float(np.abs(rows - reference_rows).max() / np.abs(reference_rows).max())
    dets, ref = non_max_suppression(rows, conf, iou), non_max_suppression(reference_rows, conf, iou)
    same_classes = len(dets.class_ids) == len(ref.class_ids) and bool((dets.class_ids == ref.class_ids).all())
    det_box_err = float(np.abs(dets.boxes - ref.boxes).max()) if same_classes and len(ref.boxes) else float("nan")
    det_score_err = float(np.abs(dets.scores - ref.scores).max()) if same_classes and len(ref.boxes) else float("nan")
    return {"name": name, "box_abs_err_px": box_err, "score_abs_err": score_err, "rel_err": rel_err,
            "detections": len(dets.class_ids), "reference_detections": len(ref.class_ids),
            "same_classes_in_order": same_classes, "det_box_abs_err_px": det_box_err,
            "det_score_abs_err": det_score_err}


def profile_graph(ort, model_bytes, feed, threads, runs):
    """Kernel ms per run by op type (ORT's profiler, after warm-up), and node counts before/after ORT's optimizer."""
    import onnx

    work = tempfile.mkdtemp(prefix="refprofile-")
    optimized = os.path.join(work, "optimized.onnx")
    ort.InferenceSession(model_bytes, ort_options(ort, threads, optimized_path=optimized),
                         providers=["CPUExecutionProvider"])
    session = ort.InferenceSession(model_bytes, ort_options(ort, threads, os.path.join(work, "profile")),
                                   providers=["CPUExecutionProvider"])
    warmup = 5
    for _ in range(warmup + runs):
        session.run(None, feed)
    with open(session.end_profiling()) as f:
        events = json.load(f)
    run_starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    timed = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"
             and e["ts"] >= run_starts[warmup]]
    wall_ms = sum(e["dur"] for e in timed) / 1000.0 / runs
    per_op = collections.Counter()
    for event in events:
        if (event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time")
                and event["ts"] >= run_starts[warmup]):
            per_op[event["args"]["op_name"]] += event["dur"] / 1000.0 / runs
    before = collections.Counter(n.op_type for n in onnx.load_from_string(model_bytes).graph.node)
    after = collections.Counter(n.op_type for n in onnx.load(optimized).graph.node)
    shutil.rmtree(work, ignore_errors=True)
    return {"wall_ms_per_run": wall_ms,
            "op_ms_per_run": dict(per_op.most_common()),
            "nodes_before": dict(before.most_common()), "nodes_after_ort": dict(after.most_common())}


def main(argv=None):
    args = parse_args(argv)
    if args.ref_python:
        reexec_in_venv(args.ref_python)
    if args.export_ref:
        export_reference(args.ref_weights, args.export_ref, args.img_size, args.opset)
        return 0

    import cv2
    import numpy as np
    import onnxruntime as ort

    from jetson_detect.backends.detector import OnnxRuntimeDetector, load_model
    from jetson_detect.model.blocks import BuildOptions

    image = cv2.imread(args.image)
    if image is None:
        raise SystemExit("cannot read image {}".format(args.image))
    spec, weights = load_model(args.weights)
    ours = {}
    for name, fusion in (("ours, fused C3", True), ("ours, unfused C3", False)):
        ours[name] = OnnxRuntimeDetector(spec, weights, BuildOptions(input_h=args.img_size, input_w=args.img_size,
                                                                     c3_fusion=fusion), threads=args.threads)
    first = next(iter(ours.values()))
    batch, _ = first.preprocess(image)  # the one letterboxed input every variant gets
    batch = np.ascontiguousarray(batch, np.float32)

    variants = collections.OrderedDict()
    outputs = collections.OrderedDict()
    for name, detector in ours.items():
        variants[name] = (lambda d: lambda: d.engine.run_graph(batch))(detector)
        outputs[name] = detector.engine.run_graph(batch)["decoded"][0]

    ref_session = None
    if args.ref_onnx:
        ref_session = ort.InferenceSession(args.ref_onnx, ort_options(ort, args.threads),
                                           providers=["CPUExecutionProvider"])
        ref_input = ref_session.get_inputs()[0].name
        ref_feed = {ref_input: batch}
        variants["reference ONNX (ORT)"] = lambda: ref_session.run(None, ref_feed)
        outputs["reference ONNX (ORT)"] = ref_session.run(None, ref_feed)[0][0]

    torch_version = None
    if not args.no_torch:
        torch = import_torch()

        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
        torch_version = torch.__version__
        model = load_reference(args.ref_weights)
        x = torch.from_numpy(batch)

        def torch_run():
            with torch.inference_mode():
                return model(x)

        variants["reference PyTorch"] = torch_run
        outputs["reference PyTorch"] = torch_run()[0][0].numpy()
        if args.torch_unfused:
            unfused = load_reference(args.ref_weights, fuse=False)

            def torch_unfused_run():
                with torch.inference_mode():
                    return unfused(x)

            variants["reference PyTorch, BN unfused"] = torch_unfused_run
            outputs["reference PyTorch, BN unfused"] = torch_unfused_run()[0][0].numpy()

    for fn in variants.values():
        for _ in range(args.warmup):
            fn()
    rounds = collections.OrderedDict((name, []) for name in variants)
    names = list(variants)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate so no variant always goes first
        for name in order:
            for _ in range(args.warmup):  # let the previous variant's thread pool go idle
                variants[name]()
            rounds[name].append(median_ms(variants[name], args.runs))

    best = {name: min(values) for name, values in rounds.items()}
    base_name = "ours, fused C3"
    reference_name = "reference PyTorch" if "reference PyTorch" in outputs else "reference ONNX (ORT)"
    agreement = [compare(name, rows, outputs[reference_name], 0.25, 0.45)
                 for name, rows in outputs.items() if name != reference_name] if reference_name in outputs else []

    print("CPU: {} cores, load average before the run {}; ONNX Runtime {}, torch {}, threads {}; "
          "input {} letterboxed to {}x{}; {} rounds x {} runs (+{} warm-up)".format(
              os.cpu_count(), LOAD_BEFORE, ort.__version__, torch_version or "-", args.threads,
              os.path.basename(args.image), args.img_size, args.img_size, args.rounds, args.runs, args.warmup))
    print()
    print("| variant | median ms (best round) | round medians ms | time / ours (fused C3) |")
    print("|---|---|---|---|")
    for name in variants:
        print("| {} | {:.1f} | {} | {:.2f} |".format(name, best[name], " / ".join("{:.1f}".format(v) for v in
                                                                                 rounds[name]),
                                                   best[name] / best[base_name]))
    if agreement:
        print()
        print("Agreement with {} on the same input (decoded (1, 25200, 85) rows; NMS conf 0.25 iou 0.45):".format(
            reference_name))
        print()
        print("| variant | max abs err xywh px | max abs err obj/cls | rel err (max abs / max abs ref) | "
              "detections (ref) | same classes in order | max abs err det boxes px | max abs err det scores |")
        print("|---|---|---|---|---|---|---|---|")
        for a in agreement:
            print("| {name} | {box_abs_err_px:.2e} | {score_abs_err:.2e} | {rel_err:.2e} | {detections} "
                  "({reference_detections}) | {same_classes_in_order} | {det_box_abs_err_px:.2e} | "
                  "{det_score_abs_err:.2e} |".format(**a))

    profiles = {}
    if args.profile:
        graphs = [(name, d.engine.model.SerializeToString(), {d.engine.input_name: batch}) for name, d in ours.items()]
        if ref_session is not None:
            with open(args.ref_onnx, "rb") as f:
                graphs.append(("reference ONNX (ORT)", f.read(), ref_feed))
        for name, model_bytes, feed in graphs:
            profiles[name] = profile_graph(ort, model_bytes, feed, args.threads, args.profile)
        print()
        print("ONNX Runtime profile ({} runs each): kernel ms per run by op type (nodes after ORT's "
              "optimizer)".format(args.profile))
        ops = sorted({op for p in profiles.values() for op in p["op_ms_per_run"]},
                     key=lambda op: -max(p["op_ms_per_run"].get(op, 0) for p in profiles.values()))
        print()
        print("| op type | " + " | ".join(profiles) + " |")
        print("|---|" + "---|" * len(profiles))
        for op in ops:
            print("| {} | ".format(op) + " | ".join("{:.2f} ({})".format(
                p["op_ms_per_run"].get(op, 0.0), p["nodes_after_ort"].get(op, 0)) for p in profiles.values()) + " |")
        print("| wall ms per run (profiling on) | " + " | ".join(
            "{:.1f}".format(p["wall_ms_per_run"]) for p in profiles.values()) + " |")
        print()
        for name, p in profiles.items():
            print("nodes of {}: before ORT {} -> after ORT {}".format(name, p["nodes_before"], p["nodes_after_ort"]))

    print()
    env = "PYTHONPATH={} ".format(os.environ["PYTHONPATH"]) if os.environ.get("PYTHONPATH") else ""
    print("command: " + env + " ".join([sys.executable] + sys.argv))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds_ms": rounds, "best_ms": best, "agreement": agreement, "profiles": profiles,
                       "load_before": LOAD_BEFORE, "onnxruntime": ort.__version__, "torch": torch_version,
                       "threads": args.threads, "argv": sys.argv}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
