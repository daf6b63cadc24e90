"""Shared fixtures: paths into ../shared and models built once per test session (building takes a second)."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WTS = SHARED / "weights" / "yolov5n.wts"
PT = SHARED / "weights" / "yolov5n.pt"
PPE_PT = SHARED / "weights" / "ppe_helmet_vest_yolov5n.pt"
REFERENCE = SHARED / "reference"


def pytest_collection_modifyitems(config, items):
    if not SHARED.is_dir():
        skip = pytest.mark.skip(reason="../shared (weights, images, references) is not beside the checkout")
        for item in items:
            if "shared" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def images():
    """bus.jpg and zidane.jpg as BGR arrays (read-only by convention)."""
    import cv2
    return [cv2.imread(str(SHARED / "images" / name)) for name in ("bus.jpg", "zidane.jpg")]


@pytest.fixture(params=["cuda-python", "pycuda"])
def cuda_memory(request):
    """A real CUDA-memory implementation on this machine's GPU; skips when there is none (CI)."""
    from jetson_detect.backends.cuda_memory import open_cuda_memory
    from jetson_detect.errors import JetsonDetectError
    try:
        mem = open_cuda_memory(request.param)
    except JetsonDetectError as exc:
        pytest.skip(str(exc))
    yield mem
    mem.close()


@pytest.fixture(scope="session")
def coco_weights():
    from jetson_detect.model.weights import read_wts
    return read_wts(str(WTS))


@pytest.fixture(scope="session")
def coco_spec(coco_weights):
    from jetson_detect.model.spec import resolve_spec
    return resolve_spec(coco_weights)


@pytest.fixture(scope="session")
def coco_detector():
    """The CPU-backend detector for the official COCO YOLOv5n at 640, reference thresholds."""
    from jetson_detect.backends.detector import create_detector
    return create_detector(str(WTS), backend="onnxruntime", img_size=640)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 96 KiB tmpfs, for full-disk tests; skips where mounting is not allowed (not root): the injected
    ENOSPC tests cover a full disk there."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount_point)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here ({}); the injected-fault tests cover a full disk".format(
            done.stdout.decode().strip()[:80]))
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)])


def fill_disk(folder):
    """Write a filler file until the filesystem holding ``folder`` is full; return its path."""
    path = Path(str(folder)) / "filler"
    with open(str(path), "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    return path


def video_frames(path):
    """Every frame OpenCV decodes from a video file, in order."""
    import cv2
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames
