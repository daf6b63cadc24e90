"""Every branch of ``trt_compat`` against doubles of the real API surface of TensorRT 8.0.1, 8.2.1, 10.16, 11.1."""

import numpy as np
import pytest

from jetson_detect.backends import onnx_network as twin
from jetson_detect.backends import trt_compat
from jetson_detect.errors import JetsonDetectError
from jetson_detect.model.decode_nms import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

from trt_doubles import RELEASES, FakeTrt

STYLES = RELEASES
EIGHT = ("8.0.1", "8.2.1")


@pytest.fixture(params=STYLES)
def fake(request):
    return FakeTrt(request.param)


def _builder(fake):
    return fake.module.Builder(fake.module.Logger(fake.module.Logger.WARNING))


@pytest.mark.parametrize("style, flags", [("8.0.1", 1), ("8.2.1", 1), ("10.16.0", 0), ("11.1.0", 0)])
def test_network_creation_flags_set_explicit_batch_only_before_10(style, flags):
    assert trt_compat.network_creation_flags(FakeTrt(style).module) == flags


def test_create_network_passes_the_flags_to_the_builder(fake):
    network = trt_compat.create_network(fake.module, _builder(fake))
    assert network.target.creation_flags == (1 if fake.style in EIGHT else 0)


@pytest.mark.parametrize("style, fp16_flag, fp16_network", [("8.0.1", True, False), ("8.2.1", True, False),
                                                            ("10.16.0", True, False), ("11.1.0", False, True)])
def test_fp16_plan_uses_the_builder_flag_where_it_exists_else_fp16_network_types(style, fp16_flag, fp16_network):
    plan = trt_compat.precision_plan(FakeTrt(style).module, "fp16")
    assert (plan.fp16_flag, plan.fp16_network, plan.int8) == (fp16_flag, fp16_network, False)


def test_fp32_plan_sets_nothing(fake):
    assert trt_compat.precision_plan(fake.module, "fp32") == trt_compat.PrecisionPlan("fp32", False, False, False)


@pytest.mark.parametrize("style", ["8.0.1", "8.2.1", "10.16.0"])
def test_implicit_int8_plan_calibrates_with_fp16_fallback_on_8_and_10(style):
    plan = trt_compat.precision_plan(FakeTrt(style).module, "int8", "implicit")
    assert (plan.fp16_flag, plan.int8) == (True, True)


def test_implicit_int8_plan_is_refused_on_11_without_calibrators():
    with pytest.raises(JetsonDetectError, match=r"^--precision int8 --int8-mode implicit: TensorRT 11\.1\.0\.106 has "
                                                r"no INT8 calibrators"):
        trt_compat.precision_plan(FakeTrt("11.1.0").module, "int8", "implicit")


@pytest.mark.parametrize("style, mode, explicit", [("8.2.1", "auto", False), ("8.2.1", "explicit", True),
                                                   ("10.16.0", "auto", True), ("11.1.0", "auto", True)])
def test_int8_auto_is_explicit_qdq_from_tensorrt_10(style, mode, explicit):
    plan = trt_compat.precision_plan(FakeTrt(style).module, "int8", mode)
    assert (plan.explicit_int8, plan.int8) == (explicit, not explicit)


def test_unknown_precision_is_refused(fake):
    with pytest.raises(JetsonDetectError, match="--precision bf16: choose fp32, fp16 or int8"):
        trt_compat.precision_plan(fake.module, "bf16")


@pytest.mark.parametrize("style", ["8.0.1", "8.2.1", "10.16.0"])
def test_apply_int8_precision_sets_flags_and_the_calibrator(style):
    fake = FakeTrt(style)
    config = _builder(fake).create_builder_config()
    calibrator = object()
    plan = trt_compat.precision_plan(fake.module, "int8", "implicit")
    trt_compat.apply_precision(fake.module, config, plan, calibrator)
    assert config.target.flags == {"FP16", "INT8"}
    assert config.int8_calibrator is calibrator


def test_apply_fp16_on_11_sets_no_flag():
    fake = FakeTrt("11.1.0")
    config = _builder(fake).create_builder_config()
    trt_compat.apply_precision(fake.module, config, trt_compat.precision_plan(fake.module, "fp16"))
    assert config.target.flags == set()


