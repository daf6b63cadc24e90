"""Engine building through the real ``build_network`` against doubles of TensorRT 8.0.1, 8.2.1, 10.16 and 11.1."""

import argparse
import json
import shutil
from pathlib import Path

import pytest

import jetson_detect.model.network
from jetson_detect.backends import engine_cache, tensorrt_builder
from jetson_detect.backends.tensorrt_builder import EngineSettings
from jetson_detect.commands import build as build_command
from jetson_detect.errors import JetsonDetectError
from jetson_detect.model.decode_nms import OUTPUT_NAMES, PLUGIN_NAME

from trt_doubles import FakeCudaMemory, install, use_fake_cuda

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WTS = SHARED / "weights" / "yolov5n.wts"
SMALL = EngineSettings(precision="fp16", img_size=96, batch=1)


@pytest.fixture(scope="module")
def model():
    return tensorrt_builder.load_model(str(WTS))


def build(monkeypatch, style, model, settings=SMALL, memory=None, log=None):
    fake = install(monkeypatch, style, memory)
    messages = []
    blob = tensorrt_builder.build_serialized_engine(model[0], model[1], settings, fake.memory,
                                                    log=log or messages.append, weights_path=str(WTS))
    return fake, blob, messages


def test_the_builder_runs_the_same_build_network_as_the_cpu_backend():
    assert tensorrt_builder.build_network is jetson_detect.model.network.build_network


@pytest.mark.parametrize("style", ["8.0.1", "8.2.1", "10.16.0", "11.1.0"])
def test_build_emits_the_whole_network_with_the_plugin_outputs(monkeypatch, model, style):
    fake, blob, _ = build(monkeypatch, style, model)
    network = fake.networks[0]
    assert blob.startswith(b"FAKETRT1|")
    assert [t.name for t in network.outputs] == list(OUTPUT_NAMES)
    assert [layer.name for layer in network.layers].count(PLUGIN_NAME) == 1
    assert tuple(network.inputs[0].shape) == (1, 3, 96, 96)


@pytest.mark.parametrize("style, creation_flags, flags, workspace, pools, input_dtype", [
    ("8.0.1", 1, ["FP16"], 256 << 20, {}, "float32"),
    ("8.2.1", 1, ["FP16"], 256 << 20, {}, "float32"),
    ("10.16.0", 0, ["FP16"], 0, {"WORKSPACE": 256 << 20}, "float32"),
    ("11.1.0", 0, [], 0, {"WORKSPACE": 256 << 20}, "float16"),
])
def test_fp16_build_per_version(monkeypatch, model, style, creation_flags, flags, workspace, pools, input_dtype):
    fake, _, _ = build(monkeypatch, style, model)
    assert fake.built == [{"flags": flags, "workspace": workspace, "pools": pools, "creation_flags": creation_flags}]
    assert fake.networks[0].inputs[0].dtype == input_dtype


def test_fp32_build_sets_no_precision_flag(monkeypatch, model):
    fake, _, _ = build(monkeypatch, "8.2.1", model, SMALL._replace(precision="fp32", workspace_mib=64))
    assert fake.built[0]["flags"] == [] and fake.built[0]["workspace"] == 64 << 20


@pytest.mark.parametrize("style", ["8.2.1", "11.1.0"])
def test_a_plugin_field_out_of_range_is_refused_before_the_creator_is_called(monkeypatch, model, style):
    fake = install(monkeypatch, style)
    with pytest.raises(JetsonDetectError, match=r"^decode\+NMS plugin field conf_thres must be in \[0, 1\), got 1\.0$"):
        tensorrt_builder.build_serialized_engine(model[0], model[1], SMALL._replace(conf_thres=1.0), fake.memory,
                                                 log=lambda m: None)
    assert fake.created_plugins == []  # TensorRT's creator would only have returned None


def test_plugins_are_loaded_before_building(monkeypatch, model):
    fake, _, _ = build(monkeypatch, "10.16.0", model)
    assert fake.plugin_loads == [1]  # TensorRT's plugins initialised, then ours loaded, once


def test_failed_build_is_a_one_line_error(monkeypatch, model):
    fake = install(monkeypatch, "10.16.0")
    fake.fail_build = True
    with pytest.raises(JetsonDetectError, match=r"^TensorRT could not build the engine \(its log above says why\)"):
        tensorrt_builder.build_serialized_engine(model[0], model[1], SMALL, fake.memory, log=lambda m: None)


def test_progress_monitor_phases_are_printed_where_the_version_has_one(monkeypatch, model):
    _, _, messages = build(monkeypatch, "10.16.0", model)
    assert any(m.startswith("build: Building engine started (") for m in messages)
    assert any(m.startswith("build: Building engine done (") for m in messages)


def test_progress_prints_elapsed_time_while_building():
    messages = []
    with tensorrt_builder.BuildProgress(messages.append, interval_s=0.01):
        import time
        time.sleep(0.08)
    assert messages and messages[0].startswith("build: still building, ") and messages[0].endswith(" s elapsed")


