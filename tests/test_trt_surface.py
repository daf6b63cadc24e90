"""The TensorRT API surfaces come from NVIDIA's binding sources, and the doubles refuse what a release refuses."""

import numpy as np
import pytest
import trt_surface

from trt_doubles import RELEASES, FakeTrt, surface


@pytest.mark.parametrize("release", RELEASES)
def test_committed_surface_is_what_the_sources_say(release):
    committed = (trt_surface.OUT_DIR / (release + ".json")).read_text(encoding="utf-8")
    assert trt_surface.render(trt_surface.extract(release)) == committed, \
        "regenerate with: python tests/trt_surface.py"


@pytest.mark.parametrize("release, version", [("8.0.1", "8.0.1.6"), ("8.2.1", "8.2.1.8"), ("10.16.0", "10.16.0.72"),
                                              ("11.1.0", "11.1.0.106")])
def test_version_comes_from_the_release_header(release, version):
    assert surface(release)["version"] == version == FakeTrt(release).module.__version__


def test_extractor_reads_names_defaults_overloads_and_property_kinds():
    s = surface("8.2.1")
    context = s["classes"]["IExecutionContext"]
    assert context["methods"]["execute_async_v2"] == [
        {"args": [["bindings", False], ["stream_handle", False], ["input_consumed", True]]}]
    assert s["classes"]["ICudaEngine"]["methods"]["get_binding_shape"] == [{"args": [["index", False]]},
                                                                          {"args": [["name", False]]}]
    builder = s["classes"]["Builder"]
    assert builder["init"] == [{"args": [["logger", False]]}]
    assert (builder["properties"]["max_batch_size"], builder["properties"]["platform_has_fast_fp16"],
            builder["properties"]["gpu_allocator"]) == ("rw", "ro", "wo")
    assert s["enums"]["ILogger.Severity"] == {"members": ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"],
                                              "export_values": True}
    assert s["classes"]["Logger"]["bases"] == ["ILogger"]
    assert s["functions"]["init_libnvinfer_plugins"] == [{"args": [["logger", False], ["namespace", False]]}]
    assert s["classes"]["PluginFieldCollection"]["vector"] is True
    assert "nptype" in s["python"] and "float32" in s["attributes"]


def test_unknown_preprocessor_condition_stops_the_tool():
    with pytest.raises(ValueError, match=r"unknown preprocessor condition 'SOMETHING_NEW'"):
        trt_surface.preprocess("#if SOMETHING_NEW\nx\n#endif\n", "probe.cpp")


def _config(fake):
    return fake.module.Builder(fake.module.Logger(fake.module.Logger.WARNING)).create_builder_config()


# Names that really are removed, per the surfaces (TRT_COMPAT.md §1, §2, §4, §5).
@pytest.mark.parametrize("release, present", [("8.0.1", True), ("8.2.1", True), ("10.16.0", False), ("11.1.0", False)])
def test_max_workspace_size_is_gone_from_10(release, present):
    config = _config(FakeTrt(release))
    if present:
        config.max_workspace_size = 1 << 20
        assert config.max_workspace_size == 1 << 20
    else:
        with pytest.raises(AttributeError, match="max_workspace_size"):
            config.max_workspace_size = 1 << 20


@pytest.mark.parametrize("release, present", [("8.0.1", True), ("8.2.1", True), ("10.16.0", True), ("11.1.0", False)])
def test_builder_flag_fp16_is_gone_from_11(release, present):
    flags = FakeTrt(release).module.BuilderFlag
    assert hasattr(flags, "FP16") is present and hasattr(flags, "INT8") is present


@pytest.mark.parametrize("release, gone", [
    ("8.0.1", ["get_creator", "all_creators"]), ("8.2.1", ["get_creator", "all_creators"]),
    ("10.16.0", []), ("11.1.0", ["get_plugin_creator", "plugin_creator_list"])])
def test_plugin_registry_lookups_per_release(release, gone):
    registry = FakeTrt(release).module.get_plugin_registry()
    for name in ("get_creator", "all_creators", "get_plugin_creator", "plugin_creator_list"):
        assert hasattr(registry, name) is (name not in gone), name


def test_execute_async_v2_is_gone_from_10_and_v3_absent_before():
    assert "execute_async_v2" not in surface("10.16.0")["classes"]["IExecutionContext"]["methods"]
    assert "execute_async_v3" not in surface("8.2.1")["classes"]["IExecutionContext"]["methods"]


def test_wrong_keyword_or_argument_count_is_a_type_error():
    fake = FakeTrt("10.16.0")
    config = _config(fake)
    with pytest.raises(TypeError, match="set_memory_pool_limit"):
        config.set_memory_pool_limit(fake.module.MemoryPoolType.WORKSPACE, size=1)  # the keyword is pool_size
    with pytest.raises(TypeError, match="set_memory_pool_limit"):
        config.set_memory_pool_limit(fake.module.MemoryPoolType.WORKSPACE)
    config.set_memory_pool_limit(pool=fake.module.MemoryPoolType.WORKSPACE, pool_size=1)
    with pytest.raises(TypeError, match="Builder.__init__"):
        fake.module.Builder()
    with pytest.raises(TypeError, match="create_plugin"):  # a V3 creator needs the phase
        creator = fake.module.get_plugin_registry().get_creator("YoloDecodeNMS", "1", "")
        creator.create_plugin("YoloDecodeNMS", fake.module.PluginFieldCollection([]))


def test_unnamed_arguments_refuse_keywords():
    fake = FakeTrt("8.2.1")
    with pytest.raises(TypeError, match="get_plugin_registry"):
        fake.module.get_plugin_registry(namespace="")


def test_read_only_properties_cannot_be_written():
    builder = FakeTrt("8.2.1").module.Builder(None)
    with pytest.raises(AttributeError, match="platform_has_fast_fp16 is read-only"):
        builder.platform_has_fast_fp16 = False


def test_plugin_field_collection_does_not_keep_the_arrays_alive():
    fake = FakeTrt("8.2.1")
    trt = fake.module
    collection = trt.PluginFieldCollection([trt.PluginField("nc", np.array([80], np.int32), trt.PluginFieldType.INT32)])
    creator = trt.get_plugin_registry().get_plugin_creator("YoloDecodeNMS", "1", "")
    with pytest.raises(AssertionError, match="'nc': its array was freed before create_plugin"):
        creator.create_plugin("YoloDecodeNMS", collection)
