"""Running TensorRT engines: the buffers-and-streams runner and the TensorRT ``Detector``.

``TrtRunner`` owns one or two *slots* (execution context, CUDA stream, page-locked host buffers, device buffers,
timing events), all allocated once. With two slots the copies of batch N+1 overlap the compute of batch N (the
seed's "hide the transfer"); ``streams=1`` turns that off. ``TensorRTDetector`` has the same interface as the CPU
detector (``names``, ``input_size``, ``backend_name``, ``preprocess``, ``infer``, ``detect``, ``detect_batch``)
plus ``detect_stream`` and the loop's two-phase ``submit``/``collect`` (frame N+1 enqueued on the other stream
before frame N is waited for); its ``detect*`` pre-process on the GPU (``gpu_preprocess``) unless told not to or
the kernel cannot be compiled. ``close()`` frees every stream, event, buffer and context, and so does a failure
while creating the detector. ``create_tensorrt_detector`` is what ``backends.detector.create_detector`` calls.
"""

import os
from collections import deque
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np

from ..errors import JetsonDetectError
from ..math.boxes import scale_boxes_to_original
from ..math.letterbox import LetterboxGeometry
from ..math.nms import Detections
from ..model.blocks import BuildOptions
from ..model.decode_nms import OUTPUT_NAMES
from ..model.spec import ModelSpec
from . import engine_cache, tensorrt_builder, trt_compat
from .cuda_memory import CudaMemory, cuda_probe, open_cuda_memory
from .detector import Detector
from .gpu_preprocess import open_gpu_preprocessors
from .tensorrt_builder import DEFAULT_WORKSPACE_MIB, ensure_engine, gpu_info, require_tensorrt, settings_from_options

if TYPE_CHECKING:
    import tensorrt

Log = Callable[[str], None]
# Writes the engine input on the GPU: (input device pointer, slot stream, slot index); enqueued before the engine.
InputWriter = Callable[[int, Any, int], None]
Batch = Union[np.ndarray, InputWriter]
Placed = List[Tuple[LetterboxGeometry, Tuple[int, ...]]]  # per batch item: where the image landed, its shape


def tensorrt_available(cuda_api: str = "auto") -> Tuple[bool, str]:
    """(True, "TensorRT X on GPU") when TensorRT imports and a CUDA GPU is usable from Python, else (False, why)."""
    try:
        require_tensorrt()
    except JetsonDetectError as exc:
        return False, str(exc)
    import tensorrt as trt
    cuda, why = cuda_probe(cuda_api)
    if cuda is None:
        return False, why
    try:
        gpu = gpu_info(cuda)
    finally:
        cuda.close()  # a probe keeps nothing (pycuda would otherwise keep the primary context retained)
    return True, "TensorRT {} on {} ({}, via {})".format(trt.__version__, gpu.name, gpu.cc_text, cuda.api)


