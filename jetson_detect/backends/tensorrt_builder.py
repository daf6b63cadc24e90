"""Building TensorRT engines: weights → ``build_network`` into a real ``INetworkDefinition`` → serialized engine.

The steps compose as in NVIDIA's samples: ``build_serialized_engine`` (network, precision, workspace, timing
cache, INT8 calibration, progress), ``save_engine``, and ``ensure_engine``, which reuses a cached engine while its
metadata matches and rebuilds it otherwise. Every TensorRT version difference goes through ``trt_compat``.
"""

import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple

from .. import __version__ as JETSON_DETECT_VERSION
from ..atomic_write import atomic_write_bytes
from ..errors import JetsonDetectError
from ..model.blocks import BuildOptions
from ..model.decode_nms import PLUGIN_NAME, PLUGIN_VERSION, check_params
from ..model.network import build_network, decode_params
from ..model.spec import ModelSpec
from ..model.weights import Weights
from . import detector, engine_cache, trt_compat
from .calibrator import DEFAULT_CALIBRATION_IMAGES, make_entropy_calibrator, make_feeder
from .cuda_memory import CudaMemory
from .gpu_arch import int8_supported
from .int8_calibration import DEFAULT_CALIBRATION_IMAGES as DEFAULT_INT8_IMAGES
from .int8_calibration import int8_calibration
from .qdq_network import QdqNetwork, QuantizationOptions

if TYPE_CHECKING:
    import tensorrt

Log = Callable[[str], None]

DEFAULT_WORKSPACE_MIB = 256  # the Nano's 4 GB are shared by CPU and GPU: keep the builder's scratch modest
PROGRESS_INTERVAL_S = 15.0


class EngineSettings(NamedTuple):
    """Everything the ``build`` command and the engine cache need to know about an engine to build."""

    precision: str = "fp16"
    img_size: int = 640
    batch: int = 1
    conf_thres: float = 0.25
    iou_thres: float = 0.45
    max_det: int = 300
    class_agnostic: bool = False
    c3_fusion: bool = True
    pre_nms_top_k: int = 4096
    workspace_mib: int = DEFAULT_WORKSPACE_MIB
    timing_cache: Optional[str] = None
    calib_dir: Optional[str] = None
    calib_cache: Optional[str] = None
    calib_images: Optional[int] = None  # None: each calibration's own default
    calib_method: str = "percentile"  # explicit INT8 (our calibration): entropy | percentile | max
    int8_mode: str = "auto"
    verbose: bool = False


