"""Options shared by the commands that load a model (run, eval, export-onnx, build)."""

import argparse
from typing import Optional


def add_model_arguments(parser: argparse.ArgumentParser, conf: float = 0.25, iou: float = 0.45) -> None:
    """--weights, --cfg, --img-size and the detection thresholds."""
    parser.add_argument("--weights", help="YOLOv5 weights: tensorrtx .wts or a .pt checkpoint (read without PyTorch)")
    parser.add_argument("--cfg", help="model yaml (configs/models/yolov5n.yaml...); default: inferred from the "
                                      "weights")
    parser.add_argument("--img-size", type=int, default=640, help="square network input size (multiple of 32)")
    parser.add_argument("--conf", type=float, default=conf, help="confidence threshold")
    parser.add_argument("--iou", type=float, default=iou, help="NMS IoU threshold")
    parser.add_argument("--max-det", type=int, default=300, help="at most this many detections per image")
    parser.add_argument("--class-agnostic", action="store_true", help="suppress overlapping boxes across classes")
    parser.add_argument("--c3-fusion", choices=("auto", "on", "off"), default="auto",
                        help="merge C3's two parallel 1x1 convs into one (same numbers). auto: on for TensorRT, off "
                             "for ONNX Runtime, where the channel slices it needs cost more than it saves")
    parser.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "onnxruntime"),
                        help="auto: TensorRT when it imports and a GPU is present, else ONNX Runtime on the CPU")


def c3_fusion_choice(args: argparse.Namespace) -> Optional[bool]:
    """--c3-fusion as the detector takes it: None lets the backend choose."""
    return {"auto": None, "on": True, "off": False}[getattr(args, "c3_fusion", "auto")]