def deserialize_engine(cuda: CudaMemory, engine_path: str,
                       logger: "tensorrt.ILogger") -> Tuple["tensorrt.Runtime", "tensorrt.ICudaEngine"]:
    """Load an engine file (plugins first); a damaged or foreign engine gives a one-line error, never a crash."""
    require_tensorrt()
    import tensorrt as trt
    try:
        with open(engine_path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise JetsonDetectError("{}: cannot read the engine ({})".format(engine_path, exc.strerror or exc)) from None
    problem = "the file is empty" if not data else ""
    engine: "Optional[tensorrt.ICudaEngine]" = None
    with cuda.activate():
        trt_compat.init_plugins(trt, logger)
        tensorrt_builder.load_plugin_library()
        runtime = trt.Runtime(logger)
        if data:
            try:
                engine = runtime.deserialize_cuda_engine(data)
            except Exception as exc:  # TensorRT raises or returns None depending on version and damage
                problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if engine is None:
        raise JetsonDetectError("{}: TensorRT {} could not load this engine ({}): it is damaged or was built by "
                                "another TensorRT or for another GPU; rebuild it with 'python -m jetson_detect "
                                "build'".format(engine_path, trt.__version__, problem or "see the TensorRT log above"))
    return runtime, engine


class _Slot(object):
    """One in-flight inference: its execution context, stream, buffers and timing events."""

    def __init__(self, context: Any, executor: trt_compat.Executor, stream: Any, host: Dict[str, np.ndarray],
                 device: Dict[str, int], start: Any, end: Any) -> None:
        self.context = context
        self.executor: Any = executor  # None once released
        self.stream = stream
        self.host = host
        self.device = device
        self.start = start
        self.end = end
        self.pending = False


class TrtRunner(object):
    """Runs an engine on fixed-shape batches: async H2D → execute → D2H per slot, one or two slots.

    Any thread may call it (each call makes the CUDA context current), but one thread at a time.
    """

    def __init__(self, engine: "tensorrt.ICudaEngine", cuda: CudaMemory, trt: Any, streams: int = 2) -> None:
        if streams not in (1, 2):
            raise JetsonDetectError("--streams {}: choose 1 (no overlap) or 2 (overlap copies and compute)".format(
                streams))
        self.engine: "Optional[tensorrt.ICudaEngine]" = engine
        self.cuda = cuda
        tensors = trt_compat.io_tensors(trt, engine)
        inputs = [t for t in tensors if t.is_input]
        if len(inputs) != 1:
            raise JetsonDetectError("the engine has {} inputs, a jetson_detect engine has 1: rebuild it with "
                                    "'python -m jetson_detect build'".format(len(inputs)))
        self.input = inputs[0]
        self.outputs = [t for t in tensors if not t.is_input]
        self.slots: List[_Slot] = []
        try:
            with cuda.activate():
                for _ in range(streams):
                    self.slots.append(self._new_slot(engine, cuda, trt, tensors))
        except BaseException:
            self.close()  # out of memory or no context: give back what the first slot already holds
            raise
        self._next = 0
        self.last_gpu_ms: Optional[float] = None

    def _new_slot(self, engine: Any, cuda: CudaMemory, trt: Any, tensors: Sequence[trt_compat.IOTensor]) -> _Slot:
        """One slot, each resource released again if a later one cannot be had."""
        context = engine.create_execution_context()
        if context is None:
            raise JetsonDetectError("TensorRT could not create an execution context (out of GPU memory?): close "
                                    "other GPU programs or use --streams 1")
        slot = _Slot(context, trt_compat.make_executor(trt, engine, context), None, {}, {}, None, None)
        try:
            for t in tensors:
                slot.host[t.name] = cuda.pinned_empty(t.shape, t.dtype)
                slot.device[t.name] = cuda.device_alloc(slot.host[t.name].nbytes)
            slot.stream = cuda.stream_create()
            slot.start = cuda.event_create()
            slot.end = cuda.event_create()
        except BaseException:
            self._release(slot)
            raise
        return slot

    def _release(self, slot: _Slot) -> None:
        """Free one slot's buffers, stream and events (context current); its execution context goes with it."""
        cuda = self.cuda
        if slot.pending and slot.stream is not None:
            cuda.stream_synchronize(slot.stream)
        for event in (slot.start, slot.end):
            if event is not None:
                cuda.event_destroy(event)
        if slot.stream is not None:
            cuda.stream_destroy(slot.stream)
        for ptr in slot.device.values():
            cuda.device_free(ptr)
        for array in slot.host.values():
            cuda.pinned_free(array)
        slot.host, slot.device, slot.stream, slot.start, slot.end = {}, {}, None, None, None
        slot.context = slot.executor = None
        slot.pending = False

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return self.input.shape

    def submit(self, batch: Batch) -> _Slot:
        """Start one inference on the next slot; the slot must have been collected.

        ``batch`` is a host array (copied in) or an ``InputWriter`` that fills the input on the slot's stream.
        """
        index = self._next
        slot = self.slots[index]
        if slot.pending:
            raise RuntimeError("slot still in flight: collect it before submitting more than {} batches".format(
                len(self.slots)))
        if isinstance(batch, np.ndarray) and tuple(batch.shape) != self.input.shape:
            raise JetsonDetectError("input batch has shape {}, the engine expects {}".format(
                tuple(batch.shape), self.input.shape))
        self._next = (self._next + 1) % len(self.slots)
        cuda = self.cuda
        with cuda.activate():
            if isinstance(batch, np.ndarray):
                np.copyto(slot.host[self.input.name], batch, casting="same_kind")
                cuda.copy_htod_async(slot.device[self.input.name], slot.host[self.input.name], slot.stream)
            else:
                batch(slot.device[self.input.name], slot.stream, index)
            cuda.event_record(slot.start, slot.stream)
            if not slot.executor.enqueue(slot.device, cuda.stream_handle(slot.stream)):
                raise JetsonDetectError("TensorRT refused to run the engine (see its log above)")
            cuda.event_record(slot.end, slot.stream)
            for t in self.outputs:
                cuda.copy_dtoh_async(slot.host[t.name], slot.device[t.name], slot.stream)
        slot.pending = True
        return slot

    def collect(self, slot: _Slot) -> Dict[str, np.ndarray]:
        """Wait for a submitted slot; returns copies of its outputs by name."""
        with self.cuda.activate():
            self.cuda.stream_synchronize(slot.stream)
            self.last_gpu_ms = self.cuda.event_elapsed_ms(slot.start, slot.end)
        slot.pending = False
        return {t.name: slot.host[t.name].copy() for t in self.outputs}

    def run(self, batch: Batch) -> Dict[str, np.ndarray]:
        """One batch, synchronously."""
        return self.collect(self.submit(batch))

    @property
    def in_flight(self) -> int:
        """How many submitted batches wait to be collected."""
        return sum(1 for slot in self.slots if slot.pending)

    def close(self) -> None:
        """Wait for what is in flight, then free every slot's buffers, stream, events and execution context (with the
        CUDA context current), and drop the engine; a second call does nothing."""
        with self.cuda.activate():
            for slot in self.slots:
                self._release(slot)
            self.slots = []
            self.engine = None

    def run_many(self, batches: Iterable[Batch]) -> Iterator[Dict[str, np.ndarray]]:
        """Outputs of each batch in order, keeping every slot busy: batch N+1 is copied while batch N computes."""
        pending: Deque[_Slot] = deque()
        try:
            for batch in batches:
                if len(pending) == len(self.slots):
                    yield self.collect(pending.popleft())
                pending.append(self.submit(batch))
            while pending:
                yield self.collect(pending.popleft())
        finally:
            # A bad frame or an abandoned stream must not leave a slot in flight for the next call.
            while pending:
                self.collect(pending.popleft())


def plugin_detections(outputs: Dict[str, np.ndarray], index: int) -> Detections:
    """Detections of batch item ``index`` from the YoloDecodeNMS outputs (input pixels)."""
    num_name, boxes_name, scores_name, classes_name = OUTPUT_NAMES
    k = outputs[scores_name].shape[1]
    n = min(max(int(outputs[num_name][index].reshape(-1)[0]), 0), k)
    return Detections(np.ascontiguousarray(outputs[boxes_name][index, :n], dtype=np.float32),
                      np.ascontiguousarray(outputs[scores_name][index, :n], dtype=np.float32),
                      np.ascontiguousarray(outputs[classes_name][index, :n], dtype=np.int32))


def metadata_spec(metadata: Dict[str, Any]) -> ModelSpec:
    """The detection part of a spec (names, anchors, strides) from engine metadata; it has no layers."""
    return ModelSpec((), int(metadata["nc"]), tuple(tuple((float(w), float(h)) for w, h in level)
                                                    for level in metadata["anchors"]),
                     tuple(float(x) for x in metadata["strides"]), 0.0, 0.0, tuple(metadata["names"]))


def metadata_options(metadata: Dict[str, Any]) -> BuildOptions:
    """The build options an engine was built with, from its metadata."""
    size = int(metadata["input_size"])
    extra = metadata["builder_options"]
    return BuildOptions(input_h=size, input_w=size, batch=int(metadata["batch"]),
                        c3_fusion=bool(extra.get("c3_fusion", True)), weights_fp16=False,
                        conf_thres=float(metadata["conf_thres"]), iou_thres=float(metadata["iou_thres"]),
                        max_det=int(metadata["max_det"]), class_agnostic=bool(metadata["class_agnostic"]),
                        pre_nms_top_k=int(extra.get("pre_nms_top_k", 4096)))


class Submitted(object):
    """A frame handed to ``TensorRTDetector.submit``: its runner slot and where the frame landed in the input."""

    def __init__(self, slot: _Slot, placed: Placed) -> None:
        self.slot = slot
        self.placed = placed


class TensorRTDetector(Detector):
    """A YOLOv5 engine with decode+NMS inside: images in, detections out, like the CPU detector.

    ``detect``, ``detect_batch`` and ``detect_stream`` pre-process on the GPU, straight into the engine's input
    buffer (``gpu_preprocess=False``, or a kernel that cannot be compiled, keeps the CPU letterbox); ``preprocess``
    is always the base class's CPU letterbox, for callers that hand ``infer`` a host batch. Batches run pipelined
    over the runner's slots, and ``detect_stream`` keeps the GPU busy while the next frames are pre-processed.
    """

    backend_name = "tensorrt"

    def __init__(self, runner: TrtRunner, spec: ModelSpec, options: BuildOptions,
                 keep_alive: Sequence[Any] = (), gpu_preprocess: bool = True, log: Log = print) -> None:
        super().__init__(spec, options)
        self.runner = runner
        self.batch_size = int(runner.input_shape[0])
        self.input_size = int(runner.input_shape[-1])
        self._keep_alive = list(keep_alive)  # the runtime must outlive the engine
        if gpu_preprocess and np.dtype(runner.input.dtype) != np.float32:
            log("pre-processing: on the CPU, since the engine's input is {} and the GPU kernel writes "
                "float32".format(np.dtype(runner.input.dtype)))
            gpu_preprocess = False
        self._gpu = open_gpu_preprocessors(runner.cuda, len(runner.slots), self.input_size, self.batch_size,
                                           log) if gpu_preprocess else []
        self._submitted: Deque["Submitted"] = deque()

    @property
    def gpu_preprocess(self) -> bool:
        """Whether ``detect*`` pre-process on the GPU."""
        return bool(self._gpu)

    def close(self) -> None:
        """Free the engine, its contexts, every stream, event and CUDA buffer, and the CUDA context; the detector is
        unusable afterwards, and a second call does nothing."""
        self.runner.close()
        with self.runner.cuda.activate():
            for pre in self._gpu:
                pre.close()
            # the last references to the kernel and the runtime go while the context is current (pycuda needs it)
            self._gpu = []
            self._keep_alive = []
        self._submitted.clear()
        self.runner.cuda.close()

    @property
    def max_in_flight(self) -> int:
        """How many submitted frames may wait to be collected: one per stream (``--streams``)."""
        return len(self.runner.slots)

    def submit(self, frame_bgr: np.ndarray) -> "Submitted":
        """Start detecting one frame and return at once: upload, pre-processing kernel (or the CPU letterbox) and
        engine are enqueued on the next of the runner's streams, with its own buffers.

        Contract: at most ``max_in_flight`` frames may be submitted and not yet collected (2 with two streams, so
        the loop may call ``submit(N+1)`` before ``collect(N)``; with ``--streams 1`` submit and collect must
        alternate), and frames are collected in the order they were submitted. A frame that is not a BGR image
        raises JetsonDetectError and leaves nothing in flight.
        """
        if self.runner.in_flight >= self.max_in_flight:
            raise RuntimeError("submit: {} frame(s) already in flight, collect one first".format(
                self.runner.in_flight))
        batch, placed = self._batch([frame_bgr])
        handle = Submitted(self.runner.submit(batch), placed)
        self._submitted.append(handle)
        return handle

    def collect(self, handle: "Submitted") -> Detections:
        """Wait for a submitted frame's stream, read its outputs and map the boxes to the frame's own pixels."""
        if not self._submitted or self._submitted[0] is not handle:
            raise RuntimeError("collect: frames must be collected once each, in the order they were submitted")
        self._submitted.popleft()
        outputs = self.runner.collect(handle.slot)
        geometry, shape = handle.placed[0]
        return self._to_original(plugin_detections(outputs, 0), geometry, shape)

    @property
    def last_gpu_ms(self) -> Optional[float]:
        """GPU time of the last batch (H2D excluded, decode+NMS included), from CUDA events."""
        return self.runner.last_gpu_ms

    def _engine_batches(self, batch: np.ndarray) -> Iterator[np.ndarray]:
        """Split into engine-sized batches, padding the last one with zeros."""
        b = self.batch_size
        for start in range(0, batch.shape[0], b):
            chunk = batch[start:start + b]
            if chunk.shape[0] < b:
                pad = np.zeros((b - chunk.shape[0],) + chunk.shape[1:], dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad], axis=0)
            yield chunk

    def infer(self, batch: np.ndarray) -> List[Detections]:
        """Detections in input pixels for a (N, 3, S, S) float32 batch (any N; run in engine-sized pieces)."""
        count = int(batch.shape[0])
        results: List[Detections] = []
        for outputs in self.runner.run_many(self._engine_batches(batch)):
            for i in range(min(self.batch_size, count - len(results))):
                results.append(plugin_detections(outputs, i))
        return results

    def _to_original(self, dets: Detections, geometry: LetterboxGeometry, shape: Tuple[int, ...]) -> Detections:
        return Detections(scale_boxes_to_original(dets.boxes, geometry, int(shape[0]), int(shape[1])), dets.scores,
                          dets.class_ids)

    def detect(self, image_bgr: np.ndarray) -> Detections:
        """Detections in original-image pixels."""
        return self.detect_batch([image_bgr])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> List[Detections]:
        """Detections in original-image pixels for each image."""
        return list(self.detect_stream(images))

    def _batch(self, group: List[np.ndarray]) -> Tuple[Batch, Placed]:
        """One engine batch of images: what the runner takes, and where each image landed (filled by the time the
        runner has submitted the batch)."""
        if not self._gpu:
            prepared = [self.preprocess(image) for image in group]
            tensor = next(self._engine_batches(np.concatenate([t for t, _ in prepared], axis=0)))
            return tensor, [(g, image.shape) for (_, g), image in zip(prepared, group)]
        placed: Placed = []

        def write(input_ptr: int, stream: Any, slot: int) -> None:
            # Batch items past the last image keep stale data: their outputs are never read.
            for i, image in enumerate(group):
                placed.append((self._gpu[slot].preprocess_into(image, input_ptr, i, stream), image.shape))

        return write, placed

    def detect_stream(self, images: Iterable[np.ndarray]) -> Iterator[Detections]:
        """Detections for a stream of images, in order; pre-processing and copies overlap the GPU's work."""
        placements: Deque[Placed] = deque()

        def batches() -> Iterator[Batch]:
            group: List[np.ndarray] = []
            for image in images:
                group.append(image)
                if len(group) == self.batch_size:
                    batch, placed = self._batch(group)
                    placements.append(placed)
                    yield batch
                    group = []
            if group:
                batch, placed = self._batch(group)
                placements.append(placed)
                yield batch

        for outputs in self.runner.run_many(batches()):
            for i, (geometry, shape) in enumerate(placements.popleft()):
                yield self._to_original(plugin_detections(outputs, i), geometry, shape)


