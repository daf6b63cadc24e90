"""The C++ plugin against NVIDIA's real TensorRT headers of 8.0.1, 8.2.1, 10.16 and 11.1 (no TensorRT installed).

Each release's build (tests/plugin_builds.py) compiles our sources with -Werror -Wsuggest-override
-Woverloaded-virtual against the real include/, links the plugin library against a stub libnvinfer that implements
the release's whole real IPluginRegistry, and runs tests/plugin_driver/driver.cpp, which drives the plugin through
the real interfaces: the V2 plugin (IPluginV2DynamicExt) on 8.x, the V3 plugin (IPluginV3) on 10/11.

What this cannot show: the plugin inside a real engine (TensorRT's own calls, order and lifetimes); that needs a
Jetson (scripts/build_plugin.sh and a `build`).
"""

import math
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest

from jetson_detect.errors import JetsonDetectError
from jetson_detect.model.decode_nms import (
    MAX_ANCHORS_PER_LEVEL,
    MAX_LEVELS,
    MAX_PRE_NMS_TOP_K,
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    DecodeNMSParams,
    check_params,
    plugin_fields,
)
from jetson_detect.plugin import PLUGIN_DIR

from plugin_builds import RELEASES, SANITIZED, ReleaseBuild, build_release, syntax_check, undefined_symbols

pytestmark = pytest.mark.shared

P5_ANCHORS = (((10, 13), (16, 30), (33, 23)), ((30, 61), (62, 45), (59, 119)), ((116, 90), (156, 198), (373, 326)))
# yolov5n6.yaml (ultralytics/yolov5): P3/8 .. P6/64.
P6_ANCHORS = (((19, 27), (44, 40), (38, 94)), ((96, 68), (86, 152), (180, 137)),
              ((140, 301), (303, 264), (238, 542)), ((436, 615), (739, 380), (925, 792)))
P5 = DecodeNMSParams(nc=80, anchors_px=P5_ANCHORS, strides=(8.0, 16.0, 32.0), input_h=640, input_w=640)
P6 = DecodeNMSParams(nc=80, anchors_px=P6_ANCHORS, strides=(8.0, 16.0, 32.0, 64.0), input_h=1280, input_w=1280,
                     conf_thres=0.1, iou_thres=0.6, max_det=100, class_agnostic=True,
                     pre_nms_top_k=MAX_PRE_NMS_TOP_K)

FLOAT32_BELOW_ONE = float(np.nextafter(np.float32(1), np.float32(0)))
FLOAT32_ABOVE_ONE = float(np.nextafter(np.float32(1), np.float32(2)))
FLOAT32_TINY = float(np.float32(1e-30))


def anchors_like(levels: int, per_level: int, value: float = 10.0):
    return tuple(tuple((value, value) for _ in range(per_level)) for _ in range(levels))


