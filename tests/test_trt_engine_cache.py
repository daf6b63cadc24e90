"""Engine metadata round trip and the reuse/rebuild decision (CPU only)."""

import json
from pathlib import Path

import pytest

from jetson_detect.backends import engine_cache
from jetson_detect.backends.engine_cache import GpuInfo
from jetson_detect.errors import JetsonDetectError

NANO = GpuInfo("NVIDIA Tegra X1", (5, 3))


def identity(**changes):
    values = dict(tensorrt_version="8.2.1.8", gpu=NANO, precision="fp16", input_size=640, batch=1,
                  names=["fire", "smoke"], anchors_px=(((10.0, 13.0), (16.0, 30.0)),), strides=(8.0, 16.0, 32.0),
                  conf_thres=0.25, iou_thres=0.45, max_det=300, class_agnostic=False, weights_sha256="a" * 64,
                  plugin="YoloDecodeNMS v1", builder_options={"workspace_mib": 256})
    values.update(changes)
    return engine_cache.engine_identity(**values)


@pytest.fixture
def engine(tmp_path):
    path = tmp_path / "model.engine"
    path.write_bytes(b"serialized engine bytes")
    engine_cache.write_metadata(str(path), identity(), {"build_seconds": 12.5})
    return path


def test_metadata_round_trip_keeps_every_field(engine):
    record = engine_cache.read_metadata(str(engine))
    expected = dict(identity(), build_seconds=12.5, engine_sha256=engine_cache.sha256_file(str(engine)))
    assert record == expected
    assert record["compute_capability"] == "5.3"
    assert record["anchors"] == [[[10.0, 13.0], [16.0, 30.0]]]
    assert record["nc"] == 2


def test_metadata_file_sits_next_to_the_engine(engine):
    assert Path(engine_cache.metadata_path(str(engine))) == engine.with_name("model.engine.json")


def test_matching_metadata_reuses_the_engine(engine):
    assert engine_cache.decide(str(engine), identity()) == engine_cache.CacheDecision(True, "")


def test_missing_engine_is_built(tmp_path):
    path = str(tmp_path / "none.engine")
    assert engine_cache.decide(path, identity()) == (False, "no engine at {} yet".format(path))


@pytest.mark.parametrize("change, reason", [
    ({"tensorrt_version": "8.2.3.0"}, "TensorRT version differs (engine: 8.2.1.8, now: 8.2.3.0)"),
    ({"gpu": GpuInfo("NVIDIA GeForce RTX 3060", (8, 6))},
     "GPU differs (engine: NVIDIA Tegra X1, now: NVIDIA GeForce RTX 3060)"),
    ({"weights_sha256": "b" * 64}, "weights (sha256) differs (engine: aaaaaaaaaaaa…, now: bbbbbbbbbbbb…)"),
    ({"precision": "fp32"}, "precision differs (engine: fp16, now: fp32)"),
    ({"input_size": 320}, "input size differs (engine: 640, now: 320)"),
    ({"batch": 4}, "batch size differs (engine: 1, now: 4)"),
    ({"conf_thres": 0.5}, "confidence threshold differs (engine: 0.25, now: 0.5)"),
    ({"builder_options": {"workspace_mib": 512}},
     'builder options differs (engine: {"workspace_mib": 256}, now: {"workspace_mib": 512})'),
])
def test_mismatch_rebuilds_with_a_one_line_reason(engine, change, reason):
    assert engine_cache.decide(str(engine), identity(**change)) == (False, reason)


def test_engine_without_metadata_is_rebuilt(tmp_path):
    path = tmp_path / "foreign.engine"
    path.write_bytes(b"someone else's engine")
    decision = engine_cache.decide(str(path), identity())
    assert decision.reuse is False
    assert decision.reason.startswith("no metadata file foreign.engine.json next to it")


def test_corrupt_metadata_is_rebuilt(engine):
    Path(engine_cache.metadata_path(str(engine))).write_text("{not json")
    decision = engine_cache.decide(str(engine), identity())
    assert decision.reuse is False
    assert decision.reason.startswith("unreadable metadata model.engine.json (")


def test_metadata_of_another_tool_is_rebuilt(engine):
    Path(engine_cache.metadata_path(str(engine))).write_text(json.dumps({"format": 1}))
    assert engine_cache.decide(str(engine), identity()) == (
        False, "metadata model.engine.json lacks 'tensorrt_version' (not jetson_detect engine metadata)")


def test_damaged_engine_is_rebuilt(engine):
    engine.write_bytes(b"serialized engine bytes, truncated or replaced")
    assert engine_cache.decide(str(engine), identity()) == (
        False, "{} does not match its metadata (damaged or replaced)".format(engine))


def test_engine_given_directly_is_checked_against_this_machine(engine):
    assert engine_cache.check_engine_file(str(engine), "8.2.1.8", NANO)["names"] == ["fire", "smoke"]


def test_engine_given_directly_from_another_gpu_is_refused(engine):
    with pytest.raises(JetsonDetectError, match=r"model\.engine: GPU differs \(engine: NVIDIA Tegra X1, now: Orin\): "
                                                r"engines only run where they were built"):
        engine_cache.check_engine_file(str(engine), "8.2.1.8", GpuInfo("Orin", (8, 7)))


def test_engine_given_directly_from_another_tensorrt_is_refused(engine):
    with pytest.raises(JetsonDetectError, match=r"TensorRT version differs \(engine: 8\.2\.1\.8, now: 10\.13\.0\)"):
        engine_cache.check_engine_file(str(engine), "10.13.0", NANO)


def test_missing_engine_given_directly_is_an_error(tmp_path):
    with pytest.raises(JetsonDetectError, match=r"x\.engine: no such engine file"):
        engine_cache.check_engine_file(str(tmp_path / "x.engine"), "8.2.1.8", NANO)


def test_foreign_engine_given_directly_is_an_error(tmp_path):
    path = tmp_path / "foreign.engine"
    path.write_bytes(b"\x00" * 10)
    with pytest.raises(JetsonDetectError, match=r"foreign\.engine: no metadata file foreign\.engine\.json next to "
                                                r"it .*: rebuild it with 'python -m jetson_detect build'$"):
        engine_cache.check_engine_file(str(path), "8.2.1.8", NANO)


def test_damaged_engine_given_directly_is_an_error(engine):
    engine.write_bytes(b"flipped bits")
    with pytest.raises(JetsonDetectError, match="the engine does not match its metadata"):
        engine_cache.check_engine_file(str(engine), "8.2.1.8", NANO)


def test_unwritable_metadata_path_is_an_error(tmp_path):
    engine = tmp_path / "e.engine"
    engine.write_bytes(b"x")
    (tmp_path / "e.engine.json").mkdir()
    with pytest.raises(JetsonDetectError, match=r"e\.engine\.json: cannot write the engine metadata"):
        engine_cache.write_metadata(str(engine), identity())