def test_timing_cache_is_saved_then_loaded(monkeypatch, model, tmp_path):
    cache = tmp_path / "nano.timing"
    settings = SMALL._replace(timing_cache=str(cache))
    build(monkeypatch, "8.2.1", model, settings)
    assert cache.read_bytes() == b"TIMING|8.2.1|" + str(len(b"TIMING|8.2.1|built")).encode()
    fake, _, messages = build(monkeypatch, "8.2.1", model, settings)
    assert fake.configs[0].target.timing_cache.data.startswith(b"TIMING|8.2.1|")
    assert any(m.startswith("build: using timing cache {}".format(cache)) for m in messages)


def test_timing_cache_of_another_version_is_replaced(monkeypatch, model, tmp_path):
    cache = tmp_path / "x86.timing"
    cache.write_bytes(b"TIMING|10.16.0|something")
    _, _, messages = build(monkeypatch, "8.2.1", model, SMALL._replace(timing_cache=str(cache)))
    assert "build: timing cache {} is from another GPU or TensorRT: starting a new one".format(cache) in messages


def calibration_folder(tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    for name in ("bus.jpg", "zidane.jpg"):
        shutil.copy(SHARED / "images" / name, calib / name)
    return calib


@pytest.mark.parametrize("style, mode", [("8.2.1", "auto"), ("10.16.0", "implicit")])
def test_int8_build_calibrates_on_the_images_and_writes_the_cache(monkeypatch, model, tmp_path, style, mode):
    calib = calibration_folder(tmp_path)
    settings = SMALL._replace(precision="int8", calib_dir=str(calib), calib_cache=str(tmp_path / "c.cache"),
                              int8_mode=mode)
    fake, _, _ = build(monkeypatch, style, model, settings)
    assert fake.built[0]["flags"] == ["FP16", "INT8"]
    assert len(fake.calibration_batches) == 2 and fake.calibration_batches[0].shape == (1, 3, 96, 96)
    assert (tmp_path / "c.cache").read_bytes() == b"TRT-FAKE-EntropyCalibration2\n"
    again, _, _ = build(monkeypatch, style, model, settings._replace(calib_dir=None))
    assert again.calibration_batches == [] and again.calibration_cache_used == b"TRT-FAKE-EntropyCalibration2\n"


def test_int8_is_refused_on_the_nano_gpu(monkeypatch, model):
    nano = FakeCudaMemory("NVIDIA Tegra X1", (5, 3))
    with pytest.raises(JetsonDetectError, match=r"^--precision int8: NVIDIA Tegra X1 has compute capability 5\.3, "
                                                r"and TensorRT INT8 needs 6\.1 or newer .*use --precision fp16$"):
        build(monkeypatch, "8.2.1", model, SMALL._replace(precision="int8"), memory=nano)


def test_implicit_int8_is_refused_on_tensorrt_11(monkeypatch, model):
    with pytest.raises(JetsonDetectError, match=r"^--precision int8 --int8-mode implicit: TensorRT 11\.1\.0\.106 has "
                                                r"no INT8 calibrators .*use --int8-mode explicit"):
        build(monkeypatch, "11", model, SMALL._replace(precision="int8", int8_mode="implicit"))


@pytest.mark.parametrize("style, mode, flags", [("8.2.1", "explicit", ["FP16", "INT8"]),
                                                ("10.16.0", "auto", ["FP16", "INT8"]), ("11.1.0", "auto", [])])
def test_explicit_int8_builds_the_qdq_network_with_our_scales(monkeypatch, model, tmp_path, style, mode, flags):
    calib = calibration_folder(tmp_path)
    cache = tmp_path / "int8.json"
    settings = SMALL._replace(precision="int8", calib_dir=str(calib), calib_cache=str(cache), int8_mode=mode)
    fake = install(monkeypatch, style)
    tensorrt_builder.build_serialized_engine(model[0], model[1], settings, fake.memory, log=lambda m: None,
                                             weights_path=str(WTS))
    network = fake.networks[0]
    quantize = [layer for layer in network.layers if type(layer).__name__ == "QuantizeLayer"]
    convs = [layer for layer in network.layers if type(layer).__name__ == "ConvolutionLayer"]
    # Every convolution's kernel and input, except the three Detect convolutions kept float; no calibrator.
    int8 = [c for c in convs if type(c.inputs[1].producer).__name__ == "DequantizeLayer"
            and type(c.inputs[0].producer).__name__ == "DequantizeLayer"]
    assert len(int8) == len(convs) - 3 and len(convs) == 52  # C3 fusion on: TensorRT merges the parallel 1x1s
    assert len(quantize) > len(convs)
    assert fake.built[0]["flags"] == flags and fake.calibration_batches == []
    assert json.loads(cache.read_text())["fingerprint"]["input_size"] == [96, 96]


def test_int8_with_an_empty_calibration_folder_is_refused(monkeypatch, model, tmp_path):
    with pytest.raises(JetsonDetectError, match=r"--calib-dir .*: no images"):
        build(monkeypatch, "10.16.0", model, SMALL._replace(precision="int8", calib_dir=str(tmp_path)))


def _args(weights, out, **changes):
    parser = argparse.ArgumentParser()
    build_command.add_arguments(parser)
    argv = ["--weights", str(weights), "--img-size", "96", "--out", str(out)]
    for key, value in changes.items():
        argv += ["--" + key.replace("_", "-")] + ([] if value is True else [str(value)])
    return parser.parse_args(argv)


@pytest.mark.parametrize("style", ["8.0.1", "8.2.1", "10.16.0", "11.1.0"])
def test_build_command_writes_engine_and_metadata_then_reuses_them(monkeypatch, tmp_path, capsys, style):
    fake = install(monkeypatch, style)
    use_fake_cuda(monkeypatch, fake)
    out = tmp_path / "yolov5n.engine"
    assert build_command.main(_args(WTS, out)) == 0
    meta = engine_cache.read_metadata(str(out))
    assert (meta["tensorrt_version"], meta["precision"], meta["input_size"], meta["nc"]) == (fake.version, "fp16", 96,
                                                                                          80)
    assert meta["weights_sha256"] == engine_cache.sha256_file(str(WTS))
    assert build_command.main(_args(WTS, out)) == 0
    assert len(fake.built) == 1
    assert "engine cache: reusing {}".format(out) in capsys.readouterr().out


@pytest.mark.parametrize("style, plugin", [("8.0.1", "YoloDecodeNMS v1 (IPluginV2DynamicExt)"),
                                           ("8.2.1", "YoloDecodeNMS v1 (IPluginV2DynamicExt)"),
                                           ("10.16.0", "YoloDecodeNMS v1 (IPluginV3)"),
                                           ("11.1.0", "YoloDecodeNMS v1 (IPluginV3)")])
def test_metadata_names_the_plugin_interface(monkeypatch, tmp_path, style, plugin):
    fake = install(monkeypatch, style)
    use_fake_cuda(monkeypatch, fake)
    build_command.main(_args(WTS, tmp_path / "e.engine"))
    assert engine_cache.read_metadata(str(tmp_path / "e.engine"))["plugin"] == plugin


def test_an_engine_cached_with_the_v2_plugin_is_rebuilt_for_v3(monkeypatch, tmp_path, capsys):
    import json
    fake = install(monkeypatch, "10.16.0")
    use_fake_cuda(monkeypatch, fake)
    out = tmp_path / "e.engine"
    build_command.main(_args(WTS, out))
    meta_path = engine_cache.metadata_path(str(out))
    with open(meta_path) as handle:
        meta = json.load(handle)
    meta["plugin"] = "YoloDecodeNMS v1"  # written by a jetson_detect that put the V2 plugin in TensorRT 10 engines
    with open(meta_path, "w") as handle:
        json.dump(meta, handle)
    build_command.main(_args(WTS, out))
    assert len(fake.built) == 2
    assert "decode/NMS plugin differs" in capsys.readouterr().out


def test_build_command_force_rebuilds(monkeypatch, tmp_path):
    fake = install(monkeypatch, "10.16.0")
    use_fake_cuda(monkeypatch, fake)
    out = tmp_path / "e.engine"
    build_command.main(_args(WTS, out))
    build_command.main(_args(WTS, out, force=True))
    assert len(fake.built) == 2


def test_changed_weights_rebuild_with_the_reason(monkeypatch, tmp_path, capsys):
    fake = install(monkeypatch, "10.16.0")
    use_fake_cuda(monkeypatch, fake)
    weights = tmp_path / "w.wts"
    shutil.copy(WTS, weights)
    out = tmp_path / "w.engine"
    build_command.main(_args(weights, out))
    lines = weights.read_text().splitlines()
    lines[-1] = lines[-1][:-1] + ("0" if lines[-1][-1] != "0" else "1")
    weights.write_text("\n".join(lines) + "\n")
    build_command.main(_args(weights, out))
    assert len(fake.built) == 2
    assert "engine cache: building {}: weights (sha256) differs (engine: ".format(out) in capsys.readouterr().out


def test_build_command_refuses_an_unwritable_output_folder(monkeypatch, tmp_path):
    install(monkeypatch, "10.16.0")
    out = tmp_path / "missing" / "e.engine"
    with pytest.raises(JetsonDetectError, match=r"^--out .*e\.engine: the folder .*missing does not exist"):
        build_command.main(_args(WTS, out))


def test_build_command_refuses_a_bad_image_size(tmp_path):
    args = _args(WTS, tmp_path / "e.engine")
    args.img_size = 100
    with pytest.raises(JetsonDetectError, match=r"^--img-size 100: must be a positive multiple of 32$"):
        build_command.main(args)


def test_build_command_without_tensorrt_says_so(monkeypatch, tmp_path):
    import sys
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(JetsonDetectError, match=r"^TensorRT's Python package cannot be imported"):
        build_command.main(_args(WTS, tmp_path / "e.engine"))


def test_missing_weights_are_a_one_line_error(monkeypatch, tmp_path):
    fake = install(monkeypatch, "10.16.0")
    use_fake_cuda(monkeypatch, fake)
    with pytest.raises(JetsonDetectError, match=r"^--weights .*nope\.wts: no such file"):
        build_command.main(_args(tmp_path / "nope.wts", tmp_path / "e.engine"))
