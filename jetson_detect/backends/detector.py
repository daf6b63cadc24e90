"""One detector interface over every backend: image in, detections in original-image pixels out.

``create_detector`` picks the backend (``auto``: TensorRT when it imports and a GPU is present, else ONNX Runtime
on the CPU) and says which it chose. Both backends build the network with the same ``build_network``.
"""

import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import JetsonDetectError
from ..math.boxes import scale_boxes_to_original
from ..math.letterbox import LetterboxGeometry, letterbox, to_network_input
from ..math.nms import Detections
from ..model.blocks import BuildOptions
from ..model.loader import load_model
from ..model.network import build_network
from ..model.spec import ModelSpec, load_model_yaml
from ..model.weights import Weights
from ..option_ranges import check_detection_options

BACKENDS = ("auto", "tensorrt", "onnxruntime")


def _cv2_resize() -> Optional[Callable[[np.ndarray, Tuple[int, int]], np.ndarray]]:
    """OpenCV's bilinear resize (bit-identical to the reference pre-processing), or None without OpenCV."""
    try:
        import cv2
    except ImportError:
        return None
    return lambda image, size: cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


class Detector(object):
    """Backend-independent part: pre-processing, box mapping, batching. Subclasses implement ``infer``."""

    backend_name = "?"

    def __init__(self, spec: ModelSpec, options: BuildOptions) -> None:
        self.spec = spec
        self.options = options
        self.names = list(spec.names)
        self.input_size = options.input_h
        self.batch_size = options.batch
        self._resize = _cv2_resize()

    def preprocess(self, image_bgr: np.ndarray) -> Tuple[np.ndarray, LetterboxGeometry]:
        """Letterbox exactly as the reference: (1, 3, S, S) float32 RGB in [0, 1], and where the image landed."""
        if image_bgr is None or image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.size == 0:
            raise JetsonDetectError("frame is not a BGR image (shape {})".format(
                None if image_bgr is None else image_bgr.shape))
        boxed, geometry = letterbox(image_bgr, self.input_size, self._resize)
        return to_network_input(boxed), geometry

    def infer(self, batch: np.ndarray) -> List[Detections]:
        """Run the network on a (B, 3, S, S) batch; detections in network-input pixels."""
        raise NotImplementedError

    def detect_batch(self, images: Sequence[np.ndarray]) -> List[Detections]:
        """Detect on several images; they are run in network batches of ``batch_size`` (padded at the end)."""
        results: List[Detections] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            prepared = [self.preprocess(img) for img in chunk]
            batch = np.concatenate([p[0] for p in prepared], axis=0)
            if batch.shape[0] < self.batch_size:
                pad = np.zeros((self.batch_size - batch.shape[0],) + batch.shape[1:], np.float32)
                batch = np.concatenate([batch, pad], axis=0)
            for det, img, (_, geo) in zip(self.infer(batch), chunk, prepared):
                results.append(Detections(scale_boxes_to_original(det.boxes, geo, img.shape[0], img.shape[1]),
                                          det.scores, det.class_ids))
        return results

    def detect(self, image_bgr: np.ndarray) -> Detections:
        """Detections of one BGR image, boxes in its own pixels."""
        return self.detect_batch([image_bgr])[0]

    # The loop's two-phase API: submit(frame N+1) may come before collect(N), so a backend that runs
    # asynchronously (TensorRT, two streams) overlaps frame N+1's upload and pre-processing with frame N's work.
    @property
    def max_in_flight(self) -> int:
        """How many submitted frames may wait to be collected (this synchronous default would take any number)."""
        return 2

    def submit(self, frame_bgr: np.ndarray) -> Any:
        """Start detecting one frame; returns a handle for ``collect``. Here: detects at once and keeps the result.

        Contract (every backend): at most ``max_in_flight`` handles outstanding, each collected once, in submit
        order; a bad frame raises JetsonDetectError from ``submit`` and leaves nothing outstanding.
        """
        return _Done(self.detect(frame_bgr))

    def collect(self, handle: Any) -> Detections:
        """The detections of a submitted frame, boxes in its own pixels (waits for it where the backend is async)."""
        return handle.detections


class _Done(object):
    """A frame the synchronous default ``submit`` has already detected."""

    def __init__(self, detections: Detections) -> None:
        self.detections = detections


def split_plugin_outputs(num: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                         classes: np.ndarray) -> List[Detections]:
    """The plugin's fixed-size outputs → one ``Detections`` per image (the first ``num`` rows)."""
    out = []
    for i in range(num.shape[0]):
        n = int(num[i, 0])
        out.append(Detections(boxes[i, :n].astype(np.float32), scores[i, :n].astype(np.float32),
                              classes[i, :n].astype(np.int32)))
    return out


