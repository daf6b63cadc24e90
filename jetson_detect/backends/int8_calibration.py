"""Our own INT8 calibration for explicit quantization: the FP32 CPU twin over real images → one scale per tensor.

The calibration pass builds the network through ``QdqNetwork(observe=True)`` on the CPU twin, runs it with ONNX
Runtime over the calibration images (letterboxed exactly as at inference, ``CalibrationBatches``), histograms
|x| of every tensor that will be quantized (one histogram per scale group), and picks each group's threshold by
``--calib-method`` (``jetson_detect.math.calibration``: entropy as TensorRT's ``IInt8EntropyCalibrator2``,
percentile, or max). The result is a readable JSON file: tensor key → scale, with the fingerprint it is valid for
(the weights' sha256, input size, build and placement options, method). A file whose fingerprint does not match is
refused with the field that differs, never silently reused. The same scales feed the TensorRT network (Q/DQ
layers) and the ONNX Runtime graph (QDQ nodes).
"""

import hashlib
import json
import os
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional

import numpy as np

from ..atomic_write import atomic_write_bytes
from ..errors import JetsonDetectError
from ..math import calibration as cal
from ..model.blocks import BuildOptions
from ..model.network import build_network
from ..model.spec import ModelSpec
from ..model.weights import Weights
from .qdq_network import CALIBRATION_OUTPUT_PREFIX, QdqNetwork, QuantizationOptions

CALIBRATION_FORMAT = "jetson_detect int8 calibration 1"
DEFAULT_CALIBRATION_IMAGES = 256


class Calibration(NamedTuple):
    """Per tensor key: the symmetric scale (TensorRT, and what the file is about) and the CPU's uint8 (scale, zero
    point) over the same threshold; how many images it rests on."""

    scales: Dict[str, float]
    affine: Dict[str, List[float]]
    images: int


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(weights_sha256: str, options: BuildOptions, quantization: QuantizationOptions,
                method: str) -> Dict[str, Any]:
    """What a calibration file is valid for: any change here changes the tensors or their statistics."""
    return {"model_sha256": weights_sha256, "input_size": [options.input_h, options.input_w],
            "c3_fusion": bool(options.c3_fusion), "quantization": quantization.as_dict(), "method": method}


def calibrate(spec: ModelSpec, weights: Weights, options: BuildOptions, quantization: QuantizationOptions,
              batches: Iterable[np.ndarray], method: str = "percentile",
              log: Callable[[str], None] = lambda message: None,
              percentile: float = cal.DEFAULT_PERCENTILE) -> Calibration:
    """Scales per tensor key from running the FP32 twin over ``batches`` of (1, 3, H, W) inputs."""
    from . import onnx_network, trt_compat
    from .onnxruntime_backend import OnnxRuntimeEngine
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        # Not the [cpu] extra on a Jetson: it would pull pip's OpenCV over JetPack's GStreamer build.
        raise JetsonDetectError("INT8 calibration runs the FP32 network with ONNX Runtime, which is not installed: "
                                "pip3 install onnx onnxruntime, or calibrate on a PC with the same options and pass "
                                "the file with --calib-cache") from None
    if method not in cal.METHODS:
        raise JetsonDetectError("--calib-method {}: choose one of {}".format(method, ", ".join(cal.METHODS)))
    network = onnx_network.OnnxNetwork()
    observer = QdqNetwork(network, onnx_network, observe=True, options=quantization)
    build_network(spec, weights, observer, onnx_network, options._replace(batch=1, weights_fp16=False),
                  compat=trt_compat)
    observer.mark_calibration_outputs()
    engine = OnnxRuntimeEngine(network)
    root_of = {key: root for root, keys in observer.groups().items() for key in keys}
    positive_only = set(root_of[key] for key in observer.pre_activation_keys())
    histograms: Dict[str, cal.AbsHistogram] = {}
    minimum: Dict[str, float] = {}
    images = 0
    for batch in batches:
        values = engine.run_graph(batch)
        for key in observer.keys():
            value = values.get(CALIBRATION_OUTPUT_PREFIX + key)
            if value is None:  # the network input itself
                value = batch
            root = root_of[key]
            minimum[root] = min(minimum.get(root, 0.0), float(np.min(value)))
            try:
                # Only the positive side of a pre-activation tensor; its zeros left out too, since a spike at zero
                # would drive the entropy search to the smallest cut.
                histograms.setdefault(root, cal.AbsHistogram()).add(value[value > 0] if root in positive_only
                                                                    else value)
            except ValueError:
                raise JetsonDetectError("calibration: tensor {} became NaN or Inf on image {}: the weights or the "
                                        "image are broken".format(key, images + 1)) from None
        images += 1
        if images % 32 == 0:
            log("calibration: {} images".format(images))
    if images == 0:
        raise JetsonDetectError("calibration: no images were read")
    thresholds = {root: cal.threshold(hist, method, percentile) for root, hist in histograms.items()}
    log("calibration: {} images, {} tensors in {} scale groups ({})".format(
        images, len(root_of), len(histograms), method))
    for key in observer.input_keys():
        if len(observer.groups().get(root_of[key], ())) == 1:
            # The image is pixel/255: no statistics needed. Symmetric INT8 covers [0, 1] with 1/127 steps; uint8
            # with scale 1/255 and zero point 0 holds every pixel value exactly.
            thresholds[root_of[key]] = 1.0
            minimum[root_of[key]] = 0.0
    scales = {key: cal.activation_scale(thresholds[root]) for key, root in root_of.items()}
    affine = {key: list(cal.affine_uint8(minimum[root], thresholds[root])) for key, root in root_of.items()}
    return Calibration(scales, affine, images)