# Each value at (and just past) the edge of its range, one field at a time: (case id, params).
BOUNDARY_CASES = [
    ("nc_0", P5._replace(nc=0)),
    ("nc_negative", P5._replace(nc=-1)),
    ("nc_1", P5._replace(nc=1)),
    ("levels_0", P5._replace(strides=(), anchors_px=())),
    ("levels_1", P5._replace(strides=(32.0,), anchors_px=P5_ANCHORS[2:])),
    ("levels_max", P5._replace(strides=(8.0, 16.0, 32.0, 64.0)[:MAX_LEVELS], anchors_px=anchors_like(MAX_LEVELS, 3))),
    ("levels_over_max", P5._replace(strides=tuple(8.0 * 2 ** i for i in range(MAX_LEVELS + 1)),
                                    anchors_px=anchors_like(MAX_LEVELS + 1, 3))),
    ("num_anchors_0", P5._replace(anchors_px=anchors_like(3, 0))),
    ("num_anchors_1", P5._replace(anchors_px=anchors_like(3, 1))),
    ("num_anchors_max", P5._replace(anchors_px=anchors_like(3, MAX_ANCHORS_PER_LEVEL))),
    ("num_anchors_over_max", P5._replace(anchors_px=anchors_like(3, MAX_ANCHORS_PER_LEVEL + 1))),
    ("anchor_0", P5._replace(anchors_px=anchors_like(3, 3, 0.0))),
    ("anchor_negative", P5._replace(anchors_px=anchors_like(3, 3, -10.0))),
    ("anchor_inf", P5._replace(anchors_px=anchors_like(3, 3, math.inf))),
    ("anchor_nan", P5._replace(anchors_px=anchors_like(3, 3, math.nan))),
    ("anchor_tiny", P5._replace(anchors_px=anchors_like(3, 3, FLOAT32_TINY))),
    ("stride_0", P5._replace(strides=(8.0, 0.0, 32.0))),
    ("stride_negative", P5._replace(strides=(8.0, -16.0, 32.0))),
    ("stride_inf", P5._replace(strides=(8.0, math.inf, 32.0))),
    ("stride_nan", P5._replace(strides=(8.0, math.nan, 32.0))),
    ("stride_tiny", P5._replace(strides=(8.0, FLOAT32_TINY, 32.0))),
    ("input_h_0", P5._replace(input_h=0)),
    ("input_h_1", P5._replace(input_h=1)),
    ("input_w_0", P5._replace(input_w=0)),
    ("input_w_negative", P5._replace(input_w=-640)),
    ("conf_negative", P5._replace(conf_thres=-FLOAT32_TINY)),
    ("conf_minus_zero", P5._replace(conf_thres=-0.0)),
    ("conf_0", P5._replace(conf_thres=0.0)),
    ("conf_below_1", P5._replace(conf_thres=FLOAT32_BELOW_ONE)),
    ("conf_1", P5._replace(conf_thres=1.0)),
    ("conf_nan", P5._replace(conf_thres=math.nan)),
    ("iou_negative", P5._replace(iou_thres=-FLOAT32_TINY)),
    ("iou_0", P5._replace(iou_thres=0.0)),
    ("iou_1", P5._replace(iou_thres=1.0)),
    ("iou_above_1", P5._replace(iou_thres=FLOAT32_ABOVE_ONE)),
    ("iou_nan", P5._replace(iou_thres=math.nan)),
    ("max_det_0", P5._replace(max_det=0)),
    ("max_det_negative", P5._replace(max_det=-5)),
    ("max_det_1", P5._replace(max_det=1)),
    ("top_k_0", P5._replace(pre_nms_top_k=0)),
    ("top_k_1", P5._replace(pre_nms_top_k=1)),
    ("top_k_max", P5._replace(pre_nms_top_k=MAX_PRE_NMS_TOP_K)),
    ("top_k_over_max", P5._replace(pre_nms_top_k=MAX_PRE_NMS_TOP_K + 1)),
    ("class_agnostic", P5._replace(class_agnostic=True)),
]

# Values Python holds as float64 that plugin_fields rounds to a refused float32 (1.0, 0.0, inf).
FLOAT32_ROUNDING_CASES = [
    ("conf_rounds_to_1", P5._replace(conf_thres=0.99999999)),
    ("anchor_rounds_to_0", P5._replace(anchors_px=anchors_like(3, 3, 1e-46))),
    ("stride_rounds_to_inf", P5._replace(strides=(8.0, 16.0, 1e39))),
]

Fields = List[Tuple[str, np.ndarray]]


def fields_of(params: DecodeNMSParams) -> Fields:
    """plugin_fields(params), the arrays Python hands the creator; with no levels, empty anchors and strides."""
    if not params.anchors_px:
        return [(name, np.zeros(0, np.float32)) if name in ("anchors", "strides") else
                (name, np.array([3], np.int32)) if name == "num_anchors" else (name, value)
                for name, value in plugin_fields(P5)]
    return plugin_fields(params)


def case_line(case_id: str, mode: str, fields: Sequence[Tuple[str, np.ndarray]]) -> str:
    parts = [case_id, mode, str(len(fields))]
    for name, value in fields:
        kind = "i" if value.dtype == np.int32 else "f"
        parts += [name, kind, str(value.size)] + [repr(float(v)) if kind == "f" else str(int(v)) for v in value]
    return " ".join(parts)


