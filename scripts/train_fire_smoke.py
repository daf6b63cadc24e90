#!/usr/bin/env python3
"""Fine-tune the COCO YOLOv5n on the fire/smoke data with the reference YOLOv5 training code (PyPI ``yolov5``).

Three steps, see weights/README.md for the exact commands:
  ``wheels`` (here)  download the training code and what the GPU machine lacks into ``.carry/train/wheels/``;
  ``pack``   (here)  split the data (fixed seed), re-encode it to fit one device call, tar it into ``.carry/train/``;
  ``device`` (GPU)   train, export the shipped checkpoint + yaml, run the parity forward pass and the val runs.
The training code is a tool installed at run time; nothing of it is vendored into this repository.
"""

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
NAMES = ["fire", "smoke"]
SEED = 0
VAL_FRACTION = 0.10
JPEG_QUALITY = 80
# Images the parity forward pass runs on: 3 fires; fire + smoke; 2 smokes; 3 smokes.
PARITY_IMAGES = ["fire-image_16.jpg", "fire-image_27.jpg", "smoke-image_10.jpg", "smoke-image_29.jpg"]
# Pinned so that the recipe is repeatable. yolov5 7.0.14 imports ultralytics, roboflow and huggingface_hub at
# module level; the others are what those import and the GPU machine's image lacks (setuptools < 81 still ships
# pkg_resources, which yolov5 imports).
WHEELS = [
    "yolov5==7.0.14",
    "ultralytics==8.2.103",
    "huggingface_hub==0.24.7",
    "roboflow==1.7.3",
    "python-dotenv==1.2.4",
    "requests-toolbelt==1.0.0",
    "filetype==1.2.0",
    "pillow-avif-plugin==1.6.0",
    "setuptools==80.10.2",
]


def cmd_wheels(args: argparse.Namespace) -> int:
    """Download the pinned wheels for the GPU machine (CPython 3.12, x86-64) into ``args.out``."""
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
            "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
            "--platform", "manylinux2014_x86_64", "-d", str(args.out)]
    return subprocess.call(base + WHEELS)


def _split(names, seed, fraction):
    """Hold out ``fraction`` of each source group (file-name prefix), shuffled with ``seed``: (train, val)."""
    groups = {}
    for name in sorted(names):
        groups.setdefault(name.rsplit("_", 1)[0], []).append(name)
    rng = random.Random(seed)
    train, val = [], []
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        n_val = round(len(members) * fraction)
        val += sorted(members[:n_val])
        train += sorted(members[n_val:])
    return train, val


def _add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # byte-identical tars for identical inputs
    tar.addfile(info, io.BytesIO(data))


def cmd_pack(args: argparse.Namespace) -> int:
    """Split, re-encode and tar the training data plus the base weights and the evaluation set into one file."""
    import cv2

    data = Path(args.data)
    names = sorted(p.name for p in (data / "images").glob("*.jpg"))
    train, val = _split(names, args.seed, args.val_fraction)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(str(args.out), "w:gz", compresslevel=6) as tar:
        for name in names:
            image = cv2.imread(str(data / "images" / name))
            scale = args.max_side / max(image.shape[:2])
            if scale < 1:
                image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                                   interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, args.quality])
            assert ok, name
            _add_bytes(tar, "train/images/" + name, buf.tobytes())
            label = data / "labels" / (name[:-4] + ".txt")
            if label.exists():
                _add_bytes(tar, "train/labels/" + label.name, label.read_bytes())
        _add_bytes(tar, "train/train.txt", "".join(f"images/{n}\n" for n in train).encode())
        _add_bytes(tar, "train/val.txt", "".join(f"images/{n}\n" for n in val).encode())
        split = {"seed": args.seed, "val_fraction": args.val_fraction, "jpeg_quality": args.quality,
                 "max_side": args.max_side, "train": len(train), "val": len(val), "val_images": val}
        _add_bytes(tar, "train/split.json", json.dumps(split, indent=1).encode())
        evaluation = Path(args.eval_data)
        for path in sorted(evaluation.glob("images/*")) + sorted(evaluation.glob("labels/*")):
            _add_bytes(tar, "eval/" + path.parent.name + "/" + path.name, path.read_bytes())
        _add_bytes(tar, "yolov5n.pt", Path(args.weights).read_bytes())
    print(f"{args.out}: {len(train)} train, {len(val)} val images, {args.out.stat().st_size / 1e6:.1f} MB")
    return 0