def create_tensorrt_detector(weights: str, options: Optional[BuildOptions] = None, cfg: Optional[str] = None,
                             names: Optional[Sequence[str]] = None, log: Log = print, precision: str = "fp16",
                             engine_path: Optional[str] = None, streams: int = 2,
                             workspace_mib: int = DEFAULT_WORKSPACE_MIB, timing_cache: Optional[str] = None,
                             cuda_api: str = "auto", cpu_preprocess: bool = False,
                             **int8: Any) -> TensorRTDetector:
    """A TensorRT detector for ``weights`` (.wts/.pt: built once and cached; .engine: loaded after its checks).

    ``options`` are the CPU backend's ``BuildOptions`` (input size, batch, thresholds...); for an ``.engine`` they
    come from its metadata instead, since they are built into it. ``cpu_preprocess`` keeps the letterbox on the CPU.
    ``int8``: the ``EngineSettings`` INT8 fields (``calib_dir``, ``calib_cache``, ``calib_images``,
    ``calib_method``, ``int8_mode``).
    """
    require_tensorrt()
    import tensorrt as trt
    options = options or BuildOptions()
    cuda = open_cuda_memory(cuda_api)
    try:
        return _open_detector(trt, cuda, weights, options, cfg, names, log, precision, engine_path, streams,
                              workspace_mib, timing_cache, cpu_preprocess, int8)
    except BaseException:
        # build error, bad engine, out of memory: nothing stays allocated (the runner frees its own slots)
        cuda.close()
        raise