# C++-only refusals: what Python cannot even express as DecodeNMSParams. (case id, fields)
def malformed_cases() -> List[Tuple[str, Fields]]:
    base = plugin_fields(P5)
    named = dict(base)

    def without(name: str) -> Fields:
        return [(n, v) for n, v in base if n != name]

    def replaced(name: str, value: np.ndarray) -> Fields:
        return [(n, value if n == name else v) for n, v in base]

    return [
        ("missing_nc", without("nc")),
        ("missing_num_anchors", without("num_anchors")),
        ("missing_anchors", without("anchors")),
        ("missing_strides", without("strides")),
        ("nc_as_float", replaced("nc", named["nc"].astype(np.float32))),
        ("conf_as_int", replaced("conf_thres", np.array([0], np.int32))),
        ("two_values_for_max_det", replaced("max_det", np.array([1, 2], np.int32))),
        ("anchors_one_short", replaced("anchors", named["anchors"][:-1])),
        ("anchors_for_four_levels", replaced("anchors", np.tile(named["anchors"][:6], 4))),
        ("unknown_field", base + [("score_thres", np.array([0.5], np.float32))]),
    ]


def cases_text() -> str:
    lines = [case_line("p5", "deep", plugin_fields(P5)), case_line("p6", "deep", plugin_fields(P6))]
    with np.errstate(over="ignore"):  # stride_rounds_to_inf: the float32 cast overflows on purpose
        lines += [case_line(case_id, "create", fields_of(params)) for case_id, params in
                  BOUNDARY_CASES + FLOAT32_ROUNDING_CASES]
    lines += [case_line(case_id, "create", fields) for case_id, fields in malformed_cases()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> Dict[str, Tuple[ReleaseBuild, List[str]]]:
    """Every release built once and its driver run once over all cases: release -> (build, stdout lines)."""
    if shutil.which("g++") is None or shutil.which("nm") is None:
        pytest.skip("g++/binutils not installed")
    root = tmp_path_factory.mktemp("plugin_releases")
    cases = root / "cases.txt"
    cases.write_text(cases_text())

    def build_and_run(release: str) -> Tuple[str, Tuple[ReleaseBuild, List[str]]]:
        build = build_release(release, root / release)
        # Leaks are checked by the driver's own block count; LeakSanitizer needs ptrace, which CI may not allow.
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
        run = subprocess.run([str(build.driver), str(build.plugin), str(cases)], capture_output=True, text=True,
                             env=env)
        assert run.returncode == 0, "{} driver: {}\n{}".format(release, run.stdout[-2000:], run.stderr[-4000:])
        return release, (build, run.stdout.splitlines())

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(build_and_run, RELEASES))


@pytest.fixture(scope="module")
def driver_output(releases) -> Dict[str, List[str]]:
    return {release: lines for release, (_, lines) in releases.items()}


@pytest.fixture(scope="module")
def plugin_libraries(releases) -> Dict[str, Path]:
    return {release: build.plugin for release, (build, _) in releases.items()}


def is_v3(release: str) -> bool:
    return int(release.split(".")[0]) >= 10


def lines_for(output: List[str], prefix: str) -> List[str]:
    return [line[len(prefix) + 1:] for line in output if line.startswith(prefix + " ")]


def case_verdicts(output: List[str]) -> Dict[str, Tuple[bool, str]]:
    verdicts = {}
    for line in lines_for(output, "case"):
        case_id, verdict, *message = line.split(" ", 2)
        verdicts[case_id] = (verdict == "accept", message[0] if message else "")
    return verdicts


def python_verdict(params: DecodeNMSParams) -> Tuple[bool, Optional[str]]:
    try:
        check_params(params)
    except JetsonDetectError as exc:
        found = re.search(r"field (\S+) must", str(exc))
        return False, found.group(1) if found else str(exc)
    return True, None


@pytest.mark.parametrize("release", RELEASES)
def test_plugin_registers_on_library_load_and_is_found_by_name_version_namespace(driver_output, release):
    assert driver_output[release][:4] == [
        "registered_before_load 0",
        "registered_after_load 1",
        "lookup {} version {} namespace '{}': 1".format(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE),
        "lookup other_version 0 other_namespace 0 other_name 0",
    ]
    assert lines_for(driver_output[release], "creator") == ["{} {} '{}'".format(PLUGIN_NAME, PLUGIN_VERSION,
                                                                                 PLUGIN_NAMESPACE)]
    assert lines_for(driver_output[release], "registry_lists") == ["1 ours 1"]