def _compat():
    """Let the 2022-era training code run on the GPU machine's numpy 2.x / torch 2.x without editing it."""
    # torch >= 2.6 loads checkpoints weights-only by default; the YOLOv5 checkpoints pickle whole modules.
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    import numpy as np
    import torch

    if not hasattr(np, "trapz"):  # removed in numpy 2.4; yolov5's compute_ap calls it
        np.trapz = np.trapezoid
    # torch.cuda.amp.* are deprecated aliases; provide them only where this torch has dropped them
    if not hasattr(torch.cuda.amp, "autocast"):
        torch.cuda.amp.autocast = lambda enabled=True, **kw: torch.autocast("cuda", enabled=enabled, **kw)
    if not hasattr(torch.cuda.amp, "GradScaler"):
        torch.cuda.amp.GradScaler = lambda enabled=True, **kw: torch.amp.GradScaler("cuda", enabled=enabled, **kw)


def to_official_layout(model):
    """Pickle the model under the module paths of the official checkpoints (``models.yolo.Model`` etc.)."""
    from yolov5.models import common, yolo

    sys.modules.setdefault("models", sys.modules["yolov5.models"])
    sys.modules["models.common"] = common
    sys.modules["models.yolo"] = yolo
    for module in model.modules():
        cls = type(module)
        if cls.__module__ in ("yolov5.models.common", "models.common"):
            cls.__module__ = "models.common"
        elif cls.__module__ in ("yolov5.models.yolo", "models.yolo"):
            cls.__module__ = "models.yolo"
            if cls is yolo.DetectionModel:
                cls.__qualname__ = "Model"  # yolo.Model is DetectionModel, so pickle finds it under that name


def _pickle_globals(path):
    """The ``module name`` globals a .pt checkpoint's pickle refers to."""
    import pickletools
    import zipfile

    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
    found = set()
    ops = list(pickletools.genops(data))
    for i, (op, arg, _) in enumerate(ops):
        if op.name == "GLOBAL":
            found.add(arg)
        elif op.name == "STACK_GLOBAL":
            found.add(f"{ops[i - 2][1]} {ops[i - 1][1]}")
    return found


def export(best_pt, out_pt, out_yaml, img_size, base_pt):
    """Write the shipped checkpoint (EMA weights, fp16, no optimizer, official layout) and its model yaml."""
    import datetime

    import torch
    import yaml

    ckpt = torch.load(str(best_pt), map_location="cpu", weights_only=False)
    model = (ckpt.get("ema") or ckpt["model"]).half().eval()
    for p in model.parameters():
        p.requires_grad = False
    model.names = list(NAMES)
    to_official_layout(model)
    shipped = {"epoch": -1, "best_fitness": None, "model": model, "ema": None, "updates": None, "optimizer": None,
               "wandb_id": None, "date": datetime.datetime.now().isoformat()}
    torch.save(shipped, str(out_pt))
    official = _pickle_globals(str(base_pt))
    extra = sorted(_pickle_globals(str(out_pt)) - official)
    print(f"export: {out_pt} {out_pt.stat().st_size / 1e6:.2f} MB; "
          f"pickle globals beyond the official yolov5n.pt: {extra or 'none'}")
    detect = model.model[-1]
    meta = {
        "nc": len(NAMES),
        "names": list(NAMES),
        "depth_multiple": model.yaml["depth_multiple"],
        "width_multiple": model.yaml["width_multiple"],
        "input_size": img_size,
        "strides": [int(s) for s in detect.stride.tolist()],
        # anchors in pixels per level (Detect.anchors holds them divided by the stride)
        "anchors": [[round(float(v), 4) for v in (a * s).reshape(-1).tolist()]
                    for a, s in zip(detect.anchors.float(), detect.stride.float())],
        "backbone": model.yaml["backbone"],
        "head": model.yaml["head"],
        "base_weights": "yolov5n.pt (COCO, ultralytics/yolov5 v6.1 release)",
        "training_code": "yolov5 7.0.14 (PyPI)",
    }
    layers = {key: meta.pop(key) for key in ("backbone", "head")}
    text = yaml.safe_dump(meta, sort_keys=False, default_flow_style=None)
    for key, rows in layers.items():  # one flow-style row per layer, as in the upstream model yamls
        text += key + ":\n" + "".join("  - " + yaml.safe_dump(row, default_flow_style=True).strip() + "\n"
                                      for row in rows)
    out_yaml.write_text("# fire/smoke YOLOv5n: model structure and metadata (written by scripts/train_fire_smoke.py)\n"
                        + text)
    return model