def _open_detector(trt: Any, cuda: CudaMemory, weights: str, options: BuildOptions, cfg: Optional[str],
                   names: Optional[Sequence[str]], log: Log, precision: str, engine_path: Optional[str], streams: int,
                   workspace_mib: int, timing_cache: Optional[str], cpu_preprocess: bool,
                   int8: Dict[str, Any]) -> TensorRTDetector:
    """The body of ``create_tensorrt_detector``, which closes ``cuda`` when this raises."""
    if weights.endswith(".engine"):
        path = engine_path or weights
        metadata = engine_cache.check_engine_file(path, trt.__version__, gpu_info(cuda))
        if (metadata["conf_thres"], metadata["iou_thres"]) != (options.conf_thres, options.iou_thres):
            log("engine {}: thresholds are built in: conf {} iou {} (rebuild to change them)".format(
                os.path.basename(path), metadata["conf_thres"], metadata["iou_thres"]))
    else:
        settings = settings_from_options(options, precision=precision, workspace_mib=workspace_mib,
                                         timing_cache=timing_cache,
                                         **dict((k, v) for k, v in int8.items() if v is not None))
        path, metadata = ensure_engine(weights, settings, cuda, cfg, engine_path, log, names)
    runtime, engine = deserialize_engine(cuda, path, trt_compat.process_logger(trt))
    runner = TrtRunner(engine, cuda, trt, streams)
    try:
        return TensorRTDetector(runner, metadata_spec(metadata), metadata_options(metadata),
                                keep_alive=(runtime,), gpu_preprocess=not cpu_preprocess, log=log)
    except BaseException:
        runner.close()
        raise