@pytest.mark.parametrize("style, field", [("8.0.1", "max_workspace_size"), ("8.2.1", "max_workspace_size"),
                                          ("10.16.0", "pool"), ("11.1.0", "pool")])
def test_workspace_limit_uses_max_workspace_size_on_82_and_the_memory_pool_after(style, field):
    fake = FakeTrt(style)
    config = _builder(fake).create_builder_config()
    trt_compat.set_workspace_limit(fake.module, config, 256 << 20)
    if field == "pool":
        assert config.target.pool_limits == {"WORKSPACE": 256 << 20}
        assert config.target.max_workspace_size == 0
    else:
        assert config.target.max_workspace_size == 256 << 20
        assert config.target.pool_limits == {}


def test_build_serialized_network_returns_bytes_or_none(fake):
    builder = _builder(fake)
    network = trt_compat.create_network(fake.module, builder)
    network.mark_output(network.add_input("images", twin.float32, (1, 3, 8, 8)))
    config = builder.create_builder_config()
    blob = trt_compat.build_serialized_network(builder, network, config)
    assert isinstance(blob, bytes) and blob.startswith(b"FAKETRT1|")
    fake.fail_build = True
    assert trt_compat.build_serialized_network(builder, network, config) is None


@pytest.mark.parametrize("style", EIGHT)
def test_progress_monitor_is_absent_on_8(style):
    fake = FakeTrt(style)
    config = _builder(fake).create_builder_config()
    assert trt_compat.attach_progress_monitor(fake.module, config, lambda e, p: None) is None


@pytest.mark.parametrize("style", ["10.16.0", "11.1.0"])
def test_progress_monitor_reports_top_level_phases(style):
    fake = FakeTrt(style)
    builder = _builder(fake)
    network = trt_compat.create_network(fake.module, builder)
    network.mark_output(network.add_input("images", twin.float32, (1, 3, 8, 8)))
    config = builder.create_builder_config()
    events = []
    monitor = trt_compat.attach_progress_monitor(fake.module, config, lambda e, p: events.append((e, p)))
    assert config.progress_monitor is monitor
    trt_compat.build_serialized_network(builder, network, config)
    assert events == [("start", "Building engine"), ("finish", "Building engine")]


@pytest.mark.parametrize("style, enum_name", [("8.0.1", "ResizeMode"), ("8.2.1", "ResizeMode"),
                                              ("10.16.0", "InterpolationMode"), ("11.1.0", "InterpolationMode")])
def test_resize_mode_nearest_comes_from_the_versions_enum(style, enum_name):
    module = FakeTrt(style).module
    assert trt_compat.resize_mode_nearest(module) is getattr(module, enum_name).NEAREST


def _fields(**changes):
    values = {"nc": np.array([80], np.int32), "num_anchors": np.array([3], np.int32),
              "anchors": np.ones(18, np.float32), "strides": np.array([8, 16, 32], np.float32),
              "input_h": np.array([64], np.int32), "input_w": np.array([64], np.int32),
              "conf_thres": np.array([0.25], np.float32), "iou_thres": np.array([0.45], np.float32),
              "max_det": np.array([10], np.int32), "class_agnostic": np.array([0], np.int32),
              "pre_nms_top_k": np.array([100], np.int32)}
    values.update(changes)
    return list(values.items())


@pytest.mark.parametrize("style, plugin_class, layer_class", [
    ("8.0.1", "IPluginV2", "IPluginV2Layer"), ("8.2.1", "IPluginV2", "IPluginV2Layer"),
    ("10.16.0", "IPluginV3", "IPluginV3Layer"), ("11.1.0", "IPluginV3", "IPluginV3Layer")])
def test_plugin_is_v2_on_8_and_v3_on_10_and_11(style, plugin_class, layer_class):
    fake = FakeTrt(style)
    plugin = trt_compat.create_plugin(fake.module, PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE, _fields())
    assert repr(plugin) == "<tensorrt.{} double>".format(plugin_class)
    assert plugin.target.cpu.params.nc == 80 and plugin.target.cpu.params.max_det == 10
    network = trt_compat.create_network(fake.module, _builder(fake))
    heads = [network.add_input("p{}".format(i), twin.float32, (1, 255, s, s)) for i, s in enumerate((8, 4, 2))]
    layer = trt_compat.add_plugin(fake.module, network, heads, plugin)
    assert repr(layer) == "<tensorrt.{} double>".format(layer_class) and layer.num_outputs == 4