def parity(weights, images, out_dir, img_size, conf=0.25, iou=0.45):
    """Reference forward pass (CPU, float32, BatchNorm fused) + NMS on ``images``; JSON + npz per image."""
    import cv2
    import numpy as np
    import torch
    from yolov5.utils.augmentations import letterbox
    from yolov5.utils.general import non_max_suppression, scale_boxes

    model = torch.load(str(weights), map_location="cpu", weights_only=False)["model"].float().fuse().eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in images:
        image = cv2.imread(str(path))
        padded = letterbox(image, img_size, auto=False)[0]
        x = np.ascontiguousarray(padded[:, :, ::-1].transpose(2, 0, 1))[None].astype(np.float32) / 255.0
        with torch.no_grad():
            decoded = model(torch.from_numpy(x))[0]
        det = non_max_suppression(decoded, conf, iou, max_det=300)[0]
        det[:, :4] = scale_boxes(x.shape[2:], det[:, :4], image.shape)
        rows = [{"class_id": int(c), "class_name": NAMES[int(c)], "confidence": round(float(s), 6),
                 "box": [round(float(v), 3) for v in box]} for *box, s, c in det.tolist()]
        record = {"image": path.name, "size": img_size, "conf": conf, "iou": iou, "detections": rows}
        stem = path.stem
        (out_dir / (stem + ".json")).write_text(json.dumps(record, indent=1))
        np.savez_compressed(str(out_dir / (stem + ".npz")), input=x, decoded=decoded.numpy())
        print(f"parity: {path.name} {len(rows)} detections")


class _OutOfTime(Exception):
    """Raised from the epoch callback when the device call's time is nearly up."""


