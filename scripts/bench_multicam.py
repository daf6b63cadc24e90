#!/usr/bin/env python3
"""Several cameras in one process (one detector, batched) against the same cameras as separate processes.

For 1, 2 and 4 cameras, CPU backend: aggregate detections per second (frames detected, all cameras together, from
the moment every process has its model loaded until the last frame) and peak RSS (one process: its own peak;
separate processes: the sum of their peaks, the memory the machine must have). Each camera is a video of
../shared/data/fire_smoke images; every frame is detected (file cameras). A shared machine's speed drifts, so the
cases run interleaved, ``--rounds`` times, and the table gives the median (and range) of each. One run measures
every case:

    python scripts/bench_multicam.py --weights ../shared/weights/yolov5n.wts --img-size 320 --frames 48 --rounds 5
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cv2  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared")
FRAME_SIZE = (640, 480)


def write_videos(folder, count, frames):
    """``count`` different videos of ``frames`` fire/smoke photos each (MJPG .avi)."""
    images_dir = os.path.join(SHARED, "data", "fire_smoke", "images")
    images = sorted(os.path.join(images_dir, n) for n in os.listdir(images_dir) if n.endswith(".jpg"))
    paths = []
    for camera in range(count):
        path = os.path.join(folder, "cam{}.avi".format(camera))
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, FRAME_SIZE)
        for i in range(frames):
            writer.write(cv2.resize(cv2.imread(images[(camera * frames + i) % len(images)]), FRAME_SIZE))
        writer.release()
        paths.append(path)
    return paths


def worker(args):
    """One process: load the detector for len(videos) cameras, say ready, wait for 'go', run, report."""
    from jetson_detect.app.pipeline import Camera, Pipeline
    from jetson_detect.backends.detector import create_detector
    from jetson_detect.video.sources import OpenCVSource

    detector = create_detector(args.weights, backend="onnxruntime", img_size=args.img_size, batch=len(args.videos))
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    cameras = [Camera("cam{}".format(i), OpenCVSource(path, path)) for i, path in enumerate(args.videos)]
    summary = Pipeline(detector, cameras, [], note=lambda message: None).run()
    seconds = time.monotonic() - start
    print(json.dumps({"frames": summary["frames"], "seconds": seconds,
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}), flush=True)


def run_together(args, groups):
    """One worker process per group of videos, started together once all are loaded; (frames, seconds, rss)."""
    processes = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", "--weights", args.weights,
                                   "--img-size", str(args.img_size), "--videos"] + group,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
                 for group in groups]
    for process in processes:
        line = process.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit("worker failed before it was ready")
    start = time.monotonic()
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    reports = [json.loads(process.stdout.readline()) for process in processes]
    seconds = time.monotonic() - start
    for process in processes:
        process.wait()
    return sum(r["frames"] for r in reports), seconds, sum(r["max_rss_mb"] for r in reports)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--frames", type=int, default=48, help="frames per camera")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=5, help="times every case runs (interleaved)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--videos", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    runs = {}  # (cameras, "one" | "separate") -> [(det/s, peak RSS MB)]
    with tempfile.TemporaryDirectory() as folder:
        videos = write_videos(folder, max(args.cameras), args.frames)
        for _ in range(args.rounds):
            for count in args.cameras:
                chosen = videos[:count]
                for mode, groups in (("one", [chosen]), ("separate", [[v] for v in chosen])):
                    frames, seconds, rss = run_together(args, groups)
                    runs.setdefault((count, mode), []).append((frames / seconds, rss))

    def cell(count, mode):
        rates = [rate for rate, _ in runs[(count, mode)]]
        return "{:.1f} ({:.1f}-{:.1f})".format(statistics.median(rates), min(rates), max(rates))

    def rss(count, mode):
        return statistics.median([peak for _, peak in runs[(count, mode)]])

    print("| cameras | one process (batch = cameras): det/s, median (range) | peak RSS MB | separate processes: "
          "det/s, median (range) | peak RSS MB (sum) | one process RSS / 1-camera RSS |")
    print("|---|---|---|---|---|---|")
    for count in args.cameras:
        print("| {} | {} | {:.0f} | {} | {:.0f} | {:.2f}x |".format(
            count, cell(count, "one"), rss(count, "one"), cell(count, "separate"), rss(count, "separate"),
            rss(count, "one") / rss(args.cameras[0], "one")))


if __name__ == "__main__":
    main()
