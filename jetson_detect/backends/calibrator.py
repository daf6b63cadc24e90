"""INT8 entropy calibration over a folder of real images, with the exact run-time pre-processing.

``CalibrationBatches`` turns image files into letterboxed network-input batches (``jetson_detect.math.letterbox``
with ``cv2.resize``, as the detector does); ``CalibrationFeeder`` holds the calibrator's logic (feed one device
buffer per batch, read and write the cache) independent of TensorRT, so it is tested on CPU;
``make_entropy_calibrator`` wraps it in TensorRT's ``IInt8EntropyCalibrator2`` (8.x–10.x only, §6 of
``../shared/TRT_COMPAT.md``). An error inside a TensorRT callback cannot propagate, so the feeder stores it, ends
calibration, and the builder raises it afterwards.
"""

import os
import sys
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from ..atomic_write import atomic_write_bytes
from ..errors import JetsonDetectError
from ..image_files import IMAGE_SUFFIXES
from ..math.letterbox import letterbox, to_network_input
from . import trt_compat
from .cuda_memory import CudaMemory

DEFAULT_CALIBRATION_IMAGES = 500

ReadImage = Callable[[str], Optional[np.ndarray]]


def _opencv() -> Any:
    try:
        import cv2
    except ImportError:
        raise JetsonDetectError("OpenCV is needed to read calibration images: on the Nano use JetPack's "
                                "python3-opencv, elsewhere pip install opencv-python-headless") from None
    return cv2


def list_calibration_images(folder: str, limit: int = DEFAULT_CALIBRATION_IMAGES) -> List[str]:
    """Up to ``limit`` image paths from ``folder``, sorted by name; a one-line error when there are none."""
    if not os.path.isdir(folder):
        raise JetsonDetectError("--calib-dir {}: no such folder: point it at a folder of representative images "
                                "(about 500 frames from the camera)".format(folder))
    try:
        entries = sorted(os.listdir(folder))
    except OSError as exc:
        raise JetsonDetectError("--calib-dir {}: cannot list the folder ({}): check its permissions".format(
            folder, exc.strerror or exc)) from None
    images = [os.path.join(folder, e) for e in entries if e.lower().endswith(IMAGE_SUFFIXES)]
    if not images:
        raise JetsonDetectError("--calib-dir {}: no images ({}) in the folder: add about 500 representative "
                                "frames".format(folder, ", ".join(IMAGE_SUFFIXES)))
    if limit < 1:
        raise JetsonDetectError("--calib-images {}: must be at least 1".format(limit))
    return images[:limit]


class CalibrationBatches(object):
    """Network-input batches (B, 3, S, S) float32 over image files; a trailing partial batch is dropped."""

    def __init__(self, paths: Sequence[str], input_size: int, batch_size: int,
                 read: Optional[ReadImage] = None, resize: Optional[Any] = None) -> None:
        if len(paths) < batch_size:
            raise JetsonDetectError("calibration: {} image(s) for a batch of {}: give at least one full batch".format(
                len(paths), batch_size))
        if read is None or resize is None:
            cv2 = _opencv()
            from ..video.sources import read_image_file  # never opens a FIFO or device among the images
            read = read or (lambda path: read_image_file(path)[0])
            resize = resize or cv2.resize
        self.paths = list(paths)
        self.input_size = input_size
        self.batch_size = batch_size
        self._read = read
        self._resize = resize

    def __len__(self) -> int:
        return len(self.paths) // self.batch_size

    def image(self, path: str) -> np.ndarray:
        """One (1, 3, S, S) input, letterboxed exactly as at run time."""
        image = self._read(path)
        if image is None or image.ndim != 3 or image.shape[2] != 3:
            raise JetsonDetectError("{}: cannot be read as a colour image: remove it from the calibration "
                                    "folder".format(path))
        boxed, _ = letterbox(image, self.input_size, resize=self._resize)
        return to_network_input(boxed)

    def batch(self, index: int) -> np.ndarray:
        """Batch ``index`` as one contiguous float32 array."""
        start = index * self.batch_size
        return np.ascontiguousarray(np.concatenate(
            [self.image(p) for p in self.paths[start:start + self.batch_size]], axis=0), dtype=np.float32)