def cmd_device(args: argparse.Namespace) -> int:
    """On the GPU machine: unpack, train, export, parity, val on the held-out split and on the evaluation set."""
    _compat()
    start = time.time()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with tarfile.open(str(args.tar)) as tar:
        tar.extractall(str(work), filter="data")
    train_dir, eval_dir = work / "train", work / "eval"
    for split in ("train", "val"):
        lines = (train_dir / (split + ".txt")).read_text().split()
        (train_dir / (split + "_abs.txt")).write_text("".join(str(train_dir / n) + "\n" for n in lines))
    data_yaml = work / "fire_smoke.yaml"
    data_yaml.write_text(json.dumps({"path": str(train_dir), "train": str(train_dir / "train_abs.txt"),
                                     "val": str(train_dir / "val_abs.txt"), "nc": 2,
                                     "names": list(NAMES)}))
    eval_yaml = work / "fire_smoke_eval.yaml"
    eval_yaml.write_text(json.dumps({"path": str(eval_dir), "train": str(eval_dir / "images"),
                                     "val": str(eval_dir / "images"), "nc": 2,
                                     "names": list(NAMES)}))
    print(f"unpacked in {time.time() - start:.1f} s")
    # yolov5 fetches Arial.ttf from the internet for its plots (off here); the GPU machine is offline, so a
    # local font stands in under the name it looks for.
    import matplotlib

    config = work / "config"
    config.mkdir(exist_ok=True)
    os.environ["YOLOV5_CONFIG_DIR"] = str(config)
    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    (config / "Arial.ttf").write_bytes(font.read_bytes())

    sys.argv = sys.argv[:1]  # yolov5's parse_opt reads sys.argv
    from yolov5 import train as y5train
    from yolov5 import val as y5val
    from yolov5.utils.callbacks import Callbacks

    opt = y5train.parse_opt(True)
    settings = {"weights": str(work / "yolov5n.pt"), "data": str(data_yaml), "imgsz": args.img,
                "epochs": args.epochs, "batch_size": args.batch, "workers": args.workers, "cache": "ram",
                "seed": args.seed, "device": "0", "project": str(work / "runs"), "name": "fire_smoke",
                "exist_ok": True, "noplots": True}
    for key, value in settings.items():
        setattr(opt, key, value)
    print("train settings: " + json.dumps(settings))
    callbacks = Callbacks()
    epoch_start = [time.time()]

    def on_fit_epoch_end(log_vals, epoch, best_fitness, fi):
        now = time.time()
        print(f"epoch {epoch} done in {now - epoch_start[0]:.1f} s ({now - start:.1f} s since start)", flush=True)
        epoch_start[0] = now
        results = work / "runs" / "fire_smoke" / "results.csv"
        if results.exists():  # what comes back if the call runs out of time
            (Path(args.out) / "results.csv").write_bytes(results.read_bytes())
        if args.stop_after_s and now - start > args.stop_after_s:
            raise _OutOfTime(epoch)

    callbacks.register_action("on_fit_epoch_end", callback=on_fit_epoch_end)
    stem = args.stem
    if not args.skip_train:
        try:
            y5train.main(opt, callbacks)
        except _OutOfTime as cut:
            # a cut schedule is a different recipe: exported under another name so nobody ships it by mistake
            print(f"CUT: stopped after epoch {cut.args[0]} of {args.epochs} (--stop-after-s {args.stop_after_s})")
            stem += "_cut"
    print(f"training finished {time.time() - start:.1f} s after start")

    run_dir = work / "runs" / "fire_smoke"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pt, yml = out / (stem + ".pt"), out / (stem + ".yaml")
    export(run_dir / "weights" / "best.pt", pt, yml, args.img, work / "yolov5n.pt")
    parity(pt, [eval_dir / "images" / n for n in PARITY_IMAGES], work / "parity", args.img)
    for title, data in (("held-out val split", data_yaml), ("evaluation set ../shared/data/fire_smoke", eval_yaml)):
        print(f"val ({title}), shipped checkpoint:")
        y5val.run(data=str(data), weights=str(pt), imgsz=args.img, batch_size=32, conf_thres=0.001, iou_thres=0.6,
                  device="0", verbose=True, plots=False, project=str(work / "val"), name="v", exist_ok=True)
    with tarfile.open(str(out / "parity.tar"), "w") as tar:
        tar.add(str(work / "parity"), arcname="parity")
    with tarfile.open(str(out / "run_meta.tar"), "w") as tar:
        for name in ("opt.yaml", "hyp.yaml", "results.csv"):
            tar.add(str(run_dir / name), arcname=name)
        tar.add(str(train_dir / "split.json"), arcname="split.json")
    (out / "results.csv").write_bytes((run_dir / "results.csv").read_bytes())
    print(f"all done {time.time() - start:.1f} s after start")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("wheels", help="download the training code's wheels for the GPU machine")
    p.add_argument("--out", type=Path, default=REPO / ".carry" / "train" / "wheels")
    p.set_defaults(func=cmd_wheels)
    p = sub.add_parser("pack", help="split + re-encode the data into one tar for the GPU machine")
    p.add_argument("--data", default=str(SHARED / "data" / "fire_smoke_train"))
    p.add_argument("--eval-data", default=str(SHARED / "data" / "fire_smoke"))
    p.add_argument("--weights", default=str(SHARED / "weights" / "yolov5n.pt"))
    p.add_argument("--out", type=Path, default=REPO / ".carry" / "train" / "fire_smoke_train.tar.gz")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--val-fraction", type=float, default=VAL_FRACTION)
    p.add_argument("--quality", type=int, default=JPEG_QUALITY)
    p.add_argument("--max-side", type=int, default=640)
    p.set_defaults(func=cmd_pack)
    p = sub.add_parser("device", help="train + export + parity + val (on the GPU machine)")
    p.add_argument("--tar", type=Path, default=REPO / ".carry" / "train" / "fire_smoke_train.tar.gz")
    p.add_argument("--workdir", default="/tmp/fire_smoke")
    p.add_argument("--out", default=os.environ.get("OUT", "out"))
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--img", type=int, default=640)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=12)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--stem", default="fire_smoke_yolov5n", help="file name of the shipped .pt/.yaml, no suffix")
    p.add_argument("--stop-after-s", type=float, default=0,
                   help="stop training after the first epoch that ends this long after start (0: never)")
    p.add_argument("--skip-train", action="store_true", help="only export/parity/val an earlier run in --workdir")
    p.set_defaults(func=cmd_device)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