def test_a_field_the_creator_refuses_is_a_one_line_error_naming_it(fake):
    with pytest.raises(JetsonDetectError, match=r"^decode\+NMS plugin field conf_thres must be in \[0, 1\), got 1\.0$"):
        trt_compat.create_plugin(fake.module, PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE,
                                 _fields(conf_thres=np.array([1.0], np.float32)))


def test_plugin_field_arrays_stay_alive_until_the_plugin_is_created(fake):
    # a strided array is copied to a contiguous one that only the PluginField holds
    anchors = np.ones(36, np.float32)[::2]
    plugin = trt_compat.create_plugin(fake.module, PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE,
                                      _fields(anchors=anchors))
    assert plugin.target.cpu.params.anchors_px[0][0] == (1.0, 1.0)


def test_missing_plugin_creator_is_a_one_line_error(fake):
    with pytest.raises(JetsonDetectError, match="TensorRT plugin NoSuchPlugin v1 is not registered"):
        trt_compat.create_plugin(fake.module, "NoSuchPlugin", "1", "", [])


def _tiny_engine(fake):
    builder = _builder(fake)
    network = trt_compat.create_network(fake.module, builder)
    x = network.add_input("images", twin.float32, (2, 3, 4, 4))
    y = network.add_activation(x, twin.ActivationType.SIGMOID).get_output(0)
    y.name = "probabilities"
    network.mark_output(y)
    blob = trt_compat.build_serialized_network(builder, network, builder.create_builder_config())
    return fake.module.Runtime(None).deserialize_cuda_engine(blob)


def test_io_tensors_are_the_same_on_bindings_and_tensor_apis(fake):
    tensors = trt_compat.io_tensors(fake.module, _tiny_engine(fake))
    assert tensors == [trt_compat.IOTensor("images", True, (2, 3, 4, 4), np.dtype(np.float32)),
                       trt_compat.IOTensor("probabilities", False, (2, 3, 4, 4), np.dtype(np.float32))]


@pytest.mark.parametrize("style", EIGHT)
def test_io_tensor_dtypes_do_not_need_numpys_removed_bool_alias(monkeypatch, style):
    fake = FakeTrt(style)
    engine = _tiny_engine(fake)
    monkeypatch.delattr(np, "bool", raising=False)  # NumPy 1.24-1.26, where TensorRT 8's nptype breaks
    with pytest.raises(AttributeError):
        fake.module.nptype(fake.module.float32)
    assert [t.dtype for t in trt_compat.io_tensors(fake.module, engine)] == [np.dtype(np.float32)] * 2


def test_one_logger_for_the_process(fake):
    first = trt_compat.process_logger(fake.module)
    assert trt_compat.process_logger(fake.module, verbose=True) is first
    assert first.min_severity == fake.module.Logger.VERBOSE and fake.loggers_made == 1
    assert trt_compat.process_logger(fake.module).min_severity == fake.module.Logger.WARNING


@pytest.mark.parametrize("style, call", [("8.0.1", "execute_async_v2"), ("8.2.1", "execute_async_v2"),
                                         ("10.16.0", "execute_async_v3"), ("11.1.0", "execute_async_v3")])
def test_executor_uses_v2_bindings_on_82_and_v3_tensor_addresses_after(style, call):
    fake = FakeTrt(style)
    engine = _tiny_engine(fake)
    context = engine.create_execution_context()
    executor = trt_compat.make_executor(fake.module, engine, context)
    memory = fake.memory
    with memory.activate():
        src, dst = memory.device_alloc(2 * 3 * 16 * 4), memory.device_alloc(2 * 3 * 16 * 4)
        memory.write(src, np.zeros((2, 3, 4, 4), np.float32))
        assert executor.enqueue({"images": src, "probabilities": dst}, 7001) is True
    assert context.target.calls == [(call, 7001)]
    np.testing.assert_array_equal(memory.read(dst, (2, 3, 4, 4), np.float32), np.full((2, 3, 4, 4), 0.5, np.float32))


def test_init_plugins_registers_tensorrts_own_plugins(fake):
    trt_compat.init_plugins(fake.module, trt_compat.process_logger(fake.module))
    assert fake.plugins_initialised == 1
