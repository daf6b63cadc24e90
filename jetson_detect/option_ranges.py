"""The allowed range of every numeric option, in one table used by the command line, the config file and the
detector factory, so a value is judged the same wherever it comes from.

The detection ranges are the decode+NMS plugin's (``model.decode_nms.check_params``, which the C++ creator mirrors):
a value the plugin would refuse is refused here first, naming the flag instead of a plugin field. The module sits at
the top of the package so ``model``, ``backends``, ``app`` and ``commands`` can all import it.
"""

import math
import numbers
from typing import Any, NamedTuple, Optional

from .errors import JetsonDetectError
from .model.decode_nms import MAX_PRE_NMS_TOP_K


class Range(NamedTuple):
    """A finite number from ``low`` to ``high`` (``high`` itself excluded when ``high_open``), optionally an
    integer and a multiple of ``multiple_of``."""

    low: float
    high: float
    integer: bool = False
    high_open: bool = False
    multiple_of: int = 1

    def describe(self) -> str:
        """The range in words, as error messages end: 'an integer from 1 to 64'."""
        if self.multiple_of > 1:
            kind = "a multiple of {}".format(self.multiple_of)
        else:
            kind = "an integer" if self.integer else "a number"
        if self.high_open:
            return "{} >= {} and < {}".format(kind, _number(self.low), _number(self.high))
        return "{} from {} to {}".format(kind, _number(self.low), _number(self.high))

    def problem(self, value: Any) -> Optional[str]:
        """None when ``value`` is allowed, else what is wrong with it."""
        is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not is_number or (self.integer and not isinstance(value, numbers.Integral)):
            return "must be " + self.describe()
        if not math.isfinite(value):
            return "must be a finite number: " + self.describe()
        if self.multiple_of > 1 and value % self.multiple_of and value >= self.low:
            return "must be a positive multiple of {}".format(self.multiple_of)
        if value < self.low or value > self.high or (self.high_open and value == self.high):
            return "must be " + self.describe()
        return None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


IMG_SIZE = Range(32, 4096, integer=True, multiple_of=32)
BATCH = Range(1, 64, integer=True)
CONF_THRES = Range(0.0, 1.0, high_open=True)  # the plugin: conf_thres in [0, 1)
IOU_THRES = Range(0.0, 1.0)
MAX_DET = Range(1, MAX_PRE_NMS_TOP_K, integer=True)  # never more than the candidates NMS keeps
WORKSPACE_MIB = Range(1, 1 << 20, integer=True)
CALIBRATION_IMAGES = Range(1, 100000, integer=True)
CLASS_COUNT = Range(1, 100000, integer=True)
PORT = Range(0, 65535, integer=True)  # 0: the system picks a free port

FLAG_RANGES = {
    "--img-size": IMG_SIZE, "--batch": BATCH, "--conf": CONF_THRES, "--iou": IOU_THRES, "--max-det": MAX_DET,
    "--workspace-mib": WORKSPACE_MIB, "--calib-images": CALIBRATION_IMAGES, "--nc": CLASS_COUNT,
}


def check_value(name: str, value: Any, allowed: Range) -> Any:
    """Return ``value`` when ``allowed`` admits it, else raise the one-line error naming ``name``."""
    problem = allowed.problem(value)
    if problem is not None:
        raise JetsonDetectError("{} {}: {}".format(name, value, problem))
    return value


def parse_value(flag: str, text: str) -> Any:
    """A flag's text as a number in its range (``FLAG_RANGES``); NaN, inf and text that is no number are refused
    with the same one-line error as a value out of range."""
    allowed = FLAG_RANGES[flag]
    value: Any = text
    try:
        value = int(text) if allowed.integer else float(text)
    except ValueError:
        pass
    return check_value(flag, value, allowed)


def check_detection_options(img_size: int, conf_thres: float, iou_thres: float, max_det: int, batch: int = 1) -> None:
    """Every detection option a model is built with (run, eval, build, export-onnx and the Python API). The
    candidate count into NMS is not a user option: the TensorRT builder checks it against the plugin's limit
    (``check_params``), and the CPU twin may take more (test_parity scores coco64 with 30,000)."""
    for name, value, allowed in (("--img-size", img_size, IMG_SIZE), ("--conf", conf_thres, CONF_THRES),
                                 ("--iou", iou_thres, IOU_THRES), ("--max-det", max_det, MAX_DET),
                                 ("--batch", batch, BATCH)):
        check_value(name, value, allowed)