def save_calibration(path: str, calibration: Calibration, fingerprint_: Dict[str, Any]) -> None:
    table = {"format": CALIBRATION_FORMAT, "images": calibration.images, "fingerprint": fingerprint_,
             "scales": {key: float(value) for key, value in calibration.scales.items()},
             "cpu_uint8": {key: [float(v[0]), int(v[1])] for key, v in calibration.affine.items()}}
    atomic_write_bytes(path, (json.dumps(table, indent=1, sort_keys=True) + "\n").encode("utf-8"),
                       what="the INT8 calibration file")


def load_calibration(path: str, expected: Dict[str, Any]) -> Calibration:
    """The calibration in a file made for ``expected``; else one line saying which field differs."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            table = json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise JetsonDetectError("--calib-cache {}: not a readable calibration file ({}): delete it to calibrate "
                                "again".format(path, exc)) from None
    if not isinstance(table, dict) or table.get("format") != CALIBRATION_FORMAT:
        raise JetsonDetectError("--calib-cache {}: not a jetson_detect INT8 calibration file (a TensorRT "
                                "calibration cache?): give another path, or delete it to calibrate again".format(path))
    found = table.get("fingerprint") or {}
    for field in sorted(expected):
        if found.get(field) != expected[field]:
            raise JetsonDetectError("--calib-cache {}: made for {} {}, not {}: calibrate again (--calib-dir) or give "
                                    "another --calib-cache".format(path, field, found.get(field), expected[field]))
    scales, affine = table.get("scales"), table.get("cpu_uint8")
    if not isinstance(scales, dict) or not isinstance(affine, dict) or set(scales) != set(affine) or not all(
            _positive(v) for v in scales.values()) or not all(
            isinstance(v, list) and len(v) == 2 and _positive(v[0]) and v[1] in range(256) for v in affine.values()):
        raise JetsonDetectError("--calib-cache {}: its scales are missing or out of range: delete it to calibrate "
                                "again".format(path))
    return Calibration({str(k): float(v) for k, v in scales.items()},
                       {str(k): [float(v[0]), int(v[1])] for k, v in affine.items()}, int(table.get("images") or 0))


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value)) and value > 0


def int8_calibration(spec: ModelSpec, weights: Weights, weights_path: str, options: BuildOptions,
                     quantization: QuantizationOptions, calib_dir: Optional[str], calib_cache: Optional[str],
                     method: str = "percentile", calib_images: int = DEFAULT_CALIBRATION_IMAGES,
                     log: Callable[[str], None] = lambda message: None) -> Calibration:
    """The calibration for this model and build: from ``calib_cache`` when it matches, else calibrated on
    ``calib_dir`` (and written to ``calib_cache``)."""
    from .calibrator import CalibrationBatches, list_calibration_images
    expected = fingerprint(file_sha256(weights_path), options, quantization, method)
    if calib_cache and os.path.isfile(calib_cache):
        calibration = load_calibration(calib_cache, expected)
        log("int8: scales from {}".format(calib_cache))
        return calibration
    if not calib_dir:
        raise JetsonDetectError("--precision int8 needs --calib-dir DIR (about {} representative images){}".format(
            DEFAULT_CALIBRATION_IMAGES, "" if not calib_cache else ", or an existing --calib-cache"))
    paths = list_calibration_images(calib_dir, calib_images)
    batches = CalibrationBatches(paths, options.input_h, 1)
    calibration = calibrate(spec, weights, options, quantization, (batches.batch(i) for i in range(len(batches))),
                            method, log)
    if calib_cache:
        save_calibration(calib_cache, calibration, expected)
        log("int8: scales written to {}".format(calib_cache))
    return calibration
