#!/usr/bin/env python3
"""Make the YOLOv5 v5.0 (Focus + SPP) and P6 test models and their reference outputs with the reference code.

No official v5.0 or P6 checkpoint is in ``../shared``, so this instantiates the reference implementation's own
model classes (PyPI ``yolov5`` 7.0.14, used as a tool from a virtual environment outside the repository: it has
``Focus``, ``SPP`` and the P6 model zoo) from a model yaml, with seeded random weights and non-trivial BatchNorm
statistics, and writes for each model:

- ``<name>.pt``: a real checkpoint laid out as YOLOv5 writes it (``{'model': model.half(), 'ema': None, ...}``,
  pickled under ``models.yolo.Model`` / ``models.common.*``), fp16 as the official files are;
- ``<name>_<image>_<size>.npz``: ``input`` (1, 3, S, S) uint8 (the letterboxed RGB image; the network input is
  it / 255) and ``decoded`` (1, N, 5+nc) float32, the reference Detect output in eval mode with BatchNorm fused;
- ``<name>_<image>_<size>.json``: the reference detections after its NMS (conf 0.25, IoU 0.45, max 300), in
  original-image pixels, as ``../shared/reference/yolov5n/*.json``.

    /work/refvenv/bin/python scripts/make_reference_models.py --out tests/data/models_v50_p6
(the venv: ``pip install torch==2.14.1 torchvision==0.29.1`` and ``yolov5==7.0.14 --no-deps`` plus what it
imports; see BENCHMARKS.md "Reference models").
"""

import argparse
import datetime
import json
import os
import sys

from bench_reference import reference_env  # scripts/: the same offline shims for the reference code
from train_fire_smoke import to_official_layout  # pickled under the official checkpoints' module paths

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
NAMES = ["alpha", "beta"]  # nc=2 keeps `decoded` small (7 columns) while still exercising class-aware NMS
CONF, IOU, MAX_DET = 0.25, 0.45, 300
DETECT_WEIGHT_SCALE = 0.25  # Detect's output convs are kept small, as a trained model's are
TARGET_PASSING = (30, 80)  # candidates above CONF on the first image after calibrate_detect_bias
# (model name, yaml, seed, [(image, input size), ...]); the v5.0 yaml is ours (the v5.0 layout at n multiples),
# the P6 yaml is the reference's own model-zoo file.
MODELS = [
    ("yolov5n_v50", os.path.join(REPO, "configs", "models", "yolov5n-v5.0.yaml"), 50,
     [("bus", 320), ("zidane", 320)]),
    ("yolov5n6", "hub/yolov5n6.yaml", 6, [("zidane", 640)]),
]




def randomize(model, seed):
    """Seeded random conv weights and BatchNorm affine + running statistics far from the identity."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (1.6 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.5 - 1.5)
            elif isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=gen) * 1.0 + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.2)
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
                module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.25)
                module.num_batches_tracked.fill_(1000)
        for conv in model.model[-1].m:
            conv.weight.mul_(DETECT_WEIGHT_SCALE)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 0.3)


def calibrate_detect_bias(model, x):
    """Shift the objectness and class logits so that a few dozen candidates (not every cell) pass conf 0.25 on
    ``x``: random weights otherwise give all or nothing. Bisection, rounded to 1/64, so it is repeatable."""
    import torch

    detect = model.model[-1]
    no = detect.no
    low, high = -12.0, 12.0
    for _ in range(12):
        shift = round((low + high) / 2 * 64) / 64
        with torch.no_grad():
            for conv in detect.m:
                conv.bias.view(detect.na, no)[:, 4:] += shift
            decoded = model(x)[0][0]
            for conv in detect.m:
                conv.bias.view(detect.na, no)[:, 4:] -= shift
        passing = int(((decoded[:, 4:5] * decoded[:, 5:]).max(1).values > CONF).sum())
        if passing < TARGET_PASSING[0]:
            low = shift
        elif passing > TARGET_PASSING[1]:
            high = shift
        else:
            break
    with torch.no_grad():
        for conv in detect.m:
            conv.bias.view(detect.na, no)[:, 4:] += shift
    return shift




def make_model(cfg_path, seed):
    import torch
    import yaml
    import yolov5
    from yolov5.models.yolo import Model

    if not os.path.isabs(cfg_path):
        cfg_path = os.path.join(os.path.dirname(yolov5.__file__), "models", cfg_path)
    with open(cfg_path) as handle:
        cfg = yaml.safe_load(handle)
    cfg["nc"] = len(NAMES)
    torch.manual_seed(seed)
    model = Model(cfg, ch=3, nc=len(NAMES)).eval()
    randomize(model, seed)
    model.names = list(NAMES)
    return model


def letterboxed(image_name, size):
    """(original BGR image, (1, 3, S, S) uint8 RGB letterbox) exactly as the reference pre-processes."""
    import cv2
    import numpy as np
    from yolov5.utils.augmentations import letterbox

    image = cv2.imread(os.path.join(SHARED, "images", image_name + ".jpg"))
    padded = letterbox(image, size, auto=False)[0]
    return image, np.ascontiguousarray(padded[:, :, ::-1].transpose(2, 0, 1))[None]


def save_checkpoint(model, path):
    import copy

    import torch

    to_official_layout(model)
    ckpt = {"epoch": -1, "best_fitness": None, "model": copy.deepcopy(model).half(), "ema": None, "updates": None,
            "optimizer": None, "wandb_id": None, "date": datetime.datetime(2026, 1, 1).isoformat()}
    torch.save(ckpt, path)


def reference_outputs(model, image_name, size, out_stem):
    import numpy as np
    import torch
    from yolov5.utils.general import non_max_suppression, scale_boxes

    fused = model.fuse().eval()
    image, rgb = letterboxed(image_name, size)
    x = rgb.astype(np.float32) / 255.0
    with torch.no_grad():
        decoded = fused(torch.from_numpy(x))[0]
    det = non_max_suppression(decoded, CONF, IOU, max_det=MAX_DET)[0]
    det[:, :4] = scale_boxes(x.shape[2:], det[:, :4], image.shape)
    rows = [{"class_id": int(c), "class_name": NAMES[int(c)], "confidence": round(float(s), 6),
             "box": [round(float(v), 3) for v in box]} for *box, s, c in det.tolist()]
    record = {"image": image_name + ".jpg", "size": size, "conf": CONF, "iou": IOU, "detections": rows}
    with open(out_stem + ".json", "w") as handle:
        json.dump(record, handle, indent=1)
    np.savez_compressed(out_stem + ".npz", input=rgb, decoded=decoded.numpy().astype(np.float32))
    print("{}: {} candidates, {} detections".format(out_stem, decoded.shape[1], len(rows)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(REPO, "tests", "data", "models_v50_p6"))
    args = parser.parse_args(argv)
    reference_env()
    import torch

    torch.set_num_threads(2)
    os.makedirs(args.out, exist_ok=True)
    for name, cfg_path, seed, runs in MODELS:
        import numpy as np

        model = make_model(cfg_path, seed)
        first = letterboxed(*runs[0])[1].astype(np.float32) / 255.0
        shift = calibrate_detect_bias(model, torch.from_numpy(first))
        # the checkpoint stores fp16: the reference outputs come from exactly those values, read back as float32
        model = model.half().float().eval()
        print("{}: Detect logits shifted by {}".format(name, shift))
        save_checkpoint(model, os.path.join(args.out, name + ".pt"))
        for image_name, size in runs:
            reference_outputs(model, image_name, size, os.path.join(args.out, "{}_{}_{}".format(
                name, image_name, size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