class OnnxRuntimeDetector(Detector):
    """The CPU backend: the network built through the TensorRT-API twin, run by ONNX Runtime."""

    backend_name = "onnxruntime"

    def __init__(self, spec: ModelSpec, weights: Weights, options: BuildOptions,
                 threads: Optional[int] = None, int8_scales: Optional[Dict[str, float]] = None,
                 quantization: Any = None, affine: Optional[Dict[str, List[float]]] = None) -> None:
        super().__init__(spec, options)
        from . import onnx_network, trt_compat
        from .onnxruntime_backend import OnnxRuntimeEngine
        network = onnx_network.OnnxNetwork()
        target: Any = network
        if int8_scales is not None:
            # INT8: the same builder through the Q/DQ wrapper; ONNX Runtime fuses the QDQ graph into integer kernels.
            from .qdq_network import QdqNetwork
            target = QdqNetwork(network, onnx_network, scales=int8_scales, options=quantization, affine=affine)
            self.backend_name = "onnxruntime-int8"
        self.built = build_network(spec, weights, target, onnx_network, options, compat=trt_compat)
        self.engine = OnnxRuntimeEngine(network, threads)

    def run(self, batch: np.ndarray) -> Any:
        """All outputs by name (plugin outputs and ``decoded``)."""
        return self.engine.run(batch)

    def infer(self, batch: np.ndarray) -> List[Detections]:
        out = self.engine.run(batch)
        return split_plugin_outputs(out["num_detections"], out["boxes"], out["scores"], out["classes"])


def create_detector(weights: str, backend: str = "auto", img_size: int = 640, conf_thres: float = 0.25,
                    iou_thres: float = 0.45, max_det: int = 300, cfg: Optional[str] = None,
                    names: Optional[Sequence[str]] = None, batch: int = 1, c3_fusion: Optional[bool] = None,
                    class_agnostic: bool = False, pre_nms_top_k: int = 4096,
                    log: Callable[[str], None] = lambda message: None, **tensorrt_options: Any) -> Detector:
    """Load weights, build the network on the chosen backend and return a ready ``Detector``."""
    if backend not in BACKENDS:
        raise JetsonDetectError("--backend {}: choose one of {}".format(backend, ", ".join(BACKENDS)))
    check_detection_options(img_size, conf_thres, iou_thres, max_det, batch)
    if not os.path.exists(weights):
        raise JetsonDetectError("{}: no such weights file: pass a .wts or .pt file with --weights".format(weights))
    if cfg:
        load_model_yaml(cfg)  # a broken --cfg is reported before a backend is chosen (or an engine built)
    # C3 fusion by default where it pays: TensorRT (a channel slice is a view there); not ONNX Runtime, whose NCHWc
    # layout has to reorder around every slice (BENCHMARKS.md: ~4% slower fused).
    options = BuildOptions(input_h=img_size, input_w=img_size, batch=batch, c3_fusion=c3_fusion is not False,
                           conf_thres=conf_thres, iou_thres=iou_thres, max_det=max_det,
                           class_agnostic=class_agnostic, pre_nms_top_k=pre_nms_top_k)
    if backend in ("auto", "tensorrt"):
        available, reason = _tensorrt_status()
        if available:
            from . import tensorrt_backend
            log("backend: tensorrt")
            return tensorrt_backend.create_tensorrt_detector(weights, options=options, cfg=cfg, names=names,
                                                             log=log, **tensorrt_options)
        if backend == "tensorrt":
            raise JetsonDetectError("--backend tensorrt: {}".format(reason))
        log("backend: onnxruntime (CPU), since TensorRT is unavailable: {}".format(reason))
    spec, loaded = load_model(weights, cfg, names)
    cpu_options = options._replace(c3_fusion=c3_fusion is True)
    if tensorrt_options.get("precision") != "int8":
        return OnnxRuntimeDetector(spec, loaded, cpu_options)  # fp16 is a GPU precision: the CPU runs fp32
    from .int8_calibration import DEFAULT_CALIBRATION_IMAGES, int8_calibration
    from .qdq_network import QuantizationOptions
    quantization = QuantizationOptions()
    calibration = int8_calibration(spec, loaded, weights, cpu_options, quantization, tensorrt_options.get("calib_dir"),
                                   tensorrt_options.get("calib_cache"), tensorrt_options.get("calib_method") or
                                   "percentile", tensorrt_options.get("calib_images") or DEFAULT_CALIBRATION_IMAGES,
                                   log)
    return OnnxRuntimeDetector(spec, loaded, cpu_options, int8_scales=calibration.scales, quantization=quantization,
                               affine=calibration.affine)


def _tensorrt_status() -> Tuple[bool, str]:
    """Whether TensorRT can run here, and why not."""
    try:
        from . import tensorrt_backend
    except ImportError as exc:
        return False, "the TensorRT backend could not be imported ({})".format(exc)
    checker = getattr(tensorrt_backend, "tensorrt_available", None)
    if checker is None:
        return False, "the TensorRT backend is not available in this build"
    return checker()