@pytest.mark.parametrize("release", RELEASES)
def test_creator_field_names_and_types_are_those_python_passes(driver_output, release):
    expected = ["{} {} {}".format(name, "int32" if value.dtype == np.int32 else "float32",
                                  0 if name in ("anchors", "strides") else 1) for name, value in plugin_fields(P5)]
    assert lines_for(driver_output[release], "field") == expected


@pytest.mark.parametrize("release", RELEASES)
def test_every_boundary_value_is_accepted_or_refused_as_check_params_does(driver_output, release):
    verdicts = case_verdicts(driver_output[release])
    for case_id, params in BOUNDARY_CASES:
        accepted, field = python_verdict(params)
        cpp_accepted, message = verdicts[case_id]
        assert cpp_accepted == accepted, (case_id, message, field)
        if not accepted:
            assert re.match(r"{}: field {} must ".format(PLUGIN_NAME, re.escape(field)), message), (case_id, message)


@pytest.mark.parametrize("release", ["8.2.1"])
def test_python_and_the_creator_agree_on_values_float32_rounds_out_of_range(driver_output, release):
    verdicts = case_verdicts(driver_output[release])
    assert {case_id: verdicts[case_id][0] for case_id, _ in FLOAT32_ROUNDING_CASES} == {
        case_id: python_verdict(params)[0] for case_id, params in FLOAT32_ROUNDING_CASES}


def test_the_boundary_cases_reach_both_sides_of_every_range():
    refused = {python_verdict(params)[1] for _, params in BOUNDARY_CASES} - {None}
    accepted = [case_id for case_id, params in BOUNDARY_CASES if python_verdict(params)[0]]
    assert refused == {"nc", "strides", "num_anchors", "anchors", "input_h/input_w", "conf_thres", "iou_thres",
                       "max_det", "pre_nms_top_k"}
    assert accepted == ["nc_1", "levels_1", "levels_max", "num_anchors_1", "num_anchors_max", "anchor_tiny",
                        "stride_tiny", "input_h_1", "conf_minus_zero", "conf_0", "conf_below_1", "iou_0", "iou_1",
                        "max_det_1", "top_k_1", "top_k_max", "class_agnostic"]


@pytest.mark.parametrize("release", RELEASES)
def test_malformed_field_collections_are_refused_with_a_reason(driver_output, release):
    verdicts = case_verdicts(driver_output[release])
    prefix = PLUGIN_NAME + ": "
    assert {case_id: verdicts[case_id][1] for case_id, _ in malformed_cases()} == {
        "missing_nc": prefix + "fields nc, num_anchors, anchors and strides are required",
        "missing_num_anchors": prefix + "fields nc, num_anchors, anchors and strides are required",
        "missing_anchors": prefix + "fields nc, num_anchors, anchors and strides are required",
        "missing_strides": prefix + "fields nc, num_anchors, anchors and strides are required",
        "nc_as_float": prefix + "field nc must be int32",
        "conf_as_int": prefix + "field conf_thres must be float32",
        "two_values_for_max_det": prefix + "field max_det must hold one value",
        "anchors_one_short": prefix + "field anchors must hold levels*num_anchors*2 = 3*3*2 values, got 17",
        "anchors_for_four_levels": prefix + "field anchors must hold levels*num_anchors*2 = 3*3*2 values, got 24",
        "unknown_field": prefix + "unknown field 'score_thres'",
    }


