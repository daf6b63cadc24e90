"""Pre-processing on the GPU: BGR frames into the engine's input buffer with one CUDA kernel per frame.

The kernel (``plugin/kernels/letterbox_preprocess.cu``) does letterbox + BGR→RGB + /255 + HWC→CHW and equals the
CPU letterbox within 1/255. The host side only copies the raw frame (page-locked, then asynchronously to the
device) and computes the geometry with ``letterbox_geometry``; no float image is ever made on the CPU.
"""

import os
from typing import Any, Callable, List, Optional

import numpy as np

from ..errors import JetsonDetectError
from ..math.letterbox import PAD_VALUE, LetterboxGeometry, letterbox_geometry
from .cuda_memory import CudaMemory

KERNEL_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugin", "kernels",
                           "letterbox_preprocess.cu")
KERNEL_NAME = "letterbox_preprocess"
BLOCK = (16, 16, 1)


def compile_preprocess_kernel(cuda: CudaMemory) -> Any:
    """The letterbox kernel compiled for this device (call with the context current); JetsonDetectError if not."""
    try:
        with open(KERNEL_PATH) as handle:
            source = handle.read()
    except OSError as exc:
        raise JetsonDetectError("{}: cannot read the kernel ({}): reinstall jetson_detect".format(
            KERNEL_PATH, exc.strerror or exc)) from None
    return cuda.compile_kernel(source, KERNEL_NAME, os.path.basename(KERNEL_PATH))


class _RawFrame(object):
    """A page-locked host buffer and a device buffer for one raw BGR frame, grown when a bigger frame arrives."""

    def __init__(self) -> None:
        self.host: Optional[np.ndarray] = None
        self.device = 0
        self.capacity = 0

    def fit(self, cuda: CudaMemory, nbytes: int) -> None:
        # Only called between inferences of the owning slot (its stream is idle), so freeing here is safe.
        if nbytes <= self.capacity:
            return
        if self.host is not None:
            cuda.pinned_free(self.host)
            cuda.device_free(self.device)
            self.host, self.capacity = None, 0
        self.host = cuda.pinned_empty((nbytes,), np.uint8)
        self.device = cuda.device_alloc(nbytes)  # capacity stays 0 until both exist: free() then frees only the host
        self.capacity = nbytes

    def free(self, cuda: CudaMemory) -> None:
        """Give both buffers back (context current)."""
        if self.host is not None:
            cuda.pinned_free(self.host)
            if self.capacity:
                cuda.device_free(self.device)
        self.host, self.device, self.capacity = None, 0, 0


class GpuPreprocessor(object):
    """Pre-processes the frames of one runner slot: one raw-frame buffer pair per batch item, allocated once
    (grown, never per frame); each frame lands in batch item ``index`` of the engine's input device buffer."""

    def __init__(self, cuda: CudaMemory, kernel: Any, input_size: int, batch: int) -> None:
        self.cuda = cuda
        self.kernel = kernel
        self.input_size = input_size
        self._frames = [_RawFrame() for _ in range(batch)]

    def close(self) -> None:
        """Free the raw-frame buffers (context current)."""
        for raw in self._frames:
            raw.free(self.cuda)

    def preprocess_into(self, image_bgr: np.ndarray, input_ptr: int, index: int, stream: Any) -> LetterboxGeometry:
        """Enqueue frame → (3, S, S) float32 at batch item ``index`` of ``input_ptr`` on ``stream`` (context
        current); returns where the image landed, as the CPU letterbox would."""
        if image_bgr is None or image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.size == 0 \
                or image_bgr.dtype != np.uint8:
            raise JetsonDetectError("frame is not a BGR uint8 image (shape {}, {})".format(
                None if image_bgr is None else image_bgr.shape, None if image_bgr is None else image_bgr.dtype))
        height, width = int(image_bgr.shape[0]), int(image_bgr.shape[1])
        size = self.input_size
        geometry = letterbox_geometry(height, width, size)
        raw = self._frames[index]
        raw.fit(self.cuda, image_bgr.nbytes)
        assert raw.host is not None
        staged = raw.host[:image_bgr.nbytes].reshape(image_bgr.shape)
        np.copyto(staged, image_bgr)  # also makes a strided view (a crop) contiguous: the kernel reads whole rows
        self.cuda.copy_htod_async(raw.device, staged, stream)
        output_ptr = input_ptr + index * 3 * size * size * 4
        grid = ((size + BLOCK[0] - 1) // BLOCK[0], (size + BLOCK[1] - 1) // BLOCK[1], 1)
        self.cuda.launch_kernel(self.kernel, grid, BLOCK, (
            np.uintp(raw.device), np.int32(height), np.int32(width), np.int32(width * 3), np.uintp(output_ptr),
            np.int32(size), np.int32(geometry.new_w), np.int32(geometry.new_h), np.int32(geometry.left),
            np.int32(geometry.top), np.float32(PAD_VALUE)), stream)
        return geometry


def open_gpu_preprocessors(cuda: CudaMemory, slots: int, input_size: int, batch: int,
                           log: Callable[[str], None]) -> List[GpuPreprocessor]:
    """One pre-processor per runner slot sharing one compiled kernel, or [] (pre-processing stays on the CPU, said
    in one log line) when the kernel cannot be compiled here."""
    try:
        with cuda.activate():
            kernel = compile_preprocess_kernel(cuda)
    except (JetsonDetectError, NotImplementedError) as exc:
        why = str(exc) or "{} CUDA memory cannot compile kernels".format(cuda.api)
        log("pre-processing: on the CPU, since the GPU kernel is unavailable: {}".format(why))
        return []
    return [GpuPreprocessor(cuda, kernel, input_size, batch) for _ in range(slots)]
