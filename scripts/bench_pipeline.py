"""Full-loop FPS vs inference-only FPS on the same frames (target: the loop reaches >= 90% of inference alone).

    python scripts/bench_pipeline.py --weights ../shared/weights/yolov5n.wts --backend onnxruntime --img-size 320

Inference alone: ``detector.detect(frame)`` back to back on frames already decoded in memory (pre-process, network,
NMS, box scaling). Full loop: the same frames from a video file through the staged pipeline (capture and decode,
pre-process, infer, draw, outputs: JSON lines + the HTTP view with one MJPEG viewer reading).
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request

import cv2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from jetson_detect.app.pipeline import Pipeline  # noqa: E402
from jetson_detect.backends.detector import create_detector  # noqa: E402
from jetson_detect.video.sinks import HttpSink, JsonlSink  # noqa: E402
from jetson_detect.video.sources import open_source  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def write_video(path: str, frame_count: int, width: int, height: int) -> None:
    """A video of COCO and fire/smoke photos (resized to width x height), repeated up to frame_count frames."""
    folders = [os.path.join(SHARED, "data", "coco64", "images"), os.path.join(SHARED, "data", "fire_smoke", "images")]
    paths = sorted(os.path.join(f, n) for f in folders for n in os.listdir(f) if n.lower().endswith(".jpg"))
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (width, height))
    for i in range(frame_count):
        writer.write(cv2.resize(cv2.imread(paths[i % len(paths)]), (width, height)))
    writer.release()


def decode_all(path: str):
    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def limit_onnxruntime_threads(detector, threads: int) -> None:
    """Re-create the CPU backend's ONNX Runtime session with ``threads`` intra-op threads (same model)."""
    import onnxruntime as ort
    engine = detector.engine
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    engine.session = ort.InferenceSession(engine.model.SerializeToString(), options,
                                          providers=["CPUExecutionProvider"])


def inference_only_fps(detector, frames) -> float:
    start = time.perf_counter()
    for frame in frames:
        detector.detect(frame)
    return len(frames) / (time.perf_counter() - start)


def full_loop_fps(detector, video: str, workdir: str, viewer: bool):
    sinks = [JsonlSink(os.path.join(workdir, "bench.jsonl"))]
    stop_viewer = threading.Event()
    if viewer:
        http = HttpSink("http://127.0.0.1:0", note=lambda m: None)
        sinks.append(http)

        def watch() -> None:
            stream = urllib.request.urlopen(http.url + "stream.mjpg", timeout=10)
            while not stop_viewer.is_set() and stream.read(65536):
                pass
            stream.close()

        threading.Thread(target=watch, daemon=True).start()
        time.sleep(0.2)
    pipeline = Pipeline(detector, open_source(video), sinks, note=lambda m: None)
    start = time.monotonic()
    summary = pipeline.run()
    # Up to the last frame out: closing the outputs afterwards (the web server's shutdown) is not frame work.
    elapsed = pipeline.stats.last_output_time - start
    stop_viewer.set()
    return summary["frames"] / elapsed, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=os.path.join(SHARED, "weights", "yolov5n.wts"))
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each; the best of each counts")
    parser.add_argument("--no-viewer", action="store_true", help="no HTTP view in the loop")
    parser.add_argument("--ort-threads", type=int, default=None,
                        help="ONNX Runtime intra-op threads (default: the backend's, one per core); 1 leaves the "
                             "other cores to capture/draw, as a GPU backend does")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    detector = create_detector(weights=args.weights, backend=args.backend, img_size=args.img_size)
    if args.ort_threads:
        limit_onnxruntime_threads(detector, args.ort_threads)
    with tempfile.TemporaryDirectory() as workdir:
        video = os.path.join(workdir, "bench.mp4")
        write_video(video, args.frames, args.width, args.height)
        frames = decode_all(video)
        for frame in frames[:10]:
            detector.detect(frame)  # warm-up
        inference, loop, summary = [], [], {}
        for _ in range(args.repeats):
            inference.append(inference_only_fps(detector, frames))
            fps, summary = full_loop_fps(detector, video, workdir, viewer=not args.no_viewer)
            loop.append(fps)
    result = {
        "backend": getattr(detector, "backend_name", args.backend), "img_size": args.img_size,
        "frames": len(frames), "frame_size": "{}x{}".format(args.width, args.height),
        "cpu_count": os.cpu_count(), "inference_only_fps": [round(v, 2) for v in inference],
        "full_loop_fps": [round(v, 2) for v in loop],
        "ratio_best": round(max(loop) / max(inference), 3),
        "loop_mean_stage_ms": summary.get("mean_stage_ms"), "viewer": not args.no_viewer,
        "ort_threads": args.ort_threads or "default (one per core)",
    }
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
