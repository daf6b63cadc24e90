"""Options shared by the commands that load a model (run, eval, export-onnx, build).

Every numeric flag is parsed by ``ranged(flag)``: its range is the one in ``jetson_detect.option_ranges`` (the same
table the config file and the detector use), and a bad value (out of range, NaN, not a number) is a one-line
``JetsonDetectError`` raised while parsing, before any model is loaded. Flags with a non-None default record that
they were given (``RecordGiven``), so a value typed on the command line beats the config file even when it equals
the default.
"""

import argparse
from typing import Any, Callable, Optional

from ..app.config import RecordGiven
from ..option_ranges import parse_value


def ranged(flag: str) -> Callable[[str], Any]:
    """The argparse ``type`` of a numeric flag: its text as a number inside its range, else a one-line error.
    (argparse turns only ValueError/TypeError into usage errors, so the JetsonDetectError reaches the CLI.)"""
    def parse(text: str) -> Any:
        return parse_value(flag, text)
    parse.__name__ = flag.lstrip("-").replace("-", "_")
    return parse


def add_model_arguments(parser: argparse.ArgumentParser, conf: float = 0.25, iou: float = 0.45) -> None:
    """--weights, --cfg, --img-size and the detection thresholds."""
    parser.add_argument("--weights", help="YOLOv5 weights: tensorrtx .wts or a .pt checkpoint (read without PyTorch)")
    parser.add_argument("--cfg", help="model yaml (configs/models/yolov5n.yaml...); default: inferred from the "
                                      "weights")
    parser.add_argument("--img-size", type=ranged("--img-size"), default=640, action=RecordGiven,
                        help="square network input size (a multiple of 32 from 32 to 4096)")
    parser.add_argument("--conf", type=ranged("--conf"), default=conf, action=RecordGiven,
                        help="confidence threshold, >= 0 and < 1")
    parser.add_argument("--iou", type=ranged("--iou"), default=iou, action=RecordGiven,
                        help="NMS IoU threshold, 0 to 1")
    parser.add_argument("--max-det", type=ranged("--max-det"), default=300, action=RecordGiven,
                        help="at most this many detections per image (1 to 16384)")
    parser.add_argument("--class-agnostic", action="store_true", help="suppress overlapping boxes across classes")
    parser.add_argument("--c3-fusion", choices=("auto", "on", "off"), default="auto",
                        help="merge C3's two parallel 1x1 convs into one (same numbers). auto: on for TensorRT, off "
                             "for ONNX Runtime, where the channel slices it needs cost more than it saves")
    parser.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "onnxruntime"), action=RecordGiven,
                        help="auto: TensorRT when it imports and a GPU is present, else ONNX Runtime on the CPU")


def add_batch_argument(parser: argparse.ArgumentParser) -> None:
    """--batch, for the commands that fix a network's batch (build, export-onnx)."""
    parser.add_argument("--batch", type=ranged("--batch"), default=1, help="frames per inference, 1 to 64")


def add_calibration_arguments(parser: argparse.ArgumentParser) -> None:
    """INT8 calibration options, the same for run, build and export-onnx."""
    from ..backends.calibrator import DEFAULT_CALIBRATION_IMAGES
    from ..backends.int8_calibration import DEFAULT_CALIBRATION_IMAGES as DEFAULT_INT8_IMAGES
    from ..math.calibration import METHODS
    parser.add_argument("--calib-dir", default=None,
                        help="int8: folder of representative images (e.g. frames from the camera)")
    parser.add_argument("--calib-cache", default=None,
                        help="int8: calibration file, reused while it matches the model and options, else written")
    parser.add_argument("--calib-images", type=ranged("--calib-images"), default=None, metavar="N",
                        help="int8: images used from --calib-dir (default: {} for our calibration, {} for "
                             "TensorRT's)".format(DEFAULT_INT8_IMAGES, DEFAULT_CALIBRATION_IMAGES))
    parser.add_argument("--calib-method", choices=METHODS, default="percentile",
                        help="int8 (our calibration): how each tensor's range is chosen")


def c3_fusion_choice(args: argparse.Namespace) -> Optional[bool]:
    """--c3-fusion as the detector takes it: None lets the backend choose."""
    return {"auto": None, "on": True, "off": False}[getattr(args, "c3_fusion", "auto")]