# Workspace bytes are what the stub ydnWorkspaceSize returns: batch*1e9 + positions*1e4 + top_k.
P5_CHECKS = [
    "identity YoloDecodeNMS 1 '' outputs 4",
    "roundtrip 1 bytes 136",
    "truncated_refused 136 of 136",
    "other_version_refused 1: YoloDecodeNMS: the engine holds unreadable plugin data (version or size mismatch): "
    "rebuild the engine",
    "output_dims batch 1 ok 1 batch_expr_passed 1 (1,1) (1,300,4) (1,300) (1,300)",
    "output_dims batch 4 ok 1 batch_expr_passed 1 (4,1) (4,300,4) (4,300) (4,300)",
    "formats float16 1 float32 1 mixed 0 int8 0 chw2 0 half_boxes 0 float_classes 0 fewer_inputs 0 "
    "pos_out_of_range 0",
    "output_types int32 float32 float32 int32",
    "shapes accepted 1 wrong_channels_refused 1",
    "workspace batch 4 positions 25200 top_k 4096 bytes 4252004096",
    "enqueue rc 0 calls 1 batch 4 half 1 max_det 300 levels 3: 80x80 40x40 20x20",
    "enqueue_cuda_error rc 1: YoloDecodeNMS: kernel launch failed: stub CUDA error",
    "clone 1 same_bytes 1",
]
# Four levels (strides 8..64, P6 anchors) at 1280: 3 * (160² + 80² + 40² + 20²) = 102000 anchor positions.
P6_CHECKS = [
    "identity YoloDecodeNMS 1 '' outputs 4",
    "roundtrip 1 bytes 164",
    "truncated_refused 164 of 164",
    "other_version_refused 1: YoloDecodeNMS: the engine holds unreadable plugin data (version or size mismatch): "
    "rebuild the engine",
    "output_dims batch 1 ok 1 batch_expr_passed 1 (1,1) (1,100,4) (1,100) (1,100)",
    "output_dims batch 4 ok 1 batch_expr_passed 1 (4,1) (4,100,4) (4,100) (4,100)",
    "formats float16 1 float32 1 mixed 0 int8 0 chw2 0 half_boxes 0 float_classes 0 fewer_inputs 0 "
    "pos_out_of_range 0",
    "output_types int32 float32 float32 int32",
    "shapes accepted 1 wrong_channels_refused 1",
    "workspace batch 4 positions 102000 top_k 16384 bytes 5020016384",
    "enqueue rc 0 calls 1 batch 4 half 1 max_det 100 levels 4: 160x160 80x80 40x40 20x20",
    "enqueue_cuda_error rc 1: YoloDecodeNMS: kernel launch failed: stub CUDA error",
    "clone 1 same_bytes 1",
]
V2_ONLY = ["clone_namespace ns original '' creator ''"]
V3_ONLY = ["capabilities PLUGIN_V3ONE_CORE PLUGIN_V3ONE_BUILD PLUGIN_V3ONE_RUNTIME",
           "attach_to_context clone same_bytes 1",
           "serialized_fields 1 serialized_config unknown"]
DESTROYED = ["destroy_frees_all 1 (blocks held while alive > 0: 1)"]


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("case_id, checks", [("p5", P5_CHECKS), ("p6", P6_CHECKS)], ids=["3 levels", "4 levels"])
def test_plugin_through_the_real_interfaces(driver_output, release, case_id, checks):
    """Serialization round trip, every truncation refused, output dims for batch 1 and 4, formats, types,
    workspace, enqueue (the launch the kernels get), clone, destroy; on 10/11 also the V3 capabilities."""
    assert case_verdicts(driver_output[release])[case_id] == (True, "")
    assert lines_for(driver_output[release], case_id) == checks + (V3_ONLY if is_v3(release) else V2_ONLY) + DESTROYED


def test_v2_and_v3_write_the_same_serialized_bytes_sizes(driver_output):
    sizes = {release: [line for line in lines_for(driver_output[release], "p6") if line.startswith("roundtrip")]
             for release in RELEASES}
    assert set(map(tuple, sizes.values())) == {("roundtrip 1 bytes 164",)}


@pytest.mark.parametrize("release", [r for r in RELEASES if r not in SANITIZED])
def test_plugin_library_imports_only_what_the_stubs_provide(plugin_libraries, release):
    """From libnvinfer only getPluginRegistry; from CUDA only cudaGetErrorString and our two launchers."""
    assert sorted(undefined_symbols(plugin_libraries[release])) == [
        "cudaGetErrorString", "getPluginRegistry", "ydnEnqueue", "ydnWorkspaceSize"]