def require_tensorrt() -> None:
    """Raise a one-line error when TensorRT's Python package cannot be imported."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        raise JetsonDetectError("TensorRT's Python package cannot be imported ({}): on the Jetson Nano it comes with "
                                "JetPack 4.6+ (python3-libnvinfer); elsewhere use --backend onnxruntime".format(
                                    exc)) from None


def load_plugin_library() -> None:
    """Load the YoloDecodeNMS plugin library; must run before building or deserializing an engine (§4)."""
    from ..plugin.loader import load_plugin_library as load
    load()


def load_model(weights_path: str, cfg_path: Optional[str] = None,
               names: Optional[Sequence[str]] = None) -> Tuple[ModelSpec, Weights]:
    """The spec and weights of a ``.wts`` or ``.pt`` file, exactly as the CPU backend loads them."""
    if not os.path.isfile(weights_path):
        raise JetsonDetectError("--weights {}: no such file: give a YOLOv5 .wts or .pt".format(weights_path))
    return detector.load_model(weights_path, cfg_path, names)


def gpu_info(cuda: CudaMemory) -> engine_cache.GpuInfo:
    """The GPU an engine is built for."""
    return engine_cache.GpuInfo(cuda.device_name(), cuda.compute_capability())


def check_int8_supported(gpu: engine_cache.GpuInfo) -> None:
    """Refuse INT8 on GPUs without fast INT8 (``gpu_arch``: below 6.1, e.g. the Jetson Nano's 5.3, and the TX2)."""
    if not int8_supported(gpu.compute_capability):
        raise JetsonDetectError("--precision int8: {} has compute capability {}, and TensorRT INT8 needs 6.1 or newer "
                                "but not the TX2's 6.2 (the Jetson Nano is 5.3): use --precision fp16".format(
                                    gpu.name, gpu.cc_text))


def check_writable(path: str, what: str) -> None:
    """Fail before a long build when ``path`` cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise JetsonDetectError("{} {}: the folder {} does not exist: create it or choose another path".format(
            what, path, folder))
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise JetsonDetectError("{} {}: not writable: choose a path in a folder you can write to".format(what, path))


def network_options(settings: EngineSettings, fp16_network: bool) -> BuildOptions:
    """The ``build_network`` options for these settings."""
    return BuildOptions(input_h=settings.img_size, input_w=settings.img_size, batch=settings.batch,
                        c3_fusion=settings.c3_fusion, weights_fp16=fp16_network, conf_thres=settings.conf_thres,
                        iou_thres=settings.iou_thres, max_det=settings.max_det,
                        class_agnostic=settings.class_agnostic, pre_nms_top_k=settings.pre_nms_top_k)


def settings_from_options(options: BuildOptions, **engine: Any) -> EngineSettings:
    """Engine settings from the CPU backend's ``BuildOptions`` plus engine-only fields (precision, workspace...)."""
    if options.input_h != options.input_w:
        raise JetsonDetectError("input {}x{}: TensorRT engines here are square".format(options.input_w,
                                                                                      options.input_h))
    return EngineSettings(img_size=options.input_h, batch=options.batch, conf_thres=options.conf_thres,
                          iou_thres=options.iou_thres, max_det=options.max_det,
                          class_agnostic=options.class_agnostic, c3_fusion=options.c3_fusion,
                          pre_nms_top_k=options.pre_nms_top_k, **engine)


class BuildProgress(object):
    """Prints elapsed time while TensorRT builds (8.2 has no progress monitor), and phases where it has one."""

    def __init__(self, log: Log, interval_s: float = PROGRESS_INTERVAL_S) -> None:
        self.log = log
        self.interval_s = interval_s
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="trt-build-progress", daemon=True)

    def elapsed_s(self) -> float:
        return time.monotonic() - self.start

    def phase(self, event: str, name: str) -> None:
        """``IProgressMonitor`` callback (top-level phases only)."""
        self.log("build: {} {} ({:.0f} s)".format(name, "started" if event == "start" else "done", self.elapsed_s()))

    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.log("build: still building, {:.0f} s elapsed".format(self.elapsed_s()))

    def __enter__(self) -> "BuildProgress":
        self.start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def load_timing_cache(config: "tensorrt.IBuilderConfig", path: Optional[str], log: Log) -> None:
    """Give the builder the timing cache from ``path`` (or a new one); a foreign cache is replaced, not fatal."""
    data = b""
    if path and os.path.isfile(path):
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise JetsonDetectError("--timing-cache {}: cannot read ({})".format(path, exc.strerror or exc)) from None
    cache = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, False):
        log("build: timing cache {} is from another GPU or TensorRT: starting a new one".format(path))
        config.set_timing_cache(config.create_timing_cache(b""), False)
    elif data:
        log("build: using timing cache {} ({} KiB)".format(path, len(data) // 1024))


def save_timing_cache(config: "tensorrt.IBuilderConfig", path: Optional[str], log: Log) -> None:
    """Write the (updated) timing cache so the next build on this machine skips most tactic timing."""
    if not path:
        return
    cache = config.get_timing_cache()
    if cache is None:
        return
    atomic_write_bytes(path, bytes(memoryview(cache.serialize())), "the --timing-cache file")
    log("build: wrote timing cache {}".format(path))


def build_serialized_engine(spec: ModelSpec, weights: Weights, settings: EngineSettings, cuda: CudaMemory,
                            log: Log = print, weights_path: Optional[str] = None) -> bytes:
    """Build the engine for ``spec``/``weights`` with ``settings`` on the current GPU; returns its bytes.
    ``weights_path`` identifies the weights for explicit INT8's calibration file."""
    require_tensorrt()
    import tensorrt as trt
    plan = trt_compat.precision_plan(trt, settings.precision, settings.int8_mode)
    gpu = gpu_info(cuda)
    if plan.int8 or plan.explicit_int8:
        check_int8_supported(gpu)
    if settings.batch < 1 or settings.workspace_mib < 1:
        raise JetsonDetectError("--batch and --workspace-mib must be at least 1")
    options = network_options(settings, plan.fp16_network)
    check_params(decode_params(spec, options))  # the C++ creator's ranges: TensorRT itself would only return None
    feeder = None
    if plan.int8:
        if settings.calib_cache:
            check_writable(settings.calib_cache, "--calib-cache")
        feeder = make_feeder(settings.calib_dir, settings.calib_cache,
                             settings.calib_images or DEFAULT_CALIBRATION_IMAGES, settings.img_size,
                             settings.batch, cuda, log)
    target_scales = None
    if plan.explicit_int8:
        target_scales = explicit_int8_scales(spec, weights, weights_path, settings, options, log)
    if settings.timing_cache:
        check_writable(settings.timing_cache, "--timing-cache")
    with cuda.activate():
        logger = trt_compat.process_logger(trt, settings.verbose)
        trt_compat.init_plugins(trt, logger)
        load_plugin_library()
        builder = trt.Builder(logger)
        network = trt_compat.create_network(trt, builder)
        target = network if target_scales is None else QdqNetwork(network, trt, scales=target_scales,
                                                                   options=TENSORRT_QUANTIZATION)
        build_network(spec, weights, target, trt, options, compat=trt_compat)
        config = builder.create_builder_config()
        trt_compat.set_workspace_limit(trt, config, settings.workspace_mib << 20)
        calibrator = make_entropy_calibrator(trt, feeder) if feeder is not None else None
        trt_compat.apply_precision(trt, config, plan, calibrator)
        load_timing_cache(config, settings.timing_cache, log)
        log("build: {} engine, {}x{} batch {}, TensorRT {} on {} ({}){}".format(
            settings.precision.upper(), settings.img_size, settings.img_size, settings.batch, trt.__version__,
            gpu.name, gpu.cc_text, ", FP16 network types" if plan.fp16_network else ""))
        with BuildProgress(log) as progress:
            monitor = trt_compat.attach_progress_monitor(trt, config, progress.phase)
            blob = trt_compat.build_serialized_network(builder, network, config)
            del monitor
        if feeder is not None:
            feeder.raise_if_failed()
        if blob is None:
            raise JetsonDetectError("TensorRT could not build the engine (its log above says why): try a larger "
                                    "--workspace-mib, --precision fp32, or add swap on a 4 GB board")
        save_timing_cache(config, settings.timing_cache, log)
    log("build: done in {:.1f} s, engine {:.1f} MiB".format(progress.elapsed_s(), len(blob) / 1048576.0))
    return blob


# TensorRT fuses each convolution with its bias and SiLU and quantizes at the next layer's input: Q/DQ on layer
# inputs only (its documented placement), so no Q/DQ after the convolutions as the ONNX Runtime graph has.
TENSORRT_QUANTIZATION = QuantizationOptions(silu=False, conv_outputs=False)


def explicit_int8_scales(spec: ModelSpec, weights: Weights, weights_path: Optional[str], settings: EngineSettings,
                         options: BuildOptions, log: Log) -> Dict[str, float]:
    """Explicit INT8's scales: from ``--calib-cache`` when it was made for this model and build, else by our own
    calibration (the CPU twin with ONNX Runtime over ``--calib-dir``; on a board without ONNX Runtime, calibrate on
    any PC with the same options and copy the file)."""
    if weights_path is None:
        raise JetsonDetectError("explicit INT8 needs the weights file (its sha256 names the calibration)")
    if settings.calib_cache:
        check_writable(settings.calib_cache, "--calib-cache")
    calibration = int8_calibration(spec, weights, weights_path, options._replace(weights_fp16=False),
                                   TENSORRT_QUANTIZATION, settings.calib_dir, settings.calib_cache,
                                   settings.calib_method, settings.calib_images or DEFAULT_INT8_IMAGES, log)
    return calibration.scales


def default_engine_path(weights_path: str, settings: EngineSettings) -> str:
    """Where the cached engine for ``weights_path`` lives: next to the weights, named by what it was built for."""
    stem = os.path.splitext(weights_path)[0]
    return "{}_{}_{}_b{}.engine".format(stem, settings.precision, settings.img_size, settings.batch)


def plugin_identity(trt: Any) -> str:
    """The plugin an engine embeds, with its interface: an engine with the V2 plugin needs the V2 creator."""
    return "{} v{} ({})".format(PLUGIN_NAME, PLUGIN_VERSION,
                                "IPluginV3" if trt_compat.uses_plugin_v3(trt) else "IPluginV2DynamicExt")


def engine_identity(spec: ModelSpec, weights_path: str, settings: EngineSettings, trt: Any,
                    gpu: engine_cache.GpuInfo) -> Dict[str, Any]:
    """The metadata identity of the engine these inputs produce with this TensorRT."""
    builder_options: Dict[str, Any] = {"workspace_mib": settings.workspace_mib, "c3_fusion": settings.c3_fusion,
                                       "pre_nms_top_k": settings.pre_nms_top_k}
    if settings.precision == "int8":
        builder_options["calib_images"] = settings.calib_images
        builder_options["int8_mode"] = "explicit" if trt_compat.precision_plan(
            trt, "int8", settings.int8_mode).explicit_int8 else "implicit"
        builder_options["calib_method"] = settings.calib_method
    return engine_cache.engine_identity(
        trt.__version__, gpu, settings.precision, settings.img_size, settings.batch, spec.names,
        spec.anchors_px, spec.strides, settings.conf_thres, settings.iou_thres, settings.max_det,
        settings.class_agnostic, engine_cache.sha256_file(weights_path),
        plugin_identity(trt), builder_options)


def build_and_save(spec: ModelSpec, weights: Weights, weights_path: str, engine_path: str, settings: EngineSettings,
                   cuda: CudaMemory, log: Log = print) -> Dict[str, Any]:
    """Build, write the engine and its metadata; returns the metadata."""
    require_tensorrt()
    import tensorrt as trt
    check_writable(engine_path, "engine")
    identity = engine_identity(spec, weights_path, settings, trt, gpu_info(cuda))
    start = time.monotonic()
    blob = build_serialized_engine(spec, weights, settings, cuda, log, weights_path)
    atomic_write_bytes(engine_path, blob, "the engine")
    engine_cache.write_metadata(engine_path, identity, {
        "weights_file": os.path.basename(weights_path), "build_seconds": round(time.monotonic() - start, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "jetson_detect_version": JETSON_DETECT_VERSION})
    log("build: wrote {} and {}".format(engine_path, os.path.basename(engine_cache.metadata_path(engine_path))))
    return engine_cache.read_metadata(engine_path)


def ensure_engine(weights_path: str, settings: EngineSettings, cuda: CudaMemory, cfg_path: Optional[str] = None,
                  engine_path: Optional[str] = None, log: Log = print,
                  names: Optional[Sequence[str]] = None) -> Tuple[str, Dict[str, Any]]:
    """The engine for these weights and settings: the cached one while its metadata matches, else a fresh build."""
    require_tensorrt()
    import tensorrt as trt
    spec, weights = load_model(weights_path, cfg_path, names)
    path = engine_path or default_engine_path(weights_path, settings)
    expected = engine_identity(spec, weights_path, settings, trt, gpu_info(cuda))
    decision = engine_cache.decide(path, expected)
    if decision.reuse:
        log("engine cache: reusing {}".format(path))
        return path, engine_cache.read_metadata(path)
    log("engine cache: building {}: {}".format(path, decision.reason))
    return path, build_and_save(spec, weights, weights_path, path, settings, cuda, log)
