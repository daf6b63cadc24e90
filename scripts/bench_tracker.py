#!/usr/bin/env python3
"""Tracker id switches on a steady fire: the shipped fire/smoke model (CPU backend) on real fire photos, each
repeated as a video with a few pixels of camera shake and flicker in brightness, optionally with dropped frames.

For every labelled fire box (moved with the shake), the detection overlapping it most (IoU >= 0.5) is followed;
an id switch is a frame whose matched track id differs from the one matched before for that box. Also counted:
the frames where the box was matched at all (the detector's share, not the tracker's).

    python scripts/bench_tracker.py --images 5 --frames 60
    python scripts/bench_tracker.py --images 5 --frames 60 --drop-every 7
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from jetson_detect.app.tracker import Tracker, iou_matrix  # noqa: E402
from jetson_detect.backends.detector import create_detector  # noqa: E402
from jetson_detect.math.nms import Detections  # noqa: E402

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(HERE, "..", "shared", "data", "fire_smoke")


def fire_images(count):
    """The first ``count`` photos whose labels hold fire (class 0), with their fire boxes in pixels."""
    found = []
    for name in sorted(os.listdir(os.path.join(DATA, "labels"))):
        rows = [line.split() for line in open(os.path.join(DATA, "labels", name)) if line.strip()]
        fires = [[float(v) for v in row[1:5]] for row in rows if row[0] == "0"]
        image_path = os.path.join(DATA, "images", name[:-4] + ".jpg")
        if not fires or not os.path.exists(image_path):
            continue
        image = cv2.imread(image_path)
        h, w = image.shape[:2]
        boxes = np.array([[(x - bw / 2) * w, (y - bh / 2) * h, (x + bw / 2) * w, (y + bh / 2) * h]
                          for x, y, bw, bh in fires])
        found.append((name[:-4], image, boxes))
        if len(found) == count:
            break
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=os.path.join(HERE, "weights", "fire_smoke_yolov5n.pt"))
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--shake-px", type=int, default=4)
    parser.add_argument("--drop-every", type=int, default=0, help="every Nth frame has no detections (0: none)")
    parser.add_argument("--img-size", type=int, default=640)
    args = parser.parse_args()
    detector = create_detector(weights=args.weights, backend="onnxruntime", img_size=args.img_size)
    rng = np.random.RandomState(0)
    total_switches = total_matched = total_boxes = 0
    print("| image | fire boxes | frames | matched box-frames | tracks made | id switches |")
    print("|---|---|---|---|---|---|")
    for name, image, boxes in fire_images(args.images):
        tracker = Tracker()
        last = [None] * len(boxes)
        switches = matched = 0
        h, w = image.shape[:2]
        for index in range(args.frames):
            dx, dy = rng.randint(-args.shake_px, args.shake_px + 1, 2)
            gain = rng.uniform(0.9, 1.1)
            frame = cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h))
            frame = np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8)
            detections = detector.detect(frame)
            if args.drop_every and index % args.drop_every == args.drop_every - 1:
                detections = Detections.empty()
            tracked = tracker.update(detections)
            fire = tracked.class_ids == 0
            if not fire.any():
                continue
            overlap = iou_matrix(boxes + [dx, dy, dx, dy], tracked.boxes[fire])
            ids = tracked.track_ids[fire]
            for box_index in range(len(boxes)):
                best = int(np.argmax(overlap[box_index]))
                if overlap[box_index, best] < 0.5:
                    continue
                matched += 1
                if last[box_index] is not None and ids[best] != last[box_index]:
                    switches += 1
                last[box_index] = int(ids[best])
        print("| {} | {} | {} | {} | {} | {} |".format(name, len(boxes), args.frames, matched, tracker.next_id - 1,
                                                     switches))
        total_switches += switches
        total_matched += matched
        total_boxes += len(boxes) * args.frames
    print("\ntotal: {} id switches over {} matched box-frames ({} box-frames shown)".format(
        total_switches, total_matched, total_boxes))


if __name__ == "__main__":
    main()