class CalibrationFeeder(object):
    """The calibrator's behaviour: the cache first, else every batch through one device buffer, then the cache."""

    def __init__(self, batches: Optional[CalibrationBatches], cuda: CudaMemory, cache_path: Optional[str],
                 batch_size: int, log: Callable[[str], None] = print) -> None:
        self.batches = batches
        self.cuda = cuda
        self.cache_path = cache_path
        self.batch_size = batch_size
        self.log = log
        self.index = 0
        self.error: Optional[JetsonDetectError] = None
        self._device_ptr: Optional[int] = None

    def next_batch(self, names: Sequence[str]) -> Optional[List[int]]:
        """Device pointers (one per input name) of the next batch, or None when done (or after an error)."""
        if self.error is not None or self.batches is None or self.index >= len(self.batches):
            return None
        try:
            batch = self.batches.batch(self.index)
        except JetsonDetectError as exc:
            self.error = exc
            return None
        if self._device_ptr is None:
            self._device_ptr = self.cuda.device_alloc(batch.nbytes)
        self.cuda.copy_htod(self._device_ptr, batch)
        self.index += 1
        if self.index % 25 == 0 or self.index == len(self.batches):
            self.log("calibration: batch {}/{}".format(self.index, len(self.batches)))
        return [self._device_ptr for _ in names]

    def read_cache(self) -> Optional[bytes]:
        """The cache file's bytes when it exists (calibration is then skipped), else None."""
        if not self.cache_path or not os.path.isfile(self.cache_path):
            return None
        try:
            with open(self.cache_path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            self.error = JetsonDetectError("--calib-cache {}: cannot read ({})".format(
                self.cache_path, exc.strerror or exc))
            return None
        self.log("calibration: using the cache {}".format(self.cache_path))
        return data or None

    def write_cache(self, data: bytes) -> None:
        """Keep TensorRT's calibration table for the next build."""
        if not self.cache_path:
            return
        try:
            atomic_write_bytes(self.cache_path, data, "the --calib-cache file")
        except JetsonDetectError as exc:
            self.error = exc
            return
        self.log("calibration: wrote the cache {}".format(self.cache_path))

    def raise_if_failed(self) -> None:
        """Raise the error a TensorRT callback had to swallow."""
        if self.error is not None:
            raise self.error


def make_feeder(calib_dir: Optional[str], cache_path: Optional[str], calib_images: int, input_size: int,
                batch_size: int, cuda: CudaMemory, log: Callable[[str], None] = print,
                read: Optional[ReadImage] = None, resize: Optional[Any] = None) -> CalibrationFeeder:
    """A feeder from the CLI options: an existing cache needs no images; otherwise the folder must hold some."""
    if cache_path and os.path.isfile(cache_path):
        return CalibrationFeeder(None, cuda, cache_path, batch_size, log)
    if not calib_dir:
        raise JetsonDetectError("--precision int8 needs --calib-dir DIR (a folder of about 500 representative "
                                "images) or an existing --calib-cache FILE")
    batches = CalibrationBatches(list_calibration_images(calib_dir, calib_images), input_size, batch_size, read,
                                 resize)
    batches.image(batches.paths[0])  # fail now, not inside TensorRT, when the images are unreadable
    return CalibrationFeeder(batches, cuda, cache_path, batch_size, log)


def make_entropy_calibrator(trt: Any, feeder: CalibrationFeeder) -> Any:
    """TensorRT's ``IInt8EntropyCalibrator2`` driven by ``feeder``."""
    base: Any = trt_compat.entropy_calibrator_base(trt)

    class EntropyCalibrator(base):
        def __init__(self) -> None:
            super().__init__()  # TensorRT's pybind base must be initialised explicitly

        def get_batch_size(self) -> int:
            return feeder.batch_size

        def get_batch(self, names: Sequence[str]) -> Optional[List[int]]:
            try:
                return feeder.next_batch(names)
            except Exception as exc:  # an exception here would be lost inside TensorRT: keep it for later
                feeder.error = JetsonDetectError("calibration failed: {}".format(exc))
                print("calibration failed: {}".format(exc), file=sys.stderr)
                return None

        def read_calibration_cache(self) -> Optional[bytes]:
            return feeder.read_cache()

        def write_calibration_cache(self, cache: Any) -> None:
            feeder.write_cache(bytes(memoryview(cache)))

    return EntropyCalibrator()
