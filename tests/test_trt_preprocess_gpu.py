"""The letterbox kernel on a real GPU through the CUDA-memory seam, against the CPU letterbox (skipped without one).

Compiles ``letterbox_preprocess.cu`` with the implementation's compiler (cuda-python: NVRTC; pycuda: nvcc), runs
``GpuPreprocessor`` on real photos and odd synthetic sizes into batch items of one device buffer, and requires
max |GPU - CPU| <= 1/255 and the CPU's geometry for every frame.
"""

import glob
from pathlib import Path

import cv2
import numpy as np
import pytest

from jetson_detect.backends.gpu_preprocess import GpuPreprocessor, compile_preprocess_kernel
from jetson_detect.math.letterbox import letterbox, letterbox_geometry, to_network_input

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TOLERANCE = 1.0 / 255.0 + 1e-6
SYNTHETIC_SHAPES = ((1, 1), (7, 13), (333, 517), (1080, 1920), (1920, 1080), (640, 640), (479, 641))


@pytest.fixture
def memory(cuda_memory):
    return cuda_memory


def frames():
    paths = sorted(glob.glob(str(SHARED / "data" / "coco64" / "images" / "*.jpg")))[:24]
    paths += sorted(glob.glob(str(SHARED / "data" / "fire_smoke" / "images" / "*.jpg")))[:8]
    paths += [str(SHARED / "images" / "bus.jpg"), str(SHARED / "images" / "zidane.jpg")]
    photos = [(Path(p).name, cv2.imread(p)) for p in paths if Path(p).is_file()]
    assert len(photos) >= 2, "the photos under ../shared are missing"
    rng = np.random.default_rng(0)
    return photos + [("random_{}x{}".format(w, h), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
                     for h, w in SYNTHETIC_SHAPES]


def cpu_input(image, size):
    return to_network_input(letterbox(image, size, lambda img, wh: cv2.resize(img, wh,
                                                                                interpolation=cv2.INTER_LINEAR))[0])[0]


@pytest.mark.parametrize("size", [320, 640])
def test_kernel_equals_the_cpu_letterbox_within_one_grey_level(memory, size):
    cases = frames()
    plane = 3 * size * size
    with memory.activate():
        pre = GpuPreprocessor(memory, compile_preprocess_kernel(memory), size, batch=2)
        output = memory.device_alloc(2 * plane * 4)
        back = memory.pinned_empty((2, 3, size, size), np.float32)
        stream = memory.stream_create()
        worst, failures = 0.0, []
        for start in range(0, len(cases), 2):
            pair = cases[start:start + 2]
            geometries = [pre.preprocess_into(image, output, i, stream) for i, (_, image) in enumerate(pair)]
            memory.copy_dtoh_async(back, output, stream)
            memory.stream_synchronize(stream)
            for i, (name, image) in enumerate(pair):
                assert geometries[i] == letterbox_geometry(image.shape[0], image.shape[1], size), name
                diff = float(np.abs(back[i] - cpu_input(image, size)).max())
                worst = max(worst, diff)
                if diff > TOLERANCE:
                    failures.append((name, diff * 255))
    print("{} on {}: {} frames at {}, worst |GPU - CPU| = {:.3f} grey levels".format(
        memory.api, memory.device_name(), len(cases), size, worst * 255))
    assert failures == []
