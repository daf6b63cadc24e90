"""INT8 calibration on CPU: image listing, exact pre-processing, batch feeding, the cache, and refusals."""

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from jetson_detect.backends import calibrator
from jetson_detect.backends.calibrator import CalibrationBatches, CalibrationFeeder
from jetson_detect.errors import JetsonDetectError
from jetson_detect.math.letterbox import letterbox, to_network_input

from trt_doubles import FakeCudaMemory, FakeTrt

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
IMAGES = [SHARED / "images" / "bus.jpg", SHARED / "images" / "zidane.jpg"]


@pytest.fixture
def calib_dir(tmp_path):
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(3):
        shutil.copy(IMAGES[i % 2], folder / "frame{}.jpg".format(i))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_images_are_listed_sorted_and_limited(calib_dir):
    assert calibrator.list_calibration_images(str(calib_dir), 2) == [
        str(calib_dir / "frame0.jpg"), str(calib_dir / "frame1.jpg")]


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(JetsonDetectError, match=r"^--calib-dir .*nowhere: no such folder"):
        calibrator.list_calibration_images(str(tmp_path / "nowhere"))


def test_folder_without_images_is_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(JetsonDetectError, match=r"no images \(\.jpg, \.jpeg, \.png, \.bmp, \.tif, \.tiff, \.webp\) in "
                                                r"the folder"):
        calibrator.list_calibration_images(str(tmp_path))


def test_unlistable_folder_is_refused(tmp_path, monkeypatch):
    def denied(path):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(calibrator.os, "listdir", denied)
    with pytest.raises(JetsonDetectError, match=r"cannot list the folder \(Permission denied\): check its permissions"):
        calibrator.list_calibration_images(str(tmp_path))


def test_batches_use_the_exact_run_time_letterbox(calib_dir):
    paths = calibrator.list_calibration_images(str(calib_dir))
    batches = CalibrationBatches(paths, 160, 2)
    assert len(batches) == 1  # 3 images, batch 2: the partial batch is dropped
    batch = batches.batch(0)
    expected = np.concatenate([to_network_input(letterbox(cv2.imread(p), 160, resize=cv2.resize)[0])
                               for p in paths[:2]])
    assert batch.dtype == np.float32 and batch.shape == (2, 3, 160, 160)
    np.testing.assert_array_equal(batch, expected)


def test_fewer_images_than_one_batch_is_refused(calib_dir):
    with pytest.raises(JetsonDetectError, match=r"calibration: 1 image\(s\) for a batch of 4"):
        CalibrationBatches([str(calib_dir / "frame0.jpg")], 160, 4)


def test_unreadable_image_is_refused_before_building(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(JetsonDetectError, match=r"broken\.jpg: cannot be read as a colour image"):
        calibrator.make_feeder(str(tmp_path), None, 10, 160, 1, FakeCudaMemory())


def test_int8_without_images_or_cache_is_refused():
    with pytest.raises(JetsonDetectError, match=r"^--precision int8 needs --calib-dir DIR"):
        calibrator.make_feeder(None, None, 500, 160, 1, FakeCudaMemory())


def test_feeder_copies_each_batch_into_one_device_buffer_then_ends(calib_dir):
    memory = FakeCudaMemory()
    feeder = calibrator.make_feeder(str(calib_dir), None, 3, 96, 1, memory, log=lambda m: None)
    pointers = []
    with memory.activate():
        while True:
            batch = feeder.next_batch(["images"])
            if batch is None:
                break
            pointers.append(batch[0])
            fed = memory.read(batch[0], (1, 3, 96, 96), np.float32)
            np.testing.assert_array_equal(fed, feeder.batches.batch(len(pointers) - 1))
    assert len(pointers) == 3 and len(set(pointers)) == 1
    assert feeder.next_batch(["images"]) is None


def test_existing_cache_skips_the_images(tmp_path):
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"TRT-8201-EntropyCalibration2\n")
    feeder = calibrator.make_feeder(None, str(cache), 500, 160, 1, FakeCudaMemory(), log=lambda m: None)
    assert feeder.read_cache() == b"TRT-8201-EntropyCalibration2\n"
    assert feeder.next_batch(["images"]) is None


def test_cache_is_written_for_the_next_build(calib_dir, tmp_path):
    feeder = calibrator.make_feeder(str(calib_dir), str(tmp_path / "new.cache"), 3, 96, 1, FakeCudaMemory(),
                                    log=lambda m: None)
    assert feeder.read_cache() is None
    feeder.write_cache(b"table")
    assert (tmp_path / "new.cache").read_bytes() == b"table"


def test_unwritable_cache_error_is_raised_after_the_build(calib_dir, tmp_path):
    feeder = CalibrationFeeder(None, FakeCudaMemory(), str(tmp_path / "no" / "dir" / "c.cache"), 1,
                               log=lambda m: None)
    feeder.write_cache(b"table")
    with pytest.raises(JetsonDetectError, match=r"c\.cache: cannot write the --calib-cache file"):
        feeder.raise_if_failed()


def test_image_failing_mid_calibration_ends_it_and_is_raised_afterwards(calib_dir):
    memory = FakeCudaMemory()
    feeder = calibrator.make_feeder(str(calib_dir), None, 3, 96, 1, memory, log=lambda m: None)
    os.remove(feeder.batches.paths[1])
    with memory.activate():
        assert feeder.next_batch(["images"]) is not None
        assert feeder.next_batch(["images"]) is None
    with pytest.raises(JetsonDetectError, match=r"frame1\.jpg: cannot be read as a colour image"):
        feeder.raise_if_failed()


@pytest.mark.parametrize("style", ["8.0.1", "8.2.1", "10.16.0"])
def test_entropy_calibrator_subclasses_tensorrts_class_and_delegates(style, calib_dir):
    fake = FakeTrt(style)
    feeder = calibrator.make_feeder(str(calib_dir), None, 2, 96, 2, fake.memory, log=lambda m: None)
    calib = calibrator.make_entropy_calibrator(fake.module, feeder)
    assert isinstance(calib, fake.module.IInt8EntropyCalibrator2)
    assert calib._base_initialised is True
    assert calib.get_batch_size() == 2
    with fake.memory.activate():
        assert len(calib.get_batch(["images"])) == 1
        assert calib.get_batch(["images"]) is None