@pytest.mark.parametrize("release", RELEASES)
def test_v2_is_built_for_8x_and_v3_for_10_and_11(plugin_libraries, release):
    proc = subprocess.run(["nm", "-DC", "--defined-only", str(plugin_libraries[release])], capture_output=True,
                          text=True, check=True)
    v3 = "jetson_detect::YoloDecodeNmsPluginV3Creator::createPlugin" in proc.stdout
    v2 = "jetson_detect::YoloDecodeNmsPluginCreator::deserializePlugin" in proc.stdout
    assert (v2, v3) == ((False, True) if is_v3(release) else (True, False))


def test_sanitized_and_import_checked_builds_each_cover_a_v2_and_a_v3_release():
    assert {is_v3(release) for release in SANITIZED} == {False, True}
    assert {is_v3(release) for release in RELEASES if release not in SANITIZED} == {False, True}


# A signature that drifts from the real virtual must stop the build: `override` on a function that overrides
# nothing is an error, and -Wsuggest-override -Werror refuses a virtual implemented without `override`.
MUTATIONS = [
    ("8.2.1", "yolo_decode_nms_plugin.h", "yolo_decode_nms_plugin.cpp",
     "int32_t getNbOutputs() const noexcept override;", "int32_t getNbOutputs() noexcept override;",
     "marked 'override', but does not override"),
    ("8.2.1", "yolo_decode_nms_plugin.h", "yolo_decode_nms_plugin.cpp",
     "char const* getPluginVersion() const noexcept override;", "char const* getPluginVersion() const noexcept;",
     "can be marked override"),
    ("11.1.0", "yolo_decode_nms_plugin_v3.h", "yolo_decode_nms_plugin_v3.cpp",
     "int32_t getNbOutputs() const noexcept override;", "int64_t getNbOutputs() const noexcept override;",
     "conflicting return type"),
    ("10.16.0", "yolo_decode_nms_plugin_v3.h", "yolo_decode_nms_plugin_v3.cpp",
     "nvinfer1::IPluginV3* clone() noexcept override;", "nvinfer1::IPluginV3* clone() const noexcept override;",
     "marked 'override', but does not override"),
    ("10.16.0", "yolo_decode_nms_plugin_v3.h", "yolo_decode_nms_plugin_v3.cpp",
     "char const* getPluginNamespace() const noexcept override;", "char const* getPluginNamespace() const noexcept;",
     "can be marked override"),
]


@pytest.mark.parametrize("release, header, source, old, new, error", MUTATIONS,
                         ids=["v2 const dropped", "v2 override dropped", "v3 return type", "v3 const added",
                              "v3 override dropped"])
def test_a_signature_that_stops_matching_the_real_header_fails_the_build(tmp_path, release, header, source, old,
                                                                           new, error):
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    text = (PLUGIN_DIR / header).read_text()
    assert old in text
    (tmp_path / header).write_text(text.replace(old, new, 1))
    (tmp_path / source).write_text((PLUGIN_DIR / source).read_text())
    proc = syntax_check(release, tmp_path / source, tmp_path)
    assert proc.returncode != 0
    assert error in proc.stderr, proc.stderr


@pytest.mark.parametrize("release", ["10.16.0", "11.1.0"])
def test_the_v2_plugin_is_deprecated_on_10_and_11(tmp_path, release):
    """Why 10/11 build the V3 plugin: our V2 plugin, compiled there anyway, fails on deprecation (-Werror)."""
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    for name in ("yolo_decode_nms_plugin.h", "yolo_decode_nms_plugin.cpp"):
        text = (PLUGIN_DIR / name).read_text()
        assert "#if NV_TENSORRT_MAJOR < 10\n" in text
        (tmp_path / name).write_text(text.replace("#if NV_TENSORRT_MAJOR < 10\n", "#if 1\n"))
    proc = syntax_check(release, tmp_path / "yolo_decode_nms_plugin.cpp", tmp_path)
    assert proc.returncode != 0
    assert "'IPluginV2DynamicExt' is deprecated [-Werror=deprecated-declarations]" in proc.stderr, proc.stderr
    assert "'IPluginV2' is deprecated [-Werror=deprecated-declarations]" in proc.stderr, proc.stderr
